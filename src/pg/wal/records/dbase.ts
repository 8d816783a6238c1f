/**
 * Typed decoders of the Database rmgr's records (RM_DBASE_ID,
 * src/include/commands/dbcommands_xlog.h of PostgreSQL 15.18). xl_info & 0xF0 is the opcode.
 *
 *   info  name              main data (little-endian)
 *   0x00  CREATE_FILE_COPY  u32 db_id | u32 tablespace_id | u32 src_db_id |
 *                           u32 src_tablespace_id                                     (16)
 *                           CREATE DATABASE … STRATEGY FILE_COPY: the files are copied
 *   0x10  CREATE_WAL_LOG    u32 db_id | u32 tablespace_id                              (8)
 *                           STRATEGY WAL_LOG (15's default): the directory only; the
 *                           relations follow as Storage/CREATE and full-page images
 *   0x20  DROP              u32 db_id | i32 ntablespaces | u32 tablespace_ids[n]   (8 + 4n)
 *
 * Every length is checked: a malformed record is a CorruptionError naming LSN, rmgr and info.
 */
import { readU32LE } from "../../../types/bytes.js";
import type { DecodedRecord } from "../record.js";
import { RM_DBASE_ID, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";
import { exactMain, needMain, recordCorruption } from "./record_access.js";

export const XLOG_DBASE_CREATE_FILE_COPY = 0x00;
export const XLOG_DBASE_CREATE_WAL_LOG = 0x10;
export const XLOG_DBASE_DROP = 0x20;

export const SIZE_OF_DBASE_CREATE_FILE_COPY = 16;
export const SIZE_OF_DBASE_CREATE_WAL_LOG = 8;
export const MIN_SIZE_OF_DBASE_DROP = 8;

export interface DbaseCreateFileCopyRecord {
  op: typeof XLOG_DBASE_CREATE_FILE_COPY;
  dbId: number;
  tablespaceId: number;
  srcDbId: number;
  srcTablespaceId: number;
}

export interface DbaseCreateWalLogRecord {
  op: typeof XLOG_DBASE_CREATE_WAL_LOG;
  dbId: number;
  tablespaceId: number;
}

export interface DbaseDropRecord {
  op: typeof XLOG_DBASE_DROP;
  dbId: number;
  ntablespaces: number;
  /** ntablespaces u32 OIDs, a view into the record (tablespaceIdAt). */
  tablespaceIds: Uint8Array;
}

export type DbaseRecord = DbaseCreateFileCopyRecord | DbaseCreateWalLogRecord | DbaseDropRecord;

/** The i-th tablespace of a DROP record. */
export function tablespaceIdAt(r: DbaseDropRecord, i: number): number {
  return readU32LE(r.tablespaceIds, 4 * i);
}

/** Decode any Database record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeDbaseRecord(rec: DecodedRecord): DbaseRecord {
  if (rec.rmid !== RM_DBASE_ID) throw recordCorruption(rec, "not a Database record");
  const op = rec.info & XLR_RMGR_INFO_MASK;
  switch (op) {
    case XLOG_DBASE_CREATE_FILE_COPY: {
      const d = exactMain(rec, SIZE_OF_DBASE_CREATE_FILE_COPY, "xl_dbase_create_file_copy_rec");
      return { op, dbId: readU32LE(d, 0), tablespaceId: readU32LE(d, 4), srcDbId: readU32LE(d, 8), srcTablespaceId: readU32LE(d, 12) };
    }
    case XLOG_DBASE_CREATE_WAL_LOG: {
      const d = exactMain(rec, SIZE_OF_DBASE_CREATE_WAL_LOG, "xl_dbase_create_wal_log_rec");
      return { op, dbId: readU32LE(d, 0), tablespaceId: readU32LE(d, 4) };
    }
    case XLOG_DBASE_DROP: {
      const d = needMain(rec, MIN_SIZE_OF_DBASE_DROP, "xl_dbase_drop_rec");
      const n = readU32LE(d, 4);
      // A negative count reads as >= 2^31 and fails like any count the data can't hold.
      if (n > (d.length - MIN_SIZE_OF_DBASE_DROP) / 4 || d.length !== MIN_SIZE_OF_DBASE_DROP + 4 * n) {
        throw recordCorruption(
          rec,
          `main data is ${d.length} bytes, xl_dbase_drop_rec with ${n | 0} tablespaces is ${MIN_SIZE_OF_DBASE_DROP} + 4 each`,
        );
      }
      return { op, dbId: readU32LE(d, 0), ntablespaces: n, tablespaceIds: d.subarray(MIN_SIZE_OF_DBASE_DROP) };
    }
    default:
      throw recordCorruption(rec, `unknown Database info code 0x${op.toString(16).padStart(2, "0")}`);
  }
}
