/**
 * Timeline metadata: what a timeline must know about itself to load after a restart. One
 * small file per timeline, `metadata`, written durably (temp, fsync, rename, fsync dir):
 *
 *   line 1   "pageserver-timeline-metadata v1 crc32c=<8 hex>"
 *   rest     JSON body (LSNs as "X/Y" strings); the CRC32C covers exactly these bytes
 *
 * The JSON form of the metadata (metadataToJson / metadataFromJson) is also the `metadata`
 * object of the remote index (src/remote/index_part.ts): one encoder and one validating
 * decoder for both, so the two copies of a timeline's state can't drift apart.
 *
 * Invariant: disk_consistent_lsn only moves forward, and only after every layer file that
 * holds data up to it is durable. prev_record_lsn is stored only when it is known.
 */
import { readFileSync } from "node:fs";
import { crc32c } from "@node-rs/crc32";
import { CorruptionError } from "../types/errors.js";
import { isId, parseTimelineId, type TimelineId } from "../types/ids.js";
import { type Lsn, lsnToString, parseLsn } from "../types/lsn.js";
import { writeFileDurable } from "../layers/durable_file.js";

export const METADATA_FORMAT_VERSION = 1;
const MAGIC = "pageserver-timeline-metadata";

export interface TimelineMetadata {
  disk_consistent_lsn: Lsn;
  prev_record_lsn: Lsn | null;
  ancestor_timeline_id: TimelineId | null;
  ancestor_lsn: Lsn;
  latest_gc_cutoff_lsn: Lsn;
  initdb_lsn: Lsn;
  pg_version: number;
}

/** TimelineMetadata as JSON: LSNs as "X/Y" strings, in this field order. */
export interface TimelineMetadataJson {
  disk_consistent_lsn: string;
  prev_record_lsn: string | null;
  ancestor_timeline_id: string | null;
  ancestor_lsn: string;
  latest_gc_cutoff_lsn: string;
  initdb_lsn: string;
  pg_version: number;
}

export function metadataToJson(m: TimelineMetadata): TimelineMetadataJson {
  return {
    disk_consistent_lsn: lsnToString(m.disk_consistent_lsn),
    prev_record_lsn: m.prev_record_lsn === null ? null : lsnToString(m.prev_record_lsn),
    ancestor_timeline_id: m.ancestor_timeline_id,
    ancestor_lsn: lsnToString(m.ancestor_lsn),
    latest_gc_cutoff_lsn: lsnToString(m.latest_gc_cutoff_lsn),
    initdb_lsn: lsnToString(m.initdb_lsn),
    pg_version: m.pg_version,
  };
}

/**
 * The metadata in a parsed JSON object, every field validated. `bad` throws the caller's
 * corruption error (it names the file or object); `prefix` is where the object sits in it
 * ("metadata." in an index), so a message names the field as the reader would find it.
 */
export function metadataFromJson(j: Record<string, unknown>, bad: (why: string) => never, prefix = ""): TimelineMetadata {
  const lsn = (k: string): Lsn => {
    const v = j[k];
    if (typeof v !== "string") return bad(`field ${prefix}${k} missing`);
    try {
      return parseLsn(v);
    } catch (e) {
      return bad(`field ${prefix}${k}: ${(e as Error).message}`);
    }
  };
  const anc = j["ancestor_timeline_id"];
  if (anc !== null && !isId(anc)) bad(`bad ${prefix}ancestor_timeline_id: neither null nor a timeline id`);
  const pg = j["pg_version"];
  if (typeof pg !== "number" || !Number.isInteger(pg) || pg < 14 || pg > 17)
    bad(`field ${prefix}pg_version missing or not 14..17: ${JSON.stringify(pg)}`);
  return {
    disk_consistent_lsn: lsn("disk_consistent_lsn"),
    prev_record_lsn: j["prev_record_lsn"] === null ? null : lsn("prev_record_lsn"),
    ancestor_timeline_id: anc === null ? null : parseTimelineId(anc),
    ancestor_lsn: lsn("ancestor_lsn"),
    latest_gc_cutoff_lsn: lsn("latest_gc_cutoff_lsn"),
    initdb_lsn: lsn("initdb_lsn"),
    pg_version: pg as number,
  };
}

export function encodeMetadata(m: TimelineMetadata): Uint8Array {
  const body = JSON.stringify({ format_version: METADATA_FORMAT_VERSION, ...metadataToJson(m) });
  const bodyBytes = Buffer.from(body, "utf8");
  const crc = crc32c(bodyBytes).toString(16).padStart(8, "0");
  return Buffer.concat([Buffer.from(`${MAGIC} v${METADATA_FORMAT_VERSION} crc32c=${crc}\n`), bodyBytes]);
}

export function decodeMetadata(path: string, bytes: Uint8Array): TimelineMetadata {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nl = buf.indexOf(10);
  const bad = (why: string): never => {
    throw new CorruptionError(path, 0, why);
  };
  if (nl < 0) bad("no header line");
  const header = buf.subarray(0, nl).toString("latin1");
  const m = /^pageserver-timeline-metadata v(\d+) crc32c=([0-9a-f]{8})$/.exec(header);
  if (m === null) return bad(`bad header '${header.slice(0, 80)}'`);
  if (Number(m[1]) !== METADATA_FORMAT_VERSION) bad(`unsupported format version ${m[1]}`);
  const body = buf.subarray(nl + 1);
  if (crc32c(body) !== Number.parseInt(m[2]!, 16)) bad("checksum mismatch");
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch (e) {
    return bad(`bad JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return bad("body is not a JSON object");
  return metadataFromJson(parsed as Record<string, unknown>, bad);
}

export function readMetadata(path: string): TimelineMetadata {
  return decodeMetadata(path, readFileSync(path));
}

export async function writeMetadata(path: string, m: TimelineMetadata): Promise<void> {
  await writeFileDurable(path, encodeMetadata(m));
}
