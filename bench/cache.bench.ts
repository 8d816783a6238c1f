/**
 * Page cache benchmark: our SharedArrayBuffer PageCache against `lru-cache` (v11) holding
 * 8 KiB Buffers with the same copy-out semantics (get → copy into the caller's buffer; miss →
 * fill a pattern, set, copy).
 *
 *  - hit lookups: one zipfian trace (TRACE_LEN accesses over DISTINCT blocks, s = 1.0,
 *    pre-generated), the cache big enough for every block, warmed first, so every measured
 *    lookup is a hit. Ours in one thread against lru-cache in one thread; ours in the main
 *    thread + 1 worker sharing one cache against two threads each with its own lru-cache (a
 *    Map-based cache cannot be shared, so that is the only way it uses two threads: at twice
 *    the memory), both as aggregate ops/s over the span from the first start to the last end.
 *  - zero-copy hits: ours pins the slot and reads the page in place (pinBlock / pageView /
 *    unpinSlot) against lru-cache returning its Buffer: the lookup machinery without the copy
 *    (a copy out of a SharedArrayBuffer is ~2.5× slower than between ArrayBuffers in V8, which
 *    dominates the copy-out rows).
 *  - misses: a tiny cache and a stream of distinct blocks, so each access is a miss, a fill,
 *    an insert and an eviction. lru-cache reuses the evicted entry's buffer (pop, fill, set),
 *    as ours reuses the evicted slot.
 *
 * Both sides must return the same bytes: every pass returns a checksum of what it read
 * (bytes from the block's stamp, its middle and its end, summed, so independent of order),
 * and the checksums of ours and lru-cache over the same accesses must be equal; once, untimed,
 * every page of the trace is compared byte for byte. The bench fails otherwise.
 *
 * CACHE_BENCH_TRACE_LEN and CACHE_BENCH_DISTINCT shrink the workload (for a quick check that
 * the bench works; numbers from a small run mean little).
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

const TRACE_LEN = Number(process.env["CACHE_BENCH_TRACE_LEN"] ?? 1_000_000);
const DISTINCT = Number(process.env["CACHE_BENCH_DISTINCT"] ?? 100_000);
const ZIPF_S = 1.0;
/** Files the distinct blocks are spread over: block rank r is (file r % FILES, blkno r / FILES). */
const FILES = 8;
const HIT_CACHE_SLOTS = DISTINCT + 2_400; // 800 MiB at the default size: every distinct block fits
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
      if (cdf[mid]! < u) lo = mid + 1;
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

/** Bytes of a returned page a checksum sums: the stamp (block, file), a template byte, the last. */
function pageCheck(p: Uint8Array): number {
  return p[0]! + p[1]! * 3 + p[2]! * 5 + p[4097]! * 7 + p[PAGE_SIZE - 1]! * 11;
}

/** Replays trace[from, from + count) (wrapping) through our cache; returns a checksum of the copies. */
function replayOurs(cache: PageCache, sources: PatternSource[], trace: Int32Array, from: number, count: number, dst: Uint8Array): number {
  let check = 0;
  const n = trace.length;
  for (let i = 0; i < count; i++) {
    const rank = trace[(from + i) % n]!;
    const src = sources[rank % FILES]!;
    cache.readBlock(PageKind.FileBlock, src.fileId, (rank / FILES) | 0, src, dst);
    check += pageCheck(dst);
  }
  return check;
}

/** Zero-copy hits: pin, read the page in place, unpin. */
function replayOursPinned(cache: PageCache, sources: PatternSource[], trace: Int32Array): number {
  let check = 0;
  for (let i = 0; i < trace.length; i++) {
    const rank = trace[i]!;
    const src = sources[rank % FILES]!;
    const slot = cache.pinBlock(PageKind.FileBlock, src.fileId, (rank / FILES) | 0, src);
    check += pageCheck(cache.pageView(slot));
    cache.unpinSlot(slot);
  }
  return check;
}

function replayLruNoCopy(lru: LRUCache<number, Buffer>, fileIds: number[], trace: Int32Array): number {
  let check = 0;
  for (let i = 0; i < trace.length; i++) {
    const rank = trace[i]!;
    const fileId = fileIds[rank % FILES]!;
    const blkno = (rank / FILES) | 0;
    const page = lru.get(fileId * 0x10_0000 + blkno);
    if (page === undefined) throw new Error("cache bench: lru-cache missed in a hit pass");
    check += pageCheck(page);
  }
  return check;
}

/** A miss of lru-cache: the evicted entry's buffer is reused once the cache is full, as ours reuses a slot. */
function lruFill(lru: LRUCache<number, Buffer>, key: number, fileId: number, blkno: number): Buffer {
  const page = lru.size >= lru.max ? (lru.pop() ?? Buffer.allocUnsafeSlow(PAGE_SIZE)) : Buffer.allocUnsafeSlow(PAGE_SIZE);
  fillPattern(fileId, blkno, page);
  lru.set(key, page);
  return page;
}

/** Replays trace[from, from + count) (wrapping) through lru-cache; returns a checksum of the copies. */
function replayLru(
  lru: LRUCache<number, Buffer>,
  fileIds: number[],
  trace: Int32Array,
  dst: Uint8Array,
  from = 0,
  count = trace.length,
): number {
  let check = 0;
  const n = trace.length;
  for (let i = 0; i < count; i++) {
    const rank = trace[(from + i) % n]!;
    const fileId = fileIds[rank % FILES]!;
    const blkno = (rank / FILES) | 0;
    // A small-integer key (no string, no heap number): the cheapest key lru-cache can get.
    const key = fileId * 0x10_0000 + blkno;
    const page = lru.get(key) ?? lruFill(lru, key, fileId, blkno);
    dst.set(page);
    check += pageCheck(dst);
  }
  return check;
}

/** Untimed: every access of the trace returns the same 8 KiB from both caches. */
function compareAllBytes(
  cache: PageCache,
  sources: PatternSource[],
  lru: LRUCache<number, Buffer>,
  fileIds: number[],
  trace: Int32Array,
): void {
  const ours = Buffer.alloc(PAGE_SIZE);
  for (let i = 0; i < trace.length; i++) {
    const rank = trace[i]!;
    const src = sources[rank % FILES]!;
    const blkno = (rank / FILES) | 0;
    cache.readBlock(PageKind.FileBlock, src.fileId, blkno, src, ours);
    const theirs = lru.get(fileIds[rank % FILES]! * 0x10_0000 + blkno);
    if (theirs === undefined || !ours.equals(theirs))
      throw new Error(`cache bench: block ${src.fileId}/${blkno} differs between ours and lru-cache`);
  }
}

/** The bench fails when two sides read different bytes. */
function sameCheck(what: string, ours: number, theirs: number): void {
  if (ours !== theirs) throw new Error(`cache bench: ${what}: checksum ${ours} (ours) != ${theirs} (lru-cache)`);
}

function opsPerSec(ops: number, ms: number): number {
  return ms > 0 ? (ops * 1000) / ms : 0;
}

/** Best ops/s of REPEATS runs; every run's checksum must be `check`. */
function best(what: string, check: number, run: () => { opsPerSec: number; check: number }): number {
  let top = 0;
  for (let i = 0; i < REPEATS; i++) {
    const r = run();
    sameCheck(what, r.check, check);
    top = Math.max(top, r.opsPerSec);
  }
  return top;
}

// ---- worker --------------------------------------------------------------------------------

interface BenchWorkerData {
  role: "cache-bench";
  /** Which cache the worker replays: the shared one (ours) or its own lru-cache. */
  cache: "ours" | "lru";
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
  const cache = data.cache === "ours" ? PageCache.attach(data.sab) : null;
  const lru = data.cache === "lru" ? new LRUCache<number, Buffer>({ max: HIT_CACHE_SLOTS }) : null;
  const control = new Int32Array(data.control);
  const sources = sourcesFor(data.fileIds);
  const dst = new Uint8Array(PAGE_SIZE);
  if (lru !== null) replayLru(lru, data.fileIds, data.trace, dst); // warm: every block of the trace cached
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
    const check =
      cache !== null
        ? replayOurs(cache, sources, data.trace, data.from, data.trace.length, dst)
        : replayLru(lru!, data.fileIds, data.trace, dst, data.from, data.trace.length);
    const end_ms = now_ms();
    parentPort?.postMessage({ type: "done", round, start_ms, end_ms, ops: data.trace.length, check } satisfies BenchWorkerReport);
  }
  cache?.detach();
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
  const api = pathToFileURL(join(dirname(pkgPath), pkg.exports["./esm/api"]!.import.default)).href;
  const url = pathToFileURL(file).href;
  const code = `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(url)}, ${JSON.stringify(url)}))`;
  return new Worker(code, { eval: true, workerData: data });
}

function nextReport(worker: Worker, type: "ready" | "done"): Promise<BenchWorkerReport> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`cache bench worker: no '${type}' within ${WORKER_DEADLINE_MS} ms`)),
      WORKER_DEADLINE_MS,
    );
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

/**
 * Aggregate hit ops/s of the main thread and one worker, best of REPEATS: the worker replays
 * the trace from its middle through `kind` (the shared cache, or its own warmed lru-cache)
 * while the main thread runs `mainPass`; ops over the span from the first start to the last
 * end. Both threads' checksums must be `check` (the trace's, in any order).
 */
async function twoThreads(
  kind: "ours" | "lru",
  cache: PageCache,
  trace: Int32Array,
  fileIds: number[],
  check: number,
  mainPass: () => number,
): Promise<number> {
  const control = new SharedArrayBuffer(4);
  const ctl = new Int32Array(control);
  const data: BenchWorkerData = { role: "cache-bench", cache: kind, sab: cache.shared, trace, fileIds, control, from: trace.length >>> 1 };
  const worker = startTsWorker(fileURLToPath(import.meta.url), data);
  let top = 0;
  try {
    await nextReport(worker, "ready");
    for (let round = 1; round <= REPEATS; round++) {
      const done = nextReport(worker, "done");
      Atomics.store(ctl, 0, round);
      Atomics.notify(ctl, 0);
      const start_ms = now_ms();
      const mine = mainPass();
      const end_ms = now_ms();
      const theirs = await done;
      sameCheck(`${kind}, two threads (main)`, mine, check);
      sameCheck(`${kind}, two threads (worker)`, theirs.check, check);
      const span_ms = Math.max(end_ms, theirs.end_ms) - Math.min(start_ms, theirs.start_ms);
      top = Math.max(top, opsPerSec(trace.length + theirs.ops, span_ms));
    }
    Atomics.store(ctl, 0, -1);
    Atomics.notify(ctl, 0);
  } finally {
    await worker.terminate();
  }
  return top;
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
  const traceCheck = replayOurs(cache, sources, trace, 0, trace.length, dst); // warm: every block of the trace cached
  const warm = cache.stats().byKind.file;

  // lru-cache, warmed the same way; both must hold the same bytes for every access.
  const lru = new LRUCache<number, Buffer>({ max: HIT_CACHE_SLOTS });
  sameCheck("warm-up", traceCheck, replayLru(lru, fileIds, trace, dst));
  compareAllBytes(cache, sources, lru, fileIds, trace);

  const timed = (pass: () => number) => (): { opsPerSec: number; check: number } => {
    const t0 = performance.now();
    const check = pass();
    return { opsPerSec: opsPerSec(trace.length, performance.now() - t0), check };
  };
  const oursSingle = best(
    "ours, copy-out hits",
    traceCheck,
    timed(() => replayOurs(cache, sources, trace, 0, trace.length, dst)),
  );
  const lruSingle = best(
    "lru-cache, copy-out hits",
    traceCheck,
    timed(() => replayLru(lru, fileIds, trace, dst)),
  );
  rows.push(row("hit lookups/s (single thread)", "ops/s", oursSingle, "lru-cache", lruSingle));
  const oursPinned = best(
    "ours, zero-copy hits",
    traceCheck,
    timed(() => replayOursPinned(cache, sources, trace)),
  );
  const lruNoCopy = best(
    "lru-cache, get without copy",
    traceCheck,
    timed(() => replayLruNoCopy(lru, fileIds, trace)),
  );
  rows.push(row("zero-copy hits/s (pinBlock+unpinSlot vs get)", "ops/s", oursPinned, "lru-cache get", lruNoCopy));
  if (cache.stats().byKind.file.misses !== warm.misses) throw new Error("cache bench: the measured passes were not all hits");

  // Hits, two threads: ours on one shared cache; lru-cache with one cache per thread.
  const oursDual = await twoThreads("ours", cache, trace, fileIds, traceCheck, () =>
    replayOurs(cache, sources, trace, 0, trace.length, dst),
  );
  const lruDual = await twoThreads("lru", cache, trace, fileIds, traceCheck, () => replayLru(lru, fileIds, trace, dst));
  if (cache.stats().byKind.file.misses !== warm.misses) throw new Error("cache bench: the two-thread passes were not all hits");
  rows.push(row("hit lookups/s (main + 1 worker, aggregate)", "ops/s", oursDual, "lru-cache (2 threads, a cache each)", lruDual));
  cache.detach();

  // Misses: every access fills, inserts and evicts.
  const tiny = PageCache.create({ size_bytes: MISS_CACHE_SLOTS * PAGE_SIZE });
  const tinySource = new PatternSource(tiny.allocFileId());
  const lruTiny = new LRUCache<number, Buffer>({ max: MISS_CACHE_SLOTS });
  let oursMiss = 0;
  let lruMiss = 0;
  for (let round = 0; round < REPEATS; round++) {
    // Fresh block numbers every round: all misses, the same ones on both sides.
    const from = round * MISS_ACCESSES;
    const base = tiny.stats().byKind.file.misses;
    let oursCheck = 0;
    let t0 = performance.now();
    for (let i = 0; i < MISS_ACCESSES; i++) {
      tiny.readBlock(PageKind.FileBlock, tinySource.fileId, from + i, tinySource, dst);
      oursCheck += pageCheck(dst);
    }
    oursMiss = Math.max(oursMiss, opsPerSec(MISS_ACCESSES, performance.now() - t0));
    if (tiny.stats().byKind.file.misses - base !== MISS_ACCESSES) throw new Error("cache bench: miss pass had hits");
    let lruCheck = 0;
    let lruHits = 0;
    t0 = performance.now();
    for (let i = 0; i < MISS_ACCESSES; i++) {
      const blkno = from + i;
      let page = lruTiny.get(blkno);
      if (page === undefined) page = lruFill(lruTiny, blkno, tinySource.fileId, blkno);
      else lruHits++;
      dst.set(page);
      lruCheck += pageCheck(dst);
    }
    lruMiss = Math.max(lruMiss, opsPerSec(MISS_ACCESSES, performance.now() - t0));
    if (lruHits !== 0) throw new Error("cache bench: lru-cache miss pass had hits");
    sameCheck(`misses, round ${round}`, oursCheck, lruCheck);
  }
  rows.push(row(`miss+fill+insert+evict/s (${MISS_CACHE_SLOTS}-slot cache)`, "ops/s", oursMiss, "lru-cache pop+fill+set", lruMiss));
  tiny.detach();
  return rows;
}
