/**
 * CommitTimes: one timeline's index of transaction-end times by LSN, learned from its own WAL:
 * every xact COMMIT, COMMIT_PREPARED, ABORT and ABORT_PREPARED record (the four records that
 * carry xact_time and that PostgreSQL's recovery checks against recovery_target_time). It is
 * complete for the timeline's retained history, so answers by time are exact.
 *
 * The rule it answers by is PostgreSQL's (xlogrecovery.c, recoveryStopsBefore with
 * recovery_target_inclusive = on): replay stops BEFORE the first of those records, in LSN
 * order, whose time is later than T. Commit times are not monotonic in LSN order (a
 * transaction takes its timestamp before it inserts its record), so "the first record past T"
 * is found through the running maximum of the times, which is monotonic: a binary search over
 * the blocks' running maxima, then a scan of one block. resolveLsnForTime turns the probes of a
 * timeline and its ancestors into Neon's kinds (present / past / future / nodata).
 *
 * Entries: (end LSN of the record, its time in µs since 2000-01-01, PostgreSQL's TimestampTz),
 * ascending by LSN. In memory: a directory of the full blocks (first/last LSN, entry count and
 * the running maximum time, one Float64Array slot each), the full blocks not yet written
 * (pending), and the block being filled (tail). On disk: full blocks are read back one at a
 * time for a lookup (pread, seal checked). add() writes varints into the tail block: no
 * allocation per commit (one 8 kB buffer per ~1,500 commits).
 *
 * Files (docs/storage.md "Commit-time index"): `commit_times` = header block + full data
 * blocks, appended, never rewritten in place; `commit_times.tail` = the durable prefix of the
 * first block that is not yet full on disk, replaced whole (temp + fsync + rename) at each
 * save. Every block is 8 kB sealed with CRC32C as layer files are (block_seal.ts); the seal seed
 * is the block number in `commit_times`, TAIL_SEED for the tail file. Each data block names
 * the LSN of the entry before it (prev_lsn), so the chain of blocks and the tail is checked on
 * load: a block that fails its seal at the end of the file is a torn append only when the
 * tail file continues exactly where the good blocks end; anything else is corruption.
 *
 * Durable: save(d) makes every entry ≤ d durable (blocks appended + fsync, then the tail
 * file). load(d) drops entries above d (their WAL is streamed again and re-adds them):
 * the file is cut at block granularity after the tail file holds the kept prefix. Trimmed
 * only below the GC cutoff and the children's branch points (trimBelow): the header keeps
 * the start LSN and the largest time of what was dropped, so a T earlier than that still
 * answers `past`. A corrupt file is a CorruptionError from load(); the timeline then calls
 * reset(), which keeps the bad files aside and starts the index at disk_consistent_lsn.
 *
 * Remote storage (docs/storage.md "Commit-time index in remote storage"): snapshot() frames
 * both files as they are durably (after the saves and trims before it) into one object the
 * upload queue puts before the index_part.json that names it; writeCommitTimesSnapshot()
 * lays such an object down as the two files of a timeline directory being attached, and the
 * timeline's load() then checks every seal and the chain as for its own files.
 *
 * Concurrency: main thread only. File writes (save, trimBelow) run one at a time in order
 * (the `io` chain); lookups only read blocks whose write completed (index < onDisk).
 */
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, readSync, renameSync, statSync, unlinkSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { crc32c } from "@node-rs/crc32";
import { dirname, join } from "node:path";
import { BLOCK_PAYLOAD, BLOCK_SIZE, blockSealOk, sealBlock } from "../layers/block_seal.js";
import { fsyncDir, removeFileDurable, uniqueTempPath, writeFileDurable, writeFileDurableSync } from "../layers/durable_file.js";
import { readU16BE, readU32BE, readU64BEOrNeg, writeU16BE, writeU32BE, writeU64BE } from "../types/bytes.js";
import { assert } from "../types/assert.js";
import { CorruptionError } from "../types/errors.js";
import { INVALID_LSN, type Lsn, lsnAdd, lsnMax } from "../types/lsn.js";

export const COMMIT_TIMES_FILE = "commit_times";
export const COMMIT_TIMES_TAIL_FILE = "commit_times.tail";
/** The index before this format (JSON, at most 8,192 thinned entries): migrated when complete. */
export const COMMIT_TIMES_LEGACY_FILE = "commit_times.json";
/** The suffix a corrupt index is renamed to by reset(). */
export const CORRUPT_SUFFIX = ".corrupt";
/** A legacy index with fewer entries never thinned (it thinned 8,192 down to 6,144): it is complete. */
const LEGACY_NEVER_THINNED = 6144;
/** "No entry" in probes, scanners and the directory (never a valid LSN). */
const NO_LSN = -1 as Lsn;
/** An LSN field of a block (B_PREV/B_FIRST/B_LAST, HB_START_LSN); -1 when beyond 2^53 (the loaders refuse it). */
const readLsnOrNeg = (b: Uint8Array, off: number): Lsn => readU64BEOrNeg(b, off) as Lsn;

/** Files of the index in a timeline directory (Timeline.load leaves them alone). */
export function isCommitTimesFile(name: string): boolean {
  return name === COMMIT_TIMES_FILE || name.startsWith(`${COMMIT_TIMES_FILE}.`);
}

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

// ---------------------------------------------------------------------------------------------
// Format
// ---------------------------------------------------------------------------------------------

const MAGIC = 0x50534354; // 'PSCT'
const VERSION = 1;
const FLAG_HAS_BEFORE = 1;
/** Header block (block 0) fields. */
const HB_MAGIC = 0;
const HB_VERSION = 4;
const HB_FLAGS = 6;
const HB_START_LSN = 8;
const HB_BEFORE_MAX = 16;
/** Data block header fields; entries from the second on follow at B_ENTRIES. */
const B_COUNT = 0;
const B_USED = 2;
const B_PREV = 8;
const B_FIRST = 16;
const B_LAST = 24;
const B_FIRST_TIME = 32;
const B_MAX_TIME = 40;
const B_ENTRIES = 48;
/** One entry: two varints of at most 8 bytes each (values below 2^56). */
const MAX_ENTRY_BYTES = 16;
/** The tail file's seal seed (no block number: it is no block of `commit_times`). */
const TAIL_SEED = 0x7461696c;
/** Directory slots are grown by doubling up to this many blocks (2^24 × ~1,500 commits). */
const MAX_BLOCKS = 1 << 24;

// f64 fields, little-endian, without a DataView per buffer.
const f64 = new Float64Array(1);
const f64b = new Uint8Array(f64.buffer);
function writeF64(b: Uint8Array, off: number, v: number): void {
  f64[0] = v;
  for (let i = 0; i < 8; i++) b[off + i] = f64b[i]!;
}
function readF64(b: Uint8Array, off: number): number {
  for (let i = 0; i < 8; i++) f64b[i] = b[off + i]!;
  return f64[0]!;
}

function putVarint(b: Uint8Array, off: number, v: number): number {
  let x = v;
  while (x >= 128) {
    b[off++] = (x % 128) | 128;
    x = Math.floor(x / 128);
  }
  b[off++] = x;
  return off;
}
/** Where the last getVarint stopped (one decoder at a time: main thread). */
let vpos = 0;
function getVarint(b: Uint8Array, off: number, end: number): number {
  let x = 0;
  let mul = 1;
  let p = off;
  for (;;) {
    if (p >= end || mul > 2 ** 49) return -1;
    const byte = b[p++]!;
    x += (byte & 127) * mul;
    if (byte < 128) break;
    mul *= 128;
  }
  vpos = p;
  return x;
}
const zigzag = (d: number): number => (d >= 0 ? 2 * d : -2 * d - 1);
const unzigzag = (z: number): number => (z % 2 === 0 ? z / 2 : -(z + 1) / 2);

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

function growF64(a: Float64Array<ArrayBuffer>, need: number): Float64Array<ArrayBuffer> {
  if (need <= a.length) return a;
  assert(need <= MAX_BLOCKS, "commit-time index beyond its block bound");
  const b = new Float64Array(Math.min(MAX_BLOCKS, Math.max(need, a.length * 2)));
  b.set(a);
  return b;
}

export class CommitTimes {
  readonly path: string;
  readonly tailPath: string;
  private readonly legacyPath: string;

  // Header: entries at or below startLsn are not kept; beforeMax_us is the largest time among
  // the trimmed ones (-Infinity: none known).
  private startLsn = INVALID_LSN;
  private beforeMax_us = Number.NEGATIVE_INFINITY;
  private hasBefore = false;

  // Directory of full blocks: [0, onDisk) in the file at block 1 + i, then pending.
  private nBlocks = 0;
  private onDisk = 0;
  private dirFirst: Float64Array<ArrayBuffer> = new Float64Array(4);
  private dirLast: Float64Array<ArrayBuffer> = new Float64Array(4);
  private dirCount: Float64Array<ArrayBuffer> = new Float64Array(4);
  /** Largest time in blocks 0..i (the running maximum: monotonic). */
  private dirRunMax: Float64Array<ArrayBuffer> = new Float64Array(4);
  private pending: Uint8Array[] = [];
  private readonly spare: Uint8Array[] = [];

  // The block being filled.
  private tail: Uint8Array | null = null;
  private tCount = 0;
  private tUsed = B_ENTRIES;
  private tPrev = INVALID_LSN;
  private tFirst = INVALID_LSN;
  private tLast = INVALID_LSN;
  private tFirstTime = 0;
  private tLastTime = 0;
  private tMax = 0;

  private entries = 0;
  /** The file exists with its header. */
  private fileExists = false;
  /** The newest entry the files hold durably (-1: none). */
  private savedNewest = NO_LSN;
  private io: Promise<void> = Promise.resolve();
  private scratch: Uint8Array | null = null;
  private readonly probeOut: TimeProbe = { before: false, hasBefore: false, stopLsn: NO_LSN, prevLsn: NO_LSN, lastLsn: NO_LSN };
  // Results of the block scanners.
  private rLsn = NO_LSN;
  private rTime = 0;
  private rPrev = NO_LSN;

  constructor(dir: string) {
    this.path = join(dir, COMMIT_TIMES_FILE);
    this.tailPath = join(dir, COMMIT_TIMES_TAIL_FILE);
    this.legacyPath = join(dir, COMMIT_TIMES_LEGACY_FILE);
  }

  /** Entries kept (in memory and on disk). */
  get size(): number {
    return this.entries;
  }

  /** Bytes held in memory: the directory, pending blocks, the tail block and scratch. */
  get memoryBytes(): number {
    const dir = (this.dirFirst.length + this.dirLast.length + this.dirCount.length + this.dirRunMax.length) * 8;
    return dir + (this.pending.length + this.spare.length + (this.tail === null ? 0 : 1) + (this.scratch === null ? 0 : 1)) * BLOCK_SIZE;
  }

  private get newest(): Lsn {
    if (this.tCount > 0) return this.tLast;
    return this.nBlocks > 0 ? (this.dirLast[this.nBlocks - 1]! as Lsn) : NO_LSN;
  }

  // -------------------------------------------------------------------------------------------
  // Ingest

  /**
   * A transaction-end record ending at `lsn` with xact_time `time_us` (µs since 2000). An LSN
   * at or below the newest entry (WAL streamed again) or the index's start is ignored.
   */
  add(lsn: Lsn, time_us: number): void {
    if (lsn <= this.startLsn || lsn <= this.newest) return;
    assert(Number.isSafeInteger(lsn) && Number.isSafeInteger(time_us), "commit time entry: LSN and µs must be integers");
    if (this.tCount > 0 && this.tUsed + MAX_ENTRY_BYTES > BLOCK_PAYLOAD) this.sealTail();
    if (this.tCount === 0) {
      if (this.tail === null) {
        const reused = this.spare.pop();
        reused?.fill(0);
        this.tail = reused ?? new Uint8Array(BLOCK_SIZE);
      }
      const n = this.nBlocks;
      this.tPrev = n > 0 ? (this.dirLast[n - 1]! as Lsn) : this.startLsn;
      this.tFirst = lsn;
      this.tFirstTime = time_us;
      this.tMax = time_us;
      this.tUsed = B_ENTRIES;
    } else {
      let off = putVarint(this.tail!, this.tUsed, lsn - this.tLast);
      off = putVarint(this.tail!, off, zigzag(time_us - this.tLastTime));
      this.tUsed = off;
      if (time_us > this.tMax) this.tMax = time_us;
    }
    this.tLast = lsn;
    this.tLastTime = time_us;
    this.tCount++;
    this.entries++;
  }

  /** The tail block is full: its header written, it becomes a pending block. */
  private sealTail(): void {
    const b = this.tail!;
    writeTailHeader(b, this.tCount, this.tUsed, this.tPrev, this.tFirst, this.tLast, this.tFirstTime, this.tMax);
    const n = this.nBlocks;
    this.dirFirst = growF64(this.dirFirst, n + 1);
    this.dirLast = growF64(this.dirLast, n + 1);
    this.dirCount = growF64(this.dirCount, n + 1);
    this.dirRunMax = growF64(this.dirRunMax, n + 1);
    this.dirFirst[n] = this.tFirst;
    this.dirLast[n] = this.tLast;
    this.dirCount[n] = this.tCount;
    this.dirRunMax[n] = n > 0 ? Math.max(this.dirRunMax[n - 1]!, this.tMax) : this.tMax;
    this.nBlocks = n + 1;
    this.pending.push(b);
    this.tail = null;
    this.tCount = 0;
  }

  // -------------------------------------------------------------------------------------------
  // Lookups

  /**
   * The first entry at or below `maxLsn` whose time is later than `t_us`, the entry before it,
   * or (none later) the last entry at or below `maxLsn`. The object returned is reused.
   */
  probe(t_us: number, maxLsn: Lsn): TimeProbe {
    const out = this.probeOut;
    out.before = t_us < this.beforeMax_us;
    out.hasBefore = this.hasBefore;
    out.stopLsn = NO_LSN;
    out.prevLsn = NO_LSN;
    out.lastLsn = NO_LSN;
    if (out.before) return out;
    // The first block whose running maximum passes t_us holds the first entry past it.
    let lo = 0;
    let hi = this.nBlocks;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.dirRunMax[mid]! > t_us) hi = mid;
      else lo = mid + 1;
    }
    if (lo < this.nBlocks) {
      this.scanFirstAfter(this.block(lo), this.dirCount[lo]!, t_us);
      if (this.rLsn < 0) throw new CorruptionError(this.path, 1 + lo, "commit-time block's maximum time is later than all of its entries");
      out.stopLsn = this.rLsn;
      out.prevLsn = this.rPrev >= 0 ? this.rPrev : lo > 0 ? (this.dirLast[lo - 1]! as Lsn) : NO_LSN;
    } else if (this.tCount > 0 && this.tMax > t_us) {
      this.scanFirstAfter(this.tailView(), this.tCount, t_us);
      out.stopLsn = this.rLsn;
      out.prevLsn = this.rPrev >= 0 ? this.rPrev : lo > 0 ? (this.dirLast[lo - 1]! as Lsn) : NO_LSN;
    }
    if (out.stopLsn > maxLsn) {
      out.stopLsn = NO_LSN;
      out.prevLsn = NO_LSN;
    }
    if (out.stopLsn < 0) {
      out.lastLsn = this.floor(maxLsn) ? this.rLsn : NO_LSN;
    }
    return out;
  }

  /** The time (µs since 2000) of the last entry at or below `lsn`, or null. */
  timeAt(lsn: Lsn): number | null {
    return this.floor(lsn) ? this.rTime : null;
  }

  /** How many blocks start at or below `lsn` (the last of them is the one that may hold its floor). */
  private blocksStartingAtOrBelow(lsn: Lsn): number {
    let lo = 0;
    let hi = this.nBlocks;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.dirFirst[mid]! <= lsn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Find the last entry at or below `lsn` into rLsn / rTime; false when there is none. */
  private floor(lsn: Lsn): boolean {
    if (this.tCount > 0 && this.tFirst <= lsn) {
      this.scanFloor(this.tailView(), this.tCount, lsn);
      return true;
    }
    const lo = this.blocksStartingAtOrBelow(lsn);
    if (lo === 0) return false;
    this.scanFloor(this.block(lo - 1), this.dirCount[lo - 1]!, lsn);
    return true;
  }

  /** The tail block with its header written (scanners read first LSN / time from the header). */
  private tailView(): Uint8Array {
    const b = this.tail!;
    writeTailHeader(b, this.tCount, this.tUsed, this.tPrev, this.tFirst, this.tLast, this.tFirstTime, this.tMax);
    return b;
  }

  /** Full block i: pending in memory, or read from the file with its seal and directory checked. */
  private block(i: number): Uint8Array {
    if (i >= this.onDisk) return this.pending[i - this.onDisk]!;
    if (this.scratch === null) this.scratch = new Uint8Array(BLOCK_SIZE);
    const b = this.scratch;
    const blkno = 1 + i;
    const fd = openSync(this.path, "r");
    let n: number;
    try {
      n = readSync(fd, b, 0, BLOCK_SIZE, blkno * BLOCK_SIZE);
    } finally {
      closeSync(fd);
    }
    if (n !== BLOCK_SIZE || !blockSealOk(b, blkno)) throw new CorruptionError(this.path, blkno, "commit-time block checksum mismatch");
    if (readU16BE(b, B_COUNT) !== this.dirCount[i] || readU64BEOrNeg(b, B_FIRST) !== this.dirFirst[i] || readU64BEOrNeg(b, B_LAST) !== this.dirLast[i]) {
      throw new CorruptionError(this.path, blkno, "commit-time block differs from what the file held at load");
    }
    return b;
  }

  /** rLsn/rTime: the first entry of `b` later than t_us (rLsn -1: none); rPrev: the one before it in b (-1: none). */
  private scanFirstAfter(b: Uint8Array, count: number, t_us: number): void {
    let lsn = readLsnOrNeg(b, B_FIRST);
    let time = readF64(b, B_FIRST_TIME);
    let prev = NO_LSN;
    const end = readU16BE(b, B_USED);
    let off = B_ENTRIES;
    for (let i = 0; ; i++) {
      if (time > t_us) {
        this.rLsn = lsn;
        this.rTime = time;
        this.rPrev = prev;
        return;
      }
      if (i + 1 >= count) break;
      prev = lsn;
      const dl = getVarint(b, off, end);
      const dt = dl < 0 ? -1 : getVarint(b, vpos, end);
      if (dl <= 0 || dt < 0) throw new CorruptionError(this.path, 0, `commit-time block entry ${i + 1} does not decode`);
      off = vpos;
      lsn = lsnAdd(lsn, dl);
      time += unzigzag(dt);
    }
    this.rLsn = NO_LSN;
    this.rPrev = lsn;
  }

  /** rLsn/rTime: the last entry of `b` at or below `max` (the block's first is). */
  private scanFloor(b: Uint8Array, count: number, max: Lsn): void {
    let lsn = readLsnOrNeg(b, B_FIRST);
    let time = readF64(b, B_FIRST_TIME);
    const end = readU16BE(b, B_USED);
    let off = B_ENTRIES;
    for (let i = 1; i < count; i++) {
      const dl = getVarint(b, off, end);
      const dt = dl < 0 ? -1 : getVarint(b, vpos, end);
      if (dl <= 0 || dt < 0) throw new CorruptionError(this.path, 0, `commit-time block entry ${i} does not decode`);
      if (lsn + dl > max) break;
      off = vpos;
      lsn = lsnAdd(lsn, dl);
      time += unzigzag(dt);
    }
    this.rLsn = lsn;
    this.rTime = time;
  }

  // -------------------------------------------------------------------------------------------
  // Durability

  /** Make every entry at or below `durableLsn` durable (after earlier saves and trims). */
  save(durableLsn: Lsn): Promise<void> {
    const p = this.io.then(() => this.saveNow(durableLsn));
    this.io = p.catch(() => undefined);
    return p;
  }

  /** The newest entry at or below `lsn`, -1 for none; null when it is in a block already written (nothing to save). */
  private newestUnsaved(lsn: Lsn): Lsn | null {
    if (this.tCount > 0 && this.tFirst <= lsn) {
      this.scanFloor(this.tailView(), this.tCount, lsn);
      return this.rLsn;
    }
    const lo = this.blocksStartingAtOrBelow(lsn);
    if (lo === 0) return NO_LSN;
    if (lo - 1 < this.onDisk) return null;
    this.scanFloor(this.pending[lo - 1 - this.onDisk]!, this.dirCount[lo - 1]!, lsn);
    return this.rLsn;
  }

  private async saveNow(durableLsn: Lsn): Promise<void> {
    // No read of the file here: a save never depends on blocks already written.
    const newest = this.newestUnsaved(durableLsn);
    if (newest === null || (newest === this.savedNewest && (this.fileExists || newest < 0))) return;
    // Everything below is decided now, before the first await: add() goes on meanwhile.
    let k = this.onDisk;
    while (k < this.nBlocks && this.dirLast[k]! <= durableLsn) k++;
    const tailOut = new Uint8Array(BLOCK_SIZE);
    if (k < this.nBlocks) cutBlock(this.pending[k - this.onDisk]!, this.dirCount[k]!, durableLsn, tailOut);
    else if (this.tCount > 0) cutBlock(this.tailView(), this.tCount, durableLsn, tailOut);
    if (readU16BE(tailOut, B_COUNT) === 0) writeU64BE(tailOut, B_PREV, k > 0 ? this.dirLast[k - 1]! : this.startLsn);
    sealBlock(tailOut, TAIL_SEED);
    const from = this.onDisk;
    const blocks = this.pending.slice(0, k - from);
    if (!this.fileExists) {
      await writeFileDurable(this.path, this.headerBlock());
      this.fileExists = true;
    }
    if (blocks.length > 0) {
      const fh = await open(this.path, "r+");
      try {
        for (let j = 0; j < blocks.length; j++) {
          const blkno = 1 + from + j;
          sealBlock(blocks[j]!, blkno);
          await fh.write(blocks[j]!, 0, BLOCK_SIZE, blkno * BLOCK_SIZE);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await writeFileDurable(this.tailPath, tailOut);
    // Written: those blocks are read from the file from now on.
    assert(this.onDisk === from, "commit-time saves overlap");
    for (const b of this.pending.splice(0, blocks.length)) if (this.spare.length < 2) this.spare.push(b);
    this.onDisk = k;
    this.savedNewest = newest;
    if (existsSync(this.legacyPath)) unlinkSync(this.legacyPath);
  }

  private headerBlock(startLsn = this.startLsn, beforeMax_us = this.beforeMax_us, hasBefore = this.hasBefore): Uint8Array {
    const h = new Uint8Array(BLOCK_SIZE);
    writeU32BE(h, HB_MAGIC, MAGIC);
    writeU16BE(h, HB_VERSION, VERSION);
    writeU16BE(h, HB_FLAGS, hasBefore ? FLAG_HAS_BEFORE : 0);
    writeU64BE(h, HB_START_LSN, startLsn);
    writeF64(h, HB_BEFORE_MAX, beforeMax_us);
    sealBlock(h, 0);
    return h;
  }

  /**
   * Read the files (if any) and keep the entries at or below `durableLsn`. Throws a
   * CorruptionError naming the file and block when they are not a consistent index; the
   * index is then empty (see reset). Returns a note for the log, or null.
   */
  load(durableLsn: Lsn): string | null {
    this.clear(INVALID_LSN, false);
    if (!existsSync(this.path)) return existsSync(this.legacyPath) ? this.migrateLegacy(durableLsn) : null;
    try {
      this.loadFiles(durableLsn);
    } catch (e) {
      this.clear(INVALID_LSN, false);
      throw e;
    }
    if (existsSync(this.legacyPath)) unlinkSync(this.legacyPath);
    return null;
  }

  private loadFiles(durableLsn: Lsn): void {
    const file = readFileSync(this.path);
    const h = file.subarray(0, BLOCK_SIZE);
    if (h.length !== BLOCK_SIZE || !blockSealOk(h, 0)) throw new CorruptionError(this.path, 0, "commit-time index header checksum mismatch");
    if (readU32BE(h, HB_MAGIC) !== MAGIC || readU16BE(h, HB_VERSION) !== VERSION) throw new CorruptionError(this.path, 0, "not a commit-time index of version 1");
    const start = readLsnOrNeg(h, HB_START_LSN);
    const beforeMax = readF64(h, HB_BEFORE_MAX);
    if (start < 0 || Number.isNaN(beforeMax)) throw new CorruptionError(this.path, 0, "commit-time index header out of range");
    this.startLsn = start;
    this.beforeMax_us = beforeMax;
    this.hasBefore = (readU16BE(h, HB_FLAGS) & FLAG_HAS_BEFORE) !== 0;
    this.fileExists = true;

    const whole = Math.floor(file.length / BLOCK_SIZE) - 1;
    let prev = start;
    let good = 0;
    for (; good < whole; good++) {
      const blkno = 1 + good;
      const b = file.subarray(blkno * BLOCK_SIZE, (blkno + 1) * BLOCK_SIZE);
      if (!blockSealOk(b, blkno) || !blockSane(b, prev)) break;
      const n = this.nBlocks;
      this.dirFirst = growF64(this.dirFirst, n + 1);
      this.dirLast = growF64(this.dirLast, n + 1);
      this.dirCount = growF64(this.dirCount, n + 1);
      this.dirRunMax = growF64(this.dirRunMax, n + 1);
      this.dirFirst[n] = readU64BEOrNeg(b, B_FIRST);
      this.dirLast[n] = readU64BEOrNeg(b, B_LAST);
      this.dirCount[n] = readU16BE(b, B_COUNT);
      const max = readF64(b, B_MAX_TIME);
      this.dirRunMax[n] = n > 0 ? Math.max(this.dirRunMax[n - 1]!, max) : max;
      this.nBlocks = n + 1;
      prev = this.dirLast[n] as Lsn;
    }
    this.onDisk = good;
    const torn = good < whole || file.length % BLOCK_SIZE !== 0;

    let tailBlk: Uint8Array | null = null;
    if (existsSync(this.tailPath)) {
      const t = readFileSync(this.tailPath);
      if (t.length !== BLOCK_SIZE || !blockSealOk(t, TAIL_SEED)) throw new CorruptionError(this.tailPath, 0, "commit-time tail checksum mismatch");
      if (!blockSane(t, readLsnOrNeg(t, B_PREV), true)) throw new CorruptionError(this.tailPath, 0, "commit-time tail header out of range");
      tailBlk = t;
    }
    // No tail file: no save finished, nothing was durable before the blocks appended.
    const tailPrev = tailBlk === null ? start : readLsnOrNeg(tailBlk, B_PREV);
    if (torn) {
      // Blocks appended by a save that did not finish (it writes the tail file after them): the
      // tail file it would have replaced starts at or before where the good blocks end, so the
      // good blocks and that tail hold everything durable. A tail starting later: a lost block.
      if (tailPrev > prev) throw new CorruptionError(this.path, 1 + good, "commit-time block checksum or chain mismatch (not a torn append: the tail file starts after it)");
      this.truncateFile(good);
    }
    if (tailBlk !== null) {
      if (tailPrev > prev) throw new CorruptionError(this.tailPath, 0, `commit-time tail starts after ${prev}, where the blocks end: entries are missing`);
      // tailPrev < prev: blocks appended after it was written hold its entries.
      if (tailPrev === prev && readU16BE(tailBlk, B_COUNT) > 0) this.adoptTail(tailBlk);
    }
    let count = 0;
    for (let i = 0; i < this.nBlocks; i++) count += this.dirCount[i]!;
    this.entries = count + this.tCount;
    this.cutAbove(durableLsn);
    this.savedNewest = this.newest;
  }

  /** Make `b` (a block or a prefix of one, header written) the tail being filled. */
  private adoptTail(b: Uint8Array): void {
    const t = this.spare.pop() ?? new Uint8Array(BLOCK_SIZE);
    t.fill(0);
    t.set(b.subarray(0, BLOCK_PAYLOAD));
    this.tail = t;
    this.tCount = readU16BE(b, B_COUNT);
    this.tUsed = readU16BE(b, B_USED);
    this.tPrev = readLsnOrNeg(b, B_PREV);
    this.tFirst = readLsnOrNeg(b, B_FIRST);
    this.tLast = readLsnOrNeg(b, B_LAST);
    this.tFirstTime = readF64(b, B_FIRST_TIME);
    this.tMax = readF64(b, B_MAX_TIME);
    this.scanFloor(b, this.tCount, this.tLast);
    if (this.rLsn !== this.tLast) throw new CorruptionError(this.tailPath, 0, "commit-time tail entries do not end at its last LSN");
    this.tLastTime = this.rTime;
  }

  /** Drop the entries above `durableLsn` (after a load: their WAL is streamed again). */
  private cutAbove(durableLsn: Lsn): void {
    if (this.newest <= durableLsn) return;
    if (this.tCount > 0 && this.tFirst <= durableLsn) {
      const cut = new Uint8Array(BLOCK_SIZE);
      cutBlock(this.tailView(), this.tCount, durableLsn, cut);
      this.entries -= this.tCount;
      this.adoptTail(cut);
      this.entries += this.tCount;
      return;
    }
    this.entries -= this.tCount;
    this.tCount = 0;
    // The first full block with entries above durableLsn becomes the tail (its kept prefix).
    let i = 0;
    while (i < this.nBlocks && this.dirLast[i]! <= durableLsn) i++;
    if (i === this.nBlocks) return;
    const cut = new Uint8Array(BLOCK_SIZE);
    cutBlock(this.block(i), this.dirCount[i]!, durableLsn, cut);
    if (readU16BE(cut, B_COUNT) === 0) writeU64BE(cut, B_PREV, i > 0 ? this.dirLast[i - 1]! : this.startLsn);
    for (let j = i; j < this.nBlocks; j++) this.entries -= this.dirCount[j]!;
    // The kept prefix is durable in the tail file before the file loses the block.
    const sealed = new Uint8Array(cut);
    sealBlock(sealed, TAIL_SEED);
    writeFileDurableSync(this.tailPath, sealed);
    this.truncateFile(i);
    this.nBlocks = i;
    this.onDisk = i;
    if (readU16BE(cut, B_COUNT) > 0) {
      this.adoptTail(cut);
      this.entries += this.tCount;
    }
  }

  private truncateFile(blocks: number): void {
    const fd = openSync(this.path, "r+");
    try {
      ftruncateSync(fd, (1 + blocks) * BLOCK_SIZE);
    } finally {
      closeSync(fd);
    }
  }

  /** Accept the JSON index of the earlier format when it never thinned (it is then complete). */
  private migrateLegacy(durableLsn: Lsn): string {
    let f: { version?: unknown; lsns?: unknown; times_ms?: unknown };
    try {
      f = JSON.parse(readFileSync(this.legacyPath, "utf8")) as typeof f;
    } catch (e) {
      throw new CorruptionError(this.legacyPath, 0, `unreadable commit-time index: ${(e as Error).message}`);
    }
    const lsns = f?.lsns;
    const times = f?.times_ms;
    if (f?.version !== 1 || !Array.isArray(lsns) || !Array.isArray(times) || lsns.length !== times.length) {
      throw new CorruptionError(this.legacyPath, 0, "commit-time index is not {version: 1, lsns, times_ms} of equal lengths");
    }
    if (lsns.length >= LEGACY_NEVER_THINNED) {
      // Thinned: which commits are missing is not known. Start at the durable LSN, as after a reset.
      this.clear(durableLsn, false);
      return `${COMMIT_TIMES_LEGACY_FILE} held a thinned history (${lsns.length} entries): not migrated, times before ${durableLsn} answer "past"`;
    }
    let prev = -1;
    for (let i = 0; i < lsns.length; i++) {
      const lsn = lsns[i] as unknown;
      const t = times[i] as unknown;
      if (typeof lsn !== "number" || !Number.isSafeInteger(lsn) || lsn <= prev || typeof t !== "number" || !Number.isFinite(t)) {
        this.clear(INVALID_LSN, false);
        throw new CorruptionError(this.legacyPath, 0, `commit-time index entry ${i} is not an ascending LSN with a finite time`);
      }
      prev = lsn;
      if (lsn <= durableLsn) this.add(lsn as Lsn, msToPgTimestamp(t));
    }
    return `migrated ${this.entries} commit times from ${COMMIT_TIMES_LEGACY_FILE} (aborts before the migration were not recorded)`;
  }

  /** Empty the index; it keeps nothing at or below `startLsn`. */
  private clear(startLsn: Lsn, hasBefore: boolean): void {
    this.startLsn = startLsn;
    this.beforeMax_us = Number.NEGATIVE_INFINITY;
    this.hasBefore = hasBefore;
    this.nBlocks = 0;
    this.onDisk = 0;
    this.pending = [];
    this.tCount = 0;
    this.entries = 0;
    this.fileExists = false;
    this.savedNewest = NO_LSN;
  }

  /**
   * After a CorruptionError from load(): keep the bad files aside (`*.corrupt`) and start the
   * index empty at `durableLsn`. Records before it are unknown: a time whose first later
   * record is the first one seen after the reset answers `past`.
   */
  reset(durableLsn: Lsn): void {
    for (const p of [this.path, this.tailPath, this.legacyPath]) if (existsSync(p)) renameSync(p, p + CORRUPT_SUFFIX);
    this.clear(durableLsn, false);
  }

  /**
   * Drop the blocks wholly at or below `lsn` (the GC cutoff, capped by the children's branch
   * points): rewritten only when at least a quarter of the file goes, so the cost stays
   * proportional to what is dropped.
   */
  trimBelow(lsn: Lsn): Promise<void> {
    const p = this.io.then(() => this.trimNow(lsn));
    this.io = p.catch(() => undefined);
    return p;
  }

  private async trimNow(lsn: Lsn): Promise<void> {
    let d = 0;
    while (d < this.onDisk && this.dirLast[d]! <= lsn) d++;
    if (d === 0 || d * 4 < this.onDisk) return;
    const keep = this.onDisk - d;
    const newStart = this.dirLast[d - 1]! as Lsn;
    const newBeforeMax = Math.max(this.beforeMax_us, this.dirRunMax[d - 1]!);
    const out = new Uint8Array((1 + keep) * BLOCK_SIZE);
    const fh = await open(this.path, "r");
    try {
      const { bytesRead } = await fh.read(out, BLOCK_SIZE, keep * BLOCK_SIZE, (1 + d) * BLOCK_SIZE);
      if (bytesRead !== keep * BLOCK_SIZE) throw new CorruptionError(this.path, 1 + d, "commit-time index shorter than its blocks");
    } finally {
      await fh.close();
    }
    for (let j = 0; j < keep; j++) {
      const b = out.subarray((1 + j) * BLOCK_SIZE, (2 + j) * BLOCK_SIZE);
      if (!blockSealOk(b, 1 + d + j)) throw new CorruptionError(this.path, 1 + d + j, "commit-time block checksum mismatch");
      sealBlock(b, 1 + j);
    }
    out.set(this.headerBlock(newStart, newBeforeMax, true), 0);
    const tmp = uniqueTempPath(this.path);
    const w = await open(tmp, "w", 0o600);
    try {
      await w.writeFile(out);
      await w.sync();
    } finally {
      await w.close();
    }
    // The rename and the directory shift in one step of the main thread: no lookup reads the
    // new file with the old directory.
    renameSync(tmp, this.path);
    this.startLsn = newStart;
    this.beforeMax_us = newBeforeMax;
    this.hasBefore = true;
    let dropped = 0;
    for (let j = 0; j < d; j++) dropped += this.dirCount[j]!;
    this.entries -= dropped;
    this.dirFirst.copyWithin(0, d, this.nBlocks);
    this.dirLast.copyWithin(0, d, this.nBlocks);
    this.dirCount.copyWithin(0, d, this.nBlocks);
    this.dirRunMax.copyWithin(0, d, this.nBlocks);
    this.nBlocks -= d;
    this.onDisk -= d;
    await fsyncDir(dirname(this.path));
  }

  /**
   * Both files as they are durably, framed as one object for remote storage (see
   * writeCommitTimesSnapshot); null while no save has written them. Runs after the saves and
   * trims before it (the `io` chain), so it never reads a half-written file.
   */
  snapshot(): Promise<Uint8Array | null> {
    const p = this.io.then(async () => {
      if (!this.fileExists || !existsSync(this.path)) return null;
      const main = await readFile(this.path);
      const tail = existsSync(this.tailPath) ? await readFile(this.tailPath) : null;
      return encodeSnapshot(main, tail);
    });
    this.io = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  /** Bytes on disk now (for the bench and the size of the index). */
  diskBytes(): number {
    let n = 0;
    for (const p of [this.path, this.tailPath]) if (existsSync(p)) n += statSync(p).size;
    return n;
  }
}

function writeTailHeader(b: Uint8Array, count: number, used: number, prev: Lsn, first: Lsn, last: Lsn, firstTime: number, max: number): void {
  writeU16BE(b, B_COUNT, count);
  writeU16BE(b, B_USED, used);
  writeU32BE(b, 4, 0);
  writeU64BE(b, B_PREV, prev);
  writeU64BE(b, B_FIRST, first);
  writeU64BE(b, B_LAST, last);
  writeF64(b, B_FIRST_TIME, firstTime);
  writeF64(b, B_MAX_TIME, max);
}

/** The header of a data block read from disk is in range and follows `prev`. */
function blockSane(b: Uint8Array, prev: Lsn, allowEmpty = false): boolean {
  const count = readU16BE(b, B_COUNT);
  const used = readU16BE(b, B_USED);
  if (count === 0) return allowEmpty && readU64BEOrNeg(b, B_PREV) >= 0;
  const first = readU64BEOrNeg(b, B_FIRST);
  const last = readU64BEOrNeg(b, B_LAST);
  const ft = readF64(b, B_FIRST_TIME);
  const mt = readF64(b, B_MAX_TIME);
  return (
    readU64BEOrNeg(b, B_PREV) === prev &&
    first > prev &&
    last >= first &&
    (count === 1 ? last === first : last > first) &&
    used >= B_ENTRIES &&
    used <= BLOCK_PAYLOAD &&
    Number.isFinite(ft) &&
    Number.isFinite(mt) &&
    mt >= ft
  );
}

/** Re-encode into `out` the entries of block `b` (count entries, header written) at or below `max`. */
function cutBlock(b: Uint8Array, count: number, max: Lsn, out: Uint8Array): void {
  out.fill(0);
  const prev = readLsnOrNeg(b, B_PREV);
  let lsn = readLsnOrNeg(b, B_FIRST);
  let time = readF64(b, B_FIRST_TIME);
  if (lsn > max) {
    writeTailHeader(out, 0, B_ENTRIES, prev, INVALID_LSN, INVALID_LSN, 0, 0);
    return;
  }
  const end = readU16BE(b, B_USED);
  let off = B_ENTRIES;
  let n = 1;
  let maxTime = time;
  const firstLsn = lsn;
  const firstTime = time;
  for (; n < count; n++) {
    const dl = getVarint(b, off, end);
    const dt = dl < 0 ? -1 : getVarint(b, vpos, end);
    assert(dl > 0 && dt >= 0, "commit-time block does not decode");
    if (lsn + dl > max) break;
    off = vpos;
    lsn = lsnAdd(lsn, dl);
    time += unzigzag(dt);
    if (time > maxTime) maxTime = time;
  }
  out.set(b.subarray(B_ENTRIES, off), B_ENTRIES);
  writeTailHeader(out, n, off, prev, firstLsn, lsn, firstTime, maxTime);
}

// ---------------------------------------------------------------------------------------------
// Remote snapshot: SNAP_HEADER_BYTES of header, then `commit_times`, then `commit_times.tail`.

const SNAP_MAGIC = 0x50534352; // 'PSCR'
const SNAP_VERSION = 1;
const SNAP_HAS_TAIL = 1;
const SNAP_HEADER_BYTES = 16;
/** A snapshot larger than this is refused (2^24 blocks is the index's own bound). */
export const MAX_SNAPSHOT_BYTES = SNAP_HEADER_BYTES + (MAX_BLOCKS + 2) * BLOCK_SIZE;

function encodeSnapshot(main: Uint8Array, tail: Uint8Array | null): Uint8Array {
  const out = new Uint8Array(SNAP_HEADER_BYTES + main.length + (tail?.length ?? 0));
  out.set(main, SNAP_HEADER_BYTES);
  if (tail !== null) out.set(tail, SNAP_HEADER_BYTES + main.length);
  writeU32BE(out, 0, SNAP_MAGIC);
  writeU16BE(out, 4, SNAP_VERSION);
  writeU16BE(out, 6, tail === null ? 0 : SNAP_HAS_TAIL);
  writeU32BE(out, 8, main.length);
  writeU32BE(out, 12, crc32c(out.subarray(SNAP_HEADER_BYTES)) >>> 0);
  return out;
}

/**
 * Lay a snapshot (CommitTimes.snapshot, downloaded as `name`) down as the index files of
 * timeline directory `dir`, replacing any there. A snapshot that is not whole (framing, size,
 * CRC32C) is a CorruptionError and leaves no index files (the timeline starts it empty). The
 * blocks are checked when the timeline loads them (seals, chain; entries above its
 * disk_consistent_lsn dropped).
 */
export async function writeCommitTimesSnapshot(dir: string, name: string, bytes: Uint8Array): Promise<void> {
  await removeCommitTimesFiles(dir);
  const bad = (why: string): never => {
    throw new CorruptionError(name, 0, `commit-time snapshot: ${why}`);
  };
  if (bytes.length < SNAP_HEADER_BYTES || bytes.length > MAX_SNAPSHOT_BYTES) bad(`${bytes.length} bytes`);
  if (readU32BE(bytes, 0) !== SNAP_MAGIC || readU16BE(bytes, 4) !== SNAP_VERSION) bad("not a snapshot of version 1");
  const hasTail = (readU16BE(bytes, 6) & SNAP_HAS_TAIL) !== 0;
  const mainLen = readU32BE(bytes, 8);
  if (mainLen < BLOCK_SIZE || mainLen % BLOCK_SIZE !== 0 || SNAP_HEADER_BYTES + mainLen + (hasTail ? BLOCK_SIZE : 0) !== bytes.length) bad("lengths do not add up");
  if (crc32c(bytes.subarray(SNAP_HEADER_BYTES)) >>> 0 !== readU32BE(bytes, 12)) bad("CRC32C mismatch");
  const main = bytes.subarray(SNAP_HEADER_BYTES, SNAP_HEADER_BYTES + mainLen);
  // The tail first: a directory with `commit_times` but no tail holds only whole blocks.
  if (hasTail) await writeFileDurable(join(dir, COMMIT_TIMES_TAIL_FILE), bytes.subarray(SNAP_HEADER_BYTES + mainLen));
  await writeFileDurable(join(dir, COMMIT_TIMES_FILE), main);
}

/** Remove the index files of timeline directory `dir` (before a snapshot is laid down). */
export async function removeCommitTimesFiles(dir: string): Promise<void> {
  for (const f of [COMMIT_TIMES_FILE, COMMIT_TIMES_TAIL_FILE, COMMIT_TIMES_LEGACY_FILE]) {
    if (existsSync(join(dir, f))) await removeFileDurable(join(dir, f));
  }
}
