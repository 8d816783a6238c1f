/**
 * CommitTimes: one timeline's index of transaction-end times by LSN, learned from its own WAL:
 * every xact COMMIT, COMMIT_PREPARED, ABORT and ABORT_PREPARED record (the four records that
 * carry xact_time and that PostgreSQL's recovery checks against recovery_target_time). It is
 * complete for the timeline's retained history, so answers by time are exact.
 *
 * The rule it answers by is PostgreSQL's (lsn_for_time.ts). Commit times are not monotonic in
 * LSN order (a transaction takes its timestamp before it inserts its record), so "the first
 * record past T" is found through the running maximum of the times, which is monotonic: a
 * binary search over the blocks' running maxima, then a scan of one block.
 *
 * Entries: (end LSN of the record, its time in µs since 2000-01-01, PostgreSQL's TimestampTz),
 * ascending by LSN. In memory: a directory of the full blocks (first/last LSN, entry count and
 * the running maximum time, one Float64Array slot each), the full blocks not yet written
 * (pending), and the block being filled (tail). On disk: full blocks are read back one at a
 * time for a lookup (pread, seal checked). add() writes varints into the tail block: no
 * allocation per commit (one 8 kB buffer per ~1,500 commits).
 *
 * Files: commit_time_format.ts (the two files, their blocks and the scanners over them).
 *
 * Durable: save(d) makes every entry ≤ d durable (blocks appended + fsync, then the tail
 * file). load(d) drops entries above d (their WAL is streamed again and re-adds them):
 * the file is cut at block granularity after the tail file holds the kept prefix. Trimmed
 * only below the GC cutoff and the children's branch points (trimBelow): the header keeps
 * the start LSN and the largest time of what was dropped, so a T earlier than that still
 * answers `past`. A corrupt file is a CorruptionError from load(); the timeline then calls
 * reset(), which keeps the bad files aside and starts the index at disk_consistent_lsn.
 *
 * Remote storage: snapshot() frames both files into one object (commit_times_snapshot.ts).
 *
 * Concurrency: main thread only. File writes (save, trimBelow) run one at a time in order
 * (the `io` chain); lookups only read blocks whose write completed (index < onDisk).
 */
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, readSync, renameSync, statSync, unlinkSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BLOCK_PAYLOAD, BLOCK_SIZE, blockSealOk, sealBlock } from "../layers/block_seal.js";
import { fsyncDir, uniqueTempPath, writeFileDurable, writeFileDurableSync } from "../layers/durable_file.js";
import { readU16BE, readU32BE, readU64BEOrNeg, writeU16BE, writeU32BE, writeU64BE } from "../types/bytes.js";
import { assert } from "../types/assert.js";
import { CorruptionError } from "../types/errors.js";
import { INVALID_LSN, type Lsn } from "../types/lsn.js";
import {
  B_COUNT,
  B_ENTRIES,
  B_FIRST,
  B_FIRST_TIME,
  B_LAST,
  B_MAX_TIME,
  B_PREV,
  B_USED,
  blockSane,
  COMMIT_TIMES_FILE,
  COMMIT_TIMES_LEGACY_FILE,
  COMMIT_TIMES_TAIL_FILE,
  CORRUPT_SUFFIX,
  cutBlock,
  FLAG_HAS_BEFORE,
  HB_BEFORE_MAX,
  HB_FLAGS,
  HB_MAGIC,
  HB_START_LSN,
  HB_VERSION,
  MAGIC,
  MAX_ENTRY_BYTES,
  NO_LSN,
  putVarint,
  readF64,
  readLsnOrNeg,
  scanFirstAfter,
  scanFloor,
  type ScanResult,
  TAIL_SEED,
  VERSION,
  writeF64,
  writeTailHeader,
  zigzag,
} from "./commit_time_format.js";
import { BlockDirectory } from "./commit_time_directory.js";
import { readLegacyCommitTimes } from "./commit_times_legacy.js";
import { encodeSnapshot } from "./commit_times_snapshot.js";
import { msToPgTimestamp, type TimeProbe } from "./lsn_for_time.js";

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
  private readonly dir = new BlockDirectory();
  private onDisk = 0;
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
  /** Results of the block scanners. */
  private readonly scan: ScanResult = { lsn: NO_LSN, time: 0, prev: NO_LSN };

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
    return (
      this.dir.memoryBytes +
      (this.pending.length + this.spare.length + (this.tail === null ? 0 : 1) + (this.scratch === null ? 0 : 1)) * BLOCK_SIZE
    );
  }

  private get newest(): Lsn {
    if (this.tCount > 0) return this.tLast;
    return this.dir.n > 0 ? this.dir.lastLsn(this.dir.n - 1) : NO_LSN;
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
      const n = this.dir.n;
      this.tPrev = n > 0 ? this.dir.lastLsn(n - 1) : this.startLsn;
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
    this.dir.push(this.tFirst, this.tLast, this.tCount, this.tMax);
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
    const lo = this.dir.firstWithTimeAfter(t_us);
    if (lo < this.dir.n) {
      scanFirstAfter(this.path, this.block(lo), this.dir.count[lo]!, t_us, this.scan);
      if (this.scan.lsn < 0)
        throw new CorruptionError(this.path, 1 + lo, "commit-time block's maximum time is later than all of its entries");
      out.stopLsn = this.scan.lsn;
      out.prevLsn = this.scan.prev >= 0 ? this.scan.prev : lo > 0 ? this.dir.lastLsn(lo - 1) : NO_LSN;
    } else if (this.tCount > 0 && this.tMax > t_us) {
      scanFirstAfter(this.path, this.tailView(), this.tCount, t_us, this.scan);
      out.stopLsn = this.scan.lsn;
      out.prevLsn = this.scan.prev >= 0 ? this.scan.prev : lo > 0 ? this.dir.lastLsn(lo - 1) : NO_LSN;
    }
    if (out.stopLsn > maxLsn) {
      out.stopLsn = NO_LSN;
      out.prevLsn = NO_LSN;
    }
    if (out.stopLsn < 0) {
      out.lastLsn = this.floor(maxLsn) ? this.scan.lsn : NO_LSN;
    }
    return out;
  }

  /** The time (µs since 2000) of the last entry at or below `lsn`, or null. */
  timeAt(lsn: Lsn): number | null {
    return this.floor(lsn) ? this.scan.time : null;
  }

  /** Find the last entry at or below `lsn` into rLsn / rTime; false when there is none. */
  private floor(lsn: Lsn): boolean {
    if (this.tCount > 0 && this.tFirst <= lsn) {
      scanFloor(this.path, this.tailView(), this.tCount, lsn, this.scan);
      return true;
    }
    const lo = this.dir.startingAtOrBelow(lsn);
    if (lo === 0) return false;
    scanFloor(this.path, this.block(lo - 1), this.dir.count[lo - 1]!, lsn, this.scan);
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
    if (
      readU16BE(b, B_COUNT) !== this.dir.count[i] ||
      readU64BEOrNeg(b, B_FIRST) !== this.dir.first[i] ||
      readU64BEOrNeg(b, B_LAST) !== this.dir.last[i]
    ) {
      throw new CorruptionError(this.path, blkno, "commit-time block differs from what the file held at load");
    }
    return b;
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
      scanFloor(this.path, this.tailView(), this.tCount, lsn, this.scan);
      return this.scan.lsn;
    }
    const lo = this.dir.startingAtOrBelow(lsn);
    if (lo === 0) return NO_LSN;
    if (lo - 1 < this.onDisk) return null;
    scanFloor(this.path, this.pending[lo - 1 - this.onDisk]!, this.dir.count[lo - 1]!, lsn, this.scan);
    return this.scan.lsn;
  }

  private async saveNow(durableLsn: Lsn): Promise<void> {
    // No read of the file here: a save never depends on blocks already written.
    const newest = this.newestUnsaved(durableLsn);
    if (newest === null || (newest === this.savedNewest && (this.fileExists || newest < 0))) return;
    // Everything below is decided now, before the first await: add() goes on meanwhile.
    let k = this.onDisk;
    while (k < this.dir.n && this.dir.last[k]! <= durableLsn) k++;
    const tailOut = new Uint8Array(BLOCK_SIZE);
    if (k < this.dir.n) cutBlock(this.pending[k - this.onDisk]!, this.dir.count[k]!, durableLsn, tailOut);
    else if (this.tCount > 0) cutBlock(this.tailView(), this.tCount, durableLsn, tailOut);
    if (readU16BE(tailOut, B_COUNT) === 0) writeU64BE(tailOut, B_PREV, k > 0 ? this.dir.last[k - 1]! : this.startLsn);
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
    if (h.length !== BLOCK_SIZE || !blockSealOk(h, 0))
      throw new CorruptionError(this.path, 0, "commit-time index header checksum mismatch");
    if (readU32BE(h, HB_MAGIC) !== MAGIC || readU16BE(h, HB_VERSION) !== VERSION)
      throw new CorruptionError(this.path, 0, "not a commit-time index of version 1");
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
      this.dir.push(readU64BEOrNeg(b, B_FIRST), readU64BEOrNeg(b, B_LAST), readU16BE(b, B_COUNT), readF64(b, B_MAX_TIME));
      prev = this.dir.lastLsn(this.dir.n - 1);
    }
    this.onDisk = good;
    const torn = good < whole || file.length % BLOCK_SIZE !== 0;

    let tailBlk: Uint8Array | null = null;
    if (existsSync(this.tailPath)) {
      const t = readFileSync(this.tailPath);
      if (t.length !== BLOCK_SIZE || !blockSealOk(t, TAIL_SEED))
        throw new CorruptionError(this.tailPath, 0, "commit-time tail checksum mismatch");
      if (!blockSane(t, readLsnOrNeg(t, B_PREV), true)) throw new CorruptionError(this.tailPath, 0, "commit-time tail header out of range");
      tailBlk = t;
    }
    // No tail file: no save finished, nothing was durable before the blocks appended.
    const tailPrev = tailBlk === null ? start : readLsnOrNeg(tailBlk, B_PREV);
    if (torn) {
      // Blocks appended by a save that did not finish (it writes the tail file after them): the
      // tail file it would have replaced starts at or before where the good blocks end, so the
      // good blocks and that tail hold everything durable. A tail starting later: a lost block.
      if (tailPrev > prev)
        throw new CorruptionError(
          this.path,
          1 + good,
          "commit-time block checksum or chain mismatch (not a torn append: the tail file starts after it)",
        );
      this.truncateFile(good);
    }
    if (tailBlk !== null) {
      if (tailPrev > prev)
        throw new CorruptionError(this.tailPath, 0, `commit-time tail starts after ${prev}, where the blocks end: entries are missing`);
      // tailPrev < prev: blocks appended after it was written hold its entries.
      if (tailPrev === prev && readU16BE(tailBlk, B_COUNT) > 0) this.adoptTail(tailBlk);
    }
    this.entries = this.dir.entriesIn(0, this.dir.n) + this.tCount;
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
    scanFloor(this.path, b, this.tCount, this.tLast, this.scan);
    if (this.scan.lsn !== this.tLast) throw new CorruptionError(this.tailPath, 0, "commit-time tail entries do not end at its last LSN");
    this.tLastTime = this.scan.time;
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
    while (i < this.dir.n && this.dir.last[i]! <= durableLsn) i++;
    if (i === this.dir.n) return;
    const cut = new Uint8Array(BLOCK_SIZE);
    cutBlock(this.block(i), this.dir.count[i]!, durableLsn, cut);
    if (readU16BE(cut, B_COUNT) === 0) writeU64BE(cut, B_PREV, i > 0 ? this.dir.last[i - 1]! : this.startLsn);
    this.entries -= this.dir.entriesIn(i, this.dir.n);
    // The kept prefix is durable in the tail file before the file loses the block.
    const sealed = new Uint8Array(cut);
    sealBlock(sealed, TAIL_SEED);
    writeFileDurableSync(this.tailPath, sealed);
    this.truncateFile(i);
    this.dir.truncate(i);
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
    const legacy = readLegacyCommitTimes(this.legacyPath);
    if (legacy.kind === "thinned") {
      // Which commits are missing is not known. Start at the durable LSN, as after a reset.
      this.clear(durableLsn, false);
      return `${COMMIT_TIMES_LEGACY_FILE} held a thinned history (${legacy.entries} entries): not migrated, times before ${durableLsn} answer "past"`;
    }
    for (let i = 0; i < legacy.lsns.length; i++) {
      const lsn = legacy.lsns[i]!;
      if (lsn <= durableLsn) this.add(lsn, msToPgTimestamp(legacy.times_ms[i]!));
    }
    return `migrated ${this.entries} commit times from ${COMMIT_TIMES_LEGACY_FILE} (aborts before the migration were not recorded)`;
  }

  /** Empty the index; it keeps nothing at or below `startLsn`. */
  private clear(startLsn: Lsn, hasBefore: boolean): void {
    this.startLsn = startLsn;
    this.beforeMax_us = Number.NEGATIVE_INFINITY;
    this.hasBefore = hasBefore;
    this.dir.truncate(0);
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
    while (d < this.onDisk && this.dir.last[d]! <= lsn) d++;
    if (d === 0 || d * 4 < this.onDisk) return;
    const keep = this.onDisk - d;
    const newStart = this.dir.last[d - 1]! as Lsn;
    const newBeforeMax = Math.max(this.beforeMax_us, this.dir.runMax[d - 1]!);
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
    this.entries -= this.dir.entriesIn(0, d);
    this.dir.dropFirst(d);
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
