/**
 * Typed decoder of the RelMap rmgr's one record (RM_RELMAP_ID, src/include/utils/relmapper.h
 * of PostgreSQL 15.18). xl_info & 0xF0 is the opcode.
 *
 *   info  name    main data (little-endian)
 *   0x00  UPDATE  u32 dbid (0: the shared map) | u32 tsid | i32 nbytes | data[nbytes]
 *                 data is the whole new pg_filenode.map (RELMAPPER_FILESIZE bytes;
 *                 relmap_redo refuses any other size)
 *
 * Every length is checked: a malformed record is a CorruptionError naming LSN, rmgr and info.
 */
import { RELMAPPER_FILESIZE } from "../../consts.js";
import { readU32LE } from "../../../types/bytes.js";
import type { DecodedRecord } from "../record.js";
import { RM_RELMAP_ID, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";
import { needMain, recordCorruption } from "./record_access.js";

export const XLOG_RELMAP_UPDATE = 0x00;

export const MIN_SIZE_OF_RELMAP_UPDATE = 12;

export interface RelmapUpdateRecord {
  op: typeof XLOG_RELMAP_UPDATE;
  dbId: number;
  tsId: number;
  /** The new pg_filenode.map, RELMAPPER_FILESIZE bytes, a view into the record. */
  data: Uint8Array;
}

export type RelmapRecord = RelmapUpdateRecord;

/** Decode a RelMap record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeRelmapRecord(rec: DecodedRecord): RelmapRecord {
  if (rec.rmid !== RM_RELMAP_ID) throw recordCorruption(rec, "not a RelMap record");
  const op = rec.info & XLR_RMGR_INFO_MASK;
  if (op !== XLOG_RELMAP_UPDATE) throw recordCorruption(rec, `unknown RelMap info code 0x${op.toString(16).padStart(2, "0")}`);
  const d = needMain(rec, MIN_SIZE_OF_RELMAP_UPDATE, "xl_relmap_update");
  const nbytes = readU32LE(d, 8);
  if (nbytes !== RELMAPPER_FILESIZE)
    throw recordCorruption(rec, `relmap update of ${nbytes | 0} bytes, a map file is ${RELMAPPER_FILESIZE}`);
  if (d.length !== MIN_SIZE_OF_RELMAP_UPDATE + nbytes) {
    throw recordCorruption(
      rec,
      `main data is ${d.length} bytes, xl_relmap_update of ${nbytes} bytes is ${MIN_SIZE_OF_RELMAP_UPDATE + nbytes}`,
    );
  }
  return { op, dbId: readU32LE(d, 0), tsId: readU32LE(d, 4), data: d.subarray(MIN_SIZE_OF_RELMAP_UPDATE) };
}
