/**
 * BRIN redo and mask: PostgreSQL 15's brin_redo (src/backend/access/brin/brin_xlog.c) one
 * block reference at a time, with the helpers it uses from brin_pageops.c (brin_page_init,
 * brin_metapage_init) and brin_revmap.c (brinSetHeapBlockItemptr), and brin_mask.
 *
 *   Special space (the last 8 bytes): u16 vector[4], flags = vector[2] (BRIN_EVACUATE_PAGE 1),
 *   page type = vector[3] (META 0xF091, REVMAP 0xF092, REGULAR 0xF093).
 *   Metapage contents @24: brinMagic u32 = 0xA8109CFA, brinVersion u32, pagesPerRange u32,
 *   lastRevmapPage u32; pd_lower just past them (40).
 *   Revmap page contents @24: ItemPointerData[1360] (bi_hi u16, bi_lo u16, posid u16), entry
 *   (heapBlk / pagesPerRange) % 1360 for a range.
 *
 *   CREATE_INDEX     block 0: metapage initialized
 *   INSERT           block 0: tuple added at offnum (PAI_OVERWRITE; page initialized first with
 *                    XLOG_BRIN_INIT_PAGE); block 1: revmap entry := (block 0's blkno, offnum)
 *   UPDATE           as INSERT, plus block 2: old tuple removed (PageIndexTupleDeleteNoCompact)
 *   SAMEPAGE_UPDATE  block 0: PageIndexTupleOverwrite at offnum
 *   REVMAP_EXTEND    block 0: metapage lastRevmapPage := targetBlk, pd_lower reset;
 *                    block 1: initialized as an empty revmap page (always: it is will-init)
 *   DESUMMARIZE      block 0: revmap entry invalidated; block 1: the leftover tuple removed
 * A block restored from an APPLY image gets nothing more. No FSM updates (PostgreSQL's redo
 * makes none either).
 */
import { assert } from "../../types/assert.js";
import type { DecodedBlock, DecodedRecord } from "../wal/record.js";
import {
  type BrinInsert,
  decodeBrinCreateIdx,
  decodeBrinDesummarize,
  decodeBrinInsert,
  decodeBrinRevmapExtend,
  decodeBrinSamepageUpdate,
  decodeBrinUpdate,
  XLOG_BRIN_CREATE_INDEX,
  XLOG_BRIN_DESUMMARIZE,
  XLOG_BRIN_INIT_PAGE,
  XLOG_BRIN_INSERT,
  XLOG_BRIN_OPMASK,
  XLOG_BRIN_REVMAP_EXTEND,
  XLOG_BRIN_SAMEPAGE_UPDATE,
  XLOG_BRIN_UPDATE,
} from "../wal/records/brin.js";
import { RM_BRIN_ID } from "../wal/rmgr_ids.js";
import { maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./bufmask.js";
import {
  BLCKSZ,
  FirstOffsetNumber,
  InvalidOffsetNumber,
  PAI_OVERWRITE,
  pageAddItemExtended,
  pageGetMaxOffsetNumber,
  pageIndexTupleDeleteNoCompact,
  pageIndexTupleOverwrite,
  pageInit,
  pdLower,
  pdSpecial,
  SIZE_OF_PAGE_HEADER,
  setPageLsn,
  setPdLower,
} from "./bufpage.js";
import { findBlock, redoBlock, redoCorruption, redoUnsupported, type RmgrRedo, unexpectedBlock } from "./rmgr_interface.js";
import { readU16LE, writeU16LE, writeU32LE } from "../../types/bytes.js";

export const SIZE_OF_BRIN_SPECIAL = 8;
export const BRIN_PAGETYPE_META = 0xf091;
export const BRIN_PAGETYPE_REVMAP = 0xf092;
export const BRIN_PAGETYPE_REGULAR = 0xf093;
export const BRIN_EVACUATE_PAGE = 1 << 0;
export const BRIN_META_MAGIC = 0xa8109cfa;
/** REVMAP_PAGE_MAXITEMS: (BLCKSZ - 24 - 8) / sizeof(ItemPointerData). */
export const REVMAP_PAGE_MAXITEMS = Math.floor((BLCKSZ - SIZE_OF_PAGE_HEADER - SIZE_OF_BRIN_SPECIAL) / 6);

const SPECIAL_FLAGS = 4;
const SPECIAL_TYPE = 6;
const META_LAST_REVMAP_PAGE = SIZE_OF_PAGE_HEADER + 12;
const SIZE_OF_BRIN_META = 16;
const INVALID_BLOCK_NUMBER = 0xffff_ffff;

function brinPageType(page: Uint8Array): number {
  return readU16LE(page, pdSpecial(page) + SPECIAL_TYPE);
}

/** brin_page_init. */
function brinPageInit(page: Uint8Array, type: number): void {
  pageInit(page, SIZE_OF_BRIN_SPECIAL);
  writeU16LE(page, pdSpecial(page) + SPECIAL_TYPE, type);
}

/** brin_metapage_init. */
function brinMetapageInit(page: Uint8Array, pagesPerRange: number, version: number): void {
  brinPageInit(page, BRIN_PAGETYPE_META);
  writeU32LE(page, SIZE_OF_PAGE_HEADER, BRIN_META_MAGIC);
  writeU32LE(page, SIZE_OF_PAGE_HEADER + 4, version);
  writeU32LE(page, SIZE_OF_PAGE_HEADER + 8, pagesPerRange);
  // Block 0 is not a valid revmap page: this lets the first one be created with the index.
  writeU32LE(page, META_LAST_REVMAP_PAGE, 0);
  setPdLower(page, SIZE_OF_PAGE_HEADER + SIZE_OF_BRIN_META);
}

/** brinSetHeapBlockItemptr: the revmap entry of heapBlk's range := (blkno, off), or invalid when off is 0. */
function setRevmapEntry(page: Uint8Array, pagesPerRange: number, heapBlk: number, blkno: number, off: number): void {
  const at = SIZE_OF_PAGE_HEADER + 6 * (Math.floor(heapBlk / pagesPerRange) % REVMAP_PAGE_MAXITEMS);
  const valid = off !== InvalidOffsetNumber;
  const b = valid ? blkno : INVALID_BLOCK_NUMBER;
  writeU16LE(page, at, b >>> 16);
  writeU16LE(page, at + 2, b & 0xffff);
  writeU16LE(page, at + 4, valid ? off : InvalidOffsetNumber);
}

function checkOffset(rec: DecodedRecord, bid: number, page: Uint8Array, off: number): void {
  const max = pageGetMaxOffsetNumber(page);
  if (off < FirstOffsetNumber || off > max) throw redoCorruption(rec, bid, `offset ${off} is not on the page (max offset ${max})`);
}

/** brin_xlog_insert_update, blocks 0 (the tuple's page) and 1 (the revmap page). */
function redoInsertUpdate(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array, xl: BrinInsert): void {
  const bid = block.id;
  if (block.id === 0) {
    if ((rec.info & XLOG_BRIN_INIT_PAGE) !== 0) brinPageInit(page, BRIN_PAGETYPE_REGULAR);
    else if (block.applyImage) return;
    const tuple = block.data;
    if (tuple.length === 0) throw redoCorruption(rec, bid, "block 0 carries no BRIN tuple");
    if (pageGetMaxOffsetNumber(page) + 1 < xl.offnum)
      throw redoCorruption(rec, bid, `invalid max offset number: offset ${xl.offnum} on a page of ${pageGetMaxOffsetNumber(page)}`);
    if (pageAddItemExtended(page, tuple, xl.offnum, PAI_OVERWRITE) === InvalidOffsetNumber) {
      throw redoCorruption(rec, bid, `failed to add a BRIN tuple of ${tuple.length} bytes at offset ${xl.offnum}`);
    }
  } else if (block.id === 1) {
    if (block.applyImage) return;
    const regular = findBlock(rec, 0);
    if (regular === undefined) throw redoCorruption(rec, bid, "no block reference 0 for the revmap entry to point at");
    setRevmapEntry(page, xl.pagesPerRange, xl.heapBlk, regular.blkno, xl.offnum);
  } else {
    throw unexpectedBlock(rec, block.id);
  }
  setPageLsn(page, rec.endLsn);
}

function redoUpdate(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  const xl = decodeBrinUpdate(rec);
  if (block.id !== 2) {
    redoInsertUpdate(rec, block, page, xl.insert);
    return;
  }
  if (block.applyImage) return;
  checkOffset(rec, bid, page, xl.oldOffnum);
  pageIndexTupleDeleteNoCompact(page, xl.oldOffnum);
  setPageLsn(page, rec.endLsn);
}

function redoSamepageUpdate(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  if (block.id !== 0) throw unexpectedBlock(rec, block.id);
  if (block.applyImage) return;
  const xl = decodeBrinSamepageUpdate(rec);
  checkOffset(rec, bid, page, xl.offnum);
  if (!pageIndexTupleOverwrite(page, xl.offnum, block.data)) {
    throw redoCorruption(rec, bid, `failed to replace the BRIN tuple at offset ${xl.offnum} with ${block.data.length} bytes`);
  }
  setPageLsn(page, rec.endLsn);
}

function redoRevmapExtend(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const xl = decodeBrinRevmapExtend(rec);
  if (block.id === 0) {
    if (block.applyImage) return;
    writeU32LE(page, META_LAST_REVMAP_PAGE, xl.targetBlk);
    setPageLsn(page, rec.endLsn);
    // Pre-v11 metapages may have had a wrong pd_lower: PostgreSQL resets it here.
    setPdLower(page, SIZE_OF_PAGE_HEADER + SIZE_OF_BRIN_META);
    return;
  }
  if (block.id !== 1) throw unexpectedBlock(rec, block.id);
  brinPageInit(page, BRIN_PAGETYPE_REVMAP);
  setPageLsn(page, rec.endLsn);
}

function redoDesummarize(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  if (block.applyImage) return;
  const xl = decodeBrinDesummarize(rec);
  if (block.id === 0) {
    setRevmapEntry(page, xl.pagesPerRange, xl.heapBlk, INVALID_BLOCK_NUMBER, InvalidOffsetNumber);
  } else if (block.id === 1) {
    checkOffset(rec, bid, page, xl.regOffset);
    pageIndexTupleDeleteNoCompact(page, xl.regOffset);
  } else {
    throw unexpectedBlock(rec, block.id);
  }
  setPageLsn(page, rec.endLsn);
}

function redo(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const block = redoBlock(rec, blockId);
  assert(page.length === BLCKSZ, `redo needs an 8192-byte page, got ${page.length} bytes`);
  const op = rec.info & XLOG_BRIN_OPMASK;
  switch (op) {
    case XLOG_BRIN_CREATE_INDEX: {
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      const xl = decodeBrinCreateIdx(rec);
      brinMetapageInit(page, xl.pagesPerRange, xl.version);
      setPageLsn(page, rec.endLsn);
      return;
    }
    case XLOG_BRIN_INSERT:
      redoInsertUpdate(rec, block, page, decodeBrinInsert(rec));
      return;
    case XLOG_BRIN_UPDATE:
      redoUpdate(rec, block, page);
      return;
    case XLOG_BRIN_SAMEPAGE_UPDATE:
      redoSamepageUpdate(rec, block, page);
      return;
    case XLOG_BRIN_REVMAP_EXTEND:
      redoRevmapExtend(rec, block, page);
      return;
    case XLOG_BRIN_DESUMMARIZE:
      redoDesummarize(rec, block, page);
      return;
    default:
      throw redoUnsupported(rec, `unknown brin op code 0x${op.toString(16)}`);
  }
}

/** brin_mask. */
function mask(page: Uint8Array, _blkno: number): void {
  maskPageLsnAndChecksum(page);
  maskPageHintBits(page);
  const type = brinPageType(page);
  if (type === BRIN_PAGETYPE_REGULAR || (type === BRIN_PAGETYPE_META && pdLower(page) > SIZE_OF_PAGE_HEADER)) maskUnusedSpace(page);
  // BRIN_EVACUATE_PAGE is not WAL-logged.
  const f = pdSpecial(page) + SPECIAL_FLAGS;
  writeU16LE(page, f, readU16LE(page, f) & ~BRIN_EVACUATE_PAGE);
}

export const brinRedo: RmgrRedo = { rmid: RM_BRIN_ID, name: "brin", redo, mask };
