/**
 * Typed decoders of the MultiXact rmgr's records (RM_MULTIXACT_ID,
 * src/include/access/multixact.h of PostgreSQL 15.18). xl_info & 0xF0 is the opcode.
 *
 *   info  name           main data (little-endian)
 *   0x00  ZERO_OFF_PAGE  i32 pageno: a new, zeroed pg_multixact/offsets page
 *   0x10  ZERO_MEM_PAGE  i32 pageno: a new, zeroed pg_multixact/members page
 *   0x20  CREATE_ID      u32 mid | u32 moff | i32 nmembers |
 *                        (u32 xid | u32 status) × nmembers                        (12 + 8n)
 *   0x30  TRUNCATE_ID    u32 oldestMultiDB | u32 startTruncOff | u32 endTruncOff |
 *                        u32 startTruncMemb | u32 endTruncMemb                       (20)
 *
 * A page number is at most the last page of the 2^32 id / offset space. A member's status
 * is a MultiXactStatus (0..5). Every length is checked: a malformed record is a
 * CorruptionError naming LSN, rmgr and info.
 */
import { MULTIXACT_MEMBERS_PER_PAGE, MULTIXACT_OFFSETS_PER_PAGE } from "../../consts.js";
import { readU32LE } from "../../../types/bytes.js";
import type { DecodedRecord } from "../record.js";
import { RM_MULTIXACT_ID, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";
import { exactMain, needMain, recordCorruption } from "./record_access.js";

export const XLOG_MULTIXACT_ZERO_OFF_PAGE = 0x00;
export const XLOG_MULTIXACT_ZERO_MEM_PAGE = 0x10;
export const XLOG_MULTIXACT_CREATE_ID = 0x20;
export const XLOG_MULTIXACT_TRUNCATE_ID = 0x30;

/** MultiXactStatus: how a member holds the tuple. */
export const MULTIXACT_STATUS_FOR_KEY_SHARE = 0x00;
export const MULTIXACT_STATUS_FOR_SHARE = 0x01;
export const MULTIXACT_STATUS_FOR_NO_KEY_UPDATE = 0x02;
export const MULTIXACT_STATUS_FOR_UPDATE = 0x03;
export const MULTIXACT_STATUS_NO_KEY_UPDATE = 0x04;
export const MULTIXACT_STATUS_UPDATE = 0x05;

export const SIZE_OF_MULTIXACT_ZERO_PAGE = 4;
export const SIZE_OF_MULTIXACT_CREATE = 12;
export const SIZE_OF_MULTIXACT_MEMBER = 8;
export const SIZE_OF_MULTIXACT_TRUNCATE = 20;
export const MULTIXACT_MAX_OFFSETS_PAGENO = Math.floor(0xffff_ffff / MULTIXACT_OFFSETS_PER_PAGE);
export const MULTIXACT_MAX_MEMBERS_PAGENO = Math.floor(0xffff_ffff / MULTIXACT_MEMBERS_PER_PAGE);

export interface MultiXactZeroPageRecord {
  op: typeof XLOG_MULTIXACT_ZERO_OFF_PAGE | typeof XLOG_MULTIXACT_ZERO_MEM_PAGE;
  pageno: number;
}

export interface MultiXactCreateRecord {
  op: typeof XLOG_MULTIXACT_CREATE_ID;
  /** The new MultiXactId. */
  mid: number;
  /** Its first member's offset in pg_multixact/members. */
  moff: number;
  nmembers: number;
  /** nmembers (xid, status) pairs, a view into the record (memberXidAt, memberStatusAt). */
  members: Uint8Array;
}

export interface MultiXactTruncateRecord {
  op: typeof XLOG_MULTIXACT_TRUNCATE_ID;
  oldestMultiDb: number;
  startTruncOff: number;
  /** The oldest multixact kept. */
  endTruncOff: number;
  startTruncMemb: number;
  /** The oldest member offset kept. */
  endTruncMemb: number;
}

export type MultiXactRecord = MultiXactZeroPageRecord | MultiXactCreateRecord | MultiXactTruncateRecord;

export function memberXidAt(r: MultiXactCreateRecord, i: number): number {
  return readU32LE(r.members, SIZE_OF_MULTIXACT_MEMBER * i);
}

export function memberStatusAt(r: MultiXactCreateRecord, i: number): number {
  return readU32LE(r.members, SIZE_OF_MULTIXACT_MEMBER * i + 4);
}

/** Decode any MultiXact record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeMultiXactRecord(rec: DecodedRecord): MultiXactRecord {
  if (rec.rmid !== RM_MULTIXACT_ID) throw recordCorruption(rec, "not a MultiXact record");
  const op = rec.info & XLR_RMGR_INFO_MASK;
  switch (op) {
    case XLOG_MULTIXACT_ZERO_OFF_PAGE:
    case XLOG_MULTIXACT_ZERO_MEM_PAGE: {
      const pageno = readU32LE(exactMain(rec, SIZE_OF_MULTIXACT_ZERO_PAGE, "page number"), 0);
      const max = op === XLOG_MULTIXACT_ZERO_OFF_PAGE ? MULTIXACT_MAX_OFFSETS_PAGENO : MULTIXACT_MAX_MEMBERS_PAGENO;
      if (pageno > max) throw recordCorruption(rec, `page ${pageno | 0} is outside 0..${max}`);
      return { op, pageno };
    }
    case XLOG_MULTIXACT_CREATE_ID: {
      const d = needMain(rec, SIZE_OF_MULTIXACT_CREATE, "xl_multixact_create");
      const n = readU32LE(d, 8);
      // multixact_redo reads members[0]; a negative count reads as >= 2^31 and fails here.
      if (
        n < 1 ||
        n > (d.length - SIZE_OF_MULTIXACT_CREATE) / SIZE_OF_MULTIXACT_MEMBER ||
        d.length !== SIZE_OF_MULTIXACT_CREATE + SIZE_OF_MULTIXACT_MEMBER * n
      ) {
        throw recordCorruption(
          rec,
          `main data is ${d.length} bytes, xl_multixact_create with ${n | 0} members is ${SIZE_OF_MULTIXACT_CREATE} + ${SIZE_OF_MULTIXACT_MEMBER} each (at least one)`,
        );
      }
      const r: MultiXactCreateRecord = {
        op,
        mid: readU32LE(d, 0),
        moff: readU32LE(d, 4),
        nmembers: n,
        members: d.subarray(SIZE_OF_MULTIXACT_CREATE),
      };
      for (let i = 0; i < n; i++) {
        const status = memberStatusAt(r, i);
        if (status > MULTIXACT_STATUS_UPDATE) throw recordCorruption(rec, `member ${i} has status ${status | 0}`);
      }
      return r;
    }
    case XLOG_MULTIXACT_TRUNCATE_ID: {
      const d = exactMain(rec, SIZE_OF_MULTIXACT_TRUNCATE, "xl_multixact_truncate");
      return {
        op,
        oldestMultiDb: readU32LE(d, 0),
        startTruncOff: readU32LE(d, 4),
        endTruncOff: readU32LE(d, 8),
        startTruncMemb: readU32LE(d, 12),
        endTruncMemb: readU32LE(d, 16),
      };
    }
    default:
      throw recordCorruption(rec, `unknown MultiXact info code 0x${op.toString(16).padStart(2, "0")}`);
  }
}
