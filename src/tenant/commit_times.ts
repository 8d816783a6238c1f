/**
 * CommitTimes: one timeline's index of commit timestamps by LSN, learned from the WAL
 * (xact COMMIT and COMMIT_PREPARED records carry xact_time). It answers "the LSN of the last
 * commit at or before time T" (get_lsn_by_timestamp, branch creation at a time, PITR
 * retention) and "the time of the last commit at or before LSN L".
 *
 * Entries are (end LSN of the commit record, commit time in ms since the Unix epoch), in
 * ascending LSN order; commit times are not monotonic in LSN order (a transaction takes its
 * timestamp before it inserts its record), so a lookup by time scans from the newest entry.
 *
 * Bounded: at most MAX_ENTRIES; when full, the older half is thinned to every other entry
 * (recent history stays exact, old history coarser, as with PITR samples).
 *
 * Durable: saved to `commit_times.json` beside the timeline's metadata, only entries at or
 * below disk_consistent_lsn (their WAL will not be streamed again). On load, entries above
 * the recorded disk_consistent_lsn are dropped: their WAL is streamed again and re-adds them.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { assert } from "../types/assert.js";
import { CorruptionError } from "../types/errors.js";
import type { Lsn } from "../types/lsn.js";
import { writeFileDurable } from "./durable.js";

export const COMMIT_TIMES_FILE = "commit_times.json";
/** Entries kept per timeline: 16 bytes each in memory, about 40 in the file. */
export const MAX_COMMIT_TIMES = 8192;
/** PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;

/** A PostgreSQL TimestampTz (µs since 2000-01-01) as Unix milliseconds (fractional). */
export function pgTimestampToMs(us: number): number {
  return us / 1000 + PG_EPOCH_MS;
}

interface FileShape {
  version: 1;
  lsns: number[];
  times_ms: number[];
}

export class CommitTimes {
  private lsns: number[] = [];
  private times: number[] = [];
  private readonly path: string;
  private readonly maxEntries: number;
  /** The newest entry the file holds (-1: none). */
  private savedNewest: Lsn = -1;
  /** Entries were thinned since the last save: the file holds some that are gone. */
  private thinned = false;

  constructor(dir: string, maxEntries = MAX_COMMIT_TIMES) {
    assert(maxEntries >= 4, "commit-time index needs room");
    this.path = join(dir, COMMIT_TIMES_FILE);
    this.maxEntries = maxEntries;
  }

  /** Read the file (if any) and keep the entries at or below `durableLsn`. */
  load(durableLsn: Lsn): void {
    if (!existsSync(this.path)) return;
    let f: FileShape;
    try {
      f = JSON.parse(readFileSync(this.path, "utf8")) as FileShape;
    } catch (e) {
      throw new CorruptionError(this.path, 0, `unreadable commit-time index: ${(e as Error).message}`);
    }
    const ok =
      f !== null &&
      typeof f === "object" &&
      f.version === 1 &&
      Array.isArray(f.lsns) &&
      Array.isArray(f.times_ms) &&
      f.lsns.length === f.times_ms.length &&
      f.lsns.length <= this.maxEntries;
    if (!ok) throw new CorruptionError(this.path, 0, "commit-time index is not {version: 1, lsns, times_ms} of equal lengths within the bound");
    // Checked whole before any of it is taken: a bad file leaves the index empty.
    const lsns: number[] = [];
    const times: number[] = [];
    let prev = -1;
    for (let i = 0; i < f.lsns.length; i++) {
      const lsn = f.lsns[i];
      const t = f.times_ms[i];
      if (!Number.isSafeInteger(lsn) || (lsn as number) <= prev || typeof t !== "number" || !Number.isFinite(t)) {
        throw new CorruptionError(this.path, 0, `commit-time index entry ${i} is not an ascending LSN with a finite time`);
      }
      prev = lsn as number;
      if ((lsn as number) > durableLsn) continue;
      lsns.push(lsn as number);
      times.push(t);
    }
    this.lsns = lsns;
    this.times = times;
    this.savedNewest = lsns.length === 0 ? -1 : lsns[lsns.length - 1]!;
  }

  get size(): number {
    return this.lsns.length;
  }

  /** A commit at `lsn` (its record's end) at `time_ms`. An LSN at or below the newest is ignored (WAL streamed again). */
  add(lsn: Lsn, time_ms: number): void {
    const n = this.lsns.length;
    if (n > 0 && lsn <= this.lsns[n - 1]!) return;
    if (n >= this.maxEntries) this.thin();
    this.lsns.push(lsn);
    this.times.push(time_ms);
  }

  /** Drop every other entry of the older half. */
  private thin(): void {
    const half = this.lsns.length >>> 1;
    const keepL: number[] = [];
    const keepT: number[] = [];
    for (let i = 0; i < half; i += 2) {
      keepL.push(this.lsns[i]!);
      keepT.push(this.times[i]!);
    }
    this.lsns.splice(0, half, ...keepL);
    this.times.splice(0, half, ...keepT);
    this.thinned = true;
  }

  /**
   * The last commit at or before `time_ms` among entries at or below `maxLsn`: the newest
   * such entry by LSN. Also says whether any entry (≤ maxLsn) is later than the time.
   */
  lookup(time_ms: number, maxLsn: Lsn): { lsn: Lsn | null; laterExists: boolean; any: boolean } {
    let i = this.lsns.length - 1;
    while (i >= 0 && this.lsns[i]! > maxLsn) i--;
    const any = i >= 0;
    let laterExists = false;
    for (; i >= 0; i--) {
      if (this.times[i]! <= time_ms) return { lsn: this.lsns[i]!, laterExists, any };
      laterExists = true;
    }
    return { lsn: null, laterExists, any };
  }

  /** The time of the last commit at or before `lsn`, or null. */
  timeAt(lsn: Lsn): number | null {
    let lo = 0;
    let hi = this.lsns.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.lsns[mid]! <= lsn) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? null : this.times[lo - 1]!;
  }

  /** Save the entries at or below `durableLsn` when they differ from what the file holds. */
  async save(durableLsn: Lsn): Promise<void> {
    let n = this.lsns.length;
    while (n > 0 && this.lsns[n - 1]! > durableLsn) n--;
    const newest = n === 0 ? -1 : this.lsns[n - 1]!;
    if (newest === this.savedNewest && !this.thinned) return;
    const f: FileShape = { version: 1, lsns: this.lsns.slice(0, n), times_ms: this.times.slice(0, n) };
    this.thinned = false;
    await writeFileDurable(this.path, Buffer.from(JSON.stringify(f)));
    this.savedNewest = newest;
  }
}
