/**
 * Typed record decoders of the non-page rmgrs (src/pg/wal/records/{xlog,xact,smgr,clog,
 * dbase,multixact,relmap,standby}.ts).
 *
 * Hand-built records (test/support/walgen.ts lays out the record; decodeRecord decodes it)
 * check each info code's fields, and that every strict prefix of a good main data, a byte
 * too many, and each field out of range is a CorruptionError naming the record's LSN, rmgr
 * and info. Then one real PostgreSQL 15 (pg_resetwal puts the next xid, multixact and member
 * offset at SLRU page starts, so the workload zeroes new CLOG and multixact pages) runs a
 * workload with commits, aborts, subtransactions, multixacts, prepared transactions,
 * CREATE/DROP DATABASE in both strategies, VACUUM truncation, VACUUM FULL of a mapped
 * catalog, checkpoints, a restore point, a backup, a WAL switch and freezing of every
 * database; every record of these rmgrs in its WAL must decode, and some fields are
 * checked against what the server reports.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CheckPoint, encodeCheckPoint } from "../src/pg/control.js";
import { WalStreamDecoder } from "../src/pg/wal/decoder.js";
import { walFileName } from "../src/pg/wal/page.js";
import { type DecodedRecord, decodeRecord } from "../src/pg/wal/record.js";
import { CLOG_TRUNCATE, CLOG_ZEROPAGE, decodeClogRecord } from "../src/pg/wal/records/clog.js";
import {
  decodeDbaseRecord,
  tablespaceIdAt,
  XLOG_DBASE_CREATE_FILE_COPY,
  XLOG_DBASE_CREATE_WAL_LOG,
  XLOG_DBASE_DROP,
} from "../src/pg/wal/records/dbase.js";
import {
  decodeMultiXactRecord,
  memberStatusAt,
  memberXidAt,
  XLOG_MULTIXACT_CREATE_ID,
  XLOG_MULTIXACT_TRUNCATE_ID,
  XLOG_MULTIXACT_ZERO_MEM_PAGE,
  XLOG_MULTIXACT_ZERO_OFF_PAGE,
} from "../src/pg/wal/records/multixact.js";
import { decodeRelmapRecord, XLOG_RELMAP_UPDATE } from "../src/pg/wal/records/relmap.js";
import { decodeSmgrRecord, SMGR_TRUNCATE_ALL, XLOG_SMGR_CREATE, XLOG_SMGR_TRUNCATE } from "../src/pg/wal/records/smgr.js";
import { decodeStandbyRecord, XLOG_INVALIDATIONS, XLOG_RUNNING_XACTS, XLOG_STANDBY_LOCK } from "../src/pg/wal/records/standby.js";
import {
  decodeXactRecord,
  relFileNodeAt,
  subxactAt,
  TWOPHASE_MAGIC,
  XACT_XINFO_HAS_DBINFO,
  XACT_XINFO_HAS_DROPPED_STATS,
  XACT_XINFO_HAS_GID,
  XACT_XINFO_HAS_INVALS,
  XACT_XINFO_HAS_ORIGIN,
  XACT_XINFO_HAS_RELFILENODES,
  XACT_XINFO_HAS_SUBXACTS,
  XACT_XINFO_HAS_TWOPHASE,
  XLOG_XACT_ABORT,
  XLOG_XACT_ABORT_PREPARED,
  XLOG_XACT_ASSIGNMENT,
  XLOG_XACT_COMMIT,
  XLOG_XACT_COMMIT_PREPARED,
  XLOG_XACT_HAS_INFO,
  XLOG_XACT_INVALIDATIONS,
  XLOG_XACT_PREPARE,
} from "../src/pg/wal/records/xact.js";
import {
  decodeXlogRecord,
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
} from "../src/pg/wal/records/xlog.js";
import {
  describeRecordKind,
  RM_CLOG_ID,
  RM_DBASE_ID,
  RM_HEAP_ID,
  RM_MULTIXACT_ID,
  RM_RELMAP_ID,
  RM_SMGR_ID,
  RM_STANDBY_ID,
  RM_XACT_ID,
  RM_XLOG_ID,
  rmgrName,
  infoName,
} from "../src/pg/wal/rmgr_ids.js";
import { CorruptionError } from "../src/types/errors.js";
import { asLsn, type Lsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { PgInstance } from "./support/postgres.js";
import { buildRecord, bytesOf, u16le, u32le } from "./support/walgen.js";

const LSN = asLsn(0x0301_2345_6788);

function u64le(v: number): number[] {
  return [...u32le(v % 0x1_0000_0000), ...u32le(Math.floor(v / 0x1_0000_0000))];
}

/** A record of `rmid`/`info` whose main data is `main` (no block references). */
function record(rmid: number, info: number, main: Uint8Array | number[], xid = 0): DecodedRecord {
  const data = bytesOf(main);
  const hdr = data.length === 0 ? [] : data.length <= 255 ? [255, data.length] : [254, ...u32le(data.length)];
  return decodeRecord(
    buildRecord({ rmid, info, xid, body: bytesOf(hdr, data) }, asLsn(0x100)),
    LSN,
    asLsn(LSN + 24 + hdr.length + data.length),
  );
}

type Decoder = (rec: DecodedRecord) => unknown;

/** `fn` throws a CorruptionError that names the record's LSN, rmgr and info (and matches `re`). */
function expectCorrupt(rec: DecodedRecord, fn: Decoder, re?: RegExp): void {
  let err: unknown;
  try {
    fn(rec);
  } catch (e) {
    err = e;
  }
  expect(err, `${describeRecordKind(rec.rmid, rec.info)} of ${rec.mainData.length} bytes`).toBeInstanceOf(CorruptionError);
  const msg = (err as Error).message;
  expect(msg).toContain(`at ${lsnToString(LSN)}`);
  expect(msg).toContain(describeRecordKind(rec.rmid, rec.info));
  expect(msg).toContain(`rmgr ${rec.rmid}, info 0x${rec.info.toString(16).padStart(2, "0")}`);
  if (re !== undefined) expect(msg).toMatch(re);
}

/** Every strict prefix of `main`, and `main` plus one byte, is corrupt. */
function expectExact(rmid: number, info: number, main: Uint8Array | number[], fn: Decoder): void {
  const bytes = bytesOf(main);
  for (let n = 0; n < bytes.length; n++) expectCorrupt(record(rmid, info, bytes.subarray(0, n)), fn);
  expectCorrupt(record(rmid, info, bytesOf(bytes, [0])), fn);
}

const RNODE = [...u32le(1663), ...u32le(16384), ...u32le(24576)];

describe("XLOG records", () => {
  const cp: CheckPoint = {
    redo: asLsn(0x0301_0000_0028),
    thisTimeLineId: 3,
    prevTimeLineId: 2,
    fullPageWrites: true,
    nextXidEpoch: 1,
    nextXid: 123456,
    nextOid: 40000,
    nextMulti: 77,
    nextMultiOffset: 300,
    oldestXid: 700,
    oldestXidDb: 1,
    oldestMulti: 1,
    oldestMultiDb: 5,
    time: 1_700_000_000,
    oldestCommitTsXid: 0,
    newestCommitTsXid: 0,
    oldestActiveXid: 123000,
  };

  it("decodes each info code", () => {
    for (const op of [XLOG_CHECKPOINT_SHUTDOWN, XLOG_CHECKPOINT_ONLINE]) {
      const r = decodeXlogRecord(record(RM_XLOG_ID, op, encodeCheckPoint(cp)));
      expect(r).toEqual({ op, checkpoint: cp });
    }
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_NEXTOID, u32le(0xfffffff0)))).toEqual({ op: XLOG_NEXTOID, nextOid: 0xfffffff0 });
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_SWITCH, []))).toEqual({ op: XLOG_SWITCH });
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_FPI, []))).toEqual({ op: XLOG_FPI });
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_FPI_FOR_HINT, []))).toEqual({ op: XLOG_FPI_FOR_HINT });
    const noop = decodeXlogRecord(record(RM_XLOG_ID, XLOG_NOOP, [9, 8, 7]));
    expect(noop.op === XLOG_NOOP && [...noop.data]).toEqual([9, 8, 7]);
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_BACKUP_END, u64le(0x0002_0000_1000)))).toEqual({
      op: XLOG_BACKUP_END,
      startPoint: 0x0002_0000_1000,
    });
    const pc = [...u32le(100), ...u32le(8), ...u32le(10), ...u32le(5), ...u32le(64), ...u32le(2), 1, 0, 0, 0];
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_PARAMETER_CHANGE, pc))).toEqual({
      op: XLOG_PARAMETER_CHANGE,
      maxConnections: 100,
      maxWorkerProcesses: 8,
      maxWalSenders: 10,
      maxPreparedXacts: 5,
      maxLocksPerXact: 64,
      walLevel: 2,
      walLogHints: true,
      trackCommitTimestamp: false,
    });
    const name = new Uint8Array(64);
    name.set(new TextEncoder().encode("before-upgrade"));
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_RESTORE_POINT, bytesOf(u64le(750_000_000_000_000), name)))).toEqual({
      op: XLOG_RESTORE_POINT,
      time: 750_000_000_000_000,
      name: "before-upgrade",
    });
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_FPW_CHANGE, [0]))).toEqual({ op: XLOG_FPW_CHANGE, fullPageWrites: false });
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_END_OF_RECOVERY, [...u64le(12345), ...u32le(4), ...u32le(3)]))).toEqual({
      op: XLOG_END_OF_RECOVERY,
      endTime: 12345,
      thisTimeLineId: 4,
      prevTimeLineId: 3,
    });
    expect(decodeXlogRecord(record(RM_XLOG_ID, XLOG_OVERWRITE_CONTRECORD, [...u64le(0x0001_00ff_e000), ...u64le(99)]))).toEqual({
      op: XLOG_OVERWRITE_CONTRECORD,
      overwrittenLsn: 0x0001_00ff_e000,
      overwriteTime: 99,
    });
  });

  it("refuses short, long and out-of-range records with a CorruptionError naming LSN, rmgr and info", () => {
    expectExact(RM_XLOG_ID, XLOG_CHECKPOINT_ONLINE, encodeCheckPoint(cp), decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_NEXTOID, u32le(5), decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_SWITCH, [], decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_FPI, [], decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_BACKUP_END, u64le(1), decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_PARAMETER_CHANGE, new Uint8Array(28), decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_RESTORE_POINT, new Uint8Array(72), decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_FPW_CHANGE, [1], decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_END_OF_RECOVERY, new Uint8Array(16), decodeXlogRecord);
    expectExact(RM_XLOG_ID, XLOG_OVERWRITE_CONTRECORD, new Uint8Array(16), decodeXlogRecord);
    expectCorrupt(record(RM_XLOG_ID, XLOG_RESTORE_POINT, new Uint8Array(72).fill(65)), decodeXlogRecord, /NUL-terminated/);
    expectCorrupt(
      record(RM_XLOG_ID, XLOG_PARAMETER_CHANGE, bytesOf(new Uint8Array(20), u32le(3), [0, 0, 0, 0])),
      decodeXlogRecord,
      /wal_level 3/,
    );
    expectCorrupt(record(RM_XLOG_ID, XLOG_FPW_CHANGE, [2]), decodeXlogRecord, /not a bool/);
    expectCorrupt(record(RM_XLOG_ID, 0xc0, []), decodeXlogRecord, /unknown XLOG info code 0xc0/);
    expectCorrupt(record(RM_XACT_ID, XLOG_NEXTOID, u32le(5)), decodeXlogRecord, /not an XLOG record/);
  });
});

describe("Transaction records", () => {
  const gid = (s: string) => [...new TextEncoder().encode(s), 0];
  const inval = new Uint8Array(16).fill(0xab);
  /** A commit of a prepared transaction with every optional part. */
  const fullCommit = bytesOf(
    u64le(800_000_000_000_000), // xact_time
    u32le(
      XACT_XINFO_HAS_DBINFO |
        XACT_XINFO_HAS_SUBXACTS |
        XACT_XINFO_HAS_RELFILENODES |
        XACT_XINFO_HAS_DROPPED_STATS |
        XACT_XINFO_HAS_INVALS |
        XACT_XINFO_HAS_TWOPHASE |
        XACT_XINFO_HAS_GID |
        XACT_XINFO_HAS_ORIGIN,
    ),
    [...u32le(16384), ...u32le(1663)], // dbinfo
    [...u32le(2), ...u32le(1001), ...u32le(1002)], // subxacts
    [...u32le(1), ...RNODE], // relfilenodes
    [...u32le(1), ...u32le(1), ...u32le(16384), ...u32le(24576)], // dropped stats
    u32le(2),
    inval,
    inval, // invals
    u32le(999), // twophase xid
    gid("tx-1"),
    [...u64le(0x0007_0000_0100), ...u64le(42)], // origin (unaligned)
  );

  it("decodes COMMIT_PREPARED with every optional part (ParseCommitRecord's order)", () => {
    const r = decodeXactRecord(record(RM_XACT_ID, XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO, fullCommit));
    if (r.op !== XLOG_XACT_COMMIT_PREPARED) throw new Error("wrong op");
    expect(r.xactTime).toBe(800_000_000_000_000);
    expect([r.dbId, r.tsId]).toEqual([16384, 1663]);
    expect(r.nsubxacts).toBe(2);
    expect([subxactAt(r.subxacts, 0), subxactAt(r.subxacts, 1)]).toEqual([1001, 1002]);
    expect(r.nrels).toBe(1);
    expect(relFileNodeAt(r.rels, 0)).toEqual({ spcNode: 1663, dbNode: 16384, relNode: 24576 });
    expect(r.nstats).toBe(1);
    expect(r.nmsgs).toBe(2);
    expect(r.msgs.length).toBe(32);
    expect(r.twophaseXid).toBe(999);
    expect(r.twophaseGid).toBe("tx-1");
    expect(r.originLsn).toBe(0x0007_0000_0100);
    expect(r.originTimestamp).toBe(42);
  });

  it("decodes a plain COMMIT, an ABORT (which has no invalidations), ABORT_PREPARED, ASSIGNMENT and INVALIDATIONS", () => {
    const plain = decodeXactRecord(record(RM_XACT_ID, XLOG_XACT_COMMIT, u64le(5), 700));
    expect(plain).toMatchObject({ op: XLOG_XACT_COMMIT, xactTime: 5, xinfo: 0, nsubxacts: 0, nrels: 0, twophaseXid: 0, twophaseGid: "" });
    const abortMain = bytesOf(
      u64le(6),
      u32le(XACT_XINFO_HAS_SUBXACTS | XACT_XINFO_HAS_RELFILENODES),
      [...u32le(1), ...u32le(3000)],
      [...u32le(1), ...RNODE],
    );
    const abort = decodeXactRecord(record(RM_XACT_ID, XLOG_XACT_ABORT | XLOG_XACT_HAS_INFO, abortMain));
    if (abort.op !== XLOG_XACT_ABORT) throw new Error("wrong op");
    expect(subxactAt(abort.subxacts, 0)).toBe(3000);
    expect(relFileNodeAt(abort.rels, 0).relNode).toBe(24576);
    const ap = decodeXactRecord(
      record(
        RM_XACT_ID,
        XLOG_XACT_ABORT_PREPARED | XLOG_XACT_HAS_INFO,
        bytesOf(u64le(7), u32le(XACT_XINFO_HAS_TWOPHASE | XACT_XINFO_HAS_GID), u32le(4444), gid("g")),
      ),
    );
    expect(ap).toMatchObject({ op: XLOG_XACT_ABORT_PREPARED, twophaseXid: 4444, twophaseGid: "g" });
    const asg = decodeXactRecord(record(RM_XACT_ID, XLOG_XACT_ASSIGNMENT, [...u32le(900), ...u32le(2), ...u32le(901), ...u32le(902)]));
    if (asg.op !== XLOG_XACT_ASSIGNMENT) throw new Error("wrong op");
    expect([asg.xtop, asg.nsubxacts, subxactAt(asg.subxacts, 1)]).toEqual([900, 2, 902]);
    const inv = decodeXactRecord(record(RM_XACT_ID, XLOG_XACT_INVALIDATIONS, bytesOf(u32le(1), inval)));
    expect(inv).toMatchObject({ op: XLOG_XACT_INVALIDATIONS, nmsgs: 1 });
  });

  /** A two-phase state file as StartPrepare lays it out: every part MAXALIGNed. */
  function prepareFile(gidText: string, nsub: number, withEnd = true): Uint8Array {
    const g = gid(gidText);
    const pad = (b: number[]) => [...b, ...new Array((8 - (b.length % 8)) % 8).fill(0)];
    const subs: number[] = [];
    for (let i = 0; i < nsub; i++) subs.push(...u32le(5000 + i));
    const body = [...pad(g), ...pad(subs), ...pad(RNODE), ...(withEnd ? [0, 0, 0, 0, 0, 0, 0, 0] : [])];
    const hdr = [
      ...u32le(TWOPHASE_MAGIC),
      ...u32le(72 + body.length + 4),
      ...u32le(4999), // xid
      ...u32le(16384), // database
      ...u64le(123456789), // prepared_at
      ...u32le(10), // owner
      ...u32le(nsub),
      ...u32le(0), // ncommitrels
      ...u32le(1), // nabortrels
      ...u32le(0),
      ...u32le(0),
      ...u32le(0), // ninvalmsgs
      1, // initfileinval
      0,
      ...u16le(g.length),
      ...u64le(0),
      ...u64le(0),
    ];
    return bytesOf(hdr, body);
  }

  it("decodes PREPARE: the state file's header, GID, subxacts and relations", () => {
    const file = prepareFile("batch-7", 3);
    const r = decodeXactRecord(record(RM_XACT_ID, XLOG_XACT_PREPARE, file, 4999));
    if (r.op !== XLOG_XACT_PREPARE) throw new Error("wrong op");
    expect([r.xid, r.database, r.preparedAt, r.owner, r.initFileInval, r.gid]).toEqual([4999, 16384, 123456789, 10, true, "batch-7"]);
    expect([r.nsubxacts, subxactAt(r.subxacts, 2)]).toEqual([3, 5002]);
    expect([r.ncommitrels, r.nabortrels]).toEqual([0, 1]);
    expect(relFileNodeAt(r.abortRels, 0).relNode).toBe(24576);
    expect(r.rmgrRecords.length).toBe(8);
    expect(r.stateFile).toEqual(file);
  });

  it("refuses short, long and inconsistent records with a CorruptionError naming LSN, rmgr and info", () => {
    expectExact(RM_XACT_ID, XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO, fullCommit, decodeXactRecord);
    expectExact(RM_XACT_ID, XLOG_XACT_COMMIT, u64le(5), decodeXactRecord);
    expectExact(RM_XACT_ID, XLOG_XACT_ASSIGNMENT, [...u32le(900), ...u32le(1), ...u32le(901)], decodeXactRecord);
    expectExact(RM_XACT_ID, XLOG_XACT_INVALIDATIONS, bytesOf(u32le(1), inval), decodeXactRecord);
    expectExact(RM_XACT_ID, XLOG_XACT_PREPARE, prepareFile("p", 2), decodeXactRecord);
    // A negative count, a GID without its NUL, a prepared commit without its xid.
    expectCorrupt(record(RM_XACT_ID, XLOG_XACT_ASSIGNMENT, [...u32le(900), ...u32le(0xffffffff)]), decodeXactRecord, /do not fit/);
    expectCorrupt(
      record(
        RM_XACT_ID,
        XLOG_XACT_ABORT_PREPARED | XLOG_XACT_HAS_INFO,
        bytesOf(u64le(7), u32le(XACT_XINFO_HAS_TWOPHASE | XACT_XINFO_HAS_GID), u32le(4444), [65, 65]),
      ),
      decodeXactRecord,
      /GID is not NUL-terminated/,
    );
    expectCorrupt(record(RM_XACT_ID, XLOG_XACT_COMMIT_PREPARED, u64le(5)), decodeXactRecord, /without its xid/);
    const badMagic = prepareFile("p", 0);
    badMagic[0]! ^= 1;
    expectCorrupt(record(RM_XACT_ID, XLOG_XACT_PREPARE, badMagic), decodeXactRecord, /magic/);
    expectCorrupt(record(RM_XACT_ID, 0x70, u64le(5)), decodeXactRecord, /unknown Transaction info code 0x70/);
  });
});

describe("Storage, CLOG, Database, MultiXact, RelMap, Standby records", () => {
  it("Storage: CREATE and TRUNCATE", () => {
    expect(decodeSmgrRecord(record(RM_SMGR_ID, XLOG_SMGR_CREATE, [...RNODE, ...u32le(2)]))).toEqual({
      op: XLOG_SMGR_CREATE,
      rnode: { spcNode: 1663, dbNode: 16384, relNode: 24576 },
      forkNum: 2,
    });
    expect(decodeSmgrRecord(record(RM_SMGR_ID, XLOG_SMGR_TRUNCATE, [...u32le(40), ...RNODE, ...u32le(SMGR_TRUNCATE_ALL)]))).toEqual({
      op: XLOG_SMGR_TRUNCATE,
      blkno: 40,
      rnode: { spcNode: 1663, dbNode: 16384, relNode: 24576 },
      flags: SMGR_TRUNCATE_ALL,
    });
    expectExact(RM_SMGR_ID, XLOG_SMGR_CREATE, [...RNODE, ...u32le(0)], decodeSmgrRecord);
    expectExact(RM_SMGR_ID, XLOG_SMGR_TRUNCATE, [...u32le(40), ...RNODE, ...u32le(1)], decodeSmgrRecord);
    expectCorrupt(record(RM_SMGR_ID, XLOG_SMGR_CREATE, [...RNODE, ...u32le(4)]), decodeSmgrRecord, /fork number 4/);
    expectCorrupt(record(RM_SMGR_ID, XLOG_SMGR_TRUNCATE, [...u32le(40), ...RNODE, ...u32le(8)]), decodeSmgrRecord, /truncate flags 0x8/);
    expectCorrupt(record(RM_SMGR_ID, 0x00, [...RNODE, ...u32le(0)]), decodeSmgrRecord, /unknown Storage info code 0x00/);
  });

  it("CLOG: ZEROPAGE and TRUNCATE", () => {
    expect(decodeClogRecord(record(RM_CLOG_ID, CLOG_ZEROPAGE, u32le(131071)))).toEqual({ op: CLOG_ZEROPAGE, pageno: 131071 });
    expect(decodeClogRecord(record(RM_CLOG_ID, CLOG_TRUNCATE, [...u32le(64), ...u32le(2_100_000), ...u32le(5)]))).toEqual({
      op: CLOG_TRUNCATE,
      pageno: 64,
      oldestXact: 2_100_000,
      oldestXactDb: 5,
    });
    expectExact(RM_CLOG_ID, CLOG_ZEROPAGE, u32le(3), decodeClogRecord);
    expectExact(RM_CLOG_ID, CLOG_TRUNCATE, new Uint8Array(12), decodeClogRecord);
    expectCorrupt(record(RM_CLOG_ID, CLOG_ZEROPAGE, u32le(131072)), decodeClogRecord, /outside/);
    expectCorrupt(record(RM_CLOG_ID, CLOG_ZEROPAGE, u32le(0xffffffff)), decodeClogRecord, /CLOG page -1/);
  });

  it("Database: CREATE_FILE_COPY, CREATE_WAL_LOG, DROP", () => {
    expect(
      decodeDbaseRecord(record(RM_DBASE_ID, XLOG_DBASE_CREATE_FILE_COPY, [...u32le(16400), ...u32le(1663), ...u32le(1), ...u32le(1663)])),
    ).toEqual({
      op: XLOG_DBASE_CREATE_FILE_COPY,
      dbId: 16400,
      tablespaceId: 1663,
      srcDbId: 1,
      srcTablespaceId: 1663,
    });
    expect(decodeDbaseRecord(record(RM_DBASE_ID, XLOG_DBASE_CREATE_WAL_LOG, [...u32le(16401), ...u32le(1663)]))).toEqual({
      op: XLOG_DBASE_CREATE_WAL_LOG,
      dbId: 16401,
      tablespaceId: 1663,
    });
    const drop = decodeDbaseRecord(record(RM_DBASE_ID, XLOG_DBASE_DROP, [...u32le(16400), ...u32le(2), ...u32le(1663), ...u32le(16500)]));
    if (drop.op !== XLOG_DBASE_DROP) throw new Error("wrong op");
    expect([drop.dbId, drop.ntablespaces, tablespaceIdAt(drop, 0), tablespaceIdAt(drop, 1)]).toEqual([16400, 2, 1663, 16500]);
    expectExact(RM_DBASE_ID, XLOG_DBASE_CREATE_FILE_COPY, new Uint8Array(16), decodeDbaseRecord);
    expectExact(RM_DBASE_ID, XLOG_DBASE_CREATE_WAL_LOG, new Uint8Array(8), decodeDbaseRecord);
    expectExact(RM_DBASE_ID, XLOG_DBASE_DROP, [...u32le(16400), ...u32le(1), ...u32le(1663)], decodeDbaseRecord);
    expectCorrupt(record(RM_DBASE_ID, XLOG_DBASE_DROP, [...u32le(16400), ...u32le(0xffffffff)]), decodeDbaseRecord, /-1 tablespaces/);
  });

  it("MultiXact: ZERO_OFF_PAGE, ZERO_MEM_PAGE, CREATE_ID, TRUNCATE_ID", () => {
    expect(decodeMultiXactRecord(record(RM_MULTIXACT_ID, XLOG_MULTIXACT_ZERO_OFF_PAGE, u32le(32)))).toEqual({
      op: XLOG_MULTIXACT_ZERO_OFF_PAGE,
      pageno: 32,
    });
    expect(decodeMultiXactRecord(record(RM_MULTIXACT_ID, XLOG_MULTIXACT_ZERO_MEM_PAGE, u32le(2_625_285)))).toEqual({
      op: XLOG_MULTIXACT_ZERO_MEM_PAGE,
      pageno: 2_625_285,
    });
    const create = decodeMultiXactRecord(
      record(RM_MULTIXACT_ID, XLOG_MULTIXACT_CREATE_ID, [
        ...u32le(70),
        ...u32le(500),
        ...u32le(2),
        ...u32le(900),
        ...u32le(1),
        ...u32le(901),
        ...u32le(5),
      ]),
    );
    if (create.op !== XLOG_MULTIXACT_CREATE_ID) throw new Error("wrong op");
    expect([
      create.mid,
      create.moff,
      create.nmembers,
      memberXidAt(create, 1),
      memberStatusAt(create, 1),
      memberStatusAt(create, 0),
    ]).toEqual([70, 500, 2, 901, 5, 1]);
    expect(
      decodeMultiXactRecord(
        record(RM_MULTIXACT_ID, XLOG_MULTIXACT_TRUNCATE_ID, [...u32le(5), ...u32le(1), ...u32le(2048), ...u32le(0), ...u32le(1636)]),
      ),
    ).toEqual({
      op: XLOG_MULTIXACT_TRUNCATE_ID,
      oldestMultiDb: 5,
      startTruncOff: 1,
      endTruncOff: 2048,
      startTruncMemb: 0,
      endTruncMemb: 1636,
    });
    expectExact(RM_MULTIXACT_ID, XLOG_MULTIXACT_ZERO_OFF_PAGE, u32le(1), decodeMultiXactRecord);
    expectExact(
      RM_MULTIXACT_ID,
      XLOG_MULTIXACT_CREATE_ID,
      [...u32le(70), ...u32le(500), ...u32le(1), ...u32le(900), ...u32le(0)],
      decodeMultiXactRecord,
    );
    expectExact(RM_MULTIXACT_ID, XLOG_MULTIXACT_TRUNCATE_ID, new Uint8Array(20), decodeMultiXactRecord);
    expectCorrupt(record(RM_MULTIXACT_ID, XLOG_MULTIXACT_ZERO_OFF_PAGE, u32le(2_097_152)), decodeMultiXactRecord, /outside/);
    expectCorrupt(
      record(RM_MULTIXACT_ID, XLOG_MULTIXACT_CREATE_ID, [...u32le(70), ...u32le(500), ...u32le(0)]),
      decodeMultiXactRecord,
      /at least one/,
    );
    expectCorrupt(
      record(RM_MULTIXACT_ID, XLOG_MULTIXACT_CREATE_ID, [...u32le(70), ...u32le(500), ...u32le(1), ...u32le(900), ...u32le(6)]),
      decodeMultiXactRecord,
      /status 6/,
    );
  });

  it("RelMap: UPDATE of a whole map file", () => {
    const map = new Uint8Array(512).fill(3);
    const r = decodeRelmapRecord(record(RM_RELMAP_ID, XLOG_RELMAP_UPDATE, bytesOf(u32le(0), u32le(1664), u32le(512), map)));
    expect([r.dbId, r.tsId, r.data.length, r.data[511]]).toEqual([0, 1664, 512, 3]);
    expectExact(RM_RELMAP_ID, XLOG_RELMAP_UPDATE, bytesOf(u32le(5), u32le(1663), u32le(512), map), decodeRelmapRecord);
    expectCorrupt(
      record(RM_RELMAP_ID, XLOG_RELMAP_UPDATE, bytesOf(u32le(5), u32le(1663), u32le(511), map.subarray(1))),
      decodeRelmapRecord,
      /511 bytes/,
    );
    expectCorrupt(
      record(RM_RELMAP_ID, 0x10, bytesOf(u32le(5), u32le(1663), u32le(512), map)),
      decodeRelmapRecord,
      /unknown RelMap info code/,
    );
  });

  it("Standby: LOCK, RUNNING_XACTS, INVALIDATIONS", () => {
    const lock = decodeStandbyRecord(record(RM_STANDBY_ID, XLOG_STANDBY_LOCK, [...u32le(1), ...u32le(800), ...u32le(5), ...u32le(16384)]));
    expect(lock).toMatchObject({ op: XLOG_STANDBY_LOCK, nlocks: 1 });
    const running = [
      ...u32le(2),
      ...u32le(1),
      1,
      0,
      0,
      0,
      ...u32le(805),
      ...u32le(800),
      ...u32le(804),
      ...u32le(800),
      ...u32le(803),
      ...u32le(801),
    ];
    expect(decodeStandbyRecord(record(RM_STANDBY_ID, XLOG_RUNNING_XACTS, running))).toMatchObject({
      op: XLOG_RUNNING_XACTS,
      xcnt: 2,
      subxcnt: 1,
      subxidOverflow: true,
      nextXid: 805,
      oldestRunningXid: 800,
      latestCompletedXid: 804,
    });
    const invals = bytesOf(u32le(5), u32le(1663), [0, 0, 0, 0], u32le(1), new Uint8Array(16));
    expect(decodeStandbyRecord(record(RM_STANDBY_ID, XLOG_INVALIDATIONS, invals))).toMatchObject({
      op: XLOG_INVALIDATIONS,
      dbId: 5,
      relcacheInitFileInval: false,
      nmsgs: 1,
    });
    expectExact(RM_STANDBY_ID, XLOG_STANDBY_LOCK, [...u32le(1), ...u32le(800), ...u32le(5), ...u32le(16384)], decodeStandbyRecord);
    expectExact(RM_STANDBY_ID, XLOG_RUNNING_XACTS, running, decodeStandbyRecord);
    expectExact(RM_STANDBY_ID, XLOG_INVALIDATIONS, invals, decodeStandbyRecord);
  });
});

// ---------------------------------------------------------------------------------------
// Real PostgreSQL 15 WAL

const SEG = 1 << 20;

/** Run before the workload: the next xid, multixact and member offset sit at SLRU page starts. */
const NEXT_XID = 0x10_0000; // CLOG page 32 (segment 1)
const NEXT_MULTI = 0x1_0000; // offsets page 32
const NEXT_MULTI_OFFSET = 0xcc80; // members page 32

const WORKLOAD = `
CREATE TABLE t (id int PRIMARY KEY, v int);
INSERT INTO t SELECT g, 0 FROM generate_series(1, 2500) g;
CREATE INDEX t_v ON t (v);
-- A parent that locks a row and a subtransaction that updates it make a multixact; 2100 of
-- them cross an offsets page, their members a members page; the subxacts need ASSIGNMENTs.
BEGIN;
DO $$ BEGIN
  FOR i IN 1..2100 LOOP
    PERFORM 1 FROM t WHERE id = i FOR SHARE;
    BEGIN
      UPDATE t SET v = v + 1 WHERE id = i;
    EXCEPTION WHEN others THEN NULL;
    END;
  END LOOP;
END $$;
COMMIT;
BEGIN;
CREATE TABLE rolled_back (x int);
INSERT INTO rolled_back SELECT generate_series(1, 10);
ROLLBACK;
CREATE TABLE dropped (x int);
INSERT INTO dropped SELECT generate_series(1, 10);
DROP TABLE dropped;
CREATE TABLE shrink (id int, pad text);
INSERT INTO shrink SELECT g, repeat('x', 500) FROM generate_series(1, 2000) g;
DELETE FROM shrink WHERE id > 100;
VACUUM shrink;
BEGIN;
INSERT INTO t VALUES (100001, 1);
PREPARE TRANSACTION 'tx-commit';
COMMIT PREPARED 'tx-commit';
BEGIN;
CREATE TABLE prepared_then_aborted (x int);
SAVEPOINT s1;
INSERT INTO t VALUES (100002, 1);
PREPARE TRANSACTION 'tx-abort';
ROLLBACK PREPARED 'tx-abort';
CREATE DATABASE d_wal_log;
CREATE DATABASE d_file_copy STRATEGY = FILE_COPY;
DROP DATABASE d_file_copy;
VACUUM FULL pg_class;
CHECKPOINT;
SELECT count(*) FROM t;
SELECT pg_create_restore_point('rp-1');
SELECT pg_backup_start('b1', true);
SELECT pg_backup_stop();
SELECT pg_switch_wal();
UPDATE pg_database SET datallowconn = true WHERE datname = 'template0';
`;

const FREEZE_DBS = ["template0", "template1", "d_wal_log", "postgres"];

let pg: PgInstance | undefined;
const records: DecodedRecord[] = [];
let createdDbs: Map<string, number>;

beforeAll(async () => {
  pg = await PgInstance.start({
    conf: { wal_level: "logical", max_prepared_transactions: 5, autovacuum: false, wal_keep_size: "256MB", max_wal_size: "1GB" },
    initdbArgs: ["--wal-segsize=1"],
  });
  await pg.stop();
  await pg.runChecked("pg_resetwal", [
    "-x",
    `0x${NEXT_XID.toString(16)}`,
    "-m",
    `0x${NEXT_MULTI.toString(16)},1`,
    "-O",
    `0x${NEXT_MULTI_OFFSET.toString(16)}`,
    "-D",
    pg.dataDir,
  ]);
  await pg.restart();
  const before = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
  await pg.psql(WORKLOAD);
  // Freezing every database lets VACUUM truncate CLOG and multixacts (vac_truncate_clog).
  for (const db of FREEZE_DBS) await pg.psql("VACUUM FREEZE", db);
  createdDbs = new Map();
  for (const line of (await pg.psql("SELECT datname, oid FROM pg_database")).split("\n")) {
    const [name, oid] = line.split("|");
    createdDbs.set(name!, Number(oid));
  }
  await pg.stop();

  const wd = await pg.waldump(["--start", lsnToString(before)]);
  const m = /invalid record length at ([0-9A-F]+\/[0-9A-F]+): wanted 24, got 0/.exec(wd.stderr);
  if (m === null) throw new Error(`unexpected end of pg_waldump output: ${wd.stderr}`);
  const walEnd = parseLsn(m[1]!);
  const walStart = Math.floor(before / SEG) * SEG;
  const parts: Buffer[] = [];
  for (let segNo = walStart / SEG; segNo * SEG < walEnd; segNo++) parts.push(readFileSync(join(pg.walDir, walFileName(1, segNo, SEG))));
  const dec = new WalStreamDecoder(asLsn(walStart), { segmentSizeBytes: SEG });
  dec.feed(new Uint8Array(Buffer.concat(parts)).subarray(0, walEnd - walStart));
  for (let r = dec.next(); r !== null; r = dec.next()) records.push(r);
}, 240_000);

afterAll(async () => {
  await pg?.destroy();
});

const DECODERS: ReadonlyMap<number, (rec: DecodedRecord) => { op: number }> = new Map<number, (rec: DecodedRecord) => { op: number }>([
  [RM_XLOG_ID, decodeXlogRecord],
  [RM_XACT_ID, decodeXactRecord],
  [RM_SMGR_ID, decodeSmgrRecord],
  [RM_CLOG_ID, decodeClogRecord],
  [RM_DBASE_ID, decodeDbaseRecord],
  [RM_MULTIXACT_ID, decodeMultiXactRecord],
  [RM_RELMAP_ID, decodeRelmapRecord],
  [RM_STANDBY_ID, decodeStandbyRecord],
]);

describe("typed decoders on real PostgreSQL 15 WAL", () => {
  it("decode every record of their rmgrs, covering the info codes the workload produces", () => {
    const seen = new Map<string, number>();
    let decoded = 0;
    for (const rec of records) {
      const decode = DECODERS.get(rec.rmid);
      if (decode === undefined) continue;
      const r = decode(rec);
      decoded++;
      const kind = `${rmgrName(rec.rmid)}/${infoName(rec.rmid, r.op)}`;
      seen.set(kind, (seen.get(kind) ?? 0) + 1);
    }
    expect(records.length).toBeGreaterThan(5000);
    expect(records.some((r) => r.rmid === RM_HEAP_ID)).toBe(true);
    const expected = [
      "XLOG/CHECKPOINT_ONLINE",
      "XLOG/CHECKPOINT_SHUTDOWN",
      "XLOG/NEXTOID",
      "XLOG/SWITCH",
      "XLOG/BACKUP_END",
      "XLOG/PARAMETER_CHANGE",
      "XLOG/RESTORE_POINT",
      "XLOG/FPI",
      "XLOG/FPI_FOR_HINT",
      "Transaction/COMMIT",
      "Transaction/ABORT",
      "Transaction/PREPARE",
      "Transaction/COMMIT_PREPARED",
      "Transaction/ABORT_PREPARED",
      "Transaction/ASSIGNMENT",
      "Transaction/INVALIDATION",
      "Storage/CREATE",
      "Storage/TRUNCATE",
      "CLOG/ZEROPAGE",
      "CLOG/TRUNCATE",
      "Database/CREATE_FILE_COPY",
      "Database/CREATE_WAL_LOG",
      "Database/DROP",
      "MultiXact/ZERO_OFF_PAGE",
      "MultiXact/ZERO_MEM_PAGE",
      "MultiXact/CREATE_ID",
      "MultiXact/TRUNCATE_ID",
      "RelMap/UPDATE",
      "Standby/LOCK",
      "Standby/RUNNING_XACTS",
      "Standby/INVALIDATIONS",
    ];
    const missing = expected.filter((k) => !seen.has(k));
    expect(missing, `seen: ${[...seen].map(([k, n]) => `${k}×${n}`).join(", ")}`).toEqual([]);
    expect(decoded).toBeGreaterThan(2100);
  });

  it("gives the fields the server reports", () => {
    const xacts = records.filter((r) => r.rmid === RM_XACT_ID).map(decodeXactRecord);
    // The multixact transaction: 2100 subtransactions, some of them in its commit record
    // (the rest were assigned by ASSIGNMENT records as they piled up).
    const assigned = xacts
      .filter((x) => x.op === XLOG_XACT_ASSIGNMENT)
      .reduce((n, x) => n + (x.op === XLOG_XACT_ASSIGNMENT ? x.nsubxacts : 0), 0);
    const bigCommit = xacts.find((x) => x.op === XLOG_XACT_COMMIT && x.nsubxacts > 0);
    expect(bigCommit?.op === XLOG_XACT_COMMIT && bigCommit.nsubxacts).toBe(2100);
    expect(assigned).toBeGreaterThan(0);

    const prepares = xacts.filter((x) => x.op === XLOG_XACT_PREPARE);
    expect(prepares.map((p) => (p.op === XLOG_XACT_PREPARE ? p.gid : ""))).toEqual(["tx-commit", "tx-abort"]);
    const abortPrepare = prepares[1];
    expect(abortPrepare?.op === XLOG_XACT_PREPARE && [abortPrepare.nsubxacts, abortPrepare.nabortrels]).toEqual([1, 1]);
    const cp = xacts.find((x) => x.op === XLOG_XACT_COMMIT_PREPARED);
    const ap = xacts.find((x) => x.op === XLOG_XACT_ABORT_PREPARED);
    expect(cp?.op === XLOG_XACT_COMMIT_PREPARED && cp.twophaseGid).toBe("tx-commit");
    expect(ap?.op === XLOG_XACT_ABORT_PREPARED && ap.twophaseGid).toBe("tx-abort");
    expect(ap?.op === XLOG_XACT_ABORT_PREPARED && prepares[1]?.op === XLOG_XACT_PREPARE && ap.twophaseXid).toBe(prepares[1]!.xid);
    expect(ap?.op === XLOG_XACT_ABORT_PREPARED && ap.nrels).toBe(1);
    // The rolled-back table's files are dropped by the abort record; DROP TABLE's by a commit.
    expect(xacts.some((x) => x.op === XLOG_XACT_ABORT && x.nrels > 0)).toBe(true);
    expect(xacts.some((x) => x.op === XLOG_XACT_COMMIT && x.nrels > 0 && x.nstats > 0)).toBe(true);

    const dbase = records.filter((r) => r.rmid === RM_DBASE_ID).map(decodeDbaseRecord);
    const walLog = dbase.find((d) => d.op === XLOG_DBASE_CREATE_WAL_LOG);
    expect(walLog?.dbId).toBe(createdDbs.get("d_wal_log"));
    const fileCopy = dbase.find((d) => d.op === XLOG_DBASE_CREATE_FILE_COPY);
    expect(fileCopy?.op === XLOG_DBASE_CREATE_FILE_COPY && [fileCopy.srcDbId, fileCopy.tablespaceId]).toEqual([
      createdDbs.get("template1"),
      1663,
    ]);
    const drop = dbase.find((d) => d.op === XLOG_DBASE_DROP);
    expect(drop?.dbId).toBe(fileCopy?.dbId);

    const multis = records.filter((r) => r.rmid === RM_MULTIXACT_ID).map(decodeMultiXactRecord);
    const creates = multis.filter((m) => m.op === XLOG_MULTIXACT_CREATE_ID);
    // One or more per row (the updated tuple's xmax, and the lock carried to its new version).
    expect(creates.length).toBeGreaterThanOrEqual(2100);
    expect(creates[0]?.op === XLOG_MULTIXACT_CREATE_ID && [creates[0].mid, creates[0].moff, creates[0].nmembers]).toEqual([
      NEXT_MULTI,
      NEXT_MULTI_OFFSET,
      2,
    ]);
    expect(multis.find((m) => m.op === XLOG_MULTIXACT_ZERO_OFF_PAGE)?.op === XLOG_MULTIXACT_ZERO_OFF_PAGE).toBe(true);
    const clog = records.filter((r) => r.rmid === RM_CLOG_ID).map(decodeClogRecord);
    expect(clog.find((c) => c.op === CLOG_ZEROPAGE)?.pageno).toBe(NEXT_XID / 32768);

    const xlog = records.filter((r) => r.rmid === RM_XLOG_ID).map(decodeXlogRecord);
    const rp = xlog.find((x) => x.op === XLOG_RESTORE_POINT);
    expect(rp?.op === XLOG_RESTORE_POINT && rp.name).toBe("rp-1");
    for (const x of xlog) {
      if (x.op === XLOG_CHECKPOINT_ONLINE || x.op === XLOG_CHECKPOINT_SHUTDOWN) expect(x.checkpoint.thisTimeLineId).toBe(1);
    }
    const pc = xlog.find((x) => x.op === XLOG_PARAMETER_CHANGE);
    expect(pc?.op === XLOG_PARAMETER_CHANGE && [pc.walLevel, pc.maxPreparedXacts]).toEqual([2, 5]);
    const lsns: Lsn[] = records.filter((r) => r.rmid === RM_RELMAP_ID).map((r) => r.lsn);
    expect(lsns.length).toBeGreaterThan(0);
  });
});
