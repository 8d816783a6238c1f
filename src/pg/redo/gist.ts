/**
 * GiST redo and mask: PostgreSQL 15's gist_redo (src/backend/access/gist/gistxlog.c) one
 * block reference at a time, and gist_mask.
 *
 *   GISTPageOpaqueData, the last 16 bytes of the page (pd_special = BLCKSZ - 16):
 *   +0  nsn     PageXLogRecPtr (xlogid u32, xrecoff u32): an LSN bumped on page splits
 *   +8  rightlink u32 (InvalidBlockNumber = 0xFFFFFFFF)
 *   +12 flags   u16: F_LEAF 1, F_DELETED 2, F_TUPLES_DELETED 4, F_FOLLOW_RIGHT 8, F_HAS_GARBAGE 16
 *   +14 gist_page_id u16 = 0xFF81
 *
 * Per info code and block (what PostgreSQL's redo does, and so what we do):
 *   PAGE_UPDATE  block 0: delete + insert tuples (one-for-one: PageIndexTupleOverwrite);
 *                block 1 (left child of a finished split): NSN := end LSN, F_FOLLOW_RIGHT cleared
 *   DELETE       block 0: PageIndexMultiDelete of the main data's offsets, F_HAS_GARBAGE cleared,
 *                F_TUPLES_DELETED set
 *   PAGE_SPLIT   block 0: the left-child fix-up as above; blocks 1..npage: page re-initialized
 *                and filled, rightlinks chained, NSN := orignsn, F_FOLLOW_RIGHT as the record says
 *   PAGE_DELETE  block 0: marked deleted with its deleteXid; block 1: the parent's downlink removed
 *   PAGE_REUSE, ASSIGN_LSN: no block (hot-standby conflict point / LSN bump only)
 * A block restored from an APPLY image gets nothing more, except the left-child fix-up, which
 * PostgreSQL applies on top of the restored image (its effect is never in the image).
 */
import { assert } from "../../types/assert.js";
import { lsnHi, lsnLo } from "../../types/lsn.js";
import type { DecodedBlock, DecodedRecord } from "../wal/record.js";
import {
  decodeGistDelete,
  decodeGistPageDelete,
  decodeGistPageSplit,
  decodeGistPageUpdate,
  decodeGistPageUpdateBlock,
  decodeGistSplitPageTuples,
  XLOG_GIST_ASSIGN_LSN,
  XLOG_GIST_DELETE,
  XLOG_GIST_OPMASK,
  XLOG_GIST_PAGE_DELETE,
  XLOG_GIST_PAGE_REUSE,
  XLOG_GIST_PAGE_SPLIT,
  XLOG_GIST_PAGE_UPDATE,
} from "../wal/records/gist.js";
import { RM_GIST_ID } from "../wal/rmgr_ids.js";
import {
  BLCKSZ,
  FirstOffsetNumber,
  pageAddItemBytes,
  pageAddItemExtended,
  pageGetMaxOffsetNumber,
  pageIndexMultiDelete,
  pageIndexTupleDelete,
  pageIndexTupleOverwrite,
  pageInit,
  pageIsEmpty,
  pdSpecial,
  SIZE_OF_PAGE_HEADER,
  setPageLsn,
  setPdLower,
} from "./bufpage.js";
import { maskLpFlags, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./bufmask.js";
import { findBlock, redoBlock, redoCorruption, redoUnsupported, type RmgrRedo, unexpectedBlock } from "./rmgr_interface.js";
import { writeU16LE, writeU32LE } from "../../types/bytes.js";

export const SIZE_OF_GIST_OPAQUE = 16;
export const F_LEAF = 1 << 0;
export const F_DELETED = 1 << 1;
export const F_TUPLES_DELETED = 1 << 2;
export const F_FOLLOW_RIGHT = 1 << 3;
export const F_HAS_GARBAGE = 1 << 4;
export const GIST_PAGE_ID = 0xff81;
export const GIST_ROOT_BLKNO = 0;
const INVALID_BLOCK_NUMBER = 0xffff_ffff;
/** GISTDeletedPageContents (a FullTransactionId) sits right after the page header. */
const SIZE_OF_GIST_DELETED_CONTENTS = 8;

const OPAQUE_NSN = 0;
const OPAQUE_RIGHTLINK = 8;
const OPAQUE_FLAGS = 12;
const OPAQUE_PAGE_ID = 14;

/** Byte position of the opaque; GiST pages always have theirs at BLCKSZ - 16. */
function opaqueAt(page: Uint8Array): number {
  return pdSpecial(page);
}
function gistFlags(page: Uint8Array): number {
  const o = opaqueAt(page) + OPAQUE_FLAGS;
  return page[o]! | (page[o + 1]! << 8);
}
function setGistFlags(page: Uint8Array, flags: number): void {
  writeU16LE(page, opaqueAt(page) + OPAQUE_FLAGS, flags);
}
function setNsn(page: Uint8Array, hi: number, lo: number): void {
  const o = opaqueAt(page) + OPAQUE_NSN;
  writeU32LE(page, o, hi);
  writeU32LE(page, o + 4, lo);
}
function setRightlink(page: Uint8Array, blkno: number): void {
  writeU32LE(page, opaqueAt(page) + OPAQUE_RIGHTLINK, blkno);
}

/** gistinitpage: an empty page with a GiST opaque carrying `flags`. */
function gistInitPage(page: Uint8Array, flags: number): void {
  pageInit(page, SIZE_OF_GIST_OPAQUE);
  const o = opaqueAt(page);
  writeU32LE(page, o + OPAQUE_RIGHTLINK, INVALID_BLOCK_NUMBER);
  writeU16LE(page, o + OPAQUE_FLAGS, flags);
  writeU16LE(page, o + OPAQUE_PAGE_ID, GIST_PAGE_ID);
}

/** gistRedoClearFollowRight on a page (restored from an image or not). */
function clearFollowRight(rec: DecodedRecord, page: Uint8Array): void {
  setNsn(page, lsnHi(rec.endLsn), lsnLo(rec.endLsn));
  setGistFlags(page, gistFlags(page) & ~F_FOLLOW_RIGHT);
  setPageLsn(page, rec.endLsn);
}

function addTuple(rec: DecodedRecord, bid: number, page: Uint8Array, tuple: Uint8Array, off: number): void {
  if (pageAddItemExtended(page, tuple, off, 0) === 0) {
    throw redoCorruption(rec, bid, `failed to add item to GiST index page, size ${tuple.length} bytes, at offset ${off}`);
  }
}

function redoPageUpdate(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  const xl = decodeGistPageUpdate(rec);
  const { todelete, tuples } = decodeGistPageUpdateBlock(rec, xl, block.data);
  let first = 0;
  if (xl.ntodelete === 1 && xl.ntoinsert === 1) {
    // One tuple replacing one: overwrite in place, as gistplacetopage did.
    const off = todelete[0]!;
    checkOffset(rec, bid, page, off);
    if (!pageIndexTupleOverwrite(page, off, tuples[0]!)) {
      throw redoCorruption(rec, bid, `failed to add item to GiST index page, size ${tuples[0]!.length} bytes`);
    }
    first = 1;
  } else if (xl.ntodelete > 0) {
    pageIndexMultiDelete(page, todelete);
    if ((gistFlags(page) & F_LEAF) !== 0) setGistFlags(page, gistFlags(page) | F_TUPLES_DELETED);
  }
  let off = pageIsEmpty(page) ? FirstOffsetNumber : pageGetMaxOffsetNumber(page) + 1;
  for (let i = first; i < tuples.length; i++) addTuple(rec, bid, page, tuples[i]!, off++);
  setPageLsn(page, rec.endLsn);
}

function redoDelete(rec: DecodedRecord, page: Uint8Array): void {
  const xl = decodeGistDelete(rec);
  if (xl.todelete.length > 0) pageIndexMultiDelete(page, xl.todelete);
  setGistFlags(page, (gistFlags(page) & ~F_HAS_GARBAGE) | F_TUPLES_DELETED);
  setPageLsn(page, rec.endLsn);
}

function redoSplitPage(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  const xl = decodeGistPageSplit(rec);
  const i = block.id - 1;
  if (i >= xl.npage) throw redoCorruption(rec, bid, `block ${block.id} is beyond the ${xl.npage} split pages`);
  const tuples = decodeGistSplitPageTuples(rec, block.id, block.data);
  // PostgreSQL notes a root split while walking the pages in order: the root can only be first.
  let isRootSplit = false;
  for (let j = 1; j <= block.id; j++) if (findBlock(rec, j)!.blkno === GIST_ROOT_BLKNO) isRootSplit = true;
  const blkno = block.blkno;
  gistInitPage(page, xl.origleaf && blkno !== GIST_ROOT_BLKNO ? F_LEAF : 0);
  const { data, bounds } = tuples;
  for (let t = 0; t + 1 < bounds.length; t++) {
    const len = bounds[t + 1]! - bounds[t]!;
    if (pageAddItemBytes(page, data, bounds[t]!, len, FirstOffsetNumber + t, 0) === 0) {
      throw redoCorruption(rec, bid, `failed to add item to GiST index page, size ${len} bytes, at offset ${FirstOffsetNumber + t}`);
    }
  }
  if (blkno === GIST_ROOT_BLKNO) {
    setRightlink(page, INVALID_BLOCK_NUMBER);
    setNsn(page, xl.orignsnHi, xl.orignsnLo);
    setGistFlags(page, gistFlags(page) & ~F_FOLLOW_RIGHT);
  } else {
    const last = i === xl.npage - 1;
    setRightlink(page, last ? xl.origrlink : findBlock(rec, block.id + 1)!.blkno);
    setNsn(page, xl.orignsnHi, xl.orignsnLo);
    if (!last && !isRootSplit && xl.markfollowright) setGistFlags(page, gistFlags(page) | F_FOLLOW_RIGHT);
    else setGistFlags(page, gistFlags(page) & ~F_FOLLOW_RIGHT);
  }
  setPageLsn(page, rec.endLsn);
}

/** GistPageSetDeleted: the page (empty by now) is marked deleted with the xid that deleted it. */
function redoPageDeleteLeaf(rec: DecodedRecord, page: Uint8Array): void {
  const xl = decodeGistPageDelete(rec);
  setGistFlags(page, gistFlags(page) | F_DELETED);
  setPdLower(page, SIZE_OF_PAGE_HEADER + SIZE_OF_GIST_DELETED_CONTENTS);
  writeU32LE(page, SIZE_OF_PAGE_HEADER, xl.deleteXidLo);
  writeU32LE(page, SIZE_OF_PAGE_HEADER + 4, xl.deleteXidHi);
  setPageLsn(page, rec.endLsn);
}

function redoPageDeleteParent(rec: DecodedRecord, bid: number, page: Uint8Array): void {
  const xl = decodeGistPageDelete(rec);
  checkOffset(rec, bid, page, xl.downlinkOffset);
  pageIndexTupleDelete(page, xl.downlinkOffset);
  setPageLsn(page, rec.endLsn);
}

function checkOffset(rec: DecodedRecord, bid: number, page: Uint8Array, off: number): void {
  const max = pageGetMaxOffsetNumber(page);
  if (off < FirstOffsetNumber || off > max) throw redoCorruption(rec, bid, `offset ${off} is not on the page (max offset ${max})`);
}

function redo(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const block = redoBlock(rec, blockId);
  assert(page.length === BLCKSZ, `redo needs an 8192-byte page, got ${page.length} bytes`);
  const op = rec.info & XLOG_GIST_OPMASK;
  switch (op) {
    case XLOG_GIST_PAGE_UPDATE:
      if (blockId === 1) {
        clearFollowRight(rec, page);
        return;
      }
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      if (!block.applyImage) redoPageUpdate(rec, block, page);
      return;
    case XLOG_GIST_DELETE:
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      if (!block.applyImage) redoDelete(rec, page);
      return;
    case XLOG_GIST_PAGE_SPLIT:
      if (blockId === 0) {
        clearFollowRight(rec, page);
        return;
      }
      // Split pages are registered WILL_INIT: PostgreSQL re-initializes them whatever it read.
      redoSplitPage(rec, block, page);
      return;
    case XLOG_GIST_PAGE_DELETE:
      if (block.applyImage) return;
      if (blockId === 0) {
        redoPageDeleteLeaf(rec, page);
        return;
      }
      if (blockId === 1) {
        redoPageDeleteParent(rec, blockId, page);
        return;
      }
      throw unexpectedBlock(rec, blockId);
    case XLOG_GIST_PAGE_REUSE:
    case XLOG_GIST_ASSIGN_LSN:
      throw unexpectedBlock(rec, blockId);
    default:
      throw redoUnsupported(rec, `unknown gist op code 0x${op.toString(16)}`);
  }
}

/** gist_mask. */
function mask(page: Uint8Array, _blkno: number): void {
  maskPageLsnAndChecksum(page);
  maskPageHintBits(page);
  maskUnusedSpace(page);
  // NSN is a special-purpose LSN; F_FOLLOW_RIGHT on a left child changes after its record
  // is written; F_HAS_GARBAGE is never set by redo.
  setNsn(page, 0, 0);
  setGistFlags(page, gistFlags(page) | F_FOLLOW_RIGHT);
  if ((gistFlags(page) & F_LEAF) !== 0) maskLpFlags(page);
  setGistFlags(page, gistFlags(page) & ~F_HAS_GARBAGE);
}

export const gistRedo: RmgrRedo = { rmid: RM_GIST_ID, name: "gist", redo, mask };
