/**
 * Btree (rmgr 11) WAL records of PostgreSQL 15 (src/include/access/nbtxlog.h): the info
 * codes and typed decoders of each record's main data and block data. Every length is
 * checked before a byte is read; a short or inconsistent record is a CorruptionError naming
 * the LSN, the rmgr and the info code. Decoded objects point into the record (subarrays),
 * nothing is copied.
 *
 *   main data (little-endian, C struct layout)            block data
 *   INSERT_LEAF/UPPER/META/POST  xl_btree_insert (2)      0: [u16 postingoff (POST)] tuple
 *     u16 offnum                                          1: none (UPPER/META: child)
 *                                                         2: xl_btree_metadata (META)
 *   SPLIT_L / SPLIT_R  xl_btree_split (10)                0: [newitem] left high key
 *     u32 level | u16 firstrightoff | u16 newitemoff        (each MAXALIGN(IndexTupleSize))
 *     u16 postingoff                                      1: right page tuples, pd_upper..pd_special
 *                                                         2: none (old right sibling); 3: none (child)
 *   DEDUP  xl_btree_dedup (2): u16 nintervals             0: BTDedupInterval[] {u16 baseoff, u16 nitems}
 *   VACUUM  xl_btree_vacuum (4): u16 ndeleted, nupdated   0: u16 deleted[ndeleted] | u16 updated[nupdated]
 *   DELETE  xl_btree_delete (8): u32 latestRemovedXid,       | xl_btree_update[nupdated]:
 *           u16 ndeleted, u16 nupdated                          {u16 ndeletedtids, u16 tids[ndeletedtids]}
 *   MARK_PAGE_HALFDEAD (20): u16 poffset, pad, u32 leafblk, leftblk, rightblk, topparent
 *   UNLINK_PAGE[_META] (36): u32 leftsib, rightsib, level, pad, u64 safexid (at 16),
 *           u32 leafleftsib, leafrightsib, leaftopparent  4: xl_btree_metadata (_META)
 *   NEWROOT (8): u32 rootblk, level                       0: root tuples (level > 0); 2: metadata
 *   REUSE_PAGE (24): RelFileNode (12), u32 block, u64 latestRemovedFullXid (at 16); no blocks
 *   META_CLEANUP: no main data                            0: xl_btree_metadata
 *
 *   xl_btree_metadata (28): u32 version, root, level, fastroot, fastlevel,
 *                           last_cleanup_num_delpages | bool allequalimage | 3 pad
 *
 * 64-bit transaction ids (FullTransactionId) are kept as two u32 halves (epoch, xid): no BigInt.
 */
import { CorruptionError } from "../../../types/errors.js";
import { lsnToString } from "../../../types/lsn.js";
import type { DecodedRecord } from "../record.js";
import { describeRecordKind, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";
import { readU16LE, readU32LE } from "../../../types/bytes.js";
import { blockById } from "./record_access.js";

export const XLOG_BTREE_INSERT_LEAF = 0x00;
export const XLOG_BTREE_INSERT_UPPER = 0x10;
export const XLOG_BTREE_INSERT_META = 0x20;
export const XLOG_BTREE_SPLIT_L = 0x30;
export const XLOG_BTREE_SPLIT_R = 0x40;
export const XLOG_BTREE_INSERT_POST = 0x50;
export const XLOG_BTREE_DEDUP = 0x60;
export const XLOG_BTREE_DELETE = 0x70;
export const XLOG_BTREE_UNLINK_PAGE = 0x80;
export const XLOG_BTREE_UNLINK_PAGE_META = 0x90;
export const XLOG_BTREE_NEWROOT = 0xa0;
export const XLOG_BTREE_MARK_PAGE_HALFDEAD = 0xb0;
export const XLOG_BTREE_VACUUM = 0xc0;
export const XLOG_BTREE_REUSE_PAGE = 0xd0;
export const XLOG_BTREE_META_CLEANUP = 0xe0;

export const SIZE_OF_BTREE_INSERT = 2;
export const SIZE_OF_BTREE_SPLIT = 10;
export const SIZE_OF_BTREE_DEDUP = 2;
export const SIZE_OF_BTREE_VACUUM = 4;
export const SIZE_OF_BTREE_DELETE = 8;
export const SIZE_OF_BTREE_UPDATE = 2;
export const SIZE_OF_BTREE_MARK_PAGE_HALFDEAD = 20;
export const SIZE_OF_BTREE_UNLINK_PAGE = 36;
export const SIZE_OF_BTREE_NEWROOT = 8;
export const SIZE_OF_BTREE_REUSE_PAGE = 24;
/** sizeof(xl_btree_metadata): 25 bytes of fields, padded to 4-byte alignment. */
export const SIZE_OF_BTREE_METADATA = 28;
export const SIZE_OF_BTREE_DEDUP_INTERVAL = 4;

/** sizeof(IndexTupleData): ItemPointerData t_tid (6) + u16 t_info. */
export const SIZE_OF_INDEX_TUPLE_DATA = 8;
/** IndexTupleSize: the low 13 bits of t_info. */
export const INDEX_SIZE_MASK = 0x1fff;
/** Every on-page index tuple is MAXALIGNed. */
const MAXALIGN_MASK = 7;

/** The btree opcode of a record: xl_info without the XLR_INFO_MASK bits. */
export function btreeInfoCode(rec: DecodedRecord): number {
  return rec.info & XLR_RMGR_INFO_MASK;
}

/**
 * The error of every malformed btree record: names the LSN, rmgr and info, and the block
 * reference (its block number as the error's blkno, -1 when none) whose data is at fault.
 */
export function btreeRecordError(rec: DecodedRecord, what: string, blockId = -1): CorruptionError {
  const blk = blockId < 0 ? undefined : blockById(rec, blockId);
  const info = `0x${rec.info.toString(16).padStart(2, "0")}`;
  const where = blockId < 0 ? "" : `, block reference ${blockId}`;
  return new CorruptionError(
    `WAL record at ${lsnToString(rec.lsn)}`,
    blk === undefined ? -1 : blk.blkno,
    `${describeRecordKind(rec.rmid, rec.info)} (rmgr ${rec.rmid}, info ${info})${where}: ${what}`,
  );
}

function mainDataExactly(rec: DecodedRecord, size: number, struct: string): Uint8Array {
  const d = rec.mainData;
  if (d.length !== size) throw btreeRecordError(rec, `${struct} main data is ${d.length} bytes, expected ${size}`);
  return d;
}

/**
 * The data of block `blockId`, which the record must reference. (A block whose image is
 * applied carries no data; its redo never asks.)
 */
function blockData(rec: DecodedRecord, blockId: number): Uint8Array {
  const b = blockById(rec, blockId);
  if (b === undefined) throw btreeRecordError(rec, "the record has no such block reference", blockId);
  return b.data;
}

/** IndexTupleSize of the tuple at `data[off]`, checked to fit in `data` (8-byte header included). */
function indexTupleSizeAt(rec: DecodedRecord, blockId: number, data: Uint8Array, off: number, what: string): number {
  if (off + SIZE_OF_INDEX_TUPLE_DATA > data.length) {
    throw btreeRecordError(
      rec,
      `${what}: ${data.length - off} bytes left, an index tuple header needs ${SIZE_OF_INDEX_TUPLE_DATA}`,
      blockId,
    );
  }
  const size = readU16LE(data, off + 6) & INDEX_SIZE_MASK;
  if (size < SIZE_OF_INDEX_TUPLE_DATA) throw btreeRecordError(rec, `${what}: index tuple size ${size} is below its header size`, blockId);
  return size;
}

// ---- xl_btree_metadata ---------------------------------------------------------------

export interface XlBtreeMetadata {
  version: number;
  root: number;
  level: number;
  fastroot: number;
  fastlevel: number;
  lastCleanupNumDelpages: number;
  allequalimage: boolean;
}

/** The xl_btree_metadata carried as block data of `blockId` (INSERT_META 2, UNLINK_PAGE_META 4, NEWROOT 2, META_CLEANUP 0). */
export function decodeBtreeMetadata(rec: DecodedRecord, blockId: number): XlBtreeMetadata {
  const d = blockData(rec, blockId);
  if (d.length !== SIZE_OF_BTREE_METADATA) {
    throw btreeRecordError(rec, `xl_btree_metadata is ${d.length} bytes, expected ${SIZE_OF_BTREE_METADATA}`, blockId);
  }
  return {
    version: readU32LE(d, 0),
    root: readU32LE(d, 4),
    level: readU32LE(d, 8),
    fastroot: readU32LE(d, 12),
    fastlevel: readU32LE(d, 16),
    lastCleanupNumDelpages: readU32LE(d, 20),
    allequalimage: d[24] !== 0,
  };
}

// ---- INSERT_LEAF, INSERT_UPPER, INSERT_META, INSERT_POST -------------------------------

export interface XlBtreeInsert {
  offnum: number;
}

export function decodeBtreeInsert(rec: DecodedRecord): XlBtreeInsert {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_INSERT, "xl_btree_insert");
  return { offnum: readU16LE(d, 0) };
}

export interface XlBtreeInsertData {
  /** INSERT_POST: the offset in the posting list being split (> 0); 0 otherwise. */
  postingoff: number;
  /** The new tuple as logged (for INSERT_POST: orignewitem, before the posting split). */
  newitem: Uint8Array;
}

/** Block 0's data of an insert: [u16 postingoff when `posting`] then exactly one index tuple. */
export function decodeBtreeInsertData(rec: DecodedRecord, posting: boolean): XlBtreeInsertData {
  const d = blockData(rec, 0);
  let off = 0;
  let postingoff = 0;
  if (posting) {
    if (d.length < 2) throw btreeRecordError(rec, `data is ${d.length} bytes, too short for postingoff`, 0);
    postingoff = readU16LE(d, 0);
    if (postingoff === 0) throw btreeRecordError(rec, "posting list split at offset 0", 0);
    off = 2;
  }
  const size = indexTupleSizeAt(rec, 0, d, off, "new item");
  if (size !== d.length - off) {
    throw btreeRecordError(rec, `new item of IndexTupleSize ${size} in ${d.length - off} bytes of data`, 0);
  }
  return { postingoff, newitem: d.subarray(off) };
}

// ---- SPLIT_L, SPLIT_R ----------------------------------------------------------------

export interface XlBtreeSplit {
  level: number;
  firstrightoff: number;
  newitemoff: number;
  postingoff: number;
}

export function decodeBtreeSplit(rec: DecodedRecord): XlBtreeSplit {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_SPLIT, "xl_btree_split");
  return { level: readU32LE(d, 0), firstrightoff: readU16LE(d, 4), newitemoff: readU16LE(d, 6), postingoff: readU16LE(d, 8) };
}

export interface XlBtreeSplitLeftData {
  /** newitem (SPLIT_L) or orignewitem (postingoff ≠ 0): MAXALIGN(IndexTupleSize) bytes; null if absent. */
  newitem: Uint8Array | null;
  /** The left page's new high key, MAXALIGN(IndexTupleSize) bytes. */
  leftHikey: Uint8Array;
}

/** Block 0's data of a split: the new item when it is logged, then the left high key, nothing more. */
export function decodeBtreeSplitLeftData(rec: DecodedRecord, split: XlBtreeSplit, newitemonleft: boolean): XlBtreeSplitLeftData {
  const d = blockData(rec, 0);
  let off = 0;
  let newitem: Uint8Array | null = null;
  if (newitemonleft || split.postingoff !== 0) {
    const size = (indexTupleSizeAt(rec, 0, d, 0, "new item") + MAXALIGN_MASK) & ~MAXALIGN_MASK;
    if (size > d.length) throw btreeRecordError(rec, `new item of ${size} bytes in ${d.length} bytes of data`, 0);
    newitem = d.subarray(0, size);
    off = size;
  }
  const hikeySize = (indexTupleSizeAt(rec, 0, d, off, "left high key") + MAXALIGN_MASK) & ~MAXALIGN_MASK;
  if (off + hikeySize !== d.length) {
    throw btreeRecordError(rec, `left high key of ${hikeySize} bytes at ${off} does not end the ${d.length} bytes of data`, 0);
  }
  return { newitem, leftHikey: d.subarray(off) };
}

/** Tuples to re-enter on a page: the block data, and how many of `starts` were filled. */
export interface RestoreTuples {
  data: Uint8Array;
  count: number;
}

/**
 * The data of block `blockId` as _bt_restore_page reads it (split right page, new root): a
 * page's upper part, tuples back to back, each MAXALIGN(IndexTupleSize) bytes, highest item
 * number first. Fills `starts` with each tuple's offset in the data.
 */
export function decodeRestoreTuples(rec: DecodedRecord, blockId: number, starts: Uint16Array): RestoreTuples {
  const data = blockData(rec, blockId);
  let n = 0;
  let off = 0;
  while (off < data.length) {
    if (n >= starts.length) throw btreeRecordError(rec, `more than ${starts.length} tuples to restore`, blockId);
    const size = (indexTupleSizeAt(rec, blockId, data, off, `tuple ${n + 1} to restore`) + MAXALIGN_MASK) & ~MAXALIGN_MASK;
    if (off + size > data.length) {
      throw btreeRecordError(rec, `tuple ${n + 1} to restore: ${size} bytes at ${off} pass the ${data.length} bytes of data`, blockId);
    }
    starts[n++] = off;
    off += size;
  }
  return { data, count: n };
}

// ---- DEDUP ---------------------------------------------------------------------------

export interface XlBtreeDedup {
  nintervals: number;
}

export function decodeBtreeDedup(rec: DecodedRecord): XlBtreeDedup {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_DEDUP, "xl_btree_dedup");
  return { nintervals: readU16LE(d, 0) };
}

/** Block 0's BTDedupInterval array, exactly nintervals of them; read with dedupIntervalBaseoff/Nitems. */
export function decodeBtreeDedupIntervals(rec: DecodedRecord, dedup: XlBtreeDedup): Uint8Array {
  const d = blockData(rec, 0);
  if (d.length !== dedup.nintervals * SIZE_OF_BTREE_DEDUP_INTERVAL) {
    throw btreeRecordError(rec, `${dedup.nintervals} dedup intervals in ${d.length} bytes of data`, 0);
  }
  return d;
}

export function dedupIntervalBaseoff(intervals: Uint8Array, i: number): number {
  return readU16LE(intervals, i * SIZE_OF_BTREE_DEDUP_INTERVAL);
}
export function dedupIntervalNitems(intervals: Uint8Array, i: number): number {
  return readU16LE(intervals, i * SIZE_OF_BTREE_DEDUP_INTERVAL + 2);
}

// ---- VACUUM, DELETE ------------------------------------------------------------------

export interface XlBtreeVacuum {
  ndeleted: number;
  nupdated: number;
}

export function decodeBtreeVacuum(rec: DecodedRecord): XlBtreeVacuum {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_VACUUM, "xl_btree_vacuum");
  return { ndeleted: readU16LE(d, 0), nupdated: readU16LE(d, 2) };
}

export interface XlBtreeDelete extends XlBtreeVacuum {
  latestRemovedXid: number;
}

export function decodeBtreeDelete(rec: DecodedRecord): XlBtreeDelete {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_DELETE, "xl_btree_delete");
  return { latestRemovedXid: readU32LE(d, 0), ndeleted: readU16LE(d, 4), nupdated: readU16LE(d, 6) };
}

/**
 * Block 0's data of VACUUM and DELETE. Offsets are u16 arrays (read with offsetAt); each
 * xl_btree_update is {u16 ndeletedtids ≥ 1, u16 posting-list indexes}, walked with
 * updateNDeleted/nextUpdate. The whole layout has been checked to fill the data exactly.
 */
export interface XlBtreeDeleteData {
  deleted: Uint8Array;
  updatedOffsets: Uint8Array;
  updates: Uint8Array;
}

export function decodeBtreeDeleteData(rec: DecodedRecord, counts: XlBtreeVacuum): XlBtreeDeleteData {
  const d = blockData(rec, 0);
  const fixed = (counts.ndeleted + counts.nupdated) * 2;
  if (d.length < fixed) {
    throw btreeRecordError(
      rec,
      `${counts.ndeleted} deleted and ${counts.nupdated} updated offsets need ${fixed} bytes, the data has ${d.length}`,
      0,
    );
  }
  let off = fixed;
  for (let i = 0; i < counts.nupdated; i++) {
    if (off + SIZE_OF_BTREE_UPDATE > d.length)
      throw btreeRecordError(rec, `xl_btree_update ${i} starts past the ${d.length} bytes of data`, 0);
    const n = readU16LE(d, off);
    if (n === 0) throw btreeRecordError(rec, `xl_btree_update ${i} deletes no TIDs`, 0);
    off += SIZE_OF_BTREE_UPDATE + n * 2;
  }
  if (off !== d.length) throw btreeRecordError(rec, `data is ${d.length} bytes, its deletions and updates take ${off}`, 0);
  return {
    deleted: d.subarray(0, counts.ndeleted * 2),
    updatedOffsets: d.subarray(counts.ndeleted * 2, fixed),
    updates: d.subarray(fixed),
  };
}

/** Element `i` of a u16 array in record data (not necessarily 2-aligned). */
export function offsetAt(arr: Uint8Array, i: number): number {
  return readU16LE(arr, i * 2);
}

/** ndeletedtids of the xl_btree_update at byte `pos` of `updates`. */
export function updateNDeleted(updates: Uint8Array, pos: number): number {
  return readU16LE(updates, pos);
}
/** Byte position of the xl_btree_update after the one at `pos`. */
export function nextUpdate(updates: Uint8Array, pos: number): number {
  return pos + SIZE_OF_BTREE_UPDATE + readU16LE(updates, pos) * 2;
}

// ---- MARK_PAGE_HALFDEAD, UNLINK_PAGE[_META] ----------------------------------------------

export interface XlBtreeMarkPageHalfdead {
  poffset: number;
  leafblk: number;
  leftblk: number;
  rightblk: number;
  topparent: number;
}

export function decodeBtreeMarkPageHalfdead(rec: DecodedRecord): XlBtreeMarkPageHalfdead {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_MARK_PAGE_HALFDEAD, "xl_btree_mark_page_halfdead");
  return {
    poffset: readU16LE(d, 0),
    leafblk: readU32LE(d, 4),
    leftblk: readU32LE(d, 8),
    rightblk: readU32LE(d, 12),
    topparent: readU32LE(d, 16),
  };
}

export interface XlBtreeUnlinkPage {
  leftsib: number;
  rightsib: number;
  level: number;
  /** safexid as FullTransactionId halves: epoch (high) and xid (low). */
  safexidEpoch: number;
  safexidXid: number;
  leafleftsib: number;
  leafrightsib: number;
  leaftopparent: number;
}

export function decodeBtreeUnlinkPage(rec: DecodedRecord): XlBtreeUnlinkPage {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_UNLINK_PAGE, "xl_btree_unlink_page");
  return {
    leftsib: readU32LE(d, 0),
    rightsib: readU32LE(d, 4),
    level: readU32LE(d, 8),
    safexidXid: readU32LE(d, 16),
    safexidEpoch: readU32LE(d, 20),
    leafleftsib: readU32LE(d, 24),
    leafrightsib: readU32LE(d, 28),
    leaftopparent: readU32LE(d, 32),
  };
}

// ---- NEWROOT, REUSE_PAGE -----------------------------------------------------------------

export interface XlBtreeNewroot {
  rootblk: number;
  level: number;
}

export function decodeBtreeNewroot(rec: DecodedRecord): XlBtreeNewroot {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_NEWROOT, "xl_btree_newroot");
  return { rootblk: readU32LE(d, 0), level: readU32LE(d, 4) };
}

export interface XlBtreeReusePage {
  spcNode: number;
  dbNode: number;
  relNode: number;
  block: number;
  latestRemovedFullXidEpoch: number;
  latestRemovedFullXidXid: number;
}

export function decodeBtreeReusePage(rec: DecodedRecord): XlBtreeReusePage {
  const d = mainDataExactly(rec, SIZE_OF_BTREE_REUSE_PAGE, "xl_btree_reuse_page");
  return {
    spcNode: readU32LE(d, 0),
    dbNode: readU32LE(d, 4),
    relNode: readU32LE(d, 8),
    block: readU32LE(d, 12),
    latestRemovedFullXidXid: readU32LE(d, 16),
    latestRemovedFullXidEpoch: readU32LE(d, 20),
  };
}

// ---- all info codes ------------------------------------------------------------------

/** A btree record's main data, typed by its info code (block data is decoded by redo, per block). */
export type BtreeRecord =
  | {
      info: typeof XLOG_BTREE_INSERT_LEAF | typeof XLOG_BTREE_INSERT_UPPER | typeof XLOG_BTREE_INSERT_META | typeof XLOG_BTREE_INSERT_POST;
      insert: XlBtreeInsert;
    }
  | { info: typeof XLOG_BTREE_SPLIT_L | typeof XLOG_BTREE_SPLIT_R; split: XlBtreeSplit }
  | { info: typeof XLOG_BTREE_DEDUP; dedup: XlBtreeDedup }
  | { info: typeof XLOG_BTREE_VACUUM; vacuum: XlBtreeVacuum }
  | { info: typeof XLOG_BTREE_DELETE; delete: XlBtreeDelete }
  | { info: typeof XLOG_BTREE_MARK_PAGE_HALFDEAD; halfdead: XlBtreeMarkPageHalfdead }
  | { info: typeof XLOG_BTREE_UNLINK_PAGE | typeof XLOG_BTREE_UNLINK_PAGE_META; unlink: XlBtreeUnlinkPage }
  | { info: typeof XLOG_BTREE_NEWROOT; newroot: XlBtreeNewroot }
  | { info: typeof XLOG_BTREE_REUSE_PAGE; reuse: XlBtreeReusePage }
  | { info: typeof XLOG_BTREE_META_CLEANUP };

/** Decode the main data of any btree record; an unknown info code is corruption (PostgreSQL PANICs). */
export function decodeBtreeRecord(rec: DecodedRecord): BtreeRecord {
  const info = btreeInfoCode(rec);
  switch (info) {
    case XLOG_BTREE_INSERT_LEAF:
    case XLOG_BTREE_INSERT_UPPER:
    case XLOG_BTREE_INSERT_META:
    case XLOG_BTREE_INSERT_POST:
      return { info, insert: decodeBtreeInsert(rec) };
    case XLOG_BTREE_SPLIT_L:
    case XLOG_BTREE_SPLIT_R:
      return { info, split: decodeBtreeSplit(rec) };
    case XLOG_BTREE_DEDUP:
      return { info, dedup: decodeBtreeDedup(rec) };
    case XLOG_BTREE_VACUUM:
      return { info, vacuum: decodeBtreeVacuum(rec) };
    case XLOG_BTREE_DELETE:
      return { info, delete: decodeBtreeDelete(rec) };
    case XLOG_BTREE_MARK_PAGE_HALFDEAD:
      return { info, halfdead: decodeBtreeMarkPageHalfdead(rec) };
    case XLOG_BTREE_UNLINK_PAGE:
    case XLOG_BTREE_UNLINK_PAGE_META:
      return { info, unlink: decodeBtreeUnlinkPage(rec) };
    case XLOG_BTREE_NEWROOT:
      return { info, newroot: decodeBtreeNewroot(rec) };
    case XLOG_BTREE_REUSE_PAGE:
      return { info, reuse: decodeBtreeReusePage(rec) };
    case XLOG_BTREE_META_CLEANUP:
      if (rec.mainData.length !== 0)
        throw btreeRecordError(rec, `META_CLEANUP carries ${rec.mainData.length} bytes of main data, expected none`);
      return { info };
    default:
      throw btreeRecordError(rec, `unknown btree op code 0x${info.toString(16)}`);
  }
}
