/**
 * Ingest backpressure (issue 12): sustained synthetic ingest into a timeline whose flush and
 * compaction jobs are held back by test hooks (a JobRunner wrapping the real pools, passed as
 * the tenant's dependency). The frozen layers never exceed max_frozen_layers and the flush lag
 * stays below (max_frozen_layers + 1) × checkpoint_distance + one record; ingest stalls
 * (frozen limit, then the L0 stall threshold), is delayed between the L0 thresholds, and
 * resumes when the flush / compaction catch up; every read at every ingested LSN matches a
 * model. Also: the fair job queue serves tenants in turn.
 */
import { setImmediate as yieldNow } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { Backpressure } from "../src/tenant/ingest_gate.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { type Key, makeKey } from "../src/types/key.js";
import { asLsn, type Lsn } from "../src/types/lsn.js";
import { FairQueue } from "../src/workers/fair_queue.js";
import type { JobRunner } from "../src/workers/jobs.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { testAppend, testInit } from "./support/test_redo.js";
import { rng } from "./support/rng.js";

const KEYS = 40;
/** WAL bytes per synthetic record: about its value's size, as with full-page images. */
const LSN_STEP = 0x200;
const key = (n: number): Key => makeKey(0, 1663, 5, 1000, 0, n);
const dec = new TextDecoder();

/** A hook in front of a job kind: closed → jobs wait; open → they run after `delay_ms`. */
class Valve {
  private isOpen = true;
  private waiters: (() => void)[] = [];
  delay_ms = 0;
  passed = 0;
  close(): void {
    this.isOpen = false;
  }
  open(delay_ms = 0): void {
    this.delay_ms = delay_ms;
    this.isOpen = true;
    for (const w of this.waiters.splice(0)) w();
  }
  async pass(): Promise<void> {
    while (!this.isOpen) await new Promise<void>((r) => this.waiters.push(r));
    if (this.delay_ms > 0) await new Promise((r) => setTimeout(r, this.delay_ms));
    this.passed++;
  }
}

/** The real pools, with flush and compaction jobs passing their valve first. */
function hooked(pools: JobRunner, valves: { flush?: Valve; compact?: Valve }): JobRunner {
  return {
    flush: async (t, o) => {
      await valves.flush?.pass();
      return pools.flush(t, o);
    },
    compact: async (t, o) => {
      await valves.compact?.pass();
      return pools.compact(t, o);
    },
    images: (t, o) => pools.images(t, o),
    gc: (t, o) => pools.gc(t, o),
    importRun: (t, o) => pools.importRun(t, o),
    importMerge: (t, o) => pools.importMerge(t, o),
    redo: (t, o) => pools.redo(t, o),
  };
}

/** Per key, its writes in LSN order: an init replaces the value, an append extends it. */
class Model {
  readonly writes = new Map<number, { lsn: Lsn; init: boolean; text: string }[]>();
  add(k: number, lsn: Lsn, init: boolean, text: string): void {
    let w = this.writes.get(k);
    if (w === undefined) {
      w = [];
      this.writes.set(k, w);
    }
    w.push({ lsn, init, text });
  }
  has(k: number): boolean {
    return this.writes.has(k);
  }
  at(k: number, lsn: Lsn): string | null {
    const w = this.writes.get(k) ?? [];
    let out: string | null = null;
    for (const x of w) {
      if (x.lsn > lsn) break;
      out = x.init ? x.text : `${out}${x.text}`;
    }
    return out;
  }
}

let h: TenantHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe("ingest backpressure", () => {
  it("bounds the frozen layers, stalls and delays ingest until flush and compaction catch up, loses nothing", {
    timeout: 120_000,
  }, async () => {
    const flushValve = new Valve();
    const compactValve = new Valve();
    const MAX_FROZEN = 2;
    const CHECKPOINT_DISTANCE = 16384;
    h = new TenantHarness({
      conf: {
        checkpoint_distance: CHECKPOINT_DISTANCE,
        max_frozen_layers: MAX_FROZEN,
        compaction_threshold: 3,
        l0_flush_delay_threshold: 4,
        l0_flush_stall_threshold: 6,
        // Compaction runs when a flush wakes it (L0 files at the threshold), not on a timer.
        compaction_period: "1h",
      },
      jobs: (pools) => hooked(pools, { flush: flushValve, compact: compactValve }),
    });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
    const model = new Model();
    const lsns: Lsn[] = [];
    const writtenAt = new Map<Lsn, number>();
    const rand = rng(12);
    const pad = "x".repeat(400);
    let lsn = 0x1000;
    let parked = false;
    let maxFrozen = 0;
    let maxLag = 0;
    const waitsSeen = new Set<string>();

    /** The ingest loop as a WAL source runs it: ask the gate before every record. */
    const ingest = async (records: number): Promise<void> => {
      for (let i = 0; i < records; i++) {
        if (tl.ingestBackpressure() !== Backpressure.None) {
          waitsSeen.add(tl.backpressureStats.reason ?? "");
          parked = true;
          await tl.waitIngestCapacity();
          parked = false;
        }
        lsn += LSN_STEP;
        const k = Math.floor(rand() * KEYS);
        const init = !model.has(k) || rand() < 0.7;
        const text = init ? `${k}@${lsn}:${pad}` : `+${lsn}`;
        tl.put(key(k), asLsn(lsn), init ? testInit(text) : testAppend(text));
        tl.finishWrite(asLsn(lsn));
        model.add(k, asLsn(lsn), init, text);
        lsns.push(asLsn(lsn));
        writtenAt.set(asLsn(lsn), k);
        maxFrozen = Math.max(maxFrozen, tl.frozenCount);
        if (tl.frozenCount > MAX_FROZEN) throw new Error(`${tl.frozenCount} frozen layers at ${lsn}`);
        // The flush lag in WAL bytes: at most max_frozen_layers + 1 layers of checkpoint_distance, plus a record.
        maxLag = Math.max(maxLag, tl.lastRecordLsn - tl.diskConsistentLsn);
        if (maxLag > (MAX_FROZEN + 1) * CHECKPOINT_DISTANCE + LSN_STEP) throw new Error(`flush lag ${maxLag} at ${lsn}`);
        // Let flush results land now and then, as the walreceiver's yields do.
        if (i % 16 === 15) await yieldNow();
      }
    };
    const until = async (what: string, cond: () => boolean): Promise<void> => {
      for (let i = 0; !cond(); i++) {
        if (i > 3000) throw new Error(`timed out waiting for: ${what}; ${JSON.stringify(tl.backpressureStats)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    // 1. Flushes held back: ingest fills max_frozen_layers and stops there.
    flushValve.close();
    const phase1 = ingest(1500);
    await until("ingest stalls on the frozen limit", () => parked);
    expect(tl.frozenCount).toBe(MAX_FROZEN);
    const bp1 = tl.backpressureStats;
    expect(bp1.state).toBe(Backpressure.Stalled);
    expect(bp1.reason).toMatch(/max_frozen_layers 2/);
    const stalledAt = tl.lastRecordLsn;
    await new Promise((r) => setTimeout(r, 200));
    expect(parked).toBe(true);
    expect(tl.lastRecordLsn).toBe(stalledAt);
    // The flush catches up (slowly): ingest resumes and finishes.
    flushValve.open(5);
    await phase1;
    expect(tl.lastRecordLsn).toBeGreaterThan(stalledAt);

    // 2. Compaction held back: L0 files pile up to the delay, then the stall threshold.
    await until("compaction drains the first L0 files", () => tl.l0Count < 3 && tl.frozenCount === 0);
    compactValve.close();
    const delayedBefore = tl.backpressureStats.delayed_ms;
    const phase2 = ingest(3000);
    await until("ingest stalls on L0 files", () => parked && tl.l0Count >= 6);
    const bp2 = tl.backpressureStats;
    expect(bp2.state).toBe(Backpressure.Stalled);
    expect(bp2.reason).toMatch(/l0_flush_stall_threshold 6/);
    expect(tl.frozenCount).toBeLessThanOrEqual(MAX_FROZEN);
    // Between 4 and 6 L0 files every freeze made ingest wait for its flush.
    expect(tl.backpressureStats.delayed_ms).toBeGreaterThan(delayedBefore);
    expect([...waitsSeen].some((r) => /l0_flush_delay_threshold 4/.test(r))).toBe(true);
    compactValve.open();
    await phase2;
    expect(tl.l0Count).toBeLessThan(6);

    // 3. Everything flushed; nothing lost: every LSN reads as the model says.
    await tl.checkpoint();
    expect(tl.diskConsistentLsn).toBe(lsn);
    expect(maxFrozen).toBe(MAX_FROZEN);
    expect(maxLag).toBeGreaterThan(CHECKPOINT_DISTANCE);
    // The last flushes may have left L0 files at a threshold: compaction (woken) lowers them.
    await until("compaction settles", () => tl.ingestBackpressure() === Backpressure.None);
    const stats = tl.backpressureStats;
    expect(stats.state).toBe(Backpressure.None);
    expect(stats.stalled_ms).toBeGreaterThan(0);
    expect(stats.waits).toBeGreaterThanOrEqual(2);
    expect(tl.counters.flushes).toBeGreaterThan(20);
    expect(tl.counters.compactions).toBeGreaterThan(0);
    let reads = 0;
    for (let i = 0; i < lsns.length; i++) {
      const at = lsns[i]!;
      const other = (writtenAt.get(at)! + 1 + i) % KEYS;
      for (const k of [writtenAt.get(at)!, other]) {
        const got = tl.getNow(key(k), at);
        expect(got === null ? null : dec.decode(got), `key ${k} at ${at.toString(16)}`).toBe(model.at(k, at));
        reads++;
      }
    }
    expect(reads).toBe(2 * lsns.length);
  });

  it("a stopped ingest is not left waiting at the gate", async () => {
    const flushValve = new Valve();
    h = new TenantHarness({
      conf: { checkpoint_distance: 8192, max_frozen_layers: 1 },
      jobs: (pools) => hooked(pools, { flush: flushValve }),
    });
    const t = await h.create();
    const tl: Timeline = await t.createTimeline({ startLsn: asLsn(0x1000) });
    flushValve.close();
    let lsn = 0x1000;
    for (let i = 0; tl.ingestBackpressure() === Backpressure.None; i++) {
      expect(i).toBeLessThan(1000);
      lsn += 0x20;
      tl.put(key(i % KEYS), asLsn(lsn), testInit("y".repeat(600)));
      tl.finishWrite(asLsn(lsn));
    }
    const stop = new AbortController();
    const waiting = tl.waitIngestCapacity(stop.signal).then(
      () => "resolved",
      (e: Error) => e.message,
    );
    stop.abort();
    expect(await waiting).toMatch(/ingest stopped/);
    flushValve.open();
  });
});

describe("fair job queue", () => {
  it("serves owners in turn: one tenant's backlog does not queue another's job behind all of it", async () => {
    const q = new FairQueue(1, 100);
    const order: string[] = [];
    const releases: (() => void)[] = [];
    const job = (name: string) => () =>
      new Promise<string>((resolve) => {
        order.push(name);
        releases.push(() => resolve(name));
      });
    const all = [
      q.run("A", job("a1")),
      q.run("A", job("a2")),
      q.run("A", job("a3")),
      q.run("A", job("a4")),
      q.run("B", job("b1")),
      q.run("C", job("c1")),
      q.run("B", job("b2")),
    ];
    for (let i = 0; i < all.length; i++) {
      await yieldNow();
      expect(q.runningCount).toBe(1);
      releases.shift()!();
      await yieldNow();
    }
    await Promise.all(all);
    expect(order).toEqual(["a1", "a2", "b1", "c1", "a3", "b2", "a4"]);
  });

  it("refuses a job beyond its bound instead of buffering it", async () => {
    const q = new FairQueue(1, 2);
    let release = (): void => undefined;
    const first = q.run("A", () => new Promise<void>((r) => (release = r)));
    const a = q.run("A", async () => undefined);
    const b = q.run("B", async () => undefined);
    await expect(q.run("C", async () => undefined)).rejects.toThrow(/job queue is full/);
    release();
    await Promise.all([first, a, b]);
  });
});
