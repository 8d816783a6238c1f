/**
 * GIN compressed posting lists (PostgreSQL 15 src/backend/access/gin/ginpostinglist.c), byte
 * for byte: redo re-encodes segments (ADDITEMS actions, pre-9.4 leaf conversion) and the
 * result is compared with PostgreSQL's own page.
 *
 *   GinPostingList: first ItemPointerData (bi_hi u16, bi_lo u16, offset u16) | nbytes u16 |
 *                   nbytes of varbyte-encoded deltas | a zero pad byte when nbytes is odd
 *
 * An item pointer is handled as the integer PostgreSQL encodes, block * 2^11 + offset (43
 * bits: exact in a JS number, no BigInt); deltas between consecutive items are varbyte
 * encoded, 7 bits per byte, low bits first, high bit = "more bytes follow", at most 7 bytes.
 * Invariants: items strictly increase; offsets are below 2^11 (itemptr_to_uint64 asserts it);
 * decoding never reads past a segment's nbytes.
 */
import { PageLayoutError } from "./bufpage.js";
import { readU16LE } from "../../types/bytes.js";

export const MAX_HEAP_TUPLES_PER_PAGE_BITS = 11;
const OFFSET_LIMIT = 1 << MAX_HEAP_TUPLES_PER_PAGE_BITS;
/** The largest encodable item: 32-bit block, 11-bit offset. */
const MAX_ITEM_VALUE = 2 ** 43;
const MAX_BYTES_PER_INTEGER = 7;
export const GIN_POSTING_LIST_HEADER_BYTES = 8;
const ITEM_POINTER_BYTES = 6;

/** The item pointer at b[o] as PostgreSQL's 43-bit integer; throws when its offset needs more than 11 bits. */
export function itemPointerValue(b: Uint8Array, o: number): number {
  const blk = readU16LE(b, o) * 0x1_0000 + readU16LE(b, o + 2);
  const off = readU16LE(b, o + 4);
  if (off >= OFFSET_LIMIT)
    throw new PageLayoutError(`item pointer (${blk},${off}): offset does not fit in ${MAX_HEAP_TUPLES_PER_PAGE_BITS} bits`);
  return blk * OFFSET_LIMIT + off;
}

/** Write item pointer `v` as ItemPointerData at b[o]. */
export function setItemPointerValue(b: Uint8Array, o: number, v: number): void {
  const off = v % OFFSET_LIMIT;
  const blk = (v - off) / OFFSET_LIMIT;
  const hi = Math.floor(blk / 0x1_0000);
  const lo = blk % 0x1_0000;
  b[o] = hi & 0xff;
  b[o + 1] = hi >>> 8;
  b[o + 2] = lo & 0xff;
  b[o + 3] = lo >>> 8;
  b[o + 4] = off & 0xff;
  b[o + 5] = off >>> 8;
}

/** SizeOfGinPostingList of the segment at b[at]: header + SHORTALIGN(nbytes). */
export function postingListSize(b: Uint8Array, at: number): number {
  const nbytes = readU16LE(b, at + ITEM_POINTER_BYTES);
  return GIN_POSTING_LIST_HEADER_BYTES + ((nbytes + 1) & ~1);
}

/**
 * ginPostingListDecode of the segment at b[at] (which must lie within [at, end)): appends its
 * items to out[n..], returns the new count. Throws on a segment that reads past its end or
 * past out's capacity, or whose items do not increase.
 */
export function decodePostingList(b: Uint8Array, at: number, end: number, out: Float64Array, n: number): number {
  if (at + GIN_POSTING_LIST_HEADER_BYTES > end) throw new PageLayoutError(`posting list at ${at}: header past ${end}`);
  const size = postingListSize(b, at);
  if (at + size > end) throw new PageLayoutError(`posting list at ${at}: ${size} bytes reach past ${end}`);
  if (n >= out.length) throw new PageLayoutError(`posting list at ${at}: more than ${out.length} items`);
  let val = itemPointerValue(b, at);
  out[n++] = val;
  let p = at + GIN_POSTING_LIST_HEADER_BYTES;
  const stop = p + readU16LE(b, at + ITEM_POINTER_BYTES);
  while (p < stop) {
    let delta = 0;
    let scale = 1;
    let i = 0;
    for (;;) {
      if (p >= stop) throw new PageLayoutError(`posting list at ${at}: varbyte integer runs past the segment`);
      const c = b[p++]!;
      if (i === MAX_BYTES_PER_INTEGER - 1) {
        // The 7th byte carries the last bits and never a continuation bit.
        if ((c & 0x80) !== 0)
          throw new PageLayoutError(`posting list at ${at}: varbyte integer longer than ${MAX_BYTES_PER_INTEGER} bytes`);
        delta += c * scale;
        break;
      }
      delta += (c & 0x7f) * scale;
      if ((c & 0x80) === 0) break;
      scale *= 128;
      i++;
    }
    val += delta;
    if (delta === 0 || val >= MAX_ITEM_VALUE) throw new PageLayoutError(`posting list at ${at}: items do not increase within 43 bits`);
    if (n >= out.length) throw new PageLayoutError(`posting list at ${at}: more than ${out.length} items`);
    out[n++] = val;
  }
  return n;
}

/**
 * ginCompressPostingList(items[0..n), maxsize): writes a segment at out[at] of at most
 * SHORTALIGN_DOWN(maxsize) bytes. Returns how many items it packed (fewer than n when full);
 * the segment's size is then postingListSize(out, at).
 */
export function encodePostingList(items: Float64Array, n: number, out: Uint8Array, at: number, maxsizeBytes: number): number {
  const maxsize = maxsizeBytes & ~1;
  const endptr = at + maxsize;
  if (n < 1 || endptr > out.length || maxsize <= GIN_POSTING_LIST_HEADER_BYTES) {
    throw new PageLayoutError(`encodePostingList: ${n} items into ${maxsize} bytes at ${at} of ${out.length}`);
  }
  setItemPointerValue(out, at, items[0]!);
  let prev = items[0]!;
  let p = at + GIN_POSTING_LIST_HEADER_BYTES;
  let packed = 1;
  for (; packed < n; packed++) {
    const val = items[packed]!;
    let delta = val - prev;
    if (!(delta > 0)) throw new PageLayoutError(`encodePostingList: item ${packed} does not follow item ${packed - 1}`);
    // Bytes this delta takes: 1 per started 7 bits.
    let len = 1;
    for (let d = delta; d > 0x7f; d = Math.floor(d / 128)) len++;
    if (len > endptr - p) break;
    while (delta > 0x7f) {
      out[p++] = 0x80 | (delta % 128);
      delta = Math.floor(delta / 128);
    }
    out[p++] = delta;
    prev = val;
  }
  const nbytes = p - (at + GIN_POSTING_LIST_HEADER_BYTES);
  out[at + ITEM_POINTER_BYTES] = nbytes & 0xff;
  out[at + ITEM_POINTER_BYTES + 1] = nbytes >>> 8;
  if ((nbytes & 1) !== 0) out[p] = 0;
  return packed;
}

/**
 * ginMergeItemPointers: the sorted union of a[0..na) and b[0..nb) into dst (capacity ≥ na + nb),
 * keeping one copy of items present in both. Returns the merged count.
 */
export function mergeItemPointers(a: Float64Array, na: number, b: Float64Array, nb: number, dst: Float64Array): number {
  if (na + nb > dst.length) throw new PageLayoutError(`mergeItemPointers: ${na} + ${nb} items exceed ${dst.length}`);
  if (na === 0 || nb === 0 || a[na - 1]! < b[0]!) {
    dst.set(a.subarray(0, na), 0);
    dst.set(b.subarray(0, nb), na);
    return na + nb;
  }
  if (b[nb - 1]! < a[0]!) {
    dst.set(b.subarray(0, nb), 0);
    dst.set(a.subarray(0, na), nb);
    return na + nb;
  }
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < na && j < nb) {
    const x = a[i]!;
    const y = b[j]!;
    if (x > y) {
      dst[k++] = y;
      j++;
    } else if (x === y) {
      dst[k++] = y;
      i++;
      j++;
    } else {
      dst[k++] = x;
      i++;
    }
  }
  while (i < na) dst[k++] = a[i++]!;
  while (j < nb) dst[k++] = b[j++]!;
  return k;
}
