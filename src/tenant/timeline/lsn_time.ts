/**
 * TimelineLsnTime: LSN ↔ time for one timeline's history. Owns the wall-clock samples taken
 * at ingest (the PITR fallback when no commit time is known); the commit-time index itself
 * (commit_times.ts) is the core's, so that ancestors' can be walked.
 *
 * Invariants:
 * - samples are in LSN and time order, at most one per second, at most MAX_LSN_TIME_SAMPLES
 *   (the older half is thinned to stay in the bound).
 * - a timeline's history is its ancestors' records below the branch points, then its own:
 *   every walk here goes root-ward clipping at each branch point.
 * - lsnForTime always answers an LSN this timeline can be branched at.
 *
 * Lock order: none (single-threaded).
 */
import { assert } from "../../types/assert.js";
import { INVALID_LSN, type Lsn, lsnMax, lsnMin, MAX_LSN } from "../../types/lsn.js";
import { type LsnForTime, msToPgTimestamp, pgTimestampToMs, resolveLsnForTime, type TimeProbe } from "../lsn_for_time.js";
import { MAX_ANCESTRY_DEPTH, type TimelineCore } from "./core.js";

/** PITR bookkeeping: (wall time, LSN) samples, at most this many, one per second at most. */
const MAX_LSN_TIME_SAMPLES = 4096;

export class TimelineLsnTime {
  private readonly core: TimelineCore;
  private readonly samples: { time_ms: number; lsn: Lsn }[] = [];

  constructor(core: TimelineCore) {
    this.core = core;
  }

  /** Ingest reached `lsn` at `now` (one call per record: returns at once within a second of the last sample). */
  sample(lsn: Lsn, now: number): void {
    const s = this.samples;
    if (s.length > 0 && now - s[s.length - 1]!.time_ms < 1000) return;
    if (s.length >= MAX_LSN_TIME_SAMPLES) {
      // Keep the bound by thinning: drop every other sample of the older half.
      const half = s.length >>> 1;
      const kept = s.slice(0, half).filter((_, i) => i % 2 === 0);
      s.splice(0, half, ...kept);
    }
    s.push({ time_ms: now, lsn });
  }

  /** The LSN of the last sample taken at or before `limit_ms` (0 without one). */
  sampledLsnAt(limit_ms: number): Lsn {
    let lsn = INVALID_LSN;
    for (const s of this.samples) {
      if (s.time_ms <= limit_ms) lsn = s.lsn;
      else break;
    }
    return lsn;
  }

  /**
   * Ingest saw a transaction-end record (COMMIT, COMMIT_PREPARED, ABORT, ABORT_PREPARED: the
   * records recovery_target_time is checked against) ending at `lsn` with PostgreSQL timestamp
   * `xactTime_us` (µs since 2000-01-01).
   */
  noteCommit(lsn: Lsn, xactTime_us: number): void {
    this.core.commitTimes.add(lsn, xactTime_us);
  }

  /** The commit-time index's files as one object for remote storage (CommitTimes.snapshot). */
  commitTimesSnapshot(): Promise<Uint8Array | null> {
    return this.core.commitTimes.snapshot();
  }

  /** The lowest LSN a branch of this timeline may start at now. */
  earliestBranchLsn(): Lsn {
    const c = this.core;
    return lsnMax(lsnMax(c.latestGcCutoff, c.plannedGcCutoff), lsnMax(c.initdbLsn, c.ancestor === null ? INVALID_LSN : c.ancestorLsn));
  }

  /**
   * Where a branch at `time_ms` (Unix ms, taken to the µs) starts, by PostgreSQL's rule for
   * recovery_target_time with recovery_target_inclusive: before the first transaction-end
   * record, in LSN order, whose time is later (resolveLsnForTime, commit_times.ts). This
   * timeline's history is its ancestors' records below the branch points, then its own.
   * `present`: the first LSN at or above the earliest branchable one holding exactly the
   * transactions that ended by then; `past`: that state is below the earliest branchable LSN
   * (or before the first record known); `future`: no record is later (last_record_lsn);
   * `nodata`: no record known. The answer is always an LSN this timeline can be branched at.
   */
  lsnForTime(time_ms: number): LsnForTime {
    const t_us = msToPgTimestamp(time_ms);
    const chain: TimelineCore[] = [];
    for (let t: TimelineCore | null = this.core; t !== null; t = t.ancestor) {
      assert(chain.length < MAX_ANCESTRY_DEPTH, "ancestry too deep");
      chain.push(t);
    }
    // Root first, each up to its child's branch point; a probe's object is reused: copy it.
    const probes: TimeProbe[] = [];
    for (let i = chain.length - 1; i >= 0; i--) {
      const maxLsn = i === 0 ? MAX_LSN : chain[i - 1]!.ancestorLsn;
      probes.push({ ...chain[i]!.commitTimes.probe(t_us, maxLsn) });
    }
    return resolveLsnForTime(probes, this.earliestBranchLsn(), this.core.lastRecord.load());
  }

  /**
   * Drop commit times that no reader needs any more: below the GC cutoff and below every
   * child's branch point (a child reads this timeline's commit times up to its branch point).
   */
  async trimCommitTimes(cutoff: Lsn, retainLsns: readonly Lsn[]): Promise<void> {
    let below = cutoff;
    for (const l of retainLsns) below = lsnMin(below, l);
    await this.core.commitTimes.trimBelow(below);
  }

  /** The time (Unix ms) of the last transaction end (commit or abort) at or before `lsn` on this timeline's history, or null. */
  timeForLsn(lsn: Lsn): number | null {
    let at = lsn;
    let depth = 0;
    for (let t: TimelineCore | null = this.core; t !== null; t = t.ancestor) {
      assert(depth++ < MAX_ANCESTRY_DEPTH, "ancestry too deep");
      const time = t.commitTimes.timeAt(at);
      if (time !== null) return pgTimestampToMs(time);
      at = lsnMin(at, t.ancestorLsn);
    }
    return null;
  }
}
