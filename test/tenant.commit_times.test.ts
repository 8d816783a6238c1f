/**
 * CommitTimes (src/tenant/commit_times.ts): lookups by time and by LSN (commit times are not
 * monotonic in LSN order), the bound with thinning of the older half, save/load keeping only
 * entries at or below the durable LSN, WAL streamed again after a restart not adding
 * duplicates, and a corrupt file refused as corrupt.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { COMMIT_TIMES_FILE, CommitTimes, pgTimestampToMs } from "../src/tenant/commit_times.js";

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), "commit-times-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("CommitTimes", () => {
  it("PostgreSQL timestamps are µs since 2000-01-01", () => {
    expect(pgTimestampToMs(0)).toBe(Date.parse("2000-01-01T00:00:00Z"));
    expect(pgTimestampToMs(1_500)).toBe(Date.parse("2000-01-01T00:00:00Z") + 1.5);
  });

  it("lookup: the newest commit at or before the time, whether a later one exists, within an LSN bound", () => {
    const c = new CommitTimes(tmp());
    expect(c.lookup(100, Number.MAX_SAFE_INTEGER)).toEqual({ lsn: null, laterExists: false, any: false });
    c.add(1000, 10);
    c.add(2000, 20);
    // Took its timestamp before the one above, wrote its record after it.
    c.add(3000, 19);
    c.add(4000, 40);
    c.add(4000, 99); // the same record streamed again: ignored
    c.add(3500, 99); // behind the newest: ignored
    expect(c.size).toBe(4);
    const all = Number.MAX_SAFE_INTEGER;
    expect(c.lookup(5, all)).toEqual({ lsn: null, laterExists: true, any: true });
    expect(c.lookup(10, all)).toEqual({ lsn: 1000, laterExists: true, any: true });
    expect(c.lookup(19.5, all)).toEqual({ lsn: 3000, laterExists: true, any: true });
    expect(c.lookup(25, all)).toEqual({ lsn: 3000, laterExists: true, any: true });
    expect(c.lookup(40, all)).toEqual({ lsn: 4000, laterExists: false, any: true });
    expect(c.lookup(25, 2500)).toEqual({ lsn: 2000, laterExists: false, any: true });
    expect(c.lookup(25, 500)).toEqual({ lsn: null, laterExists: false, any: false });
    expect(c.timeAt(999)).toBeNull();
    expect(c.timeAt(1000)).toBe(10);
    expect(c.timeAt(3999)).toBe(19);
    expect(c.timeAt(1e12)).toBe(40);
  });

  it("stays within its bound: the older half is thinned, the recent entries stay exact", () => {
    const max = 64;
    const c = new CommitTimes(tmp(), max);
    const n = 10_000;
    for (let i = 1; i <= n; i++) {
      c.add(i * 100, i);
      expect(c.size).toBeLessThanOrEqual(max);
    }
    // The newest quarter of the bound is exact.
    for (let i = n - max / 4 + 1; i <= n; i++) expect(c.lookup(i, Number.MAX_SAFE_INTEGER).lsn).toBe(i * 100);
    // Older times still answer an LSN at or before theirs.
    const r = c.lookup(n / 2, Number.MAX_SAFE_INTEGER);
    expect(r.lsn).not.toBeNull();
    expect(r.lsn!).toBeLessThanOrEqual((n / 2) * 100);
  });

  it("save keeps entries at or below the durable LSN; load drops what is above the recorded one", async () => {
    const dir = tmp();
    const c = new CommitTimes(dir);
    for (let i = 1; i <= 10; i++) c.add(i * 100, i * 1000);
    await c.save(550);
    const loaded = new CommitTimes(dir);
    loaded.load(10_000);
    expect(loaded.size).toBe(5);
    const older = new CommitTimes(dir);
    older.load(250);
    expect(older.size).toBe(2);
    // Streamed again from the durable LSN: the entries above it come back, once.
    for (let i = 3; i <= 10; i++) older.add(i * 100, i * 1000);
    expect(older.size).toBe(10);
    await older.save(10_000);
    const again = new CommitTimes(dir);
    again.load(10_000);
    expect(again.size).toBe(10);
    expect(again.lookup(7500, 1e12).lsn).toBe(700);
  });

  it("a corrupt file is a CorruptionError naming it", () => {
    const dir = tmp();
    for (const text of ["{not json", JSON.stringify({ version: 2, lsns: [], times_ms: [] }), JSON.stringify({ version: 1, lsns: [2, 1], times_ms: [1, 2] }), JSON.stringify({ version: 1, lsns: [1], times_ms: [] })]) {
      writeFileSync(join(dir, COMMIT_TIMES_FILE), text);
      expect(() => new CommitTimes(dir).load(1e12)).toThrow(/corrupt file .*commit_times\.json/);
    }
  });
});
