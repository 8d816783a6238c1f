/**
 * CommitTimes (src/tenant/commit_times.ts) and resolveLsnForTime against a model of
 * PostgreSQL's rule for recovery_target_time (recovery_target_inclusive = on: replay stops
 * before the first transaction-end record, in LSN order, whose time is later than T):
 * - property: random streams of commits with non-monotonic times, random T, saves, restarts
 *   (reload from disk with a durable LSN at or below what was saved, the WAL above it added
 *   again), trims below a cutoff, and a branch reading its ancestor below the branch point:
 *   every answer equals the model's, and a `present` LSN holds exactly the transactions that
 *   ended by T;
 * - the same after 10^6 commits and a reload;
 * - crash states: a torn append is accepted when the tail file continues the blocks; a bad
 *   block elsewhere, a bad tail, a gap are CorruptionErrors naming the file; a block that goes
 *   bad after load is an error at lookup, never an answer;
 * - the JSON index of the earlier format: migrated when it never thinned, refused (start at the
 *   durable LSN) when it did;
 * - through a Timeline: answers equal the model after checkpoints and restarts (the WAL above
 *   disk_consistent_lsn ingested again), GC trims the file below its cutoff (times before it
 *   `past`, later ones exact), a corrupt index is kept aside and restarted without breaking the
 *   timeline; PITR retention and the size model's retention start use the same exact lookup.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { COMMIT_TIMES_FILE, COMMIT_TIMES_LEGACY_FILE, COMMIT_TIMES_TAIL_FILE } from "../src/tenant/commit_time_format.js";
import { CommitTimes } from "../src/tenant/commit_times.js";
import { type LsnForTime, msToPgTimestamp, pgTimestampToMs, resolveLsnForTime, type TimeProbe } from "../src/tenant/lsn_for_time.js";
import { sizeInputs } from "../src/tenant/size_model.js";
import { TimelineState } from "../src/tenant/timeline/index.js";
import { CorruptionError } from "../src/types/errors.js";
import { makeKey } from "../src/types/key.js";
import { asLsn, type Lsn, lsnMax, MAX_LSN } from "../src/types/lsn.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { testAppend, testInit } from "./support/test_redo.js";

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), "commit-times-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const ALL = MAX_LSN;

interface Entry {
  lsn: Lsn;
  t: number;
}

/** Deterministic PRNG (mulberry32) for long streams; fast-check picks its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A stream of transaction ends: LSNs ascending (sometimes far apart), times from a clock that
 * advances, each taken up to `jitter_us` before its record is inserted (so not monotonic),
 * sometimes equal, sometimes after a backwards clock jump.
 */
function stream(n: number, seed: number, jitter_us: number, fromLsn = 0x1000000, fromTime = 820_000_000_000_000): Entry[] {
  const r = prng(seed);
  const out: Entry[] = [];
  let lsn = fromLsn;
  let clock = fromTime;
  for (let i = 0; i < n; i++) {
    const u = r();
    lsn += u < 0.001 ? 2 ** 33 : 24 + Math.floor(r() * 4000);
    clock += u < 0.0005 ? -1_000_000 : Math.floor(r() * 2000);
    const t = u > 0.98 && out.length > 0 ? out[out.length - 1]!.t : clock - Math.floor(r() * jitter_us);
    out.push({ lsn: asLsn(lsn), t });
  }
  return out;
}

/** The model: PostgreSQL's stop record over the whole history, then the kinds (see resolveLsnForTime). */
class Model {
  readonly lsns: Lsn[] = [];
  readonly runMax: number[] = [];
  constructor(entries: Entry[]) {
    let m = Number.NEGATIVE_INFINITY;
    for (const e of entries) {
      m = Math.max(m, e.t);
      this.lsns.push(e.lsn);
      this.runMax.push(m);
    }
  }
  /** Index of the first entry whose time is later than t (the entries' length: none). */
  stop(t: number): number {
    let lo = 0;
    let hi = this.runMax.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.runMax[mid]! > t) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
  answer(t: number, earliest: Lsn, last: Lsn): LsnForTime {
    if (this.lsns.length === 0) return { kind: "nodata", lsn: earliest };
    const i = this.stop(t);
    if (i === this.lsns.length) return { kind: "future", lsn: last };
    if (i === 0 || this.lsns[i]! <= earliest) return { kind: "past", lsn: earliest };
    return { kind: "present", lsn: lsnMax(this.lsns[i - 1]!, earliest) };
  }
  /** Transactions ended at or below lsn. */
  endedBy(lsn: number): number {
    let lo = 0;
    let hi = this.lsns.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.lsns[mid]! <= lsn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** A single timeline's answer from its index. */
function answerOf(c: CommitTimes, t: number, earliest: Lsn, last: Lsn): LsnForTime {
  return resolveLsnForTime([{ ...c.probe(t, ALL) }], earliest, last);
}

/** Times worth asking about: around entries' times and anywhere in the range. */
function timesToAsk(entries: Entry[], r: () => number, n: number): number[] {
  const out: number[] = [];
  if (entries.length === 0) return [0, 1e15];
  const lo = entries[0]!.t - 20_000_000;
  const hi = entries[entries.length - 1]!.t + 20_000_000;
  for (let i = 0; i < n; i++) {
    const e = entries[Math.floor(r() * entries.length)]!;
    const u = r();
    out.push(u < 0.3 ? e.t : u < 0.45 ? e.t - 1 : u < 0.6 ? e.t + 1 : lo + Math.floor(r() * (hi - lo)));
  }
  return out;
}

function check(model: Model, got: LsnForTime, t: number, earliest: number, last: number): void {
  const want = model.answer(t, asLsn(earliest), asLsn(last));
  expect(got, `T=${t} earliest=${earliest}`).toEqual(want);
  if (got.kind === "present") {
    // Exactly the transactions that ended by T under PostgreSQL's rule.
    expect(model.endedBy(got.lsn)).toBe(model.stop(t));
    expect(got.lsn).toBeGreaterThanOrEqual(earliest);
  }
}

describe("CommitTimes", () => {
  it("PostgreSQL timestamps are µs since 2000-01-01; RFC 3339 ms with µs convert back exactly", () => {
    expect(pgTimestampToMs(0)).toBe(Date.parse("2000-01-01T00:00:00Z"));
    expect(pgTimestampToMs(1_500)).toBe(Date.parse("2000-01-01T00:00:00Z") + 1.5);
    const r = prng(7);
    for (let i = 0; i < 10_000; i++) {
      const us = Math.floor(r() * 2 ** 50);
      expect(msToPgTimestamp(pgTimestampToMs(us))).toBe(us);
    }
    // As parseRfc3339Ms builds them: whole ms + the fraction.
    expect(msToPgTimestamp(Date.parse("2026-12-07T14:00:00Z") + Number("0.123456") * 1000)).toBe(
      (Date.parse("2026-12-07T14:00:00Z") - Date.parse("2000-01-01T00:00:00Z")) * 1000 + 123_456,
    );
  });

  it("probe: the first record later than T in LSN order, the one before it, within an LSN bound", () => {
    const c = new CommitTimes(tmp());
    expect(c.probe(100, ALL)).toEqual({ before: false, hasBefore: false, stopLsn: -1, prevLsn: -1, lastLsn: -1 });
    c.add(asLsn(1000), 10);
    c.add(asLsn(2000), 20);
    // Took its timestamp before the one above, wrote its record after it.
    c.add(asLsn(3000), 19);
    c.add(asLsn(4000), 40);
    c.add(asLsn(4000), 99); // the same record streamed again: ignored
    c.add(asLsn(3500), 99); // behind the newest: ignored
    expect(c.size).toBe(4);
    expect(c.probe(5, ALL)).toMatchObject({ stopLsn: 1000, prevLsn: -1 });
    expect(c.probe(10, ALL)).toMatchObject({ stopLsn: 2000, prevLsn: 1000 });
    // PostgreSQL stops before 2000 (time 20 > 19.5) although 3000's time 19 is earlier.
    expect(c.probe(19, ALL)).toMatchObject({ stopLsn: 2000, prevLsn: 1000 });
    expect(c.probe(25, ALL)).toMatchObject({ stopLsn: 4000, prevLsn: 3000 });
    expect(c.probe(40, ALL)).toMatchObject({ stopLsn: -1, lastLsn: 4000 });
    expect(c.probe(25, asLsn(2500))).toMatchObject({ stopLsn: -1, lastLsn: 2000 });
    expect(c.probe(25, asLsn(500))).toMatchObject({ stopLsn: -1, lastLsn: -1 });
    expect(c.timeAt(asLsn(999))).toBeNull();
    expect(c.timeAt(asLsn(1000))).toBe(10);
    expect(c.timeAt(asLsn(3999))).toBe(19);
    expect(c.timeAt(asLsn(1e12))).toBe(40);
  });

  it("resolveLsnForTime: Neon's kinds; a branch's history is its ancestor's below the branch point, then its own", () => {
    const p = (o: Partial<TimeProbe>): TimeProbe => ({
      before: false,
      hasBefore: false,
      stopLsn: -1 as Lsn,
      prevLsn: -1 as Lsn,
      lastLsn: -1 as Lsn,
      ...o,
    });
    expect(resolveLsnForTime([p({})], asLsn(50), asLsn(900))).toEqual({ kind: "nodata", lsn: 50 });
    expect(resolveLsnForTime([p({ lastLsn: asLsn(300) })], asLsn(50), asLsn(900))).toEqual({ kind: "future", lsn: 900 });
    expect(resolveLsnForTime([p({ stopLsn: asLsn(300) })], asLsn(50), asLsn(900))).toEqual({ kind: "past", lsn: 50 });
    expect(resolveLsnForTime([p({ stopLsn: asLsn(300), prevLsn: asLsn(200) })], asLsn(50), asLsn(900))).toEqual({
      kind: "present",
      lsn: 200,
    });
    expect(resolveLsnForTime([p({ stopLsn: asLsn(300), prevLsn: asLsn(200) })], asLsn(250), asLsn(900))).toEqual({
      kind: "present",
      lsn: 250,
    });
    expect(resolveLsnForTime([p({ stopLsn: asLsn(300), prevLsn: asLsn(200) })], asLsn(300), asLsn(900))).toEqual({
      kind: "past",
      lsn: 300,
    });
    expect(resolveLsnForTime([p({ before: true, hasBefore: true })], asLsn(50), asLsn(900))).toEqual({ kind: "past", lsn: 50 });
    expect(resolveLsnForTime([p({ stopLsn: asLsn(300), hasBefore: true })], asLsn(50), asLsn(900))).toEqual({ kind: "present", lsn: 50 });
    // Ancestor (to the branch point 400) then the branch: its first own record stops, the
    // ancestor's last one is before it; the branch cannot start below 400.
    expect(resolveLsnForTime([p({ lastLsn: asLsn(350) }), p({ stopLsn: asLsn(500) })], asLsn(400), asLsn(900))).toEqual({
      kind: "present",
      lsn: 400,
    });
    expect(
      resolveLsnForTime([p({ stopLsn: asLsn(350), prevLsn: asLsn(300) }), p({ stopLsn: asLsn(500) })], asLsn(400), asLsn(900)),
    ).toEqual({ kind: "past", lsn: 400 });
    expect(resolveLsnForTime([p({}), p({ stopLsn: asLsn(500) })], asLsn(400), asLsn(900))).toEqual({ kind: "past", lsn: 400 });
  });

  it("property: answers equal PostgreSQL's rule across saves, restarts at a durable LSN, trims and branches", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 0, max: 12_000 }),
          seed: fc.integer(),
          jitter_us: fc.constantFrom(0, 500, 5_000, 200_000),
          steps: fc.array(
            fc.record({ op: fc.constantFrom("save", "restart", "trim", "branch"), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
            { maxLength: 8 },
          ),
        }),
        async ({ n, seed, jitter_us, steps }) => {
          const all = stream(n, seed, jitter_us);
          const model = new Model(all);
          const r = prng(seed ^ 0x5bd1e995);
          const dir = tmp();
          let c = new CommitTimes(dir);
          let added = 0;
          let saved = 0; // durable LSN of the last save (what the files hold)
          let persisted = 0; // the metadata's disk_consistent_lsn (at or below saved)
          let earliest = 0;
          const last = (all[all.length - 1]?.lsn ?? 0) + 8;
          const feed = (upto: number): void => {
            for (; added < upto; added++) c.add(all[added]!.lsn, all[added]!.t);
          };
          for (const step of steps) {
            feed(Math.max(added, Math.floor(step.at * n)));
            const newest = added > 0 ? all[added - 1]!.lsn : 0;
            if (step.op === "save") {
              saved = Math.max(saved, Math.floor(saved + r() * (newest - saved + 1)));
              await c.save(asLsn(saved));
              persisted = Math.max(persisted, Math.floor(persisted + r() * (saved - persisted + 1)));
            } else if (step.op === "restart") {
              // A crash between the index's save and the metadata write: the index holds more.
              c = new CommitTimes(dir);
              c.load(asLsn(persisted));
              saved = persisted;
              added = 0;
              while (added < all.length && all[added]!.lsn <= persisted) added++;
              expect(c.size).toBeLessThanOrEqual(added);
            } else if (step.op === "trim") {
              earliest = Math.max(earliest, Math.floor(earliest + r() * (persisted - earliest + 1)));
              await c.trimBelow(asLsn(earliest));
            } else {
              // A child branched at an LSN in the history fed so far: ancestor below it, then its own stream.
              const b = Math.max(earliest, added > 0 ? all[Math.floor(r() * added)]!.lsn : 0);
              const own = stream(Math.floor(r() * 3000), seed + 1, jitter_us, b + 16, (all[added - 1]?.t ?? 820_000_000_000_000) - 50_000);
              const child = new CommitTimes(tmp());
              for (const e of own) child.add(e.lsn, e.t);
              const bm = new Model([...all.slice(0, added).filter((e) => e.lsn <= b), ...own]);
              const lastB = (own[own.length - 1]?.lsn ?? b) + 8;
              for (const t of timesToAsk([...all.slice(0, added), ...own], r, 40)) {
                const got = resolveLsnForTime([{ ...c.probe(t, asLsn(b)) }, { ...child.probe(t, ALL) }], asLsn(b), asLsn(lastB));
                check(bm, got, t, b, lastB);
              }
            }
            const seen = new Model(all.slice(0, added));
            const lastSeen = added > 0 ? all[added - 1]!.lsn + 8 : last;
            for (const t of timesToAsk(all.slice(0, added), r, 40))
              check(seen, answerOf(c, t, asLsn(earliest), asLsn(lastSeen)), t, earliest, lastSeen);
          }
          feed(all.length);
          for (const t of timesToAsk(all, r, 200)) check(model, answerOf(c, t, asLsn(earliest), asLsn(last)), t, earliest, last);
        },
      ),
      { numRuns: 60 },
    );
  }, 120_000);

  it("10^6 commits: exact after a save and a reload; a few bytes per commit on disk", async () => {
    const n = 1_000_000;
    const all = stream(n, 42, 5_000);
    const model = new Model(all);
    const dir = tmp();
    const c = new CommitTimes(dir);
    for (const e of all) c.add(e.lsn, e.t);
    expect(c.size).toBe(n);
    const r = prng(1);
    const last = all[n - 1]!.lsn + 8;
    for (const t of timesToAsk(all, r, 2_000)) check(model, answerOf(c, t, asLsn(0), asLsn(last)), t, 0, last);
    // Half durable, then reloaded: the upper half streamed again.
    const half = all[n / 2]!.lsn;
    await c.save(half);
    const d = new CommitTimes(dir);
    d.load(half);
    expect(d.size).toBe(n / 2 + 1);
    for (let i = n / 2 + 1; i < n; i++) d.add(all[i]!.lsn, all[i]!.t);
    await d.save(asLsn(last));
    const e = new CommitTimes(dir);
    e.load(asLsn(last));
    expect(e.size).toBe(n);
    for (const t of timesToAsk(all, r, 2_000)) check(model, answerOf(e, t, asLsn(0), asLsn(last)), t, 0, last);
    const bytes = e.diskBytes();
    expect(bytes / n).toBeLessThan(8);
    expect(e.timeAt(all[123_456]!.lsn)).toBe(all[123_456]!.t);
    expect(e.timeAt(asLsn(all[123_456]!.lsn + 1))).toBe(all[123_456]!.t);
    // Trimmed below an LSN: times before it answer `past`, later ones stay exact.
    const cut = all[700_000]!.lsn;
    await e.trimBelow(cut);
    expect(e.diskBytes()).toBeLessThan(bytes / 2);
    for (const t of timesToAsk(all, r, 2_000)) check(model, answerOf(e, t, cut, asLsn(last)), t, cut, last);
    const f = new CommitTimes(dir);
    f.load(asLsn(last));
    for (const t of timesToAsk(all, r, 500)) check(model, answerOf(f, t, cut, asLsn(last)), t, cut, last);
  }, 120_000);

  it("a torn append (the tail file continues the good blocks) is accepted; other damage is a CorruptionError naming the file", async () => {
    const all = stream(20_000, 3, 1_000);
    const model = new Model(all);
    const make = async (): Promise<{ dir: string; mid: number }> => {
      const dir = tmp();
      const c = new CommitTimes(dir);
      const mid = all[5_000]!.lsn;
      for (const e of all) c.add(e.lsn, e.t);
      await c.save(mid);
      // A later save that appended blocks, then crashed before its tail file.
      const path = join(dir, COMMIT_TIMES_FILE);
      const tail = readFileSync(join(dir, COMMIT_TIMES_TAIL_FILE));
      await c.save(all[all.length - 1]!.lsn);
      writeFileSync(join(dir, COMMIT_TIMES_TAIL_FILE), tail);
      expect(statSync(path).size).toBeGreaterThan(4 * 8192);
      return { dir, mid };
    };
    // The last appended block half written: the blocks before it hold the old tail's entries.
    {
      const { dir, mid } = await make();
      const path = join(dir, COMMIT_TIMES_FILE);
      truncateSync(path, statSync(path).size - 5000);
      const c = new CommitTimes(dir);
      c.load(asLsn(mid));
      const m = new Model(all.filter((e) => e.lsn <= mid));
      for (const t of timesToAsk(all, prng(2), 300)) check(m, answerOf(c, t, asLsn(0), asLsn(mid + 8)), t, 0, mid + 8);
      // Streamed again: whole again.
      for (const e of all) c.add(e.lsn, e.t);
      for (const t of timesToAsk(all, prng(3), 300))
        check(model, answerOf(c, t, asLsn(0), asLsn(all[all.length - 1]!.lsn + 8)), t, 0, all[all.length - 1]!.lsn + 8);
    }
    // A block inside the durable part flipped: corruption, not a torn append.
    {
      const { dir, mid } = await make();
      const path = join(dir, COMMIT_TIMES_FILE);
      const f = readFileSync(path);
      f[8192 + 100] = f[8192 + 100]! ^ 1;
      writeFileSync(path, f);
      const c = new CommitTimes(dir);
      expect(() => c.load(asLsn(mid))).toThrow(CorruptionError);
      expect(() => c.load(asLsn(mid))).toThrow(/corrupt file .*commit_times at block 1/);
      // The timeline then resets it: bad files aside, empty from the durable LSN.
      c.reset(asLsn(mid));
      expect(c.size).toBe(0);
      c.add(asLsn(mid + 10), 1);
      expect(answerOf(c, 0, asLsn(mid), asLsn(mid + 20)).kind).toBe("past");
    }
    // A tail file that does not continue the blocks (entries missing between).
    {
      const { dir, mid } = await make();
      truncateSync(join(dir, COMMIT_TIMES_FILE), 2 * 8192);
      expect(() => new CommitTimes(dir).load(asLsn(mid))).toThrow(/commit_times\.tail .*entries are missing/);
    }
    // A tail file with a bad seal.
    {
      const { dir, mid } = await make();
      const tp = join(dir, COMMIT_TIMES_TAIL_FILE);
      const t = readFileSync(tp);
      t[60] = t[60]! ^ 0x40;
      writeFileSync(tp, t);
      expect(() => new CommitTimes(dir).load(asLsn(mid))).toThrow(/commit_times\.tail .*checksum/);
    }
  }, 60_000);

  it("a block damaged after load is an error at lookup, never an answer", async () => {
    const all = stream(20_000, 9, 1_000);
    const dir = tmp();
    const c = new CommitTimes(dir);
    for (const e of all) c.add(e.lsn, e.t);
    await c.save(all[all.length - 1]!.lsn);
    const path = join(dir, COMMIT_TIMES_FILE);
    const f = readFileSync(path);
    f[8192 + 200] = f[8192 + 200]! ^ 1;
    writeFileSync(path, f);
    // A time whose first later record is in the first block.
    const t = all[10]!.t;
    expect(() => c.probe(t, ALL)).toThrow(/corrupt file .*commit_times at block/);
  });

  it("save keeps entries at or below the durable LSN; load drops what is above the recorded one", async () => {
    const dir = tmp();
    const c = new CommitTimes(dir);
    for (let i = 1; i <= 10; i++) c.add(asLsn(i * 100), i * 1000);
    await c.save(asLsn(550));
    const loaded = new CommitTimes(dir);
    loaded.load(asLsn(10_000));
    expect(loaded.size).toBe(5);
    const older = new CommitTimes(dir);
    older.load(asLsn(250));
    expect(older.size).toBe(2);
    // Streamed again from the durable LSN: the entries above it come back, once.
    for (let i = 3; i <= 10; i++) older.add(asLsn(i * 100), i * 1000);
    expect(older.size).toBe(10);
    await older.save(asLsn(10_000));
    const again = new CommitTimes(dir);
    again.load(asLsn(10_000));
    expect(again.size).toBe(10);
    expect(again.probe(7500, ALL)).toMatchObject({ stopLsn: 800, prevLsn: 700 });
  });

  it("the JSON index of the earlier format: migrated when it never thinned, else started at the durable LSN", async () => {
    const dir = tmp();
    const lsns = [100, 200, 300];
    writeFileSync(
      join(dir, COMMIT_TIMES_LEGACY_FILE),
      JSON.stringify({ version: 1, lsns, times_ms: lsns.map((l) => pgTimestampToMs(l * 10)) }),
    );
    const c = new CommitTimes(dir);
    expect(c.load(asLsn(250))).toMatch(/migrated 2 commit times/);
    expect(c.probe(1500, ALL)).toMatchObject({ stopLsn: 200, prevLsn: 100 });
    await c.save(asLsn(250));
    expect(() => readFileSync(join(dir, COMMIT_TIMES_LEGACY_FILE))).toThrow();
    const d = new CommitTimes(dir);
    expect(d.load(asLsn(250))).toBeNull();
    expect(d.size).toBe(2);

    const dir2 = tmp();
    const many = Array.from({ length: 7000 }, (_, i) => (i + 1) * 100);
    writeFileSync(
      join(dir2, COMMIT_TIMES_LEGACY_FILE),
      JSON.stringify({ version: 1, lsns: many, times_ms: many.map((l) => pgTimestampToMs(l)) }),
    );
    const e = new CommitTimes(dir2);
    expect(e.load(asLsn(500_000))).toMatch(/thinned history/);
    expect(e.size).toBe(0);
    e.add(asLsn(400_000), 1);
    expect(e.size).toBe(0); // below the start: its history is not known
    for (const text of [
      "{not json",
      JSON.stringify({ version: 2, lsns: [], times_ms: [] }),
      JSON.stringify({ version: 1, lsns: [2, 1], times_ms: [1, 2] }),
    ]) {
      writeFileSync(join(dir2, COMMIT_TIMES_LEGACY_FILE), text);
      expect(() => new CommitTimes(dir2).load(asLsn(1e12))).toThrow(/corrupt file .*commit_times\.json/);
    }
  });

  it("through a Timeline: checkpoints, restarts, GC trimming, and a corrupt index kept aside", async () => {
    const h = new TenantHarness({ conf: { gc_horizon: 0, pitr_interval: 0 } });
    try {
      const k = makeKey(0, 1663, 5, 1000, 0, 1);
      const t = await h.create();
      let tl = await t.createTimeline({ startLsn: asLsn(0x100) });
      tl.put(k, asLsn(0x100), testInit("0"));
      tl.finishWrite(asLsn(0x100));
      const all = stream(30_000, 11, 5_000, 0x200);
      const model = new Model(all);
      const ingest = (from: number): void => {
        for (let i = 0; i < all.length; i++) {
          const e = all[i]!;
          if (e.lsn <= from) continue;
          if (i % 1000 === 0 || i === all.length - 1) tl.put(k, e.lsn, testAppend("x"));
          tl.noteCommit(e.lsn, e.t);
          tl.finishWrite(e.lsn);
        }
      };
      const expectModel = (n: number): void => {
        for (const time of timesToAsk(all, prng(n), n)) {
          const got = tl.lsnForTime(pgTimestampToMs(time));
          check(model, got, time, tl.earliestBranchLsn(), tl.lastRecordLsn);
        }
      };
      ingest(0);
      expectModel(500);
      await tl.checkpoint();
      const dcl = tl.diskConsistentLsn;
      expect(dcl).toBe(all[all.length - 1]!.lsn);
      // A restart: the same answers from the file.
      let t2 = await h.restart(false);
      tl = t2.getTimeline(tl.timelineId);
      expectModel(500);

      // GC at a cutoff in the middle: the file is trimmed below it, the answers stay the model's.
      const path = join(tl.dir, COMMIT_TIMES_FILE);
      const before = statSync(path).size;
      const cutoff = all[20_000]!.lsn;
      await t2.gc({ timeline: tl, cutoffLsn: cutoff });
      expect(tl.latestGcCutoffLsn).toBe(cutoff);
      expect(statSync(path).size).toBeLessThan(before / 2);
      expectModel(500);
      t2 = await h.restart(false);
      tl = t2.getTimeline(tl.timelineId);
      expectModel(500);
      // A time whose stop record is in the trimmed part (not the first record): `past` at the cutoff.
      const trimmedT = all.slice(1, 20_000).find((e) => model.stop(e.t) > 0 && model.stop(e.t) <= 20_000)!.t;
      expect(tl.lsnForTime(pgTimestampToMs(trimmedT))).toEqual({ kind: "past", lsn: cutoff });

      // A corrupt index: kept aside, the timeline loads and serves; no answer from lost history.
      await t2.shutdown(false);
      const f = readFileSync(path);
      f[8192 + 300] = f[8192 + 300]! ^ 4;
      writeFileSync(path, f);
      t2 = h.load();
      tl = t2.getTimeline(tl.timelineId);
      expect(tl.state).toBe(TimelineState.Active);
      expect(statSync(`${path}.corrupt`).size).toBe(f.length);
      expect(tl.lsnForTime(pgTimestampToMs(all[25_000]!.t)).kind).toBe("nodata");
      // New commits after the reset: times before the first of them are `past`, later ones exact.
      const latest = model.runMax[model.runMax.length - 1]!;
      tl.noteCommit(asLsn(dcl + 0x100), latest + 1_000);
      tl.finishWrite(asLsn(dcl + 0x100));
      tl.noteCommit(asLsn(dcl + 0x200), latest + 2_000);
      tl.finishWrite(asLsn(dcl + 0x200));
      expect(tl.lsnForTime(pgTimestampToMs(all[25_000]!.t))).toEqual({ kind: "past", lsn: tl.earliestBranchLsn() });
      expect(tl.lsnForTime(pgTimestampToMs(latest + 1_500))).toEqual({ kind: "present", lsn: dcl + 0x100 });
    } finally {
      await h.close();
    }
  }, 120_000);

  it("PITR retention and the size model start where a branch at now − pitr_interval starts, exactly, deep in a long history", async () => {
    const h = new TenantHarness({ conf: { gc_horizon: 0, pitr_interval: "1h" } });
    try {
      const k = makeKey(0, 1663, 5, 1000, 0, 1);
      const t = await h.create();
      const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
      tl.put(k, asLsn(0x100), testInit("0"));
      tl.finishWrite(asLsn(0x100));
      const all = stream(20_000, 5, 5_000, 0x200);
      const model = new Model(all);
      for (let i = 0; i < all.length; i++) {
        if (i % 1000 === 0 || i === all.length - 1) tl.put(k, all[i]!.lsn, testAppend("x"));
        tl.noteCommit(all[i]!.lsn, all[i]!.t);
        tl.finishWrite(all[i]!.lsn);
      }
      await tl.checkpoint();
      for (const i of [2_000, 9_000, 15_000, 19_000]) {
        // The latest time up to entry i: the stop record comes after it.
        const limit = model.runMax[i]!;
        const now_ms = pgTimestampToMs(limit) + 3_600_000;
        const want = model.answer(limit, asLsn(0x100), tl.lastRecordLsn);
        expect(want.kind, `entry ${i}`).toBe("present");
        expect(model.endedBy(want.lsn)).toBe(model.stop(limit));
        expect(tl.gcCutoff(now_ms), `entry ${i}`).toBe(want.lsn);
        expect(sizeInputs(t, now_ms).timelines[0]!.retention_start_lsn).toBe(want.lsn);
      }
    } finally {
      await h.close();
    }
  }, 60_000);
});
