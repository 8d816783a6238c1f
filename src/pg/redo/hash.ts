/**
 * Native redo of the Hash rmgr: PostgreSQL 15's hash_redo (src/backend/access/hash/hash_xlog.c)
 * and hash_mask, one block reference at a time, with the page helpers they use
 * (_hash_pageinit, _hash_initbuf, _hash_init_metabuffer, _hash_initbitmapbuffer).
 *
 *   Hash page (PageInit with 16 bytes of special space):
 *     special (pd_special = 8176): hasho_prevblkno u32 @0, hasho_nextblkno u32 @4,
 *                                  hasho_bucket u32 @8, hasho_flag u16 @12, hasho_page_id u16 @14
 *     metapage contents @24 (HashMetaPageData, 4544 bytes): magic @0, version @4, ntuples f64 @8,
 *       ffactor u16 @16, bsize @18, bmsize @20, bmshift @22, maxbucket u32 @24, highmask @28,
 *       lowmask @32, ovflpoint @36, firstfree @40, nmaps @44, procid @48,
 *       spares u32[98] @52, mapp u32[1024] @444
 *     bitmap page contents @24: bmsize bytes of u32 words (bit n = word n/32, bit n%32)
 *
 * Per block, as PostgreSQL does: a block with an APPLY image is restored (pd_lsn := end LSN)
 * and, for SPLIT_ALLOCATE_PAGE / SPLIT_COMPLETE, still gets its bucket flags; a will_init
 * block is rebuilt from the record; any other block is redone and gets pd_lsn := end LSN. The
 * primary-bucket block that MOVE_PAGE_CONTENTS, SQUEEZE_PAGE and DELETE register only to take
 * a cleanup lock is left untouched (no LSN either). SPLIT_PAGE carries nothing but an image:
 * a SPLIT_PAGE block without one is corrupt, as PostgreSQL says.
 */
import { RM_HASH_ID, XLR_RMGR_INFO_MASK } from "../wal/rmgr_ids.js";
import type { DecodedBlock, DecodedRecord } from "../wal/record.js";
import {
  decodeHashAddOvflPage,
  decodeHashDelete,
  decodeHashInitBitmapPage,
  decodeHashInitMetaPage,
  decodeHashInsert,
  decodeHashMovePageContents,
  decodeHashSplitAllocatePage,
  decodeHashSplitComplete,
  decodeHashSplitMetaUpdate,
  decodeHashSqueezePage,
  decodeHashTupleList,
  decodeHashUpdateMetaPage,
  decodeHashVacuumOnePage,
  hashBlockOffsets,
  hashBlockU32,
  hashInsertTuple,
  LH_BITMAP_PAGE,
  LH_BUCKET_NEEDS_SPLIT_CLEANUP,
  LH_BUCKET_PAGE,
  LH_META_PAGE,
  LH_OVERFLOW_PAGE,
  LH_PAGE_HAS_DEAD_TUPLES,
  LH_PAGE_TYPE,
  LH_UNUSED_PAGE,
  XLOG_HASH_ADD_OVFL_PAGE,
  XLOG_HASH_DELETE,
  XLOG_HASH_INIT_BITMAP_PAGE,
  XLOG_HASH_INIT_META_PAGE,
  XLOG_HASH_INSERT,
  XLOG_HASH_MOVE_PAGE_CONTENTS,
  XLOG_HASH_SPLIT_ALLOCATE_PAGE,
  XLOG_HASH_SPLIT_CLEANUP,
  XLOG_HASH_SPLIT_COMPLETE,
  XLOG_HASH_SPLIT_PAGE,
  XLOG_HASH_SQUEEZE_PAGE,
  XLOG_HASH_UPDATE_META_PAGE,
  XLOG_HASH_VACUUM_ONE_PAGE,
  type HashTupleList,
} from "../wal/records/hash.js";
import { maskLpFlags, maskPageContent, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./bufmask.js";
import {
  BLCKSZ,
  InvalidOffsetNumber,
  pageAddItemBytes,
  pageAddItemExtended,
  pageIndexMultiDelete,
  pageInit,
  pdSpecial,
  setPageLsn,
  setPdLower,
  SIZE_OF_PAGE_HEADER,
} from "./bufpage.js";
import { findBlock, readForRedo, redoBlock, redoCorruption, redoUnsupported, type RmgrRedo, unexpectedBlock } from "./rmgr_interface.js";
import { readU16LE, readU32LE, writeU16LE, writeU32LE } from "../../types/bytes.js";

const INVALID_BLOCK_NUMBER = 0xffff_ffff;
const INVALID_BUCKET = 0xffff_ffff;
const HASHO_PAGE_ID = 0xff80;
const HASH_MAGIC = 0x6440640;
const HASH_VERSION = 4;

const SIZE_OF_HASH_PAGE_OPAQUE = 16;
const OPAQUE_PREVBLKNO = 0;
const OPAQUE_NEXTBLKNO = 4;
const OPAQUE_BUCKET = 8;
const OPAQUE_FLAG = 12;
const OPAQUE_PAGE_ID = 14;

/** PageGetContents: MAXALIGN(SizeOfPageHeaderData). */
const CONTENTS = SIZE_OF_PAGE_HEADER;
const META_MAGIC = CONTENTS + 0;
const META_VERSION = CONTENTS + 4;
const META_NTUPLES = CONTENTS + 8;
const META_FFACTOR = CONTENTS + 16;
const META_BSIZE = CONTENTS + 18;
const META_BMSIZE = CONTENTS + 20;
const META_BMSHIFT = CONTENTS + 22;
const META_MAXBUCKET = CONTENTS + 24;
const META_HIGHMASK = CONTENTS + 28;
const META_LOWMASK = CONTENTS + 32;
const META_OVFLPOINT = CONTENTS + 36;
const META_FIRSTFREE = CONTENTS + 40;
const META_NMAPS = CONTENTS + 44;
const META_PROCID = CONTENTS + 48;
const META_SPARES = CONTENTS + 52;
/** HASH_MAX_SPLITPOINTS: (32 - 10) * 4 + 10. */
const HASH_MAX_SPLITPOINTS = 98;
const META_MAPP = META_SPARES + 4 * HASH_MAX_SPLITPOINTS;
/** HASH_MAX_BITMAPS: Min(BLCKSZ / 8, 1024). */
const HASH_MAX_BITMAPS = 1024;
/** sizeof(HashMetaPageData): 4540 bytes of fields, padded to the double's alignment. */
const SIZE_OF_HASH_META_PAGE_DATA = 4544;

const HASH_SPLITPOINT_PHASE_BITS = 2;
const HASH_SPLITPOINT_PHASE_MASK = (1 << HASH_SPLITPOINT_PHASE_BITS) - 1;
const HASH_SPLITPOINT_GROUPS_WITH_ONE_PHASE = 10;
const BYTE_TO_BIT = 3;

// ---- page helpers (hashpage.c, hashovfl.c, hashutil.c) ---------------------------------

/** pg_leftmost_one_pos32 (x > 0). */
function leftmostOnePos32(x: number): number {
  return 31 - Math.clz32(x);
}

/** pg_ceil_log2_32. */
function ceilLog2(x: number): number {
  return x < 2 ? 0 : leftmostOnePos32(x - 1) + 1;
}

/** pg_nextpower2_32 (0 < x <= 2^31). */
function nextPower2(x: number): number {
  if ((x & (x - 1)) === 0) return x;
  return 2 ** (leftmostOnePos32(x) + 1);
}

/** _hash_spareindex: the splitpoint phase of bucket count `numBucket` (a uint32). */
function hashSpareIndex(numBucket: number): number {
  const group = ceilLog2(numBucket);
  if (group < HASH_SPLITPOINT_GROUPS_WITH_ONE_PHASE) return group;
  let phases = HASH_SPLITPOINT_GROUPS_WITH_ONE_PHASE + ((group - HASH_SPLITPOINT_GROUPS_WITH_ONE_PHASE) << HASH_SPLITPOINT_PHASE_BITS);
  phases += ((numBucket - 1) >>> (group - (HASH_SPLITPOINT_PHASE_BITS + 1))) & HASH_SPLITPOINT_PHASE_MASK;
  return phases;
}

/** _hash_get_totalbuckets: buckets allocated up to splitpoint phase `phase`. */
function hashTotalBuckets(phase: number): number {
  if (phase < HASH_SPLITPOINT_GROUPS_WITH_ONE_PHASE) return 2 ** phase;
  const group = HASH_SPLITPOINT_GROUPS_WITH_ONE_PHASE + ((phase - HASH_SPLITPOINT_GROUPS_WITH_ONE_PHASE) >>> HASH_SPLITPOINT_PHASE_BITS);
  const before = 2 ** (group - 1);
  const within = ((phase - HASH_SPLITPOINT_GROUPS_WITH_ONE_PHASE) & HASH_SPLITPOINT_PHASE_MASK) + 1;
  return before + Math.floor(before / 4) * within;
}

/** The special space offset, checked to hold a HashPageOpaqueData. */
function opaqueAt(rec: DecodedRecord, blockId: number, page: Uint8Array): number {
  const special = pdSpecial(page);
  if (special < SIZE_OF_PAGE_HEADER || special + SIZE_OF_HASH_PAGE_OPAQUE > BLCKSZ) {
    throw redoCorruption(rec, blockId, `page has pd_special ${special}: no room for the hash page opaque data`);
  }
  return special;
}

function setOpaque(page: Uint8Array, at: number, prev: number, next: number, bucket: number, flag: number): void {
  writeU32LE(page, at + OPAQUE_PREVBLKNO, prev);
  writeU32LE(page, at + OPAQUE_NEXTBLKNO, next);
  writeU32LE(page, at + OPAQUE_BUCKET, bucket);
  writeU16LE(page, at + OPAQUE_FLAG, flag);
  writeU16LE(page, at + OPAQUE_PAGE_ID, HASHO_PAGE_ID);
}

/** _hash_pageinit. */
function hashPageInit(page: Uint8Array): number {
  pageInit(page, SIZE_OF_HASH_PAGE_OPAQUE);
  return BLCKSZ - SIZE_OF_HASH_PAGE_OPAQUE;
}

/** _hash_initbuf(initpage = true). */
function hashInitBuf(page: Uint8Array, maxBucket: number, numBucket: number, flag: number): number {
  const at = hashPageInit(page);
  setOpaque(page, at, maxBucket, INVALID_BLOCK_NUMBER, numBucket, flag);
  return at;
}

/** _hash_initbitmapbuffer(initpage = true): every bit "in use". */
function hashInitBitmapPage(rec: DecodedRecord, blockId: number, page: Uint8Array, bmsize: number): void {
  const at = hashPageInit(page);
  if (CONTENTS + bmsize > at) throw redoCorruption(rec, blockId, `bitmap size ${bmsize} does not fit in the page`);
  setOpaque(page, at, INVALID_BLOCK_NUMBER, INVALID_BLOCK_NUMBER, INVALID_BUCKET, LH_BITMAP_PAGE);
  page.fill(0xff, CONTENTS, CONTENTS + bmsize);
  setPdLower(page, CONTENTS + bmsize);
}

/** _hash_init_metabuffer(initpage = true). */
function hashInitMetaPage(page: Uint8Array, numTuples: number, procid: number, ffactor: number): void {
  // dnumbuckets and its conversion to uint32 follow the C code: double division, truncation.
  const dnumbuckets = numTuples / ffactor;
  let numBuckets: number;
  if (dnumbuckets <= 2.0) numBuckets = 2;
  else if (dnumbuckets >= 0x4000_0000) numBuckets = 0x4000_0000;
  else numBuckets = hashTotalBuckets(hashSpareIndex(Math.trunc(dnumbuckets)));
  const spareIndex = hashSpareIndex(numBuckets);

  const at = hashPageInit(page);
  setOpaque(page, at, INVALID_BLOCK_NUMBER, INVALID_BLOCK_NUMBER, INVALID_BUCKET, LH_META_PAGE);

  writeU32LE(page, META_MAGIC, HASH_MAGIC);
  writeU32LE(page, META_VERSION, HASH_VERSION);
  // ntuples = 0 (a zeroed double), nmaps = 0, spares[] and mapp[] zeroed: PageInit did it.
  writeU16LE(page, META_FFACTOR, ffactor);
  const bsize = BLCKSZ - (CONTENTS + SIZE_OF_HASH_PAGE_OPAQUE);
  writeU16LE(page, META_BSIZE, bsize);
  const lshift = leftmostOnePos32(bsize);
  writeU16LE(page, META_BMSIZE, 1 << lshift);
  writeU16LE(page, META_BMSHIFT, lshift + BYTE_TO_BIT);
  writeU32LE(page, META_PROCID, procid);
  writeU32LE(page, META_MAXBUCKET, numBuckets - 1);
  const highmask = nextPower2(numBuckets + 1) - 1;
  writeU32LE(page, META_HIGHMASK, highmask);
  writeU32LE(page, META_LOWMASK, highmask >>> 1);
  writeU32LE(page, META_SPARES + 4 * spareIndex, 1);
  writeU32LE(page, META_OVFLPOINT, spareIndex);
  writeU32LE(page, META_FIRSTFREE, 0);
  setPdLower(page, CONTENTS + SIZE_OF_HASH_META_PAGE_DATA);
}

/** hashm_spares[ovflpoint]'s offset, checked against the array. */
function sparesAt(rec: DecodedRecord, blockId: number, ovflpoint: number): number {
  if (ovflpoint >= HASH_MAX_SPLITPOINTS)
    throw redoCorruption(rec, blockId, `hashm_ovflpoint ${ovflpoint} beyond ${HASH_MAX_SPLITPOINTS} splitpoints`);
  return META_SPARES + 4 * ovflpoint;
}

/** Appends `blkno` to hashm_mapp[] (hashm_nmaps++). */
function metaAddBitmap(rec: DecodedRecord, blockId: number, page: Uint8Array, blkno: number): void {
  const nmaps = readU32LE(page, META_NMAPS);
  if (nmaps >= HASH_MAX_BITMAPS) throw redoCorruption(rec, blockId, `hashm_nmaps ${nmaps}: no room for another bitmap page`);
  writeU32LE(page, META_MAPP + 4 * nmaps, blkno);
  writeU32LE(page, META_NMAPS, nmaps + 1);
}

/** The byte holding bit `bit` of a bitmap page (little-endian u32 words = plain bit order). */
function bitmapByte(rec: DecodedRecord, blockId: number, page: Uint8Array, bit: number): number {
  const at = CONTENTS + Math.floor(bit / 8);
  if (at >= opaqueAt(rec, blockId, page)) throw redoCorruption(rec, blockId, `bitmap bit ${bit} is beyond the bitmap page`);
  return at;
}

function addTuples(rec: DecodedRecord, blockId: number, page: Uint8Array, list: HashTupleList): void {
  for (let i = 0; i < list.offsets.length; i++) {
    const size = list.sizes[i]!;
    if (pageAddItemBytes(page, list.data, list.starts[i]!, size, list.offsets[i]!, 0) === InvalidOffsetNumber) {
      throw redoCorruption(rec, blockId, `failed to add item to hash index page, size ${size} bytes`);
    }
  }
}

function clearFlag(rec: DecodedRecord, blockId: number, page: Uint8Array, bits: number): void {
  const at = opaqueAt(rec, blockId, page) + OPAQUE_FLAG;
  writeU16LE(page, at, readU16LE(page, at) & ~bits);
}

// ---- redo -------------------------------------------------------------------------------

function redoHash(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const blk = redoBlock(rec, blockId);
  const info = rec.info & XLR_RMGR_INFO_MASK;
  const lsn = rec.endLsn;
  switch (info) {
    case XLOG_HASH_INIT_META_PAGE: {
      const xl = decodeHashInitMetaPage(rec);
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      readForRedo(rec, blk, page);
      hashInitMetaPage(page, xl.numTuples, xl.procid, xl.ffactor);
      setPageLsn(page, lsn);
      return;
    }
    case XLOG_HASH_INIT_BITMAP_PAGE: {
      const xl = decodeHashInitBitmapPage(rec);
      if (blockId === 0) {
        readForRedo(rec, blk, page);
        hashInitBitmapPage(rec, blockId, page, xl.bmsize);
        setPageLsn(page, lsn);
      } else if (blockId === 1) {
        if (!readForRedo(rec, blk, page)) return;
        metaAddBitmap(rec, blockId, page, readU32LE(page, META_MAXBUCKET) + 1 + 1);
        setPageLsn(page, lsn);
      } else {
        throw unexpectedBlock(rec, blockId);
      }
      return;
    }
    case XLOG_HASH_INSERT: {
      const xl = decodeHashInsert(rec);
      if (blockId === 0) {
        if (!readForRedo(rec, blk, page)) return;
        const tuple = hashInsertTuple(rec);
        if (pageAddItemExtended(page, tuple, xl.offnum, 0) === InvalidOffsetNumber)
          throw redoCorruption(rec, blockId, "hash_xlog_insert: failed to add item");
        setPageLsn(page, lsn);
      } else if (blockId === 1) {
        if (!readForRedo(rec, blk, page)) return;
        metaAddTuples(page, 1);
        setPageLsn(page, lsn);
      } else {
        throw unexpectedBlock(rec, blockId);
      }
      return;
    }
    case XLOG_HASH_ADD_OVFL_PAGE:
      redoAddOvflPage(rec, blk, page);
      return;
    case XLOG_HASH_SPLIT_ALLOCATE_PAGE:
      redoSplitAllocatePage(rec, blk, page);
      return;
    case XLOG_HASH_SPLIT_PAGE:
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      if (readForRedo(rec, blk, page)) throw redoCorruption(rec, blockId, "Hash split record did not contain a full-page image");
      return;
    case XLOG_HASH_SPLIT_COMPLETE: {
      const xl = decodeHashSplitComplete(rec);
      if (blockId > 1) throw unexpectedBlock(rec, blockId);
      // Replayed even over a restored image, as PostgreSQL does.
      readForRedo(rec, blk, page);
      writeU16LE(page, opaqueAt(rec, blockId, page) + OPAQUE_FLAG, blockId === 0 ? xl.oldBucketFlag : xl.newBucketFlag);
      setPageLsn(page, lsn);
      return;
    }
    case XLOG_HASH_MOVE_PAGE_CONTENTS: {
      const xl = decodeHashMovePageContents(rec);
      if (blockId === 0) {
        // Registered for its cleanup lock only.
        if (xl.isPrimBucketSameWrt) throw unexpectedBlock(rec, blockId);
        readForRedo(rec, blk, page);
      } else if (blockId === 1) {
        if (!readForRedo(rec, blk, page)) return;
        if (xl.ntups > 0) addTuples(rec, blockId, page, decodeHashTupleList(rec, 1, xl.ntups));
        setPageLsn(page, lsn);
      } else if (blockId === 2) {
        if (!readForRedo(rec, blk, page)) return;
        const offsets = hashBlockOffsets(rec, 2);
        if (offsets.length > 0) pageIndexMultiDelete(page, offsets);
        setPageLsn(page, lsn);
      } else {
        throw unexpectedBlock(rec, blockId);
      }
      return;
    }
    case XLOG_HASH_SQUEEZE_PAGE:
      redoSqueezePage(rec, blk, page);
      return;
    case XLOG_HASH_DELETE: {
      const xl = decodeHashDelete(rec);
      if (blockId === 0) {
        if (xl.isPrimaryBucketPage) throw unexpectedBlock(rec, blockId);
        readForRedo(rec, blk, page);
      } else if (blockId === 1) {
        if (!readForRedo(rec, blk, page)) return;
        const offsets = hashBlockOffsets(rec, 1);
        if (offsets.length > 0) pageIndexMultiDelete(page, offsets);
        if (xl.clearDeadMarking) clearFlag(rec, blockId, page, LH_PAGE_HAS_DEAD_TUPLES);
        setPageLsn(page, lsn);
      } else {
        throw unexpectedBlock(rec, blockId);
      }
      return;
    }
    case XLOG_HASH_SPLIT_CLEANUP:
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      if (!readForRedo(rec, blk, page)) return;
      clearFlag(rec, blockId, page, LH_BUCKET_NEEDS_SPLIT_CLEANUP);
      setPageLsn(page, lsn);
      return;
    case XLOG_HASH_UPDATE_META_PAGE: {
      const xl = decodeHashUpdateMetaPage(rec);
      if (blockId !== 0) throw unexpectedBlock(rec, blockId);
      if (!readForRedo(rec, blk, page)) return;
      page.set(xl.ntuplesBytes, META_NTUPLES);
      setPageLsn(page, lsn);
      return;
    }
    case XLOG_HASH_VACUUM_ONE_PAGE: {
      const xl = decodeHashVacuumOnePage(rec);
      if (blockId === 0) {
        if (!readForRedo(rec, blk, page)) return;
        if (xl.offsets.length > 0) pageIndexMultiDelete(page, xl.offsets);
        clearFlag(rec, blockId, page, LH_PAGE_HAS_DEAD_TUPLES);
        setPageLsn(page, lsn);
      } else if (blockId === 1) {
        if (!readForRedo(rec, blk, page)) return;
        metaAddTuples(page, -xl.ntuples);
        setPageLsn(page, lsn);
      } else {
        throw unexpectedBlock(rec, blockId);
      }
      return;
    }
    default:
      throw redoUnsupported(rec, `hash_redo: unknown op code 0x${info.toString(16)}`);
  }
}

/** hashm_ntuples += delta, in double arithmetic as the C code does. */
function metaAddTuples(page: Uint8Array, delta: number): void {
  const dv = new DataView(page.buffer, page.byteOffset + META_NTUPLES, 8);
  dv.setFloat64(0, dv.getFloat64(0, true) + delta, true);
}

function redoAddOvflPage(rec: DecodedRecord, blk: DecodedBlock, page: Uint8Array): void {
  const xl = decodeHashAddOvflPage(rec);
  const blockId = blk.id;
  const lsn = rec.endLsn;
  switch (blockId) {
    case 0: {
      // The new overflow page, chained after block 1.
      const left = findBlock(rec, 1);
      if (left === undefined) throw redoCorruption(rec, blockId, "no block reference 1 (the page before the new overflow page)");
      const bucket = hashBlockU32(rec, 0);
      readForRedo(rec, blk, page);
      const at = hashInitBuf(page, INVALID_BLOCK_NUMBER, bucket, LH_OVERFLOW_PAGE);
      writeU32LE(page, at + OPAQUE_PREVBLKNO, left.blkno);
      setPageLsn(page, lsn);
      return;
    }
    case 1: {
      const right = findBlock(rec, 0);
      if (right === undefined) throw redoCorruption(rec, blockId, "no block reference 0 (the new overflow page)");
      if (!readForRedo(rec, blk, page)) return;
      writeU32LE(page, opaqueAt(rec, blockId, page) + OPAQUE_NEXTBLKNO, right.blkno);
      setPageLsn(page, lsn);
      return;
    }
    case 2: {
      if (!readForRedo(rec, blk, page)) return;
      const bit = hashBlockU32(rec, 2);
      const at = bitmapByte(rec, blockId, page, bit);
      page[at] = page[at]! | (1 << (bit & 7));
      setPageLsn(page, lsn);
      return;
    }
    case 3:
      readForRedo(rec, blk, page);
      hashInitBitmapPage(rec, blockId, page, xl.bmsize);
      setPageLsn(page, lsn);
      return;
    case 4: {
      if (!readForRedo(rec, blk, page)) return;
      writeU32LE(page, META_FIRSTFREE, hashBlockU32(rec, 4));
      if (!xl.bmpageFound) {
        const spares = sparesAt(rec, blockId, readU32LE(page, META_OVFLPOINT));
        writeU32LE(page, spares, readU32LE(page, spares) + 1);
        const newmap = findBlock(rec, 3);
        if (newmap !== undefined) {
          metaAddBitmap(rec, blockId, page, newmap.blkno);
          writeU32LE(page, spares, readU32LE(page, spares) + 1);
        }
      }
      setPageLsn(page, lsn);
      return;
    }
    default:
      throw unexpectedBlock(rec, blockId);
  }
}

function redoSplitAllocatePage(rec: DecodedRecord, blk: DecodedBlock, page: Uint8Array): void {
  const xl = decodeHashSplitAllocatePage(rec);
  const blockId = blk.id;
  const lsn = rec.endLsn;
  switch (blockId) {
    case 0: {
      // The old bucket: updated even over a restored image, as PostgreSQL does.
      readForRedo(rec, blk, page);
      const at = opaqueAt(rec, blockId, page);
      writeU16LE(page, at + OPAQUE_FLAG, xl.oldBucketFlag);
      writeU32LE(page, at + OPAQUE_PREVBLKNO, xl.newBucket);
      setPageLsn(page, lsn);
      return;
    }
    case 1:
      readForRedo(rec, blk, page);
      hashInitBuf(page, xl.newBucket, xl.newBucket, xl.newBucketFlag);
      setPageLsn(page, lsn);
      return;
    case 2: {
      if (!readForRedo(rec, blk, page)) return;
      const upd = decodeHashSplitMetaUpdate(rec, xl.flags);
      writeU32LE(page, META_MAXBUCKET, xl.newBucket);
      if (upd.hasMasks) {
        writeU32LE(page, META_LOWMASK, upd.lowmask);
        writeU32LE(page, META_HIGHMASK, upd.highmask);
      }
      if (upd.hasSplitpoint) {
        writeU32LE(page, sparesAt(rec, blockId, upd.ovflpoint), upd.ovflpages);
        writeU32LE(page, META_OVFLPOINT, upd.ovflpoint);
      }
      setPageLsn(page, lsn);
      return;
    }
    default:
      throw unexpectedBlock(rec, blockId);
  }
}

function redoSqueezePage(rec: DecodedRecord, blk: DecodedBlock, page: Uint8Array): void {
  const xl = decodeHashSqueezePage(rec);
  const blockId = blk.id;
  const lsn = rec.endLsn;
  switch (blockId) {
    case 0:
      // Registered for its cleanup lock only.
      if (xl.isPrimBucketSameWrt) throw unexpectedBlock(rec, blockId);
      readForRedo(rec, blk, page);
      return;
    case 1:
      if (!readForRedo(rec, blk, page)) return;
      if (xl.ntups > 0) addTuples(rec, blockId, page, decodeHashTupleList(rec, 1, xl.ntups));
      if (xl.isPrevBucketSameWrt) writeU32LE(page, opaqueAt(rec, blockId, page) + OPAQUE_NEXTBLKNO, xl.nextblkno);
      setPageLsn(page, lsn);
      return;
    case 2: {
      // The freed overflow page becomes an unused page.
      if (!readForRedo(rec, blk, page)) return;
      const at = hashPageInit(page);
      setOpaque(page, at, INVALID_BLOCK_NUMBER, INVALID_BLOCK_NUMBER, INVALID_BUCKET, LH_UNUSED_PAGE);
      setPageLsn(page, lsn);
      return;
    }
    case 3:
      // With is_prev_bucket_same_wrt the write page is the previous page: PostgreSQL never
      // registers block 3 then (and would not read it).
      if (xl.isPrevBucketSameWrt) throw unexpectedBlock(rec, blockId);
      if (!readForRedo(rec, blk, page)) return;
      writeU32LE(page, opaqueAt(rec, blockId, page) + OPAQUE_NEXTBLKNO, xl.nextblkno);
      setPageLsn(page, lsn);
      return;
    case 4:
      if (!readForRedo(rec, blk, page)) return;
      writeU32LE(page, opaqueAt(rec, blockId, page) + OPAQUE_PREVBLKNO, xl.prevblkno);
      setPageLsn(page, lsn);
      return;
    case 5: {
      if (!readForRedo(rec, blk, page)) return;
      const bit = hashBlockU32(rec, 5);
      const at = bitmapByte(rec, blockId, page, bit);
      page[at] = page[at]! & ~(1 << (bit & 7));
      setPageLsn(page, lsn);
      return;
    }
    case 6:
      if (!readForRedo(rec, blk, page)) return;
      writeU32LE(page, META_FIRSTFREE, hashBlockU32(rec, 6));
      setPageLsn(page, lsn);
      return;
    default:
      throw unexpectedBlock(rec, blockId);
  }
}

// ---- mask -------------------------------------------------------------------------------

/** hash_mask. */
function maskHash(page: Uint8Array, _blkno: number): void {
  maskPageLsnAndChecksum(page);
  maskPageHintBits(page);
  maskUnusedSpace(page);
  const special = pdSpecial(page);
  if (special + SIZE_OF_HASH_PAGE_OPAQUE > BLCKSZ) return;
  const flagAt = special + OPAQUE_FLAG;
  const pagetype = readU16LE(page, flagAt) & LH_PAGE_TYPE;
  if (pagetype === LH_UNUSED_PAGE) {
    maskPageContent(page);
  } else if (pagetype === LH_BUCKET_PAGE || pagetype === LH_OVERFLOW_PAGE) {
    // LP_DEAD marks are set without WAL (_hash_kill_items).
    maskLpFlags(page);
  }
  // LH_PAGE_HAS_DEAD_TUPLES is a hint that may go unlogged.
  writeU16LE(page, flagAt, readU16LE(page, flagAt) & ~LH_PAGE_HAS_DEAD_TUPLES);
}

export const hashRedo: RmgrRedo = {
  rmid: RM_HASH_ID,
  name: "hash",
  redo: redoHash,
  mask: maskHash,
};
