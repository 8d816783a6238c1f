/**
 * Typed decoders of the Storage rmgr's records (RM_SMGR_ID, src/include/catalog/storage_xlog.h
 * of PostgreSQL 15.18). xl_info & 0xF0 is the opcode.
 *
 *   info  name      main data (little-endian)
 *   0x10  CREATE    RelFileNode (u32 spc, db, rel) | i32 forkNum                        (16)
 *   0x20  TRUNCATE  u32 blkno | RelFileNode | i32 flags (SMGR_TRUNCATE_HEAP/VM/FSM)     (20)
 *
 * TRUNCATE cuts the forks its flags name to what `blkno` heap blocks need. Neither record
 * has block references. Every length is checked: a malformed record is a CorruptionError
 * naming LSN, rmgr and info.
 */
import { MAX_FORKNUM } from "../../consts.js";
import { readU32LE } from "../../../types/bytes.js";
import { type DecodedRecord, type RelFileNode, readRelFileNode } from "../record.js";
import { RM_SMGR_ID, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";
import { exactMain, recordCorruption } from "./record_access.js";

export const XLOG_SMGR_CREATE = 0x10;
export const XLOG_SMGR_TRUNCATE = 0x20;

/** xl_smgr_truncate.flags: which forks to cut. */
export const SMGR_TRUNCATE_HEAP = 0x0001;
export const SMGR_TRUNCATE_VM = 0x0002;
export const SMGR_TRUNCATE_FSM = 0x0004;
export const SMGR_TRUNCATE_ALL = SMGR_TRUNCATE_HEAP | SMGR_TRUNCATE_VM | SMGR_TRUNCATE_FSM;

export const SIZE_OF_SMGR_CREATE = 16;
export const SIZE_OF_SMGR_TRUNCATE = 20;

export interface SmgrCreateRecord {
  op: typeof XLOG_SMGR_CREATE;
  rnode: RelFileNode;
  forkNum: number;
}

export interface SmgrTruncateRecord {
  op: typeof XLOG_SMGR_TRUNCATE;
  /** The new size of the main fork, in blocks. */
  blkno: number;
  rnode: RelFileNode;
  flags: number;
}

export type SmgrRecord = SmgrCreateRecord | SmgrTruncateRecord;

/** Decode any Storage record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeSmgrRecord(rec: DecodedRecord): SmgrRecord {
  if (rec.rmid !== RM_SMGR_ID) throw recordCorruption(rec, "not a Storage record");
  const op = rec.info & XLR_RMGR_INFO_MASK;
  switch (op) {
    case XLOG_SMGR_CREATE: {
      const d = exactMain(rec, SIZE_OF_SMGR_CREATE, "xl_smgr_create");
      const forkNum = readU32LE(d, 12);
      if (forkNum > MAX_FORKNUM) throw recordCorruption(rec, `fork number ${forkNum | 0}`);
      return { op, rnode: readRelFileNode(d, 0), forkNum };
    }
    case XLOG_SMGR_TRUNCATE: {
      const d = exactMain(rec, SIZE_OF_SMGR_TRUNCATE, "xl_smgr_truncate");
      const flags = readU32LE(d, 16);
      if ((flags & ~SMGR_TRUNCATE_ALL) !== 0) throw recordCorruption(rec, `truncate flags 0x${flags.toString(16)}`);
      return { op, blkno: readU32LE(d, 0), rnode: readRelFileNode(d, 4), flags };
    }
    default:
      throw recordCorruption(rec, `unknown Storage info code 0x${op.toString(16).padStart(2, "0")}`);
  }
}
