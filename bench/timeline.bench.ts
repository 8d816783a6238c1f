/**
 * `npm run bench -- timeline`: the timeline's write and read paths with the real parts
 * (shared page cache, worker pools, layer files on disk), synthetic values (TestRedo):
 * - put: values/s and MB/s into the open layer (8 kB page images and 64-byte records);
 * - get@LSN hot: repeated reads of pages with 10 records above an image, served from the
 *   materialized page cache; p50/p99 latency;
 * - get@LSN cold: every read reconstructs from layer files (1 image layer + 10 L0 deltas),
 *   materialized cache off; p50/p99 latency.
 * No peer is named for these; the numbers track us against ourselves over time.
 * - commit times (timeline_commit_times.ts): the commit-time index at 10^6 commits, bytes per
 *   commit and lookup by time, against the peers named there.
 */
import { TenantHarness } from "../test/support/tenant_harness.js";
import { testWriteAt } from "../test/support/test_redo.js";
import { LayerMap } from "../src/layers/layer_map.js";
import { deltaLayerName, imageLayerName, type LayerDesc } from "../src/layers/layer_name.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { type BenchRow, percentile, row } from "./harness.js";
import { commitTimeBench } from "./timeline_commit_times.js";
import { asLsn, lsnAdd } from "../src/types/lsn.js";

const key = (i: number) => makeKey(0, 1663, 5, 16384, 0, i);

async function putBench(rows: BenchRow[]): Promise<void> {
  const h = new TenantHarness({ cacheBytes: 64 * 1024 * 1024, conf: { checkpoint_distance: 1 << 30 } });
  try {
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
    const page = imageValue(new Uint8Array(8192).fill(7));
    const N_IMG = 20_000;
    let lsn = 0x1000;
    let t0 = performance.now();
    for (let i = 0; i < N_IMG; i++) {
      lsn += 8;
      tl.put(key(i), asLsn(lsn), page);
      tl.finishWrite(asLsn(lsn));
    }
    let s = (performance.now() - t0) / 1000;
    rows.push(row("put 8 kB images", "values/s", N_IMG / s));
    rows.push(row("put 8 kB images", "MB/s", (N_IMG * page.length) / s / 1e6));
    const rec = testWriteAt(100, new Uint8Array(60).fill(1));
    const N_REC = 300_000;
    t0 = performance.now();
    for (let i = 0; i < N_REC; i++) {
      lsn += 8;
      tl.put(key(i % N_IMG), asLsn(lsn), rec);
      tl.finishWrite(asLsn(lsn));
    }
    s = (performance.now() - t0) / 1000;
    rows.push(row("put 64-byte records", "values/s", N_REC / s));
  } finally {
    await h.close();
  }
}

function latencyRows(rows: BenchRow[], name: string, lat: Float64Array, total_s: number): void {
  lat.sort();
  rows.push(row(`${name}`, "ops/s", lat.length / total_s));
  rows.push(row(`${name} p50`, "us", percentile(lat, 50) * 1000));
  rows.push(row(`${name} p99`, "us", percentile(lat, 99) * 1000));
}

/** Keys with an image and 10 records above it; read each at the newest LSN. */
async function getBench(rows: BenchRow[], hot: boolean): Promise<void> {
  const h = new TenantHarness({
    cacheBytes: 128 * 1024 * 1024,
    conf: { materialized_page_cache: hot, image_creation_threshold: 1, compaction_threshold: 1000 },
  });
  try {
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
    const NKEYS = 2000;
    let lsn = 0x1000;
    const page = imageValue(new Uint8Array(8192));
    for (let i = 0; i < NKEYS; i++) tl.put(key(i), asLsn(lsn), page);
    tl.finishWrite(asLsn(lsn));
    await tl.checkpoint();
    await t.compact({ forceImages: true }); // one image layer at the start LSN
    for (let d = 0; d < 10; d++) {
      lsn += 8;
      for (let i = 0; i < NKEYS; i++) tl.put(key(i), asLsn(lsn), testWriteAt(d * 16, new Uint8Array([d + 1, i & 0xff])));
      tl.finishWrite(asLsn(lsn));
      await tl.checkpoint(); // one L0 delta per round
    }
    const ROUNDS = hot ? 20 : 5;
    const lat = new Float64Array(NKEYS * ROUNDS);
    // Warm-up (and, when hot, materialize every page once).
    for (let i = 0; i < NKEYS; i++) tl.getNow(key(i), asLsn(lsn));
    const t0 = performance.now();
    let n = 0;
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < NKEYS; i++) {
        const a = performance.now();
        const p = tl.getNow(key(i), asLsn(lsn))!;
        lat[n++] = performance.now() - a;
        if (p[0] !== 1 || p[9 * 16] !== 10) throw new Error("bench read a wrong page");
      }
    }
    const total_s = (performance.now() - t0) / 1000;
    latencyRows(rows, hot ? "get@LSN hot (materialized)" : "get@LSN cold (1 image + 10 deltas)", lat, total_s);
    if (hot && tl.counters.materializedHits < NKEYS * ROUNDS) throw new Error("hot reads did not hit the materialized cache");
  } finally {
    await h.close();
  }
}

/** The layer map with thousands of layers: L1 deltas in 200 key ranges × 20 LSN generations, images every 5. */
function layerMapBench(rows: BenchRow[]): void {
  const RANGES = 200;
  const GENS = 20;
  const layers: { desc: LayerDesc }[] = [];
  const kr = (r: number) => ({ start: key(r * 1000), end: key((r + 1) * 1000) });
  for (let g = 0; g < GENS; g++) {
    for (let r = 0; r < RANGES; r++) {
      const lsnRange = { start: asLsn(0x1000 + g * 0x1000), end: asLsn(0x1000 + (g + 1) * 0x1000) };
      layers.push({ desc: { kind: "delta", keyRange: kr(r), lsnRange, fileName: deltaLayerName(kr(r), lsnRange), fileSize: 0 } });
      if (g % 5 === 4) {
        const img = { start: lsnAdd(lsnRange.end, -1), end: lsnRange.end };
        layers.push({ desc: { kind: "image", keyRange: kr(r), lsnRange: img, fileName: imageLayerName(kr(r), img.start), fileSize: 0 } });
      }
    }
  }
  let t0 = performance.now();
  const map = new LayerMap(layers);
  rows.push(row(`layer map build (${layers.length} layers)`, "ms", performance.now() - t0));
  const N = 500_000;
  let sink = 0;
  t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const r = map.search(key((i * 7919) % (RANGES * 1000)), asLsn(0x1000 + ((i * 104729) % (GENS * 0x1000)) + 1));
    if (r !== null) sink += r.floor;
  }
  const s = (performance.now() - t0) / 1000;
  if (sink === 0) throw new Error("layer map search found nothing");
  rows.push(row(`layer map search (${layers.length} layers)`, "ops/s", N / s));
}

export default async function run(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  layerMapBench(rows);
  await putBench(rows);
  await getBench(rows, true);
  await getBench(rows, false);
  await commitTimeBench(rows);
  return rows;
}
