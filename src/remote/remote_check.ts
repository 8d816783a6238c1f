/**
 * Index-vs-bucket consistency of one timeline (for tests, tools and `pagectl remote check`):
 * the newest index with a generation ≤ ours against the objects under the timeline's prefix.
 *
 *   missing          a layer the index names has no object (an index got ahead of its layers)
 *   size_mismatch    the object's size is not the index's file_size
 *   checksum_mismatch   (verify_checksums) the object's CRC32C is not the index's
 *   orphans          a layer object of a generation ≤ ours that the index does not name
 *                    (an upload or deletion that never finished; garbage, never data)
 *   unknown          keys under the prefix that are neither a layer, an index nor a
 *                    commit-time index object (commit_times-<gen>)
 *
 * The commit-time index object the index names counts as a layer does (missing if absent);
 * one of a generation ≤ ours that it does not name is an orphan.
 *
 * Objects of newer generations belong to whoever attached after us: listed, never judged.
 * Older indexes are listed (stale_indexes) but are no error: a generation leaves its last
 * index behind. Meaningful on a quiescent timeline (its upload queue drained).
 */
import { crc32c } from "@node-rs/crc32";
import type { TenantId, TimelineId } from "../types/ids.js";
import type { Generation } from "./generation.js";
import { findLatestIndex } from "./index_part.js";
import { commitTimesKey, layerKey, parseCommitTimesKey, parseIndexKey, parseLayerKey, timelinePrefix } from "./remote_path.js";
import type { RemoteCallOptions, RemoteStorage } from "./remote_storage.js";

export interface RemoteTimelineCheck {
  index_key: string | null;
  index_generation: Generation | null;
  layers_named: number;
  missing: string[];
  size_mismatch: { key: string; index_bytes: number; object_bytes: number }[];
  checksum_mismatch: string[];
  orphans: string[];
  unknown: string[];
  stale_indexes: string[];
  newer_generation_keys: string[];
  /** No missing, mismatched, orphaned or unknown object. */
  ok: boolean;
}

export async function checkRemoteTimeline(
  storage: RemoteStorage,
  tenant: TenantId,
  timeline: TimelineId,
  generation: Generation,
  opts: RemoteCallOptions & { verify_checksums?: boolean } = {},
): Promise<RemoteTimelineCheck> {
  const prefix = timelinePrefix(tenant, timeline);
  const objects = await storage.list(prefix, opts);
  const latest = await findLatestIndex(storage, tenant, timeline, generation, opts);
  const sizes = new Map(objects.map((o) => [o.key, o.size_bytes]));
  const out: RemoteTimelineCheck = {
    index_key: latest?.key ?? null,
    index_generation: latest?.generation ?? null,
    layers_named: latest?.index.layers.size ?? 0,
    missing: [],
    size_mismatch: [],
    checksum_mismatch: [],
    orphans: [],
    unknown: [],
    stale_indexes: [],
    newer_generation_keys: [],
    ok: false,
  };
  const named = new Set<string>();
  for (const [name, l] of latest?.index.layers ?? []) {
    const key = layerKey(tenant, timeline, name, l.generation);
    named.add(key);
    const size = sizes.get(key);
    if (size === undefined) {
      out.missing.push(key);
      continue;
    }
    if (size !== l.file_size) {
      out.size_mismatch.push({ key, index_bytes: l.file_size, object_bytes: size });
      continue;
    }
    if (opts.verify_checksums === true && (await objectCrc32c(storage, key, opts)) !== l.crc32c) {
      out.checksum_mismatch.push(key);
    }
  }
  const ct = latest?.index.commit_times;
  if (ct) {
    const key = commitTimesKey(tenant, timeline, ct.generation);
    named.add(key);
    if (!sizes.has(key)) out.missing.push(key);
  }
  for (const o of objects) {
    const cg = parseCommitTimesKey(o.key);
    if (cg !== null) {
      if (cg > generation) out.newer_generation_keys.push(o.key);
      else if (!named.has(o.key)) out.orphans.push(o.key);
      continue;
    }
    const ig = parseIndexKey(o.key);
    if (ig !== null) {
      if (ig > generation) out.newer_generation_keys.push(o.key);
      else if (o.key !== out.index_key) out.stale_indexes.push(o.key);
      continue;
    }
    const lk = parseLayerKey(o.key);
    if (lk === null) out.unknown.push(o.key);
    else if (lk.generation > generation) out.newer_generation_keys.push(o.key);
    else if (!named.has(o.key)) out.orphans.push(o.key);
  }
  out.ok = out.missing.length + out.size_mismatch.length + out.checksum_mismatch.length + out.orphans.length + out.unknown.length === 0;
  return out;
}

/** CRC32C of an object, streamed (layer files are too large to hold whole). */
async function objectCrc32c(storage: RemoteStorage, key: string, opts: RemoteCallOptions): Promise<number> {
  const { stream } = await storage.getStream(key, opts);
  let crc = 0;
  for await (const chunk of stream) crc = crc32c(chunk as Buffer, crc);
  return crc >>> 0;
}
