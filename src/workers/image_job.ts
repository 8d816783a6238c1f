/**
 * Image creation job: for each partition, every key that exists at `lsn` (found in the
 * indexes of the read chain's layers and inside the keyspace) is reconstructed and written
 * to image layers that tile the partition exactly, cut at targetSizeBytes. Keys outside the
 * keyspace are not copied: inside an image's key range, absence means "does not exist", so
 * this is how deleted keys are reclaimed once GC drops the older layers.
 */
import { HistoricLayer } from "../layers/historic_layer.js";
import { ImageLayerWriter } from "../layers/image_layer.js";
import { LayerMap } from "../layers/layer_map.js";
import type { LayerDesc } from "../layers/layer_name.js";
import { WalkStatus, walkHistoric } from "../layers/read_path.js";
import { ReconstructState, reconstructValue } from "../layers/reconstruct_state.js";
import { type Key, type KeyRange, keyRangesOverlap } from "../types/key.js";
import { INVALID_LSN, type Lsn, lsnAdd, lsnMin } from "../types/lsn.js";
import { imageValue } from "../types/value.js";
import type { ImageResult, ImageTask } from "./jobs.js";
import { loadRedo } from "./redo_module.js";
import { workerCache } from "./worker_cache.js";

function inKeyspace(keyspace: KeyRange[], k: Key): boolean {
  let lo = 0;
  let hi = keyspace.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keyspace[mid]!.end <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo < keyspace.length && keyspace[lo]!.start <= k;
}

export default async function createImages(task: ImageTask): Promise<ImageResult> {
  const cache = workerCache();
  const redo = await loadRedo(task.redoModule);
  const maps = task.chain.map((link) => ({
    map: new LayerMap(link.layers.map((d) => new HistoricLayer(cache, link.dir, d))),
    endLsn: link.endLsn,
  }));
  const rs = new ReconstructState();
  const out = new Float64Array(1);
  const added: LayerDesc[] = [];
  try {
    for (const part of task.partitions) {
      // Candidate keys: every key any layer of the chain holds inside this partition.
      const candidates = new Set<Key>();
      for (const { map } of maps) {
        for (const l of map.layers) {
          if (!keyRangesOverlap(l.desc.keyRange, part)) continue;
          const f = l.open();
          const keys: Iterable<Key> = "keys" in f ? f.keys() : mapIndexKeys(f.index());
          for (const k of keys) if (k >= part.start && k < part.end && inKeyspace(task.keyspace, k)) candidates.add(k);
        }
      }
      const sorted = [...candidates].sort();
      let writer = new ImageLayerWriter(cache, task.outDir, part.start, task.lsn);
      try {
        for (const key of sorted) {
          rs.reset();
          let status = WalkStatus.Continue;
          let end = lsnAdd(task.lsn, 1);
          for (const { map, endLsn } of maps) {
            end = lsnMin(end, endLsn);
            status = walkHistoric(map, key, end, INVALID_LSN, rs, out);
            if (status !== WalkStatus.Continue) break;
            end = out[0]! as Lsn;
          }
          if (status !== WalkStatus.Complete) continue; // absent or never existed at lsn
          const { value } = reconstructValue(key, rs, redo, null, -1 as Lsn);
          if (writer.sizeBytes >= task.targetSizeBytes) {
            added.push(writer.finish(key));
            writer = new ImageLayerWriter(cache, task.outDir, key, task.lsn);
          }
          writer.put(key, imageValue(value));
        }
        added.push(writer.finish(part.end));
      } catch (e) {
        writer.abort();
        throw e;
      }
    }
    return { added };
  } finally {
    for (const { map } of maps) for (const l of map.layers) l.close();
  }
}

function* mapIndexKeys(it: Iterable<{ key: Key }>): IterableIterator<Key> {
  let last: Key | null = null;
  for (const e of it) {
    if (e.key !== last) yield e.key;
    last = e.key;
  }
}
