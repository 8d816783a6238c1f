/**
 * Relation storage records, for WalIngest: the block references of every record (heap,
 * btree, GiST, … pages), SMGR create/truncate (with the FSM and visibility-map forks cut the
 * way PostgreSQL cuts them), and the visibility-map bits heap records clear without
 * referencing the VM page. Free functions: the writer is passed in; nothing here keeps state
 * between records.
 *
 * Invariants: a block image (APPLY or a wal_consistency_checking image: the page after the
 * change) is kept as the WAL carried it, an initializing pageserver record that becomes the
 * page with pd_lsn = end LSN when a read needs it (the checksum is set on the way out); the
 * GiST left child of a split gets the NSN and F_FOLLOW_RIGHT redo would give it. A block
 * without an image is stored as the PostgreSQL record itself (referenced, not copied). A
 * VM bit is cleared only on a VM page that exists (no page: no bit is set).
 *
 * Lock order: none (synchronous, inside one record's ingest).
 */
import {
  FSM_FORKNUM,
  FSM_SLOTS_PER_PAGE,
  FSM_TREE_DEPTH,
  HEAPBLOCKS_PER_VM_PAGE,
  MAIN_FORKNUM,
  VISIBILITYMAP_FORKNUM,
} from "../pg/consts.js";
import { pgImage, vmClear, vmTruncate } from "../pg/redo/native.js";
import type { DecodedBlock, DecodedRecord } from "../pg/wal/record.js";
import { XLOG_GIST_PAGE_SPLIT, XLOG_GIST_PAGE_UPDATE } from "../pg/wal/records/gist.js";
import {
  decodeHeapDelete,
  decodeHeapInsert,
  decodeHeapLock,
  decodeHeapUpdate,
  XLH_DELETE_ALL_VISIBLE_CLEARED,
  XLH_INSERT_ALL_VISIBLE_CLEARED,
  XLH_LOCK_ALL_FROZEN_CLEARED,
  XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED,
  XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED,
  XLOG_HEAP_DELETE,
  XLOG_HEAP_HOT_UPDATE,
  XLOG_HEAP_INSERT,
  XLOG_HEAP_LOCK,
  XLOG_HEAP_OPMASK,
  XLOG_HEAP_UPDATE,
} from "../pg/wal/records/heap.js";
import {
  decodeHeap2LockUpdated,
  decodeHeap2MultiInsert,
  VISIBILITYMAP_ALL_FROZEN,
  VISIBILITYMAP_VALID_BITS,
  XLOG_HEAP2_LOCK_UPDATED,
  XLOG_HEAP2_MULTI_INSERT,
} from "../pg/wal/records/heap2.js";
import { blockById as findBlock, requireBlock } from "../pg/wal/records/record_access.js";
import { SMGR_TRUNCATE_FSM, SMGR_TRUNCATE_HEAP, SMGR_TRUNCATE_VM, type SmgrRecord, XLOG_SMGR_CREATE } from "../pg/wal/records/smgr.js";
import { RM_GIST_ID, RM_HEAP_ID, XLR_RMGR_INFO_MASK } from "../pg/wal/rmgr_ids.js";
import { relTag } from "./keys.js";
import { type DatadirWriter, ZERO_PAGE } from "./writer.js";

/** Physical FSM block of the bottom-level page holding heap block `heapBlk` (fsm_logical_to_physical). */
function fsmPhysicalPage(logicalPage: number): number {
  let leafno = logicalPage;
  let pages = 0;
  for (let l = 0; l < FSM_TREE_DEPTH; l++) {
    pages += leafno + 1;
    leafno = Math.floor(leafno / FSM_SLOTS_PER_PAGE);
  }
  return pages - 1;
}

/** Every block reference of `rec`: its image, or the record itself. */
export function ingestBlocks(w: DatadirWriter, rec: DecodedRecord): void {
  for (const b of rec.blocks) {
    const rel = relTag(b.rnode.spcNode, b.rnode.dbNode, b.rnode.relNode, b.forkNum);
    if (b.hasImage) {
      // Kept as the WAL carried it (compressed, hole removed): decompressing, pd_lsn and the
      // GiST fix-up happen when a read needs this version, which most never do.
      w.putRelValue(rel, b.blkno, pgImage(b.image!, rec.endLsn, isGistLeftChild(rec, b)));
    } else {
      // The record itself, not copied: every block reference of it stores the same bytes.
      w.putRelRecord(rel, b.blkno, b.willInit, rec.record);
    }
  }
}

/**
 * The left child of a GiST split gets NSN = the record's LSN and F_FOLLOW_RIGHT cleared
 * after XLogInsert, so its image (a full-page write as much as a consistency image) still
 * shows the old state; redo (gistRedoClearFollowRight) sets them even on a restored image.
 * Block 0 in PAGE_SPLIT, block 1 in PAGE_UPDATE.
 */
function isGistLeftChild(rec: DecodedRecord, b: DecodedBlock): boolean {
  if (rec.rmid !== RM_GIST_ID) return false;
  const op = rec.info & XLR_RMGR_INFO_MASK;
  const leftChildId = op === XLOG_GIST_PAGE_SPLIT ? 0 : op === XLOG_GIST_PAGE_UPDATE ? 1 : -1;
  return b.id === leftChildId;
}

/** An SMGR record: create a fork, or truncate the main, FSM and VM forks. */
export function ingestSmgr(w: DatadirWriter, r: SmgrRecord): void {
  const { spcNode, dbNode, relNode } = r.rnode;
  if (r.op === XLOG_SMGR_CREATE) {
    const rel = relTag(spcNode, dbNode, relNode, r.forkNum);
    if (w.relSize(rel) === null) w.createRel(rel);
    return;
  }
  const blkno = r.blkno;
  if (r.flags & SMGR_TRUNCATE_HEAP) {
    const main = relTag(spcNode, dbNode, relNode, MAIN_FORKNUM);
    if (w.relSize(main) !== null) w.truncateRel(main, blkno);
  }
  if (r.flags & SMGR_TRUNCATE_FSM) {
    const fsm = relTag(spcNode, dbNode, relNode, FSM_FORKNUM);
    const size = w.relSize(fsm);
    if (size !== null) {
      // FreeSpaceMapPrepareTruncateRel: the bottom page holding the cut is cleared (whole,
      // not slot by slot: the FSM is only a hint) and the fork is cut after it.
      let phys = fsmPhysicalPage(Math.floor(blkno / FSM_SLOTS_PER_PAGE));
      if (blkno % FSM_SLOTS_PER_PAGE !== 0) {
        if (phys < size) w.putRelPageImage(fsm, phys, ZERO_PAGE);
        phys++;
      }
      if (phys < size) w.truncateRel(fsm, phys);
    }
  }
  if (r.flags & SMGR_TRUNCATE_VM) {
    const vm = relTag(spcNode, dbNode, relNode, VISIBILITYMAP_FORKNUM);
    const size = w.relSize(vm);
    if (size !== null) {
      let vmBlocks = Math.floor(blkno / HEAPBLOCKS_PER_VM_PAGE);
      if (blkno % HEAPBLOCKS_PER_VM_PAGE !== 0) {
        if (vmBlocks < size) w.putRelValue(vm, vmBlocks, vmTruncate(blkno));
        vmBlocks++;
      }
      if (vmBlocks < size) w.truncateRel(vm, vmBlocks);
    }
  }
}

/** A HEAP or HEAP2 record: the visibility-map bits it clears without referencing the VM page. */
export function ingestHeapVm(w: DatadirWriter, rec: DecodedRecord): void {
  const op = rec.info & XLOG_HEAP_OPMASK;
  if (rec.rmid === RM_HEAP_ID) {
    switch (op) {
      case XLOG_HEAP_INSERT: {
        const x = decodeHeapInsert(rec);
        const b0 = requireBlock(rec, 0);
        if (x.flags & XLH_INSERT_ALL_VISIBLE_CLEARED) clearVm(w, b0, b0.blkno, null, VISIBILITYMAP_VALID_BITS);
        return;
      }
      case XLOG_HEAP_DELETE: {
        const x = decodeHeapDelete(rec);
        const b0 = requireBlock(rec, 0);
        if (x.flags & XLH_DELETE_ALL_VISIBLE_CLEARED) clearVm(w, b0, b0.blkno, null, VISIBILITYMAP_VALID_BITS);
        return;
      }
      case XLOG_HEAP_UPDATE:
      case XLOG_HEAP_HOT_UPDATE: {
        const x = decodeHeapUpdate(rec);
        const b0 = requireBlock(rec, 0);
        const b1 = findBlock(rec, 1);
        const oldBlk = b1 !== undefined ? b1.blkno : b0.blkno;
        const oldClr = (x.flags & XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED) !== 0;
        const newClr = (x.flags & XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED) !== 0;
        if (oldClr && newClr && Math.floor(oldBlk / HEAPBLOCKS_PER_VM_PAGE) === Math.floor(b0.blkno / HEAPBLOCKS_PER_VM_PAGE)) {
          clearVm(w, b0, oldBlk, b0.blkno, VISIBILITYMAP_VALID_BITS);
        } else {
          if (oldClr) clearVm(w, b0, oldBlk, null, VISIBILITYMAP_VALID_BITS);
          if (newClr) clearVm(w, b0, b0.blkno, null, VISIBILITYMAP_VALID_BITS);
        }
        return;
      }
      case XLOG_HEAP_LOCK: {
        // A lock clears only ALL_FROZEN.
        const x = decodeHeapLock(rec);
        const b0 = requireBlock(rec, 0);
        if (x.flags & XLH_LOCK_ALL_FROZEN_CLEARED) clearVm(w, b0, b0.blkno, null, VISIBILITYMAP_ALL_FROZEN);
        return;
      }
      default:
        // TRUNCATE, CONFIRM, INPLACE leave the visibility map alone.
        return;
    }
  }
  if (op === XLOG_HEAP2_MULTI_INSERT) {
    const x = decodeHeap2MultiInsert(rec);
    const b0 = requireBlock(rec, 0);
    if (x.flags & XLH_INSERT_ALL_VISIBLE_CLEARED) clearVm(w, b0, b0.blkno, null, VISIBILITYMAP_VALID_BITS);
  } else if (op === XLOG_HEAP2_LOCK_UPDATED) {
    const x = decodeHeap2LockUpdated(rec);
    const b0 = requireBlock(rec, 0);
    if (x.flags & XLH_LOCK_ALL_FROZEN_CLEARED) clearVm(w, b0, b0.blkno, null, VISIBILITYMAP_ALL_FROZEN);
  }
  // PRUNE, VACUUM, FREEZE_PAGE: no VM change; VISIBLE: its VM block is a block reference.
}

function clearVm(w: DatadirWriter, heap: DecodedBlock, blkA: number, blkB: number | null, flags: number): void {
  const vm = relTag(heap.rnode.spcNode, heap.rnode.dbNode, heap.rnode.relNode, VISIBILITYMAP_FORKNUM);
  const size = w.relSize(vm);
  const vmBlk = Math.floor(blkA / HEAPBLOCKS_PER_VM_PAGE);
  // No VM fork or page yet: no bits are set, nothing to clear.
  if (size === null || vmBlk >= size) return;
  w.putRelValue(vm, vmBlk, vmClear(blkA, blkB, flags));
}
