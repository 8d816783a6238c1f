/**
 * The heap tuple header on a page (HeapTupleHeaderData, src/include/access/htup_details.h of
 * PostgreSQL 15) as byte offsets from the tuple's start, its flag bits, and the few
 * accessors heap redo and heap_mask need. Fields are little-endian and unaligned-safe (read
 * byte by byte).
 *
 *   off size field
 *    0   4   t_xmin
 *    4   4   t_xmax
 *    8   4   t_cid / t_xvac (union)
 *   12   6   t_ctid: u16 bi_hi | u16 bi_lo (block = bi_hi << 16 | bi_lo) | u16 ip_posid
 *   18   2   t_infomask2
 *   20   2   t_infomask
 *   22   1   t_hoff
 *   23       t_bits (null bitmap), padding to t_hoff, then the data
 *
 * Callers check that the tuple's 23 header bytes lie inside the page before using these.
 */
import { writeU16LE } from "../types/bytes.js";
import { BLCKSZ } from "./consts.js";

export const T_XMIN = 0;
export const T_XMAX = 4;
export const T_CID = 8;
export const T_CTID = 12;
export const T_INFOMASK2 = 18;
export const T_INFOMASK = 20;
export const T_HOFF = 22;
/** SizeofHeapTupleHeader: offsetof(HeapTupleHeaderData, t_bits). */
export const SIZEOF_HEAP_TUPLE_HEADER = 23;
/** MaxHeapTupleSize: BLCKSZ - MAXALIGN(SizeOfPageHeaderData + sizeof(ItemIdData)). */
export const MAX_HEAP_TUPLE_SIZE = BLCKSZ - 32;

// t_infomask
export const HEAP_HASNULL = 0x0001;
export const HEAP_HASVARWIDTH = 0x0002;
export const HEAP_HASEXTERNAL = 0x0004;
export const HEAP_XMAX_KEYSHR_LOCK = 0x0010;
export const HEAP_COMBOCID = 0x0020;
export const HEAP_XMAX_EXCL_LOCK = 0x0040;
export const HEAP_XMAX_LOCK_ONLY = 0x0080;
export const HEAP_XMAX_SHR_LOCK = HEAP_XMAX_EXCL_LOCK | HEAP_XMAX_KEYSHR_LOCK;
export const HEAP_LOCK_MASK = HEAP_XMAX_SHR_LOCK | HEAP_XMAX_EXCL_LOCK | HEAP_XMAX_KEYSHR_LOCK;
export const HEAP_XMIN_COMMITTED = 0x0100;
export const HEAP_XMIN_INVALID = 0x0200;
export const HEAP_XMIN_FROZEN = HEAP_XMIN_COMMITTED | HEAP_XMIN_INVALID;
export const HEAP_XMAX_COMMITTED = 0x0400;
export const HEAP_XMAX_INVALID = 0x0800;
export const HEAP_XMAX_IS_MULTI = 0x1000;
export const HEAP_UPDATED = 0x2000;
export const HEAP_MOVED_OFF = 0x4000;
export const HEAP_MOVED_IN = 0x8000;
export const HEAP_MOVED = HEAP_MOVED_OFF | HEAP_MOVED_IN;
export const HEAP_XACT_MASK = 0xfff0;
export const HEAP_XMAX_BITS = HEAP_XMAX_COMMITTED | HEAP_XMAX_INVALID | HEAP_XMAX_IS_MULTI | HEAP_LOCK_MASK | HEAP_XMAX_LOCK_ONLY;

// t_infomask2
export const HEAP_NATTS_MASK = 0x07ff;
export const HEAP_KEYS_UPDATED = 0x2000;
export const HEAP_HOT_UPDATED = 0x4000;
export const HEAP_ONLY_TUPLE = 0x8000;

/** ip_posid of a speculative insertion token in t_ctid. */
export const SPEC_TOKEN_OFFSET_NUMBER = 0xfffe;
/** t_ctid of a tuple moved to another partition: (InvalidBlockNumber, 0xfffd). */
export const MOVED_PARTITIONS_OFFSET_NUMBER = 0xfffd;
export const MOVED_PARTITIONS_BLOCK_NUMBER = 0xffff_ffff;

export { FROZEN_TRANSACTION_ID, INVALID_TRANSACTION_ID } from "./consts.js";
export const FIRST_COMMAND_ID = 0;

/** ItemPointerSet(&tuple->t_ctid, blkno, offnum) for the tuple at `b[t]`. */
export function setCtid(b: Uint8Array, t: number, blkno: number, offnum: number): void {
  writeU16LE(b, t + T_CTID, blkno >>> 16);
  writeU16LE(b, t + T_CTID + 2, blkno & 0xffff);
  writeU16LE(b, t + T_CTID + 4, offnum);
}

/** HEAP_XMAX_IS_LOCKED_ONLY(infomask). */
export function xmaxIsLockedOnly(infomask: number): boolean {
  return (infomask & HEAP_XMAX_LOCK_ONLY) !== 0 || (infomask & (HEAP_XMAX_IS_MULTI | HEAP_LOCK_MASK)) === HEAP_XMAX_EXCL_LOCK;
}
