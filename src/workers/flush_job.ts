/**
 * Flush job: a frozen in-memory layer's ephemeral file → one L0 delta layer file covering
 * the whole key range over the layer's LSN range. The file is self-describing, so the job
 * needs nothing from the main thread but its path and length. Same (key, lsn) written twice:
 * the later record wins, as it did for readers of the in-memory layer.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { scanEphemeralFile } from "../layers/ephemeral_file.js";
import { DeltaLayerWriter } from "../layers/delta_layer.js";
import { KEY_MAX, KEY_MIN, type Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import type { FlushResult, FlushTask } from "./jobs.js";
import { workerCache } from "./worker_cache.js";

export default async function flush(task: FlushTask): Promise<FlushResult> {
  const keys: Key[] = [];
  const lsns: Lsn[] = [];
  const offsets: number[] = [];
  const lengths: number[] = [];
  for (const { entry } of scanEphemeralFile(task.ephemeralPath, task.lengthBytes, false)) {
    keys.push(entry.key);
    lsns.push(entry.lsn);
    offsets.push(entry.offset);
    lengths.push(entry.length);
  }
  if (keys.length === 0) return { desc: null };
  const order = new Uint32Array(keys.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  // Sort by (key, lsn, file position): the last of equal (key, lsn) is the one to keep.
  order.sort((a, b) => {
    const ka = keys[a]!;
    const kb = keys[b]!;
    if (ka !== kb) return ka < kb ? -1 : 1;
    return lsns[a]! - lsns[b]! || a - b;
  });
  const cache = workerCache();
  const writer = new DeltaLayerWriter(cache, task.outDir, KEY_MIN, { start: task.lsnStart, end: task.lsnEnd });
  const fd = openSync(task.ephemeralPath, "r");
  try {
    for (let j = 0; j < order.length; j++) {
      const i = order[j]!;
      const next = j + 1 < order.length ? order[j + 1]! : -1;
      if (next >= 0 && keys[next] === keys[i] && lsns[next] === lsns[i]) continue; // superseded
      const value = new Uint8Array(lengths[i]!);
      let off = 0;
      while (off < value.length) {
        const n = readSync(fd, value, off, value.length - off, offsets[i]! + off);
        if (n <= 0) throw new Error(`short read of ${task.ephemeralPath}`);
        off += n;
      }
      writer.put(keys[i]!, lsns[i]!, value);
    }
    return { desc: writer.finish(KEY_MAX) };
  } catch (e) {
    writer.abort();
    throw e;
  } finally {
    closeSync(fd);
  }
}
