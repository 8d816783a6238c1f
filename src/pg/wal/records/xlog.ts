/**
 * Typed decoders of the XLOG rmgr's records (RM_XLOG_ID, src/include/catalog/pg_control.h
 * and xlog_internal.h of PostgreSQL 15.18). xl_info & 0xF0 is the opcode. The opcode
 * constants live in ../rmgr_ids.ts (the WAL decoder itself needs XLOG_SWITCH) and are
 * re-exported here with the record layouts.
 *
 *   info  name                   main data (little-endian, C struct layout)
 *   0x00  CHECKPOINT_SHUTDOWN    CheckPoint (88 bytes, see ../../control.ts)
 *   0x10  CHECKPOINT_ONLINE      CheckPoint (88 bytes)
 *   0x20  NOOP                   anything (tests and extensions pad WAL with it)
 *   0x30  NEXTOID                u32 nextOid
 *   0x40  SWITCH                 none
 *   0x50  BACKUP_END             u64 startpoint (LSN)
 *   0x60  PARAMETER_CHANGE       i32 MaxConnections | max_worker_processes | max_wal_senders |
 *                                max_prepared_xacts | max_locks_per_xact | wal_level |
 *                                u8 wal_log_hints | u8 track_commit_timestamp | pad2   (28)
 *   0x70  RESTORE_POINT          i64 rp_time | char rp_name[64], NUL-terminated      (72)
 *   0x80  FPW_CHANGE             u8 fullPageWrites
 *   0x90  END_OF_RECOVERY        i64 end_time | u32 ThisTimeLineID | u32 PrevTimeLineID (16)
 *   0xA0  FPI_FOR_HINT           none: block references only
 *   0xB0  FPI                    none: block references only
 *   0xD0  OVERWRITE_CONTRECORD   u64 overwritten_lsn | i64 overwrite_time             (16)
 *
 * Timestamps (TimestampTz) are microseconds since 2000-01-01, kept as numbers (exact for
 * the next ~285 years). Every length is checked before a byte is read: a short or malformed
 * record is a CorruptionError naming LSN, rmgr and info.
 */
import { type Lsn, readLsnLE } from "../../../types/lsn.js";
import { type CheckPoint, decodeCheckPoint, SIZEOF_CHECKPOINT } from "../../control.js";
import { readI64LE, readU32LE } from "../../../types/bytes.js";
import type { DecodedRecord } from "../record.js";
import {
  RM_XLOG_ID,
  XLOG_BACKUP_END,
  XLOG_CHECKPOINT_ONLINE,
  XLOG_CHECKPOINT_SHUTDOWN,
  XLOG_END_OF_RECOVERY,
  XLOG_FPI,
  XLOG_FPI_FOR_HINT,
  XLOG_FPW_CHANGE,
  XLOG_NEXTOID,
  XLOG_NOOP,
  XLOG_OVERWRITE_CONTRECORD,
  XLOG_PARAMETER_CHANGE,
  XLOG_RESTORE_POINT,
  XLOG_SWITCH,
  XLR_RMGR_INFO_MASK,
} from "../rmgr_ids.js";
import { exactMain, recordCorruption } from "./record_access.js";

export {
  XLOG_BACKUP_END,
  XLOG_CHECKPOINT_ONLINE,
  XLOG_CHECKPOINT_SHUTDOWN,
  XLOG_END_OF_RECOVERY,
  XLOG_FPI,
  XLOG_FPI_FOR_HINT,
  XLOG_FPW_CHANGE,
  XLOG_NEXTOID,
  XLOG_NOOP,
  XLOG_OVERWRITE_CONTRECORD,
  XLOG_PARAMETER_CHANGE,
  XLOG_RESTORE_POINT,
  XLOG_SWITCH,
};

export const SIZE_OF_NEXTOID = 4;
export const SIZE_OF_BACKUP_END = 8;
export const SIZE_OF_PARAMETER_CHANGE = 28;
/** MAXFNAMELEN: the room for a restore point's name, its NUL included. */
export const MAXFNAMELEN = 64;
export const SIZE_OF_RESTORE_POINT = 8 + MAXFNAMELEN;
export const SIZE_OF_FPW_CHANGE = 1;
export const SIZE_OF_END_OF_RECOVERY = 16;
export const SIZE_OF_OVERWRITE_CONTRECORD = 16;

/** wal_level values of PARAMETER_CHANGE (xlog.h). */
export const WAL_LEVEL_MINIMAL = 0;
export const WAL_LEVEL_REPLICA = 1;
export const WAL_LEVEL_LOGICAL = 2;

export interface XlogCheckpointRecord {
  op: typeof XLOG_CHECKPOINT_SHUTDOWN | typeof XLOG_CHECKPOINT_ONLINE;
  checkpoint: CheckPoint;
}

export interface XlogNoopRecord {
  op: typeof XLOG_NOOP;
  /** Whatever the writer put there, a view into the record. */
  data: Uint8Array;
}

export interface XlogNextOidRecord {
  op: typeof XLOG_NEXTOID;
  nextOid: number;
}

export interface XlogSwitchRecord {
  op: typeof XLOG_SWITCH;
}

export interface XlogBackupEndRecord {
  op: typeof XLOG_BACKUP_END;
  /** Where the backup that ends here started. */
  startPoint: Lsn;
}

export interface XlogParameterChangeRecord {
  op: typeof XLOG_PARAMETER_CHANGE;
  maxConnections: number;
  maxWorkerProcesses: number;
  maxWalSenders: number;
  maxPreparedXacts: number;
  maxLocksPerXact: number;
  walLevel: number;
  walLogHints: boolean;
  trackCommitTimestamp: boolean;
}

export interface XlogRestorePointRecord {
  op: typeof XLOG_RESTORE_POINT;
  /** Microseconds since 2000-01-01. */
  time: number;
  name: string;
}

export interface XlogFpwChangeRecord {
  op: typeof XLOG_FPW_CHANGE;
  fullPageWrites: boolean;
}

export interface XlogEndOfRecoveryRecord {
  op: typeof XLOG_END_OF_RECOVERY;
  /** Microseconds since 2000-01-01. */
  endTime: number;
  thisTimeLineId: number;
  prevTimeLineId: number;
}

/** FPI, FPI_FOR_HINT: the page images are the block references; no main data. */
export interface XlogFpiRecord {
  op: typeof XLOG_FPI | typeof XLOG_FPI_FOR_HINT;
}

export interface XlogOverwriteContrecordRecord {
  op: typeof XLOG_OVERWRITE_CONTRECORD;
  /** Start of the torn record this one replaces. */
  overwrittenLsn: Lsn;
  /** Microseconds since 2000-01-01. */
  overwriteTime: number;
}

export type XlogRecord =
  | XlogCheckpointRecord
  | XlogNoopRecord
  | XlogNextOidRecord
  | XlogSwitchRecord
  | XlogBackupEndRecord
  | XlogParameterChangeRecord
  | XlogRestorePointRecord
  | XlogFpwChangeRecord
  | XlogEndOfRecoveryRecord
  | XlogFpiRecord
  | XlogOverwriteContrecordRecord;

function boolAt(rec: DecodedRecord, b: Uint8Array, o: number, what: string): boolean {
  const v = b[o]!;
  if (v > 1) throw recordCorruption(rec, `${what} is ${v}, not a bool`);
  return v === 1;
}

/** The record's XLOG opcode (xl_info & 0xF0). */
export function xlogOp(rec: DecodedRecord): number {
  return rec.info & XLR_RMGR_INFO_MASK;
}

/** Decode any XLOG record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeXlogRecord(rec: DecodedRecord): XlogRecord {
  if (rec.rmid !== RM_XLOG_ID) throw recordCorruption(rec, "not an XLOG record");
  const op = xlogOp(rec);
  switch (op) {
    case XLOG_CHECKPOINT_SHUTDOWN:
    case XLOG_CHECKPOINT_ONLINE:
      return { op, checkpoint: decodeCheckPoint(exactMain(rec, SIZEOF_CHECKPOINT, "CheckPoint")) };
    case XLOG_NOOP:
      return { op, data: rec.mainData };
    case XLOG_NEXTOID:
      return { op, nextOid: readU32LE(exactMain(rec, SIZE_OF_NEXTOID, "NEXTOID's Oid"), 0) };
    case XLOG_SWITCH:
      exactMain(rec, 0, "XLOG_SWITCH");
      return { op };
    case XLOG_BACKUP_END:
      return { op, startPoint: readLsnLE(exactMain(rec, SIZE_OF_BACKUP_END, "BACKUP_END's start point"), 0) };
    case XLOG_PARAMETER_CHANGE: {
      const d = exactMain(rec, SIZE_OF_PARAMETER_CHANGE, "xl_parameter_change");
      const walLevel = readU32LE(d, 20);
      if (walLevel > WAL_LEVEL_LOGICAL) throw recordCorruption(rec, `wal_level ${walLevel} is not one of minimal, replica, logical`);
      return {
        op,
        maxConnections: readU32LE(d, 0),
        maxWorkerProcesses: readU32LE(d, 4),
        maxWalSenders: readU32LE(d, 8),
        maxPreparedXacts: readU32LE(d, 12),
        maxLocksPerXact: readU32LE(d, 16),
        walLevel,
        walLogHints: boolAt(rec, d, 24, "wal_log_hints"),
        trackCommitTimestamp: boolAt(rec, d, 25, "track_commit_timestamp"),
      };
    }
    case XLOG_RESTORE_POINT: {
      const d = exactMain(rec, SIZE_OF_RESTORE_POINT, "xl_restore_point");
      const nameBytes = d.subarray(8, SIZE_OF_RESTORE_POINT);
      const nul = nameBytes.indexOf(0);
      if (nul < 0) throw recordCorruption(rec, `restore point name is not NUL-terminated within ${MAXFNAMELEN} bytes`);
      return { op, time: readI64LE(d, 0), name: new TextDecoder().decode(nameBytes.subarray(0, nul)) };
    }
    case XLOG_FPW_CHANGE: {
      const d = exactMain(rec, SIZE_OF_FPW_CHANGE, "FPW_CHANGE's bool");
      return { op, fullPageWrites: boolAt(rec, d, 0, "fullPageWrites") };
    }
    case XLOG_END_OF_RECOVERY: {
      const d = exactMain(rec, SIZE_OF_END_OF_RECOVERY, "xl_end_of_recovery");
      return { op, endTime: readI64LE(d, 0), thisTimeLineId: readU32LE(d, 8), prevTimeLineId: readU32LE(d, 12) };
    }
    case XLOG_FPI:
    case XLOG_FPI_FOR_HINT:
      exactMain(rec, 0, "a full-page-image record");
      return { op };
    case XLOG_OVERWRITE_CONTRECORD: {
      const d = exactMain(rec, SIZE_OF_OVERWRITE_CONTRECORD, "xl_overwrite_contrecord");
      return { op, overwrittenLsn: readLsnLE(d, 0), overwriteTime: readI64LE(d, 8) };
    }
    default:
      throw recordCorruption(rec, `unknown XLOG info code 0x${op.toString(16).padStart(2, "0")}`);
  }
}
