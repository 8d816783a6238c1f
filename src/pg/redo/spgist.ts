/**
 * SP-GiST redo and mask: PostgreSQL 15's spg_redo (src/backend/access/spgist/spgxlog.c) one
 * block reference at a time, with the spgutils.c / spgdoinsert.c helpers it uses
 * (SpGistInitPage, spgFormDeadTuple, spgPageIndexMultiDelete, spgUpdateNodeLink), and spg_mask.
 *
 *   SpGistPageOpaqueData, the last 8 bytes of the page:
 *   +0 flags u16 (META 1, DELETED 2, LEAF 4, NULLS 8)  +2 nRedirection u16
 *   +4 nPlaceholder u16                                 +6 spgist_page_id u16 = 0xFF82
 *
 *   Tuples (word0 = the first u32): tupstate = word0 & 3 (LIVE 0, REDIRECT 1, DEAD 2,
 *   PLACEHOLDER 3). Leaf/dead: size = word0 >>> 2, t_info u16 @4 (nextOffset in its low 14
 *   bits), heap or redirect pointer @6 (bi_hi u16, bi_lo u16, posid u16), dead xid u32 @12.
 *   Inner: nNodes = (word0 >>> 3) & 0x1FFF, prefixSize = word0 >>> 16, size u16 @4; after an
 *   8-byte header the prefix, then nNodes node tuples (IndexTuples: t_tid @0, t_info @6).
 *
 * Which block gets what, per info code, is documented in docs/redo.md ("## spgist"). A block
 * restored from an APPLY image gets nothing more; a block PostgreSQL re-initializes (the
 * newPage / init* flags) is re-initialized whatever page it is given, as PostgreSQL does.
 * Counters (nRedirection, nPlaceholder) wrap as uint16 like PostgreSQL's; its Asserts are
 * not errors here either.
 */
import { assert } from "../../types/assert.js";
import type { DecodedBlock, DecodedRecord } from "../wal/record.js";
import {
  decodeSpgAddLeaf,
  decodeSpgAddNode,
  decodeSpgMoveLeafs,
  decodeSpgPickSplit,
  decodeSpgSplitTuple,
  decodeSpgVacuumLeaf,
  decodeSpgVacuumRedirect,
  decodeSpgVacuumRoot,
  type SpgLeafTuples,
  type SpgState,
  XLOG_SPGIST_ADD_LEAF,
  XLOG_SPGIST_ADD_NODE,
  XLOG_SPGIST_MOVE_LEAFS,
  XLOG_SPGIST_OPMASK,
  XLOG_SPGIST_PICKSPLIT,
  XLOG_SPGIST_SPLIT_TUPLE,
  XLOG_SPGIST_VACUUM_LEAF,
  XLOG_SPGIST_VACUUM_REDIRECT,
  XLOG_SPGIST_VACUUM_ROOT,
} from "../wal/records/spgist.js";
import { RM_SPGIST_ID } from "../wal/rmgr_ids.js";
import { maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./bufmask.js";
import {
  BLCKSZ,
  FirstOffsetNumber,
  InvalidOffsetNumber,
  pageAddItemBytes,
  pageAddItemExtended,
  pageGetItem,
  pageGetMaxOffsetNumber,
  pageIndexMultiDelete,
  pageIndexTupleDelete,
  pageInit,
  pdLower,
  pdSpecial,
  SIZE_OF_ITEM_ID,
  SIZE_OF_PAGE_HEADER,
  setPageLsn,
} from "./bufpage.js";
import { findBlock, redoBlock, redoCorruption, redoUnsupported, type RmgrRedo, unexpectedBlock } from "./rmgr_interface.js";
import { readU16LE, readU32LE, writeU16LE, writeU32LE } from "../../types/bytes.js";

export const SIZE_OF_SPGIST_OPAQUE = 8;
export const SPGIST_META = 1 << 0;
export const SPGIST_DELETED = 1 << 1;
export const SPGIST_LEAF = 1 << 2;
export const SPGIST_NULLS = 1 << 3;
export const SPGIST_PAGE_ID = 0xff82;

export const SPGIST_LIVE = 0;
export const SPGIST_REDIRECT = 1;
export const SPGIST_DEAD = 2;
export const SPGIST_PLACEHOLDER = 3;

/** SGDTSIZE: MAXALIGN(sizeof(SpGistDeadTupleData)). */
const SGDTSIZE = 16;
const SGITHDRSZ = 8;
const INDEX_SIZE_MASK = 0x1fff;
const INVALID_BLOCK_NUMBER = 0xffff_ffff;

const OPAQUE_FLAGS = 0;
const OPAQUE_N_REDIRECTION = 2;
const OPAQUE_N_PLACEHOLDER = 4;
const OPAQUE_PAGE_ID = 6;

/** ItemPointerSet on 6 bytes at `o`: bi_hi, bi_lo, posid. */
function setItemPointer(p: Uint8Array, o: number, blkno: number, off: number): void {
  writeU16LE(p, o, blkno >>> 16);
  writeU16LE(p, o + 2, blkno & 0xffff);
  writeU16LE(p, o + 4, off);
}

// ---- page opaque ----------------------------------------------------------------------

function opaqueCounter(page: Uint8Array, field: number): number {
  return readU16LE(page, pdSpecial(page) + field);
}
/** Adds `delta` to nRedirection or nPlaceholder, wrapping as the uint16 it is. */
function bumpCounter(page: Uint8Array, field: number, delta: number): void {
  writeU16LE(page, pdSpecial(page) + field, (opaqueCounter(page, field) + delta) & 0xffff);
}

/** SpGistInitPage: an empty page with an SP-GiST opaque carrying `flags`. */
function spgInitPage(page: Uint8Array, flags: number): void {
  pageInit(page, SIZE_OF_SPGIST_OPAQUE);
  const o = pdSpecial(page);
  writeU16LE(page, o + OPAQUE_FLAGS, flags);
  writeU16LE(page, o + OPAQUE_PAGE_ID, SPGIST_PAGE_ID);
}

// ---- tuples ---------------------------------------------------------------------------

/** `off` must be a line pointer of the page (PostgreSQL would read past pd_lower). */
function checkOffset(rec: DecodedRecord, bid: number, page: Uint8Array, off: number): void {
  const max = pageGetMaxOffsetNumber(page);
  if (off < FirstOffsetNumber || off > max) throw redoCorruption(rec, bid, `offset ${off} is not on the page (max offset ${max})`);
}

/** The tuple at `off`, which must be a line pointer of the page with at least a tuple header of storage. */
function itemAt(rec: DecodedRecord, bid: number, page: Uint8Array, off: number): Uint8Array {
  checkOffset(rec, bid, page, off);
  const item = pageGetItem(page, off);
  if (item.length < 8) throw redoCorruption(rec, bid, `tuple at offset ${off} is ${item.length} bytes, too short for an SP-GiST tuple`);
  return item;
}

function tupstate(item: Uint8Array): number {
  return item[0]! & 3;
}

// spgFormDeadTuple fills a zeroed scratch tuple (deadTupleStorage is palloc0'd): its
// t_info and the padding bytes stay zero. Reused across calls; redo is synchronous.
const deadTuple = new Uint8Array(SGDTSIZE);

function formDeadTuple(state: SpgState, tstate: number, blkno: number, off: number): Uint8Array {
  deadTuple.fill(0);
  writeU32LE(deadTuple, 0, (tstate | (SGDTSIZE << 2)) >>> 0);
  if (tstate === SPGIST_REDIRECT) {
    setItemPointer(deadTuple, 6, blkno, off);
    writeU32LE(deadTuple, 12, state.myXid);
  } else {
    setItemPointer(deadTuple, 6, INVALID_BLOCK_NUMBER, InvalidOffsetNumber);
  }
  return deadTuple;
}

function addItemAt(rec: DecodedRecord, bid: number, page: Uint8Array, item: Uint8Array, off: number): void {
  if (pageAddItemExtended(page, item, off, 0) !== off) {
    throw redoCorruption(rec, bid, `failed to add item of size ${item.length} to SPGiST index page at offset ${off}`);
  }
}

/** addOrReplaceTuple: add at `off`, replacing the placeholder there if the offset exists. */
function addOrReplaceTuple(rec: DecodedRecord, bid: number, page: Uint8Array, tuple: Uint8Array, off: number): void {
  addOrReplaceTupleBytes(rec, bid, page, tuple, 0, tuple.length, off);
}

/** addOrReplaceTuple of the tuple src[srcOff, srcOff + len) (no view of it). */
function addOrReplaceTupleBytes(
  rec: DecodedRecord,
  bid: number,
  page: Uint8Array,
  src: Uint8Array,
  srcOff: number,
  len: number,
  off: number,
): void {
  if (off <= pageGetMaxOffsetNumber(page)) {
    const dt = itemAt(rec, bid, page, off);
    if (tupstate(dt) !== SPGIST_PLACEHOLDER)
      throw redoCorruption(rec, bid, `SPGiST tuple to be replaced at offset ${off} is not a placeholder`);
    bumpCounter(page, OPAQUE_N_PLACEHOLDER, -1);
    pageIndexTupleDelete(page, off);
  }
  if (pageAddItemBytes(page, src, srcOff, len, off, 0) !== off) {
    throw redoCorruption(rec, bid, `failed to add item of size ${len} to SPGiST index page at offset ${off}`);
  }
}

/** Every leaf tuple i of `tuples` (with `select` non-zero iff toDest, when given) added or replacing a placeholder at toInsert[i]. */
function addLeafTuples(
  rec: DecodedRecord,
  bid: number,
  page: Uint8Array,
  tuples: SpgLeafTuples,
  toInsert: Uint16Array,
  select: Uint8Array | null,
  toDest: boolean,
): void {
  const { data, starts, sizes } = tuples;
  if (toInsert.length < starts.length || (select !== null && select.length < starts.length)) {
    throw redoCorruption(rec, bid, `${starts.length} leaf tuples for ${toInsert.length} offsets`);
  }
  for (let i = 0; i < starts.length; i++) {
    if (select === null || (select[i] !== 0) === toDest) addOrReplaceTupleBytes(rec, bid, page, data, starts[i]!, sizes[i]!, toInsert[i]!);
  }
}

/** SGLT_SET_NEXTOFFSET on a leaf tuple in place. */
function setNextOffset(lt: Uint8Array, next: number): void {
  writeU16LE(lt, 4, (readU16LE(lt, 4) & 0xc000) | (next & 0x3fff));
}

/** spgUpdateNodeLink: point node `nodeI` of the inner tuple `tup` (in the page) at blkno/off. */
function updateNodeLink(rec: DecodedRecord, bid: number, tup: Uint8Array, nodeI: number, blkno: number, off: number): void {
  const word0 = readU32LE(tup, 0);
  const nNodes = (word0 >>> 3) & 0x1fff;
  let p = SGITHDRSZ + (word0 >>> 16);
  for (let i = 0; i < nNodes; i++) {
    if (p + 8 > tup.length) throw redoCorruption(rec, bid, `node ${i} of an inner tuple of ${tup.length} bytes lies outside it`);
    if (i === nodeI) {
      setItemPointer(tup, p, blkno, off);
      return;
    }
    p += readU16LE(tup, p + 6) & INDEX_SIZE_MASK;
  }
  throw redoCorruption(rec, bid, `failed to find requested node ${nodeI} in SPGiST inner tuple of ${nNodes} nodes`);
}

/**
 * spgPageIndexMultiDelete: delete the tuples at `itemnos` and put dead tuples in their
 * place, `firstState` at the first listed offset and `restState` elsewhere.
 */
function spgMultiDelete(
  rec: DecodedRecord,
  bid: number,
  state: SpgState,
  page: Uint8Array,
  itemnos: Uint16Array,
  firstState: number,
  restState: number,
  blkno: number,
  off: number,
): void {
  const n = itemnos.length;
  if (n === 0) return;
  const sorted = itemnos.slice().sort();
  for (let i = 0; i < n; i++) checkOffset(rec, bid, page, sorted[i]!);
  pageIndexMultiDelete(page, sorted);
  const firstItem = itemnos[0]!;
  for (let i = 0; i < n; i++) {
    const itemno = sorted[i]!;
    const tstate = itemno === firstItem ? firstState : restState;
    addItemAt(rec, bid, page, formDeadTuple(state, tstate, blkno, off), itemno);
    if (tstate === SPGIST_REDIRECT) bumpCounter(page, OPAQUE_N_REDIRECTION, 1);
    else if (tstate === SPGIST_PLACEHOLDER) bumpCounter(page, OPAQUE_N_PLACEHOLDER, 1);
  }
}

function leafFlags(storesNulls: boolean): number {
  return SPGIST_LEAF | (storesNulls ? SPGIST_NULLS : 0);
}

function blockNo(rec: DecodedRecord, bid: number, id: number): number {
  const b = findBlock(rec, id);
  if (b === undefined) throw redoCorruption(rec, bid, `no block reference ${id}`);
  return b.blkno;
}

// ---- per info code --------------------------------------------------------------------

function redoAddLeaf(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  const xl = decodeSpgAddLeaf(rec);
  if (block.id === 0) {
    if (xl.newPage) spgInitPage(page, leafFlags(xl.storesNulls));
    else if (block.applyImage) return;
    if (xl.offnumLeaf !== xl.offnumHeadLeaf) {
      addOrReplaceTuple(rec, bid, page, xl.leafTuple, xl.offnumLeaf);
      if (xl.offnumHeadLeaf !== InvalidOffsetNumber) setNextOffset(itemAt(rec, bid, page, xl.offnumHeadLeaf), xl.offnumLeaf);
    } else {
      // Replacing a DEAD tuple.
      checkOffset(rec, bid, page, xl.offnumLeaf);
      pageIndexTupleDelete(page, xl.offnumLeaf);
      addItemAt(rec, bid, page, xl.leafTuple, xl.offnumLeaf);
    }
    setPageLsn(page, rec.endLsn);
    return;
  }
  if (block.id !== 1) throw unexpectedBlock(rec, block.id);
  if (xl.offnumParent === InvalidOffsetNumber || block.applyImage) return;
  updateNodeLink(rec, bid, itemAt(rec, bid, page, xl.offnumParent), xl.nodeI, blockNo(rec, bid, 0), xl.offnumLeaf);
  setPageLsn(page, rec.endLsn);
}

function redoMoveLeafs(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  const xl = decodeSpgMoveLeafs(rec);
  const blknoDst = blockNo(rec, bid, 1);
  const lastInsert = xl.toInsert[xl.toInsert.length - 1]!;
  switch (block.id) {
    case 1:
      // The destination first, so that the redirect is valid.
      if (xl.newPage) spgInitPage(page, leafFlags(xl.storesNulls));
      else if (block.applyImage) return;
      addLeafTuples(rec, bid, page, xl.leafTuples, xl.toInsert, null, false);
      break;
    case 0:
      if (block.applyImage) return;
      spgMultiDelete(
        rec,
        bid,
        xl.stateSrc,
        page,
        xl.toDelete,
        xl.stateSrc.isBuild ? SPGIST_PLACEHOLDER : SPGIST_REDIRECT,
        SPGIST_PLACEHOLDER,
        blknoDst,
        lastInsert,
      );
      break;
    case 2:
      if (block.applyImage) return;
      updateNodeLink(rec, bid, itemAt(rec, bid, page, xl.offnumParent), xl.nodeI, blknoDst, lastInsert);
      break;
    default:
      throw unexpectedBlock(rec, block.id);
  }
  setPageLsn(page, rec.endLsn);
}

function redoAddNode(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  const xl = decodeSpgAddNode(rec);
  if (findBlock(rec, 1) === undefined) {
    // The new inner tuple replaces the old one in place.
    if (block.id !== 0) throw unexpectedBlock(rec, block.id);
    if (block.applyImage) return;
    checkOffset(rec, bid, page, xl.offnum);
    pageIndexTupleDelete(page, xl.offnum);
    addItemAt(rec, bid, page, xl.innerTuple, xl.offnum);
    setPageLsn(page, rec.endLsn);
    return;
  }
  const blknoNew = blockNo(rec, bid, 1);
  switch (block.id) {
    case 1:
      // ADD_NODE is not used on nulls pages.
      if (xl.newPage) spgInitPage(page, 0);
      else if (block.applyImage) return;
      addOrReplaceTuple(rec, bid, page, xl.innerTuple, xl.offnumNew);
      if (xl.parentBlk === 1) updateNodeLink(rec, bid, itemAt(rec, bid, page, xl.offnumParent), xl.nodeI, blknoNew, xl.offnumNew);
      break;
    case 0: {
      if (block.applyImage) return;
      const st = xl.stateSrc;
      const dt = st.isBuild
        ? formDeadTuple(st, SPGIST_PLACEHOLDER, INVALID_BLOCK_NUMBER, InvalidOffsetNumber)
        : formDeadTuple(st, SPGIST_REDIRECT, blknoNew, xl.offnumNew);
      checkOffset(rec, bid, page, xl.offnum);
      pageIndexTupleDelete(page, xl.offnum);
      addItemAt(rec, bid, page, dt, xl.offnum);
      bumpCounter(page, st.isBuild ? OPAQUE_N_PLACEHOLDER : OPAQUE_N_REDIRECTION, 1);
      if (xl.parentBlk === 0) updateNodeLink(rec, bid, itemAt(rec, bid, page, xl.offnumParent), xl.nodeI, blknoNew, xl.offnumNew);
      break;
    }
    case 2:
      if (xl.parentBlk !== 2 || block.applyImage) return;
      updateNodeLink(rec, bid, itemAt(rec, bid, page, xl.offnumParent), xl.nodeI, blknoNew, xl.offnumNew);
      break;
    default:
      throw unexpectedBlock(rec, block.id);
  }
  setPageLsn(page, rec.endLsn);
}

function redoSplitTuple(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  const xl = decodeSpgSplitTuple(rec);
  if (block.id === 1) {
    if (xl.postfixBlkSame) return;
    // SPLIT_TUPLE is not used on nulls pages.
    if (xl.newPage) spgInitPage(page, 0);
    else if (block.applyImage) return;
    addOrReplaceTuple(rec, bid, page, xl.postfixTuple, xl.offnumPostfix);
    setPageLsn(page, rec.endLsn);
    return;
  }
  if (block.id !== 0) throw unexpectedBlock(rec, block.id);
  if (block.applyImage) return;
  checkOffset(rec, bid, page, xl.offnumPrefix);
  pageIndexTupleDelete(page, xl.offnumPrefix);
  addItemAt(rec, bid, page, xl.prefixTuple, xl.offnumPrefix);
  if (xl.postfixBlkSame) addOrReplaceTuple(rec, bid, page, xl.postfixTuple, xl.offnumPostfix);
  setPageLsn(page, rec.endLsn);
}

function redoPickSplit(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  const xl = decodeSpgPickSplit(rec);
  const blknoInner = blockNo(rec, bid, 2);
  switch (block.id) {
    case 0:
      // A root split touches the root only as the new inner page (block 2).
      if (xl.isRootSplit) return;
      if (xl.initSrc) spgInitPage(page, leafFlags(xl.storesNulls));
      else if (block.applyImage) return;
      else if (!xl.stateSrc.isBuild) {
        spgMultiDelete(rec, bid, xl.stateSrc, page, xl.toDelete, SPGIST_REDIRECT, SPGIST_PLACEHOLDER, blknoInner, xl.offnumInner);
      } else {
        spgMultiDelete(
          rec,
          bid,
          xl.stateSrc,
          page,
          xl.toDelete,
          SPGIST_PLACEHOLDER,
          SPGIST_PLACEHOLDER,
          INVALID_BLOCK_NUMBER,
          InvalidOffsetNumber,
        );
      }
      addLeafTuples(rec, bid, page, xl.leafTuples, xl.toInsert, xl.leafPageSelect, false);
      break;
    case 1:
      if (xl.initDest) spgInitPage(page, leafFlags(xl.storesNulls));
      else if (block.applyImage) return;
      addLeafTuples(rec, bid, page, xl.leafTuples, xl.toInsert, xl.leafPageSelect, true);
      break;
    case 2:
      if (xl.initInner) spgInitPage(page, xl.storesNulls ? SPGIST_NULLS : 0);
      else if (block.applyImage) return;
      addOrReplaceTuple(rec, bid, page, xl.innerTuple, xl.offnumInner);
      if (xl.innerIsParent) updateNodeLink(rec, bid, itemAt(rec, bid, page, xl.offnumParent), xl.nodeI, blknoInner, xl.offnumInner);
      break;
    case 3:
      if (block.applyImage) return;
      updateNodeLink(rec, bid, itemAt(rec, bid, page, xl.offnumParent), xl.nodeI, blknoInner, xl.offnumInner);
      break;
    default:
      throw unexpectedBlock(rec, block.id);
  }
  setPageLsn(page, rec.endLsn);
}

function redoVacuumLeaf(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  if (block.id !== 0) throw unexpectedBlock(rec, block.id);
  if (block.applyImage) return;
  const xl = decodeSpgVacuumLeaf(rec);
  const st = xl.stateSrc;
  spgMultiDelete(rec, bid, st, page, xl.toDead, SPGIST_DEAD, SPGIST_DEAD, INVALID_BLOCK_NUMBER, InvalidOffsetNumber);
  spgMultiDelete(rec, bid, st, page, xl.toPlaceholder, SPGIST_PLACEHOLDER, SPGIST_PLACEHOLDER, INVALID_BLOCK_NUMBER, InvalidOffsetNumber);
  // Swap the line pointers of each move (see vacuumLeafPage), then placeholders at the sources.
  const max = pageGetMaxOffsetNumber(page);
  for (let i = 0; i < xl.moveSrc.length; i++) {
    const src = xl.moveSrc[i]!;
    const dst = xl.moveDest[i]!;
    if (src < FirstOffsetNumber || src > max || dst < FirstOffsetNumber || dst > max) {
      throw redoCorruption(rec, bid, `move ${src} -> ${dst} is not on the page (max offset ${max})`);
    }
    const a = SIZE_OF_PAGE_HEADER + (src - 1) * SIZE_OF_ITEM_ID;
    const b = SIZE_OF_PAGE_HEADER + (dst - 1) * SIZE_OF_ITEM_ID;
    const tmp = readU32LE(page, a);
    writeU32LE(page, a, readU32LE(page, b));
    writeU32LE(page, b, tmp);
  }
  spgMultiDelete(rec, bid, st, page, xl.moveSrc, SPGIST_PLACEHOLDER, SPGIST_PLACEHOLDER, INVALID_BLOCK_NUMBER, InvalidOffsetNumber);
  for (let i = 0; i < xl.chainSrc.length; i++) setNextOffset(itemAt(rec, bid, page, xl.chainSrc[i]!), xl.chainDest[i]!);
  setPageLsn(page, rec.endLsn);
}

function redoVacuumRoot(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  if (block.id !== 0) throw unexpectedBlock(rec, block.id);
  if (block.applyImage) return;
  const xl = decodeSpgVacuumRoot(rec);
  // The tuple numbers are in order, as PageIndexMultiDelete needs.
  pageIndexMultiDelete(page, xl.toDelete);
  setPageLsn(page, rec.endLsn);
}

function redoVacuumRedirect(rec: DecodedRecord, block: DecodedBlock, page: Uint8Array): void {
  const bid = block.id;
  if (block.id !== 0) throw unexpectedBlock(rec, block.id);
  if (block.applyImage) return;
  const xl = decodeSpgVacuumRedirect(rec);
  const n = xl.itemToPlaceholder.length;
  for (let i = 0; i < n; i++) {
    const dt = itemAt(rec, bid, page, xl.itemToPlaceholder[i]!);
    if (dt.length < SGDTSIZE) throw redoCorruption(rec, bid, `redirect tuple at offset ${xl.itemToPlaceholder[i]} is ${dt.length} bytes`);
    dt[0] = (dt[0]! & ~3) | SPGIST_PLACEHOLDER;
    setItemPointer(dt, 6, INVALID_BLOCK_NUMBER, InvalidOffsetNumber);
  }
  bumpCounter(page, OPAQUE_N_REDIRECTION, -n);
  bumpCounter(page, OPAQUE_N_PLACEHOLDER, n);
  if (xl.firstPlaceholder !== InvalidOffsetNumber) {
    // Drop the placeholders at the end of the page: [firstPlaceholder, max], in order.
    const max = pageGetMaxOffsetNumber(page);
    if (xl.firstPlaceholder > max + 1)
      throw redoCorruption(rec, bid, `first placeholder ${xl.firstPlaceholder} is past the page's ${max} line pointers`);
    const count = max - xl.firstPlaceholder + 1;
    const toDelete = new Uint16Array(count);
    for (let i = 0; i < count; i++) toDelete[i] = xl.firstPlaceholder + i;
    bumpCounter(page, OPAQUE_N_PLACEHOLDER, -count);
    pageIndexMultiDelete(page, toDelete);
  }
  setPageLsn(page, rec.endLsn);
}

function redo(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const block = redoBlock(rec, blockId);
  assert(page.length === BLCKSZ, `redo needs an 8192-byte page, got ${page.length} bytes`);
  const op = rec.info & XLOG_SPGIST_OPMASK;
  switch (op) {
    case XLOG_SPGIST_ADD_LEAF:
      redoAddLeaf(rec, block, page);
      return;
    case XLOG_SPGIST_MOVE_LEAFS:
      redoMoveLeafs(rec, block, page);
      return;
    case XLOG_SPGIST_ADD_NODE:
      redoAddNode(rec, block, page);
      return;
    case XLOG_SPGIST_SPLIT_TUPLE:
      redoSplitTuple(rec, block, page);
      return;
    case XLOG_SPGIST_PICKSPLIT:
      redoPickSplit(rec, block, page);
      return;
    case XLOG_SPGIST_VACUUM_LEAF:
      redoVacuumLeaf(rec, block, page);
      return;
    case XLOG_SPGIST_VACUUM_ROOT:
      redoVacuumRoot(rec, block, page);
      return;
    case XLOG_SPGIST_VACUUM_REDIRECT:
      redoVacuumRedirect(rec, block, page);
      return;
    default:
      throw redoUnsupported(rec, `unknown spgist op code 0x${op.toString(16)}`);
  }
}

/** spg_mask: the unused space only when pd_lower looks set (the metapage's may not be). */
function mask(page: Uint8Array, _blkno: number): void {
  maskPageLsnAndChecksum(page);
  maskPageHintBits(page);
  if (pdLower(page) >= SIZE_OF_PAGE_HEADER) maskUnusedSpace(page);
}

export const spgistRedo: RmgrRedo = { rmid: RM_SPGIST_ID, name: "spgist", redo, mask };
