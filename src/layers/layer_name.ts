/**
 * Layer file names and descriptors. A name says everything the layer map needs, so startup
 * can build the map from a directory listing without opening a file:
 *
 *   delta: {keystart hex36}-{keyend hex36}__{lsnstart hex16}-{lsnend hex16}
 *   image: {keystart hex36}-{keyend hex36}__{lsn hex16}
 *
 * Key and LSN ranges are half-open. An image at LSN L covers [L, L+1) in LSN space.
 * Temp files end in `.___temp` and are deleted at startup.
 */
import { InvalidArgumentError } from "../types/errors.js";
import { type KeyRange, keyFromHex, keyToHex } from "../types/key.js";
import { type Lsn, lsnAdd, lsnFromHex16, lsnToHex16 } from "../types/lsn.js";

export const TEMP_SUFFIX = ".___temp";

export interface LsnRange {
  start: Lsn;
  end: Lsn;
}

export type LayerKind = "delta" | "image";

export interface LayerDesc {
  kind: LayerKind;
  keyRange: KeyRange;
  /** For an image layer at L: [L, L+1). */
  lsnRange: LsnRange;
  fileName: string;
  fileSize: number;
}

export function deltaLayerName(keyRange: KeyRange, lsnRange: LsnRange): string {
  return `${keyToHex(keyRange.start)}-${keyToHex(keyRange.end)}__${lsnToHex16(lsnRange.start)}-${lsnToHex16(lsnRange.end)}`;
}

export function imageLayerName(keyRange: KeyRange, lsn: Lsn): string {
  return `${keyToHex(keyRange.start)}-${keyToHex(keyRange.end)}__${lsnToHex16(lsn)}`;
}

export function layerName(kind: LayerKind, keyRange: KeyRange, lsnRange: LsnRange): string {
  return kind === "delta" ? deltaLayerName(keyRange, lsnRange) : imageLayerName(keyRange, lsnRange.start);
}

const NAME_RE = /^([0-9A-F]{36})-([0-9A-F]{36})__([0-9A-F]{16})(?:-([0-9A-F]{16}))?$/;

/** Parse a layer file name; null when the name is not a layer's. Refuses empty ranges. */
export function parseLayerName(name: string): Omit<LayerDesc, "fileSize"> | null {
  const m = NAME_RE.exec(name);
  if (m === null) return null;
  const keyRange = { start: keyFromHex(m[1]!), end: keyFromHex(m[2]!) };
  const lsnStart = lsnFromHex16(m[3]!);
  if (!(keyRange.start < keyRange.end)) throw new InvalidArgumentError(`layer name ${name}: empty key range`);
  if (m[4] === undefined) {
    return { kind: "image", keyRange, lsnRange: { start: lsnStart, end: lsnAdd(lsnStart, 1) }, fileName: name };
  }
  const lsnEnd = lsnFromHex16(m[4]);
  if (!(lsnStart < lsnEnd)) throw new InvalidArgumentError(`layer name ${name}: empty LSN range`);
  return { kind: "delta", keyRange, lsnRange: { start: lsnStart, end: lsnEnd }, fileName: name };
}
