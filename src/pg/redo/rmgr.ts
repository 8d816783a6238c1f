/**
 * What an rmgr's redo module implements and uses: the RmgrRedo interface, and the errors a
 * redo throws, which name the record (LSN, rmgr, info) and the block (relation file, fork,
 * block number, block reference id) so a failed read can be traced to its WAL.
 *
 * Rmgr modules (src/pg/redo/heap.ts, btree.ts, …) import from here, never from the
 * registry (rmgr_redo.ts imports them: importing it back would be a cycle).
 */
import { CorruptionError, UnsupportedError } from "../../types/errors.js";
import { lsnToString } from "../../types/lsn.js";
import { DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID } from "../consts.js";
import type { DecodedBlock, DecodedRecord, RelFileNode } from "../wal/record.js";
import { describeRecordKind } from "../wal/rmgr.js";

export interface RmgrRedo {
  /** RM_*_ID from src/pg/wal/rmgr.ts. */
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

/** "Heap/INSERT (rmgr 10, info 0x00) at 0/16B3748": a record for messages. */
export function describeRecord(rec: DecodedRecord): string {
  return `${describeRecordKind(rec.rmid, rec.info)} (rmgr ${rec.rmid}, info 0x${rec.info.toString(16).padStart(2, "0")}) at ${lsnToString(rec.lsn)}`;
}

/** The block reference with id `blockId`, or undefined (ids may have gaps: blocks[i].id ≠ i). */
export function findBlock(rec: DecodedRecord, blockId: number): DecodedBlock | undefined {
  const blocks = rec.blocks;
  for (let i = 0; i < blocks.length; i++) if (blocks[i]!.id === blockId) return blocks[i];
  return undefined;
}

/** A malformed record (short data, impossible offsets, a page that contradicts it). */
export function redoCorruption(rec: DecodedRecord, blockId: number, why: string): CorruptionError {
  const blk = findBlock(rec, blockId);
  const path = blk === undefined ? "(no such block reference)" : relFilePath(blk.rnode, blk.forkNum);
  return new CorruptionError(path, blk === undefined ? -1 : blk.blkno, `redo of ${describeRecord(rec)}, block reference ${blockId}: ${why}`);
}

/** A record (or a variant of it) this redo does not handle. */
export function redoUnsupported(rec: DecodedRecord, why: string): UnsupportedError {
  return new UnsupportedError(`cannot redo ${describeRecord(rec)}: ${why}`);
}
