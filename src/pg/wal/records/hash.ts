/**
 * Typed decoders of the Hash rmgr's WAL records (PostgreSQL 15 src/include/access/hash_xlog.h).
 * Main data structs are read at their C offsets (little-endian, C alignment, sizes as the
 * SizeOfHash* macros register them, i.e. without trailing padding):
 *
 *   info  record               main data                                          blocks (data)
 *   0x00  INIT_META_PAGE       num_tuples f64 @0, procid u32 @8, ffactor u16 @12  0 meta (will_init)
 *   0x10  INIT_BITMAP_PAGE     bmsize u16                                         0 bitmap (will_init), 1 meta
 *   0x20  INSERT               offnum u16                                         0 page (tuple), 1 meta
 *   0x30  ADD_OVFL_PAGE        bmsize u16 @0, bmpage_found u8 @2                  0 new ovfl (will_init; bucket u32),
 *                                                                                 1 left, [2 bitmap (bit u32)],
 *                                                                                 [3 new bitmap (will_init)], 4 meta (firstfree u32)
 *   0x40  SPLIT_ALLOCATE_PAGE  new_bucket u32 @0, old_flag u16 @4,                0 old bucket, 1 new bucket (will_init),
 *                              new_flag u16 @6, flags u8 @8                       2 meta ([lowmask, highmask] [ovflpoint, ovflpages])
 *   0x50  SPLIT_PAGE           -                                                  0 page (always a full-page image)
 *   0x60  SPLIT_COMPLETE       old_flag u16 @0, new_flag u16 @2                   0 old bucket, 1 new bucket
 *   0x70  MOVE_PAGE_CONTENTS   ntups u16 @0, is_prim_bucket_same_wrt u8 @2        [0 bucket (lock only)], 1 write page
 *                                                                                 (offsets u16 × ntups, tuples), 2 read page (offsets)
 *   0x80  SQUEEZE_PAGE         prevblkno u32 @0, nextblkno u32 @4, ntups u16 @8,  [0 bucket], 1 write page (as MOVE),
 *                              is_prim_bucket_same_wrt u8 @10,                    2 freed ovfl, [3 prev], [4 next],
 *                              is_prev_bucket_same_wrt u8 @11                     5 bitmap (bit u32), [6 meta (firstfree u32)]
 *   0x90  DELETE               clear_dead_marking u8 @0, is_primary_bucket_page u8 @1   [0 bucket], 1 page (offsets)
 *   0xA0  SPLIT_CLEANUP        -                                                  0 primary bucket page
 *   0xB0  UPDATE_META_PAGE     ntuples f64                                        0 meta
 *   0xC0  VACUUM_ONE_PAGE      latestRemovedXid u32 @0, ntuples i32 @4,           0 page, 1 meta
 *                              offsets u16 × ntuples @8
 *
 * Index tuples in a tuple list are IndexTupleData (t_tid 6 bytes, t_info u16 whose low 13
 * bits are the size), each taking MAXALIGN(size) bytes of the block data.
 *
 * Every length is checked before it is read; a short or inconsistent record is a
 * CorruptionError naming the record's LSN, rmgr and info (recordCorruption).
 */
import { MAXIMUM_ALIGNOF } from "../../consts.js";
import type { DecodedRecord } from "../record.js";
import { expectInfo, needMain, recordCorruption, requireBlock } from "./record_access.js";
import { readU16LE, readU32LE } from "../../../types/bytes.js";

export const XLOG_HASH_INIT_META_PAGE = 0x00;
export const XLOG_HASH_INIT_BITMAP_PAGE = 0x10;
export const XLOG_HASH_INSERT = 0x20;
export const XLOG_HASH_ADD_OVFL_PAGE = 0x30;
export const XLOG_HASH_SPLIT_ALLOCATE_PAGE = 0x40;
export const XLOG_HASH_SPLIT_PAGE = 0x50;
export const XLOG_HASH_SPLIT_COMPLETE = 0x60;
export const XLOG_HASH_MOVE_PAGE_CONTENTS = 0x70;
export const XLOG_HASH_SQUEEZE_PAGE = 0x80;
export const XLOG_HASH_DELETE = 0x90;
export const XLOG_HASH_SPLIT_CLEANUP = 0xa0;
export const XLOG_HASH_UPDATE_META_PAGE = 0xb0;
export const XLOG_HASH_VACUUM_ONE_PAGE = 0xc0;

/** xl_hash_split_allocate_page.flags */
export const XLH_SPLIT_META_UPDATE_MASKS = 1 << 0;
export const XLH_SPLIT_META_UPDATE_SPLITPOINT = 1 << 1;

/** HashPageOpaqueData.hasho_flag (hash.h) */
export const LH_UNUSED_PAGE = 0;
export const LH_OVERFLOW_PAGE = 1 << 0;
export const LH_BUCKET_PAGE = 1 << 1;
export const LH_BITMAP_PAGE = 1 << 2;
export const LH_META_PAGE = 1 << 3;
export const LH_BUCKET_BEING_POPULATED = 1 << 4;
export const LH_BUCKET_BEING_SPLIT = 1 << 5;
export const LH_BUCKET_NEEDS_SPLIT_CLEANUP = 1 << 6;
export const LH_PAGE_HAS_DEAD_TUPLES = 1 << 7;
export const LH_PAGE_TYPE = LH_OVERFLOW_PAGE | LH_BUCKET_PAGE | LH_BITMAP_PAGE | LH_META_PAGE;

export const SIZE_OF_HASH_INIT_META_PAGE = 14;
export const SIZE_OF_HASH_INIT_BITMAP_PAGE = 2;
export const SIZE_OF_HASH_INSERT = 2;
export const SIZE_OF_HASH_ADD_OVFL_PAGE = 3;
export const SIZE_OF_HASH_SPLIT_ALLOC_PAGE = 9;
export const SIZE_OF_HASH_SPLIT_COMPLETE = 4;
export const SIZE_OF_HASH_MOVE_PAGE_CONTENTS = 3;
export const SIZE_OF_HASH_SQUEEZE_PAGE = 12;
export const SIZE_OF_HASH_DELETE = 2;
export const SIZE_OF_HASH_UPDATE_META_PAGE = 8;
export const SIZE_OF_HASH_VACUUM_ONE_PAGE = 8;

/** IndexTupleData: t_info's size bits, and the header every index tuple has. */
const INDEX_SIZE_MASK = 0x1fff;
const SIZE_OF_INDEX_TUPLE_DATA = 8;
const T_INFO_OFFSET = 6;
/** MaxOffsetNumber (BLCKSZ / sizeof(ItemIdData)): no offset array is longer. */
const MAX_OFFSET_NUMBER = 2048;

export interface XlHashInitMetaPage {
  /** The 8 bytes of num_tuples as logged (the redo ignores the value: the metapage starts at 0 tuples). */
  numTuples: number;
  procid: number;
  ffactor: number;
}

export interface XlHashInitBitmapPage {
  bmsize: number;
}

export interface XlHashInsert {
  offnum: number;
}

export interface XlHashAddOvflPage {
  bmsize: number;
  bmpageFound: boolean;
}

export interface XlHashSplitAllocatePage {
  newBucket: number;
  oldBucketFlag: number;
  newBucketFlag: number;
  flags: number;
}

/** Block 2 data of SPLIT_ALLOCATE_PAGE: which metapage fields the split changed. */
export interface HashSplitMetaUpdate {
  hasMasks: boolean;
  lowmask: number;
  highmask: number;
  hasSplitpoint: boolean;
  ovflpoint: number;
  ovflpages: number;
}

export interface XlHashSplitComplete {
  oldBucketFlag: number;
  newBucketFlag: number;
}

export interface XlHashMovePageContents {
  ntups: number;
  isPrimBucketSameWrt: boolean;
}

export interface XlHashSqueezePage {
  prevblkno: number;
  nextblkno: number;
  ntups: number;
  isPrimBucketSameWrt: boolean;
  isPrevBucketSameWrt: boolean;
}

export interface XlHashDelete {
  clearDeadMarking: boolean;
  isPrimaryBucketPage: boolean;
}

export interface XlHashUpdateMetaPage {
  /** The logged double's 8 bytes (a subarray of the record): copied, never reinterpreted. */
  ntuplesBytes: Uint8Array;
}

export interface XlHashVacuumOnePage {
  latestRemovedXid: number;
  ntuples: number;
  /** The offsets to delete (empty when the record carries none, as PostgreSQL checks by length). */
  offsets: Uint16Array;
}

/**
 * The tuples MOVE_PAGE_CONTENTS and SQUEEZE_PAGE add to their write page: `offsets[i]` is
 * where tuple i goes; its bytes are data[starts[i], starts[i] + sizes[i]) (sizes MAXALIGNed,
 * as PostgreSQL adds them).
 */
export interface HashTupleList {
  offsets: Uint16Array;
  starts: Int32Array;
  sizes: Int32Array;
  data: Uint8Array;
}

/** A block's data that must be exactly one u32 (bucket number, bitmap bit, firstfree). */
export function hashBlockU32(rec: DecodedRecord, blockId: number): number {
  const d = requireBlock(rec, blockId).data;
  if (d.length !== 4) throw recordCorruption(rec, `block ${blockId} data is ${d.length} bytes, expected a u32`);
  return readU32LE(d, 0);
}

/** An OffsetNumber array of `byteLength` bytes at `bytes[start]`, copied (the source may be unaligned). */
function offsetArray(rec: DecodedRecord, bytes: Uint8Array, start: number, count: number, what: string): Uint16Array {
  if (count > MAX_OFFSET_NUMBER) throw recordCorruption(rec, `${what}: ${count} offsets exceed MaxOffsetNumber`);
  if (start + 2 * count > bytes.length)
    throw recordCorruption(rec, `${what}: ${count} offsets need ${2 * count} bytes, ${bytes.length - start} present`);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = readU16LE(bytes, start + 2 * i);
  return out;
}

/** A block's data that is an array of OffsetNumbers (DELETE block 1, MOVE_PAGE_CONTENTS block 2). */
export function hashBlockOffsets(rec: DecodedRecord, blockId: number): Uint16Array {
  const d = requireBlock(rec, blockId).data;
  if ((d.length & 1) !== 0) throw recordCorruption(rec, `block ${blockId} offset array has odd length ${d.length}`);
  return offsetArray(rec, d, 0, d.length >>> 1, `block ${blockId}`);
}

export function decodeHashInitMetaPage(rec: DecodedRecord): XlHashInitMetaPage {
  expectInfo(rec, XLOG_HASH_INIT_META_PAGE);
  const d = needMain(rec, SIZE_OF_HASH_INIT_META_PAGE, "xl_hash_init_meta_page");
  const dv = new DataView(d.buffer, d.byteOffset, d.length);
  return { numTuples: dv.getFloat64(0, true), procid: readU32LE(d, 8), ffactor: readU16LE(d, 12) };
}

export function decodeHashInitBitmapPage(rec: DecodedRecord): XlHashInitBitmapPage {
  expectInfo(rec, XLOG_HASH_INIT_BITMAP_PAGE);
  const d = needMain(rec, SIZE_OF_HASH_INIT_BITMAP_PAGE, "xl_hash_init_bitmap_page");
  return { bmsize: readU16LE(d, 0) };
}

export function decodeHashInsert(rec: DecodedRecord): XlHashInsert {
  expectInfo(rec, XLOG_HASH_INSERT);
  const d = needMain(rec, SIZE_OF_HASH_INSERT, "xl_hash_insert");
  return { offnum: readU16LE(d, 0) };
}

/** INSERT block 0: the index tuple, whose t_info size must match the data length. */
export function hashInsertTuple(rec: DecodedRecord): Uint8Array {
  const d = requireBlock(rec, 0).data;
  checkIndexTuple(rec, d, 0, d.length, "block 0 tuple");
  return d;
}

export function decodeHashAddOvflPage(rec: DecodedRecord): XlHashAddOvflPage {
  expectInfo(rec, XLOG_HASH_ADD_OVFL_PAGE);
  const d = needMain(rec, SIZE_OF_HASH_ADD_OVFL_PAGE, "xl_hash_add_ovfl_page");
  return { bmsize: readU16LE(d, 0), bmpageFound: d[2] !== 0 };
}

export function decodeHashSplitAllocatePage(rec: DecodedRecord): XlHashSplitAllocatePage {
  expectInfo(rec, XLOG_HASH_SPLIT_ALLOCATE_PAGE);
  const d = needMain(rec, SIZE_OF_HASH_SPLIT_ALLOC_PAGE, "xl_hash_split_allocate_page");
  return { newBucket: readU32LE(d, 0), oldBucketFlag: readU16LE(d, 4), newBucketFlag: readU16LE(d, 6), flags: d[8]! };
}

/** SPLIT_ALLOCATE_PAGE block 2: the masks and/or the splitpoint, as `flags` announces them. */
export function decodeHashSplitMetaUpdate(rec: DecodedRecord, flags: number): HashSplitMetaUpdate {
  const d = requireBlock(rec, 2).data;
  const hasMasks = (flags & XLH_SPLIT_META_UPDATE_MASKS) !== 0;
  const hasSplitpoint = (flags & XLH_SPLIT_META_UPDATE_SPLITPOINT) !== 0;
  const want = (hasMasks ? 8 : 0) + (hasSplitpoint ? 8 : 0);
  if (d.length !== want) throw recordCorruption(rec, `block 2 data is ${d.length} bytes, flags 0x${flags.toString(16)} announce ${want}`);
  const at = hasMasks ? 8 : 0;
  return {
    hasMasks,
    lowmask: hasMasks ? readU32LE(d, 0) : 0,
    highmask: hasMasks ? readU32LE(d, 4) : 0,
    hasSplitpoint,
    ovflpoint: hasSplitpoint ? readU32LE(d, at) : 0,
    ovflpages: hasSplitpoint ? readU32LE(d, at + 4) : 0,
  };
}

export function decodeHashSplitComplete(rec: DecodedRecord): XlHashSplitComplete {
  expectInfo(rec, XLOG_HASH_SPLIT_COMPLETE);
  const d = needMain(rec, SIZE_OF_HASH_SPLIT_COMPLETE, "xl_hash_split_complete");
  return { oldBucketFlag: readU16LE(d, 0), newBucketFlag: readU16LE(d, 2) };
}

export function decodeHashMovePageContents(rec: DecodedRecord): XlHashMovePageContents {
  expectInfo(rec, XLOG_HASH_MOVE_PAGE_CONTENTS);
  const d = needMain(rec, SIZE_OF_HASH_MOVE_PAGE_CONTENTS, "xl_hash_move_page_contents");
  return { ntups: readU16LE(d, 0), isPrimBucketSameWrt: d[2] !== 0 };
}

export function decodeHashSqueezePage(rec: DecodedRecord): XlHashSqueezePage {
  expectInfo(rec, XLOG_HASH_SQUEEZE_PAGE);
  const d = needMain(rec, SIZE_OF_HASH_SQUEEZE_PAGE, "xl_hash_squeeze_page");
  return {
    prevblkno: readU32LE(d, 0),
    nextblkno: readU32LE(d, 4),
    ntups: readU16LE(d, 8),
    isPrimBucketSameWrt: d[10] !== 0,
    isPrevBucketSameWrt: d[11] !== 0,
  };
}

function checkIndexTuple(rec: DecodedRecord, d: Uint8Array, start: number, avail: number, what: string): number {
  if (avail < SIZE_OF_INDEX_TUPLE_DATA) throw recordCorruption(rec, `${what}: ${avail} bytes cannot hold an index tuple header`);
  const size = readU16LE(d, start + T_INFO_OFFSET) & INDEX_SIZE_MASK;
  if (size < SIZE_OF_INDEX_TUPLE_DATA || size > avail)
    throw recordCorruption(rec, `${what}: index tuple size ${size}, ${avail} bytes present`);
  return size;
}

/**
 * Block 1 of MOVE_PAGE_CONTENTS / SQUEEZE_PAGE: `ntups` offsets, then `ntups` tuples of
 * MAXALIGN(size) bytes each, filling the data exactly (PostgreSQL reads tuples until the
 * data ends; a count that disagrees would make it read offsets past the array).
 */
export function decodeHashTupleList(rec: DecodedRecord, blockId: number, ntups: number): HashTupleList {
  const d = requireBlock(rec, blockId).data;
  const offsets = offsetArray(rec, d, 0, ntups, `block ${blockId} tuple offsets`);
  const starts = new Int32Array(ntups);
  const sizes = new Int32Array(ntups);
  let pos = 2 * ntups;
  for (let i = 0; i < ntups; i++) {
    const size = checkIndexTuple(rec, d, pos, d.length - pos, `block ${blockId} tuple ${i}`);
    const aligned = (size + MAXIMUM_ALIGNOF - 1) & ~(MAXIMUM_ALIGNOF - 1);
    if (pos + aligned > d.length) throw recordCorruption(rec, `block ${blockId} tuple ${i}: ${aligned} bytes, ${d.length - pos} present`);
    starts[i] = pos;
    sizes[i] = aligned;
    pos += aligned;
  }
  if (pos !== d.length) throw recordCorruption(rec, `block ${blockId}: ${d.length - pos} bytes after ${ntups} tuples`);
  return { offsets, starts, sizes, data: d };
}

export function decodeHashDelete(rec: DecodedRecord): XlHashDelete {
  expectInfo(rec, XLOG_HASH_DELETE);
  const d = needMain(rec, SIZE_OF_HASH_DELETE, "xl_hash_delete");
  return { clearDeadMarking: d[0] !== 0, isPrimaryBucketPage: d[1] !== 0 };
}

export function decodeHashUpdateMetaPage(rec: DecodedRecord): XlHashUpdateMetaPage {
  expectInfo(rec, XLOG_HASH_UPDATE_META_PAGE);
  const d = needMain(rec, SIZE_OF_HASH_UPDATE_META_PAGE, "xl_hash_update_meta_page");
  return { ntuplesBytes: d.subarray(0, 8) };
}

export function decodeHashVacuumOnePage(rec: DecodedRecord): XlHashVacuumOnePage {
  expectInfo(rec, XLOG_HASH_VACUUM_ONE_PAGE);
  const d = needMain(rec, SIZE_OF_HASH_VACUUM_ONE_PAGE, "xl_hash_vacuum_one_page");
  const ntuples = readU32LE(d, 4) | 0;
  if (ntuples < 0) throw recordCorruption(rec, `negative ntuples ${ntuples}`);
  // PostgreSQL deletes the offsets only when the record is longer than the struct.
  const offsets =
    d.length > SIZE_OF_HASH_VACUUM_ONE_PAGE
      ? offsetArray(rec, d, SIZE_OF_HASH_VACUUM_ONE_PAGE, ntuples, "deleted offsets")
      : new Uint16Array(0);
  return { latestRemovedXid: readU32LE(d, 0), ntuples, offsets };
}
