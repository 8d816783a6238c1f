/**
 * index_part.json: the remote state of one timeline. A layer object is part of that state
 * only if the index names it (anything else under the prefix is garbage or in flight).
 *
 *   {
 *     "version": 1,
 *     "metadata": { "disk_consistent_lsn": "0/16B3748", "prev_record_lsn": null | "X/Y",
 *                   "ancestor_timeline_id": null | "<32 hex>", "ancestor_lsn": "X/Y",
 *                   "latest_gc_cutoff_lsn": "X/Y", "initdb_lsn": "X/Y", "pg_version": 15 },
 *                   (the local metadata file's JSON: src/tenant/metadata.ts encodes and checks it)
 *     "layers": { "<layer name>": { "file_size": N, "crc32c": N, "generation": N }, ... },
 *     "commit_times": { "generation": N }        (optional: absent in older indexes)
 *   }
 *
 * crc32c covers the whole layer file; generation is the one in the layer's object key.
 * commit_times names the timeline's commit-time index object `commit_times-<gen>`
 * (remote_path.ts; a snapshot of src/tenant/commit_times.ts's files, checked by its own CRC32C
 * and block seals, so the index carries no checksum of it). Absent: the timeline has none.
 * Stored under `index_part.json-<gen:08x>` (remote_path.ts); a reader takes the newest one with
 * a generation ≤ its own (findLatestIndex). Parsing validates every field: a bad index is an
 * IndexCorruptError naming its key, never a half-read state.
 */
import { open } from "node:fs/promises";
import { crc32c } from "@node-rs/crc32";
import { parseLayerName } from "../layers/layer_name.js";
import { metadataFromJson, metadataToJson, type TimelineMetadata } from "../tenant/metadata.js";
import { PageserverError } from "../types/errors.js";
import type { TenantId, TimelineId } from "../types/ids.js";
import { type Generation, isGeneration } from "./generation.js";
import { INDEX_PART_NAME, indexKey, parseIndexKey, timelinePrefix } from "./remote_path.js";
import type { RemoteCallOptions, RemoteStorage } from "./remote_storage.js";

export const INDEX_PART_VERSION = 1;
/** An index larger than this is refused before parsing (millions of layers would fit). */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;

export interface IndexLayerMetadata {
  file_size: number;
  crc32c: number;
  generation: Generation;
}

export interface IndexPart {
  metadata: TimelineMetadata;
  /** Layer name → its metadata. A Map: layer names must never meet Object.prototype. */
  layers: Map<string, IndexLayerMetadata>;
  /** The commit-time index object (commitTimesKey) of that generation; absent or null: none. */
  commit_times?: { generation: Generation } | null;
}

export class IndexCorruptError extends PageserverError {
  readonly key: string;
  constructor(key: string, reason: string) {
    super("corrupt", `corrupt remote index ${key}: ${reason}`);
    this.key = key;
  }
}

export function encodeIndexPart(ip: IndexPart): Uint8Array {
  const layers: Record<string, IndexLayerMetadata> = {};
  for (const name of [...ip.layers.keys()].sort()) {
    const l = ip.layers.get(name)!;
    layers[name] = { file_size: l.file_size, crc32c: l.crc32c, generation: l.generation };
  }
  const json = {
    version: INDEX_PART_VERSION,
    metadata: metadataToJson(ip.metadata),
    layers,
    ...(ip.commit_times ? { commit_times: { generation: ip.commit_times.generation } } : {}),
  };
  return Buffer.from(JSON.stringify(json), "utf8");
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/**
 * Parses and validates an index. `key` names it in errors; when the key carries a generation,
 * no layer may come from a newer one.
 */
export function parseIndexPart(key: string, bytes: Uint8Array): IndexPart {
  const bad = (why: string): never => {
    throw new IndexCorruptError(key, why);
  };
  if (bytes.byteLength > MAX_INDEX_BYTES) bad(`${bytes.byteLength} bytes, over the limit ${MAX_INDEX_BYTES}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (e) {
    return bad(`bad JSON: ${(e as Error).message}`);
  }
  if (!isObject(parsed)) return bad("not a JSON object");
  if (parsed["version"] !== INDEX_PART_VERSION) bad(`unsupported version ${JSON.stringify(parsed["version"])}`);
  const md = parsed["metadata"];
  if (!isObject(md)) return bad("metadata missing");
  const metadata = metadataFromJson(md, bad, "metadata.");
  const keyGen = parseIndexKey(key);
  const ls = parsed["layers"];
  if (!isObject(ls)) return bad("layers missing");
  const layers = new Map<string, IndexLayerMetadata>();
  for (const [name, v] of Object.entries(ls)) {
    let desc: ReturnType<typeof parseLayerName>;
    try {
      desc = parseLayerName(name);
    } catch (e) {
      return bad(`layer ${name}: ${(e as Error).message}`);
    }
    if (desc === null) bad(`${JSON.stringify(name.slice(0, 120))} is not a layer name`);
    if (!isObject(v)) return bad(`layer ${name}: not an object`);
    const { file_size, crc32c: crc, generation } = v;
    if (typeof file_size !== "number" || !Number.isSafeInteger(file_size) || file_size < 0) bad(`layer ${name}: bad file_size`);
    if (typeof crc !== "number" || !Number.isInteger(crc) || crc < 0 || crc > 0xffff_ffff) bad(`layer ${name}: bad crc32c`);
    if (!isGeneration(generation)) return bad(`layer ${name}: bad generation`);
    if (keyGen !== null && generation > keyGen) bad(`layer ${name} has generation ${generation}, newer than the index's ${keyGen}`);
    layers.set(name, { file_size: file_size as number, crc32c: crc as number, generation });
  }
  const ct = parsed["commit_times"];
  // Absent (an older index, or a timeline without one): the field stays absent.
  if (ct === undefined || ct === null) return { metadata, layers };
  if (!isObject(ct) || !isGeneration(ct["generation"])) return bad("commit_times is not {generation}");
  if (keyGen !== null && ct["generation"] > keyGen)
    bad(`commit_times has generation ${ct["generation"]}, newer than the index's ${keyGen}`);
  return { metadata, layers, commit_times: { generation: ct["generation"] } };
}

/** The generations of every index of a timeline in the bucket, ascending. */
export async function listIndexGenerations(
  storage: RemoteStorage,
  tenant: TenantId,
  timeline: TimelineId,
  opts?: RemoteCallOptions,
): Promise<Generation[]> {
  const objs = await storage.list(`${timelinePrefix(tenant, timeline)}${INDEX_PART_NAME}-`, opts);
  const gens: Generation[] = [];
  for (const o of objs) {
    const g = parseIndexKey(o.key);
    if (g !== null) gens.push(g);
  }
  return gens.sort((a, b) => a - b);
}

/**
 * The newest index of a timeline with a generation ≤ `gen` (a newer one belongs to a pageserver
 * that attached after us, never to be read by us); null if the timeline has none.
 */
export async function findLatestIndex(
  storage: RemoteStorage,
  tenant: TenantId,
  timeline: TimelineId,
  gen: Generation,
  opts?: RemoteCallOptions,
): Promise<{ key: string; generation: Generation; index: IndexPart } | null> {
  const gens = (await listIndexGenerations(storage, tenant, timeline, opts)).filter((g) => g <= gen);
  if (gens.length === 0) return null;
  const generation = gens[gens.length - 1]!;
  const key = indexKey(tenant, timeline, generation);
  const index = parseIndexPart(key, await storage.get(key, opts));
  return { key, generation, index };
}

const CRC_CHUNK_BYTES = 1024 * 1024;

/** CRC32C and length of a whole local file, read in 1 MiB chunks off the event loop. */
export async function fileCrc32c(path: string): Promise<{ crc32c: number; size_bytes: number }> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.allocUnsafe(Math.min(CRC_CHUNK_BYTES, Math.max(size, 1)));
    let crc = 0;
    let pos = 0;
    // Each read advances pos by ≥ 1 byte or ends the loop, so it runs at most size times.
    while (pos < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) break;
      crc = crc32c(buf.subarray(0, bytesRead), crc);
      pos += bytesRead;
    }
    return { crc32c: crc >>> 0, size_bytes: pos };
  } finally {
    await fh.close();
  }
}
