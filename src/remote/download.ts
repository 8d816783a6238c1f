/**
 * Downloads from remote storage, the ground attach stands on:
 *
 * - downloadLayer: one layer object into a local file, verified (length and CRC32C against
 *   the index) and durable (temp name, fsync, rename, fsync of the directory); a mismatch is a
 *   CorruptionError naming the object, and nothing is left at the destination.
 * - downloadTimeline: every layer the newest index ≤ our generation names, then the local
 *   metadata file LAST. Until the metadata exists the directory is no timeline (tenant load
 *   removes a timeline directory without metadata), so a download cut short (crash, error) is
 *   never loaded as if whole; a retry finds the layers already there (same size) and skips
 *   them. Layers download at most `concurrency` at a time. With `lazy_layers` no layer is
 *   downloaded: the timeline's evicted-layer manifest (src/tenant/evicted_layers.ts) names
 *   every layer of the index, and reads download them on demand (a layer file already
 *   present stays, and counts as present).
 * - The commit-time index object the index names (commit_times-<gen>) comes down before the
 *   metadata in both modes, laid down as the timeline's commit-time files
 *   (writeCommitTimesSnapshot); a missing or corrupt one leaves none (the timeline starts its
 *   commit-time index empty, as before this object existed) and is returned as a warning for
 *   the log: times it covered answer `nodata`/`past`, never a wrong LSN.
 * - listRemoteTimelines: the timelines of a tenant that have objects in the bucket.
 */
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { crc32c } from "@node-rs/crc32";
import { TEMP_SUFFIX } from "../layers/layer_name.js";
import { fsyncDir } from "../layers/durable_file.js";
import { removeCommitTimesFiles, writeCommitTimesSnapshot } from "../tenant/commit_times_snapshot.js";
import { writeEvictedLayers } from "../tenant/evicted_layers.js";
import { writeMetadata } from "../tenant/metadata.js";
import { assert } from "../types/assert.js";
import { failpoint } from "../types/failpoints.js";
import { CorruptionError, NotFoundError } from "../types/errors.js";
import { isId, type TenantId, type TimelineId } from "../types/ids.js";
import type { Generation } from "./generation.js";
import { findLatestIndex, type IndexLayerMetadata, type IndexPart } from "./index_part.js";
import { commitTimesKey, layerKey, tenantPrefix } from "./remote_path.js";
import { type RemoteCallOptions, type RemoteStorage, RemoteStorageError } from "./remote_storage.js";

/** The local metadata file's name in a timeline directory (as Timeline keeps it). */
export const TIMELINE_METADATA_FILE = "metadata";
const DEFAULT_CONCURRENCY = 4;

/** The timeline ids under a tenant's prefix in the bucket, sorted. */
export async function listRemoteTimelines(storage: RemoteStorage, tenant: TenantId, opts?: RemoteCallOptions): Promise<TimelineId[]> {
  const prefix = `${tenantPrefix(tenant)}timelines/`;
  const ids = new Set<string>();
  for (const o of await storage.list(prefix, opts)) {
    const id = o.key.slice(prefix.length).split("/", 1)[0]!;
    if (isId(id)) ids.add(id);
  }
  return [...ids].sort() as TimelineId[];
}

/** One layer object into `dest`, checked against its index entry. */
export async function downloadLayer(
  storage: RemoteStorage,
  key: string,
  dest: string,
  expected: IndexLayerMetadata,
  opts?: RemoteCallOptions,
): Promise<void> {
  const tmp = dest + TEMP_SUFFIX;
  try {
    const { stream, size_bytes } = await storage.getStream(key, opts);
    if (size_bytes !== expected.file_size) {
      stream.destroy();
      throw new CorruptionError(key, 0, `object is ${size_bytes} bytes, the index says ${expected.file_size}`);
    }
    const fh = await open(tmp, "w", 0o600);
    let crc = 0;
    let n = 0;
    try {
      for await (const chunk of stream) {
        const c = chunk as Buffer;
        crc = crc32c(c, crc);
        n += c.byteLength;
        await fh.write(c);
      }
      await failpoint("remote-download-layer");
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (n !== expected.file_size) throw new CorruptionError(key, 0, `read ${n} bytes, the index says ${expected.file_size}`);
    if (crc >>> 0 !== expected.crc32c)
      throw new CorruptionError(key, 0, `CRC32C ${(crc >>> 0).toString(16)}, the index says ${expected.crc32c.toString(16)}`);
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * The commit-time index object `index` names into `dir` (replacing the files there); returns a
 * warning when it is missing or corrupt (then `dir` holds no commit-time files), else null.
 */
export async function downloadCommitTimes(
  storage: RemoteStorage,
  tenant: TenantId,
  timeline: TimelineId,
  index: IndexPart,
  dir: string,
  opts?: RemoteCallOptions,
): Promise<string | null> {
  await removeCommitTimesFiles(dir);
  if (!index.commit_times) return null;
  const key = commitTimesKey(tenant, timeline, index.commit_times.generation);
  let bytes: Uint8Array;
  try {
    bytes = await storage.get(key, opts);
  } catch (e) {
    if (e instanceof RemoteStorageError && e.kind === "not_found") return `commit-time index ${key} is missing: it starts empty`;
    throw e;
  }
  try {
    await writeCommitTimesSnapshot(dir, key, bytes);
  } catch (e) {
    if (!(e instanceof CorruptionError)) throw e;
    await removeCommitTimesFiles(dir);
    return `${e.message}: the commit-time index starts empty`;
  }
  return null;
}

/**
 * A timeline's remote state into `dir` (created if missing): its layers, then its metadata.
 * Returns the index it followed (and a warning about its commit-time index, or null). A
 * timeline with no index ≤ `gen` is a NotFoundError.
 */
export async function downloadTimeline(
  storage: RemoteStorage,
  tenant: TenantId,
  timeline: TimelineId,
  gen: Generation,
  dir: string,
  opts: RemoteCallOptions & { concurrency?: number; lazy_layers?: boolean } = {},
): Promise<{ index: IndexPart; downloaded: number; present: number; warning: string | null }> {
  const latest = await findLatestIndex(storage, tenant, timeline, gen, opts);
  if (latest === null)
    throw new NotFoundError(`timeline ${timeline} of tenant ${tenant} has no index of generation ≤ ${gen} in ${storage.description}`);
  await mkdir(dir, { recursive: true });
  const warning = await downloadCommitTimes(storage, tenant, timeline, latest.index, dir, opts);
  if (opts.lazy_layers === true) {
    const evicted = new Map<string, number>();
    let present = 0;
    for (const [name, meta] of latest.index.layers) {
      const have = await stat(join(dir, name)).catch(() => null);
      if (have?.isFile() && have.size === meta.file_size) present++;
      else evicted.set(name, meta.file_size);
    }
    await writeEvictedLayers(dir, evicted);
    await writeMetadata(join(dir, TIMELINE_METADATA_FILE), latest.index.metadata);
    return { index: latest.index, downloaded: 0, present, warning };
  }
  const todo = [...latest.index.layers];
  let next = 0;
  let downloaded = 0;
  let present = 0;
  const worker = async (): Promise<void> => {
    // Each turn takes the next layer: at most todo.length turns over all workers.
    while (next < todo.length) {
      const [name, meta] = todo[next++]!;
      const dest = join(dir, name);
      const have = await stat(dest).catch(() => null);
      if (have?.isFile() && have.size === meta.file_size) {
        present++;
        continue;
      }
      await downloadLayer(storage, layerKey(tenant, timeline, name, meta.generation), dest, meta, opts);
      downloaded++;
    }
  };
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  assert(concurrency >= 1, "downloadTimeline: concurrency ≥ 1");
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(todo.length, 1)) }, worker));
  await fsyncDir(dir);
  // Last: from here on the directory is a timeline.
  await writeMetadata(join(dir, TIMELINE_METADATA_FILE), latest.index.metadata);
  return { index: latest.index, downloaded, present, warning };
}
