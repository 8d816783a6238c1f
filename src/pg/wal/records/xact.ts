/**
 * Typed decoders of the Transaction rmgr's records (RM_XACT_ID, src/include/access/xact.h;
 * the commit/abort layout is ParseCommitRecord/ParseAbortRecord in xactdesc.c, the prepare
 * layout StartPrepare/EndPrepare in twophase.c, of PostgreSQL 15.18).
 *
 *   xl_info & 0x70 (XLOG_XACT_OPMASK) is the opcode; 0x80 (XLOG_XACT_HAS_INFO) says that a
 *   u32 xinfo follows xact_time in COMMIT, ABORT, COMMIT_PREPARED and ABORT_PREPARED.
 *
 *   COMMIT, COMMIT_PREPARED, ABORT, ABORT_PREPARED: i64 xact_time, then in this order, each
 *   present when its xinfo bit is set:
 *     [HAS_INFO]              u32 xinfo
 *     XINFO_HAS_DBINFO        u32 dbId | u32 tsId
 *     XINFO_HAS_SUBXACTS      i32 nsubxacts | u32 xid × nsubxacts
 *     XINFO_HAS_RELFILENODES  i32 nrels | RelFileNode (u32 spc, db, rel) × nrels
 *     XINFO_HAS_DROPPED_STATS i32 nitems | (i32 kind | u32 dboid | u32 objoid) × nitems
 *     XINFO_HAS_INVALS        i32 nmsgs | SharedInvalidationMessage (16 bytes) × nmsgs
 *                             (commit only: ParseAbortRecord never reads it)
 *     XINFO_HAS_TWOPHASE      u32 xid [XINFO_HAS_GID: the GID, NUL-terminated]
 *     XINFO_HAS_ORIGIN        u64 origin_lsn | i64 origin_timestamp (unaligned)
 *   PREPARE     the two-phase state file without its CRC: xl_xact_prepare (72 bytes:
 *               u32 magic | u32 total_len | u32 xid | u32 database | i64 prepared_at |
 *               u32 owner | i32 nsubxacts | ncommitrels | nabortrels | ncommitstats |
 *               nabortstats | ninvalmsgs | u8 initfileinval | pad | u16 gidlen |
 *               u64 origin_lsn | i64 origin_timestamp), then, each MAXALIGNed: the GID
 *               (gidlen bytes, NUL included), subxact xids, commit rels, abort rels, commit
 *               stats, abort stats, invalidation messages, then the rmgrs' 2PC records.
 *   ASSIGNMENT  u32 xtop | i32 nsubxacts | u32 xsub × nsubxacts
 *   INVALIDATIONS  i32 nmsgs | SharedInvalidationMessage × nmsgs
 *
 * Arrays are views into the record (see subxactAt, relFileNodeAt); every count is checked
 * against the bytes that remain before anything is read, and the parts must fill the main
 * data exactly: a short or malformed record is a CorruptionError naming LSN, rmgr and info.
 * Timestamps are microseconds since 2000-01-01 as numbers.
 */
import { INVALID_LSN, type Lsn, readLsnLE } from "../../../types/lsn.js";
import { readI64LE, readU16LE, readU32LE } from "../../../types/bytes.js";
import { maxAlign } from "../page.js";
import { type DecodedRecord, type RelFileNode, readRelFileNode } from "../record.js";
import { RM_XACT_ID } from "../rmgr_ids.js";
import { recordCorruption } from "./record_access.js";

export const XLOG_XACT_COMMIT = 0x00;
export const XLOG_XACT_PREPARE = 0x10;
export const XLOG_XACT_ABORT = 0x20;
export const XLOG_XACT_COMMIT_PREPARED = 0x30;
export const XLOG_XACT_ABORT_PREPARED = 0x40;
export const XLOG_XACT_ASSIGNMENT = 0x50;
export const XLOG_XACT_INVALIDATIONS = 0x60;
export const XLOG_XACT_OPMASK = 0x70;
export const XLOG_XACT_HAS_INFO = 0x80;

/** xl_xact_xinfo.xinfo: which parts follow. */
export const XACT_XINFO_HAS_DBINFO = 1 << 0;
export const XACT_XINFO_HAS_SUBXACTS = 1 << 1;
export const XACT_XINFO_HAS_RELFILENODES = 1 << 2;
export const XACT_XINFO_HAS_INVALS = 1 << 3;
export const XACT_XINFO_HAS_TWOPHASE = 1 << 4;
export const XACT_XINFO_HAS_ORIGIN = 1 << 5;
export const XACT_XINFO_HAS_AE_LOCKS = 1 << 6;
export const XACT_XINFO_HAS_GID = 1 << 7;
export const XACT_XINFO_HAS_DROPPED_STATS = 1 << 8;
/** xinfo flags that carry no data: what the standby must do on replay. */
export const XACT_COMPLETION_APPLY_FEEDBACK = 1 << 29;
export const XACT_COMPLETION_UPDATE_RELCACHE_FILE = 1 << 30;
export const XACT_COMPLETION_FORCE_SYNC_COMMIT = 2 ** 31;

/** The two-phase state file's format identifier. */
export const TWOPHASE_MAGIC = 0x57f94534;
/** Longest GID, its NUL included. */
export const GIDSIZE = 200;

export const SIZE_OF_XACT_COMMIT = 8;
export const SIZE_OF_XACT_ABORT = 8;
export const SIZE_OF_XACT_XINFO = 4;
export const SIZE_OF_XACT_DBINFO = 8;
export const SIZE_OF_XACT_TWOPHASE = 4;
export const SIZE_OF_XACT_ORIGIN = 16;
export const SIZE_OF_XACT_PREPARE = 72;
export const MIN_SIZE_OF_XACT_ASSIGNMENT = 8;
export const MIN_SIZE_OF_XACT_INVALS = 4;
export const SIZE_OF_RELFILENODE = 12;
export const SIZE_OF_XACT_STATS_ITEM = 12;
export const SIZE_OF_SHARED_INVAL_MESSAGE = 16;
const SIZE_OF_XID = 4;

/** COMMIT, ABORT, COMMIT_PREPARED, ABORT_PREPARED, parsed (xl_xact_parsed_commit/abort). */
export interface XactFinishRecord {
  op: typeof XLOG_XACT_COMMIT | typeof XLOG_XACT_ABORT | typeof XLOG_XACT_COMMIT_PREPARED | typeof XLOG_XACT_ABORT_PREPARED;
  /** Microseconds since 2000-01-01. */
  xactTime: number;
  /** 0 without XLOG_XACT_HAS_INFO. */
  xinfo: number;
  /** 0 without XACT_XINFO_HAS_DBINFO. */
  dbId: number;
  tsId: number;
  nsubxacts: number;
  /** nsubxacts u32 xids (subxactAt). */
  subxacts: Uint8Array;
  nrels: number;
  /** nrels relations to drop (relFileNodeAt). */
  rels: Uint8Array;
  nstats: number;
  /** nstats dropped statistics entries, 12 bytes each. */
  stats: Uint8Array;
  nmsgs: number;
  /** nmsgs invalidation messages, 16 bytes each (commit records only). */
  msgs: Uint8Array;
  /** The prepared transaction's xid; 0 (InvalidTransactionId) without XACT_XINFO_HAS_TWOPHASE. */
  twophaseXid: number;
  /** "" without XACT_XINFO_HAS_GID. */
  twophaseGid: string;
  /** 0 without XACT_XINFO_HAS_ORIGIN. */
  originLsn: Lsn;
  originTimestamp: number;
}

/** PREPARE: the two-phase state file and its parsed header (xl_xact_parsed_prepare). */
export interface XactPrepareRecord {
  op: typeof XLOG_XACT_PREPARE;
  xid: number;
  database: number;
  /** Microseconds since 2000-01-01. */
  preparedAt: number;
  owner: number;
  initFileInval: boolean;
  gid: string;
  nsubxacts: number;
  subxacts: Uint8Array;
  ncommitrels: number;
  commitRels: Uint8Array;
  nabortrels: number;
  abortRels: Uint8Array;
  ncommitstats: number;
  commitStats: Uint8Array;
  nabortstats: number;
  abortStats: Uint8Array;
  nmsgs: number;
  msgs: Uint8Array;
  originLsn: Lsn;
  originTimestamp: number;
  /** The rmgrs' 2PC records after the fixed parts (locks, predicate locks, stats …). */
  rmgrRecords: Uint8Array;
  /** The whole state file as pg_twophase holds it, without the trailing CRC-32C. */
  stateFile: Uint8Array;
}

export interface XactAssignmentRecord {
  op: typeof XLOG_XACT_ASSIGNMENT;
  xtop: number;
  nsubxacts: number;
  /** nsubxacts u32 xids (subxactAt). */
  subxacts: Uint8Array;
}

export interface XactInvalidationsRecord {
  op: typeof XLOG_XACT_INVALIDATIONS;
  nmsgs: number;
  msgs: Uint8Array;
}

export type XactRecord = XactFinishRecord | XactPrepareRecord | XactAssignmentRecord | XactInvalidationsRecord;

const EMPTY = new Uint8Array(0);

/** The i-th xid of a subxact array view. */
export function subxactAt(xids: Uint8Array, i: number): number {
  return readU32LE(xids, SIZE_OF_XID * i);
}

/** The i-th RelFileNode of a relation array view. */
export function relFileNodeAt(rels: Uint8Array, i: number): RelFileNode {
  return readRelFileNode(rels, SIZE_OF_RELFILENODE * i);
}

/** Reads main data front to back, every read bounds-checked against what remains. */
class Cursor {
  off = 0;
  constructor(
    readonly rec: DecodedRecord,
    readonly d: Uint8Array,
  ) {}

  need(n: number, what: string): void {
    if (n > this.d.length - this.off) {
      throw recordCorruption(this.rec, `${what} needs ${n} bytes at offset ${this.off}, main data has ${this.d.length}`);
    }
  }

  u32(what: string): number {
    this.need(4, what);
    const v = readU32LE(this.d, this.off);
    this.off += 4;
    return v;
  }

  /** A count (C int) followed by that many `size`-byte items: the items as a view. */
  array(size: number, what: string): { n: number; items: Uint8Array } {
    const n = this.u32(`${what} count`);
    // A negative int reads as >= 2^31 and fails here like any count too large for the data.
    if (n > (this.d.length - this.off) / size) {
      throw recordCorruption(
        this.rec,
        `${n} ${what} of ${size} bytes at offset ${this.off} do not fit in ${this.d.length} bytes of main data`,
      );
    }
    const items = this.d.subarray(this.off, this.off + n * size);
    this.off += n * size;
    return { n, items };
  }

  /** `n` items of `size` bytes, the view padded to MAXALIGN (the 2PC state file's layout). */
  alignedItems(n: number, size: number, what: string): Uint8Array {
    if (n > (this.d.length - this.off) / size) {
      throw recordCorruption(
        this.rec,
        `${n} ${what} of ${size} bytes at offset ${this.off} do not fit in ${this.d.length} bytes of main data`,
      );
    }
    const items = this.d.subarray(this.off, this.off + n * size);
    const padded = maxAlign(n * size);
    this.need(padded, `${what} padding`);
    this.off += padded;
    return items;
  }

  /** A NUL-terminated string; the cursor moves past its NUL. */
  cstring(max: number, what: string): string {
    const end = Math.min(this.d.length, this.off + max);
    let nul = this.off;
    while (nul < end && this.d[nul] !== 0) nul++;
    if (nul === end) throw recordCorruption(this.rec, `${what} is not NUL-terminated within ${max} bytes`);
    const s = new TextDecoder().decode(this.d.subarray(this.off, nul));
    this.off = nul + 1;
    return s;
  }

  end(what: string): void {
    if (this.off !== this.d.length) throw recordCorruption(this.rec, `${what} ends at ${this.off}, main data has ${this.d.length} bytes`);
  }
}

function decodeFinish(rec: DecodedRecord, op: XactFinishRecord["op"]): XactFinishRecord {
  const c = new Cursor(rec, rec.mainData);
  c.need(SIZE_OF_XACT_COMMIT, "xact_time");
  const xactTime = readI64LE(c.d, 0);
  c.off = SIZE_OF_XACT_COMMIT;
  const xinfo = rec.info & XLOG_XACT_HAS_INFO ? c.u32("xinfo") : 0;
  const x: XactFinishRecord = {
    op,
    xactTime,
    xinfo,
    dbId: 0,
    tsId: 0,
    nsubxacts: 0,
    subxacts: EMPTY,
    nrels: 0,
    rels: EMPTY,
    nstats: 0,
    stats: EMPTY,
    nmsgs: 0,
    msgs: EMPTY,
    twophaseXid: 0,
    twophaseGid: "",
    originLsn: INVALID_LSN,
    originTimestamp: 0,
  };
  if (xinfo & XACT_XINFO_HAS_DBINFO) {
    x.dbId = c.u32("dbinfo");
    x.tsId = c.u32("dbinfo");
  }
  if (xinfo & XACT_XINFO_HAS_SUBXACTS) {
    const a = c.array(SIZE_OF_XID, "subxacts");
    x.nsubxacts = a.n;
    x.subxacts = a.items;
  }
  if (xinfo & XACT_XINFO_HAS_RELFILENODES) {
    const a = c.array(SIZE_OF_RELFILENODE, "relfilenodes");
    x.nrels = a.n;
    x.rels = a.items;
  }
  if (xinfo & XACT_XINFO_HAS_DROPPED_STATS) {
    const a = c.array(SIZE_OF_XACT_STATS_ITEM, "dropped stats");
    x.nstats = a.n;
    x.stats = a.items;
  }
  const commit = op === XLOG_XACT_COMMIT || op === XLOG_XACT_COMMIT_PREPARED;
  if (commit && xinfo & XACT_XINFO_HAS_INVALS) {
    const a = c.array(SIZE_OF_SHARED_INVAL_MESSAGE, "invalidation messages");
    x.nmsgs = a.n;
    x.msgs = a.items;
  }
  if (xinfo & XACT_XINFO_HAS_TWOPHASE) {
    x.twophaseXid = c.u32("twophase xid");
    if (xinfo & XACT_XINFO_HAS_GID) x.twophaseGid = c.cstring(GIDSIZE, "GID");
  }
  if (xinfo & XACT_XINFO_HAS_ORIGIN) {
    c.need(SIZE_OF_XACT_ORIGIN, "xl_xact_origin");
    x.originLsn = readLsnLE(c.d, c.off);
    x.originTimestamp = readI64LE(c.d, c.off + 8);
    c.off += SIZE_OF_XACT_ORIGIN;
  }
  c.end(commit ? "xl_xact_commit" : "xl_xact_abort");
  if ((op === XLOG_XACT_COMMIT_PREPARED || op === XLOG_XACT_ABORT_PREPARED) && (xinfo & XACT_XINFO_HAS_TWOPHASE) === 0) {
    throw recordCorruption(rec, "a prepared transaction's commit or abort without its xid");
  }
  return x;
}

function decodePrepare(rec: DecodedRecord): XactPrepareRecord {
  const d = rec.mainData;
  const c = new Cursor(rec, d);
  c.need(SIZE_OF_XACT_PREPARE, "xl_xact_prepare");
  const magic = readU32LE(d, 0);
  if (magic !== TWOPHASE_MAGIC) throw recordCorruption(rec, `two-phase state file magic 0x${magic.toString(16)}`);
  // total_len counts the CRC-32C that pg_twophase appends to the WAL's bytes.
  const totalLen = readU32LE(d, 4);
  if (totalLen !== d.length + 4)
    throw recordCorruption(rec, `two-phase state file total_len ${totalLen}, main data has ${d.length} bytes + CRC`);
  const gidlen = readU16LE(d, 54);
  if (gidlen < 1 || gidlen > GIDSIZE) throw recordCorruption(rec, `GID length ${gidlen}`);
  if (d[52]! > 1) throw recordCorruption(rec, `initfileinval is ${d[52]}, not a bool`);
  c.off = maxAlign(SIZE_OF_XACT_PREPARE);
  const gidBytes = c.alignedItems(gidlen, 1, "GID bytes");
  if (gidBytes[gidlen - 1] !== 0 || gidBytes.indexOf(0) !== gidlen - 1)
    throw recordCorruption(rec, "GID is not one NUL-terminated string of gidlen bytes");
  const nsubxacts = readU32LE(d, 28);
  const ncommitrels = readU32LE(d, 32);
  const nabortrels = readU32LE(d, 36);
  const ncommitstats = readU32LE(d, 40);
  const nabortstats = readU32LE(d, 44);
  const nmsgs = readU32LE(d, 48);
  const subxacts = c.alignedItems(nsubxacts, SIZE_OF_XID, "subxacts");
  const commitRels = c.alignedItems(ncommitrels, SIZE_OF_RELFILENODE, "commit rels");
  const abortRels = c.alignedItems(nabortrels, SIZE_OF_RELFILENODE, "abort rels");
  const commitStats = c.alignedItems(ncommitstats, SIZE_OF_XACT_STATS_ITEM, "commit stats");
  const abortStats = c.alignedItems(nabortstats, SIZE_OF_XACT_STATS_ITEM, "abort stats");
  const msgs = c.alignedItems(nmsgs, SIZE_OF_SHARED_INVAL_MESSAGE, "invalidation messages");
  return {
    op: XLOG_XACT_PREPARE,
    xid: readU32LE(d, 8),
    database: readU32LE(d, 12),
    preparedAt: readI64LE(d, 16),
    owner: readU32LE(d, 24),
    initFileInval: d[52] === 1,
    gid: new TextDecoder().decode(gidBytes.subarray(0, gidlen - 1)),
    nsubxacts,
    subxacts,
    ncommitrels,
    commitRels,
    nabortrels,
    abortRels,
    ncommitstats,
    commitStats,
    nabortstats,
    abortStats,
    nmsgs,
    msgs,
    originLsn: readLsnLE(d, 56),
    originTimestamp: readI64LE(d, 64),
    rmgrRecords: d.subarray(c.off),
    stateFile: d,
  };
}

/** Decode any Transaction record; an opcode PostgreSQL 15 does not define is a CorruptionError. */
export function decodeXactRecord(rec: DecodedRecord): XactRecord {
  if (rec.rmid !== RM_XACT_ID) throw recordCorruption(rec, "not a Transaction record");
  const op = rec.info & XLOG_XACT_OPMASK;
  switch (op) {
    case XLOG_XACT_COMMIT:
    case XLOG_XACT_ABORT:
    case XLOG_XACT_COMMIT_PREPARED:
    case XLOG_XACT_ABORT_PREPARED:
      return decodeFinish(rec, op);
    case XLOG_XACT_PREPARE:
      return decodePrepare(rec);
    case XLOG_XACT_ASSIGNMENT: {
      const c = new Cursor(rec, rec.mainData);
      const xtop = c.u32("xtop");
      const a = c.array(SIZE_OF_XID, "subxacts");
      c.end("xl_xact_assignment");
      return { op, xtop, nsubxacts: a.n, subxacts: a.items };
    }
    case XLOG_XACT_INVALIDATIONS: {
      const c = new Cursor(rec, rec.mainData);
      const a = c.array(SIZE_OF_SHARED_INVAL_MESSAGE, "invalidation messages");
      c.end("xl_xact_invals");
      return { op, nmsgs: a.n, msgs: a.items };
    }
    default:
      throw recordCorruption(rec, `unknown Transaction info code 0x${op.toString(16).padStart(2, "0")}`);
  }
}
