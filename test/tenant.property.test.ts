/**
 * Model-based property test: a timeline tree driven through random sequences of put,
 * branch, checkpoint (freeze + flush), compaction (L0→L1 + images), GC, graceful restart
 * and crash, checked at every read against a plain in-memory model of "value of key K on
 * timeline T at LSN L".
 *
 * Durability is the model's own bookkeeping, not what the timeline reports: a timeline is
 * durable up to its start or branch point when created, and up to its last LSN after each
 * checkpoint it completed or a graceful restart. After a crash, disk_consistent_lsn must lie
 * between that and the last LSN written, on a record boundary the model knows; only then is
 * the model cut back to it.
 *
 * The run is bounded in cases and in time; it reports how many cases ran, and fails when the
 * time limit cut it below MIN_RUNS (a run that checked almost nothing is not a pass).
 */
import fc from "fast-check";
import { afterAll, describe, it } from "vitest";
import { expect } from "vitest";
import type { Tenant } from "../src/tenant/tenant.js";
import { testAppend, testInit } from "./support/test_redo.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import type { TimelineId } from "../src/types/ids.js";
import { type Key, makeKey } from "../src/types/key.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { asLsn } from "../src/types/lsn.js";

const NKEYS = 6;
const keyOf = (i: number): Key => makeKey(0, 1663, 1, 100 + (i % 3), 0, i);
const dec = new TextDecoder();

interface ModelWrite {
  key: number;
  lsn: number;
  init: boolean;
  text: string;
}
interface ModelTimeline {
  id: TimelineId;
  parent: ModelTimeline | null;
  branchLsn: number;
  writes: ModelWrite[]; // ascending lsn
  last: number;
  /** The LSN up to which the model knows this timeline is on disk (see the header). */
  durable: number;
}
interface Model {
  timelines: ModelTimeline[];
}
interface Real {
  h: TenantHarness;
  tenant: Tenant;
}

function modelGet(t: ModelTimeline, key: number, lsn: number): string | null {
  // Walk newest first down the ancestry, collecting appends until an init.
  const parts: string[] = [];
  let cur: ModelTimeline | null = t;
  let at = lsn;
  while (cur !== null) {
    for (let i = cur.writes.length - 1; i >= 0; i--) {
      const w = cur.writes[i]!;
      if (w.lsn > at || w.key !== key) continue;
      parts.push(w.text);
      if (w.init) return parts.reverse().join("");
    }
    at = Math.min(at, cur.branchLsn);
    cur = cur.parent;
  }
  return null;
}

const tlOf = (r: Real, m: ModelTimeline): Timeline => r.tenant.getTimeline(m.id);

class PutCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly t: number,
    readonly key: number,
    readonly init: boolean,
    readonly ch: string,
    readonly n: number,
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const mt = m.timelines[this.t % m.timelines.length]!;
    const tl = tlOf(r, mt);
    for (let i = 0; i < this.n; i++) {
      const lsn = mt.last + 8;
      const exists = modelGet(mt, this.key, mt.last) !== null;
      const init = this.init || !exists;
      const text = `${this.ch}${i}`;
      tl.put(keyOf(this.key), asLsn(lsn), init ? testInit(text) : testAppend(text));
      tl.finishWrite(asLsn(lsn));
      mt.writes.push({ key: this.key, lsn, init, text });
      mt.last = lsn;
    }
  }
  toString = (): string => `put(t${this.t}, k${this.key}, ${this.init ? "init" : "append"}, ${this.ch}×${this.n})`;
}

class GetCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly t: number,
    readonly key: number,
    readonly at: number,
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const mt = m.timelines[this.t % m.timelines.length]!;
    const tl = tlOf(r, mt);
    const lo = Math.max(tl.latestGcCutoffLsn, mt.branchLsn);
    const lsn = lo + Math.floor(this.at * (mt.last - lo + 1));
    if (lsn > mt.last) return;
    const got = await tl.get(keyOf(this.key), asLsn(lsn));
    expect(got === null ? null : dec.decode(got), `t${this.t} k${this.key} @${lsn.toString(16)}`).toBe(modelGet(mt, this.key, lsn));
  }
  toString = (): string => `get(t${this.t}, k${this.key}, ${this.at.toFixed(2)})`;
}

class BranchCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly t: number,
    readonly at: number,
  ) {}
  check = (m: Readonly<Model>): boolean => m.timelines.length < 5;
  async run(m: Model, r: Real): Promise<void> {
    const mt = m.timelines[this.t % m.timelines.length]!;
    const tl = tlOf(r, mt);
    const lo = Math.max(tl.latestGcCutoffLsn, mt.branchLsn);
    const lsn = lo + Math.floor(this.at * (mt.last - lo + 1));
    if (lsn > mt.last) return;
    const child = await r.tenant.createTimeline({ ancestorId: mt.id, ancestorLsn: asLsn(lsn) });
    m.timelines.push({ id: child.timelineId, parent: mt, branchLsn: lsn, writes: [], last: lsn, durable: lsn });
  }
  toString = (): string => `branch(t${this.t}, ${this.at.toFixed(2)})`;
}

class CheckpointCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly t: number) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const mt = m.timelines[this.t % m.timelines.length]!;
    await tlOf(r, mt).checkpoint();
    mt.durable = mt.last;
  }
  toString = (): string => `checkpoint(t${this.t})`;
}

class CompactCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly force: boolean) {}
  check = (): boolean => true;
  async run(_m: Model, r: Real): Promise<void> {
    await r.tenant.compact({ forceImages: this.force });
  }
  toString = (): string => `compact(force=${this.force})`;
}

class GcCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly t: number,
    readonly frac: number,
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const mt = m.timelines[this.t % m.timelines.length]!;
    const cutoff = mt.branchLsn + Math.floor(this.frac * (mt.last - mt.branchLsn));
    await r.tenant.gc({ timeline: tlOf(r, mt), cutoffLsn: asLsn(cutoff) });
  }
  toString = (): string => `gc(t${this.t}, ${this.frac.toFixed(2)})`;
}

class RestartCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly crash: boolean) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    if (this.crash) {
      // A parent must have its branch points on disk before it can lose its tail: the WAL
      // behind a child's branch point is the child's history. (Re-ingest would bring it back.)
      for (const mt of m.timelines) {
        if (!m.timelines.some((c) => c.parent === mt)) continue;
        await tlOf(r, mt).checkpoint();
        mt.durable = mt.last;
      }
    }
    r.tenant = await r.h.restart(!this.crash);
    for (const mt of m.timelines) {
      const tl = tlOf(r, mt);
      if (this.crash) {
        const dcl = tl.diskConsistentLsn;
        const where = `t${m.timelines.indexOf(mt)} after a crash: disk_consistent_lsn ${dcl.toString(16)}, durable ${mt.durable.toString(16)}, last ${mt.last.toString(16)}`;
        expect(dcl, where).toBeGreaterThanOrEqual(mt.durable);
        expect(dcl, where).toBeLessThanOrEqual(mt.last);
        expect(dcl === mt.branchLsn || mt.writes.some((w) => w.lsn === dcl), `${where}: not a record boundary`).toBe(true);
        mt.writes = mt.writes.filter((w) => w.lsn <= dcl);
        mt.last = dcl;
      } else {
        mt.durable = mt.last;
      }
      expect(tl.lastRecordLsn).toBe(mt.last);
      expect(tl.diskConsistentLsn).toBe(mt.last);
    }
  }
  toString = (): string => (this.crash ? "crash+restart" : "restart");
}

const t = fc.nat(7);
/** A fraction in [0, 1] (integers: fc.double shrinks towards tiny values and rarely spreads). */
const frac = fc.integer({ min: 0, max: 1000 }).map((x) => x / 1000);
const put = fc
  .tuple(t, fc.nat(NKEYS - 1), fc.boolean(), fc.constantFrom("a", "b", "c", "d"), fc.integer({ min: 1, max: 6 }))
  .map(([a, b, c, d, e]) => new PutCmd(a, b, c, d, e));
const commands = [
  put,
  put,
  put,
  fc.tuple(t, fc.nat(NKEYS - 1), frac).map(([a, b, c]) => new GetCmd(a, b, c)),
  fc.tuple(t, fc.nat(NKEYS - 1), frac).map(([a, b, c]) => new GetCmd(a, b, c)),
  fc.tuple(t, frac).map(([a, b]) => new BranchCmd(a, b)),
  t.map((a) => new CheckpointCmd(a)),
  fc.boolean().map((f) => new CompactCmd(f)),
  fc.tuple(t, frac).map(([a, b]) => new GcCmd(a, b)),
  fc.boolean().map((c) => new RestartCmd(c)),
];

/** Cases per run, and the time limit that may cut a run short (on a loaded machine). */
const NUM_RUNS = 40;
const TIME_LIMIT_MS = 90_000;
/** Fewer cases than this in the time limit is a failure, not a pass. */
const MIN_RUNS = 10;

const harnesses: TenantHarness[] = [];
afterAll(async () => {
  for (const h of harnesses) await h.close();
});

describe("timeline vs model", () => {
  it("get@LSN matches the model over random put/branch/flush/compact/gc/restart sequences", {
    timeout: TIME_LIMIT_MS + 60_000,
  }, async () => {
    const details = await fc.check(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: "max" }), async (cmds) => {
        const h = new TenantHarness({
          cacheBytes: 64 * 8192, // tiny: eviction on every run
          conf: { compaction_threshold: 2, image_creation_threshold: 2, gc_horizon: 0, pitr_interval: 0, checkpoint_distance: 16384 },
        });
        harnesses.push(h);
        const tenant = await h.create();
        const root = await tenant.createTimeline({ startLsn: asLsn(0x1000) });
        const model: Model = {
          timelines: [{ id: root.timelineId, parent: null, branchLsn: 0x1000, writes: [], last: 0x1000, durable: 0x1000 }],
        };
        const real: Real = { h, tenant };
        try {
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          // Final sweep: every key on every timeline at its last LSN.
          for (const mt of model.timelines) {
            const tl = real.tenant.getTimeline(mt.id);
            for (let k = 0; k < NKEYS; k++) {
              const got = await tl.get(keyOf(k), asLsn(mt.last));
              expect(got === null ? null : dec.decode(got)).toBe(modelGet(mt, k, mt.last));
            }
          }
        } finally {
          await h.close();
          harnesses.splice(harnesses.indexOf(h), 1);
        }
      }),
      { numRuns: NUM_RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
    console.log(
      `property: ${details.numRuns} of ${NUM_RUNS} cases ran${details.interrupted ? ` (cut by the ${TIME_LIMIT_MS} ms limit)` : ""}`,
    );
    if (details.failed) throw new Error(await fc.asyncDefaultReportMessage(details));
    expect(details.numRuns, `only ${details.numRuns} cases ran within ${TIME_LIMIT_MS} ms`).toBeGreaterThanOrEqual(MIN_RUNS);
  });
});
