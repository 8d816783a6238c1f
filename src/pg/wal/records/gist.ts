/**
 * Typed GiST WAL records (src/include/access/gistxlog.h of PostgreSQL 15): main data and
 * block data of every info code, decoded with every length checked first. A short or
 * malformed record is a CorruptionError naming the record's LSN, rmgr and info.
 *
 *   info  name          main data (x86-64 layout)                        blocks
 *   0x00  PAGE_UPDATE   ntodelete u16 @0, ntoinsert u16 @2 (4)            0 page: todelete u16×n ‖ tuples
 *                                                                        1 left child (fix-up only)
 *   0x10  DELETE        latestRemovedXid u32 @0, ntodelete u16 @4 (6)     0 leaf page
 *                       ‖ todelete u16×ntodelete (in the main data)
 *   0x20  PAGE_REUSE    RelFileNode @0, block u32 @12, latestRemovedFullXid u64 @16 (24); no block
 *   0x30  PAGE_SPLIT    origrlink u32 @0, orignsn u64 @8, origleaf u8 @16, npage u16 @18,
 *                       markfollowright u8 @20 (24)                      0 left child (fix-up only)
 *                                                                        1..npage: i32 ntuples ‖ tuples
 *   0x60  PAGE_DELETE   deleteXid u64 @0, downlinkOffset u16 @8 (10)      0 deleted page, 1 parent
 *   0x70  ASSIGN_LSN    an int 0, no block
 *
 * Tuples are IndexTuples: t_tid (6 bytes) then t_info u16 whose low 13 bits are the size.
 * 64-bit values (NSN, full xids) are kept as hi/lo u32 halves: no BigInt, no 2^53 limit.
 */
import { BLCKSZ } from "../../consts.js";
import type { DecodedRecord } from "../record.js";
import { blockById, needMain, recordCorruption } from "./record_access.js";
import { readU16LE, readU32LE } from "../../../types/bytes.js";

export const XLOG_GIST_PAGE_UPDATE = 0x00;
export const XLOG_GIST_DELETE = 0x10;
export const XLOG_GIST_PAGE_REUSE = 0x20;
export const XLOG_GIST_PAGE_SPLIT = 0x30;
export const XLOG_GIST_PAGE_DELETE = 0x60;
export const XLOG_GIST_ASSIGN_LSN = 0x70;
export const XLOG_GIST_OPMASK = 0xf0;

/** sizeof(IndexTupleData): the smallest tuple; INDEX_SIZE_MASK extracts its size from t_info. */
export const SIZE_OF_INDEX_TUPLE = 8;
export const INDEX_SIZE_MASK = 0x1fff;

const SIZE_OF_PAGE_UPDATE = 4;
const SIZE_OF_DELETE = 6;
const SIZE_OF_PAGE_REUSE = 24;
const SIZE_OF_PAGE_SPLIT = 24;
const SIZE_OF_PAGE_DELETE = 10;
/** A page holds at most BLCKSZ / (tuple + line pointer) tuples: the bound of every tuple loop. */
const MAX_TUPLES_PER_PAGE = BLCKSZ / (SIZE_OF_INDEX_TUPLE + 4);

/**
 * Split `bytes[start, end)` into consecutive IndexTuples (subarrays), each at least a header
 * long and inside the range, which they must cover exactly.
 */
function indexTuples(rec: DecodedRecord, bytes: Uint8Array, start: number, end: number, what: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  let p = start;
  while (p < end) {
    if (out.length >= MAX_TUPLES_PER_PAGE) throw recordCorruption(rec, `${what}: more than ${MAX_TUPLES_PER_PAGE} tuples`);
    if (end - p < SIZE_OF_INDEX_TUPLE) throw recordCorruption(rec, `${what}: ${end - p} bytes left, shorter than a tuple header`);
    const size = readU16LE(bytes, p + 6) & INDEX_SIZE_MASK;
    if (size < SIZE_OF_INDEX_TUPLE || size > end - p) {
      throw recordCorruption(rec, `${what}: tuple at byte ${p - start} of size ${size} with ${end - p} bytes left`);
    }
    out.push(bytes.subarray(p, p + size));
    p += size;
  }
  return out;
}

/** IndexTuples carried back to back: tuple i is data[bounds[i], bounds[i + 1]). */
export interface GistTupleRun {
  data: Uint8Array;
  bounds: Uint32Array;
}

/** indexTuples as positions (no view per tuple). */
function indexTupleRun(rec: DecodedRecord, bytes: Uint8Array, start: number, end: number, what: string): GistTupleRun {
  let n = 0;
  let p = start;
  while (p < end) {
    if (n >= MAX_TUPLES_PER_PAGE) throw recordCorruption(rec, `${what}: more than ${MAX_TUPLES_PER_PAGE} tuples`);
    if (end - p < SIZE_OF_INDEX_TUPLE) throw recordCorruption(rec, `${what}: ${end - p} bytes left, shorter than a tuple header`);
    const size = readU16LE(bytes, p + 6) & INDEX_SIZE_MASK;
    if (size < SIZE_OF_INDEX_TUPLE || size > end - p) {
      throw recordCorruption(rec, `${what}: tuple at byte ${p - start} of size ${size} with ${end - p} bytes left`);
    }
    p += size;
    n++;
  }
  const bounds = new Uint32Array(n + 1);
  p = start;
  for (let i = 0; i < n; i++) {
    bounds[i] = p;
    p += readU16LE(bytes, p + 6) & INDEX_SIZE_MASK;
  }
  bounds[n] = p;
  return { data: bytes, bounds };
}

function offsets(bytes: Uint8Array, at: number, n: number): Uint16Array {
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = readU16LE(bytes, at + 2 * i);
  return out;
}

export interface GistPageUpdate {
  ntodelete: number;
  ntoinsert: number;
}

export function decodeGistPageUpdate(rec: DecodedRecord): GistPageUpdate {
  const d = needMain(rec, SIZE_OF_PAGE_UPDATE, "gistxlogPageUpdate");
  return { ntodelete: readU16LE(d, 0), ntoinsert: readU16LE(d, 2) };
}

/** Block 0's data of a PAGE_UPDATE: the offsets to delete and the tuples to add. */
export interface GistPageUpdateBlock {
  todelete: Uint16Array;
  tuples: Uint8Array[];
}

export function decodeGistPageUpdateBlock(rec: DecodedRecord, xl: GistPageUpdate, data: Uint8Array): GistPageUpdateBlock {
  const delBytes = 2 * xl.ntodelete;
  if (data.length < delBytes) {
    throw recordCorruption(rec, `block 0 data of ${data.length} bytes is shorter than ${xl.ntodelete} offsets to delete`);
  }
  const tuples = indexTuples(rec, data, delBytes, data.length, "block 0 tuples");
  if (tuples.length !== xl.ntoinsert)
    throw recordCorruption(rec, `block 0 carries ${tuples.length} tuples, the record announces ${xl.ntoinsert}`);
  return { todelete: offsets(data, 0, xl.ntodelete), tuples };
}

export interface GistDelete {
  latestRemovedXid: number;
  /** Empty when the record carries no offsets (PostgreSQL then deletes nothing). */
  todelete: Uint16Array;
}

export function decodeGistDelete(rec: DecodedRecord): GistDelete {
  const d = needMain(rec, SIZE_OF_DELETE, "gistxlogDelete");
  const ntodelete = readU16LE(d, 4);
  // gistRedoDeleteRecord deletes only when the main data goes on past the header.
  if (d.length === SIZE_OF_DELETE) return { latestRemovedXid: readU32LE(d, 0), todelete: new Uint16Array(0) };
  if (d.length < SIZE_OF_DELETE + 2 * ntodelete) {
    throw recordCorruption(rec, `main data of ${d.length} bytes is shorter than ${ntodelete} offsets to delete`);
  }
  return { latestRemovedXid: readU32LE(d, 0), todelete: offsets(d, SIZE_OF_DELETE, ntodelete) };
}

export interface GistPageReuse {
  spcNode: number;
  dbNode: number;
  relNode: number;
  block: number;
  latestRemovedFullXidHi: number;
  latestRemovedFullXidLo: number;
}

export function decodeGistPageReuse(rec: DecodedRecord): GistPageReuse {
  const d = needMain(rec, SIZE_OF_PAGE_REUSE, "gistxlogPageReuse");
  return {
    spcNode: readU32LE(d, 0),
    dbNode: readU32LE(d, 4),
    relNode: readU32LE(d, 8),
    block: readU32LE(d, 12),
    latestRemovedFullXidLo: readU32LE(d, 16),
    latestRemovedFullXidHi: readU32LE(d, 20),
  };
}

export interface GistPageSplit {
  origrlink: number;
  orignsnHi: number;
  orignsnLo: number;
  origleaf: boolean;
  npage: number;
  markfollowright: boolean;
}

export function decodeGistPageSplit(rec: DecodedRecord): GistPageSplit {
  const d = needMain(rec, SIZE_OF_PAGE_SPLIT, "gistxlogPageSplit");
  const npage = readU16LE(d, 18);
  // Blocks 1..npage are the split pages: every one must be referenced.
  for (let i = 1; i <= npage; i++) {
    if (blockById(rec, i) === undefined) throw recordCorruption(rec, `split of ${npage} pages lacks block reference ${i}`);
  }
  return {
    origrlink: readU32LE(d, 0),
    orignsnLo: readU32LE(d, 8),
    orignsnHi: readU32LE(d, 12),
    origleaf: d[16] !== 0,
    npage,
    markfollowright: d[20] !== 0,
  };
}

/** A split page's block data: an int count, then that many tuples covering the rest. */
export function decodeGistSplitPageTuples(rec: DecodedRecord, blockId: number, data: Uint8Array): GistTupleRun {
  if (data.length < 4) throw recordCorruption(rec, `block ${blockId} data of ${data.length} bytes lacks the tuple count`);
  const n = readU32LE(data, 0) | 0;
  const tuples = indexTupleRun(rec, data, 4, data.length, `block ${blockId} tuples`);
  if (tuples.bounds.length - 1 !== n)
    throw recordCorruption(rec, `block ${blockId} carries ${tuples.bounds.length - 1} tuples, its count says ${n}`);
  return tuples;
}

export interface GistPageDelete {
  deleteXidHi: number;
  deleteXidLo: number;
  downlinkOffset: number;
}

export function decodeGistPageDelete(rec: DecodedRecord): GistPageDelete {
  const d = needMain(rec, SIZE_OF_PAGE_DELETE, "gistxlogPageDelete");
  return { deleteXidLo: readU32LE(d, 0), deleteXidHi: readU32LE(d, 4), downlinkOffset: readU16LE(d, 8) };
}
