/**
 * Typed decoders of the CLOG rmgr's records (RM_CLOG_ID, src/include/access/clog.h of
 * PostgreSQL 15.18). xl_info & 0xF0 is the opcode.
 *
 *   info  name      main data (little-endian)
 *   0x00  ZEROPAGE  i32 pageno: a new, zeroed pg_xact page
 *   0x10  TRUNCATE  i32 pageno | u32 oldestXact | u32 oldestXactDb                     (12)
 *                   segments wholly before pageno's segment are removed
 *
 * A page number is at most the last page of the 2^32 xid space (CLOG_XACTS_PER_PAGE xids a
 * page). Every length is checked: a malformed record is a CorruptionError naming LSN, rmgr
 * and info.
 */
import { CLOG_XACTS_PER_PAGE } from "../../consts.js";
import { readU32LE } from "../../../types/bytes.js";
import type { DecodedRecord } from "../record.js";
import { RM_CLOG_ID, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";
import { exactMain, recordCorruption } from "./record_access.js";

export const CLOG_ZEROPAGE = 0x00;
export const CLOG_TRUNCATE = 0x10;

export const SIZE_OF_CLOG_ZEROPAGE = 4;
export const SIZE_OF_CLOG_TRUNCATE = 12;
/** The last CLOG page: the one holding xid 2^32 - 1. */
export const CLOG_MAX_PAGENO = Math.floor(0xffff_ffff / CLOG_XACTS_PER_PAGE);

export interface ClogZeroPageRecord {
  op: typeof CLOG_ZEROPAGE;
  pageno: number;
}

export interface ClogTruncateRecord {
  op: typeof CLOG_TRUNCATE;
  /** The first page kept. */
  pageno: number;
  oldestXact: number;
  oldestXactDb: number;
}

export type ClogRecord = ClogZeroPageRecord | ClogTruncateRecord;

function pagenoAt(rec: DecodedRecord, d: Uint8Array): number {
  const pageno = readU32LE(d, 0);
  if (pageno > CLOG_MAX_PAGENO) throw recordCorruption(rec, `CLOG page ${pageno | 0} is outside 0..${CLOG_MAX_PAGENO}`);
  return pageno;
}

/** Decode any CLOG record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeClogRecord(rec: DecodedRecord): ClogRecord {
  if (rec.rmid !== RM_CLOG_ID) throw recordCorruption(rec, "not a CLOG record");
  const op = rec.info & XLR_RMGR_INFO_MASK;
  switch (op) {
    case CLOG_ZEROPAGE:
      return { op, pageno: pagenoAt(rec, exactMain(rec, SIZE_OF_CLOG_ZEROPAGE, "CLOG page number")) };
    case CLOG_TRUNCATE: {
      const d = exactMain(rec, SIZE_OF_CLOG_TRUNCATE, "xl_clog_truncate");
      return { op, pageno: pagenoAt(rec, d), oldestXact: readU32LE(d, 4), oldestXactDb: readU32LE(d, 8) };
    }
    default:
      throw recordCorruption(rec, `unknown CLOG info code 0x${op.toString(16).padStart(2, "0")}`);
  }
}
