/**
 * PITR retention by commit time (Timeline.gcCutoff): the cutoff is the LSN of the last commit
 * at or before now − pitr_interval, from the commit timestamps seen in the WAL; history inside
 * the interval stays readable, older history is collected, a child's branch point keeps what
 * the child reads; the ingest-time samples stand in only when no commit time is known.
 * Commit times are placed hours away from the test's `now`: nothing depends on how long the
 * test itself takes.
 */
import { afterEach, describe, expect, it } from "vitest";
import { testAppend, testInit } from "./support/test_redo.js";
import { type Key, makeKey } from "../src/types/key.js";
import { TenantHarness } from "./support/tenant_harness.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { asLsn } from "../src/types/lsn.js";

const dec = new TextDecoder();
const k = (n: number): Key => makeKey(0, 1663, 5, 1000, 0, n);
const str = (b: Uint8Array | null): string | null => (b === null ? null : dec.decode(b));
const HOUR_MS = 3_600_000;
/** PostgreSQL's TimestampTz (µs since 2000-01-01) of a Unix time in ms. */
const pgTime = (ms: number): number => (ms - Date.parse("2000-01-01T00:00:00Z")) * 1000;

let h: TenantHarness;
afterEach(async () => {
  await h?.close();
});

/** Writes at 0x100 (init) and 0x200..0x600, each a commit at the given time; flushed; images at 0x400 when asked. */
async function history(tl: Timeline, times_ms: number[], imagesAt400?: () => Promise<unknown>): Promise<void> {
  tl.put(k(1), asLsn(0x100), testInit("0"));
  tl.finishWrite(asLsn(0x100));
  for (let i = 0; i < times_ms.length; i++) {
    const lsn = 0x200 + i * 0x100;
    tl.put(k(1), asLsn(lsn), testAppend(String(i + 1)));
    tl.noteCommit(asLsn(lsn), pgTime(times_ms[i]!));
    tl.finishWrite(asLsn(lsn));
    await tl.checkpoint();
    if (lsn === 0x400) await imagesAt400?.();
  }
}

describe("PITR retention by commit time", () => {
  it("keeps history inside pitr_interval, collects what is older, and a child's branch point keeps what it needs", async () => {
    h = new TenantHarness({ conf: { compaction_threshold: 100, image_creation_threshold: 1, gc_horizon: 0, pitr_interval: "1h" } });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    const now = Date.now();
    await history(tl, [now - 5 * HOUR_MS, now - 4 * HOUR_MS, now - 3 * HOUR_MS, now - 10 * 60_000, now - 5 * 60_000], () =>
      t.compact({ forceImages: true, timeline: tl }),
    );
    // The last commit at or before now − 1h is the one at 0x400.
    expect(tl.gcCutoff(now)).toBe(0x400);
    // Two hours later everything is older than the interval but the last: the newest commit older than 1h.
    expect(tl.gcCutoff(now + 2 * HOUR_MS)).toBe(0x600);
    // Before the first commit's time + 1h: every commit is inside the interval: nothing goes.
    expect(tl.gcCutoff(now - 5 * HOUR_MS + 30 * 60_000)).toBe(0x100);
    const child = await t.createTimeline({ ancestorId: tl.timelineId, ancestorLsn: asLsn(0x300) });
    const before = tl.layerMap.size;
    const removed = await t.gc({ timeline: tl, now_ms: now });
    expect(removed).toBeGreaterThan(0);
    expect(tl.layerMap.size).toBe(before - removed);
    expect(tl.latestGcCutoffLsn).toBe(0x400);
    expect(str(await tl.get(k(1), asLsn(0x400)))).toBe("0123");
    expect(str(await tl.get(k(1), asLsn(0x500)))).toBe("01234");
    expect(str(await tl.get(k(1), asLsn(0x600)))).toBe("012345");
    await expect(tl.get(k(1), asLsn(0x300))).rejects.toThrow(/garbage collected/);
    await expect(t.createTimeline({ ancestorId: tl.timelineId, ancestorLsn: asLsn(0x300) })).rejects.toThrow(/less than latest GC cutoff/);
    // The child branched at 0x300, below the cutoff: it still reads its branch point.
    expect(str(await child.get(k(1), asLsn(0x300)))).toBe("012");
    // Durable: the cutoff survives a restart.
    const t2 = await h.restart(false);
    expect(t2.getTimeline(tl.timelineId).latestGcCutoffLsn).toBe(0x400);
  });

  it("the space cutoff still applies: min(gc_horizon, PITR)", async () => {
    h = new TenantHarness({ conf: { gc_horizon: 0x200, pitr_interval: "1h" } });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    const now = Date.now();
    await history(tl, [now - 5 * HOUR_MS, now - 4 * HOUR_MS, now - 3 * HOUR_MS, now - 2 * HOUR_MS, now - 90 * 60_000]);
    // PITR alone would allow 0x600; 0x200 bytes of WAL are kept.
    expect(tl.gcCutoff(now)).toBe(0x400);
  });

  it("a child's PITR looks at its ancestor's commits below the branch point and never answers below its start", async () => {
    h = new TenantHarness({ conf: { gc_horizon: 0, pitr_interval: "1h" } });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    const now = Date.now();
    await history(tl, [now - 5 * HOUR_MS, now - 4 * HOUR_MS, now - 3 * HOUR_MS, now - 2 * HOUR_MS, now - 90 * 60_000]);
    const child = await t.createTimeline({ ancestorId: tl.timelineId, ancestorLsn: asLsn(0x400) });
    child.put(k(1), asLsn(0x700), testAppend("c"));
    child.noteCommit(asLsn(0x700), pgTime(now - 10 * 60_000));
    child.finishWrite(asLsn(0x700));
    await child.checkpoint();
    // The last commit older than 1h on the child's history is the ancestor's at 0x400: the branch point.
    expect(child.gcCutoff(now)).toBe(0x400);
    // The child's own commit, 10 minutes old, is kept when the limit is before it.
    expect(child.gcCutoff(now + 5 * 60_000)).toBe(0x400);
    expect(child.gcCutoff(now + 2 * HOUR_MS)).toBe(0x700);
  });

  it("without any commit time known, the ingest-time samples stand in", async () => {
    h = new TenantHarness({ conf: { gc_horizon: 0, pitr_interval: "1h" } });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    tl.put(k(1), asLsn(0x100), testInit("0"));
    tl.finishWrite(asLsn(0x100));
    tl.put(k(1), asLsn(0x200), testAppend("1"));
    tl.finishWrite(asLsn(0x200));
    await tl.checkpoint();
    // Every sample was taken just now: inside the interval, nothing may go.
    expect(tl.gcCutoff(Date.now())).toBe(0);
    // Seen from two hours later, the samples are older than the interval.
    const later = tl.gcCutoff(Date.now() + 2 * HOUR_MS);
    expect(later).toBeGreaterThanOrEqual(0x100);
    expect(later).toBeLessThanOrEqual(0x200);
  });
});
