/**
 * Bulk import jobs: an external sort of an import's values (all at one LSN) into image
 * layers, so an import of any size needs bounded memory (see src/tenant/bulk_import.ts).
 *
 * - importRun: one spill file (ephemeral-file records, in arrival order) → its values sorted
 *   by key. Not final: one sorted run file (an image layer over [first key, after last key)).
 *   Final (the import's only run): image layers tiling [KEY_MIN, KEY_MAX), cut at
 *   targetSizeBytes.
 * - importMerge: sorted runs → k-way merge by key; final or one bigger run, as above.
 *
 * The same key twice: the later value wins (later in the spill file, or in a later run), as
 * it would in an in-memory layer. Every value must be an image (the image layer writer
 * refuses anything else): an import writes page images and metadata images only.
 */
import { closeSync, openSync, readSync } from "node:fs";
import type { PageCacheApi } from "../cache/api.js";
import { scanEphemeralFile } from "../layers/ephemeral_file.js";
import { ImageLayer, ImageLayerWriter } from "../layers/image_layer.js";
import type { LayerDesc } from "../layers/layer_name.js";
import { assert } from "../types/assert.js";
import { KEY_MAX, KEY_MIN, type Key, keyNext } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import type { Value } from "../types/value.js";
import type { ImportMergeTask, ImportResult, ImportRunTask } from "./jobs.js";
import { workerCache } from "./worker_cache.js";

/** Writes key-ordered values either as final image layers (tiling the key space) or as one run. */
class SortedOutput {
  private readonly cache: PageCacheApi;
  private readonly outDir: string;
  private readonly lsn: Lsn;
  private readonly final: boolean;
  private readonly targetSizeBytes: number;
  private writer: ImageLayerWriter | null = null;
  private lastKey: Key | null = null;
  readonly added: LayerDesc[] = [];

  constructor(cache: PageCacheApi, outDir: string, lsn: Lsn, final: boolean, targetSizeBytes: number) {
    this.cache = cache;
    this.outDir = outDir;
    this.lsn = lsn;
    this.final = final;
    this.targetSizeBytes = targetSizeBytes;
    // Final layers tile the whole key space, even when empty: absence then means "does not exist".
    if (final) this.writer = new ImageLayerWriter(cache, outDir, KEY_MIN, lsn);
  }

  put(key: Key, value: Value): void {
    assert(this.lastKey === null || key > this.lastKey, "sorted output: keys must increase");
    if (this.writer === null) {
      this.writer = new ImageLayerWriter(this.cache, this.outDir, key, this.lsn);
    } else if (this.final && this.writer.sizeBytes >= this.targetSizeBytes) {
      this.added.push(this.writer.finish(key));
      this.writer = new ImageLayerWriter(this.cache, this.outDir, key, this.lsn);
    }
    this.writer.put(key, value);
    this.lastKey = key;
  }

  finish(): LayerDesc[] {
    const w = this.writer;
    this.writer = null;
    if (w !== null) this.added.push(w.finish(this.final ? KEY_MAX : keyNext(this.lastKey!)));
    return this.added;
  }

  abort(): void {
    this.writer?.abort();
    this.writer = null;
  }
}

export async function importRun(task: ImportRunTask): Promise<ImportResult> {
  const keys: Key[] = [];
  const offsets: number[] = [];
  const lengths: number[] = [];
  for (const { entry } of scanEphemeralFile(task.spillPath, task.lengthBytes, false)) {
    assert(entry.lsn === task.lsn, "an import spill file holds values at the import LSN only");
    keys.push(entry.key);
    offsets.push(entry.offset);
    lengths.push(entry.length);
  }
  const order = new Uint32Array(keys.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  // By key, then by position: of equal keys the last written is the one kept.
  order.sort((a, b) => {
    const ka = keys[a]!;
    const kb = keys[b]!;
    return ka === kb ? a - b : ka < kb ? -1 : 1;
  });
  const out = new SortedOutput(workerCache(), task.outDir, task.lsn, task.final, task.targetSizeBytes);
  const fd = openSync(task.spillPath, "r");
  try {
    for (let j = 0; j < order.length; j++) {
      const i = order[j]!;
      if (j + 1 < order.length && keys[order[j + 1]!] === keys[i]) continue; // superseded
      const value = new Uint8Array(lengths[i]!);
      for (let off = 0; off < value.length; ) {
        const n = readSync(fd, value, off, value.length - off, offsets[i]! + off);
        if (n <= 0) throw new Error(`short read of ${task.spillPath}`);
        off += n;
      }
      out.put(keys[i]!, value);
    }
    return { added: out.finish() };
  } catch (e) {
    out.abort();
    throw e;
  } finally {
    closeSync(fd);
  }
}

interface RunCursor {
  it: Iterator<{ key: Key; value: Value }>;
  cur: { key: Key; value: Value } | null;
  /** Position in the task's run list: later runs win ties. */
  rank: number;
}

/** Min-heap order: key, then rank (an earlier run's value comes out first and is superseded). */
function before(a: RunCursor, b: RunCursor): boolean {
  const ka = a.cur!.key;
  const kb = b.cur!.key;
  return ka < kb || (ka === kb && a.rank < b.rank);
}

function siftDown(h: RunCursor[], i0: number): void {
  let i = i0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= h.length) return;
    const r = l + 1;
    const m = r < h.length && before(h[r]!, h[l]!) ? r : l;
    if (!before(h[m]!, h[i]!)) return;
    [h[i], h[m]] = [h[m]!, h[i]!];
    i = m;
  }
}

export async function importMerge(task: ImportMergeTask): Promise<ImportResult> {
  const cache = workerCache();
  const runs = task.runs.map((p) => ImageLayer.open(cache, p));
  const out = new SortedOutput(cache, task.outDir, task.lsn, task.final, task.targetSizeBytes);
  try {
    const heap: RunCursor[] = [];
    runs.forEach((l, rank) => {
      assert(l.lsn === task.lsn, "an import run is at the import LSN");
      const it = l.entries();
      const first = it.next();
      if (!first.done) heap.push({ it, cur: first.value, rank });
    });
    for (let i = (heap.length >>> 1) - 1; i >= 0; i--) siftDown(heap, i);
    while (heap.length > 0) {
      const top = heap[0]!;
      const e = top.cur!;
      const nx = top.it.next();
      if (nx.done) {
        heap[0] = heap[heap.length - 1]!;
        heap.pop();
      } else {
        top.cur = nx.value;
      }
      if (heap.length > 0) siftDown(heap, 0);
      // A later run holds the same key: that value wins.
      if (heap.length > 0 && heap[0]!.cur!.key === e.key) continue;
      out.put(e.key, e.value);
    }
    return { added: out.finish() };
  } catch (e) {
    out.abort();
    throw e;
  } finally {
    for (const l of runs) l.close();
  }
}
