/**
 * Page cache benchmark: our SharedArrayBuffer PageCache against `lru-cache` (v11) holding
 * 8 KiB Buffers with the same copy-out semantics (get → copy into the caller's buffer; miss →
 * fill a pattern, set, copy).
 *
 *  - hit lookups: one zipfian trace (TRACE_LEN accesses over DISTINCT blocks, s = 1.0,
 *    pre-generated), the cache big enough for every block, warmed first, so every measured
 *    lookup is a hit. Ours in one thread, ours in the main thread + 1 worker sharing the cache
 *    (aggregate ops/s over the span from the first start to the last end), lru-cache in one
 *    thread (it cannot be shared between threads).
 *  - zero-copy hits: ours pins the slot and reads the page in place (pinBlock / pageView /
 *    unpinSlot) against lru-cache returning its Buffer: the lookup machinery without the copy
 *    (a copy out of a SharedArrayBuffer is ~2.5× slower than between ArrayBuffers in V8, which
 *    dominates the copy-out rows).
 *  - misses: a tiny cache and a stream of distinct blocks, so each access is a miss, a fill,
 *    an insert and an eviction.
 *
 * This file is also the worker's script: with workerData.role "cache-bench" it attaches to the
 * cache and replays the trace.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { LRUCache } from "lru-cache";
import { type BlockSource, PAGE_SIZE, PageCache, PageKind } from "../src/cache/index.js";
import { type BenchRow, row } from "./harness.js";

const TRACE_LEN = 1_000_000;
const DISTINCT = 100_000;
const ZIPF_S = 1.0;
/** Files the distinct blocks are spread over: block rank r is (file r % FILES, blkno r / FILES). */
const FILES = 8;
const HIT_CACHE_SLOTS = 102_400; // 800 MiB: every distinct block fits
const MISS_CACHE_SLOTS = 64;
const MISS_ACCESSES = 200_000;
const REPEATS = 3;
const WORKER_DEADLINE_MS = 60_000;

// ---- workload ------------------------------------------------------------------------------

/** xorshift32, so the trace is the same on every run. */
function rng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

/** TRACE_LEN block ranks drawn from a zipfian distribution over [0, DISTINCT), in shared memory. */
function zipfTrace(): Int32Array {
  const cdf = new Float64Array(DISTINCT);
  let sum = 0;
  for (let r = 0; r < DISTINCT; r++) {
    sum += 1 / (r + 1) ** ZIPF_S;
    cdf[r] = sum;
  }
  const trace = new Int32Array(new SharedArrayBuffer(TRACE_LEN * 4));
  const rand = rng(0x5eed);
  for (let i = 0; i < TRACE_LEN; i++) {
    const u = rand() * sum;
    let lo = 0;
    let hi = DISTINCT - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    trace[i] = lo;
  }
  return trace;
}

/** A prepared page in ordinary memory: a fill copies it, as a read from a file or a decoder would. */
const TEMPLATE = new Uint8Array(PAGE_SIZE).map((_, i) => (i * 131) & 0xff);

/**
 * What a block "is", identical for both caches: a copy of the template stamped with the block.
 * (Not `dst.fill()`: V8 fills a SharedArrayBuffer view byte by byte, ~20× slower than a copy.)
 */
function fillPattern(fileId: number, blkno: number, dst: Uint8Array): void {
  dst.set(TEMPLATE);
  dst[0] = blkno & 0xff;
  dst[1] = (blkno >>> 8) & 0xff;
  dst[2] = fileId & 0xff;
}

class PatternSource implements BlockSource {
  constructor(readonly fileId: number) {}
  readBlockInto(blkno: number, dst: Uint8Array): void {
    fillPattern(this.fileId, blkno, dst);
  }
}

function sourcesFor(fileIds: number[]): PatternSource[] {
  return fileIds.map((id) => new PatternSource(id));
}

/** Replays trace[from, from + count) (wrapping) through our cache; returns a checksum of the copies. */
function replayOurs(cache: PageCache, sources: PatternSource[], trace: Int32Array, from: number, count: number, dst: Uint8Array): number {
  let check = 0;
  const n = trace.length;
  for (let i = 0; i < count; i++) {
    const rank = trace[(from + i) % n];
    const src = sources[rank % FILES];
    cache.readBlock(PageKind.FileBlock, src.fileId, (rank / FILES) | 0, src, dst);
    check += dst[0];
  }
  return check;
}

/** Zero-copy hits: pin, read the page in place, unpin. */
function replayOursPinned(cache: PageCache, sources: PatternSource[], trace: Int32Array): number {
  let check = 0;
  for (let i = 0; i < trace.length; i++) {
    const rank = trace[i];
    const src = sources[rank % FILES];
    const slot = cache.pinBlock(PageKind.FileBlock, src.fileId, (rank / FILES) | 0, src);
    check += cache.pageView(slot)[0];
    cache.unpinSlot(slot);
  }
  return check;
}

function replayLruNoCopy(lru: LRUCache<number, Buffer>, fileIds: number[], trace: Int32Array): number {
  let check = 0;
  for (let i = 0; i < trace.length; i++) {
    const rank = trace[i];
    const fileId = fileIds[rank % FILES];
    const blkno = (rank / FILES) | 0;
    const page = lru.get(fileId * 0x10_0000 + blkno);
    if (page === undefined) throw new Error("cache bench: lru-cache missed in a hit pass");
    check += page[0];
  }
  return check;
}

function replayLru(lru: LRUCache<number, Buffer>, fileIds: number[], trace: Int32Array, dst: Uint8Array): number {
  let check = 0;
  for (let i = 0; i < trace.length; i++) {
    const rank = trace[i];
    const fileId = fileIds[rank % FILES];
    const blkno = (rank / FILES) | 0;
    // A small-integer key (no string, no heap number): the cheapest key lru-cache can get.
    const key = fileId * 0x10_0000 + blkno;
    let page = lru.get(key);
    if (page === undefined) {
      page = Buffer.allocUnsafeSlow(PAGE_SIZE);
      fillPattern(fileId, blkno, page);
      lru.set(key, page);
    }
    dst.set(page);
    check += dst[0];
  }
  return check;
}

function opsPerSec(ops: number, ms: number): number {
  return ms > 0 ? (ops * 1000) / ms : 0;
}

function best(run: () => number): number {
  let top = 0;
  for (let i = 0; i < REPEATS; i++) top = Math.max(top, run());
  return top;
}

// ---- worker --------------------------------------------------------------------------------

interface BenchWorkerData {
  role: "cache-bench";
  sab: SharedArrayBuffer;
  trace: Int32Array;
  fileIds: number[];
  /** Int32 word 0: round number the main thread starts (0 = wait, -1 = exit). */
  control: SharedArrayBuffer;
  from: number;
}

interface BenchWorkerReport {
  type: "ready" | "done";
  round: number;
  start_ms: number;
  end_ms: number;
  ops: number;
  check: number;
}

function now_ms(): number {
  return performance.timeOrigin + performance.now();
}

function benchWorker(data: BenchWorkerData): void {
  const cache = PageCache.attach(data.sab);
  const control = new Int32Array(data.control);
  const sources = sourcesFor(data.fileIds);
  const dst = new Uint8Array(PAGE_SIZE);
  const give_up_ms = performance.now() + WORKER_DEADLINE_MS;
  parentPort?.postMessage({ type: "ready", round: 0, start_ms: 0, end_ms: 0, ops: 0, check: 0 } satisfies BenchWorkerReport);
  for (let round = 1; ; round++) {
    while (Atomics.load(control, 0) < round) {
      if (Atomics.load(control, 0) === -1) break;
      if (performance.now() > give_up_ms) throw new Error("cache bench worker: no start signal");
      Atomics.wait(control, 0, Atomics.load(control, 0), 100);
    }
    if (Atomics.load(control, 0) === -1) break;
    const start_ms = now_ms();
    const check = replayOurs(cache, sources, data.trace, data.from, data.trace.length, dst);
    const end_ms = now_ms();
    parentPort?.postMessage({ type: "done", round, start_ms, end_ms, ops: data.trace.length, check } satisfies BenchWorkerReport);
  }
  cache.detach();
}

const wd = workerData as BenchWorkerData | null | undefined;
if (!isMainThread && wd !== null && wd !== undefined && typeof wd === "object" && wd.role === "cache-bench") benchWorker(wd);

/**
 * A worker running this TypeScript file. On Node 20.20 `execArgv: ["--import", "tsx"]` does
 * not cover a `.ts` worker entry, so a one-line bootstrap loads it through tsx's tsImport.
 */
function startTsWorker(file: string, data: BenchWorkerData): Worker {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve("tsx/package.json");
  const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as { exports: Record<string, { import: { default: string } }> };
  const api = pathToFileURL(join(dirname(pkgPath), pkg.exports["./esm/api"].import.default)).href;
  const url = pathToFileURL(file).href;
  const code = `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(url)}, ${JSON.stringify(url)}))`;
  return new Worker(code, { eval: true, workerData: data });
}

function nextReport(worker: Worker, type: "ready" | "done"): Promise<BenchWorkerReport> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cache bench worker: no '${type}' within ${WORKER_DEADLINE_MS} ms`)), WORKER_DEADLINE_MS);
    const onMessage = (msg: BenchWorkerReport): void => {
      if (msg.type !== type) return;
      clearTimeout(timer);
      worker.off("message", onMessage);
      worker.off("error", onError);
      resolve(msg);
    };
    const onError = (e: Error): void => {
      clearTimeout(timer);
      reject(e);
    };
    worker.on("message", onMessage);
    worker.once("error", onError);
  });
}

// ---- the bench -----------------------------------------------------------------------------

export default async function run(): Promise<BenchRow[]> {
  const trace = zipfTrace();
  const dst = new Uint8Array(PAGE_SIZE);
  const rows: BenchRow[] = [];

  // Hits, ours, one thread.
  const cache = PageCache.create({ size_bytes: HIT_CACHE_SLOTS * PAGE_SIZE });
  const fileIds = Array.from({ length: FILES }, () => cache.allocFileId());
  const sources = sourcesFor(fileIds);
  replayOurs(cache, sources, trace, 0, trace.length, dst); // warm: every block of the trace cached
  const warm = cache.stats().byKind.file;
  const oursSingle = best(() => {
    const t0 = performance.now();
    replayOurs(cache, sources, trace, 0, trace.length, dst);
    return opsPerSec(trace.length, performance.now() - t0);
  });
  const after = cache.stats().byKind.file;
  if (after.misses !== warm.misses) throw new Error("cache bench: the measured passes were not all hits");

  // Hits, lru-cache, one thread.
  const lru = new LRUCache<number, Buffer>({ max: HIT_CACHE_SLOTS });
  replayLru(lru, fileIds, trace, dst);
  const lruSingle = best(() => {
    const t0 = performance.now();
    replayLru(lru, fileIds, trace, dst);
    return opsPerSec(trace.length, performance.now() - t0);
  });
  rows.push(row("hit lookups/s (single thread)", "ops/s", oursSingle, "lru-cache", lruSingle));
  const oursPinned = best(() => {
    const t0 = performance.now();
    replayOursPinned(cache, sources, trace);
    return opsPerSec(trace.length, performance.now() - t0);
  });
  const lruNoCopy = best(() => {
    const t0 = performance.now();
    replayLruNoCopy(lru, fileIds, trace);
    return opsPerSec(trace.length, performance.now() - t0);
  });
  rows.push(row("zero-copy hits/s (pinBlock+unpinSlot vs get)", "ops/s", oursPinned, "lru-cache get", lruNoCopy));

  // Hits, ours, main + 1 worker on the same cache.
  const control = new SharedArrayBuffer(4);
  const ctl = new Int32Array(control);
  const data: BenchWorkerData = { role: "cache-bench", sab: cache.shared, trace, fileIds, control, from: trace.length >>> 1 };
  const worker = startTsWorker(fileURLToPath(import.meta.url), data);
  let oursDual = 0;
  try {
    await nextReport(worker, "ready");
    for (let round = 1; round <= REPEATS; round++) {
      const done = nextReport(worker, "done");
      Atomics.store(ctl, 0, round);
      Atomics.notify(ctl, 0);
      const start_ms = now_ms();
      replayOurs(cache, sources, trace, 0, trace.length, dst);
      const end_ms = now_ms();
      const theirs = await done;
      const span_ms = Math.max(end_ms, theirs.end_ms) - Math.min(start_ms, theirs.start_ms);
      oursDual = Math.max(oursDual, opsPerSec(trace.length + theirs.ops, span_ms));
    }
    Atomics.store(ctl, 0, -1);
    Atomics.notify(ctl, 0);
  } finally {
    await worker.terminate();
  }
  rows.push(row("hit lookups/s (main + 1 worker, aggregate)", "ops/s", oursDual, "lru-cache (1 thread)", lruSingle));
  cache.detach();

  // Misses: every access fills, inserts and evicts.
  const tiny = PageCache.create({ size_bytes: MISS_CACHE_SLOTS * PAGE_SIZE });
  const tinySource = new PatternSource(tiny.allocFileId());
  const oursMiss = best(() => {
    const base = tiny.stats().byKind.file.misses;
    const from = base; // fresh block numbers every repeat: all misses
    const t0 = performance.now();
    for (let i = 0; i < MISS_ACCESSES; i++) tiny.readBlock(PageKind.FileBlock, tinySource.fileId, from + i, tinySource, dst);
    const ms = performance.now() - t0;
    if (tiny.stats().byKind.file.misses - base !== MISS_ACCESSES) throw new Error("cache bench: miss pass had hits");
    return opsPerSec(MISS_ACCESSES, ms);
  });
  const lruTiny = new LRUCache<number, Buffer>({ max: MISS_CACHE_SLOTS });
  let lruNext = 0;
  const lruMiss = best(() => {
    const t0 = performance.now();
    for (let i = 0; i < MISS_ACCESSES; i++) {
      const blkno = lruNext++;
      let page = lruTiny.get(blkno);
      if (page === undefined) {
        page = Buffer.allocUnsafeSlow(PAGE_SIZE);
        fillPattern(1, blkno, page);
        lruTiny.set(blkno, page);
      }
      dst.set(page);
    }
    return opsPerSec(MISS_ACCESSES, performance.now() - t0);
  });
  rows.push(row(`miss+fill+insert+evict/s (${MISS_CACHE_SLOTS}-slot cache)`, "ops/s", oursMiss, "lru-cache set+evict", lruMiss));
  tiny.detach();
  return rows;
}
