/**
 * Typed SP-GiST WAL records (src/include/access/spgxlog.h of PostgreSQL 15). Everything an
 * SP-GiST record carries is main data (no block data); tuples inside it are unaligned.
 * Every length is checked before reading: a short or malformed record is a CorruptionError
 * naming LSN, rmgr and info.
 *
 * Main data layouts (x86-64; spgxlogState = myXid u32, isBuild u8, 8 bytes, 4-aligned):
 *   0x10 ADD_LEAF       newPage u8 @0, storesNulls u8 @1, offnumLeaf @2, offnumHeadLeaf @4,
 *                       offnumParent @6, nodeI @8 (10) ‖ leaf tuple
 *   0x20 MOVE_LEAFS     nMoves @0, newPage @2, replaceDead @3, storesNulls @4, offnumParent @6,
 *                       nodeI @8, stateSrc @12 (20) ‖ toDelete u16×nMoves
 *                       ‖ toInsert u16×nInsert ‖ nInsert leaf tuples   (nInsert = replaceDead ? 1 : nMoves + 1)
 *   0x30 ADD_NODE       offnum @0, offnumNew @2, newPage @4, parentBlk i8 @5, offnumParent @6,
 *                       nodeI @8, stateSrc @12 (20) ‖ inner tuple
 *   0x40 SPLIT_TUPLE    offnumPrefix @0, offnumPostfix @2, newPage @4, postfixBlkSame @5 (6)
 *                       ‖ prefix inner tuple ‖ postfix inner tuple
 *   0x50 PICKSPLIT      isRootSplit @0, nDelete @2, nInsert @4, initSrc @6, initDest @7,
 *                       offnumInner @8, initInner @10, storesNulls @11, innerIsParent @12,
 *                       offnumParent @14, nodeI @16, stateSrc @20 (28) ‖ toDelete u16×nDelete
 *                       ‖ toInsert u16×nInsert ‖ leafPageSelect u8×nInsert ‖ inner tuple ‖ nInsert leaf tuples
 *   0x60 VACUUM_LEAF    nDead @0, nPlaceholder @2, nMove @4, nChain @6, stateSrc @8 (16)
 *                       ‖ toDead ‖ toPlaceholder ‖ moveSrc ‖ moveDest ‖ chainSrc ‖ chainDest (u16 each)
 *   0x70 VACUUM_ROOT    nDelete @0, stateSrc @4 (12) ‖ toDelete u16×nDelete
 *   0x80 VACUUM_REDIRECT nToPlaceholder @0, firstPlaceholder @2, newestRedirectXid u32 @4 (8)
 *                       ‖ offsets u16×nToPlaceholder
 *
 * Tuple headers: a leaf or dead tuple starts with a u32 whose bits 0-1 are tupstate and bits
 * 2-31 its size; an inner tuple's u32 holds tupstate (0-1), allTheSame (2), nNodes (3-15),
 * prefixSize (16-31), and its size is the u16 at byte 4.
 */
import type { DecodedRecord } from "../record.js";
import { needMain, recordCorruption } from "./record_access.js";
import { readU16LE, readU32LE } from "../../../types/bytes.js";

export const XLOG_SPGIST_ADD_LEAF = 0x10;
export const XLOG_SPGIST_MOVE_LEAFS = 0x20;
export const XLOG_SPGIST_ADD_NODE = 0x30;
export const XLOG_SPGIST_SPLIT_TUPLE = 0x40;
export const XLOG_SPGIST_PICKSPLIT = 0x50;
export const XLOG_SPGIST_VACUUM_LEAF = 0x60;
export const XLOG_SPGIST_VACUUM_ROOT = 0x70;
export const XLOG_SPGIST_VACUUM_REDIRECT = 0x80;
export const XLOG_SPGIST_OPMASK = 0xf0;

/** sizeof(SpGistLeafTupleData) and sizeof(SpGistInnerTupleData): the smallest headers. */
export const SIZE_OF_SPGIST_LEAF_TUPLE = 12;
export const SIZE_OF_SPGIST_INNER_TUPLE = 8;

const SIZE_OF_ADD_LEAF = 10;
const SIZE_OF_MOVE_LEAFS = 20;
const SIZE_OF_ADD_NODE = 20;
const SIZE_OF_SPLIT_TUPLE = 6;
const SIZE_OF_PICKSPLIT = 28;
const SIZE_OF_VACUUM_LEAF = 16;
const SIZE_OF_VACUUM_ROOT = 12;
const SIZE_OF_VACUUM_REDIRECT = 8;

/** The record state PostgreSQL's redo builds a fake SpGistState from (fillFakeState). */
export interface SpgState {
  myXid: number;
  isBuild: boolean;
}

function state(d: Uint8Array, at: number): SpgState {
  return { myXid: readU32LE(d, at), isBuild: d[at + 4] !== 0 };
}

/** A cursor over the main data: every read checks the bytes are there. */
class Reader {
  pos: number;
  constructor(
    readonly rec: DecodedRecord,
    readonly d: Uint8Array,
    start: number,
  ) {
    this.pos = start;
  }

  offsets(n: number, what: string): Uint16Array {
    if (this.d.length - this.pos < 2 * n)
      throw recordCorruption(this.rec, `${what}: ${n} offsets at byte ${this.pos} overrun ${this.d.length} bytes of main data`);
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = readU16LE(this.d, this.pos + 2 * i);
    this.pos += 2 * n;
    return out;
  }

  bytes(n: number, what: string): Uint8Array {
    if (this.d.length - this.pos < n)
      throw recordCorruption(this.rec, `${what}: ${n} bytes at byte ${this.pos} overrun ${this.d.length} bytes of main data`);
    const out = this.d.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A leaf tuple: its size is bits 2-31 of its first word. */
  leafTuple(what: string): Uint8Array {
    const start = this.leafTupleAt(what);
    return this.d.subarray(start, this.pos);
  }

  /** leafTuple without a view: the tuple's start in the main data (it ends at `pos`). */
  leafTupleAt(what: string): number {
    if (this.d.length - this.pos < SIZE_OF_SPGIST_LEAF_TUPLE)
      throw recordCorruption(this.rec, `${what}: leaf tuple header at byte ${this.pos} overruns the main data`);
    const size = readU32LE(this.d, this.pos) >>> 2;
    if (size < SIZE_OF_SPGIST_LEAF_TUPLE)
      throw recordCorruption(this.rec, `${what}: leaf tuple of size ${size} is shorter than its header`);
    if (this.d.length - this.pos < size)
      throw recordCorruption(this.rec, `${what}: ${size} bytes at byte ${this.pos} overrun ${this.d.length} bytes of main data`);
    const start = this.pos;
    this.pos += size;
    return start;
  }

  /** n leaf tuples in a row, as positions in the main data (no view per tuple). */
  leafTuples(n: number, what: string): SpgLeafTuples {
    const starts = new Uint32Array(n);
    const sizes = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      starts[i] = this.leafTupleAt(`${what} ${i}`);
      sizes[i] = this.pos - starts[i]!;
    }
    return { data: this.d, starts, sizes };
  }

  /** An inner tuple: its size is the u16 at byte 4. */
  innerTuple(what: string): Uint8Array {
    if (this.d.length - this.pos < SIZE_OF_SPGIST_INNER_TUPLE)
      throw recordCorruption(this.rec, `${what}: inner tuple header at byte ${this.pos} overruns the main data`);
    const size = readU16LE(this.d, this.pos + 4);
    if (size < SIZE_OF_SPGIST_INNER_TUPLE)
      throw recordCorruption(this.rec, `${what}: inner tuple of size ${size} is shorter than its header`);
    return this.bytes(size, what);
  }
}

/** Leaf tuples carried in a record: tuple i is data[starts[i], starts[i] + sizes[i]). */
export interface SpgLeafTuples {
  data: Uint8Array;
  starts: Uint32Array;
  sizes: Uint32Array;
}

export interface SpgAddLeaf {
  newPage: boolean;
  storesNulls: boolean;
  offnumLeaf: number;
  offnumHeadLeaf: number;
  offnumParent: number;
  nodeI: number;
  leafTuple: Uint8Array;
}

export function decodeSpgAddLeaf(rec: DecodedRecord): SpgAddLeaf {
  const d = needMain(rec, SIZE_OF_ADD_LEAF, "spgxlogAddLeaf");
  const r = new Reader(rec, d, SIZE_OF_ADD_LEAF);
  return {
    newPage: d[0] !== 0,
    storesNulls: d[1] !== 0,
    offnumLeaf: readU16LE(d, 2),
    offnumHeadLeaf: readU16LE(d, 4),
    offnumParent: readU16LE(d, 6),
    nodeI: readU16LE(d, 8),
    leafTuple: r.leafTuple("new leaf tuple"),
  };
}

export interface SpgMoveLeafs {
  nMoves: number;
  newPage: boolean;
  replaceDead: boolean;
  storesNulls: boolean;
  offnumParent: number;
  nodeI: number;
  stateSrc: SpgState;
  toDelete: Uint16Array;
  /** nMoves + 1 offsets, or 1 when replaceDead. */
  toInsert: Uint16Array;
  /** As many as toInsert. */
  leafTuples: SpgLeafTuples;
}

export function decodeSpgMoveLeafs(rec: DecodedRecord): SpgMoveLeafs {
  const d = needMain(rec, SIZE_OF_MOVE_LEAFS, "spgxlogMoveLeafs");
  const nMoves = readU16LE(d, 0);
  const replaceDead = d[3] !== 0;
  const nInsert = replaceDead ? 1 : nMoves + 1;
  const r = new Reader(rec, d, SIZE_OF_MOVE_LEAFS);
  const toDelete = r.offsets(nMoves, "toDelete");
  const toInsert = r.offsets(nInsert, "toInsert");
  const leafTuples = r.leafTuples(nInsert, "leaf tuple");
  return {
    nMoves,
    newPage: d[2] !== 0,
    replaceDead,
    storesNulls: d[4] !== 0,
    offnumParent: readU16LE(d, 6),
    nodeI: readU16LE(d, 8),
    stateSrc: state(d, 12),
    toDelete,
    toInsert,
    leafTuples,
  };
}

/** ADD_NODE's parentBlk: which block holds the parent downlink (or none). */
export const SPG_PARENT_NONE = -1;

export interface SpgAddNode {
  offnum: number;
  offnumNew: number;
  newPage: boolean;
  /** 0 original page, 1 new page, 2 block 2, -1 not updated. */
  parentBlk: number;
  offnumParent: number;
  nodeI: number;
  stateSrc: SpgState;
  innerTuple: Uint8Array;
}

export function decodeSpgAddNode(rec: DecodedRecord): SpgAddNode {
  const d = needMain(rec, SIZE_OF_ADD_NODE, "spgxlogAddNode");
  const parentBlk = (d[5]! << 24) >> 24;
  if (parentBlk < SPG_PARENT_NONE || parentBlk > 2) throw recordCorruption(rec, `parentBlk ${parentBlk} is not -1, 0, 1 or 2`);
  const r = new Reader(rec, d, SIZE_OF_ADD_NODE);
  return {
    offnum: readU16LE(d, 0),
    offnumNew: readU16LE(d, 2),
    newPage: d[4] !== 0,
    parentBlk,
    offnumParent: readU16LE(d, 6),
    nodeI: readU16LE(d, 8),
    stateSrc: state(d, 12),
    innerTuple: r.innerTuple("new inner tuple"),
  };
}

export interface SpgSplitTuple {
  offnumPrefix: number;
  offnumPostfix: number;
  newPage: boolean;
  postfixBlkSame: boolean;
  prefixTuple: Uint8Array;
  postfixTuple: Uint8Array;
}

export function decodeSpgSplitTuple(rec: DecodedRecord): SpgSplitTuple {
  const d = needMain(rec, SIZE_OF_SPLIT_TUPLE, "spgxlogSplitTuple");
  const r = new Reader(rec, d, SIZE_OF_SPLIT_TUPLE);
  const prefixTuple = r.innerTuple("prefix tuple");
  const postfixTuple = r.innerTuple("postfix tuple");
  return {
    offnumPrefix: readU16LE(d, 0),
    offnumPostfix: readU16LE(d, 2),
    newPage: d[4] !== 0,
    postfixBlkSame: d[5] !== 0,
    prefixTuple,
    postfixTuple,
  };
}

export interface SpgPickSplit {
  isRootSplit: boolean;
  nDelete: number;
  nInsert: number;
  initSrc: boolean;
  initDest: boolean;
  offnumInner: number;
  initInner: boolean;
  storesNulls: boolean;
  innerIsParent: boolean;
  offnumParent: number;
  nodeI: number;
  stateSrc: SpgState;
  toDelete: Uint16Array;
  toInsert: Uint16Array;
  /** Per inserted tuple: non-zero means the dest page (block 1), zero the source (block 0). */
  leafPageSelect: Uint8Array;
  innerTuple: Uint8Array;
  leafTuples: SpgLeafTuples;
}

export function decodeSpgPickSplit(rec: DecodedRecord): SpgPickSplit {
  const d = needMain(rec, SIZE_OF_PICKSPLIT, "spgxlogPickSplit");
  const nDelete = readU16LE(d, 2);
  const nInsert = readU16LE(d, 4);
  const r = new Reader(rec, d, SIZE_OF_PICKSPLIT);
  const toDelete = r.offsets(nDelete, "toDelete");
  const toInsert = r.offsets(nInsert, "toInsert");
  const leafPageSelect = r.bytes(nInsert, "leafPageSelect");
  const innerTuple = r.innerTuple("new inner tuple");
  const leafTuples = r.leafTuples(nInsert, "leaf tuple");
  return {
    isRootSplit: d[0] !== 0,
    nDelete,
    nInsert,
    initSrc: d[6] !== 0,
    initDest: d[7] !== 0,
    offnumInner: readU16LE(d, 8),
    initInner: d[10] !== 0,
    storesNulls: d[11] !== 0,
    innerIsParent: d[12] !== 0,
    offnumParent: readU16LE(d, 14),
    nodeI: readU16LE(d, 16),
    stateSrc: state(d, 20),
    toDelete,
    toInsert,
    leafPageSelect,
    innerTuple,
    leafTuples,
  };
}

export interface SpgVacuumLeaf {
  stateSrc: SpgState;
  toDead: Uint16Array;
  toPlaceholder: Uint16Array;
  moveSrc: Uint16Array;
  moveDest: Uint16Array;
  chainSrc: Uint16Array;
  chainDest: Uint16Array;
}

export function decodeSpgVacuumLeaf(rec: DecodedRecord): SpgVacuumLeaf {
  const d = needMain(rec, SIZE_OF_VACUUM_LEAF, "spgxlogVacuumLeaf");
  const nDead = readU16LE(d, 0);
  const nPlaceholder = readU16LE(d, 2);
  const nMove = readU16LE(d, 4);
  const nChain = readU16LE(d, 6);
  const r = new Reader(rec, d, SIZE_OF_VACUUM_LEAF);
  return {
    stateSrc: state(d, 8),
    toDead: r.offsets(nDead, "toDead"),
    toPlaceholder: r.offsets(nPlaceholder, "toPlaceholder"),
    moveSrc: r.offsets(nMove, "moveSrc"),
    moveDest: r.offsets(nMove, "moveDest"),
    chainSrc: r.offsets(nChain, "chainSrc"),
    chainDest: r.offsets(nChain, "chainDest"),
  };
}

export interface SpgVacuumRoot {
  stateSrc: SpgState;
  toDelete: Uint16Array;
}

export function decodeSpgVacuumRoot(rec: DecodedRecord): SpgVacuumRoot {
  const d = needMain(rec, SIZE_OF_VACUUM_ROOT, "spgxlogVacuumRoot");
  const r = new Reader(rec, d, SIZE_OF_VACUUM_ROOT);
  return { stateSrc: state(d, 4), toDelete: r.offsets(readU16LE(d, 0), "toDelete") };
}

export interface SpgVacuumRedirect {
  firstPlaceholder: number;
  newestRedirectXid: number;
  itemToPlaceholder: Uint16Array;
}

export function decodeSpgVacuumRedirect(rec: DecodedRecord): SpgVacuumRedirect {
  const d = needMain(rec, SIZE_OF_VACUUM_REDIRECT, "spgxlogVacuumRedirect");
  const r = new Reader(rec, d, SIZE_OF_VACUUM_REDIRECT);
  return {
    firstPlaceholder: readU16LE(d, 2),
    newestRedirectXid: readU32LE(d, 4),
    itemToPlaceholder: r.offsets(readU16LE(d, 0), "itemToPlaceholder"),
  };
}
