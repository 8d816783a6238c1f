/**
 * Test support for src/cache, used two ways:
 *  - imported by the tests (main thread): page patterns with checksums, verification, and
 *    `runStress`, the loop every participant of the stress test runs;
 *  - run as a worker thread (`startTsWorker(url, workerData)`) with workerData.role "cache-stress" (attach the cache, wait for the go flag, run the
 *    loop, post the result) or "lock-holder" (hold a write lock for a while, for lock tests).
 *
 * Every page's content is derived from its key: a header naming the key, a pseudo-random fill
 * seeded by the key, and an FNV-1a checksum of everything before it in the last 4 bytes. So a
 * torn page, a page of another key, or a stale slot all fail verification.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { type BlockSource, PAGE_SIZE, PageCache, PageKind, rwWriteLock, rwWriteUnlock } from "../../src/cache/index.js";
import { readU32BE, writeU32BE } from "../../src/types/bytes.js";
import { CorruptionError } from "../../src/types/errors.js";
import type { Key } from "../../src/types/key.js";
import { KEY_SIZE, makeKey } from "../../src/types/key.js";
import { asLsn } from "../../src/types/lsn.js";

const BLOCK_MAGIC = 0x0b10c000;
const MAT_MAGIC = 0x3a7e0000;
const CHECKSUM_AT = PAGE_SIZE - 4;
const TWO_32 = 0x1_0000_0000;

function fnv1a(page: Uint8Array, end: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < end; i++) h = Math.imul(h ^ page[i]!, 0x01000193);
  return h >>> 0;
}

function seedOf(a: number, b: number, c: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35) ^ Math.imul(c + 0x7f4a7c15, 0x27d4eb2f);
  h ^= h >>> 15;
  return h === 0 ? 1 : h;
}

function fillRandom(page: Uint8Array, from: number, seed: number): void {
  let x = seed | 0;
  for (let i = from; i < CHECKSUM_AT; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    page[i] = x & 0xff;
  }
}

/** The content of block `blkno` of file `fileId` (of `kind`). */
export function fillBlockPattern(kind: number, fileId: number, blkno: number, page: Uint8Array): void {
  writeU32BE(page, 0, BLOCK_MAGIC | kind);
  writeU32BE(page, 4, fileId);
  writeU32BE(page, 8, blkno);
  fillRandom(page, 12, seedOf(kind, fileId, blkno));
  writeU32BE(page, CHECKSUM_AT, fnv1a(page, CHECKSUM_AT));
}

/** Null when `page` is exactly what fillBlockPattern writes for the key, else what is wrong. */
export function verifyBlockPage(kind: number, fileId: number, blkno: number, page: Uint8Array): string | null {
  if (page.length !== PAGE_SIZE) return `page of ${page.length} bytes`;
  if (readU32BE(page, CHECKSUM_AT) !== fnv1a(page, CHECKSUM_AT)) return `checksum mismatch in block ${kind}/${fileId}/${blkno}`;
  const gotKind = readU32BE(page, 0) ^ BLOCK_MAGIC;
  const gotFile = readU32BE(page, 4);
  const gotBlk = readU32BE(page, 8);
  if (gotKind !== kind || gotFile !== fileId || gotBlk !== blkno) {
    return `expected block ${kind}/${fileId}/${blkno}, got ${gotKind}/${gotFile}/${gotBlk}`;
  }
  return null;
}

/** The content of version `lsn` of materialized page (ns, key). */
export function fillMaterializedPattern(ns: number, key: Key, lsn: number, page: Uint8Array): void {
  writeU32BE(page, 0, MAT_MAGIC);
  writeU32BE(page, 4, ns);
  for (let i = 0; i < KEY_SIZE; i++) page[8 + i] = key.charCodeAt(i);
  writeU32BE(page, 26, Math.floor(lsn / TWO_32));
  writeU32BE(page, 30, lsn >>> 0);
  let keySeed = 0;
  for (let i = 0; i < KEY_SIZE; i++) keySeed = Math.imul(keySeed ^ key.charCodeAt(i), 0x01000193);
  fillRandom(page, 34, seedOf(ns, keySeed, lsn >>> 0));
  writeU32BE(page, CHECKSUM_AT, fnv1a(page, CHECKSUM_AT));
}

export function verifyMaterializedPage(ns: number, key: Key, lsn: number, page: Uint8Array): string | null {
  if (page.length !== PAGE_SIZE) return `page of ${page.length} bytes`;
  if (readU32BE(page, CHECKSUM_AT) !== fnv1a(page, CHECKSUM_AT)) return `checksum mismatch in materialized page ns ${ns} lsn ${lsn}`;
  if (readU32BE(page, 0) !== MAT_MAGIC || readU32BE(page, 4) !== ns) return `materialized page header is not ns ${ns}`;
  for (let i = 0; i < KEY_SIZE; i++) if (page[8 + i] !== key.charCodeAt(i)) return `materialized page of another key (ns ${ns})`;
  const got = readU32BE(page, 26) * TWO_32 + readU32BE(page, 30);
  if (got !== lsn) return `materialized page of lsn ${got}, expected ${lsn}`;
  return null;
}

/** xorshift32: a deterministic per-thread random stream. */
export class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = seed | 0 || 1;
  }
  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x;
    return x >>> 0;
  }
  below(n: number): number {
    return this.next() % n;
  }
}

/** A block source that fills the pattern, and fails (like a checksum failure) at a given rate. */
export class PatternSource implements BlockSource {
  fills = 0;
  failures = 0;
  constructor(
    readonly kind: number,
    readonly fileId: number,
    private readonly rng: Rng | null = null,
    private readonly fail_permille = 0,
  ) {}
  readBlockInto(blkno: number, dst: Uint8Array): void {
    if (this.rng !== null && this.rng.below(1000) < this.fail_permille) {
      this.failures++;
      throw new CorruptionError(`stress-file-${this.fileId}`, blkno, "injected failure");
    }
    this.fills++;
    fillBlockPattern(this.kind, this.fileId, blkno, dst);
  }
}

export interface StressConfig {
  fileIds: number[];
  ephemeralIds: number[];
  ns: number;
  blocks_per_file: number;
  /** Blocks [0, hot_blocks) of each file get half the block reads: shared hot pages. */
  hot_blocks: number;
  keys: number;
  versions: number;
  iterations: number;
  time_limit_ms: number;
  seed: number;
  fail_permille: number;
  /** File ids this participant allocates, to check they are unique across threads. */
  alloc_ids: number;
}

export interface StressResult {
  iterations: number;
  block_reads: number;
  pinned_reads: number;
  mat_lookups: number;
  mat_hits: number;
  mat_inserts: number;
  verified: number;
  injected_failures: number;
  /** Blocks this participant's sources filled (each one a miss of this participant). */
  fills: number;
  errors: string[];
  ids: number[];
}

/** The LSN of version v (1-based) of every stress key: uses both u32 halves. */
export function versionLsn(v: number): number {
  return v * TWO_32 + v * 8;
}

export function stressKey(i: number): Key {
  return makeKey(0, 1663, 5, 16384 + (i % 3), 0, i);
}

const MAX_ERRORS = 20;

/** The loop of one stress participant; never throws (errors are collected and returned). */
export function runStress(cache: PageCache, cfg: StressConfig): StressResult {
  const rng = new Rng(cfg.seed);
  const fail_rng = new Rng(cfg.seed ^ 0x5bd1e995);
  const sources: PatternSource[] = [];
  for (const id of cfg.fileIds) sources.push(new PatternSource(PageKind.FileBlock, id, fail_rng, cfg.fail_permille));
  for (const id of cfg.ephemeralIds) sources.push(new PatternSource(PageKind.EphemeralBlock, id, fail_rng, cfg.fail_permille));
  const keys: Key[] = [];
  for (let i = 0; i < cfg.keys; i++) keys.push(stressKey(i));
  const dst = new Uint8Array(PAGE_SIZE);
  const page = new Uint8Array(PAGE_SIZE);
  const r: StressResult = {
    iterations: 0,
    block_reads: 0,
    pinned_reads: 0,
    mat_lookups: 0,
    mat_hits: 0,
    mat_inserts: 0,
    verified: 0,
    injected_failures: 0,
    fills: 0,
    errors: [],
    ids: [],
  };
  const fail = (msg: string): void => {
    if (r.errors.length < MAX_ERRORS) r.errors.push(msg);
  };
  const deadline_ms = performance.now() + cfg.time_limit_ms;
  for (let i = 0; i < cfg.alloc_ids; i++) r.ids.push(cache.allocFileId());
  for (let i = 0; i < cfg.iterations; i++) {
    if ((i & 255) === 0 && performance.now() > deadline_ms) break;
    r.iterations++;
    const op = rng.below(100);
    try {
      if (op < 60) {
        const src = sources[rng.below(sources.length)]!;
        const blkno = rng.below(2) === 0 ? rng.below(cfg.hot_blocks) : rng.below(cfg.blocks_per_file);
        const kind = src.kind as PageKind.FileBlock | PageKind.EphemeralBlock;
        if (op < 50) {
          r.block_reads++;
          cache.readBlock(kind, src.fileId, blkno, src, dst);
          const bad = verifyBlockPage(kind, src.fileId, blkno, dst);
          if (bad !== null) fail(`readBlock: ${bad}`);
          else r.verified++;
        } else {
          r.pinned_reads++;
          const slot = cache.pinBlock(kind, src.fileId, blkno, src);
          try {
            const bad = verifyBlockPage(kind, src.fileId, blkno, cache.pageView(slot));
            if (bad !== null) fail(`pinBlock: ${bad}`);
            else r.verified++;
          } finally {
            cache.unpinSlot(slot);
          }
        }
      } else if (op < 85) {
        r.mat_lookups++;
        const k = rng.next() % 2 === 0 ? rng.below(Math.min(4, cfg.keys)) : rng.below(cfg.keys);
        const want = rng.below(cfg.versions + 2) * TWO_32 + rng.below(64);
        const key = keys[k]!;
        const got = cache.lookupMaterialized(cfg.ns, key, asLsn(want), dst);
        if (got >= 0) {
          r.mat_hits++;
          const v = Math.floor(got / TWO_32);
          if (got > want) fail(`lookupMaterialized(${want}) returned newer ${got}`);
          else if (v < 1 || v > cfg.versions || got !== versionLsn(v)) fail(`lookupMaterialized returned unknown lsn ${got}`);
          else {
            const bad = verifyMaterializedPage(cfg.ns, key, got, dst);
            if (bad !== null) fail(`lookupMaterialized: ${bad}`);
            else r.verified++;
          }
        }
      } else {
        r.mat_inserts++;
        const k = rng.below(cfg.keys);
        const lsn = versionLsn(1 + rng.below(cfg.versions));
        const key = keys[k]!;
        fillMaterializedPattern(cfg.ns, key, lsn, page);
        cache.insertMaterialized(cfg.ns, key, asLsn(lsn), page);
      }
    } catch (e) {
      if (e instanceof CorruptionError && e.message.includes("injected failure")) r.injected_failures++;
      else fail(`op ${op} threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
  }
  for (const s of sources) r.fills += s.fills;
  return r;
}

// ---- worker threads ------------------------------------------------------------------------

/**
 * Starts a worker thread running a TypeScript module. On Node 20.20 a `.ts` worker entry with
 * `execArgv: ["--import", "tsx"]` fails ("Unknown file extension .ts": the hooks that --import
 * registers do not cover the worker's entry), so the worker evaluates a one-line bootstrap
 * that loads the module through tsx's tsImport API (resolved from here, not from the cwd).
 */
export function startTsWorker(file: URL, data: unknown): Worker {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve("tsx/package.json");
  const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as { exports: Record<string, { import: { default: string } }> };
  const api = pathToFileURL(join(dirname(pkgPath), pkg.exports["./esm/api"]!.import.default)).href;
  const code = `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(file.href)}, ${JSON.stringify(file.href)}))`;
  return new Worker(code, { eval: true, workerData: data });
}

// ---- worker entry points -------------------------------------------------------------------

export interface StressWorkerData {
  role: "cache-stress";
  sab: SharedArrayBuffer;
  /** Int32 word 0: the go flag the main thread sets once every worker is ready. */
  control: SharedArrayBuffer;
  config: StressConfig;
  lock_timeout_ms: number;
}

export interface LockHolderData {
  role: "lock-holder";
  /** Int32 words: [at, at+1] the lock, [at+2] = 1 once locked, [at+3] = 1 just before unlocking. */
  words: SharedArrayBuffer;
  at: number;
  hold_ms: number;
}

export interface ReadOneData {
  role: "read-one";
  sab: SharedArrayBuffer;
  /**
   * Int32 words: [0] go flag set by the main thread, [1] set to 1 by the worker just before it
   * reads, [2] counts the worker's parks (Atomics.wait on the cache's memory) during its read.
   */
  control: SharedArrayBuffer;
  fileId: number;
  blkno: number;
}

export interface ReadOneResult {
  fills: number;
  verify: string | null;
  /** Times the worker parked in Atomics.wait on the cache's shared memory during its read. */
  parks: number;
  /** The cache's file-block counters (all threads) right after the worker's read. */
  hits: number;
  misses: number;
}

type WorkerMessage =
  | { type: "ready" }
  | { type: "locked" }
  | { type: "done"; result: StressResult }
  | { type: "read"; result: ReadOneResult }
  | { type: "error"; message: string };

function post(msg: WorkerMessage): void {
  parentPort?.postMessage(msg);
}

const GO_WAIT_LIMIT_MS = 30_000;

function stressWorker(data: StressWorkerData): void {
  const cache = PageCache.attach(data.sab, { lock_timeout_ms: data.lock_timeout_ms });
  const control = new Int32Array(data.control);
  post({ type: "ready" });
  const give_up_ms = performance.now() + GO_WAIT_LIMIT_MS;
  while (Atomics.load(control, 0) === 0) {
    if (performance.now() > give_up_ms) throw new Error("stress worker: no go signal");
    Atomics.wait(control, 0, 0, 50);
  }
  const result = runStress(cache, data.config);
  cache.detach();
  post({ type: "done", result });
}

/**
 * Waits for the go flag, reads one file block (its own source counts fills), reports. Every
 * Atomics.wait the read makes on the cache's memory (a park on a lock) is counted in control
 * word 2, and the main thread is woken on it, so it can hold a fill until the reader parked.
 */
function readOne(data: ReadOneData): void {
  const cache = PageCache.attach(data.sab);
  const control = new Int32Array(data.control);
  post({ type: "ready" });
  const give_up_ms = performance.now() + GO_WAIT_LIMIT_MS;
  while (Atomics.load(control, 0) === 0) {
    if (performance.now() > give_up_ms) throw new Error("read-one worker: no go signal");
    Atomics.wait(control, 0, 0, 50);
  }
  const src = new PatternSource(PageKind.FileBlock, data.fileId);
  const dst = new Uint8Array(PAGE_SIZE);
  const realWait = Atomics.wait;
  Atomics.wait = ((arr: Int32Array, index: number, value: number, timeout?: number) => {
    if (arr.buffer === data.sab) {
      Atomics.add(control, 2, 1);
      Atomics.notify(control, 2);
    }
    return realWait(arr, index, value, timeout);
  }) as typeof Atomics.wait;
  Atomics.store(control, 1, 1);
  Atomics.notify(control, 1);
  try {
    cache.readBlock(PageKind.FileBlock, data.fileId, data.blkno, src, dst);
  } finally {
    Atomics.wait = realWait;
  }
  const after = cache.stats().byKind.file;
  cache.detach();
  const verify = verifyBlockPage(PageKind.FileBlock, data.fileId, data.blkno, dst);
  post({ type: "read", result: { fills: src.fills, verify, parks: Atomics.load(control, 2), hits: after.hits, misses: after.misses } });
}

function lockHolder(data: LockHolderData): void {
  const words = new Int32Array(data.words);
  rwWriteLock(words, data.at, 5_000);
  Atomics.store(words, data.at + 2, 1);
  post({ type: "locked" });
  // Sleep while holding the lock (bounded wait on a word nobody changes).
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(sleeper, 0, 0, data.hold_ms);
  Atomics.store(words, data.at + 3, 1);
  rwWriteUnlock(words, data.at);
}

const wd = workerData as StressWorkerData | LockHolderData | ReadOneData | null | undefined;
if (!isMainThread && wd !== null && wd !== undefined && typeof wd === "object") {
  try {
    if (wd.role === "cache-stress") stressWorker(wd);
    else if (wd.role === "lock-holder") lockHolder(wd);
    else if (wd.role === "read-one") readOne(wd);
  } catch (e) {
    post({ type: "error", message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }
}
