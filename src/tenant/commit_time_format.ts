/**
 * The commit-time index's files and blocks (docs/storage.md "Commit-time index"), and the
 * scanners that read entries out of a block. CommitTimes (commit_times.ts) owns the state;
 * this file owns the bytes.
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
 *
 *   header block (block 0):  magic u32 | version u16 | flags u16 | start_lsn u64 | before_max f64
 *   data block:              count u16 | used u16 | 0 u32 | prev_lsn u64 | first_lsn u64 |
 *                            last_lsn u64 | first_time f64 | max_time f64 | entries from the
 *                            second on: varint(lsn - previous lsn), varint(zigzag(time delta))
 * Integers big-endian (types/bytes.ts), f64 little-endian; LSNs are record end LSNs, times
 * µs since 2000-01-01.
 *
 * Invariants: entries ascend strictly by LSN inside a block and across the chain (prev_lsn);
 * a block's max_time is the largest of its times; an entry takes at most MAX_ENTRY_BYTES.
 * The scanners decode with one module-level cursor (vpos): main thread only, one decoder at
 * a time, no allocation per entry.
 */
import { assert } from "../types/assert.js";
import { readU16BE, readU64BEOrNeg, writeU16BE, writeU32BE, writeU64BE } from "../types/bytes.js";
import { CorruptionError } from "../types/errors.js";
import { INVALID_LSN, type Lsn, lsnAdd } from "../types/lsn.js";
import { BLOCK_PAYLOAD } from "../layers/block_seal.js";

export const COMMIT_TIMES_FILE = "commit_times";
export const COMMIT_TIMES_TAIL_FILE = "commit_times.tail";
/** The index before this format (JSON, at most 8,192 thinned entries): migrated when complete. */
export const COMMIT_TIMES_LEGACY_FILE = "commit_times.json";
/** The suffix a corrupt index is renamed to by reset(). */
export const CORRUPT_SUFFIX = ".corrupt";

/** "No entry" in probes, scanners and the directory (never a valid LSN). */
export const NO_LSN = -1 as Lsn;
/** An LSN field of a block (B_PREV/B_FIRST/B_LAST, HB_START_LSN); -1 when beyond 2^53 (the loaders refuse it). */
export const readLsnOrNeg = (b: Uint8Array, off: number): Lsn => readU64BEOrNeg(b, off) as Lsn;

/** Files of the index in a timeline directory (Timeline.load leaves them alone). */
export function isCommitTimesFile(name: string): boolean {
  return name === COMMIT_TIMES_FILE || name.startsWith(`${COMMIT_TIMES_FILE}.`);
}

export const MAGIC = 0x50534354; // 'PSCT'
export const VERSION = 1;
export const FLAG_HAS_BEFORE = 1;
/** Header block (block 0) fields. */
export const HB_MAGIC = 0;
export const HB_VERSION = 4;
export const HB_FLAGS = 6;
export const HB_START_LSN = 8;
export const HB_BEFORE_MAX = 16;
/** Data block header fields; entries from the second on follow at B_ENTRIES. */
export const B_COUNT = 0;
export const B_USED = 2;
export const B_PREV = 8;
export const B_FIRST = 16;
export const B_LAST = 24;
export const B_FIRST_TIME = 32;
export const B_MAX_TIME = 40;
export const B_ENTRIES = 48;
/** One entry: two varints of at most 8 bytes each (values below 2^56). */
export const MAX_ENTRY_BYTES = 16;
/** The tail file's seal seed (no block number: it is no block of `commit_times`). */
export const TAIL_SEED = 0x7461696c;
/** Directory slots are grown by doubling up to this many blocks (2^24 × ~1,500 commits). */
export const MAX_BLOCKS = 1 << 24;

// f64 fields, little-endian, without a DataView per buffer.
const f64 = new Float64Array(1);
const f64b = new Uint8Array(f64.buffer);
export function writeF64(b: Uint8Array, off: number, v: number): void {
  f64[0] = v;
  for (let i = 0; i < 8; i++) b[off + i] = f64b[i]!;
}
export function readF64(b: Uint8Array, off: number): number {
  for (let i = 0; i < 8; i++) f64b[i] = b[off + i]!;
  return f64[0]!;
}

export function putVarint(b: Uint8Array, off: number, v: number): number {
  let x = v;
  while (x >= 128) {
    b[off++] = (x % 128) | 128;
    x = Math.floor(x / 128);
  }
  b[off++] = x;
  return off;
}
/** Where the last getVarint stopped (one decoder at a time: main thread). */
export let vpos = 0;
export function getVarint(b: Uint8Array, off: number, end: number): number {
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
export const zigzag = (d: number): number => (d >= 0 ? 2 * d : -2 * d - 1);
export const unzigzag = (z: number): number => (z % 2 === 0 ? z / 2 : -(z + 1) / 2);

export function writeTailHeader(
  b: Uint8Array,
  count: number,
  used: number,
  prev: Lsn,
  first: Lsn,
  last: Lsn,
  firstTime: number,
  max: number,
): void {
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
export function blockSane(b: Uint8Array, prev: Lsn, allowEmpty = false): boolean {
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
export function cutBlock(b: Uint8Array, count: number, max: Lsn, out: Uint8Array): void {
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

/** Where a scanner leaves what it found (one object per index: no allocation per lookup). */
export interface ScanResult {
  lsn: Lsn;
  time: number;
  prev: Lsn;
}

/** r.lsn/r.time: the first entry of `b` later than t_us (r.lsn -1: none); r.prev: the one before it in b (-1: none). */
export function scanFirstAfter(path: string, b: Uint8Array, count: number, t_us: number, r: ScanResult): void {
  let lsn = readLsnOrNeg(b, B_FIRST);
  let time = readF64(b, B_FIRST_TIME);
  let prev = NO_LSN;
  const end = readU16BE(b, B_USED);
  let off = B_ENTRIES;
  for (let i = 0; ; i++) {
    if (time > t_us) {
      r.lsn = lsn;
      r.time = time;
      r.prev = prev;
      return;
    }
    if (i + 1 >= count) break;
    prev = lsn;
    const dl = getVarint(b, off, end);
    const dt = dl < 0 ? -1 : getVarint(b, vpos, end);
    if (dl <= 0 || dt < 0) throw new CorruptionError(path, 0, `commit-time block entry ${i + 1} does not decode`);
    off = vpos;
    lsn = lsnAdd(lsn, dl);
    time += unzigzag(dt);
  }
  r.lsn = NO_LSN;
  r.prev = lsn;
}

/** r.lsn/r.time: the last entry of `b` at or below `max` (the block's first is). */
export function scanFloor(path: string, b: Uint8Array, count: number, max: Lsn, r: ScanResult): void {
  let lsn = readLsnOrNeg(b, B_FIRST);
  let time = readF64(b, B_FIRST_TIME);
  const end = readU16BE(b, B_USED);
  let off = B_ENTRIES;
  for (let i = 1; i < count; i++) {
    const dl = getVarint(b, off, end);
    const dt = dl < 0 ? -1 : getVarint(b, vpos, end);
    if (dl <= 0 || dt < 0) throw new CorruptionError(path, 0, `commit-time block entry ${i} does not decode`);
    if (lsn + dl > max) break;
    off = vpos;
    lsn = lsnAdd(lsn, dl);
    time += unzigzag(dt);
  }
  r.lsn = lsn;
  r.time = time;
}
