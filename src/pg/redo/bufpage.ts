/**
 * Page primitives for redo: PostgreSQL 15's bufpage.c (and the bufpage.h / itemid.h macros)
 * on an 8192-byte Uint8Array, with the exact byte-level results PostgreSQL produces, because
 * our redone pages are compared byte for byte (after masking) with PostgreSQL's own.
 *
 *   PageHeaderData (24 bytes, little-endian)       ItemIdData (4 bytes, one u32 LE)
 *   0  pd_lsn u64 (hi u32, lo u32)                 bits  0..14  lp_off   (offset of the tuple)
 *   8  pd_checksum u16                             bits 15..16  lp_flags (LP_UNUSED/NORMAL/REDIRECT/DEAD)
 *   10 pd_flags u16                                bits 17..31  lp_len   (length of the tuple)
 *   12 pd_lower u16   14 pd_upper u16   16 pd_special u16
 *   18 pd_pagesize_version u16 (BLCKSZ | 4)   20 pd_prune_xid u32   24 line pointers…
 *
 * Offsets are 1-based OffsetNumbers; line pointer n sits at 24 + 4 (n - 1). Tuples live in
 * [pd_upper, pd_special), the special space in [pd_special, BLCKSZ).
 *
 * Invariants kept (and checked where bufpage.c checks them; a violation is a
 * PageLayoutError, the redo caller adds the record's LSN/rmgr/info):
 *   24 <= pd_lower <= pd_upper <= pd_special <= BLCKSZ, pd_special MAXALIGNed;
 *   every tuple with storage is MAXALIGNed and inside [pd_upper, pd_special).
 * Compaction (pageRepairFragmentation, pageIndexMultiDelete) is compactify_tuples of PG 14+:
 * the surviving tuples are packed from pd_special downward in line-pointer order, each moved
 * with its MAXALIGN padding bytes; bytes left below pd_upper are not cleared (PostgreSQL
 * doesn't either; the masks hide [pd_lower, pd_upper)).
 *
 * Hot path: no allocation per call except the subarrays pageGetItem/pageGetSpecial return and
 * an Int32Array view of the page for long line-pointer loops and word copies (little-endian
 * host, 4-aligned page; bytes otherwise); no view per item or line pointer (pageGetItemPos,
 * pageAddItemBytes, pageAddItemSpace avoid them for callers). Compaction works in
 * module-level scratch buffers (calls are synchronous, never nested).
 */
import { PageserverError } from "../../types/errors.js";
import { BLCKSZ, MAXIMUM_ALIGNOF, SIZE_OF_PAGE_HEADER } from "../consts.js";
import { readU16LE, readU32LE, writeU16LE, writeU32LE } from "../../types/bytes.js";

export { BLCKSZ, MAXIMUM_ALIGNOF, SIZE_OF_PAGE_HEADER };
export { pageIsNew, pageLsn, setPageLsn } from "../page.js";
export const SIZE_OF_ITEM_ID = 4;
export const PG_PAGE_LAYOUT_VERSION = 4;

export const InvalidOffsetNumber = 0;
export const FirstOffsetNumber = 1;

export const LP_UNUSED = 0;
export const LP_NORMAL = 1;
export const LP_REDIRECT = 2;
export const LP_DEAD = 3;

export const PD_HAS_FREE_LINES = 0x0001;
export const PD_PAGE_FULL = 0x0002;
export const PD_ALL_VISIBLE = 0x0004;
export const PD_VALID_FLAG_BITS = 0x0007;

/** PageAddItemExtended flags. */
export const PAI_OVERWRITE = 1 << 0;
export const PAI_IS_HEAP = 1 << 1;

/** MaxHeapTuplesPerPage: (BLCKSZ - 24) / (MAXALIGN(SizeofHeapTupleHeader = 23) + 4) = 291. */
export const MAX_HEAP_TUPLES_PER_PAGE = Math.floor((BLCKSZ - SIZE_OF_PAGE_HEADER) / (24 + SIZE_OF_ITEM_ID));
/** MaxIndexTuplesPerPage: (BLCKSZ - 24) / (MAXALIGN(sizeof(IndexTupleData) = 8, + 1) + 4) = 408. */
export const MAX_INDEX_TUPLES_PER_PAGE = Math.floor((BLCKSZ - SIZE_OF_PAGE_HEADER) / (16 + SIZE_OF_ITEM_ID));
/** The most line pointers a page can hold at all (bounds every line-pointer loop). */
const MAX_LINE_POINTERS = (BLCKSZ - SIZE_OF_PAGE_HEADER) / SIZE_OF_ITEM_ID;

const PD_CHECKSUM = 8;
const PD_FLAGS = 10;
const PD_LOWER = 12;
const PD_UPPER = 14;
const PD_SPECIAL = 16;
const PD_PAGESIZE_VERSION = 18;
const PD_PRUNE_XID = 20;

/**
 * A page whose header or line pointers contradict the layout invariants (bufpage.c's
 * "corrupted page pointers" / "corrupted line pointer" / "invalid index offnum"). Code
 * "corrupt"; PgRedo rethrows it as a CorruptionError naming the record and the block.
 */
export class PageLayoutError extends PageserverError {
  constructor(message: string) {
    super("corrupt", message);
  }
}

export function maxAlign(n: number): number {
  return (n + (MAXIMUM_ALIGNOF - 1)) & ~(MAXIMUM_ALIGNOF - 1);
}

// ---- header fields -------------------------------------------------------------------

export function pdChecksum(page: Uint8Array): number {
  return readU16LE(page, PD_CHECKSUM);
}
export function setPdChecksum(page: Uint8Array, v: number): void {
  writeU16LE(page, PD_CHECKSUM, v);
}
export function pdFlags(page: Uint8Array): number {
  return readU16LE(page, PD_FLAGS);
}
export function setPdFlags(page: Uint8Array, v: number): void {
  writeU16LE(page, PD_FLAGS, v);
}
export function pdLower(page: Uint8Array): number {
  return readU16LE(page, PD_LOWER);
}
export function setPdLower(page: Uint8Array, v: number): void {
  writeU16LE(page, PD_LOWER, v);
}
export function pdUpper(page: Uint8Array): number {
  return readU16LE(page, PD_UPPER);
}
export function setPdUpper(page: Uint8Array, v: number): void {
  writeU16LE(page, PD_UPPER, v);
}
export function pdSpecial(page: Uint8Array): number {
  return readU16LE(page, PD_SPECIAL);
}
export function setPdSpecial(page: Uint8Array, v: number): void {
  writeU16LE(page, PD_SPECIAL, v);
}
export function pdPagesizeVersion(page: Uint8Array): number {
  return readU16LE(page, PD_PAGESIZE_VERSION);
}
export function pdPruneXid(page: Uint8Array): number {
  return readU32LE(page, PD_PRUNE_XID);
}
export function setPdPruneXid(page: Uint8Array, xid: number): void {
  writeU32LE(page, PD_PRUNE_XID, xid);
}

/** TransactionIdPrecedes: modulo-2^32 order for normal xids, plain order otherwise. */
export function transactionIdPrecedes(a: number, b: number): boolean {
  if (a < 3 || b < 3) return a >>> 0 < b >>> 0;
  return ((a - b) | 0) < 0;
}

/** PageSetPrunable: pd_prune_xid := xid if it is unset or xid is older. */
export function pageSetPrunable(page: Uint8Array, xid: number): void {
  const cur = pdPruneXid(page);
  if (cur === 0 || transactionIdPrecedes(xid, cur)) setPdPruneXid(page, xid);
}

/** PageIsEmpty: no line pointers. */
export function pageIsEmpty(page: Uint8Array): boolean {
  return pdLower(page) <= SIZE_OF_PAGE_HEADER;
}

export function pageGetMaxOffsetNumber(page: Uint8Array): number {
  const lower = pdLower(page);
  return lower <= SIZE_OF_PAGE_HEADER ? 0 : (lower - SIZE_OF_PAGE_HEADER) >>> 2;
}

export function pageHasFreeLinePointers(page: Uint8Array): boolean {
  return (pdFlags(page) & PD_HAS_FREE_LINES) !== 0;
}

// ---- line pointers -------------------------------------------------------------------

/** Byte position of line pointer `off` (1-based). */
function lpAt(off: number): number {
  return SIZE_OF_PAGE_HEADER + (off - 1) * SIZE_OF_ITEM_ID;
}

function lpWord(page: Uint8Array, off: number): number {
  return readU32LE(page, lpAt(off));
}

export function itemIdOff(page: Uint8Array, off: number): number {
  return lpWord(page, off) & 0x7fff;
}
export function itemIdFlags(page: Uint8Array, off: number): number {
  return (lpWord(page, off) >>> 15) & 3;
}
export function itemIdLen(page: Uint8Array, off: number): number {
  return lpWord(page, off) >>> 17;
}
/** In an LP_REDIRECT pointer lp_off holds the offset number it redirects to. */
export function itemIdRedirect(page: Uint8Array, off: number): number {
  return itemIdOff(page, off);
}
export function itemIdIsUsed(page: Uint8Array, off: number): boolean {
  return itemIdFlags(page, off) !== LP_UNUSED;
}
export function itemIdIsNormal(page: Uint8Array, off: number): boolean {
  return itemIdFlags(page, off) === LP_NORMAL;
}
export function itemIdIsRedirected(page: Uint8Array, off: number): boolean {
  return itemIdFlags(page, off) === LP_REDIRECT;
}
export function itemIdIsDead(page: Uint8Array, off: number): boolean {
  return itemIdFlags(page, off) === LP_DEAD;
}
export function itemIdHasStorage(page: Uint8Array, off: number): boolean {
  return itemIdLen(page, off) !== 0;
}

export function setItemId(page: Uint8Array, off: number, lpOff: number, lpFlags: number, lpLen: number): void {
  writeU32LE(page, lpAt(off), ((lpOff & 0x7fff) | ((lpFlags & 3) << 15) | ((lpLen & 0x7fff) << 17)) >>> 0);
}
/** ItemIdSetUnused. */
export function setItemIdUnused(page: Uint8Array, off: number): void {
  setItemId(page, off, 0, LP_UNUSED, 0);
}
/** ItemIdSetNormal. */
export function setItemIdNormal(page: Uint8Array, off: number, lpOff: number, lpLen: number): void {
  setItemId(page, off, lpOff, LP_NORMAL, lpLen);
}
/** ItemIdSetRedirect: lp_off := target offset number, no storage. */
export function setItemIdRedirect(page: Uint8Array, off: number, link: number): void {
  setItemId(page, off, link, LP_REDIRECT, 0);
}
/** ItemIdSetDead: no storage. */
export function setItemIdDead(page: Uint8Array, off: number): void {
  setItemId(page, off, 0, LP_DEAD, 0);
}
/** ItemIdMarkDead: LP_DEAD, storage kept. */
export function itemIdMarkDead(page: Uint8Array, off: number): void {
  setItemId(page, off, itemIdOff(page, off), LP_DEAD, itemIdLen(page, off));
}

/** The tuple bytes of line pointer `off` (a subarray, no copy): [lp_off, lp_off + lp_len). */
export function pageGetItem(page: Uint8Array, off: number): Uint8Array {
  const w = lpWord(page, off);
  const start = w & 0x7fff;
  const len = w >>> 17;
  if (start + len > BLCKSZ) throw new PageLayoutError(`line pointer ${off}: item [${start}, ${start + len}) reaches past the page`);
  return page.subarray(start, start + len);
}

/** Where pageGetItem's item starts (lp_off), with the same check, without a view; its length is itemIdLen. */
export function pageGetItemPos(page: Uint8Array, off: number): number {
  const w = lpWord(page, off);
  const start = w & 0x7fff;
  const len = w >>> 17;
  if (start + len > BLCKSZ) throw new PageLayoutError(`line pointer ${off}: item [${start}, ${start + len}) reaches past the page`);
  return start;
}

/** [pd_special, BLCKSZ) as a subarray. */
export function pageGetSpecial(page: Uint8Array): Uint8Array {
  const special = pdSpecial(page);
  if (special > BLCKSZ) throw new PageLayoutError(`pd_special ${special} is past the page`);
  return page.subarray(special, BLCKSZ);
}

// ---- page operations -----------------------------------------------------------------

/** PageInit: zero the page, then lower = 24, upper = special = BLCKSZ - MAXALIGN(specialSize). */
export function pageInit(page: Uint8Array, specialSizeBytes: number): void {
  const special = maxAlign(specialSizeBytes);
  if (page.length !== BLCKSZ || special + SIZE_OF_PAGE_HEADER >= BLCKSZ) {
    throw new PageLayoutError(`pageInit: page of ${page.length} bytes, special size ${specialSizeBytes}`);
  }
  page.fill(0);
  setPdLower(page, SIZE_OF_PAGE_HEADER);
  setPdUpper(page, BLCKSZ - special);
  setPdSpecial(page, BLCKSZ - special);
  writeU16LE(page, PD_PAGESIZE_VERSION, BLCKSZ | PG_PAGE_LAYOUT_VERSION);
}

function corruptPointers(page: Uint8Array): PageLayoutError {
  return new PageLayoutError(`corrupted page pointers: lower = ${pdLower(page)}, upper = ${pdUpper(page)}, special = ${pdSpecial(page)}`);
}

/** The sanity check PageAddItemExtended makes (it does not require a MAXALIGNed pd_special). */
function checkPointersLoose(page: Uint8Array): void {
  const lower = pdLower(page);
  const upper = pdUpper(page);
  const special = pdSpecial(page);
  if (lower < SIZE_OF_PAGE_HEADER || lower > upper || upper > special || special > BLCKSZ) throw corruptPointers(page);
}

/** The sanity check of the compacting and deleting routines. */
function checkPointers(page: Uint8Array): void {
  checkPointersLoose(page);
  const special = pdSpecial(page);
  if (special !== maxAlign(special)) throw corruptPointers(page);
}

/**
 * PageAddItemExtended. `offsetNumber` 0 (InvalidOffsetNumber) picks the first unused line
 * pointer (if PD_HAS_FREE_LINES says there may be one) or appends; otherwise, without
 * PAI_OVERWRITE, later line pointers shift up by one. Returns the offset used, or 0 when the
 * item does not fit or the offset is refused (PostgreSQL's WARNING cases).
 */
export function pageAddItemExtended(page: Uint8Array, item: Uint8Array, offsetNumber: number, flags: number): number {
  return pageAddItemBytes(page, item, 0, item.length, offsetNumber, flags);
}

/** pageAddItemExtended of the item src[srcOff, srcOff + len) (src may be the page itself), without a view of it. */
export function pageAddItemBytes(
  page: Uint8Array,
  src: Uint8Array,
  srcOff: number,
  len: number,
  offsetNumber: number,
  flags: number,
): number {
  if (srcOff < 0 || len < 0 || srcOff + len > src.length)
    throw new RangeError(`item [${srcOff}, ${srcOff + len}) is outside its ${src.length}-byte array`);
  const off = addItemSlot(page, len, offsetNumber, flags);
  if (off === InvalidOffsetNumber) return off;
  if (srcOff === 0 && len === src.length) page.set(src, slotUpper);
  else if (src === page) page.copyWithin(slotUpper, srcOff, srcOff + len);
  else copyBytes(page, slotUpper, src, srcOff, len);
  return off;
}

/**
 * pageAddItemExtended at a given `offsetNumber` without the copy: the line pointer (lp_len =
 * len), pd_lower and pd_upper are set as it sets them, and the item's byte offset is returned
 * (0 where it returns InvalidOffsetNumber). The caller writes the `len` item bytes there, so a
 * tuple can be assembled in place.
 */
export function pageAddItemSpace(page: Uint8Array, len: number, offsetNumber: number, flags: number): number {
  if (offsetNumber === InvalidOffsetNumber || len < 0) throw new RangeError(`pageAddItemSpace: offset ${offsetNumber}, length ${len}`);
  return addItemSlot(page, len, offsetNumber, flags) === InvalidOffsetNumber ? 0 : slotUpper;
}

/** Where addItemSlot placed its item (pd_upper after it): read right after a successful call. */
let slotUpper = 0;

/** PageAddItemExtended but the copy of the item's bytes (see pageAddItemExtended); sets slotUpper. */
function addItemSlot(page: Uint8Array, len: number, offsetNumber: number, flags: number): number {
  checkPointersLoose(page);
  const limit = pageGetMaxOffsetNumber(page) + 1;
  let off = offsetNumber;
  let needShuffle = false;
  if (off !== InvalidOffsetNumber) {
    if ((flags & PAI_OVERWRITE) !== 0) {
      if (off < limit && (itemIdIsUsed(page, off) || itemIdHasStorage(page, off))) return InvalidOffsetNumber;
    } else if (off < limit) {
      needShuffle = true;
    }
  } else if (pageHasFreeLinePointers(page)) {
    for (off = FirstOffsetNumber; off < limit; off++) {
      if (!itemIdIsUsed(page, off) && !itemIdHasStorage(page, off)) break;
    }
    if (off >= limit) setPdFlags(page, pdFlags(page) & ~PD_HAS_FREE_LINES);
  } else {
    off = limit;
  }
  if (off > limit) return InvalidOffsetNumber;
  if ((flags & PAI_IS_HEAP) !== 0 && off > MAX_HEAP_TUPLES_PER_PAGE) return InvalidOffsetNumber;

  const lower = off === limit || needShuffle ? pdLower(page) + SIZE_OF_ITEM_ID : pdLower(page);
  const upper = pdUpper(page) - maxAlign(len);
  if (lower > upper) return InvalidOffsetNumber;

  if (needShuffle) page.copyWithin(lpAt(off + 1), lpAt(off), lpAt(limit));
  setItemIdNormal(page, off, upper, len);
  setPdLower(page, lower);
  setPdUpper(page, upper);
  slotUpper = upper;
  return off;
}

// compactify_tuples' working set, by position in line-pointer order: the line pointer's
// (new) offset number, the tuple's offset and its MAXALIGNed length.
const compactLp = new Uint16Array(MAX_LINE_POINTERS);
const compactOff = new Uint16Array(MAX_LINE_POINTERS);
const compactLen = new Uint16Array(MAX_LINE_POINTERS);
const scratchPage = new Uint8Array(BLCKSZ);
const scratchWords = new Int32Array(scratchPage.buffer);
/** Typed-array word views use the host's byte order; the page format is little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Line pointer n (1-based) is Int32 word LP_WORD_BASE + n of a page. */
const LP_WORD_BASE = SIZE_OF_PAGE_HEADER / SIZE_OF_ITEM_ID - 1;
const scratchLinePointers = new Uint8Array(BLCKSZ);

/** Below this many bytes a byte loop beats a subarray view + set (the view is an allocation). */
const COPY_LOOP_MAX_BYTES = 24;

/** dst[dstOff, dstOff + len) := src[srcOff, srcOff + len) for distinct arrays, without a view for short copies. */
export function copyBytes(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, len: number): void {
  if (len <= COPY_LOOP_MAX_BYTES && srcOff + len <= src.length && dstOff + len <= dst.length) {
    for (let i = 0; i < len; i++) dst[dstOff + i] = src[srcOff + i]!;
  } else {
    dst.set(src.subarray(srcOff, srcOff + len), dstOff);
  }
}

/** Line pointer `lp` keeps its flags and length and points at `lpOff`. */
function setItemIdOff(page: Uint8Array, lp: number, lpOff: number): void {
  const at = lpAt(lp);
  writeU32LE(page, at, ((readU32LE(page, at) & ~0x7fff) | (lpOff & 0x7fff)) >>> 0);
}

/** Below this many line pointers a byte loop is cheaper than making a word view of the page. */
const WORD_VIEW_MIN_LINE_POINTERS = 16;

/**
 * The page as Int32 words (line pointer n is word LP_WORD_BASE + n), when the host is
 * little-endian and the page a 4-aligned BLCKSZ array; else null (callers use bytes).
 */
function pageWords(page: Uint8Array): Int32Array | null {
  if (!LITTLE_ENDIAN || (page.byteOffset & 3) !== 0 || page.length !== BLCKSZ) return null;
  return new Int32Array(page.buffer, page.byteOffset, BLCKSZ >>> 2);
}

/** Line pointers 1..nline with lp_off <= offset (and lp_len != 0 if storageOnly) move by delta: the tuple data below `offset` moved. */
function shiftItemOffsets(page: Uint8Array, nline: number, offset: number, delta: number, storageOnly: boolean): void {
  const words = nline >= WORD_VIEW_MIN_LINE_POINTERS ? pageWords(page) : null;
  if (words !== null) {
    for (let i = LP_WORD_BASE + 1; i <= LP_WORD_BASE + nline; i++) {
      const w = words[i]!;
      const o = w & 0x7fff;
      if (o <= offset && (!storageOnly || w >>> 17 !== 0)) words[i] = (w & ~0x7fff) | ((o + delta) & 0x7fff);
    }
    return;
  }
  for (let i = FirstOffsetNumber; i <= nline; i++) {
    const w = lpWord(page, i);
    const o = w & 0x7fff;
    if (o <= offset && (!storageOnly || w >>> 17 !== 0)) setItemIdOff(page, i, o + delta);
  }
}

/**
 * compactify_tuples: place the n collected tuples from pd_special downward in the order
 * collected (line-pointer order), rewrite their lp_off, set pd_upper. Tuple i's MAXALIGNed
 * bytes end where tuple i - 1's begin. When the tuples are already in descending, disjoint
 * order (the usual case, PostgreSQL's "presorted"), each only moves up, over bytes no later
 * tuple needs, so runs of adjacent tuples move in place (memmove) as PostgreSQL does;
 * otherwise every source is first copied to a scratch page. Both give the same bytes.
 */
function compactifyTuples(page: Uint8Array, n: number): void {
  const special = pdSpecial(page);
  let presorted = true;
  // Word copies need 4-aligned tuples inside the page on a 4-aligned page.
  const words = pageWords(page);
  let wordsOk = words !== null;
  let prevOff = special;
  for (let i = 0; i < n; i++) {
    const off = compactOff[i]!;
    const len = compactLen[i]!;
    if (off + len > prevOff) presorted = false;
    if ((off & 3) !== 0 || off + len > BLCKSZ) wordsOk = false;
    prevOff = off;
  }
  let upper = special;
  if (presorted) {
    // A run: source [runSrc, runSrc + runLen) goes to [runDst, runDst + runLen), runDst >= runSrc.
    let runSrc = special;
    let runDst = special;
    let runLen = 0;
    for (let i = 0; i < n; i++) {
      const off = compactOff[i]!;
      const len = compactLen[i]!;
      upper -= len;
      if (off + len === runSrc) {
        runSrc = off;
        runDst = upper;
        runLen += len;
      } else {
        if (runLen > 0 && runSrc !== runDst) page.copyWithin(runDst, runSrc, runSrc + runLen);
        runSrc = off;
        runDst = upper;
        runLen = len;
      }
      if (words !== null) {
        const lp = LP_WORD_BASE + compactLp[i]!;
        words[lp] = (words[lp]! & ~0x7fff) | upper;
      } else {
        setItemIdOff(page, compactLp[i]!, upper);
      }
    }
    if (runLen > 0 && runSrc !== runDst) page.copyWithin(runDst, runSrc, runSrc + runLen);
  } else {
    const upperBefore = pdUpper(page);
    scratchPage.set(page.subarray(upperBefore, BLCKSZ), upperBefore);
    if (wordsOk && words !== null) {
      for (let i = 0; i < n; i++) {
        const off = compactOff[i]!;
        const len = compactLen[i]!;
        upper -= len;
        if (upper !== off) {
          const d = upper >>> 2;
          const s = off >>> 2;
          for (let k = 0; k < len >>> 2; k++) words[d + k] = scratchWords[s + k]!;
        }
        const lp = LP_WORD_BASE + compactLp[i]!;
        words[lp] = (words[lp]! & ~0x7fff) | upper;
      }
    } else {
      for (let i = 0; i < n; i++) {
        const off = compactOff[i]!;
        const len = compactLen[i]!;
        upper -= len;
        if (upper !== off) copyBytes(page, upper, scratchPage, off, len);
        setItemIdOff(page, compactLp[i]!, upper);
      }
    }
  }
  setPdUpper(page, upper);
}

/**
 * PageRepairFragmentation (heap pages): unused line pointers are reset, tuples with storage
 * compacted, trailing unused line pointers cut off, PD_HAS_FREE_LINES set iff an unused one
 * remains.
 */
export function pageRepairFragmentation(page: Uint8Array): void {
  checkPointers(page);
  const lower = pdLower(page);
  const upper = pdUpper(page);
  const special = pdSpecial(page);
  const nline = pageGetMaxOffsetNumber(page);
  let nstorage = 0;
  let nunused = 0;
  let totalLen = 0;
  let finalUsed = InvalidOffsetNumber;
  const words = nline >= WORD_VIEW_MIN_LINE_POINTERS ? pageWords(page) : null;
  for (let i = FirstOffsetNumber; i <= nline; i++) {
    const w = words !== null ? words[LP_WORD_BASE + i]! >>> 0 : lpWord(page, i);
    if (((w >>> 15) & 3) !== LP_UNUSED) {
      const len = w >>> 17;
      if (len !== 0) {
        const off = w & 0x7fff;
        if (off < upper || off >= special) throw new PageLayoutError(`corrupted line pointer: ${off}`);
        compactLp[nstorage] = i;
        compactOff[nstorage] = off;
        compactLen[nstorage] = maxAlign(len);
        totalLen += maxAlign(len);
        nstorage++;
      }
      finalUsed = i;
    } else {
      if (w !== 0) setItemIdUnused(page, i);
      nunused++;
    }
  }
  if (nstorage === 0) {
    setPdUpper(page, special);
  } else {
    if (totalLen > special - lower) {
      throw new PageLayoutError(`corrupted item lengths: total ${totalLen}, available space ${special - lower}`);
    }
    compactifyTuples(page, nstorage);
  }
  if (finalUsed !== nline) {
    const nunusedEnd = nline - finalUsed;
    nunused -= nunusedEnd;
    setPdLower(page, pdLower(page) - SIZE_OF_ITEM_ID * nunusedEnd);
  }
  const flags = pdFlags(page);
  setPdFlags(page, nunused > 0 ? flags | PD_HAS_FREE_LINES : flags & ~PD_HAS_FREE_LINES);
}

/**
 * PageTruncateLinePointerArray (heap pages, VACUUM's second pass): cut trailing unused line
 * pointers, but never the first one; PD_HAS_FREE_LINES iff an unused one remains before them.
 */
export function pageTruncateLinePointerArray(page: Uint8Array): void {
  let countDone = false;
  let setHint = false;
  let nunusedEnd = 0;
  for (let i = pageGetMaxOffsetNumber(page); i >= FirstOffsetNumber; i--) {
    const used = itemIdIsUsed(page, i);
    if (!countDone && i > FirstOffsetNumber) {
      if (!used) nunusedEnd++;
      else countDone = true;
    } else if (!used) {
      setHint = true;
      break;
    }
  }
  if (nunusedEnd > 0) setPdLower(page, pdLower(page) - SIZE_OF_ITEM_ID * nunusedEnd);
  const flags = pdFlags(page);
  setPdFlags(page, setHint ? flags | PD_HAS_FREE_LINES : flags & ~PD_HAS_FREE_LINES);
}

/** PageGetFreeSpace: pd_upper - pd_lower less one line pointer, at least 0. */
export function pageGetFreeSpace(page: Uint8Array): number {
  const space = pdUpper(page) - pdLower(page);
  return space < SIZE_OF_ITEM_ID ? 0 : space - SIZE_OF_ITEM_ID;
}

/** PageGetFreeSpaceForMultipleTuples: less `ntups` line pointers. */
export function pageGetFreeSpaceForMultipleTuples(page: Uint8Array, ntups: number): number {
  const space = pdUpper(page) - pdLower(page);
  return space < ntups * SIZE_OF_ITEM_ID ? 0 : space - ntups * SIZE_OF_ITEM_ID;
}

/** PageGetExactFreeSpace: pd_upper - pd_lower, at least 0. */
export function pageGetExactFreeSpace(page: Uint8Array): number {
  const space = pdUpper(page) - pdLower(page);
  return Math.max(space, 0);
}

/**
 * PageGetHeapFreeSpace: PageGetFreeSpace, but 0 when the page already has
 * MaxHeapTuplesPerPage line pointers and none is unused (trusting PD_HAS_FREE_LINES when clear).
 */
export function pageGetHeapFreeSpace(page: Uint8Array): number {
  const space = pageGetFreeSpace(page);
  if (space === 0) return 0;
  const nline = pageGetMaxOffsetNumber(page);
  if (nline < MAX_HEAP_TUPLES_PER_PAGE) return space;
  if (!pageHasFreeLinePointers(page)) return 0;
  for (let off = FirstOffsetNumber; off <= nline; off++) if (!itemIdIsUsed(page, off)) return space;
  return 0;
}

/** The checks PageIndexTupleDelete & co. make on the line pointer they remove or replace. */
function checkIndexItem(page: Uint8Array, off: number, nline: number): void {
  if (off <= 0 || off > nline) throw new PageLayoutError(`invalid index offnum: ${off}`);
  const offset = itemIdOff(page, off);
  const size = itemIdLen(page, off);
  if (offset < pdUpper(page) || offset + size > pdSpecial(page) || offset !== maxAlign(offset)) {
    throw new PageLayoutError(`corrupted line pointer: offset = ${offset}, size = ${size}`);
  }
}

/**
 * PageIndexTupleDelete: remove line pointer `off` (later ones shift down) and its tuple; the
 * tuple data below it moves up by its MAXALIGNed size.
 */
export function pageIndexTupleDelete(page: Uint8Array, off: number): void {
  checkPointers(page);
  let nline = pageGetMaxOffsetNumber(page);
  checkIndexItem(page, off, nline);
  const offset = itemIdOff(page, off);
  const size = maxAlign(itemIdLen(page, off));
  const lower = pdLower(page);
  if (lpAt(off + 1) < lower) page.copyWithin(lpAt(off), lpAt(off + 1), lower);
  const upper = pdUpper(page);
  if (offset > upper) page.copyWithin(upper + size, upper, offset);
  setPdUpper(page, upper + size);
  setPdLower(page, lower - SIZE_OF_ITEM_ID);
  if (!pageIsEmpty(page)) {
    nline--;
    shiftItemOffsets(page, nline, offset, size, false);
  }
}

/**
 * PageIndexMultiDelete: delete the line pointers `offs` (ascending, each at most once) and
 * compact the rest, line pointers and tuples. Two or fewer go through pageIndexTupleDelete,
 * as in PostgreSQL (the layouts differ).
 */
export function pageIndexMultiDelete(page: Uint8Array, offs: ArrayLike<number>): void {
  const nitems = offs.length;
  if (nitems > MAX_INDEX_TUPLES_PER_PAGE) throw new PageLayoutError(`${nitems} items to delete exceed MaxIndexTuplesPerPage`);
  if (nitems <= 2) {
    for (let k = nitems - 1; k >= 0; k--) pageIndexTupleDelete(page, offs[k]!);
    return;
  }
  checkPointers(page);
  const upper = pdUpper(page);
  const special = pdSpecial(page);
  const lower = pdLower(page);
  const nline = pageGetMaxOffsetNumber(page);
  let nused = 0;
  let next = 0;
  let totalLen = 0;
  const words = nline >= WORD_VIEW_MIN_LINE_POINTERS ? pageWords(page) : null;
  for (let off = FirstOffsetNumber; off <= nline; off++) {
    const w = words !== null ? words[LP_WORD_BASE + off]! >>> 0 : lpWord(page, off);
    const size = w >>> 17;
    const offset = w & 0x7fff;
    if (offset < upper || offset + size > special || offset !== maxAlign(offset)) {
      throw new PageLayoutError(`corrupted line pointer: offset = ${offset}, size = ${size}`);
    }
    if (next < nitems && off === offs[next]) {
      next++;
    } else {
      compactLp[nused] = nused + 1;
      compactOff[nused] = offset;
      compactLen[nused] = maxAlign(size);
      totalLen += maxAlign(size);
      writeU32LE(scratchLinePointers, nused * SIZE_OF_ITEM_ID, w);
      nused++;
    }
  }
  if (next !== nitems) throw new PageLayoutError("incorrect index offsets supplied");
  if (totalLen > special - lower) {
    throw new PageLayoutError(`corrupted item lengths: total ${totalLen}, available space ${special - lower}`);
  }
  page.set(scratchLinePointers.subarray(0, nused * SIZE_OF_ITEM_ID), SIZE_OF_PAGE_HEADER);
  setPdLower(page, SIZE_OF_PAGE_HEADER + nused * SIZE_OF_ITEM_ID);
  if (nused > 0) compactifyTuples(page, nused);
  else setPdUpper(page, special);
}

/**
 * PageIndexTupleDeleteNoCompact: the line pointer becomes LP_UNUSED (or is cut if it is the
 * last one), the tuple's space is reclaimed by moving the data below it up.
 */
export function pageIndexTupleDeleteNoCompact(page: Uint8Array, off: number): void {
  checkPointers(page);
  let nline = pageGetMaxOffsetNumber(page);
  checkIndexItem(page, off, nline);
  const offset = itemIdOff(page, off);
  const size = maxAlign(itemIdLen(page, off));
  if (off < nline) {
    setItemIdUnused(page, off);
  } else {
    setPdLower(page, pdLower(page) - SIZE_OF_ITEM_ID);
    nline--;
  }
  const upper = pdUpper(page);
  if (offset > upper) page.copyWithin(upper + size, upper, offset);
  setPdUpper(page, upper + size);
  if (!pageIsEmpty(page)) {
    shiftItemOffsets(page, nline, offset, size, true);
  }
}

/**
 * PageIndexTupleOverwrite: replace tuple `off` in place (its lp_flags kept), moving the data
 * below it by the change in MAXALIGNed size. False, page unchanged, when it does not fit.
 */
export function pageIndexTupleOverwrite(page: Uint8Array, off: number, item: Uint8Array): boolean {
  checkPointers(page);
  const itemCount = pageGetMaxOffsetNumber(page);
  checkIndexItem(page, off, itemCount);
  const offset = itemIdOff(page, off);
  const oldSize = maxAlign(itemIdLen(page, off));
  const newSize = maxAlign(item.length);
  const upper = pdUpper(page);
  if (newSize > oldSize + (upper - pdLower(page))) return false;
  const sizeDiff = oldSize - newSize;
  if (sizeDiff !== 0) {
    page.copyWithin(upper + sizeDiff, upper, offset);
    setPdUpper(page, upper + sizeDiff);
    shiftItemOffsets(page, itemCount, offset, sizeDiff, true);
  }
  setItemId(page, off, offset + sizeDiff, itemIdFlags(page, off), item.length);
  page.set(item, offset + sizeDiff);
  return true;
}
