/**
 * Native redo of the Btree rmgr (PostgreSQL 15.18 src/backend/access/nbtree/nbtxlog.c:
 * btree_redo and its helpers) and btree_mask, one block reference at a time.
 *
 * Every PostgreSQL btree redo routine touches each of its blocks independently (replay never
 * couples cross-page locks), so redoing block `blockId` alone gives the same page as the
 * whole routine does:
 *
 *   INSERT_LEAF / INSERT_POST   0: add the tuple (POST: split the posting list before it first)
 *   INSERT_UPPER / INSERT_META  0: add the downlink; 1: clear the child's BTP_INCOMPLETE_SPLIT;
 *                               2 (META): the metapage rebuilt from xl_btree_metadata
 *   SPLIT_L / SPLIT_R           0: left page rebuilt in item order (high key from the record,
 *                               new item / posting split on the left); 1: right page rebuilt
 *                               from the record; 2: old right sibling's btpo_prev;
 *                               3 (internal split): the child's BTP_INCOMPLETE_SPLIT cleared
 *   DEDUP                       0: the page deduplicated again along the logged intervals
 *   VACUUM / DELETE             0: posting lists updated, tuples deleted, BTP_HAS_GARBAGE cleared
 *   MARK_PAGE_HALFDEAD          0: leaf rebuilt half-dead; 1: parent's downlink removed
 *   UNLINK_PAGE[_META]          0: target rebuilt deleted; 1: left sibling's btpo_next;
 *                               2: right sibling's btpo_prev; 3: leaf rebuilt half-dead;
 *                               4 (META): metapage
 *   NEWROOT                     0: root rebuilt (its tuples from the record); 1: the left child's
 *                               BTP_INCOMPLETE_SPLIT cleared; 2: metapage
 *   META_CLEANUP                0: metapage
 *   REUSE_PAGE                  no block references: only a hot-standby conflict, no page change
 *
 * A block read with XLogReadBufferForRedo is left untouched when its LSN is already at or past
 * the record's end (BLK_DONE), exactly as PostgreSQL does; blocks PostgreSQL initializes
 * (XLogInitBufferForRedo) are rebuilt whatever they held. Every page changed gets
 * PageSetLSN(record end). A record that doesn't say what PostgreSQL would do (bad lengths,
 * offsets off the page, a block id the info code doesn't use) is a CorruptionError naming
 * LSN, rmgr and info; bufpage's PageLayoutError passes through (PgRedo names the block).
 *
 * Hot path: the only allocations per call are the small typed objects of the record
 * decoders and subarray views; work space is module-level scratch (calls are synchronous
 * and never nested).
 */
import { assert } from "../../types/assert.js";
import type { CorruptionError } from "../../types/errors.js";
import type { DecodedRecord } from "../wal/record.js";
import {
  btreeInfoCode,
  dedupIntervalBaseoff,
  dedupIntervalNitems,
  decodeBtreeDedup,
  decodeBtreeDedupIntervals,
  decodeBtreeDelete,
  decodeBtreeDeleteData,
  decodeBtreeInsert,
  decodeBtreeInsertData,
  decodeBtreeMarkPageHalfdead,
  decodeBtreeMetadata,
  decodeRestoreTuples,
  decodeBtreeNewroot,
  decodeBtreeSplit,
  decodeBtreeSplitLeftData,
  decodeBtreeUnlinkPage,
  decodeBtreeVacuum,
  nextUpdate,
  offsetAt,
  SIZE_OF_BTREE_UPDATE,
  updateNDeleted,
  type XlBtreeSplit,
  type XlBtreeVacuum,
  XLOG_BTREE_DEDUP,
  XLOG_BTREE_DELETE,
  XLOG_BTREE_INSERT_LEAF,
  XLOG_BTREE_INSERT_META,
  XLOG_BTREE_INSERT_POST,
  XLOG_BTREE_INSERT_UPPER,
  XLOG_BTREE_MARK_PAGE_HALFDEAD,
  XLOG_BTREE_META_CLEANUP,
  XLOG_BTREE_NEWROOT,
  XLOG_BTREE_REUSE_PAGE,
  XLOG_BTREE_SPLIT_L,
  XLOG_BTREE_SPLIT_R,
  XLOG_BTREE_UNLINK_PAGE,
  XLOG_BTREE_UNLINK_PAGE_META,
  XLOG_BTREE_VACUUM,
} from "../wal/records/btree.js";
import { RM_BTREE_ID } from "../wal/rmgr_ids.js";
import { maskLpFlags, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./bufmask.js";
import {
  BLCKSZ,
  MAX_INDEX_TUPLES_PER_PAGE,
  maxAlign,
  copyBytes,
  itemIdLen,
  pageAddItemBytes,
  pageAddItemExtended,
  pageGetItem,
  pageGetItemPos,
  pageGetMaxOffsetNumber,
  pageIndexMultiDelete,
  pageIndexTupleDelete,
  pageIndexTupleOverwrite,
  LP_NORMAL,
  pageLsn,
  pdSpecial,
  pdUpper,
  SIZE_OF_ITEM_ID,
  SIZE_OF_PAGE_HEADER,
  setItemId,
  setPageLsn,
  setPdLower,
  setPdUpper,
} from "./bufpage.js";
import {
  BT_MAX_ITEM_SIZE,
  BTP_HALF_DEAD,
  BTP_HAS_GARBAGE,
  BTP_INCOMPLETE_SPLIT,
  BTP_LEAF,
  BTP_ROOT,
  BTP_SPLIT_END,
  btFormPosting,
  btPageInit,
  btPageSetDeleted,
  btpoFlags,
  btpoNext,
  btreeTupleGetNPosting,
  btreeTupleGetPostingOffset,
  btreeTupleIsPivot,
  btreeTupleIsPosting,
  btSwapPosting,
  btUpdatePosting,
  itupSize,
  itupTidBlock,
  P_HIKEY,
  P_NONE,
  pageGetTempPageCopySpecial,
  pFirstDataKey,
  SIZE_OF_BT_PAGE_OPAQUE,
  SIZE_OF_INDEX_TUPLE_DATA,
  SIZE_OF_ITEM_POINTER,
  setBtOpaque,
  setBtpoCycleid,
  setBtpoFlags,
  setBtpoNext,
  setBtpoPrev,
  setItupTidBlock,
  writeMetaPage,
  writeTopParentHikey,
} from "./btree_page.js";
import { findBlock, type RmgrRedo, redoCorruption } from "./rmgr_interface.js";

// Module-level work space (redo is synchronous and never re-entered).
const tempPage = new Uint8Array(BLCKSZ);
const newitemCopy = new Uint8Array(BLCKSZ);
const tupleOut = new Uint8Array(BLCKSZ);
const hikeyTuple = new Uint8Array(SIZE_OF_INDEX_TUPLE_DATA);
const restoreStarts = new Uint16Array(MAX_INDEX_TUPLES_PER_PAGE);
const deleteOffsets = new Uint16Array(MAX_INDEX_TUPLES_PER_PAGE);
/** Pending posting list's heap TIDs: at most BTMaxItemSize bytes of them fit in one tuple. */
const dedupHtids = new Uint8Array(BLCKSZ);

// The block reference being redone, for errors (set on entry to btreeRedo).
let currentBlockId = -1;

/** A record that doesn't say what PostgreSQL would do to the block being redone. */
function corrupt(rec: DecodedRecord, why: string): CorruptionError {
  return redoCorruption(rec, currentBlockId, why);
}

/** The block number of block reference `blockId`, which the record must have. */
function blockNumber(rec: DecodedRecord, blockId: number): number {
  const b = findBlock(rec, blockId);
  if (b === undefined) throw corrupt(rec, `block reference ${blockId}, which this redo needs, is missing`);
  return b.blkno;
}

/** XLogReadBufferForRedo's BLK_DONE test: the page already reflects this record. */
function alreadyApplied(rec: DecodedRecord, page: Uint8Array): boolean {
  return rec.endLsn <= pageLsn(page);
}

function unexpectedBlock(rec: DecodedRecord, blockId: number): CorruptionError {
  return corrupt(rec, `block reference ${blockId} is not one this record's redo touches`);
}

/** PageAddItem(page, item, size, off, false, false) where PostgreSQL PANICs/ERRORs on failure. */
function addItem(rec: DecodedRecord, page: Uint8Array, item: Uint8Array, off: number, what: string): void {
  if (pageAddItemExtended(page, item, off, 0) === 0) throw corrupt(rec, `failed to add ${what} at offset ${off}`);
}

/** addItem of the item src[srcOff, srcOff + len) (no view of it). */
function addItemBytes(rec: DecodedRecord, page: Uint8Array, src: Uint8Array, srcOff: number, len: number, off: number, what: string): void {
  if (pageAddItemBytes(page, src, srcOff, len, off, 0) === 0) throw corrupt(rec, `failed to add ${what} at offset ${off}`);
}

/** An existing item's offset, checked to be on the page (PostgreSQL would read garbage). */
function checkOffset(rec: DecodedRecord, page: Uint8Array, off: number, what: string): void {
  const maxoff = pageGetMaxOffsetNumber(page);
  if (off < 1 || off > maxoff) throw corrupt(rec, `${what} offset ${off} is not on the page (max offset ${maxoff})`);
}

/** _bt_clear_incomplete_split on the block being redone. */
function clearIncompleteSplit(rec: DecodedRecord, page: Uint8Array): void {
  if (alreadyApplied(rec, page)) return;
  setBtpoFlags(page, btpoFlags(page) & ~BTP_INCOMPLETE_SPLIT);
  setPageLsn(page, rec.endLsn);
}

/** _bt_restore_meta: the metapage from the xl_btree_metadata in block `blockId`'s data. */
function restoreMeta(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const md = decodeBtreeMetadata(rec, blockId);
  writeMetaPage(page, md);
  setPageLsn(page, rec.endLsn);
}

/**
 * _bt_restore_page on a freshly initialized page: the logged tuples (a page's
 * [pd_upper, pd_special), highest item number first) re-added in item-number order. Each
 * PageAddItem would place its MAXALIGNed tuple right below the previous one, so the data
 * goes back byte for byte below pd_special, and item k's line pointer points into it: one
 * copy instead of one PageAddItem per tuple, the same page.
 */
function restorePage(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const { data, count: n } = decodeRestoreTuples(rec, blockId, restoreStarts);
  const special = pdSpecial(page);
  assert(pageGetMaxOffsetNumber(page) === 0 && pdUpper(page) === special, "_bt_restore_page needs an empty page");
  const upper = special - data.length;
  const lower = SIZE_OF_PAGE_HEADER + n * SIZE_OF_ITEM_ID;
  if (lower > upper) throw corrupt(rec, `_bt_restore_page: ${n} items of ${data.length} bytes don't fit on a page`);
  page.set(data, upper);
  for (let i = 0; i < n; i++) {
    const start = restoreStarts[i]!;
    setItemId(page, n - i, upper + start, LP_NORMAL, maxAlign(itupSize(data, start)));
  }
  setPdLower(page, lower);
  setPdUpper(page, upper);
}

// ---- INSERT_* ------------------------------------------------------------------------

function redoInsert(rec: DecodedRecord, blockId: number, page: Uint8Array, isleaf: boolean, ismeta: boolean, posting: boolean): void {
  if (blockId === 1 && !isleaf) {
    clearIncompleteSplit(rec, page);
    return;
  }
  if (blockId === 2 && ismeta) {
    restoreMeta(rec, 2, page);
    return;
  }
  if (blockId !== 0) throw unexpectedBlock(rec, blockId);
  const xlrec = decodeBtreeInsert(rec);
  if (alreadyApplied(rec, page)) return;
  const data = decodeBtreeInsertData(rec, posting);
  if (!posting) {
    addItem(rec, page, data.newitem, xlrec.offnum, "new item");
  } else {
    // Posting list split: the logged item is orignewitem; _bt_swap_posting gives the
    // replacement posting list (same size, written over the old one in place) and the
    // final new item, inserted after it.
    const postingOffnum = xlrec.offnum - 1;
    checkOffset(rec, page, postingOffnum, "posting list");
    const oposting = pageGetItem(page, postingOffnum);
    const newitemLen = data.newitem.length;
    newitemCopy.set(data.newitem, 0);
    const newitem = newitemCopy.subarray(0, newitemLen);
    const size = btSwapPosting(newitem, oposting, 0, data.postingoff, tupleOut);
    const alignedSize = maxAlign(size);
    if (alignedSize > oposting.length) {
      throw corrupt(rec, `split posting list of ${alignedSize} bytes does not fit its ${oposting.length}-byte item`);
    }
    oposting.set(tupleOut.subarray(0, alignedSize), 0);
    addItem(rec, page, newitem, xlrec.offnum, "posting split new item");
  }
  setPageLsn(page, rec.endLsn);
}

// ---- SPLIT_L / SPLIT_R ---------------------------------------------------------------

function redoSplit(rec: DecodedRecord, blockId: number, page: Uint8Array, newitemonleft: boolean): void {
  const xlrec = decodeBtreeSplit(rec);
  const isleaf = xlrec.level === 0;
  switch (blockId) {
    case 0:
      redoSplitLeft(rec, page, xlrec, newitemonleft);
      return;
    case 1: {
      // The new right page, rebuilt from scratch (XLogInitBufferForRedo).
      const origpagenumber = blockNumber(rec, 0);
      const sblock = findBlock(rec, 2);
      btPageInit(page);
      setBtOpaque(page, origpagenumber, sblock === undefined ? P_NONE : sblock.blkno, xlrec.level, isleaf ? BTP_LEAF : 0, 0);
      restorePage(rec, 1, page);
      setPageLsn(page, rec.endLsn);
      return;
    }
    case 2:
      if (alreadyApplied(rec, page)) return;
      setBtpoPrev(page, blockNumber(rec, 1));
      setPageLsn(page, rec.endLsn);
      return;
    case 3:
      if (isleaf) throw unexpectedBlock(rec, blockId);
      clearIncompleteSplit(rec, page);
      return;
    default:
      throw unexpectedBlock(rec, blockId);
  }
}

/**
 * The original page becomes the left half: a temp page with the same special space gets the
 * logged high key, then the items before firstrightoff in item order (the posting list being
 * split replaced by its new version, the new item at newitemoff when it went left), and
 * replaces the page.
 */
function redoSplitLeft(rec: DecodedRecord, origpage: Uint8Array, xlrec: XlBtreeSplit, newitemonleft: boolean): void {
  if (alreadyApplied(rec, origpage)) return;
  const { level, firstrightoff, newitemoff, postingoff } = xlrec;
  const rightpagenumber = blockNumber(rec, 1);
  const data = decodeBtreeSplitLeftData(rec, xlrec, newitemonleft);
  let newitem: Uint8Array | null = data.newitem;
  let npostingSize = 0;
  let replacepostingoff = 0;
  if (newitem !== null && postingoff !== 0) {
    replacepostingoff = newitemoff - 1;
    checkOffset(rec, origpage, replacepostingoff, "posting list");
    newitemCopy.set(newitem, 0);
    newitem = newitemCopy.subarray(0, newitem.length);
    npostingSize = btSwapPosting(newitem, pageGetItem(origpage, replacepostingoff), 0, postingoff, tupleOut);
  }

  pageGetTempPageCopySpecial(origpage, tempPage);
  addItem(rec, tempPage, data.leftHikey, P_HIKEY, "high key to left page after split");
  let leftoff = P_HIKEY + 1;
  const maxoff = pageGetMaxOffsetNumber(origpage);
  let off = pFirstDataKey(origpage);
  if (firstrightoff > maxoff + 1) throw corrupt(rec, `firstrightoff ${firstrightoff} is past the page's ${maxoff} items`);
  for (; off < firstrightoff; off++) {
    if (off === replacepostingoff) {
      addItemBytes(rec, tempPage, tupleOut, 0, maxAlign(npostingSize), leftoff, "new posting list item to left page after split");
      leftoff++;
      continue;
    }
    if (newitemonleft && off === newitemoff) {
      addItem(rec, tempPage, newitem!, leftoff, "new item to left page after split");
      leftoff++;
    }
    addItemBytes(
      rec,
      tempPage,
      origpage,
      pageGetItemPos(origpage, off),
      itemIdLen(origpage, off),
      leftoff,
      "old item to left page after split",
    );
    leftoff++;
  }
  if (newitemonleft && off === newitemoff) {
    addItem(rec, tempPage, newitem!, leftoff, "new item to left page after split");
  }
  origpage.set(tempPage);
  setBtOpaqueAfterSplit(origpage, level === 0, rightpagenumber);
  setPageLsn(origpage, rec.endLsn);
}

/** The left half's opaque: only BTP_INCOMPLETE_SPLIT (and BTP_LEAF) survive; cycle id 0. */
function setBtOpaqueAfterSplit(page: Uint8Array, isleaf: boolean, rightpagenumber: number): void {
  setBtpoFlags(page, isleaf ? BTP_INCOMPLETE_SPLIT | BTP_LEAF : BTP_INCOMPLETE_SPLIT);
  setBtpoNext(page, rightpagenumber);
  setBtpoCycleid(page, 0);
}

// ---- DEDUP ---------------------------------------------------------------------------

// The pending posting list of btree_xlog_dedup's BTDedupState, in module scope.
let dedupBaseOff = 0;
let dedupBaseTupSize = 0;
let dedupNhtids = 0;
let dedupNitems = 0;
let dedupNintervals = 0;

// Where the heap TIDs of the tuple nonPivotTids last looked at are: byte offset in the
// tuple (0 for a plain tuple's t_tid) and count.
let dedupTidStart = 0;
let dedupTidCount = 0;

/** A non-pivot tuple's heap TIDs (its t_tid, or its posting list), checked to lie inside the item at page[t, t + len). */
function nonPivotTids(rec: DecodedRecord, page: Uint8Array, t: number, len: number, off: number): void {
  if (len < SIZE_OF_INDEX_TUPLE_DATA || btreeTupleIsPivot(page, t)) {
    throw corrupt(rec, `deduplication met a pivot or truncated tuple at offset ${off}`);
  }
  if (!btreeTupleIsPosting(page, t)) {
    dedupTidStart = 0;
    dedupTidCount = 1;
    return;
  }
  dedupTidStart = btreeTupleGetPostingOffset(page, t);
  dedupTidCount = btreeTupleGetNPosting(page, t);
  if (dedupTidStart < SIZE_OF_INDEX_TUPLE_DATA || dedupTidStart + dedupTidCount * SIZE_OF_ITEM_POINTER > len) {
    throw corrupt(rec, `posting list at offset ${off} passes the end of its ${len}-byte item`);
  }
}

/** _bt_dedup_start_pending: item `off` of `page` becomes the base of a new pending posting list. */
function dedupStartPending(rec: DecodedRecord, page: Uint8Array, off: number): void {
  const t = pageGetItemPos(page, off);
  nonPivotTids(rec, page, t, itemIdLen(page, off), off);
  copyBytes(dedupHtids, 0, page, t + dedupTidStart, dedupTidCount * SIZE_OF_ITEM_POINTER);
  dedupNhtids = dedupTidCount;
  // basetupsize excludes an existing posting list.
  dedupBaseTupSize = dedupTidStart === 0 ? itupSize(page, t) : dedupTidStart;
  dedupNitems = 1;
  dedupBaseOff = off;
}

/** _bt_dedup_save_htid: merge item `off`'s TIDs into the pending list if the result fits. */
function dedupSaveHtid(rec: DecodedRecord, page: Uint8Array, off: number): boolean {
  const t = pageGetItemPos(page, off);
  nonPivotTids(rec, page, t, itemIdLen(page, off), off);
  const mergedtupsz = maxAlign(dedupBaseTupSize + (dedupNhtids + dedupTidCount) * SIZE_OF_ITEM_POINTER);
  if (mergedtupsz > BT_MAX_ITEM_SIZE) return false;
  dedupNitems++;
  copyBytes(dedupHtids, dedupNhtids * SIZE_OF_ITEM_POINTER, page, t + dedupTidStart, dedupTidCount * SIZE_OF_ITEM_POINTER);
  dedupNhtids += dedupTidCount;
  return true;
}

/** _bt_dedup_finish_pending: append the base unchanged, or the merged posting list tuple. */
function dedupFinishPending(rec: DecodedRecord, page: Uint8Array, newpage: Uint8Array, intervals: Uint8Array, nintervals: number): void {
  const tupoff = pageGetMaxOffsetNumber(newpage) + 1;
  if (dedupNitems === 1) {
    const t = pageGetItemPos(page, dedupBaseOff);
    const len = itemIdLen(page, dedupBaseOff);
    const size = itupSize(page, t);
    if (size > len) throw corrupt(rec, `tuple at offset ${dedupBaseOff} claims ${size} bytes in a ${len}-byte item`);
    addItemBytes(rec, newpage, page, t, size, tupoff, "deduplicated tuple");
  } else {
    const size = btFormPosting(pageGetItem(page, dedupBaseOff), 0, dedupHtids, dedupNhtids, tupleOut);
    // The pass must form exactly the logged intervals (PostgreSQL asserts it).
    if (
      dedupNintervals >= nintervals ||
      dedupIntervalBaseoff(intervals, dedupNintervals) !== dedupBaseOff ||
      dedupIntervalNitems(intervals, dedupNintervals) !== dedupNitems
    ) {
      throw corrupt(rec, `deduplication merged ${dedupNitems} items at offset ${dedupBaseOff}, unlike logged interval ${dedupNintervals}`);
    }
    addItemBytes(rec, newpage, tupleOut, 0, size, tupoff, "posting list tuple");
    dedupNintervals++;
  }
  dedupNhtids = 0;
  dedupNitems = 0;
}

function redoDedup(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  if (blockId !== 0) throw unexpectedBlock(rec, blockId);
  const xlrec = decodeBtreeDedup(rec);
  if (alreadyApplied(rec, page)) return;
  const intervals = decodeBtreeDedupIntervals(rec, xlrec);
  const nintervals = xlrec.nintervals;
  const minoff = pFirstDataKey(page);
  const maxoff = pageGetMaxOffsetNumber(page);
  pageGetTempPageCopySpecial(page, tempPage);
  if (btpoNext(page) !== P_NONE) {
    checkOffset(rec, page, P_HIKEY, "high key");
    addItem(rec, tempPage, pageGetItem(page, P_HIKEY), P_HIKEY, "high key");
  }
  dedupNintervals = 0;
  dedupNhtids = 0;
  dedupNitems = 0;
  for (let off = minoff; off <= maxoff; off++) {
    if (off === minoff) {
      dedupStartPending(rec, page, off);
    } else if (
      dedupNintervals < nintervals &&
      dedupBaseOff === dedupIntervalBaseoff(intervals, dedupNintervals) &&
      dedupNitems < dedupIntervalNitems(intervals, dedupNintervals)
    ) {
      if (!dedupSaveHtid(rec, page, off)) throw corrupt(rec, "deduplication failed to add heap tid to pending posting list");
    } else {
      dedupFinishPending(rec, page, tempPage, intervals, nintervals);
      dedupStartPending(rec, page, off);
    }
  }
  // An empty page can't be deduplicated (PostgreSQL would finish a pending list it never started).
  if (maxoff < minoff) throw corrupt(rec, "deduplication of a page without data items");
  dedupFinishPending(rec, page, tempPage, intervals, nintervals);
  if (dedupNintervals !== nintervals)
    throw corrupt(rec, `deduplication formed ${dedupNintervals} posting lists, the record logs ${nintervals}`);
  if ((btpoFlags(page) & BTP_HAS_GARBAGE) !== 0) setBtpoFlags(tempPage, btpoFlags(tempPage) & ~BTP_HAS_GARBAGE);
  page.set(tempPage);
  setPageLsn(page, rec.endLsn);
}

// ---- VACUUM / DELETE -----------------------------------------------------------------

/** btree_xlog_vacuum and btree_xlog_delete: the same page change. */
function redoDeleteItems(rec: DecodedRecord, blockId: number, page: Uint8Array, counts: XlBtreeVacuum): void {
  if (blockId !== 0) throw unexpectedBlock(rec, blockId);
  if (alreadyApplied(rec, page)) return;
  if (counts.ndeleted > 0 || counts.nupdated > 0) {
    const data = decodeBtreeDeleteData(rec, counts);
    // btree_xlog_updates: each updated posting list loses the TIDs listed for it.
    let pos = 0;
    for (let i = 0; i < counts.nupdated; i++) {
      const off = offsetAt(data.updatedOffsets, i);
      checkOffset(rec, page, off, "updated tuple");
      const size = btUpdatePosting(
        pageGetItem(page, off),
        0,
        data.updates,
        pos + SIZE_OF_BTREE_UPDATE,
        updateNDeleted(data.updates, pos),
        tupleOut,
      );
      if (!pageIndexTupleOverwrite(page, off, tupleOut.subarray(0, maxAlign(size)))) {
        throw corrupt(rec, `failed to update partially dead item at offset ${off}`);
      }
      pos = nextUpdate(data.updates, pos);
    }
    if (counts.ndeleted > 0) {
      if (counts.ndeleted > deleteOffsets.length) throw corrupt(rec, `${counts.ndeleted} deletions exceed MaxIndexTuplesPerPage`);
      for (let i = 0; i < counts.ndeleted; i++) deleteOffsets[i] = offsetAt(data.deleted, i);
      pageIndexMultiDelete(page, deleteOffsets.subarray(0, counts.ndeleted));
    }
  }
  setBtpoFlags(page, btpoFlags(page) & ~BTP_HAS_GARBAGE);
  setPageLsn(page, rec.endLsn);
}

// ---- MARK_PAGE_HALFDEAD, UNLINK_PAGE[_META] ----------------------------------------------

/** A leaf rebuilt as half-dead: empty but for a dummy high key pointing at `topparent`. */
function writeHalfDeadLeaf(page: Uint8Array, prev: number, next: number, topparent: number): void {
  btPageInit(page);
  setBtOpaque(page, prev, next, 0, BTP_HALF_DEAD | BTP_LEAF, 0);
  writeTopParentHikey(hikeyTuple, topparent);
  const added = pageAddItemExtended(page, hikeyTuple, P_HIKEY, 0);
  assert(added === P_HIKEY, "an empty btree page refused an 8-byte high key");
}

function redoMarkPageHalfdead(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const xlrec = decodeBtreeMarkPageHalfdead(rec);
  if (blockId === 1) {
    // The subtree's parent: the downlink at poffset takes over the next item's child,
    // and that next item goes.
    if (alreadyApplied(rec, page)) return;
    const nextoffset = xlrec.poffset + 1;
    checkOffset(rec, page, xlrec.poffset, "parent downlink");
    checkOffset(rec, page, nextoffset, "parent's next downlink");
    const next = pageGetItem(page, nextoffset);
    const cur = pageGetItem(page, xlrec.poffset);
    if (next.length < SIZE_OF_INDEX_TUPLE_DATA || cur.length < SIZE_OF_INDEX_TUPLE_DATA)
      throw corrupt(rec, "parent downlink items are shorter than an index tuple header");
    setItupTidBlock(cur, 0, itupTidBlock(next, 0));
    pageIndexTupleDelete(page, nextoffset);
    setPageLsn(page, rec.endLsn);
    return;
  }
  if (blockId !== 0) throw unexpectedBlock(rec, blockId);
  writeHalfDeadLeaf(page, xlrec.leftblk, xlrec.rightblk, xlrec.topparent);
  setPageLsn(page, rec.endLsn);
}

function redoUnlinkPage(rec: DecodedRecord, blockId: number, page: Uint8Array, withMeta: boolean): void {
  const xlrec = decodeBtreeUnlinkPage(rec);
  switch (blockId) {
    case 0:
      btPageInit(page);
      setBtOpaque(page, xlrec.leftsib, xlrec.rightsib, xlrec.level, 0, 0);
      btPageSetDeleted(page, xlrec.safexidEpoch, xlrec.safexidXid);
      if (xlrec.level === 0) setBtpoFlags(page, btpoFlags(page) | BTP_LEAF);
      setPageLsn(page, rec.endLsn);
      return;
    case 1:
      // PostgreSQL reads the left sibling only when there is one.
      if (xlrec.leftsib === P_NONE || alreadyApplied(rec, page)) return;
      setBtpoNext(page, xlrec.rightsib);
      setPageLsn(page, rec.endLsn);
      return;
    case 2:
      if (alreadyApplied(rec, page)) return;
      setBtpoPrev(page, xlrec.leftsib);
      setPageLsn(page, rec.endLsn);
      return;
    case 3:
      if (xlrec.level === 0) throw unexpectedBlock(rec, blockId);
      writeHalfDeadLeaf(page, xlrec.leafleftsib, xlrec.leafrightsib, xlrec.leaftopparent);
      setPageLsn(page, rec.endLsn);
      return;
    case 4:
      if (!withMeta) throw unexpectedBlock(rec, blockId);
      restoreMeta(rec, 4, page);
      return;
    default:
      throw unexpectedBlock(rec, blockId);
  }
}

// ---- NEWROOT -------------------------------------------------------------------------

function redoNewroot(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const xlrec = decodeBtreeNewroot(rec);
  if (blockId === 0) {
    btPageInit(page);
    setBtOpaque(page, P_NONE, P_NONE, xlrec.level, xlrec.level === 0 ? BTP_ROOT | BTP_LEAF : BTP_ROOT, 0);
    if (xlrec.level > 0) restorePage(rec, 0, page);
    setPageLsn(page, rec.endLsn);
    return;
  }
  if (blockId === 1 && xlrec.level > 0) {
    clearIncompleteSplit(rec, page);
    return;
  }
  if (blockId === 2) {
    restoreMeta(rec, 2, page);
    return;
  }
  throw unexpectedBlock(rec, blockId);
}

// ---- the rmgr ------------------------------------------------------------------------

function btreeRedo(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  currentBlockId = blockId;
  const info = btreeInfoCode(rec);
  switch (info) {
    case XLOG_BTREE_INSERT_LEAF:
      redoInsert(rec, blockId, page, true, false, false);
      return;
    case XLOG_BTREE_INSERT_UPPER:
      redoInsert(rec, blockId, page, false, false, false);
      return;
    case XLOG_BTREE_INSERT_META:
      redoInsert(rec, blockId, page, false, true, false);
      return;
    case XLOG_BTREE_INSERT_POST:
      redoInsert(rec, blockId, page, true, false, true);
      return;
    case XLOG_BTREE_SPLIT_L:
      redoSplit(rec, blockId, page, true);
      return;
    case XLOG_BTREE_SPLIT_R:
      redoSplit(rec, blockId, page, false);
      return;
    case XLOG_BTREE_DEDUP:
      redoDedup(rec, blockId, page);
      return;
    case XLOG_BTREE_VACUUM:
      redoDeleteItems(rec, blockId, page, decodeBtreeVacuum(rec));
      return;
    case XLOG_BTREE_DELETE:
      redoDeleteItems(rec, blockId, page, decodeBtreeDelete(rec));
      return;
    case XLOG_BTREE_MARK_PAGE_HALFDEAD:
      redoMarkPageHalfdead(rec, blockId, page);
      return;
    case XLOG_BTREE_UNLINK_PAGE:
      redoUnlinkPage(rec, blockId, page, false);
      return;
    case XLOG_BTREE_UNLINK_PAGE_META:
      redoUnlinkPage(rec, blockId, page, true);
      return;
    case XLOG_BTREE_NEWROOT:
      redoNewroot(rec, blockId, page);
      return;
    case XLOG_BTREE_REUSE_PAGE:
      // Only a recovery-conflict point for hot standby: registers no block, changes no page.
      throw unexpectedBlock(rec, blockId);
    case XLOG_BTREE_META_CLEANUP:
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      restoreMeta(rec, 0, page);
      return;
    default:
      throw corrupt(rec, `unknown btree op code 0x${info.toString(16)}`);
  }
}

/**
 * btree_mask: besides the generic masks, line pointer flags on leaves (LP_DEAD is set
 * without WAL by index scans), BTP_HAS_GARBAGE (an unlogged hint), and BTP_SPLIT_END and
 * the cycle id (replay doesn't restore them on split pages).
 */
function btreeMask(page: Uint8Array, _blkno: number): void {
  maskPageLsnAndChecksum(page);
  maskPageHintBits(page);
  maskUnusedSpace(page);
  const special = pdSpecial(page);
  // PostgreSQL trusts pd_special here; a page whose opaque would pass the end is left to the byte comparison.
  if (special + SIZE_OF_BT_PAGE_OPAQUE > BLCKSZ) return;
  if ((btpoFlags(page) & BTP_LEAF) !== 0) maskLpFlags(page);
  setBtpoFlags(page, btpoFlags(page) & ~(BTP_HAS_GARBAGE | BTP_SPLIT_END));
  setBtpoCycleid(page, 0);
}

export const btreeRmgrRedo: RmgrRedo = {
  rmid: RM_BTREE_ID,
  name: "btree",
  redo: btreeRedo,
  mask: btreeMask,
};
