/**
 * PostgreSQL data page helpers: pd_lsn and the data checksum (pg_checksum_page).
 *
 *   PageHeaderData (24 bytes, little-endian):
 *   off  size  field
 *   0    8     pd_lsn (xlogid u32, xrecoff u32: the high half first)
 *   8    2     pd_checksum
 *   10   2     pd_flags
 *   12   2     pd_lower
 *   14   2     pd_upper
 *   16   2     pd_special
 *   18   2     pd_pagesize_version
 *   20   4     pd_prune_xid
 *
 * The checksum is FNV-1a-like over 32 lanes of u32 words with pd_checksum taken as zero,
 * folded, XORed with the block number within the fork, then (r % 65535) + 1. Every page the
 * pageserver hands out carries a fresh one: pages from WAL images have a stale checksum, and
 * a cluster without data checksums ignores the field anyway.
 */
import { type Lsn, lsnHi, lsnLo } from "../types/lsn.js";

import { readU32LE, writeU32LE } from "../types/bytes.js";
import { BLCKSZ } from "./consts.js";

/** BLCKSZ is defined in consts.ts; re-exported for the many modules that take it from here. */
export { BLCKSZ };

export function pageLsn(page: Uint8Array): Lsn {
  if (page.length < 8) throw new RangeError(`pageLsn: a ${page.length}-byte page has no pd_lsn`);
  return (readU32LE(page, 0) * 0x1_0000_0000 + readU32LE(page, 4)) as Lsn;
}

export function setPageLsn(page: Uint8Array, lsn: Lsn): void {
  if (page.length < 8) throw new RangeError(`setPageLsn: a ${page.length}-byte page has no pd_lsn`);
  writeU32LE(page, 0, lsnHi(lsn));
  writeU32LE(page, 4, lsnLo(lsn));
}

/** A "new" page (all zeros header: pd_upper == 0) has no checksum and keeps pd_lsn 0. */
export function pageIsNew(page: Uint8Array): boolean {
  return page[14] === 0 && page[15] === 0;
}

const N_SUMS = 32;
const FNV_PRIME = 16777619;
const CHECKSUM_BASE_OFFSETS = new Uint32Array([
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c, 0xf8d4474f, 0xe39eb970, 0x42c6ae16,
  0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb, 0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2,
  0x304a0979, 0x85aa43d4, 0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
]);
// Reused scratch: checksumming allocates nothing but a typed-array view of the page.
const alignedCopy = new Uint32Array(BLCKSZ / 4);
const WORDS_PER_ROW = N_SUMS;
// The page is read as native u32 words; PostgreSQL's on-disk format here is little-endian.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * pg_checksum_page(page, blkno): the value pd_checksum must hold. Words are read through a
 * Uint32Array (a copy when the page is not 4-byte aligned) and mixed as int32: every page
 * handed out is checksummed, so this is on the read path.
 */
export function pageChecksum(page: Uint8Array, blkno: number): number {
  if (!LITTLE_ENDIAN) throw new Error("page checksums assume a little-endian host");
  let w: Uint32Array;
  if ((page.byteOffset & 3) === 0) {
    w = new Uint32Array(page.buffer, page.byteOffset, BLCKSZ / 4);
  } else {
    new Uint8Array(alignedCopy.buffer).set(page.subarray(0, BLCKSZ));
    w = alignedCopy;
  }
  // The 32 lanes are independent: each runs down its column of words in a register.
  let r = 0;
  for (let j = 0; j < N_SUMS; j++) {
    let x = CHECKSUM_BASE_OFFSETS[j]! | 0;
    // Row 0: pd_checksum (bytes 8..9, the low half of word 2) counts as zero.
    let t = x ^ (j === 2 ? w[2]! & 0xffff0000 : w[j]!);
    x = Math.imul(t, FNV_PRIME) ^ (t >>> 17);
    for (let off = j + WORDS_PER_ROW; off < BLCKSZ / 4; off += WORDS_PER_ROW) {
      t = x ^ w[off]!;
      x = Math.imul(t, FNV_PRIME) ^ (t >>> 17);
    }
    // Two rounds of zeros.
    x = Math.imul(x, FNV_PRIME) ^ (x >>> 17);
    x = Math.imul(x, FNV_PRIME) ^ (x >>> 17);
    r ^= x;
  }
  r = ((r ^ blkno) >>> 0) % 65535;
  return r + 1;
}

/** Set pd_checksum to the page's checksum (no-op on a new page). */
export function setPageChecksum(page: Uint8Array, blkno: number): void {
  if (pageIsNew(page)) return;
  const c = pageChecksum(page, blkno);
  page[8] = c & 0xff;
  page[9] = c >>> 8;
}
