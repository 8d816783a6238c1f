/**
 * Time ↔ LSN answers from commit-time probes, by PostgreSQL's rule (xlogrecovery.c,
 * recoveryStopsBefore with recovery_target_inclusive = on): replay stops BEFORE the first
 * transaction-end record, in LSN order, whose time is later than T. A probe (CommitTimes.probe)
 * says what one timeline's index knows about T; resolveLsnForTime turns the probes of a
 * timeline and its ancestors into Neon's kinds (present / past / future / nodata). Also the
 * conversions between PostgreSQL's TimestampTz and Unix milliseconds.
 */
import { type Lsn, lsnMax } from "../types/lsn.js";
import { NO_LSN } from "./commit_time_format.js";

/** PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;

/** A PostgreSQL TimestampTz (µs since 2000-01-01) as Unix milliseconds (fractional). */
export function pgTimestampToMs(us: number): number {
  return us / 1000 + PG_EPOCH_MS;
}

/** Unix milliseconds (fractional, e.g. from an RFC 3339 time with µs) as a TimestampTz, to the µs. */
export function msToPgTimestamp(ms: number): number {
  // Both terms are multiples of 2^-12 ms below 2^41: the difference is exact, the product
  // off by < 0.1 µs, so rounding recovers the µs the text named.
  return Math.round((ms - PG_EPOCH_MS) * 1000);
}

/** What a probe of one index found for a time T (fields set by CommitTimes.probe). */
export interface TimeProbe {
  /** T is earlier than a trimmed entry: the first record past T is below the index's start. */
  before: boolean;
  /** Entries were trimmed (or migrated away) below the index's start: some record precedes its first entry. */
  hasBefore: boolean;
  /** End LSN of the first entry (≤ maxLsn) whose time is later than T; -1: none. */
  stopLsn: Lsn;
  /** End LSN of the entry before it in this index; -1: it is the first kept entry. */
  prevLsn: Lsn;
  /** When no entry stops: end LSN of the last entry ≤ maxLsn; -1: none. */
  lastLsn: Lsn;
}

/** get_lsn_by_timestamp's answer (Neon's kinds). */
export interface LsnForTime {
  kind: "present" | "past" | "future" | "nodata";
  lsn: Lsn;
}

/**
 * The answer for T from the probes of a timeline's history, root ancestor first (each probed
 * up to its child's branch point, the timeline itself to the end). PostgreSQL stops before
 * the first record past T; every LSN from the end of the record before it up to that record
 * holds the same transactions, so the answer is the first such LSN a branch may start at:
 * - `present` max(end of the record before, earliest) when the stop record ends above earliest
 *   and some record before it is known (a record before the first one ever seen may be later
 *   than T: the history before the timeline's start is not known);
 * - `past` (earliest) when the stop record is at or below earliest or is the first known;
 * - `future` (lastRecordLsn) when no record is later than T; `nodata` (earliest) with none at all.
 */
export function resolveLsnForTime(probes: readonly TimeProbe[], earliest: Lsn, lastRecordLsn: Lsn): LsnForTime {
  let known = false;
  let prev = NO_LSN;
  for (const p of probes) {
    if (p.before) return { kind: "past", lsn: earliest };
    if (p.stopLsn >= 0) {
      const knownBefore = p.prevLsn >= 0 || p.hasBefore || known;
      if (!knownBefore || p.stopLsn <= earliest) return { kind: "past", lsn: earliest };
      return { kind: "present", lsn: lsnMax(p.prevLsn >= 0 ? p.prevLsn : prev, earliest) };
    }
    if (p.lastLsn >= 0) {
      known = true;
      prev = p.lastLsn;
    } else if (p.hasBefore) {
      known = true;
    }
  }
  return known ? { kind: "future", lsn: lastRecordLsn } : { kind: "nodata", lsn: earliest };
}
