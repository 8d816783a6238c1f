/**
 * Typed decoders of the Heap rmgr's records (RM_HEAP_ID, src/include/access/heapam_xlog.h of
 * PostgreSQL 15.18), plus what Heap and Heap2 share: the xl_heap_header tuple form and the
 * infobits flags. (The record-corruption error and main-data checks are record_access.ts's.)
 *
 *   xl_info & 0x70 (XLOG_HEAP_OPMASK) is the opcode; 0x80 is XLOG_HEAP_INIT_PAGE (INSERT,
 *   UPDATE, HOT_UPDATE: block 0 is re-initialized, BKPBLOCK_WILL_INIT).
 *
 *   main data (little-endian, C struct layout)          block 0 data
 *   INSERT   u16 offnum | u8 flags                        xl_heap_header | tuple bytes
 *   DELETE   u32 xmax | u16 offnum | u8 infobits | u8 flags [| xl_heap_header | old key bytes]
 *   UPDATE,  u32 old_xmax | u16 old_offnum | u8 old_infobits | u8 flags | u32 new_xmax |
 *   HOT_UPD  u16 new_offnum [| xl_heap_header | old key bytes]
 *                                                       [u16 prefix][u16 suffix] xl_heap_header | tuple bytes
 *            (block 1: the old page when it differs from the new one; no data)
 *   TRUNCATE u32 dbId | u32 nrelids | u8 flags | pad3 | u32 relids[nrelids]      (no blocks)
 *   CONFIRM  u16 offnum
 *   LOCK     u32 locking_xid | u16 offnum | u8 infobits | u8 flags
 *   INPLACE  u16 offnum                                   the tuple's bytes from t_hoff on
 *
 *   xl_heap_header: u16 t_infomask2 | u16 t_infomask | u8 t_hoff (5 bytes, unaligned);
 *   "tuple bytes" are the tuple from offset 23 (SizeofHeapTupleHeader) on: null bitmap,
 *   padding, data. With a prefix/suffix from the old tuple, the bytes are the bitmap and
 *   padding (t_hoff - 23 of them) followed by the data between prefix and suffix.
 *
 * Block data is absent when the block carries a full-page image without REGBUF_KEEP_DATA;
 * the decoders then return null for it. Every length is checked before it is read: a short
 * or inconsistent record is a CorruptionError naming LSN, rmgr and info. Decoders return
 * views (subarrays) into the record; nothing is copied.
 */
import { readU16LE, readU32LE } from "../../../types/bytes.js";
import { MAX_HEAP_TUPLE_SIZE, SIZEOF_HEAP_TUPLE_HEADER } from "../../heap_tuple.js";
import type { DecodedRecord } from "../record.js";
import { RM_HEAP_ID } from "../rmgr_ids.js";
import { blockById, exactMain, needMain, recordCorruption, requireBlock } from "./record_access.js";

export const XLOG_HEAP_INSERT = 0x00;
export const XLOG_HEAP_DELETE = 0x10;
export const XLOG_HEAP_UPDATE = 0x20;
export const XLOG_HEAP_TRUNCATE = 0x30;
export const XLOG_HEAP_HOT_UPDATE = 0x40;
export const XLOG_HEAP_CONFIRM = 0x50;
export const XLOG_HEAP_LOCK = 0x60;
export const XLOG_HEAP_INPLACE = 0x70;
export const XLOG_HEAP_OPMASK = 0x70;
export const XLOG_HEAP_INIT_PAGE = 0x80;

/** xl_heap_insert / xl_heap_multi_insert flags. */
export const XLH_INSERT_ALL_VISIBLE_CLEARED = 1 << 0;
export const XLH_INSERT_LAST_IN_MULTI = 1 << 1;
export const XLH_INSERT_IS_SPECULATIVE = 1 << 2;
export const XLH_INSERT_CONTAINS_NEW_TUPLE = 1 << 3;
export const XLH_INSERT_ON_TOAST_RELATION = 1 << 4;
export const XLH_INSERT_ALL_FROZEN_SET = 1 << 5;

/** xl_heap_update flags. */
export const XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED = 1 << 0;
export const XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED = 1 << 1;
export const XLH_UPDATE_CONTAINS_OLD_TUPLE = 1 << 2;
export const XLH_UPDATE_CONTAINS_OLD_KEY = 1 << 3;
export const XLH_UPDATE_CONTAINS_NEW_TUPLE = 1 << 4;
export const XLH_UPDATE_PREFIX_FROM_OLD = 1 << 5;
export const XLH_UPDATE_SUFFIX_FROM_OLD = 1 << 6;
export const XLH_UPDATE_CONTAINS_OLD = XLH_UPDATE_CONTAINS_OLD_TUPLE | XLH_UPDATE_CONTAINS_OLD_KEY;

/** xl_heap_delete flags. */
export const XLH_DELETE_ALL_VISIBLE_CLEARED = 1 << 0;
export const XLH_DELETE_CONTAINS_OLD_TUPLE = 1 << 1;
export const XLH_DELETE_CONTAINS_OLD_KEY = 1 << 2;
export const XLH_DELETE_IS_SUPER = 1 << 3;
export const XLH_DELETE_IS_PARTITION_MOVE = 1 << 4;
export const XLH_DELETE_CONTAINS_OLD = XLH_DELETE_CONTAINS_OLD_TUPLE | XLH_DELETE_CONTAINS_OLD_KEY;

/** xl_heap_truncate flags. */
export const XLH_TRUNCATE_CASCADE = 1 << 0;
export const XLH_TRUNCATE_RESTART_SEQS = 1 << 1;

/** infobits_set of DELETE, UPDATE, LOCK, LOCK_UPDATED (compute_infobits). */
export const XLHL_XMAX_IS_MULTI = 0x01;
export const XLHL_XMAX_LOCK_ONLY = 0x02;
export const XLHL_XMAX_EXCL_LOCK = 0x04;
export const XLHL_XMAX_KEYSHR_LOCK = 0x08;
export const XLHL_KEYS_UPDATED = 0x10;

/** xl_heap_lock / xl_heap_lock_updated flags. */
export const XLH_LOCK_ALL_FROZEN_CLEARED = 0x01;

export const SIZE_OF_HEAP_HEADER = 5;
export const SIZE_OF_HEAP_INSERT = 3;
export const SIZE_OF_HEAP_DELETE = 8;
export const SIZE_OF_HEAP_UPDATE = 14;
export const SIZE_OF_HEAP_TRUNCATE = 12;
export const SIZE_OF_HEAP_CONFIRM = 2;
export const SIZE_OF_HEAP_LOCK = 8;
export const SIZE_OF_HEAP_INPLACE = 2;

/** A tuple as WAL carries it: xl_heap_header and the bytes after the fixed header. */
export interface XlHeapTuple {
  infomask2: number;
  infomask: number;
  hoff: number;
  /** Null bitmap, padding and data (offset 23 onwards of the tuple), a view into the record. */
  data: Uint8Array;
}

export interface XlHeapInsert {
  offnum: number;
  flags: number;
  /** Block 0's tuple; null when the block has an image and no data. */
  tuple: XlHeapTuple | null;
}

export interface XlHeapDelete {
  xmax: number;
  offnum: number;
  infobitsSet: number;
  flags: number;
  /** The old tuple or its replica-identity key (wal_level = logical), else null. */
  oldTuple: XlHeapTuple | null;
}

export interface XlHeapUpdate {
  oldXmax: number;
  oldOffnum: number;
  oldInfobitsSet: number;
  flags: number;
  newXmax: number;
  newOffnum: number;
  /** The old tuple or its replica-identity key (wal_level = logical), else null. */
  oldTuple: XlHeapTuple | null;
  /** Bytes of the new tuple's data equal to the old tuple's first/last bytes (same page only). */
  prefixLen: number;
  suffixLen: number;
  /** Block 0's new tuple (without prefix and suffix); null when the block has an image and no data. */
  newTuple: XlHeapTuple | null;
}

export interface XlHeapTruncate {
  dbId: number;
  nrelids: number;
  flags: number;
  /** nrelids relation OIDs (u32 little-endian), a view into the record: see relidAt. */
  relids: Uint8Array;
}

export interface XlHeapConfirm {
  offnum: number;
}

export interface XlHeapLock {
  /** An xid, or a MultiXactId when infobitsSet has XLHL_XMAX_IS_MULTI. */
  lockingXid: number;
  offnum: number;
  infobitsSet: number;
  flags: number;
}

export interface XlHeapInplace {
  offnum: number;
  /** The tuple's new bytes from t_hoff on; null when the block has an image and no data. */
  newData: Uint8Array | null;
}

// ---------------------------------------------------------------------------------------
// Shared helpers

/** xl_heap_header + tuple bytes filling `bytes[from, to)`. */
/** `blockId`: the block whose data holds it, -1 for main data. */
function decodeHeapTuple(rec: DecodedRecord, bytes: Uint8Array, from: number, to: number, what: string, blockId: number): XlHeapTuple {
  if (to - from < SIZE_OF_HEAP_HEADER) {
    throw recordCorruption(rec, `${what} is ${to - from} bytes, shorter than xl_heap_header (${SIZE_OF_HEAP_HEADER})`, blockId);
  }
  const hoff = bytes[from + 4]!;
  if (hoff < SIZEOF_HEAP_TUPLE_HEADER) throw recordCorruption(rec, `${what}: t_hoff ${hoff} is below ${SIZEOF_HEAP_TUPLE_HEADER}`, blockId);
  const dataLen = to - from - SIZE_OF_HEAP_HEADER;
  if (SIZEOF_HEAP_TUPLE_HEADER + dataLen > MAX_HEAP_TUPLE_SIZE) {
    throw recordCorruption(rec, `${what}: ${SIZEOF_HEAP_TUPLE_HEADER + dataLen}-byte tuple exceeds MaxHeapTupleSize`, blockId);
  }
  return {
    infomask2: readU16LE(bytes, from),
    infomask: readU16LE(bytes, from + 2),
    hoff,
    data: bytes.subarray(from + SIZE_OF_HEAP_HEADER, to),
  };
}

function blockData(rec: DecodedRecord, id: number): Uint8Array | null {
  const b = requireBlock(rec, id);
  return b.hasData ? b.data : null;
}

function op(rec: DecodedRecord): number {
  return rec.info & XLOG_HEAP_OPMASK;
}

export function expectOp(rec: DecodedRecord, rmid: number, code: number, what: string): void {
  if (rec.rmid !== rmid || op(rec) !== code) throw recordCorruption(rec, `not a ${what} record`);
}

// ---------------------------------------------------------------------------------------
// Decoders

export function decodeHeapInsert(rec: DecodedRecord): XlHeapInsert {
  expectOp(rec, RM_HEAP_ID, XLOG_HEAP_INSERT, "Heap/INSERT");
  const d = exactMain(rec, SIZE_OF_HEAP_INSERT, "xl_heap_insert");
  const data = blockData(rec, 0);
  return {
    offnum: readU16LE(d, 0),
    flags: d[2]!,
    tuple: data === null ? null : decodeHeapTuple(rec, data, 0, data.length, "block 0 data", 0),
  };
}

export function decodeHeapDelete(rec: DecodedRecord): XlHeapDelete {
  expectOp(rec, RM_HEAP_ID, XLOG_HEAP_DELETE, "Heap/DELETE");
  const d = needMain(rec, SIZE_OF_HEAP_DELETE, "xl_heap_delete");
  requireBlock(rec, 0);
  const flags = d[7]!;
  let oldTuple: XlHeapTuple | null = null;
  if ((flags & XLH_DELETE_CONTAINS_OLD) !== 0) {
    oldTuple = decodeHeapTuple(rec, d, SIZE_OF_HEAP_DELETE, d.length, "old tuple", -1);
  } else if (d.length !== SIZE_OF_HEAP_DELETE) {
    throw recordCorruption(rec, `main data is ${d.length} bytes, xl_heap_delete without an old tuple is ${SIZE_OF_HEAP_DELETE}`);
  }
  return { xmax: readU32LE(d, 0), offnum: readU16LE(d, 4), infobitsSet: d[6]!, flags, oldTuple };
}

export function decodeHeapUpdate(rec: DecodedRecord): XlHeapUpdate {
  const code = op(rec);
  if (rec.rmid !== RM_HEAP_ID || (code !== XLOG_HEAP_UPDATE && code !== XLOG_HEAP_HOT_UPDATE)) {
    throw recordCorruption(rec, "not a Heap/UPDATE or Heap/HOT_UPDATE record");
  }
  const d = needMain(rec, SIZE_OF_HEAP_UPDATE, "xl_heap_update");
  const flags = d[7]!;
  let oldTuple: XlHeapTuple | null = null;
  if ((flags & XLH_UPDATE_CONTAINS_OLD) !== 0) {
    oldTuple = decodeHeapTuple(rec, d, SIZE_OF_HEAP_UPDATE, d.length, "old tuple", -1);
  } else if (d.length !== SIZE_OF_HEAP_UPDATE) {
    throw recordCorruption(rec, `main data is ${d.length} bytes, xl_heap_update without an old tuple is ${SIZE_OF_HEAP_UPDATE}`);
  }
  const b1 = blockById(rec, 1);
  if (code === XLOG_HEAP_HOT_UPDATE && b1 !== undefined) throw recordCorruption(rec, "HOT update across two pages");
  const data = blockData(rec, 0);
  let prefixLen = 0;
  let suffixLen = 0;
  let newTuple: XlHeapTuple | null = null;
  if (data !== null) {
    let pos = 0;
    const affixes = (flags & XLH_UPDATE_PREFIX_FROM_OLD ? 1 : 0) + (flags & XLH_UPDATE_SUFFIX_FROM_OLD ? 1 : 0);
    if (affixes > 0 && b1 !== undefined)
      throw recordCorruption(rec, "prefix/suffix from the old tuple, but the old tuple is on another page");
    if (data.length < 2 * affixes)
      throw recordCorruption(rec, `block 0 data is ${data.length} bytes, its prefix/suffix lengths need ${2 * affixes}`, 0);
    if (flags & XLH_UPDATE_PREFIX_FROM_OLD) {
      prefixLen = readU16LE(data, pos);
      pos += 2;
    }
    if (flags & XLH_UPDATE_SUFFIX_FROM_OLD) {
      suffixLen = readU16LE(data, pos);
      pos += 2;
    }
    newTuple = decodeHeapTuple(rec, data, pos, data.length, "new tuple", 0);
    if (prefixLen > 0 && newTuple.data.length < newTuple.hoff - SIZEOF_HEAP_TUPLE_HEADER) {
      throw recordCorruption(
        rec,
        `new tuple: ${newTuple.data.length} bytes cannot hold its ${newTuple.hoff - SIZEOF_HEAP_TUPLE_HEADER}-byte null bitmap`,
        0,
      );
    }
    if (SIZEOF_HEAP_TUPLE_HEADER + newTuple.data.length + prefixLen + suffixLen > MAX_HEAP_TUPLE_SIZE) {
      throw recordCorruption(rec, "new tuple with its prefix and suffix exceeds MaxHeapTupleSize", 0);
    }
  }
  return {
    oldXmax: readU32LE(d, 0),
    oldOffnum: readU16LE(d, 4),
    oldInfobitsSet: d[6]!,
    flags,
    newXmax: readU32LE(d, 8),
    newOffnum: readU16LE(d, 12),
    oldTuple,
    prefixLen,
    suffixLen,
    newTuple,
  };
}

export function decodeHeapTruncate(rec: DecodedRecord): XlHeapTruncate {
  expectOp(rec, RM_HEAP_ID, XLOG_HEAP_TRUNCATE, "Heap/TRUNCATE");
  const d = needMain(rec, SIZE_OF_HEAP_TRUNCATE, "xl_heap_truncate");
  const nrelids = readU32LE(d, 4);
  if (d.length !== SIZE_OF_HEAP_TRUNCATE + 4 * nrelids) {
    throw recordCorruption(
      rec,
      `main data is ${d.length} bytes, xl_heap_truncate with ${nrelids} relids is ${SIZE_OF_HEAP_TRUNCATE + 4 * nrelids}`,
    );
  }
  return { dbId: readU32LE(d, 0), nrelids, flags: d[8]!, relids: d.subarray(SIZE_OF_HEAP_TRUNCATE) };
}

/** The i-th relation OID of a TRUNCATE record. */
export function relidAt(t: XlHeapTruncate, i: number): number {
  return readU32LE(t.relids, 4 * i);
}

export function decodeHeapConfirm(rec: DecodedRecord): XlHeapConfirm {
  expectOp(rec, RM_HEAP_ID, XLOG_HEAP_CONFIRM, "Heap/HEAP_CONFIRM");
  const d = exactMain(rec, SIZE_OF_HEAP_CONFIRM, "xl_heap_confirm");
  requireBlock(rec, 0);
  return { offnum: readU16LE(d, 0) };
}

export function decodeHeapLock(rec: DecodedRecord): XlHeapLock {
  expectOp(rec, RM_HEAP_ID, XLOG_HEAP_LOCK, "Heap/LOCK");
  const d = exactMain(rec, SIZE_OF_HEAP_LOCK, "xl_heap_lock");
  requireBlock(rec, 0);
  return { lockingXid: readU32LE(d, 0), offnum: readU16LE(d, 4), infobitsSet: d[6]!, flags: d[7]! };
}

export function decodeHeapInplace(rec: DecodedRecord): XlHeapInplace {
  expectOp(rec, RM_HEAP_ID, XLOG_HEAP_INPLACE, "Heap/INPLACE");
  const d = exactMain(rec, SIZE_OF_HEAP_INPLACE, "xl_heap_inplace");
  return { offnum: readU16LE(d, 0), newData: blockData(rec, 0) };
}
