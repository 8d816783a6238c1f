/**
 * What an rmgr's redo module implements and uses: the RmgrRedo interface, the block reference
 * being redone (findBlock, redoBlock, and readForRedo: XLogReadBufferForRedo), and the errors
 * a redo throws, which name the record (LSN, rmgr, info) and the block (relation file, fork,
 * block number, block reference id) so a failed read can be traced to its WAL.
 *
 * Rmgr modules (src/pg/redo/heap.ts, btree.ts, …) import from here, never from the
 * registry (redo_table.ts imports them: importing it back would be a cycle).
 */
import { CorruptionError, UnsupportedError } from "../../types/errors.js";
import { DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID } from "../consts.js";
import { restorePageImage } from "../wal/image.js";
import type { DecodedBlock, DecodedRecord, RelFileNode } from "../wal/record.js";
import { blockById, describeRecord } from "../wal/records/record_access.js";
import { pageIsNew, setPageLsn } from "./bufpage.js";

// The same lookup and naming as the record decoders use (findBlock: ids may have gaps).
export { blockById as findBlock, describeRecord };

export interface RmgrRedo {
  /** RM_*_ID from src/pg/wal/rmgr_ids.ts. */
  rmid: number;
  /** As wal_consistency_checking spells it: heap, heap2, btree, hash, gin, gist, sequence, spgist, brin, generic (xlog for XLOG, which has no such setting). */
  name: string;
  /**
   * Redo `rec` on its block reference `blockId`. `page` is that block's prior version, or a
   * zeroed BLCKSZ page when the block is will_init (BKPBLOCK_WILL_INIT / XLOG_*_INIT_PAGE).
   * Mutates `page` in place exactly as PostgreSQL's redo would, including PageSetLSN(endLsn)
   * where PostgreSQL sets it. Throws CorruptionError (malformed record: use redoCorruption)
   * or UnsupportedError (info not handled: use redoUnsupported). A PageLayoutError from
   * bufpage.ts may pass through: PgRedo adds the record's context.
   */
  redo(rec: DecodedRecord, blockId: number, page: Uint8Array): void;
  /** The rmgr's rm_mask (heap_mask, btree_mask, …), applied in place before comparing. */
  mask(page: Uint8Array, blkno: number): void;
}

const FORK_SUFFIX: readonly string[] = ["", "_fsm", "_vm", "_init"];

/** The relation fork's file as PostgreSQL names it (relpath.c, first segment). */
export function relFilePath(rnode: RelFileNode, forkNum: number): string {
  const suffix = FORK_SUFFIX[forkNum] ?? `_fork${forkNum}`;
  if (rnode.spcNode === GLOBALTABLESPACE_OID) return `global/${rnode.relNode}${suffix}`;
  if (rnode.spcNode === DEFAULTTABLESPACE_OID) return `base/${rnode.dbNode}/${rnode.relNode}${suffix}`;
  return `pg_tblspc/${rnode.spcNode}/PG_15_202209061/${rnode.dbNode}/${rnode.relNode}${suffix}`;
}

/** The block reference `blockId` being redone, which the record must have. */
export function redoBlock(rec: DecodedRecord, blockId: number): DecodedBlock {
  const blk = blockById(rec, blockId);
  if (blk === undefined) throw redoCorruption(rec, blockId, `no block reference ${blockId}`);
  return blk;
}

/**
 * XLogReadBufferForRedo for one block, for the rmgrs whose redo restores images itself (gin,
 * hash): an APPLY image is restored (pd_lsn := end LSN unless the page is new) and false
 * returned (BLK_RESTORED); true means the record must be replayed. (brin, gist and spgist
 * instead leave the page of an APPLY block as it is: `if (block.applyImage) return`. Served
 * reads never get here with an image: ingest stores a block's image as its own version.)
 */
export function readForRedo(rec: DecodedRecord, blk: DecodedBlock, page: Uint8Array): boolean {
  if (!blk.applyImage) return true;
  restorePageImage(blk, page, rec.lsn);
  if (!pageIsNew(page)) setPageLsn(page, rec.endLsn);
  return false;
}

/** A malformed record (short data, impossible offsets, a page that contradicts it). */
export function redoCorruption(rec: DecodedRecord, blockId: number, why: string): CorruptionError {
  const blk = blockById(rec, blockId);
  const path = blk === undefined ? "(no such block reference)" : relFilePath(blk.rnode, blk.forkNum);
  return new CorruptionError(
    path,
    blk === undefined ? -1 : blk.blkno,
    `redo of ${describeRecord(rec)}, block reference ${blockId}: ${why}`,
  );
}

/** A block reference the record has but PostgreSQL's redo of this record never reads. */
export function unexpectedBlock(rec: DecodedRecord, blockId: number): CorruptionError {
  return redoCorruption(rec, blockId, "PostgreSQL never registers this block reference for this record");
}

/** A record (or a variant of it) this redo does not handle. */
export function redoUnsupported(rec: DecodedRecord, why: string): UnsupportedError {
  return new UnsupportedError(`cannot redo ${describeRecord(rec)}: ${why}`);
}
