/**
 * Stress: the main thread and two worker threads hammer one shared PageCache much smaller than
 * their working set (constant eviction), with overlapping hot keys, file and ephemeral blocks
 * (copied and pinned zero-copy reads), materialized page lookups and inserts, and fills that
 * fail now and then. Every page read is verified against its key and checksum. Each
 * participant stops at its iteration count or its time limit; the test fails if the workers
 * do not report back in time (a deadlock), and checks the cache's structure afterwards.
 * Nothing here asserts on speed.
 */
import type { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, PageCache } from "../src/cache/index.js";
import { type BlockSource, PageKind } from "../src/cache/index.js";
import { CorruptionError } from "../src/types/errors.js";
import {
  fillBlockPattern,
  type ReadOneData,
  type ReadOneResult,
  runStress,
  type StressConfig,
  type StressResult,
  type StressWorkerData,
  startTsWorker,
  verifyBlockPage,
} from "./support/cache_stress_worker.js";

const WORKERS = 2;
const ITERATIONS = 150_000;
const TIME_LIMIT_MS = 6_000;
/** How long the workers may take to start, run and report before the test calls it a hang. */
const WORKER_DEADLINE_MS = 25_000;

type Msg =
  | { type: "ready" }
  | { type: "done"; result: StressResult }
  | { type: "read"; result: ReadOneResult }
  | { type: "error"; message: string };

function waitFor(worker: Worker, type: "ready" | "done" | "read", deadline_ms: number): Promise<StressResult | ReadOneResult | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not report '${type}' within ${deadline_ms} ms (deadlock?)`)), deadline_ms);
    const onMessage = (msg: Msg): void => {
      if (msg.type === "error") {
        clearTimeout(timer);
        reject(new Error(`worker failed: ${msg.message}`));
      } else if (msg.type === type) {
        clearTimeout(timer);
        worker.off("message", onMessage);
        resolve(msg.type === "done" || msg.type === "read" ? msg.result : null);
      }
    };
    worker.on("message", onMessage);
    worker.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

describe("PageCache under concurrent load", () => {
  it("main + 2 workers on one small cache: every read verified, no deadlock, structure intact", async () => {
    const cache = PageCache.create({ size_bytes: 96 * PAGE_SIZE, stripes: 8, lock_timeout_ms: 5_000 });
    const base: Omit<StressConfig, "seed"> = {
      fileIds: [cache.allocFileId(), cache.allocFileId(), cache.allocFileId()],
      ephemeralIds: [cache.allocFileId()],
      ns: cache.allocNamespaceId(),
      blocks_per_file: 96, // 4 files × 96 blocks + 24 keys × 8 versions ≫ 96 slots
      hot_blocks: 6,
      keys: 24,
      versions: 8,
      iterations: ITERATIONS,
      time_limit_ms: TIME_LIMIT_MS,
      fail_permille: 5,
      alloc_ids: 300,
    };
    const control = new SharedArrayBuffer(4);
    const workers: Worker[] = [];
    const url = new URL("./support/cache_stress_worker.ts", import.meta.url);
    try {
      for (let w = 0; w < WORKERS; w++) {
        const data: StressWorkerData = {
          role: "cache-stress",
          sab: cache.shared,
          control,
          config: { ...base, seed: 0x1234 + 7919 * (w + 1) },
          lock_timeout_ms: 5_000,
        };
        workers.push(startTsWorker(url, data));
      }
      await Promise.all(workers.map((w) => waitFor(w, "ready", WORKER_DEADLINE_MS)));
      const done = workers.map((w) => waitFor(w, "done", WORKER_DEADLINE_MS));
      // Listeners are set: let everyone go, and run the main thread's share synchronously.
      Atomics.store(new Int32Array(control), 0, 1);
      Atomics.notify(new Int32Array(control), 0);
      const mine = runStress(cache, { ...base, seed: 0x1234 });
      const results = [mine, ...((await Promise.all(done)) as StressResult[])];

      for (const r of results) {
        expect(r.errors).toEqual([]);
        expect(r.iterations).toBeGreaterThan(1000);
        expect(r.verified).toBeGreaterThan(0);
        expect(r.block_reads + r.pinned_reads + r.mat_lookups + r.mat_inserts).toBe(r.iterations);
      }
      // Ids from every thread are unique and never 0.
      const ids = results.flatMap((r) => r.ids);
      expect(new Set(ids).size).toBe(ids.length);
      expect(Math.min(...ids)).toBeGreaterThan(0);

      const inv = cache.checkInvariants();
      expect(inv.valid + inv.free).toBe(96);
      const s = cache.stats().byKind;
      const reads = results.reduce((n, r) => n + r.block_reads + r.pinned_reads, 0);
      const lookups = results.reduce((n, r) => n + r.mat_lookups, 0);
      const matHits = results.reduce((n, r) => n + r.mat_hits, 0);
      const injected = results.reduce((n, r) => n + r.injected_failures, 0);
      // Every block access is at least one hit or miss (a retry after a failed fill adds one).
      expect(s.file.hits + s.file.misses + s.ephemeral.hits + s.ephemeral.misses).toBeGreaterThanOrEqual(reads);
      expect(s.materialized.hits).toBe(matHits);
      expect(s.materialized.hits + s.materialized.misses).toBe(lookups);
      expect(s.file.evictions + s.ephemeral.evictions + s.materialized.evictions).toBeGreaterThan(1000);
      expect(s.file.hits).toBeGreaterThan(0);
      expect(injected).toBeGreaterThan(0);
      // Every call of a source (a fill or an injected failure) comes from a miss of its thread;
      // a miss without one found the block linked by another thread meanwhile.
      const fills = results.reduce((n, r) => n + r.fills, 0);
      expect(fills).toBeGreaterThan(0);
      expect(fills + injected).toBeLessThanOrEqual(s.file.misses + s.ephemeral.misses);
      console.log(
        `stress: ${results.map((r) => r.iterations).join(" + ")} iterations, ${results.reduce((n, r) => n + r.verified, 0)} pages verified, ` +
          `${injected} injected fill failures, stats ${JSON.stringify(s)}`,
      );
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
  });

  /**
   * The main thread fills a block slowly (its source waits until the worker is about to read
   * the same block, then until the worker has parked on a lock of the cache); the worker must
   * park on the slot being filled and then get the main thread's page without filling it
   * itself: one miss (ours), one hit (its). If the main thread's fill fails instead, the worker
   * must not see it and fills the block itself: its hit is followed by its own miss.
   */
  for (const fillFails of [false, true]) {
    it(`a reader in another thread waits for a fill in progress (fill ${fillFails ? "fails" : "succeeds"})`, async () => {
      const cache = PageCache.create({ size_bytes: 8 * PAGE_SIZE });
      const fileId = cache.allocFileId();
      const control = new SharedArrayBuffer(12);
      const ctl = new Int32Array(control);
      const data: ReadOneData = { role: "read-one", sab: cache.shared, control, fileId, blkno: 3 };
      const worker = startTsWorker(new URL("./support/cache_stress_worker.ts", import.meta.url), data);
      try {
        await waitFor(worker, "ready", WORKER_DEADLINE_MS);
        const read = waitFor(worker, "read", WORKER_DEADLINE_MS);
        let mainFills = 0;
        const slow: BlockSource = {
          readBlockInto(blkno: number, dst: Uint8Array): void {
            Atomics.store(ctl, 0, 1);
            Atomics.notify(ctl, 0);
            for (let i = 0; i < 200 && Atomics.load(ctl, 1) === 0; i++) Atomics.wait(ctl, 1, 0, 50);
            // Hold the fill until the reader parks (bounded: a reader that never parks fails below).
            for (let i = 0; i < 100 && Atomics.load(ctl, 2) === 0; i++) Atomics.wait(ctl, 2, 0, 50);
            if (fillFails) throw new CorruptionError("slow-file", blkno, "injected failure");
            mainFills++;
            fillBlockPattern(PageKind.FileBlock, fileId, blkno, dst);
          },
        };
        const dst = new Uint8Array(PAGE_SIZE);
        if (fillFails) expect(() => cache.readBlock(PageKind.FileBlock, fileId, 3, slow, dst)).toThrow(CorruptionError);
        else {
          cache.readBlock(PageKind.FileBlock, fileId, 3, slow, dst);
          expect(verifyBlockPage(PageKind.FileBlock, fileId, 3, dst)).toBeNull();
        }
        const r = (await read) as ReadOneResult;
        expect(r.verify).toBeNull();
        expect(r.parks).toBeGreaterThan(0);
        expect(r.fills).toBe(fillFails ? 1 : 0);
        expect(mainFills).toBe(fillFails ? 0 : 1);
        // Ours: a miss. The worker's: a hit on the slot being filled, then (fill failed) a miss.
        expect({ hits: r.hits, misses: r.misses }).toEqual({ hits: 1, misses: fillFails ? 2 : 1 });
        const file = cache.stats().byKind.file;
        expect({ hits: file.hits, misses: file.misses }).toEqual({ hits: 1, misses: fillFails ? 2 : 1 });
        expect(cache.checkInvariants()).toEqual({ valid: 1, free: 7 });
      } finally {
        await worker.terminate();
      }
    });
  }
});
