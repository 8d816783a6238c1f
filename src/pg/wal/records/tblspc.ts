/**
 * Typed decoders of the Tablespace rmgr's records (RM_TBLSPC_ID,
 * src/include/commands/tablespace.h of PostgreSQL 15.18). xl_info & 0xF0 is the opcode.
 *
 *   info  name    main data (little-endian)
 *   0x00  CREATE  u32 ts_id | ts_path cstring (NUL-terminated; "" for an in-place
 *                 tablespace, allow_in_place_tablespaces, else the absolute LOCATION)
 *   0x10  DROP    u32 ts_id                                                         (4)
 *
 * Every length is checked: a malformed record is a CorruptionError naming LSN, rmgr and info.
 */
import { readU32LE } from "../../../types/bytes.js";
import type { DecodedRecord } from "../record.js";
import { RM_TBLSPC_ID, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";
import { exactMain, needMain, recordCorruption } from "./record_access.js";

export const XLOG_TBLSPC_CREATE = 0x00;
export const XLOG_TBLSPC_DROP = 0x10;

/** ts_id and at least the path's NUL. */
export const MIN_SIZE_OF_TBLSPC_CREATE = 5;
export const SIZE_OF_TBLSPC_DROP = 4;
/** MAXPGPATH: PostgreSQL refuses longer locations (CreateTableSpace). */
export const MAX_TBLSPC_PATH_BYTES = 1024;

export interface TblspcCreateRecord {
  op: typeof XLOG_TBLSPC_CREATE;
  tsId: number;
  /** The LOCATION as given ("" for an in-place tablespace). */
  path: string;
}

export interface TblspcDropRecord {
  op: typeof XLOG_TBLSPC_DROP;
  tsId: number;
}

export type TblspcRecord = TblspcCreateRecord | TblspcDropRecord;

/** Decode a Tablespace record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeTblspcRecord(rec: DecodedRecord): TblspcRecord {
  if (rec.rmid !== RM_TBLSPC_ID) throw recordCorruption(rec, "not a Tablespace record");
  const op = rec.info & XLR_RMGR_INFO_MASK;
  switch (op) {
    case XLOG_TBLSPC_CREATE: {
      const d = needMain(rec, MIN_SIZE_OF_TBLSPC_CREATE, "xl_tblspc_create_rec");
      const nul = d.indexOf(0, 4);
      if (nul < 0) throw recordCorruption(rec, "xl_tblspc_create_rec: ts_path is not NUL-terminated");
      if (nul !== d.length - 1) throw recordCorruption(rec, `xl_tblspc_create_rec: ${d.length - 1 - nul} bytes after ts_path's NUL`);
      if (nul - 4 >= MAX_TBLSPC_PATH_BYTES) throw recordCorruption(rec, `xl_tblspc_create_rec: ts_path of ${nul - 4} bytes`);
      return { op, tsId: readU32LE(d, 0), path: new TextDecoder().decode(d.subarray(4, nul)) };
    }
    case XLOG_TBLSPC_DROP: {
      const d = exactMain(rec, SIZE_OF_TBLSPC_DROP, "xl_tblspc_drop_rec");
      return { op, tsId: readU32LE(d, 0) };
    }
    default:
      throw recordCorruption(rec, `unknown Tablespace info code 0x${op.toString(16).padStart(2, "0")}`);
  }
}
