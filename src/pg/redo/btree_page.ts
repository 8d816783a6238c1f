/**
 * Btree page and tuple formats of PostgreSQL 15 (src/include/access/nbtree.h, itup.h) and the
 * posting-list routines redo needs (nbtdedup.c: _bt_form_posting, _bt_update_posting,
 * _bt_swap_posting), on byte arrays: a tuple is addressed as (bytes, offset).
 *
 *   BTPageOpaqueData, at pd_special (16 bytes)     BTMetaPageData, at 24 on block 0 (48 bytes)
 *    0 u32 btpo_prev    4 u32 btpo_next            0 magic  4 version  8 root  12 level
 *    8 u32 btpo_level  12 u16 btpo_flags           16 fastroot  20 fastlevel
 *   14 u16 btpo_cycleid                            24 last_cleanup_num_delpages  (28 pad)
 *                                                  32 f64 last_cleanup_num_heap_tuples
 *   IndexTupleData (8 bytes, then the key)         40 bool allequalimage  (pd_lower = 72)
 *    0 u16 bi_hi  2 u16 bi_lo  (t_tid block = hi<<16 | lo)
 *    4 u16 ip_posid   6 u16 t_info (size 0x1FFF, AM bit 0x2000, var 0x4000, nulls 0x8000)
 *
 *   posting tuple: t_info has INDEX_ALT_TID_MASK (0x2000), t_tid offset = nhtids | BT_IS_POSTING
 *   (0x2000), t_tid block = byte offset of the ItemPointerData[nhtids] array (MAXALIGNed).
 *   pivot tuple: INDEX_ALT_TID_MASK without BT_IS_POSTING; t_tid block = downlink / top parent.
 *   deleted page: BTDeletedPageData {u64 safexid} at 24, pd_lower = 32, pd_upper = pd_special.
 *
 * Invariants: results are byte-identical to PostgreSQL's (zero padding where palloc0 gives
 * zeros, MAXALIGNed posting tuples). The routines write into caller-provided buffers and
 * allocate nothing; a tuple that contradicts its own header is a PageLayoutError.
 */
import { BLCKSZ } from "../page.js";
import type { XlBtreeMetadata } from "../wal/records/btree.js";
import { copyBytes, maxAlign, PageLayoutError, pageInit, pdSpecial, SIZE_OF_PAGE_HEADER, setPdLower, setPdUpper } from "./bufpage.js";
import { readU16LE, readU32LE, writeU16LE, writeU32LE } from "../../types/bytes.js";

export const SIZE_OF_BT_PAGE_OPAQUE = 16;

export const BTP_LEAF = 1 << 0;
export const BTP_ROOT = 1 << 1;
export const BTP_DELETED = 1 << 2;
export const BTP_META = 1 << 3;
export const BTP_HALF_DEAD = 1 << 4;
export const BTP_SPLIT_END = 1 << 5;
export const BTP_HAS_GARBAGE = 1 << 6;
export const BTP_INCOMPLETE_SPLIT = 1 << 7;
export const BTP_HAS_FULLXID = 1 << 8;

export const BTREE_MAGIC = 0x053162;
export const SIZE_OF_BT_META_PAGE_DATA = 48;
export const SIZE_OF_BT_DELETED_PAGE_DATA = 8;

export const P_NONE = 0;
export const P_HIKEY = 1;
export const P_FIRSTKEY = 2;

export const SIZE_OF_INDEX_TUPLE_DATA = 8;
export const SIZE_OF_ITEM_POINTER = 6;
export const INDEX_SIZE_MASK = 0x1fff;
export const INDEX_ALT_TID_MASK = 0x2000;
export const BT_OFFSET_MASK = 0x0fff;
export const BT_IS_POSTING = 0x2000;

/** BTMaxItemSize(page) for BLCKSZ 8192: MAXALIGN_DOWN((8192 - MAXALIGN(24 + 3*4 + 3*6) - 16) / 3). */
export const BT_MAX_ITEM_SIZE =
  Math.floor((BLCKSZ - maxAlign(SIZE_OF_PAGE_HEADER + 3 * 4 + 3 * SIZE_OF_ITEM_POINTER) - SIZE_OF_BT_PAGE_OPAQUE) / 3) & ~7;

const OPQ_PREV = 0;
const OPQ_NEXT = 4;
const OPQ_LEVEL = 8;
const OPQ_FLAGS = 12;
const OPQ_CYCLEID = 14;

// ---- page opaque ---------------------------------------------------------------------

/** BTPageGetOpaque: the opaque's byte position (pd_special), checked to fit in the page. */
export function opaqueAt(page: Uint8Array): number {
  const special = pdSpecial(page);
  if (special + SIZE_OF_BT_PAGE_OPAQUE > BLCKSZ)
    throw new PageLayoutError(`btree page: pd_special ${special} leaves no room for BTPageOpaqueData`);
  return special;
}

export function btpoPrev(page: Uint8Array): number {
  return readU32LE(page, opaqueAt(page) + OPQ_PREV);
}
export function setBtpoPrev(page: Uint8Array, v: number): void {
  writeU32LE(page, opaqueAt(page) + OPQ_PREV, v);
}
export function btpoNext(page: Uint8Array): number {
  return readU32LE(page, opaqueAt(page) + OPQ_NEXT);
}
export function setBtpoNext(page: Uint8Array, v: number): void {
  writeU32LE(page, opaqueAt(page) + OPQ_NEXT, v);
}
export function btpoLevel(page: Uint8Array): number {
  return readU32LE(page, opaqueAt(page) + OPQ_LEVEL);
}
export function btpoFlags(page: Uint8Array): number {
  return readU16LE(page, opaqueAt(page) + OPQ_FLAGS);
}
export function setBtpoFlags(page: Uint8Array, v: number): void {
  writeU16LE(page, opaqueAt(page) + OPQ_FLAGS, v);
}
export function setBtpoCycleid(page: Uint8Array, v: number): void {
  writeU16LE(page, opaqueAt(page) + OPQ_CYCLEID, v);
}

/** P_FIRSTDATAKEY: rightmost pages have no high key, so their data starts at 1. */
export function pFirstDataKey(page: Uint8Array): number {
  return btpoNext(page) === P_NONE ? P_HIKEY : P_FIRSTKEY;
}

/** _bt_pageinit: PageInit with room for BTPageOpaqueData (the page is zeroed). */
export function btPageInit(page: Uint8Array): void {
  pageInit(page, SIZE_OF_BT_PAGE_OPAQUE);
}

/** Set every opaque field at once (the redo routines that rebuild a page from scratch). */
export function setBtOpaque(page: Uint8Array, prev: number, next: number, level: number, flags: number, cycleid: number): void {
  const o = opaqueAt(page);
  writeU32LE(page, o + OPQ_PREV, prev);
  writeU32LE(page, o + OPQ_NEXT, next);
  writeU32LE(page, o + OPQ_LEVEL, level);
  writeU16LE(page, o + OPQ_FLAGS, flags);
  writeU16LE(page, o + OPQ_CYCLEID, cycleid);
}

/**
 * PageGetTempPageCopySpecial into `temp`: PageInit with the same special size as `page`,
 * then the special space copied. (Not in bufpage.ts: only index redo builds temp pages.)
 */
export function pageGetTempPageCopySpecial(page: Uint8Array, temp: Uint8Array): void {
  const special = pdSpecial(page);
  if (special > BLCKSZ) throw new PageLayoutError(`pd_special ${special} is past the page`);
  pageInit(temp, BLCKSZ - special);
  temp.set(page.subarray(special, BLCKSZ), pdSpecial(temp));
}

// ---- index tuples --------------------------------------------------------------------

/** IndexTupleSize. */
export function itupSize(b: Uint8Array, o: number): number {
  return readU16LE(b, o + 6) & INDEX_SIZE_MASK;
}
/** ItemPointerGetBlockNumberNoCheck of t_tid. */
export function itupTidBlock(b: Uint8Array, o: number): number {
  return ((readU16LE(b, o) << 16) | readU16LE(b, o + 2)) >>> 0;
}
/** ItemPointerSetBlockNumber on t_tid. */
export function setItupTidBlock(b: Uint8Array, o: number, blkno: number): void {
  writeU16LE(b, o, blkno >>> 16);
  writeU16LE(b, o + 2, blkno & 0xffff);
}

export function btreeTupleIsPosting(b: Uint8Array, o: number): boolean {
  return (readU16LE(b, o + 6) & INDEX_ALT_TID_MASK) !== 0 && (readU16LE(b, o + 4) & BT_IS_POSTING) !== 0;
}
export function btreeTupleIsPivot(b: Uint8Array, o: number): boolean {
  return (readU16LE(b, o + 6) & INDEX_ALT_TID_MASK) !== 0 && (readU16LE(b, o + 4) & BT_IS_POSTING) === 0;
}
/** BTreeTupleGetNPosting (a posting tuple). */
export function btreeTupleGetNPosting(b: Uint8Array, o: number): number {
  return readU16LE(b, o + 4) & BT_OFFSET_MASK;
}
/** BTreeTupleGetPostingOffset (a posting tuple): where its TID array starts. */
export function btreeTupleGetPostingOffset(b: Uint8Array, o: number): number {
  return itupTidBlock(b, o);
}

/**
 * The 8-byte dummy high key of a half-dead leaf (IndexTupleData alone, t_info = 8 with
 * INDEX_ALT_TID_MASK via BTreeTupleSetTopParent/BTreeTupleSetNAtts(0)), pointing at `topparent`.
 */
export function writeTopParentHikey(out: Uint8Array, topparent: number): void {
  out.fill(0, 0, SIZE_OF_INDEX_TUPLE_DATA);
  setItupTidBlock(out, 0, topparent);
  writeU16LE(out, 4, 0);
  writeU16LE(out, 6, SIZE_OF_INDEX_TUPLE_DATA | INDEX_ALT_TID_MASK);
}

/** A posting tuple's header and TID array, checked to lie inside its IndexTupleSize and `b`. */
function checkPosting(b: Uint8Array, o: number, what: string): number {
  if (o + SIZE_OF_INDEX_TUPLE_DATA > b.length) throw new PageLayoutError(`${what}: no room for an index tuple header`);
  if (!btreeTupleIsPosting(b, o)) throw new PageLayoutError(`${what} is not a posting list tuple`);
  const n = btreeTupleGetNPosting(b, o);
  const start = btreeTupleGetPostingOffset(b, o);
  const size = itupSize(b, o);
  if (start < SIZE_OF_INDEX_TUPLE_DATA || start + n * SIZE_OF_ITEM_POINTER > size || o + size > b.length) {
    throw new PageLayoutError(`${what}: posting list of ${n} TIDs at ${start} does not fit its ${size}-byte tuple`);
  }
  return n;
}

/**
 * _bt_form_posting: a tuple with `base`'s key and the `nhtids` TIDs of `htids` (6 bytes
 * each, ascending) into `out`; a posting tuple when nhtids > 1, else a plain one. Returns
 * its size (MAXALIGNed when posting).
 */
export function btFormPosting(base: Uint8Array, baseOff: number, htids: Uint8Array, nhtids: number, out: Uint8Array): number {
  const keysize = btreeTupleIsPosting(base, baseOff) ? btreeTupleGetPostingOffset(base, baseOff) : itupSize(base, baseOff);
  const newsize = nhtids > 1 ? maxAlign(keysize + nhtids * SIZE_OF_ITEM_POINTER) : keysize;
  if (keysize < SIZE_OF_INDEX_TUPLE_DATA || baseOff + keysize > base.length || newsize > INDEX_SIZE_MASK || newsize > out.length) {
    throw new PageLayoutError(`posting list of ${nhtids} TIDs on a ${keysize}-byte key does not fit`);
  }
  out.fill(0, 0, newsize);
  out.set(base.subarray(baseOff, baseOff + keysize), 0);
  let info = (readU16LE(out, 6) & ~INDEX_SIZE_MASK) | newsize;
  if (nhtids > 1) {
    info |= INDEX_ALT_TID_MASK;
    writeU16LE(out, 6, info);
    writeU16LE(out, 4, nhtids | BT_IS_POSTING);
    setItupTidBlock(out, 0, keysize);
    out.set(htids.subarray(0, nhtids * SIZE_OF_ITEM_POINTER), keysize);
  } else {
    writeU16LE(out, 6, info & ~INDEX_ALT_TID_MASK);
    out.set(htids.subarray(0, SIZE_OF_ITEM_POINTER), 0);
  }
  return newsize;
}

/**
 * _bt_update_posting: `orig` (a posting tuple) without the TIDs at the posting-list indexes
 * listed, ascending, as `ndeleted` u16s at `del[delPos]` (straight from record data, so not
 * necessarily 2-aligned), into `out`. Returns the new tuple's size.
 */
export function btUpdatePosting(
  orig: Uint8Array,
  origOff: number,
  del: Uint8Array,
  delPos: number,
  ndeleted: number,
  out: Uint8Array,
): number {
  const norig = checkPosting(orig, origOff, "tuple to update");
  const nhtids = norig - ndeleted;
  if (delPos + ndeleted * 2 > del.length) throw new PageLayoutError(`${ndeleted} deleted TID indexes pass the end of their array`);
  if (!(nhtids > 0 && nhtids < norig)) throw new PageLayoutError(`deleting ${ndeleted} of ${norig} TIDs of a posting list tuple`);
  const keysize = btreeTupleGetPostingOffset(orig, origOff);
  const newsize = nhtids > 1 ? maxAlign(keysize + nhtids * SIZE_OF_ITEM_POINTER) : keysize;
  out.fill(0, 0, newsize);
  out.set(orig.subarray(origOff, origOff + keysize), 0);
  let info = (readU16LE(out, 6) & ~INDEX_SIZE_MASK) | newsize;
  let dst: number;
  if (nhtids > 1) {
    info |= INDEX_ALT_TID_MASK;
    writeU16LE(out, 6, info);
    writeU16LE(out, 4, nhtids | BT_IS_POSTING);
    setItupTidBlock(out, 0, keysize);
    dst = keysize;
  } else {
    writeU16LE(out, 6, info & ~INDEX_ALT_TID_MASK);
    dst = 0;
  }
  const src = origOff + keysize;
  let ui = 0;
  let d = 0;
  for (let i = 0; i < norig; i++) {
    if (d < ndeleted && readU16LE(del, delPos + d * 2) === i) {
      d++;
      continue;
    }
    if (ui >= nhtids) break;
    copyBytes(out, dst + ui * SIZE_OF_ITEM_POINTER, orig, src + i * SIZE_OF_ITEM_POINTER, SIZE_OF_ITEM_POINTER);
    ui++;
  }
  if (ui !== nhtids || d !== ndeleted) {
    throw new PageLayoutError(`posting list update kept ${ui} of ${nhtids} TIDs and matched ${d} of ${ndeleted} deletions`);
  }
  return newsize;
}

/**
 * _bt_swap_posting: split posting tuple `oposting` at `postingoff` for `newitem` (a plain
 * tuple, modified in place): the new posting tuple (same size as oposting) goes to `out`
 * with newitem's TID inserted at postingoff and its last TID dropped; newitem takes that
 * dropped (highest) TID. Returns the size of the new posting tuple.
 */
export function btSwapPosting(newitem: Uint8Array, oposting: Uint8Array, opostingOff: number, postingoff: number, out: Uint8Array): number {
  const nhtids = checkPosting(oposting, opostingOff, "posting list to split");
  if (!(postingoff > 0 && postingoff < nhtids)) {
    throw new PageLayoutError(`posting list tuple with ${nhtids} items cannot be split at offset ${postingoff}`);
  }
  if (newitem.length < SIZE_OF_INDEX_TUPLE_DATA || btreeTupleIsPivot(newitem, 0) || btreeTupleIsPosting(newitem, 0)) {
    throw new PageLayoutError("new item of a posting list split is not a plain non-pivot tuple");
  }
  const size = itupSize(oposting, opostingOff);
  out.set(oposting.subarray(opostingOff, opostingOff + size), 0);
  const list = btreeTupleGetPostingOffset(out, 0);
  const replacepos = list + postingoff * SIZE_OF_ITEM_POINTER;
  out.copyWithin(replacepos + SIZE_OF_ITEM_POINTER, replacepos, list + (nhtids - 1) * SIZE_OF_ITEM_POINTER);
  out.set(newitem.subarray(0, SIZE_OF_ITEM_POINTER), replacepos);
  const maxTid = opostingOff + list + (nhtids - 1) * SIZE_OF_ITEM_POINTER;
  newitem.set(oposting.subarray(maxTid, maxTid + SIZE_OF_ITEM_POINTER), 0);
  return size;
}

// ---- metapage ------------------------------------------------------------------------

/** _bt_restore_meta's page: a fresh btree page holding BTMetaPageData, BTP_META, pd_lower past it. */
export function writeMetaPage(page: Uint8Array, md: XlBtreeMetadata): void {
  btPageInit(page);
  const m = SIZE_OF_PAGE_HEADER;
  writeU32LE(page, m, BTREE_MAGIC);
  writeU32LE(page, m + 4, md.version);
  writeU32LE(page, m + 8, md.root);
  writeU32LE(page, m + 12, md.level);
  writeU32LE(page, m + 16, md.fastroot);
  writeU32LE(page, m + 20, md.fastlevel);
  writeU32LE(page, m + 24, md.lastCleanupNumDelpages);
  // btm_last_cleanup_num_heap_tuples = -1.0 (deprecated field): IEEE 754 0xBFF0000000000000.
  writeU32LE(page, m + 32, 0);
  writeU32LE(page, m + 36, 0xbff0_0000);
  page[m + 40] = md.allequalimage ? 1 : 0;
  setBtpoFlags(page, BTP_META);
  setPdLower(page, m + SIZE_OF_BT_META_PAGE_DATA);
}

/** BTPageSetDeleted: BTP_DELETED | BTP_HAS_FULLXID, safexid stored, the tuple area empty. */
export function btPageSetDeleted(page: Uint8Array, safexidEpoch: number, safexidXid: number): void {
  setBtpoFlags(page, (btpoFlags(page) & ~BTP_HALF_DEAD) | BTP_DELETED | BTP_HAS_FULLXID);
  setPdLower(page, maxAlign(SIZE_OF_PAGE_HEADER) + SIZE_OF_BT_DELETED_PAGE_DATA);
  setPdUpper(page, pdSpecial(page));
  writeU32LE(page, SIZE_OF_PAGE_HEADER, safexidXid);
  writeU32LE(page, SIZE_OF_PAGE_HEADER + 4, safexidEpoch);
}
