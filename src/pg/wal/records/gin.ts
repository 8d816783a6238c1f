/**
 * Typed decoders of the GIN rmgr's WAL records (PostgreSQL 15 src/include/access/ginxlog.h),
 * read at their C offsets (little-endian; BlockIdData is two u16 halves, high half first):
 *
 *   info  record                 main data                                        blocks (data)
 *   0x10  CREATE_PTREE           size u32, posting list (size bytes)              0 new leaf (will_init)
 *   0x20  INSERT                 flags u16 [left u32-blockid, right u32-blockid   0 target (entry | data internal |
 *                                 when !ISLEAF]                                   recompress actions), [1 left child]
 *   0x30  SPLIT                  node 12 B, rrlink @12, leftChild @16,            0 left, 1 right, [2 root]: full-page
 *                                rightChild @20, flags u16 @24                    images; [3 left child]
 *   0x40  VACUUM_PAGE            -                                                0 page (full-page image)
 *   0x50  DELETE_PAGE            parentOffset u16 @0, rightLink u32 @4,           0 deleted, 1 parent, 2 left sibling
 *                                deleteXid u32 @8
 *   0x60  UPDATE_META_PAGE       node 12 B, GinMetaPageData 56 B @16,             0 meta (will_init), [1 tail page
 *                                prevTail @72, newRightlink @76, ntuples i32 @80  (ntuples index tuples)]
 *   0x70  INSERT_LISTPAGE        rightlink u32, ntuples i32                       0 list page (will_init; tuples)
 *   0x80  DELETE_LISTPAGE        GinMetaPageData 56 B, ndeleted i32 @56           0 meta, 1..ndeleted deleted (will_init)
 *   0x90  VACUUM_DATA_LEAF_PAGE  -                                                0 leaf (recompress actions)
 *
 * Block 0 data of INSERT:
 *   entry page      offset u16, isDelete u8, pad u8, IndexTuple (IndexTupleSize bytes)
 *   data internal   offset u16, PostingItem (child BlockIdData 4 B, key ItemPointerData 6 B)
 *   data leaf       ginxlogRecompressDataLeaf: nactions u16, then per action segno u8, type u8,
 *                   INSERT/REPLACE: GinPostingList (first 6 B, nbytes u16, SHORTALIGN(nbytes) B);
 *                   ADDITEMS: nitems u16, ItemPointerData × nitems; DELETE: nothing.
 *
 * Every length is checked before it is read; a short or inconsistent record is a
 * CorruptionError naming the record's LSN, rmgr and info. GinMetaPageData is kept as its raw
 * 56 bytes: redo copies it whole, padding included, exactly as PostgreSQL's memcpy does.
 */
import type { DecodedRecord } from "../record.js";
import { blockById, expectInfo, needMain, recordCorruption, requireBlock } from "./record_access.js";
import { readU16LE, readU32LE } from "../../../types/bytes.js";

export const XLOG_GIN_CREATE_PTREE = 0x10;
export const XLOG_GIN_INSERT = 0x20;
export const XLOG_GIN_SPLIT = 0x30;
export const XLOG_GIN_VACUUM_PAGE = 0x40;
export const XLOG_GIN_DELETE_PAGE = 0x50;
export const XLOG_GIN_UPDATE_META_PAGE = 0x60;
export const XLOG_GIN_INSERT_LISTPAGE = 0x70;
export const XLOG_GIN_DELETE_LISTPAGE = 0x80;
export const XLOG_GIN_VACUUM_DATA_LEAF_PAGE = 0x90;

/** ginxlogInsert / ginxlogSplit flags */
export const GIN_INSERT_ISDATA = 0x01;
export const GIN_INSERT_ISLEAF = 0x02;
export const GIN_SPLIT_ROOT = 0x04;

/** ginxlogSegmentAction types */
export const GIN_SEGMENT_UNMODIFIED = 0;
export const GIN_SEGMENT_DELETE = 1;
export const GIN_SEGMENT_INSERT = 2;
export const GIN_SEGMENT_REPLACE = 3;
export const GIN_SEGMENT_ADDITEMS = 4;

/** GIN_NDELETE_AT_ONCE: Min(16, XLR_MAX_BLOCK_ID - 1). */
export const GIN_NDELETE_AT_ONCE = 16;

export const SIZE_OF_GIN_META_PAGE_DATA = 56;
export const SIZE_OF_POSTING_ITEM = 10;
export const SIZE_OF_ITEM_POINTER = 6;
/** offsetof(GinPostingList, bytes): first ItemPointerData + nbytes u16. */
export const SIZE_OF_GIN_POSTING_LIST_HEADER = 8;

const SIZE_OF_CREATE_PTREE = 4;
const SIZE_OF_GIN_INSERT = 2;
const SIZE_OF_SPLIT_FIELDS = 26;
const SIZE_OF_DELETE_PAGE = 12;
const UPDATE_META_METADATA = 16;
const SIZE_OF_UPDATE_META_FIELDS = 84;
const SIZE_OF_INSERT_LISTPAGE = 8;
const SIZE_OF_DELETE_LISTPAGES_FIELDS = 60;
const INSERT_ENTRY_HEADER = 4;
const SIZE_OF_INSERT_DATA_INTERNAL = 2 + SIZE_OF_POSTING_ITEM;

const INDEX_SIZE_MASK = 0x1fff;
const SIZE_OF_INDEX_TUPLE_DATA = 8;
const T_INFO_OFFSET = 6;
/** No record carries more actions than a leaf has segments; a segment number is a u8. */
const MAX_ACTIONS = 256;

export interface XlGinCreatePostingTree {
  /** The compressed posting list (`size` bytes), a subarray of the record. */
  postingList: Uint8Array;
}

export interface XlGinInsert {
  flags: number;
  isLeaf: boolean;
  isData: boolean;
  /** When !isLeaf: the child whose split this insertion finishes, and its right sibling. */
  leftChildBlkno: number;
  rightChildBlkno: number;
}

export interface GinInsertEntry {
  offset: number;
  isDelete: boolean;
  /** The index tuple (IndexTupleSize bytes), a subarray of the record. */
  tuple: Uint8Array;
}

export interface GinInsertDataInternal {
  offset: number;
  /** The 10-byte PostingItem, a subarray of the record. */
  newItem: Uint8Array;
}

/**
 * ginxlogRecompressDataLeaf, validated: action i concerns segment segnos[i] with type
 * types[i]; its payload is data[starts[i], starts[i] + lens[i]) — the GinPostingList for
 * INSERT/REPLACE, the ItemPointerData array for ADDITEMS (lens = bytes), empty for DELETE.
 */
export interface GinRecompress {
  nactions: number;
  segnos: Uint8Array;
  types: Uint8Array;
  starts: Int32Array;
  lens: Int32Array;
  data: Uint8Array;
}

export interface XlGinSplit {
  rrlink: number;
  leftChildBlkno: number;
  rightChildBlkno: number;
  flags: number;
  isLeaf: boolean;
  isRoot: boolean;
}

export interface XlGinDeletePage {
  parentOffset: number;
  rightLink: number;
  deleteXid: number;
}

export interface XlGinUpdateMeta {
  /** GinMetaPageData as logged (56 bytes), a subarray of the record. */
  metadata: Uint8Array;
  prevTail: number;
  newRightlink: number;
  ntuples: number;
}

export interface XlGinInsertListPage {
  rightlink: number;
  ntuples: number;
}

export interface XlGinDeleteListPages {
  metadata: Uint8Array;
  ndeleted: number;
}

/** BlockIdData: bi_hi u16 then bi_lo u16. */
export function blockIdAt(b: Uint8Array, o: number): number {
  return readU16LE(b, o) * 0x1_0000 + readU16LE(b, o + 2);
}

export function decodeGinCreatePostingTree(rec: DecodedRecord): XlGinCreatePostingTree {
  expectInfo(rec, XLOG_GIN_CREATE_PTREE);
  const d = needMain(rec, SIZE_OF_CREATE_PTREE, "ginxlogCreatePostingTree");
  const size = readU32LE(d, 0);
  if (d.length !== SIZE_OF_CREATE_PTREE + size)
    throw recordCorruption(rec, `posting list of ${size} bytes, ${d.length - SIZE_OF_CREATE_PTREE} present`);
  return { postingList: d.subarray(SIZE_OF_CREATE_PTREE) };
}

export function decodeGinInsert(rec: DecodedRecord): XlGinInsert {
  expectInfo(rec, XLOG_GIN_INSERT);
  const d = needMain(rec, SIZE_OF_GIN_INSERT, "ginxlogInsert");
  const flags = readU16LE(d, 0);
  const isLeaf = (flags & GIN_INSERT_ISLEAF) !== 0;
  const want = isLeaf ? SIZE_OF_GIN_INSERT : SIZE_OF_GIN_INSERT + 8;
  if (d.length !== want)
    throw recordCorruption(rec, `ginxlogInsert main data is ${d.length} bytes, flags 0x${flags.toString(16)} need ${want}`);
  return {
    flags,
    isLeaf,
    isData: (flags & GIN_INSERT_ISDATA) !== 0,
    leftChildBlkno: isLeaf ? 0xffff_ffff : blockIdAt(d, 2),
    rightChildBlkno: isLeaf ? 0xffff_ffff : blockIdAt(d, 6),
  };
}

/** INSERT block 0 on an entry page: ginxlogInsertEntry with its tuple filling the rest. */
export function decodeGinInsertEntry(rec: DecodedRecord): GinInsertEntry {
  const d = requireBlock(rec, 0).data;
  if (d.length < INSERT_ENTRY_HEADER + SIZE_OF_INDEX_TUPLE_DATA) throw recordCorruption(rec, `ginxlogInsertEntry of ${d.length} bytes`);
  const size = readU16LE(d, INSERT_ENTRY_HEADER + T_INFO_OFFSET) & INDEX_SIZE_MASK;
  if (size !== d.length - INSERT_ENTRY_HEADER)
    throw recordCorruption(rec, `entry tuple size ${size}, ${d.length - INSERT_ENTRY_HEADER} bytes logged`);
  return { offset: readU16LE(d, 0), isDelete: d[2] !== 0, tuple: d.subarray(INSERT_ENTRY_HEADER) };
}

/** INSERT block 0 on an internal posting-tree page: ginxlogInsertDataInternal. */
export function decodeGinInsertDataInternal(rec: DecodedRecord): GinInsertDataInternal {
  const d = requireBlock(rec, 0).data;
  if (d.length !== SIZE_OF_INSERT_DATA_INTERNAL)
    throw recordCorruption(rec, `ginxlogInsertDataInternal of ${d.length} bytes, expected ${SIZE_OF_INSERT_DATA_INTERNAL}`);
  return { offset: readU16LE(d, 0), newItem: d.subarray(2, 2 + SIZE_OF_POSTING_ITEM) };
}

/** Size of the GinPostingList at d[at] (header + SHORTALIGN(nbytes)), checked against `end`. */
function postingListSize(rec: DecodedRecord, d: Uint8Array, at: number, end: number, what: string): number {
  if (at + SIZE_OF_GIN_POSTING_LIST_HEADER > end) throw recordCorruption(rec, `${what}: posting list header past the end of the data`);
  const nbytes = readU16LE(d, at + SIZE_OF_ITEM_POINTER);
  const size = SIZE_OF_GIN_POSTING_LIST_HEADER + ((nbytes + 1) & ~1);
  if (at + size > end) throw recordCorruption(rec, `${what}: posting list of ${size} bytes, ${end - at} present`);
  return size;
}

/** Block `blockId`'s data as a ginxlogRecompressDataLeaf (INSERT on a data leaf, VACUUM_DATA_LEAF_PAGE). */
export function decodeGinRecompress(rec: DecodedRecord, blockId: number): GinRecompress {
  const d = requireBlock(rec, blockId).data;
  if (d.length < 2) throw recordCorruption(rec, `ginxlogRecompressDataLeaf of ${d.length} bytes`);
  const nactions = readU16LE(d, 0);
  if (nactions > MAX_ACTIONS) throw recordCorruption(rec, `${nactions} segment actions`);
  const segnos = new Uint8Array(nactions);
  const types = new Uint8Array(nactions);
  const starts = new Int32Array(nactions);
  const lens = new Int32Array(nactions);
  let pos = 2;
  for (let i = 0; i < nactions; i++) {
    if (pos + 2 > d.length) throw recordCorruption(rec, `segment action ${i} past the end of the data`);
    const segno = d[pos]!;
    const type = d[pos + 1]!;
    pos += 2;
    if (i > 0 && segno < segnos[i - 1]!)
      throw recordCorruption(rec, `segment action ${i} on segment ${segno} after segment ${segnos[i - 1]}`);
    segnos[i] = segno;
    types[i] = type;
    starts[i] = pos;
    if (type === GIN_SEGMENT_INSERT || type === GIN_SEGMENT_REPLACE) {
      const size = postingListSize(rec, d, pos, d.length, `segment action ${i}`);
      lens[i] = size;
      pos += size;
    } else if (type === GIN_SEGMENT_ADDITEMS) {
      if (pos + 2 > d.length) throw recordCorruption(rec, `segment action ${i}: item count past the end of the data`);
      const nitems = readU16LE(d, pos);
      pos += 2;
      const len = nitems * SIZE_OF_ITEM_POINTER;
      if (pos + len > d.length)
        throw recordCorruption(rec, `segment action ${i}: ${nitems} items need ${len} bytes, ${d.length - pos} present`);
      starts[i] = pos;
      lens[i] = len;
      pos += len;
    } else if (type === GIN_SEGMENT_DELETE) {
      lens[i] = 0;
    } else {
      throw recordCorruption(rec, `unexpected GIN leaf action: ${type}`);
    }
  }
  if (pos !== d.length) throw recordCorruption(rec, `${d.length - pos} bytes after ${nactions} segment actions`);
  return { nactions, segnos, types, starts, lens, data: d };
}

export function decodeGinSplit(rec: DecodedRecord): XlGinSplit {
  expectInfo(rec, XLOG_GIN_SPLIT);
  const d = needMain(rec, SIZE_OF_SPLIT_FIELDS, "ginxlogSplit");
  const flags = readU16LE(d, 24);
  return {
    rrlink: readU32LE(d, 12),
    leftChildBlkno: readU32LE(d, 16),
    rightChildBlkno: readU32LE(d, 20),
    flags,
    isLeaf: (flags & GIN_INSERT_ISLEAF) !== 0,
    isRoot: (flags & GIN_SPLIT_ROOT) !== 0,
  };
}

export function decodeGinDeletePage(rec: DecodedRecord): XlGinDeletePage {
  expectInfo(rec, XLOG_GIN_DELETE_PAGE);
  const d = needMain(rec, SIZE_OF_DELETE_PAGE, "ginxlogDeletePage");
  return { parentOffset: readU16LE(d, 0), rightLink: readU32LE(d, 4), deleteXid: readU32LE(d, 8) };
}

export function decodeGinUpdateMeta(rec: DecodedRecord): XlGinUpdateMeta {
  expectInfo(rec, XLOG_GIN_UPDATE_META_PAGE);
  const d = needMain(rec, SIZE_OF_UPDATE_META_FIELDS, "ginxlogUpdateMeta");
  const ntuples = readU32LE(d, 80) | 0;
  return {
    metadata: d.subarray(UPDATE_META_METADATA, UPDATE_META_METADATA + SIZE_OF_GIN_META_PAGE_DATA),
    prevTail: readU32LE(d, 72),
    newRightlink: readU32LE(d, 76),
    ntuples,
  };
}

export function decodeGinInsertListPage(rec: DecodedRecord): XlGinInsertListPage {
  expectInfo(rec, XLOG_GIN_INSERT_LISTPAGE);
  const d = needMain(rec, SIZE_OF_INSERT_LISTPAGE, "ginxlogInsertListPage");
  const ntuples = readU32LE(d, 4) | 0;
  if (ntuples < 0) throw recordCorruption(rec, `negative ntuples ${ntuples}`);
  return { rightlink: readU32LE(d, 0), ntuples };
}

export function decodeGinDeleteListPages(rec: DecodedRecord): XlGinDeleteListPages {
  expectInfo(rec, XLOG_GIN_DELETE_LISTPAGE);
  const d = needMain(rec, SIZE_OF_DELETE_LISTPAGES_FIELDS, "ginxlogDeleteListPages");
  const ndeleted = readU32LE(d, 56) | 0;
  if (ndeleted < 0 || ndeleted > GIN_NDELETE_AT_ONCE)
    throw recordCorruption(rec, `ndeleted ${ndeleted} outside [0, ${GIN_NDELETE_AT_ONCE}]`);
  for (let i = 1; i <= ndeleted; i++) {
    if (blockById(rec, i) === undefined) throw recordCorruption(rec, `ndeleted ${ndeleted} but no block reference ${i}`);
  }
  return { metadata: d.subarray(0, SIZE_OF_GIN_META_PAGE_DATA), ndeleted };
}

/**
 * Block `blockId`'s data as `ntuples` index tuples laid end to end (IndexTupleSize bytes each,
 * unaligned), filling it exactly. Returns the start of each tuple; tuple i ends where i + 1
 * starts (the last at data.length).
 */
export function decodeGinTupleRun(rec: DecodedRecord, blockId: number, ntuples: number): { data: Uint8Array; starts: Int32Array } {
  const d = requireBlock(rec, blockId).data;
  // Each tuple takes at least its 8-byte header: a count beyond that cannot be honest.
  if (ntuples > d.length / SIZE_OF_INDEX_TUPLE_DATA)
    throw recordCorruption(rec, `${ntuples} tuples cannot fit in ${d.length} bytes of block ${blockId}`);
  const starts = new Int32Array(ntuples);
  let pos = 0;
  for (let i = 0; i < ntuples; i++) {
    if (pos + SIZE_OF_INDEX_TUPLE_DATA > d.length) throw recordCorruption(rec, `block ${blockId} tuple ${i} past the end of the data`);
    const size = readU16LE(d, pos + T_INFO_OFFSET) & INDEX_SIZE_MASK;
    if (size < SIZE_OF_INDEX_TUPLE_DATA || pos + size > d.length)
      throw recordCorruption(rec, `block ${blockId} tuple ${i}: size ${size}, ${d.length - pos} bytes present`);
    starts[i] = pos;
    pos += size;
  }
  if (pos !== d.length) throw recordCorruption(rec, `block ${blockId}: ${d.length - pos} bytes after ${ntuples} tuples`);
  return { data: d, starts };
}
