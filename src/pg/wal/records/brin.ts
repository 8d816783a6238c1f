/**
 * Typed BRIN WAL records (src/include/access/brin_xlog.h of PostgreSQL 15), every length
 * checked before reading; a short record is a CorruptionError naming LSN, rmgr and info.
 *
 *   info (& 0x70)         main data (x86-64 layout)                     blocks
 *   0x00 CREATE_INDEX     pagesPerRange u32 @0, version u16 @4 (6)       0 metapage (will init)
 *   0x10 INSERT           heapBlk u32 @0, pagesPerRange u32 @4,          0 regular page, data = BrinTuple
 *                         offnum u16 @8 (10)                             1 revmap page
 *   0x20 UPDATE           oldOffnum u16 @0, then an INSERT body @4 (14)  0, 1 as INSERT; 2 old page
 *   0x30 SAMEPAGE_UPDATE  offnum u16 @0 (2)                              0 page, data = BrinTuple
 *   0x40 REVMAP_EXTEND    targetBlk u32 @0 (4)                           0 metapage, 1 new revmap page (will init)
 *   0x50 DESUMMARIZE      pagesPerRange u32 @0, heapBlk u32 @4,          0 revmap page, 1 regular page
 *                         regOffset u16 @8 (10)
 * INSERT and UPDATE carry XLOG_BRIN_INIT_PAGE (0x80) when block 0 is a new page.
 */
import type { DecodedRecord } from "../record.js";
import { needMain, recordCorruption } from "./record_access.js";
import { readU16LE, readU32LE } from "../../../types/bytes.js";

export const XLOG_BRIN_CREATE_INDEX = 0x00;
export const XLOG_BRIN_INSERT = 0x10;
export const XLOG_BRIN_UPDATE = 0x20;
export const XLOG_BRIN_SAMEPAGE_UPDATE = 0x30;
export const XLOG_BRIN_REVMAP_EXTEND = 0x40;
export const XLOG_BRIN_DESUMMARIZE = 0x50;
export const XLOG_BRIN_OPMASK = 0x70;
export const XLOG_BRIN_INIT_PAGE = 0x80;

const SIZE_OF_CREATE_IDX = 6;
const SIZE_OF_INSERT = 10;
const SIZE_OF_UPDATE = 14;
const SIZE_OF_SAMEPAGE_UPDATE = 2;
const SIZE_OF_REVMAP_EXTEND = 4;
const SIZE_OF_DESUMMARIZE = 10;

export interface BrinCreateIdx {
  pagesPerRange: number;
  version: number;
}

export function decodeBrinCreateIdx(rec: DecodedRecord): BrinCreateIdx {
  const d = needMain(rec, SIZE_OF_CREATE_IDX, "xl_brin_createidx");
  return { pagesPerRange: readU32LE(d, 0), version: readU16LE(d, 4) };
}

/** xl_brin_insert, also the tail of xl_brin_update. */
export interface BrinInsert {
  heapBlk: number;
  pagesPerRange: number;
  offnum: number;
}

function insertAt(rec: DecodedRecord, d: Uint8Array, at: number): BrinInsert {
  const pagesPerRange = readU32LE(d, at + 4);
  // HEAPBLK_TO_REVMAP_INDEX divides by it.
  if (pagesPerRange === 0) throw recordCorruption(rec, "pagesPerRange is 0");
  return { heapBlk: readU32LE(d, at), pagesPerRange, offnum: readU16LE(d, at + 8) };
}

export function decodeBrinInsert(rec: DecodedRecord): BrinInsert {
  return insertAt(rec, needMain(rec, SIZE_OF_INSERT, "xl_brin_insert"), 0);
}

export interface BrinUpdate {
  oldOffnum: number;
  insert: BrinInsert;
}

export function decodeBrinUpdate(rec: DecodedRecord): BrinUpdate {
  const d = needMain(rec, SIZE_OF_UPDATE, "xl_brin_update");
  return { oldOffnum: readU16LE(d, 0), insert: insertAt(rec, d, 4) };
}

export interface BrinSamepageUpdate {
  offnum: number;
}

export function decodeBrinSamepageUpdate(rec: DecodedRecord): BrinSamepageUpdate {
  return { offnum: readU16LE(needMain(rec, SIZE_OF_SAMEPAGE_UPDATE, "xl_brin_samepage_update"), 0) };
}

export interface BrinRevmapExtend {
  targetBlk: number;
}

export function decodeBrinRevmapExtend(rec: DecodedRecord): BrinRevmapExtend {
  return { targetBlk: readU32LE(needMain(rec, SIZE_OF_REVMAP_EXTEND, "xl_brin_revmap_extend"), 0) };
}

export interface BrinDesummarize {
  pagesPerRange: number;
  heapBlk: number;
  regOffset: number;
}

export function decodeBrinDesummarize(rec: DecodedRecord): BrinDesummarize {
  const d = needMain(rec, SIZE_OF_DESUMMARIZE, "xl_brin_desummarize");
  const pagesPerRange = readU32LE(d, 0);
  if (pagesPerRange === 0) throw recordCorruption(rec, "pagesPerRange is 0");
  return { pagesPerRange, heapBlk: readU32LE(d, 4), regOffset: readU16LE(d, 8) };
}
