/**
 * Typed decoders of the Standby rmgr's records (RM_STANDBY_ID, src/include/storage/
 * standbydefs.h of PostgreSQL 15.18). xl_info & 0xF0 is the opcode. They carry what a hot
 * standby needs (locks, running transactions, invalidations) and change no storage.
 *
 *   info  name           main data (little-endian)
 *   0x00  LOCK           i32 nlocks | (u32 xid | u32 dbOid | u32 relOid) × nlocks
 *   0x10  RUNNING_XACTS  i32 xcnt | i32 subxcnt | u8 subxid_overflow | pad3 | u32 nextXid |
 *                        u32 oldestRunningXid | u32 latestCompletedXid |
 *                        u32 xids[xcnt + subxcnt] (top-level first)               (24 + 4n)
 *   0x20  INVALIDATIONS  u32 dbId | u32 tsId | u8 relcacheInitFileInval | pad3 | i32 nmsgs |
 *                        SharedInvalidationMessage (16 bytes) × nmsgs             (16 + 16n)
 *
 * Arrays are views into the record. Every length is checked: a malformed record is a
 * CorruptionError naming LSN, rmgr and info.
 */
import { readU32LE } from "../../../types/bytes.js";
import type { DecodedRecord } from "../record.js";
import { RM_STANDBY_ID, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";
import { needMain, recordCorruption } from "./record_access.js";

export const XLOG_STANDBY_LOCK = 0x00;
export const XLOG_RUNNING_XACTS = 0x10;
export const XLOG_INVALIDATIONS = 0x20;

export const MIN_SIZE_OF_STANDBY_LOCKS = 4;
export const SIZE_OF_STANDBY_LOCK = 12;
export const MIN_SIZE_OF_RUNNING_XACTS = 24;
export const MIN_SIZE_OF_INVALIDATIONS = 16;
const SIZE_OF_SHARED_INVAL_MESSAGE = 16;

export interface StandbyLockRecord {
  op: typeof XLOG_STANDBY_LOCK;
  nlocks: number;
  /** nlocks (xid, dbOid, relOid) triples of AccessExclusiveLocks. */
  locks: Uint8Array;
}

export interface StandbyRunningXactsRecord {
  op: typeof XLOG_RUNNING_XACTS;
  xcnt: number;
  subxcnt: number;
  subxidOverflow: boolean;
  nextXid: number;
  oldestRunningXid: number;
  latestCompletedXid: number;
  /** xcnt top-level xids then subxcnt subxact xids (u32 each). */
  xids: Uint8Array;
}

export interface StandbyInvalidationsRecord {
  op: typeof XLOG_INVALIDATIONS;
  dbId: number;
  tsId: number;
  relcacheInitFileInval: boolean;
  nmsgs: number;
  msgs: Uint8Array;
}

export type StandbyRecord = StandbyLockRecord | StandbyRunningXactsRecord | StandbyInvalidationsRecord;

/** `count` items of `size` bytes from `from` on must fill the main data exactly. */
function exactItems(rec: DecodedRecord, d: Uint8Array, from: number, count: number, size: number, what: string): Uint8Array {
  // A negative C int reads as >= 2^31 and fails like any count the data can't hold.
  if (count > (d.length - from) / size || d.length !== from + count * size) {
    throw recordCorruption(rec, `main data is ${d.length} bytes, ${what} with ${count | 0} entries is ${from} + ${size} each`);
  }
  return d.subarray(from);
}

function boolAt(rec: DecodedRecord, d: Uint8Array, o: number, what: string): boolean {
  const v = d[o]!;
  if (v > 1) throw recordCorruption(rec, `${what} is ${v}, not a bool`);
  return v === 1;
}

/** Decode any Standby record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeStandbyRecord(rec: DecodedRecord): StandbyRecord {
  if (rec.rmid !== RM_STANDBY_ID) throw recordCorruption(rec, "not a Standby record");
  const op = rec.info & XLR_RMGR_INFO_MASK;
  switch (op) {
    case XLOG_STANDBY_LOCK: {
      const d = needMain(rec, MIN_SIZE_OF_STANDBY_LOCKS, "xl_standby_locks");
      const nlocks = readU32LE(d, 0);
      return { op, nlocks, locks: exactItems(rec, d, MIN_SIZE_OF_STANDBY_LOCKS, nlocks, SIZE_OF_STANDBY_LOCK, "xl_standby_locks") };
    }
    case XLOG_RUNNING_XACTS: {
      const d = needMain(rec, MIN_SIZE_OF_RUNNING_XACTS, "xl_running_xacts");
      const xcnt = readU32LE(d, 0);
      const subxcnt = readU32LE(d, 4);
      const xids = exactItems(rec, d, MIN_SIZE_OF_RUNNING_XACTS, xcnt + subxcnt, 4, "xl_running_xacts");
      return {
        op,
        xcnt,
        subxcnt,
        subxidOverflow: boolAt(rec, d, 8, "subxid_overflow"),
        nextXid: readU32LE(d, 12),
        oldestRunningXid: readU32LE(d, 16),
        latestCompletedXid: readU32LE(d, 20),
        xids,
      };
    }
    case XLOG_INVALIDATIONS: {
      const d = needMain(rec, MIN_SIZE_OF_INVALIDATIONS, "xl_invalidations");
      const nmsgs = readU32LE(d, 12);
      const msgs = exactItems(rec, d, MIN_SIZE_OF_INVALIDATIONS, nmsgs, SIZE_OF_SHARED_INVAL_MESSAGE, "xl_invalidations");
      return {
        op,
        dbId: readU32LE(d, 0),
        tsId: readU32LE(d, 4),
        relcacheInitFileInval: boolAt(rec, d, 8, "relcacheInitFileInval"),
        nmsgs,
        msgs,
      };
    }
    default:
      throw recordCorruption(rec, `unknown Standby info code 0x${op.toString(16).padStart(2, "0")}`);
  }
}
