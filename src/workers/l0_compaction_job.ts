/**
 * Compaction job, L0 → L1: k-way merge of a contiguous chain of L0 deltas in (key, lsn)
 * order into L1 deltas over the union of their LSN ranges, cut by key once a file passes
 * targetSizeBytes. All versions of one key stay in one file, so each L1 holds every value of
 * its key range in the LSN range (the layer map's invariant). L1 key ranges tile
 * [first key, after last key) without gaps.
 */
import { join } from "node:path";
import { DeltaLayer, DeltaLayerWriter } from "../layers/delta_layer.js";
import type { LayerDesc } from "../layers/layer_name.js";
import { assert } from "../types/assert.js";
import { type Key, keyNext } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import type { Value } from "../types/value.js";
import type { CompactResult, CompactTask } from "./jobs.js";
import { workerCache } from "./worker_cache.js";

interface Cursor {
  it: Iterator<{ key: Key; lsn: Lsn; value: Value }>;
  cur: { key: Key; lsn: Lsn; value: Value } | null;
}

function advance(c: Cursor): void {
  const r = c.it.next();
  c.cur = r.done ? null : r.value;
}

export default async function compact(task: CompactTask): Promise<CompactResult> {
  const [first, ...rest] = task.l0;
  assert(first !== undefined, "compaction needs an L0 layer");
  let end = first.lsnRange.end;
  for (const d of rest) {
    assert(d.lsnRange.start === end, "L0 chain must be contiguous");
    end = d.lsnRange.end;
  }
  const cache = workerCache();
  const layers = task.l0.map((d) => DeltaLayer.open(cache, join(task.dir, d.fileName)));
  const lsnRange = { start: first.lsnRange.start, end };
  const cursors: Cursor[] = layers.map((l) => ({ it: l.entries(), cur: null }));
  for (const c of cursors) advance(c);
  const added: LayerDesc[] = [];
  let writer: DeltaLayerWriter | null = null;
  let lastKey: Key | null = null;
  try {
    // The inputs are few (compaction_threshold-ish): a linear scan for the minimum beats a heap.
    for (;;) {
      let best = -1;
      for (let i = 0; i < cursors.length; i++) {
        const c = cursors[i]!.cur;
        if (c === null) continue;
        const b = best < 0 ? null : cursors[best]!.cur!;
        if (b === null || c.key < b.key || (c.key === b.key && c.lsn < b.lsn)) best = i;
      }
      if (best < 0) break;
      const e = cursors[best]!.cur!;
      if (e.key !== lastKey) {
        if (writer !== null && writer.sizeBytes >= task.targetSizeBytes) {
          added.push(writer.finish(e.key));
          writer = null;
        }
        if (writer === null) writer = new DeltaLayerWriter(cache, task.dir, e.key, lsnRange);
        lastKey = e.key;
      }
      writer!.put(e.key, e.lsn, e.value);
      advance(cursors[best]!);
    }
    if (writer !== null) added.push(writer.finish(keyNext(lastKey!)));
    return { added };
  } catch (e) {
    writer?.abort();
    throw e;
  } finally {
    for (const l of layers) l.close();
  }
}
