/**
 * Typed decoders of the Heap2 rmgr's records (RM_HEAP2_ID, heapam_xlog.h and rewriteheap.h of
 * PostgreSQL 15.18). Same opcode mask as Heap (0x70); 0x80 is XLOG_HEAP_INIT_PAGE on
 * MULTI_INSERT.
 *
 *   main data (little-endian, C struct layout)          block data
 *   REWRITE      xl_heap_rewrite_mapping (40 bytes: u32 mapped_xid | u32 mapped_db |
 *                u32 mapped_rel | pad4 | u64 offset | u32 num_mappings | pad4 | u64 start_lsn)
 *                then num_mappings × LogicalRewriteMappingData (36 bytes)        (no blocks)
 *   PRUNE        u32 latestRemovedXid | u16 nredirected | u16 ndead
 *                                                       block 0: u16 offsets: nredirected
 *                                                       (from, to) pairs, ndead, then the
 *                                                       unused ones up to the end
 *   VACUUM       u16 nunused                            block 0: nunused u16 offsets
 *   FREEZE_PAGE  u32 cutoff_xid | u16 ntuples           block 0: ntuples × xl_heap_freeze_tuple
 *                                                       (12 bytes: u32 xmax | u16 offset |
 *                                                       u16 infomask2 | u16 infomask | u8 frzflags | pad)
 *   VISIBLE      u32 cutoff_xid | u8 flags              block 0: the VM page, block 1: the heap page
 *   MULTI_INSERT u8 flags | pad | u16 ntuples [| u16 offsets[ntuples], absent with INIT_PAGE]
 *                                                       block 0: per tuple, 2-aligned
 *                                                       xl_multi_insert_tuple (u16 datalen |
 *                                                       u16 infomask2 | u16 infomask | u8 hoff)
 *                                                       then datalen tuple bytes (offset 23 on)
 *   LOCK_UPDATED u32 xmax | u16 offnum | u8 infobits | u8 flags
 *   NEW_CID      u32 top_xid | u32 cmin | u32 cmax | u32 combocid | RelFileNode (12) |
 *                ItemPointerData (6)                                              (no blocks)
 *
 * Block data is absent when the block carries a full-page image; decoders return null for it.
 * Block data starts MAXALIGNed in PostgreSQL's decode buffer, so MULTI_INSERT's SHORTALIGN is
 * relative to the start of the block data. Every length is checked: a malformed record is a
 * CorruptionError naming LSN, rmgr and info.
 */
import { readU16LE, readU32LE } from "../../../types/bytes.js";
import { MAX_HEAP_TUPLE_SIZE, SIZEOF_HEAP_TUPLE_HEADER } from "../../heap_tuple.js";
import type { DecodedRecord } from "../record.js";
import { RM_HEAP2_ID } from "../rmgr_ids.js";
import { exactMain, needMain, recordCorruption, requireBlock } from "./record_access.js";
import { expectOp, XLOG_HEAP_INIT_PAGE } from "./heap.js";

export const XLOG_HEAP2_REWRITE = 0x00;
export const XLOG_HEAP2_PRUNE = 0x10;
export const XLOG_HEAP2_VACUUM = 0x20;
export const XLOG_HEAP2_FREEZE_PAGE = 0x30;
export const XLOG_HEAP2_VISIBLE = 0x40;
export const XLOG_HEAP2_MULTI_INSERT = 0x50;
export const XLOG_HEAP2_LOCK_UPDATED = 0x60;
export const XLOG_HEAP2_NEW_CID = 0x70;

/** xl_heap_freeze_tuple.frzflags (0x01 was XLH_FREEZE_XMIN). */
export const XLH_FREEZE_XVAC = 0x02;
export const XLH_INVALID_XVAC = 0x04;

/** xl_heap_visible.flags: the visibility-map bits to set (visibilitymap.h). */
export const VISIBILITYMAP_ALL_VISIBLE = 0x01;
export const VISIBILITYMAP_ALL_FROZEN = 0x02;
export const VISIBILITYMAP_VALID_BITS = 0x03;

export const SIZE_OF_HEAP_PRUNE = 8;
export const SIZE_OF_HEAP_VACUUM = 2;
export const SIZE_OF_HEAP_FREEZE_PAGE = 6;
export const SIZE_OF_HEAP_FREEZE_TUPLE = 12;
export const SIZE_OF_HEAP_VISIBLE = 5;
export const SIZE_OF_HEAP_MULTI_INSERT = 4;
export const SIZE_OF_MULTI_INSERT_TUPLE = 7;
export const SIZE_OF_HEAP_LOCK_UPDATED = 8;
export const SIZE_OF_HEAP_NEW_CID = 34;
export const SIZE_OF_HEAP_REWRITE_MAPPING = 40;
export const SIZE_OF_LOGICAL_REWRITE_MAPPING = 36;

export interface XlHeapPrune {
  latestRemovedXid: number;
  nredirected: number;
  ndead: number;
  /** From block 0's data length; 0 when the block has no data. */
  nunused: number;
  /** Block 0's u16 offsets (see offsetAt), null when the block has an image and no data. */
  offsets: Uint8Array | null;
}

export interface XlHeapVacuum {
  nunused: number;
  /** Block 0's nunused u16 offsets (see offsetAt), null when the block has an image and no data. */
  offsets: Uint8Array | null;
}

export interface XlHeapFreezePage {
  cutoffXid: number;
  ntuples: number;
  /** Block 0's ntuples freeze plans (see freezePlan*), null when the block has an image and no data. */
  plans: Uint8Array | null;
}

export interface XlHeapVisible {
  cutoffXid: number;
  flags: number;
}

export interface XlHeapMultiInsert {
  flags: number;
  ntuples: number;
  /** Whether XLOG_HEAP_INIT_PAGE is set: the tuples go to offsets 1..ntuples of a fresh page. */
  init: boolean;
  /** ntuples u16 offsets from the main data (see offsetAt); null with INIT_PAGE. */
  offsets: Uint8Array | null;
  /** Block 0's data, null when the block has an image and no data. */
  tupleData: Uint8Array | null;
  /** Where each xl_multi_insert_tuple starts in tupleData (validated); null with tupleData. */
  tupleStarts: Uint16Array | null;
}

export interface XlHeapLockUpdated {
  xmax: number;
  offnum: number;
  infobitsSet: number;
  flags: number;
}

export interface XlHeapNewCid {
  topXid: number;
  cmin: number;
  cmax: number;
  combocid: number;
  spcNode: number;
  dbNode: number;
  relNode: number;
  targetBlkno: number;
  targetOffnum: number;
}

export interface XlHeapRewriteMapping {
  mappedXid: number;
  mappedDb: number;
  mappedRel: number;
  /** Bytes of the mapping file written so far. */
  offset: number;
  numMappings: number;
  startLsn: number;
  /** numMappings × 36-byte LogicalRewriteMappingData, a view into the record. */
  mappings: Uint8Array;
}

/** The i-th u16 OffsetNumber of an offsets array. */
export function offsetAt(offsets: Uint8Array, i: number): number {
  return readU16LE(offsets, 2 * i);
}

export function freezePlanXmax(plans: Uint8Array, i: number): number {
  return readU32LE(plans, SIZE_OF_HEAP_FREEZE_TUPLE * i);
}
export function freezePlanOffset(plans: Uint8Array, i: number): number {
  return readU16LE(plans, SIZE_OF_HEAP_FREEZE_TUPLE * i + 4);
}
export function freezePlanInfomask2(plans: Uint8Array, i: number): number {
  return readU16LE(plans, SIZE_OF_HEAP_FREEZE_TUPLE * i + 6);
}
export function freezePlanInfomask(plans: Uint8Array, i: number): number {
  return readU16LE(plans, SIZE_OF_HEAP_FREEZE_TUPLE * i + 8);
}
export function freezePlanFlags(plans: Uint8Array, i: number): number {
  return plans[SIZE_OF_HEAP_FREEZE_TUPLE * i + 10]!;
}

/** xl_multi_insert_tuple at `start` of MULTI_INSERT block data, and its bytes right after it. */
export function multiInsertDataLen(tupleData: Uint8Array, start: number): number {
  return readU16LE(tupleData, start);
}
export function multiInsertInfomask2(tupleData: Uint8Array, start: number): number {
  return readU16LE(tupleData, start + 2);
}
export function multiInsertInfomask(tupleData: Uint8Array, start: number): number {
  return readU16LE(tupleData, start + 4);
}
export function multiInsertHoff(tupleData: Uint8Array, start: number): number {
  return tupleData[start + 6]!;
}

function heap2Data(rec: DecodedRecord, id: number): Uint8Array | null {
  const b = requireBlock(rec, id);
  return b.hasData ? b.data : null;
}

export function decodeHeap2Prune(rec: DecodedRecord): XlHeapPrune {
  expectOp(rec, RM_HEAP2_ID, XLOG_HEAP2_PRUNE, "Heap2/PRUNE");
  const d = exactMain(rec, SIZE_OF_HEAP_PRUNE, "xl_heap_prune");
  const nredirected = readU16LE(d, 4);
  const ndead = readU16LE(d, 6);
  const offsets = heap2Data(rec, 0);
  let nunused = 0;
  if (offsets !== null) {
    const fixed = 2 * (2 * nredirected + ndead);
    if ((offsets.length & 1) !== 0 || offsets.length < fixed) {
      throw recordCorruption(
        rec,
        `block 0 data is ${offsets.length} bytes, not an array of OffsetNumbers holding ${nredirected} redirects and ${ndead} dead`,
        0,
      );
    }
    nunused = (offsets.length - fixed) / 2;
  }
  return { latestRemovedXid: readU32LE(d, 0), nredirected, ndead, nunused, offsets };
}

export function decodeHeap2Vacuum(rec: DecodedRecord): XlHeapVacuum {
  expectOp(rec, RM_HEAP2_ID, XLOG_HEAP2_VACUUM, "Heap2/VACUUM");
  const d = exactMain(rec, SIZE_OF_HEAP_VACUUM, "xl_heap_vacuum");
  const nunused = readU16LE(d, 0);
  const offsets = heap2Data(rec, 0);
  if (offsets !== null && offsets.length !== 2 * nunused) {
    throw recordCorruption(rec, `block 0 data is ${offsets.length} bytes, ${nunused} unused offsets are ${2 * nunused}`, 0);
  }
  return { nunused, offsets };
}

export function decodeHeap2FreezePage(rec: DecodedRecord): XlHeapFreezePage {
  expectOp(rec, RM_HEAP2_ID, XLOG_HEAP2_FREEZE_PAGE, "Heap2/FREEZE_PAGE");
  const d = exactMain(rec, SIZE_OF_HEAP_FREEZE_PAGE, "xl_heap_freeze_page");
  const ntuples = readU16LE(d, 4);
  const plans = heap2Data(rec, 0);
  if (plans !== null && plans.length !== SIZE_OF_HEAP_FREEZE_TUPLE * ntuples) {
    throw recordCorruption(
      rec,
      `block 0 data is ${plans.length} bytes, ${ntuples} freeze plans are ${SIZE_OF_HEAP_FREEZE_TUPLE * ntuples}`,
      0,
    );
  }
  return { cutoffXid: readU32LE(d, 0), ntuples, plans };
}

export function decodeHeap2Visible(rec: DecodedRecord): XlHeapVisible {
  expectOp(rec, RM_HEAP2_ID, XLOG_HEAP2_VISIBLE, "Heap2/VISIBLE");
  const d = exactMain(rec, SIZE_OF_HEAP_VISIBLE, "xl_heap_visible");
  requireBlock(rec, 0);
  requireBlock(rec, 1);
  const flags = d[4]!;
  if ((flags & VISIBILITYMAP_VALID_BITS) === 0 || (flags & ~VISIBILITYMAP_VALID_BITS) !== 0) {
    throw recordCorruption(rec, `visibility-map flags 0x${flags.toString(16)}`);
  }
  return { cutoffXid: readU32LE(d, 0), flags };
}

export function decodeHeap2MultiInsert(rec: DecodedRecord): XlHeapMultiInsert {
  expectOp(rec, RM_HEAP2_ID, XLOG_HEAP2_MULTI_INSERT, "Heap2/MULTI_INSERT");
  const d = needMain(rec, SIZE_OF_HEAP_MULTI_INSERT, "xl_heap_multi_insert");
  const init = (rec.info & XLOG_HEAP_INIT_PAGE) !== 0;
  const ntuples = readU16LE(d, 2);
  const mainLen = SIZE_OF_HEAP_MULTI_INSERT + (init ? 0 : 2 * ntuples);
  if (d.length !== mainLen)
    throw recordCorruption(rec, `main data is ${d.length} bytes, xl_heap_multi_insert of ${ntuples} tuples is ${mainLen}`);
  const tupleData = heap2Data(rec, 0);
  let tupleStarts: Uint16Array | null = null;
  if (tupleData !== null) {
    tupleStarts = new Uint16Array(ntuples);
    let pos = 0;
    for (let i = 0; i < ntuples; i++) {
      pos += pos & 1; // SHORTALIGN
      if (pos + SIZE_OF_MULTI_INSERT_TUPLE > tupleData.length) {
        throw recordCorruption(rec, `block 0 data of ${tupleData.length} bytes ends inside the header of tuple ${i + 1} of ${ntuples}`, 0);
      }
      const dataLen = readU16LE(tupleData, pos);
      const hoff = tupleData[pos + 6]!;
      if (hoff < SIZEOF_HEAP_TUPLE_HEADER)
        throw recordCorruption(rec, `tuple ${i + 1}: t_hoff ${hoff} is below ${SIZEOF_HEAP_TUPLE_HEADER}`, 0);
      if (SIZEOF_HEAP_TUPLE_HEADER + dataLen > MAX_HEAP_TUPLE_SIZE)
        throw recordCorruption(rec, `tuple ${i + 1}: ${dataLen} data bytes exceed MaxHeapTupleSize`, 0);
      tupleStarts[i] = pos;
      pos += SIZE_OF_MULTI_INSERT_TUPLE + dataLen;
      if (pos > tupleData.length)
        throw recordCorruption(rec, `block 0 data of ${tupleData.length} bytes ends inside tuple ${i + 1} of ${ntuples}`, 0);
    }
    if (pos !== tupleData.length)
      throw recordCorruption(rec, `total tuple length mismatch: ${ntuples} tuples use ${pos} of ${tupleData.length} bytes`, 0);
  }
  return {
    flags: d[0]!,
    ntuples,
    init,
    offsets: init ? null : d.subarray(SIZE_OF_HEAP_MULTI_INSERT),
    tupleData,
    tupleStarts,
  };
}

export function decodeHeap2LockUpdated(rec: DecodedRecord): XlHeapLockUpdated {
  expectOp(rec, RM_HEAP2_ID, XLOG_HEAP2_LOCK_UPDATED, "Heap2/LOCK_UPDATED");
  const d = exactMain(rec, SIZE_OF_HEAP_LOCK_UPDATED, "xl_heap_lock_updated");
  requireBlock(rec, 0);
  return { xmax: readU32LE(d, 0), offnum: readU16LE(d, 4), infobitsSet: d[6]!, flags: d[7]! };
}

export function decodeHeap2NewCid(rec: DecodedRecord): XlHeapNewCid {
  expectOp(rec, RM_HEAP2_ID, XLOG_HEAP2_NEW_CID, "Heap2/NEW_CID");
  const d = exactMain(rec, SIZE_OF_HEAP_NEW_CID, "xl_heap_new_cid");
  return {
    topXid: readU32LE(d, 0),
    cmin: readU32LE(d, 4),
    cmax: readU32LE(d, 8),
    combocid: readU32LE(d, 12),
    spcNode: readU32LE(d, 16),
    dbNode: readU32LE(d, 20),
    relNode: readU32LE(d, 24),
    targetBlkno: ((readU16LE(d, 28) << 16) | readU16LE(d, 30)) >>> 0,
    targetOffnum: readU16LE(d, 32),
  };
}

export function decodeHeap2Rewrite(rec: DecodedRecord): XlHeapRewriteMapping {
  expectOp(rec, RM_HEAP2_ID, XLOG_HEAP2_REWRITE, "Heap2/REWRITE");
  const d = needMain(rec, SIZE_OF_HEAP_REWRITE_MAPPING, "xl_heap_rewrite_mapping");
  const numMappings = readU32LE(d, 24);
  const want = SIZE_OF_HEAP_REWRITE_MAPPING + SIZE_OF_LOGICAL_REWRITE_MAPPING * numMappings;
  if (d.length !== want)
    throw recordCorruption(rec, `main data is ${d.length} bytes, a rewrite mapping of ${numMappings} entries is ${want}`);
  const offsetHi = readU32LE(d, 20);
  const lsnHi = readU32LE(d, 36);
  if (offsetHi >= 0x20_0000 || lsnHi >= 0x20_0000) throw recordCorruption(rec, "rewrite mapping offset or start LSN beyond 2^53");
  return {
    mappedXid: readU32LE(d, 0),
    mappedDb: readU32LE(d, 4),
    mappedRel: readU32LE(d, 8),
    offset: offsetHi * 0x1_0000_0000 + readU32LE(d, 16),
    numMappings,
    startLsn: lsnHi * 0x1_0000_0000 + readU32LE(d, 32),
    mappings: d.subarray(SIZE_OF_HEAP_REWRITE_MAPPING),
  };
}
