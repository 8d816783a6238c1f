/**
 * Native redo of the GIN rmgr: PostgreSQL 15's gin_redo (src/backend/access/gin/ginxlog.c)
 * and gin_mask, one block reference at a time, with the page helpers they use (GinInitPage,
 * GinInitMetabuffer, GinDataPageAddPostingItem, GinPageDeletePostingItem, ginRedoRecompress
 * and the posting-list codec in ./gin_posting_list.ts).
 *
 *   GIN page (PageInit with 8 bytes of special space):
 *     special (pd_special = 8184): rightlink u32 @0, maxoff u16 @4, flags u16 @6
 *     metapage contents @24: GinMetaPageData (56 bytes), pd_lower = 80
 *     posting-tree pages: right bound ItemPointerData @24, data @32 —
 *       internal: PostingItem[maxoff] (child BlockIdData 4 B + key ItemPointerData 6 B), pd_lower
 *                 = 32 + 10 * maxoff;
 *       leaf: GinPostingList segments end to end, pd_lower = their end (pre-9.4 leaves without
 *             GIN_COMPRESSED hold maxoff raw ItemPointerData instead; redo converts them first)
 *     entry and list pages: ordinary line pointers and index tuples
 *
 * Per block, as PostgreSQL does: an APPLY image is restored (pd_lsn := end LSN unless the page
 * is new) and nothing more is done, except that UPDATE_META_PAGE and DELETE_LISTPAGE rebuild
 * their (will_init) pages from the record regardless; SPLIT's left/right/root blocks and
 * VACUUM_PAGE's block carry nothing but an image, so such a block without one is corrupt.
 * Other blocks are replayed and get pd_lsn := end LSN.
 *
 * ginRedoRecompress works in module-level scratch buffers (redo is synchronous, never nested).
 */
import type { DecodedBlock, DecodedRecord } from "../wal/record.js";
import {
  decodeGinCreatePostingTree,
  decodeGinDeleteListPages,
  decodeGinDeletePage,
  decodeGinInsert,
  decodeGinInsertDataInternal,
  decodeGinInsertEntry,
  decodeGinInsertListPage,
  decodeGinRecompress,
  decodeGinSplit,
  decodeGinTupleRun,
  decodeGinUpdateMeta,
  GIN_SEGMENT_ADDITEMS,
  GIN_SEGMENT_DELETE,
  GIN_SEGMENT_INSERT,
  GIN_SEGMENT_REPLACE,
  type GinRecompress,
  SIZE_OF_GIN_META_PAGE_DATA,
  SIZE_OF_ITEM_POINTER,
  SIZE_OF_POSTING_ITEM,
  XLOG_GIN_CREATE_PTREE,
  XLOG_GIN_DELETE_LISTPAGE,
  XLOG_GIN_DELETE_PAGE,
  XLOG_GIN_INSERT,
  XLOG_GIN_INSERT_LISTPAGE,
  XLOG_GIN_SPLIT,
  XLOG_GIN_UPDATE_META_PAGE,
  XLOG_GIN_VACUUM_DATA_LEAF_PAGE,
  XLOG_GIN_VACUUM_PAGE,
} from "../wal/records/gin.js";
import { RM_GIN_ID, XLR_RMGR_INFO_MASK } from "../wal/rmgr_ids.js";
import { maskPageContent, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./bufmask.js";
import {
  BLCKSZ,
  FirstOffsetNumber,
  InvalidOffsetNumber,
  itemIdLen,
  itemIdOff,
  pageAddItemExtended,
  pageGetMaxOffsetNumber,
  pageIndexTupleDelete,
  pageInit,
  pageIsEmpty,
  pdLower,
  pdSpecial,
  SIZE_OF_PAGE_HEADER,
  setPageLsn,
  setPdLower,
  setPdPruneXid,
} from "./bufpage.js";
import { decodePostingList, encodePostingList, itemPointerValue, mergeItemPointers, postingListSize } from "./gin_posting_list.js";
import { readForRedo, redoBlock, redoCorruption, redoUnsupported, type RmgrRedo, unexpectedBlock } from "./rmgr_interface.js";
import { readU16LE, writeU16LE, writeU32LE } from "../../types/bytes.js";

export const GIN_DATA = 1 << 0;
export const GIN_LEAF = 1 << 1;
export const GIN_DELETED = 1 << 2;
export const GIN_META = 1 << 3;
export const GIN_LIST = 1 << 4;
export const GIN_LIST_FULLROW = 1 << 5;
export const GIN_INCOMPLETE_SPLIT = 1 << 6;
export const GIN_COMPRESSED = 1 << 7;

const INVALID_BLOCK_NUMBER = 0xffff_ffff;
const SIZE_OF_GIN_PAGE_OPAQUE = 8;
const OPAQUE_RIGHTLINK = 0;
const OPAQUE_MAXOFF = 4;
const OPAQUE_FLAGS = 6;

/** PageGetContents, and the data area of posting-tree pages after the right bound. */
const CONTENTS = SIZE_OF_PAGE_HEADER;
const DATA_START = CONTENTS + 8;
/** GinDataPageMaxDataSize. */
const GIN_DATA_PAGE_MAX_DATA_SIZE = BLCKSZ - DATA_START - SIZE_OF_GIN_PAGE_OPAQUE;
const GIN_META_PAGE_LOWER = CONTENTS + SIZE_OF_GIN_META_PAGE_DATA;

/** An ADDITEMS merge touches one segment (≤ a page of items) plus ≤ 65535 / 6 logged items. */
const MAX_ITEMS = 32768;
const oldItems = new Float64Array(MAX_ITEMS);
const addItems = new Float64Array(MAX_ITEMS);
const mergedItems = new Float64Array(2 * MAX_ITEMS);
/** The unprocessed tail of the leaf, once ginRedoRecompress starts rewriting in place. */
const tailCopy = new Uint8Array(BLCKSZ);
/** A re-encoded segment (ADDITEMS) or a converted pre-9.4 leaf. */
const newSegment = new Uint8Array(BLCKSZ);

/** BlockIdSet: bi_hi then bi_lo. */
function setBlockId(b: Uint8Array, o: number, blkno: number): void {
  writeU16LE(b, o, Math.floor(blkno / 0x1_0000));
  writeU16LE(b, o + 2, blkno % 0x1_0000);
}

// ---- page helpers (ginutil.c, gindatapage.c) ----------------------------------------------

/** The special space offset, checked to hold a GinPageOpaqueData. */
function opaqueAt(rec: DecodedRecord, blockId: number, page: Uint8Array): number {
  const special = pdSpecial(page);
  if (special < SIZE_OF_PAGE_HEADER || special + SIZE_OF_GIN_PAGE_OPAQUE > BLCKSZ) {
    throw redoCorruption(rec, blockId, `page has pd_special ${special}: no room for the GIN page opaque data`);
  }
  return special;
}

/** GinInitPage: PageInit, flags, rightlink = InvalidBlockNumber (maxoff 0). */
function ginInitPage(page: Uint8Array, flags: number): number {
  pageInit(page, SIZE_OF_GIN_PAGE_OPAQUE);
  const at = BLCKSZ - SIZE_OF_GIN_PAGE_OPAQUE;
  writeU16LE(page, at + OPAQUE_FLAGS, flags);
  writeU32LE(page, at + OPAQUE_RIGHTLINK, INVALID_BLOCK_NUMBER);
  return at;
}

/**
 * GinInitMetabuffer followed by the memcpy of the logged GinMetaPageData: the copy covers every
 * field GinInitMetabuffer sets, so what remains of it is the page init and pd_lower.
 */
function ginRestoreMetapage(page: Uint8Array, metadata: Uint8Array): void {
  ginInitPage(page, GIN_META);
  setPdLower(page, GIN_META_PAGE_LOWER);
  page.set(metadata, CONTENTS);
}

/** GinDataPageSetDataSize. */
function setDataSize(rec: DecodedRecord, blockId: number, page: Uint8Array, size: number): void {
  if (size > GIN_DATA_PAGE_MAX_DATA_SIZE)
    throw redoCorruption(rec, blockId, `posting data of ${size} bytes exceeds GinDataPageMaxDataSize`);
  setPdLower(page, DATA_START + size);
}

/** GinDataPageAddPostingItem: insert `item` (10 bytes) at `offset` (0: append), maxoff++. */
function addPostingItem(rec: DecodedRecord, blockId: number, page: Uint8Array, at: number, item: Uint8Array, offset: number): void {
  const maxoff = readU16LE(page, at + OPAQUE_MAXOFF);
  if (DATA_START + (maxoff + 1) * SIZE_OF_POSTING_ITEM > at) throw redoCorruption(rec, blockId, `no room for posting item ${maxoff + 1}`);
  let ptr: number;
  if (offset === InvalidOffsetNumber) {
    ptr = DATA_START + maxoff * SIZE_OF_POSTING_ITEM;
  } else {
    if (offset > maxoff + 1) throw redoCorruption(rec, blockId, `posting item offset ${offset} beyond maxoff ${maxoff} + 1`);
    ptr = DATA_START + (offset - 1) * SIZE_OF_POSTING_ITEM;
    if (offset !== maxoff + 1) page.copyWithin(ptr + SIZE_OF_POSTING_ITEM, ptr, DATA_START + maxoff * SIZE_OF_POSTING_ITEM);
  }
  page.set(item, ptr);
  writeU16LE(page, at + OPAQUE_MAXOFF, maxoff + 1);
  setDataSize(rec, blockId, page, (maxoff + 1) * SIZE_OF_POSTING_ITEM);
}

/** GinPageDeletePostingItem. */
function deletePostingItem(rec: DecodedRecord, blockId: number, page: Uint8Array, offset: number): void {
  const at = opaqueAt(rec, blockId, page);
  const maxoff = readU16LE(page, at + OPAQUE_MAXOFF);
  if (offset < FirstOffsetNumber || offset > maxoff)
    throw redoCorruption(rec, blockId, `posting item offset ${offset} outside [1, ${maxoff}]`);
  if (DATA_START + maxoff * SIZE_OF_POSTING_ITEM > at)
    throw redoCorruption(rec, blockId, `maxoff ${maxoff} reaches past the special space`);
  if (offset !== maxoff) {
    page.copyWithin(
      DATA_START + (offset - 1) * SIZE_OF_POSTING_ITEM,
      DATA_START + offset * SIZE_OF_POSTING_ITEM,
      DATA_START + maxoff * SIZE_OF_POSTING_ITEM,
    );
  }
  writeU16LE(page, at + OPAQUE_MAXOFF, maxoff - 1);
  setDataSize(rec, blockId, page, (maxoff - 1) * SIZE_OF_POSTING_ITEM);
}

/** Adds `count` index tuples laid end to end in `data` at offsets off, off + 1, … */
function addTupleRun(rec: DecodedRecord, blockId: number, page: Uint8Array, data: Uint8Array, starts: Int32Array, firstOff: number): void {
  const n = starts.length;
  for (let i = 0; i < n; i++) {
    const end = i + 1 < n ? starts[i + 1]! : data.length;
    if (pageAddItemExtended(page, data.subarray(starts[i]!, end), firstOff + i, 0) === InvalidOffsetNumber) {
      throw redoCorruption(rec, blockId, "failed to add item to index page");
    }
  }
}

// ---- ginRedoRecompress ----------------------------------------------------------------------

/** Pre-9.4 leaf: compress its raw ItemPointerData array into one segment, mark it compressed. */
function convertUncompressedLeaf(rec: DecodedRecord, blockId: number, page: Uint8Array, at: number): void {
  const n = readU16LE(page, at + OPAQUE_MAXOFF);
  let total = 0;
  if (n > 0) {
    if (DATA_START + n * SIZE_OF_ITEM_POINTER > at || n > MAX_ITEMS)
      throw redoCorruption(rec, blockId, `uncompressed leaf with ${n} items`);
    for (let i = 0; i < n; i++) oldItems[i] = itemPointerValue(page, DATA_START + i * SIZE_OF_ITEM_POINTER);
    const packed = encodePostingList(oldItems, n, newSegment, 0, BLCKSZ);
    if (packed !== n) throw redoCorruption(rec, blockId, `only ${packed} of ${n} items fit in one posting list`);
    total = postingListSize(newSegment, 0);
    if (DATA_START + total > at) throw redoCorruption(rec, blockId, `converted posting list of ${total} bytes does not fit`);
    page.set(newSegment.subarray(0, total), DATA_START);
  }
  setDataSize(rec, blockId, page, total);
  writeU16LE(page, at + OPAQUE_FLAGS, readU16LE(page, at + OPAQUE_FLAGS) | GIN_COMPRESSED);
  writeU16LE(page, at + OPAQUE_MAXOFF, InvalidOffsetNumber);
}

/**
 * ginRedoRecompress: apply the segment actions to the leaf's posting lists. Segments before
 * the first modified one stay in place; from there on the old tail is read from a copy and
 * the result written over the page, so an action may grow a segment freely.
 */
function ginRedoRecompress(rec: DecodedRecord, blockId: number, page: Uint8Array, actions: GinRecompress): void {
  const at = opaqueAt(rec, blockId, page);
  if ((readU16LE(page, at + OPAQUE_FLAGS) & GIN_COMPRESSED) === 0) convertUncompressedLeaf(rec, blockId, page, at);

  const lower = pdLower(page);
  if (lower < DATA_START || lower > at) throw redoCorruption(rec, blockId, `leaf pd_lower ${lower} outside [${DATA_START}, ${at}]`);
  const wal = actions.data;
  // Old segments are read from `src` in [oldseg, segmentend): the page until the first
  // modification, the tail copy after it.
  let src = page;
  let oldseg = DATA_START;
  let segmentend = lower;
  let copied = false;
  let writePtr = DATA_START;
  let segno = 0;

  for (let a = 0; a < actions.nactions; a++) {
    const aSegno = actions.segnos[a]!;
    let aAction = actions.types[a]!;
    const payload = actions.starts[a]!;
    let newseg = wal;
    let newsegAt = payload;
    let newsegSize = aAction === GIN_SEGMENT_INSERT || aAction === GIN_SEGMENT_REPLACE ? actions.lens[a]! : 0;

    // Skip to the segment this action concerns, moving unmodified ones once rewriting began.
    while (segno < aSegno) {
      if (oldseg >= segmentend) throw redoCorruption(rec, blockId, `action on segment ${aSegno}, the leaf has ${segno}`);
      const segsize = checkedSegmentSize(rec, blockId, src, oldseg, segmentend);
      if (copied) {
        if (writePtr + segsize > at) throw redoCorruption(rec, blockId, "recompressed leaf overflows the page");
        page.set(src.subarray(oldseg, oldseg + segsize), writePtr);
      }
      writePtr += segsize;
      oldseg += segsize;
      segno++;
    }

    if (aAction === GIN_SEGMENT_ADDITEMS) {
      // Rebuild the segment from its old items plus the logged ones, then replace it.
      if (oldseg >= segmentend) throw redoCorruption(rec, blockId, `ADDITEMS on segment ${aSegno} past the last segment`);
      const nold = decodePostingList(src, oldseg, segmentend, oldItems, 0);
      const nadd = actions.lens[a]! / SIZE_OF_ITEM_POINTER;
      for (let i = 0; i < nadd; i++) addItems[i] = itemPointerValue(wal, payload + i * SIZE_OF_ITEM_POINTER);
      const nnew = mergeItemPointers(addItems, nadd, oldItems, nold, mergedItems);
      if (nnew !== nold + nadd)
        throw redoCorruption(rec, blockId, `ADDITEMS on segment ${aSegno}: ${nadd} logged items overlap the ${nold} present`);
      const packed = encodePostingList(mergedItems, nnew, newSegment, 0, BLCKSZ);
      if (packed !== nnew) throw redoCorruption(rec, blockId, `ADDITEMS on segment ${aSegno}: ${nnew} items do not fit in one segment`);
      newseg = newSegment;
      newsegAt = 0;
      newsegSize = postingListSize(newSegment, 0);
      aAction = GIN_SEGMENT_REPLACE;
    }

    let segptr = oldseg;
    let segsize: number;
    if (segptr !== segmentend) {
      segsize = checkedSegmentSize(rec, blockId, src, segptr, segmentend);
    } else {
      // Positioned after the last segment: only INSERT makes sense (PostgreSQL asserts it).
      if (aAction !== GIN_SEGMENT_INSERT)
        throw redoCorruption(rec, blockId, `action ${aAction} on segment ${aSegno} past the last segment`);
      segsize = 0;
    }

    // About to modify the page: keep the unprocessed tail in the copy.
    if (!copied && segptr !== segmentend) {
      const tailSize = segmentend - segptr;
      tailCopy.set(page.subarray(segptr, segmentend), 0);
      src = tailCopy;
      segptr = 0;
      segmentend = tailSize;
      copied = true;
    }

    if (aAction === GIN_SEGMENT_DELETE) {
      segptr += segsize;
      segno++;
    } else {
      // INSERT or REPLACE: the new segment goes in place.
      if (writePtr + newsegSize > at) throw redoCorruption(rec, blockId, "recompressed leaf overflows the page");
      page.set(newseg.subarray(newsegAt, newsegAt + newsegSize), writePtr);
      writePtr += newsegSize;
      if (aAction === GIN_SEGMENT_REPLACE) {
        segptr += segsize;
        segno++;
      }
    }
    oldseg = segptr;
  }

  // The rest of the unmodified segments, if rewriting began.
  if (oldseg !== segmentend && copied) {
    const rest = segmentend - oldseg;
    if (writePtr + rest > at) throw redoCorruption(rec, blockId, "recompressed leaf overflows the page");
    page.set(tailCopy.subarray(oldseg, segmentend), writePtr);
    writePtr += rest;
  }
  setDataSize(rec, blockId, page, writePtr - DATA_START);
}

function checkedSegmentSize(rec: DecodedRecord, blockId: number, b: Uint8Array, at: number, end: number): number {
  if (at + 8 > end) throw redoCorruption(rec, blockId, `posting list segment header at ${at} runs past ${end}`);
  const size = postingListSize(b, at);
  if (at + size > end) throw redoCorruption(rec, blockId, `posting list segment of ${size} bytes at ${at} runs past ${end}`);
  return size;
}

// ---- redo -------------------------------------------------------------------------------------

/** ginRedoClearIncompleteSplit. */
function clearIncompleteSplit(rec: DecodedRecord, blk: DecodedBlock, page: Uint8Array): void {
  if (!readForRedo(rec, blk, page)) return;
  const at = opaqueAt(rec, blk.id, page) + OPAQUE_FLAGS;
  writeU16LE(page, at, readU16LE(page, at) & ~GIN_INCOMPLETE_SPLIT);
  setPageLsn(page, rec.endLsn);
}

function redoGin(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const blk = redoBlock(rec, blockId);
  const info = rec.info & XLR_RMGR_INFO_MASK;
  const lsn = rec.endLsn;
  switch (info) {
    case XLOG_GIN_CREATE_PTREE: {
      const xl = decodeGinCreatePostingTree(rec);
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      readForRedo(rec, blk, page);
      ginInitPage(page, GIN_DATA | GIN_LEAF | GIN_COMPRESSED);
      const size = xl.postingList.length;
      setDataSize(rec, blockId, page, size);
      page.set(xl.postingList, DATA_START);
      setPageLsn(page, lsn);
      return;
    }
    case XLOG_GIN_INSERT:
      redoInsert(rec, blk, page);
      return;
    case XLOG_GIN_SPLIT: {
      const xl = decodeGinSplit(rec);
      if (blockId === 3) {
        if (xl.isLeaf) throw unexpectedBlock(rec, blockId);
        clearIncompleteSplit(rec, blk, page);
        return;
      }
      if (blockId > 3 || (blockId === 2 && !xl.isRoot)) throw unexpectedBlock(rec, blockId);
      if (readForRedo(rec, blk, page)) {
        const which = blockId === 0 ? "left" : blockId === 1 ? "right" : "root";
        throw redoCorruption(rec, blockId, `GIN split record did not contain a full-page image of ${which} page`);
      }
      return;
    }
    case XLOG_GIN_VACUUM_PAGE:
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      if (readForRedo(rec, blk, page)) throw redoCorruption(rec, blockId, "replay of gin entry tree page vacuum did not restore the page");
      return;
    case XLOG_GIN_VACUUM_DATA_LEAF_PAGE:
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      if (!readForRedo(rec, blk, page)) return;
      ginRedoRecompress(rec, blockId, page, decodeGinRecompress(rec, 0));
      setPageLsn(page, lsn);
      return;
    case XLOG_GIN_DELETE_PAGE: {
      const xl = decodeGinDeletePage(rec);
      if (blockId > 2) throw unexpectedBlock(rec, blockId);
      if (!readForRedo(rec, blk, page)) return;
      const at = opaqueAt(rec, blockId, page);
      if (blockId === 0) {
        writeU16LE(page, at + OPAQUE_FLAGS, readU16LE(page, at + OPAQUE_FLAGS) | GIN_DELETED);
        setPdPruneXid(page, xl.deleteXid);
      } else if (blockId === 1) {
        deletePostingItem(rec, blockId, page, xl.parentOffset);
      } else {
        writeU32LE(page, at + OPAQUE_RIGHTLINK, xl.rightLink);
      }
      setPageLsn(page, lsn);
      return;
    }
    case XLOG_GIN_UPDATE_META_PAGE: {
      const xl = decodeGinUpdateMeta(rec);
      if (blockId === 0) {
        // Rebuilt unconditionally (torn-page safe), even over a restored image.
        readForRedo(rec, blk, page);
        ginRestoreMetapage(page, xl.metadata);
        setPageLsn(page, lsn);
        return;
      }
      if (blockId !== 1) throw unexpectedBlock(rec, blockId);
      if (xl.ntuples > 0) {
        // Tuples appended to the pending list's tail page.
        if (!readForRedo(rec, blk, page)) return;
        const run = decodeGinTupleRun(rec, 1, xl.ntuples);
        const off = pageIsEmpty(page) ? FirstOffsetNumber : pageGetMaxOffsetNumber(page) + 1;
        addTupleRun(rec, blockId, page, run.data, run.starts, off);
        const at = opaqueAt(rec, blockId, page) + OPAQUE_MAXOFF;
        writeU16LE(page, at, readU16LE(page, at) + 1);
        setPageLsn(page, lsn);
      } else if (xl.prevTail !== INVALID_BLOCK_NUMBER) {
        // A new sublist chained after the old tail.
        if (!readForRedo(rec, blk, page)) return;
        writeU32LE(page, opaqueAt(rec, blockId, page) + OPAQUE_RIGHTLINK, xl.newRightlink);
        setPageLsn(page, lsn);
      } else {
        throw unexpectedBlock(rec, blockId);
      }
      return;
    }
    case XLOG_GIN_INSERT_LISTPAGE: {
      const xl = decodeGinInsertListPage(rec);
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      readForRedo(rec, blk, page);
      const at = ginInitPage(page, GIN_LIST);
      writeU32LE(page, at + OPAQUE_RIGHTLINK, xl.rightlink);
      if (xl.rightlink === INVALID_BLOCK_NUMBER) {
        // The tail of a sublist holds whole rows.
        writeU16LE(page, at + OPAQUE_FLAGS, GIN_LIST | GIN_LIST_FULLROW);
        writeU16LE(page, at + OPAQUE_MAXOFF, 1);
      }
      const run = decodeGinTupleRun(rec, 0, xl.ntuples);
      addTupleRun(rec, blockId, page, run.data, run.starts, FirstOffsetNumber);
      setPageLsn(page, lsn);
      return;
    }
    case XLOG_GIN_DELETE_LISTPAGE: {
      const xl = decodeGinDeleteListPages(rec);
      if (blockId === 0) {
        readForRedo(rec, blk, page);
        ginRestoreMetapage(page, xl.metadata);
      } else if (blockId <= xl.ndeleted) {
        // Deleted pending-list pages are re-initialized empty, not imaged.
        readForRedo(rec, blk, page);
        ginInitPage(page, GIN_DELETED);
      } else {
        throw unexpectedBlock(rec, blockId);
      }
      setPageLsn(page, lsn);
      return;
    }
    default:
      throw redoUnsupported(rec, `gin_redo: unknown op code 0x${info.toString(16)}`);
  }
}

function redoInsert(rec: DecodedRecord, blk: DecodedBlock, page: Uint8Array): void {
  const xl = decodeGinInsert(rec);
  const blockId = blk.id;
  if (blockId === 1) {
    // The child whose split this downlink insertion finishes.
    if (xl.isLeaf) throw unexpectedBlock(rec, blockId);
    clearIncompleteSplit(rec, blk, page);
    return;
  }
  if (blockId !== 0) throw unexpectedBlock(rec, blockId);
  if (!readForRedo(rec, blk, page)) return;
  const at = opaqueAt(rec, blockId, page);
  const isLeafPage = (readU16LE(page, at + OPAQUE_FLAGS) & GIN_LEAF) !== 0;
  if (xl.isData) {
    if (xl.isLeaf) {
      if (!isLeafPage) throw redoCorruption(rec, blockId, "leaf insert on a non-leaf posting-tree page");
      ginRedoRecompress(rec, blockId, page, decodeGinRecompress(rec, 0));
    } else {
      if (isLeafPage) throw redoCorruption(rec, blockId, "downlink insert on a posting-tree leaf");
      const data = decodeGinInsertDataInternal(rec);
      const maxoff = readU16LE(page, at + OPAQUE_MAXOFF);
      if (data.offset < FirstOffsetNumber || data.offset > maxoff + 1)
        throw redoCorruption(rec, blockId, `posting item offset ${data.offset} outside [1, ${maxoff + 1}]`);
      if (DATA_START + (maxoff + 1) * SIZE_OF_POSTING_ITEM > at)
        throw redoCorruption(rec, blockId, `no room for posting item ${maxoff + 1}`);
      // The existing downlink now points at the split's right page.
      setBlockId(page, DATA_START + (data.offset - 1) * SIZE_OF_POSTING_ITEM, xl.rightChildBlkno);
      addPostingItem(rec, blockId, page, at, data.newItem, data.offset);
    }
  } else {
    const data = decodeGinInsertEntry(rec);
    const off = data.offset;
    if (xl.rightChildBlkno !== INVALID_BLOCK_NUMBER) {
      // GinSetDownlink on the existing tuple: t_tid := (right child, InvalidOffsetNumber).
      checkTupleOffset(rec, blockId, page, off);
      const item = itemIdOff(page, off);
      setBlockId(page, item, xl.rightChildBlkno);
      writeU16LE(page, item + 4, InvalidOffsetNumber);
    }
    if (data.isDelete) {
      if (!isLeafPage) throw redoCorruption(rec, blockId, "entry replacement on a non-leaf page");
      checkTupleOffset(rec, blockId, page, off);
      pageIndexTupleDelete(page, off);
    }
    if (pageAddItemExtended(page, data.tuple, off, 0) === InvalidOffsetNumber)
      throw redoCorruption(rec, blockId, "failed to add item to index page");
  }
  setPageLsn(page, rec.endLsn);
}

function checkTupleOffset(rec: DecodedRecord, blockId: number, page: Uint8Array, off: number): void {
  const maxoff = pageGetMaxOffsetNumber(page);
  if (off < FirstOffsetNumber || off > maxoff) throw redoCorruption(rec, blockId, `tuple offset ${off} outside [1, ${maxoff}]`);
  if (itemIdOff(page, off) + Math.max(itemIdLen(page, off), 6) > BLCKSZ)
    throw redoCorruption(rec, blockId, `line pointer ${off} reaches past the page`);
}

// ---- mask -------------------------------------------------------------------------------------

/** gin_mask. */
function maskGin(page: Uint8Array, _blkno: number): void {
  maskPageLsnAndChecksum(page);
  const special = pdSpecial(page);
  const flags = special + SIZE_OF_GIN_PAGE_OPAQUE <= BLCKSZ ? readU16LE(page, special + OPAQUE_FLAGS) : 0;
  maskPageHintBits(page);
  // A deleted page is re-initialized empty on replay: hide all of it. Otherwise mask the hole
  // when pd_lower looks set (pre-9.4 data pages left it at the header).
  if ((flags & GIN_DELETED) !== 0) maskPageContent(page);
  else if (pdLower(page) > SIZE_OF_PAGE_HEADER) maskUnusedSpace(page);
}

export const ginRedo: RmgrRedo = {
  rmid: RM_GIN_ID,
  name: "gin",
  redo: redoGin,
  mask: maskGin,
};
