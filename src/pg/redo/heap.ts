/**
 * Native redo of the Heap and Heap2 rmgrs: heap_redo / heap2_redo of PostgreSQL 15.18
 * (src/backend/access/heap/heapam.c heap_xlog_*, pruneheap.c heap_page_prune_execute,
 * visibilitymap.c visibilitymap_set) on one block reference at a time, and heap_mask.
 *
 * The page handed in is the block's version just before the record (or a zeroed page when
 * the block is will_init), so PostgreSQL's "page LSN >= record LSN: skip" case never arises;
 * everything else is done as heap redo does it, byte for byte:
 *   - tuples are rebuilt from xl_heap_header + data (xmin = the record's xid, cmin 0, ctid =
 *     its own TID; UPDATE: new_xmax, and prefix/suffix copied from the old tuple on the same
 *     page) and placed with PageAddItemExtended(OVERWRITE | IS_HEAP);
 *   - DELETE/UPDATE/LOCK/LOCK_UPDATED set xmax and infomask bits as heapam.c does
 *     (fix_infomask_from_infobits), cmax 0 where PostgreSQL sets it, ctid, HOT flags, and
 *     PageSetPrunable(xid) where PostgreSQL calls it;
 *   - PD_ALL_VISIBLE cleared on the *_ALL_VISIBLE_CLEARED flags, set by MULTI_INSERT with
 *     ALL_FROZEN_SET and by VISIBLE;
 *   - PageSetLSN(EndRecPtr) wherever PostgreSQL sets it. One divergence: VISIBLE sets the
 *     heap page's LSN only when data checksums or wal_log_hints are on (XLogHintBitIsNeeded),
 *     which the record does not say; we always set it (pd_lsn is masked in comparisons, and a
 *     newer pd_lsn on a page that has the change is always safe).
 * The free-space-map updates heap redo makes are skipped: the FSM is not WAL-logged and
 * PostgreSQL rebuilds it. Visibility-map clears implied by heap records are ingest's
 * pageserver records (src/pgdata/ingest_relations.ts, native.ts VM_CLEAR); VISIBLE's VM block is
 * redone here (visibilitymap_set, PageInit of a new VM page first, as heap_xlog_visible).
 *
 * Records without a page change refuse to be redone: Heap/TRUNCATE (SMGR records do the
 * truncation), Heap2/NEW_CID (logical decoding only) and Heap2/REWRITE (a logical-rewrite
 * mapping file under pg_logical, not a page) reference no blocks.
 *
 * Where PostgreSQL would PANIC (a line pointer that is not LP_NORMAL, an offset past the
 * end, a tuple that does not fit, a wrong tuple length) we throw a CorruptionError naming
 * the record and the block. Offsets PostgreSQL trusts blindly (prune/vacuum/freeze arrays)
 * are range-checked so a bad record can't write outside the page.
 *
 * Hot path: rebuilt tuples are assembled in place, in the space pageAddItemSpace reserves
 * (no scratch copy, no view per tuple); the decoders allocate only their small result objects.
 */
import type { CorruptionError } from "../../types/errors.js";
import { readU16LE, writeU16LE, writeU32LE } from "../../types/bytes.js";
import {
  FIRST_COMMAND_ID,
  FROZEN_TRANSACTION_ID,
  HEAP_COMBOCID,
  HEAP_HOT_UPDATED,
  HEAP_KEYS_UPDATED,
  HEAP_MOVED,
  HEAP_XACT_MASK,
  HEAP_XMAX_BITS,
  HEAP_XMAX_COMMITTED,
  HEAP_XMAX_EXCL_LOCK,
  HEAP_XMAX_INVALID,
  HEAP_XMAX_IS_MULTI,
  HEAP_XMAX_KEYSHR_LOCK,
  HEAP_XMAX_LOCK_ONLY,
  HEAP_XMIN_FROZEN,
  INVALID_TRANSACTION_ID,
  MOVED_PARTITIONS_BLOCK_NUMBER,
  MOVED_PARTITIONS_OFFSET_NUMBER,
  SIZEOF_HEAP_TUPLE_HEADER,
  SPEC_TOKEN_OFFSET_NUMBER,
  setCtid,
  T_CID,
  T_CTID,
  T_HOFF,
  T_INFOMASK,
  T_INFOMASK2,
  T_XMAX,
  T_XMIN,
  xmaxIsLockedOnly,
} from "../heap_tuple.js";
import { BLCKSZ, HEAPBLOCKS_PER_VM_PAGE } from "../consts.js";
import type { DecodedRecord } from "../wal/record.js";
import {
  decodeHeapConfirm,
  decodeHeapDelete,
  decodeHeapInplace,
  decodeHeapInsert,
  decodeHeapLock,
  decodeHeapUpdate,
  XLH_DELETE_ALL_VISIBLE_CLEARED,
  XLH_DELETE_IS_PARTITION_MOVE,
  XLH_DELETE_IS_SUPER,
  XLH_INSERT_ALL_FROZEN_SET,
  XLH_INSERT_ALL_VISIBLE_CLEARED,
  XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED,
  XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED,
  XLHL_KEYS_UPDATED,
  XLHL_XMAX_EXCL_LOCK,
  XLHL_XMAX_IS_MULTI,
  XLHL_XMAX_KEYSHR_LOCK,
  XLHL_XMAX_LOCK_ONLY,
  XLOG_HEAP_CONFIRM,
  XLOG_HEAP_DELETE,
  XLOG_HEAP_HOT_UPDATE,
  XLOG_HEAP_INIT_PAGE,
  XLOG_HEAP_INPLACE,
  XLOG_HEAP_INSERT,
  XLOG_HEAP_LOCK,
  XLOG_HEAP_OPMASK,
  XLOG_HEAP_TRUNCATE,
  XLOG_HEAP_UPDATE,
} from "../wal/records/heap.js";
import {
  decodeHeap2FreezePage,
  decodeHeap2LockUpdated,
  decodeHeap2MultiInsert,
  decodeHeap2Prune,
  decodeHeap2Vacuum,
  decodeHeap2Visible,
  freezePlanFlags,
  freezePlanInfomask,
  freezePlanInfomask2,
  freezePlanOffset,
  freezePlanXmax,
  multiInsertDataLen,
  multiInsertHoff,
  multiInsertInfomask,
  multiInsertInfomask2,
  offsetAt,
  SIZE_OF_MULTI_INSERT_TUPLE,
  VISIBILITYMAP_VALID_BITS,
  XLH_FREEZE_XVAC,
  XLH_INVALID_XVAC,
  XLOG_HEAP2_FREEZE_PAGE,
  XLOG_HEAP2_LOCK_UPDATED,
  XLOG_HEAP2_MULTI_INSERT,
  XLOG_HEAP2_NEW_CID,
  XLOG_HEAP2_PRUNE,
  XLOG_HEAP2_REWRITE,
  XLOG_HEAP2_VACUUM,
  XLOG_HEAP2_VISIBLE,
} from "../wal/records/heap2.js";
import { RM_HEAP2_ID, RM_HEAP_ID } from "../wal/rmgr_ids.js";
import {
  FirstOffsetNumber,
  itemIdFlags,
  itemIdHasStorage,
  itemIdLen,
  itemIdOff,
  LP_NORMAL,
  maxAlign,
  PAI_IS_HEAP,
  PAI_OVERWRITE,
  PageLayoutError,
  copyBytes,
  pageAddItemSpace,
  pageGetMaxOffsetNumber,
  pageInit,
  pageIsNew,
  pageLsn,
  pageRepairFragmentation,
  pageSetPrunable,
  pageTruncateLinePointerArray,
  PD_ALL_VISIBLE,
  pdFlags,
  setItemIdDead,
  setItemIdRedirect,
  setItemIdUnused,
  setPageLsn,
  setPdFlags,
  SIZE_OF_PAGE_HEADER,
} from "./bufpage.js";
import { maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace, MASK_MARKER } from "./bufmask.js";
import { findBlock, redoBlock, redoCorruption, redoUnsupported, type RmgrRedo } from "./rmgr_interface.js";

/** The most line pointers a page can hold: bounds every line-pointer loop. */
const MAX_LINE_POINTERS = (BLCKSZ - SIZE_OF_PAGE_HEADER) / 4;

/** VM map bytes start at PageGetContents: MAXALIGN(SizeOfPageHeaderData). */
const VM_MAP_OFFSET = maxAlign(SIZE_OF_PAGE_HEADER);
const VM_BITS_PER_HEAPBLOCK = 2;
const VM_HEAPBLOCKS_PER_BYTE = 4;

function pageClearAllVisible(page: Uint8Array): void {
  setPdFlags(page, pdFlags(page) & ~PD_ALL_VISIBLE);
}

function pageSetAllVisible(page: Uint8Array): void {
  setPdFlags(page, pdFlags(page) | PD_ALL_VISIBLE);
}

/**
 * Position of the LP_NORMAL tuple at `offnum`, as the heap_xlog_* functions fetch it
 * ("invalid lp" is a PANIC there); its header must lie inside the page.
 */
function normalTuple(rec: DecodedRecord, blockId: number, page: Uint8Array, offnum: number): number {
  if (offnum < FirstOffsetNumber || pageGetMaxOffsetNumber(page) < offnum || itemIdFlags(page, offnum) !== LP_NORMAL) {
    throw redoCorruption(
      rec,
      blockId,
      `invalid lp: offset ${offnum} is not a normal line pointer (max offset ${pageGetMaxOffsetNumber(page)})`,
    );
  }
  return tupleWithHeader(rec, blockId, page, offnum);
}

/** Position of the tuple with storage at `offnum`, checked to hold a whole tuple header. */
function tupleWithHeader(rec: DecodedRecord, blockId: number, page: Uint8Array, offnum: number): number {
  const t = itemIdOff(page, offnum);
  const len = itemIdLen(page, offnum);
  if (len < SIZEOF_HEAP_TUPLE_HEADER || t < SIZE_OF_PAGE_HEADER || t + len > BLCKSZ) {
    throw redoCorruption(rec, blockId, `line pointer ${offnum} (offset ${t}, length ${len}) does not hold a heap tuple inside the page`);
  }
  return t;
}

/** A line pointer number from a record's offset array, checked against the page. */
function checkedOffset(rec: DecodedRecord, blockId: number, page: Uint8Array, offnum: number): number {
  if (offnum < FirstOffsetNumber || offnum > pageGetMaxOffsetNumber(page)) {
    throw redoCorruption(rec, blockId, `offset ${offnum} is outside the page's line pointers 1..${pageGetMaxOffsetNumber(page)}`);
  }
  return offnum;
}

/** fix_infomask_from_infobits, on the tuple at `page[t]`. */
function fixInfomaskFromInfobits(page: Uint8Array, t: number, infobits: number): void {
  let infomask =
    readU16LE(page, t + T_INFOMASK) & ~(HEAP_XMAX_IS_MULTI | HEAP_XMAX_LOCK_ONLY | HEAP_XMAX_KEYSHR_LOCK | HEAP_XMAX_EXCL_LOCK);
  let infomask2 = readU16LE(page, t + T_INFOMASK2) & ~HEAP_KEYS_UPDATED;
  if (infobits & XLHL_XMAX_IS_MULTI) infomask |= HEAP_XMAX_IS_MULTI;
  if (infobits & XLHL_XMAX_LOCK_ONLY) infomask |= HEAP_XMAX_LOCK_ONLY;
  if (infobits & XLHL_XMAX_EXCL_LOCK) infomask |= HEAP_XMAX_EXCL_LOCK;
  // HEAP_XMAX_SHR_LOCK isn't considered here (as in PostgreSQL)
  if (infobits & XLHL_XMAX_KEYSHR_LOCK) infomask |= HEAP_XMAX_KEYSHR_LOCK;
  if (infobits & XLHL_KEYS_UPDATED) infomask2 |= HEAP_KEYS_UPDATED;
  writeU16LE(page, t + T_INFOMASK, infomask);
  writeU16LE(page, t + T_INFOMASK2, infomask2);
}

/** The common start of DELETE, UPDATE (old tuple), LOCK and LOCK_UPDATED. */
function clearXmaxBits(page: Uint8Array, t: number): void {
  writeU16LE(page, t + T_INFOMASK, readU16LE(page, t + T_INFOMASK) & ~(HEAP_XMAX_BITS | HEAP_MOVED));
  writeU16LE(page, t + T_INFOMASK2, readU16LE(page, t + T_INFOMASK2) & ~HEAP_KEYS_UPDATED);
}

/** HeapTupleHeaderSetCmin/SetCmax(tuple, FirstCommandId, false): t_cid and HEAP_COMBOCID off. */
function setFirstCommandId(b: Uint8Array, t: number): void {
  writeU32LE(b, t + T_CID, FIRST_COMMAND_ID);
  writeU16LE(b, t + T_INFOMASK, readU16LE(b, t + T_INFOMASK) & ~HEAP_COMBOCID);
}

function setInfomask2Bits(page: Uint8Array, t: number, set: number, clear: number): void {
  writeU16LE(page, t + T_INFOMASK2, (readU16LE(page, t + T_INFOMASK2) & ~clear) | set);
}

/**
 * Place a rebuilt tuple of `len` bytes at `offnum` as PageAddItemExtended(OVERWRITE | IS_HEAP)
 * would, and write its fixed header in place: infomask2/infomask/hoff from WAL, xmin = the
 * record's xid, xmax = `xmax`, cmin FirstCommandId (HEAP_COMBOCID off), ctid = (blkno,
 * offnum). Returns the tuple's byte offset; the caller writes the bytes from offset 23 on.
 */
function placeRebuiltTuple(
  rec: DecodedRecord,
  blockId: number,
  page: Uint8Array,
  len: number,
  offnum: number,
  infomask2: number,
  infomask: number,
  hoff: number,
  blkno: number,
  xmax: number,
): number {
  const t = pageAddItemSpace(page, len, offnum, PAI_OVERWRITE | PAI_IS_HEAP);
  if (t === 0) throw redoCorruption(rec, blockId, `failed to add a ${len}-byte tuple at offset ${offnum}`);
  // The 23 header bytes, every one written.
  writeU32LE(page, t + T_XMIN, rec.xid);
  writeU32LE(page, t + T_XMAX, xmax);
  writeU32LE(page, t + T_CID, FIRST_COMMAND_ID);
  setCtid(page, t, blkno, offnum);
  writeU16LE(page, t + T_INFOMASK2, infomask2);
  writeU16LE(page, t + T_INFOMASK, infomask & ~HEAP_COMBOCID);
  page[t + T_HOFF] = hoff;
  return t;
}

function checkInsertOffset(rec: DecodedRecord, blockId: number, page: Uint8Array, offnum: number): void {
  if (pageGetMaxOffsetNumber(page) + 1 < offnum) {
    throw redoCorruption(rec, blockId, `invalid max offset number: inserting at ${offnum}, page has ${pageGetMaxOffsetNumber(page)}`);
  }
}

function noData(rec: DecodedRecord, blockId: number): CorruptionError {
  return redoCorruption(rec, blockId, "the block needs redo but the record carries no data for it");
}

// ---------------------------------------------------------------------------------------
// Heap

function heapXlogInsert(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeapInsert(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap/INSERT touches only block 0");
  const blkno = redoBlock(rec, 0).blkno;
  if (rec.info & XLOG_HEAP_INIT_PAGE) pageInit(page, 0);
  const tup = x.tuple;
  if (tup === null) throw noData(rec, 0);
  checkInsertOffset(rec, 0, page, x.offnum);
  const t = placeRebuiltTuple(
    rec,
    0,
    page,
    SIZEOF_HEAP_TUPLE_HEADER + tup.data.length,
    x.offnum,
    tup.infomask2,
    tup.infomask,
    tup.hoff,
    blkno,
    0,
  );
  page.set(tup.data, t + SIZEOF_HEAP_TUPLE_HEADER);
  setPageLsn(page, rec.endLsn);
  if (x.flags & XLH_INSERT_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
}

function heapXlogDelete(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeapDelete(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap/DELETE touches only block 0");
  const blkno = redoBlock(rec, 0).blkno;
  const t = normalTuple(rec, 0, page, x.offnum);
  clearXmaxBits(page, t);
  setInfomask2Bits(page, t, 0, HEAP_HOT_UPDATED);
  fixInfomaskFromInfobits(page, t, x.infobitsSet);
  if (x.flags & XLH_DELETE_IS_SUPER) writeU32LE(page, t + T_XMIN, INVALID_TRANSACTION_ID);
  else writeU32LE(page, t + T_XMAX, x.xmax);
  setFirstCommandId(page, t);
  pageSetPrunable(page, rec.xid);
  if (x.flags & XLH_DELETE_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
  if (x.flags & XLH_DELETE_IS_PARTITION_MOVE) setCtid(page, t, MOVED_PARTITIONS_BLOCK_NUMBER, MOVED_PARTITIONS_OFFSET_NUMBER);
  else setCtid(page, t, blkno, x.offnum);
  setPageLsn(page, rec.endLsn);
}

/**
 * UPDATE / HOT_UPDATE. Block 0 is the new page; block 1 the old page when it differs. On one
 * page (no block 1) the old tuple is updated first, then the new one added, as heap_xlog_update.
 */
function heapXlogUpdate(rec: DecodedRecord, blockId: number, page: Uint8Array, hot: boolean): void {
  const x = decodeHeapUpdate(rec);
  const newblk = redoBlock(rec, 0).blkno;
  const b1 = findBlock(rec, 1);
  const oldblk = b1 === undefined ? newblk : b1.blkno;
  const oldBlockId = oldblk === newblk ? 0 : 1;
  if (blockId !== 0 && blockId !== oldBlockId) throw redoCorruption(rec, blockId, "not a block this update touches");

  // The old tuple version.
  let oldTuple = -1;
  if (blockId === oldBlockId) {
    const t = normalTuple(rec, blockId, page, x.oldOffnum);
    oldTuple = t;
    clearXmaxBits(page, t);
    setInfomask2Bits(page, t, hot ? HEAP_HOT_UPDATED : 0, hot ? 0 : HEAP_HOT_UPDATED);
    fixInfomaskFromInfobits(page, t, x.oldInfobitsSet);
    writeU32LE(page, t + T_XMAX, x.oldXmax);
    setFirstCommandId(page, t);
    setCtid(page, t, newblk, x.newOffnum);
    pageSetPrunable(page, rec.xid);
    if (x.flags & XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
    setPageLsn(page, rec.endLsn);
  }
  if (blockId !== 0) return;

  // The new tuple version.
  if (oldblk !== newblk && rec.info & XLOG_HEAP_INIT_PAGE) pageInit(page, 0);
  const tup = x.newTuple;
  if (tup === null) throw noData(rec, 0);
  checkInsertOffset(rec, 0, page, x.newOffnum);
  const prefixLen = x.prefixLen;
  const suffixLen = x.suffixLen;
  let oldLen = 0;
  let oldHoff = 0;
  if (prefixLen > 0 || suffixLen > 0) {
    if (oldTuple < 0) throw redoCorruption(rec, 0, "prefix/suffix from an old tuple on another page");
    oldLen = itemIdLen(page, x.oldOffnum);
    oldHoff = page[oldTuple + T_HOFF]!;
    if (oldHoff + prefixLen > oldLen || oldHoff + suffixLen > oldLen) {
      throw redoCorruption(rec, 0, `prefix ${prefixLen} / suffix ${suffixLen} bytes exceed the old tuple's ${oldLen - oldHoff} data bytes`);
    }
  }
  // The new tuple is assembled in place: its space lies below pd_upper, apart from the old
  // tuple it takes a prefix / suffix from.
  const dataLen = tup.data.length;
  const t = placeRebuiltTuple(
    rec,
    0,
    page,
    SIZEOF_HEAP_TUPLE_HEADER + prefixLen + dataLen + suffixLen,
    x.newOffnum,
    tup.infomask2,
    tup.infomask,
    tup.hoff,
    newblk,
    x.newXmax,
  );
  let pos = t + SIZEOF_HEAP_TUPLE_HEADER;
  if (prefixLen > 0) {
    // bitmap [+ padding] [+ oid] from WAL, the prefix from the old tuple, then the rest from WAL
    const bitmapLen = tup.hoff - SIZEOF_HEAP_TUPLE_HEADER;
    if (bitmapLen > dataLen)
      throw redoCorruption(rec, 0, `t_hoff ${tup.hoff} leaves ${bitmapLen} bitmap bytes in ${dataLen} bytes of tuple data`);
    copyBytes(page, pos, tup.data, 0, bitmapLen);
    pos += bitmapLen;
    page.copyWithin(pos, oldTuple + oldHoff, oldTuple + oldHoff + prefixLen);
    pos += prefixLen;
    copyBytes(page, pos, tup.data, bitmapLen, dataLen - bitmapLen);
    pos += dataLen - bitmapLen;
  } else {
    page.set(tup.data, pos);
    pos += dataLen;
  }
  if (suffixLen > 0) page.copyWithin(pos, oldTuple + oldLen - suffixLen, oldTuple + oldLen);
  if (x.flags & XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
  setPageLsn(page, rec.endLsn);
}

function heapXlogConfirm(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeapConfirm(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap/HEAP_CONFIRM touches only block 0");
  const t = normalTuple(rec, 0, page, x.offnum);
  setCtid(page, t, redoBlock(rec, 0).blkno, x.offnum);
  setPageLsn(page, rec.endLsn);
}

function heapXlogLock(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeapLock(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap/LOCK touches only block 0");
  const t = normalTuple(rec, 0, page, x.offnum);
  clearXmaxBits(page, t);
  fixInfomaskFromInfobits(page, t, x.infobitsSet);
  // Clear the update flags only if the new infomask says there is no update.
  if (xmaxIsLockedOnly(readU16LE(page, t + T_INFOMASK))) {
    setInfomask2Bits(page, t, 0, HEAP_HOT_UPDATED);
    setCtid(page, t, redoBlock(rec, 0).blkno, x.offnum);
  }
  writeU32LE(page, t + T_XMAX, x.lockingXid);
  setFirstCommandId(page, t);
  setPageLsn(page, rec.endLsn);
}

function heapXlogInplace(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeapInplace(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap/INPLACE touches only block 0");
  const newData = x.newData;
  if (newData === null) throw noData(rec, 0);
  const t = normalTuple(rec, 0, page, x.offnum);
  const hoff = page[t + T_HOFF]!;
  const oldLen = itemIdLen(page, x.offnum) - hoff;
  if (oldLen !== newData.length) throw redoCorruption(rec, 0, `wrong tuple length: ${newData.length} new bytes for ${oldLen} old ones`);
  page.set(newData, t + hoff);
  setPageLsn(page, rec.endLsn);
}

function heapRedoBlock(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  switch (rec.info & XLOG_HEAP_OPMASK) {
    case XLOG_HEAP_INSERT:
      heapXlogInsert(rec, blockId, page);
      return;
    case XLOG_HEAP_DELETE:
      heapXlogDelete(rec, blockId, page);
      return;
    case XLOG_HEAP_UPDATE:
      heapXlogUpdate(rec, blockId, page, false);
      return;
    case XLOG_HEAP_HOT_UPDATE:
      heapXlogUpdate(rec, blockId, page, true);
      return;
    case XLOG_HEAP_TRUNCATE:
      throw redoUnsupported(
        rec,
        "Heap/TRUNCATE changes no page (it exists for logical decoding; the truncation is an SMGR record): nothing to redo",
      );
    case XLOG_HEAP_CONFIRM:
      heapXlogConfirm(rec, blockId, page);
      return;
    case XLOG_HEAP_LOCK:
      heapXlogLock(rec, blockId, page);
      return;
    case XLOG_HEAP_INPLACE:
      heapXlogInplace(rec, blockId, page);
      return;
    default:
      throw redoUnsupported(rec, "unknown heap op code");
  }
}

// ---------------------------------------------------------------------------------------
// Heap2

/** heap_xlog_prune: heap_page_prune_execute, then PageSetLSN. */
function heapXlogPrune(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeap2Prune(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap2/PRUNE touches only block 0");
  const offs = x.offsets;
  if (offs === null) throw noData(rec, 0);
  let i = 0;
  for (let n = 0; n < x.nredirected; n++, i += 2) {
    const from = checkedOffset(rec, 0, page, offsetAt(offs, i));
    setItemIdRedirect(page, from, offsetAt(offs, i + 1));
  }
  for (let n = 0; n < x.ndead; n++, i++) setItemIdDead(page, checkedOffset(rec, 0, page, offsetAt(offs, i)));
  for (let n = 0; n < x.nunused; n++, i++) setItemIdUnused(page, checkedOffset(rec, 0, page, offsetAt(offs, i)));
  pageRepairFragmentation(page);
  setPageLsn(page, rec.endLsn);
}

function heapXlogVacuum(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeap2Vacuum(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap2/VACUUM touches only block 0");
  const offs = x.offsets;
  if (offs === null) throw noData(rec, 0);
  for (let i = 0; i < x.nunused; i++) setItemIdUnused(page, checkedOffset(rec, 0, page, offsetAt(offs, i)));
  pageTruncateLinePointerArray(page);
  setPageLsn(page, rec.endLsn);
}

/** heap_xlog_freeze_page: heap_execute_freeze_tuple on each planned tuple. */
function heapXlogFreezePage(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeap2FreezePage(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap2/FREEZE_PAGE touches only block 0");
  const plans = x.plans;
  if (plans === null) throw noData(rec, 0);
  for (let i = 0; i < x.ntuples; i++) {
    const off = checkedOffset(rec, 0, page, freezePlanOffset(plans, i));
    const t = tupleWithHeader(rec, 0, page, off);
    writeU32LE(page, t + T_XMAX, freezePlanXmax(plans, i));
    const frz = freezePlanFlags(plans, i);
    if (frz & XLH_FREEZE_XVAC) writeU32LE(page, t + T_CID, FROZEN_TRANSACTION_ID);
    if (frz & XLH_INVALID_XVAC) writeU32LE(page, t + T_CID, INVALID_TRANSACTION_ID);
    writeU16LE(page, t + T_INFOMASK, freezePlanInfomask(plans, i));
    writeU16LE(page, t + T_INFOMASK2, freezePlanInfomask2(plans, i));
  }
  setPageLsn(page, rec.endLsn);
}

/**
 * heap_xlog_visible. Block 1, the heap page: PD_ALL_VISIBLE (and pd_lsn, see the header).
 * Block 0, the VM page: PageInit if new, then visibilitymap_set for block 1's heap block
 * unless the VM page's LSN is already at or past the record.
 */
function heapXlogVisible(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeap2Visible(rec);
  const heapBlk = redoBlock(rec, 1).blkno;
  if (blockId === 1) {
    pageSetAllVisible(page);
    setPageLsn(page, rec.endLsn);
    return;
  }
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap2/VISIBLE touches only blocks 0 and 1");
  if (pageIsNew(page)) pageInit(page, 0);
  if (!(rec.endLsn > pageLsn(page))) return;
  const mapBlock = Math.floor(heapBlk / HEAPBLOCKS_PER_VM_PAGE);
  if (mapBlock !== redoBlock(rec, 0).blkno)
    throw redoCorruption(rec, 0, `wrong VM buffer: heap block ${heapBlk} is on VM page ${mapBlock}`);
  const inPage = heapBlk % HEAPBLOCKS_PER_VM_PAGE;
  const mapByte = VM_MAP_OFFSET + Math.floor(inPage / VM_HEAPBLOCKS_PER_BYTE);
  const mapOffset = (inPage % VM_HEAPBLOCKS_PER_BYTE) * VM_BITS_PER_HEAPBLOCK;
  if (x.flags !== ((page[mapByte]! >>> mapOffset) & VISIBILITYMAP_VALID_BITS)) {
    page[mapByte] = page[mapByte]! | (x.flags << mapOffset);
    setPageLsn(page, rec.endLsn);
  }
}

function heapXlogMultiInsert(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeap2MultiInsert(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap2/MULTI_INSERT touches only block 0");
  const blkno = redoBlock(rec, 0).blkno;
  if (x.init) pageInit(page, 0);
  const data = x.tupleData;
  const starts = x.tupleStarts;
  if (data === null || starts === null) throw noData(rec, 0);
  for (let i = 0; i < x.ntuples; i++) {
    const offnum = x.offsets === null ? FirstOffsetNumber + i : offsetAt(x.offsets, i);
    checkInsertOffset(rec, 0, page, offnum);
    const s = starts[i]!;
    const dataLen = multiInsertDataLen(data, s);
    const t = placeRebuiltTuple(
      rec,
      0,
      page,
      SIZEOF_HEAP_TUPLE_HEADER + dataLen,
      offnum,
      multiInsertInfomask2(data, s),
      multiInsertInfomask(data, s),
      multiInsertHoff(data, s),
      blkno,
      0,
    );
    copyBytes(page, t + SIZEOF_HEAP_TUPLE_HEADER, data, s + SIZE_OF_MULTI_INSERT_TUPLE, dataLen);
  }
  setPageLsn(page, rec.endLsn);
  if (x.flags & XLH_INSERT_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
  // ALL_FROZEN_SET (COPY FREEZE into a fresh page) implies all tuples are visible.
  if (x.flags & XLH_INSERT_ALL_FROZEN_SET) pageSetAllVisible(page);
}

function heapXlogLockUpdated(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const x = decodeHeap2LockUpdated(rec);
  if (blockId !== 0) throw redoCorruption(rec, blockId, "Heap2/LOCK_UPDATED touches only block 0");
  const t = normalTuple(rec, 0, page, x.offnum);
  clearXmaxBits(page, t);
  fixInfomaskFromInfobits(page, t, x.infobitsSet);
  writeU32LE(page, t + T_XMAX, x.xmax);
  setPageLsn(page, rec.endLsn);
}

function heap2RedoBlock(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  switch (rec.info & XLOG_HEAP_OPMASK) {
    case XLOG_HEAP2_PRUNE:
      heapXlogPrune(rec, blockId, page);
      return;
    case XLOG_HEAP2_VACUUM:
      heapXlogVacuum(rec, blockId, page);
      return;
    case XLOG_HEAP2_FREEZE_PAGE:
      heapXlogFreezePage(rec, blockId, page);
      return;
    case XLOG_HEAP2_VISIBLE:
      heapXlogVisible(rec, blockId, page);
      return;
    case XLOG_HEAP2_MULTI_INSERT:
      heapXlogMultiInsert(rec, blockId, page);
      return;
    case XLOG_HEAP2_LOCK_UPDATED:
      heapXlogLockUpdated(rec, blockId, page);
      return;
    case XLOG_HEAP2_NEW_CID:
      throw redoUnsupported(rec, "Heap2/NEW_CID changes no page (combo CIDs for logical decoding): nothing to redo");
    case XLOG_HEAP2_REWRITE:
      throw redoUnsupported(rec, "Heap2/REWRITE changes no page (a logical-rewrite mapping file in pg_logical/mappings): nothing to redo");
    default:
      throw redoUnsupported(rec, "unknown heap2 op code");
  }
}

// ---------------------------------------------------------------------------------------
// heap_mask

/**
 * heap_mask: page LSN/checksum, header hint bits, the hole; per normal tuple the hint bits
 * (all of HEAP_XACT_MASK unless xmin is frozen, then only the xmax hints), the command id,
 * and a speculative token's ctid (set to the tuple's own TID, as redo does); the padding
 * after every tuple with storage.
 */
export function heapMask(page: Uint8Array, blkno: number): void {
  maskPageLsnAndChecksum(page);
  maskPageHintBits(page);
  maskUnusedSpace(page);
  const maxoff = pageGetMaxOffsetNumber(page);
  if (maxoff > MAX_LINE_POINTERS) throw new PageLayoutError(`heap_mask: ${maxoff} line pointers do not fit a page`);
  for (let off = FirstOffsetNumber; off <= maxoff; off++) {
    const t = itemIdOff(page, off);
    if (itemIdFlags(page, off) === LP_NORMAL) {
      if (t + SIZEOF_HEAP_TUPLE_HEADER > BLCKSZ) throw new PageLayoutError(`heap_mask: tuple ${off} at ${t} reaches past the page`);
      const infomask = readU16LE(page, t + T_INFOMASK);
      if ((infomask & HEAP_XMIN_FROZEN) !== HEAP_XMIN_FROZEN) writeU16LE(page, t + T_INFOMASK, infomask & ~HEAP_XACT_MASK);
      else writeU16LE(page, t + T_INFOMASK, infomask & ~(HEAP_XMAX_INVALID | HEAP_XMAX_COMMITTED));
      writeU32LE(page, t + T_CID, MASK_MARKER);
      if (readU16LE(page, t + T_CTID + 4) === SPEC_TOKEN_OFFSET_NUMBER) setCtid(page, t, blkno, off);
    }
    if (itemIdHasStorage(page, off)) {
      const len = itemIdLen(page, off);
      const end = t + maxAlign(len);
      if (end > BLCKSZ) throw new PageLayoutError(`heap_mask: item ${off} [${t}, ${end}) reaches past the page`);
      page.fill(MASK_MARKER, t + len, end);
    }
  }
}

export const heapRedo: RmgrRedo = { rmid: RM_HEAP_ID, name: "heap", redo: heapRedoBlock, mask: heapMask };
export const heap2Redo: RmgrRedo = { rmid: RM_HEAP2_ID, name: "heap2", redo: heap2RedoBlock, mask: heapMask };
