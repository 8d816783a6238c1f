/**
 * pg_control of a real initdb'd PostgreSQL 15 cluster: decode and compare with
 * pg_controldata; encode round trip byte-exact; CRC checked and recomputed.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CATALOG_VERSION_NO,
  ControlFileError,
  DB_STATE_NAMES,
  DbState,
  decodeCheckPoint,
  decodeControlFile,
  encodeCheckPoint,
  encodeControlFile,
  PG_CONTROL_VERSION,
  systemIdentifierString,
} from "../src/pg/control.js";
import { asLsn, lsnToString } from "../src/types/lsn.js";
import { PgInstance } from "./support/postgres.js";

let pg: PgInstance;
let file: Uint8Array;
let fields: Map<string, string>;

beforeAll(async () => {
  pg = await PgInstance.start();
  await pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g; CHECKPOINT;");
  await pg.stop();
  file = new Uint8Array(readFileSync(join(pg.dataDir, "global", "pg_control")));
  const out = await pg.runChecked("pg_controldata", ["-D", pg.dataDir]);
  fields = new Map();
  for (const line of out.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
});

afterAll(async () => {
  await pg?.destroy();
});

describe("pg_control", () => {
  it("decodes what pg_controldata prints", () => {
    expect(file.length).toBe(8192);
    const c = decodeControlFile(file);
    const f = (name: string) => {
      const v = fields.get(name);
      if (v === undefined) throw new Error(`pg_controldata has no '${name}'`);
      return v;
    };
    expect(c.pgControlVersion).toBe(PG_CONTROL_VERSION);
    expect(String(c.pgControlVersion)).toBe(f("pg_control version number"));
    expect(c.catalogVersionNo).toBe(CATALOG_VERSION_NO);
    expect(systemIdentifierString(c)).toBe(f("Database system identifier"));
    expect(c.state).toBe(DbState.Shutdowned);
    expect(DB_STATE_NAMES[c.state]).toBe(f("Database cluster state"));
    expect(lsnToString(c.checkPoint)).toBe(f("Latest checkpoint location"));
    const cp = c.checkPointCopy;
    expect(lsnToString(cp.redo)).toBe(f("Latest checkpoint's REDO location"));
    expect(String(cp.thisTimeLineId)).toBe(f("Latest checkpoint's TimeLineID"));
    expect(String(cp.prevTimeLineId)).toBe(f("Latest checkpoint's PrevTimeLineID"));
    expect(cp.fullPageWrites ? "on" : "off").toBe(f("Latest checkpoint's full_page_writes"));
    expect(`${cp.nextXidEpoch}:${cp.nextXid}`).toBe(f("Latest checkpoint's NextXID"));
    expect(String(cp.nextOid)).toBe(f("Latest checkpoint's NextOID"));
    expect(String(cp.nextMulti)).toBe(f("Latest checkpoint's NextMultiXactId"));
    expect(String(cp.nextMultiOffset)).toBe(f("Latest checkpoint's NextMultiOffset"));
    expect(String(cp.oldestXid)).toBe(f("Latest checkpoint's oldestXID"));
    expect(String(cp.oldestXidDb)).toBe(f("Latest checkpoint's oldestXID's DB"));
    expect(String(cp.oldestActiveXid)).toBe(f("Latest checkpoint's oldestActiveXID"));
    expect(String(cp.oldestMulti)).toBe(f("Latest checkpoint's oldestMultiXid"));
    expect(String(cp.oldestMultiDb)).toBe(f("Latest checkpoint's oldestMulti's DB"));
    expect(String(cp.oldestCommitTsXid)).toBe(f("Latest checkpoint's oldestCommitTsXid"));
    expect(String(cp.newestCommitTsXid)).toBe(f("Latest checkpoint's newestCommitTsXid"));
    expect(lsnToString(c.unloggedLsn)).toBe(f("Fake LSN counter for unlogged rels"));
    expect(lsnToString(c.minRecoveryPoint)).toBe(f("Minimum recovery ending location"));
    expect(String(c.minRecoveryPointTli)).toBe(f("Min recovery ending loc's timeline"));
    expect(String(c.maxConnections)).toBe(f("max_connections setting"));
    expect(String(c.maxWorkerProcesses)).toBe(f("max_worker_processes setting"));
    expect(String(c.maxWalSenders)).toBe(f("max_wal_senders setting"));
    expect(String(c.maxPreparedXacts)).toBe(f("max_prepared_xacts setting"));
    expect(String(c.maxLocksPerXact)).toBe(f("max_locks_per_xact setting"));
    expect(c.walLogHints ? "on" : "off").toBe(f("wal_log_hints setting"));
    expect(["minimal", "replica", "logical"][c.walLevel]).toBe(f("wal_level setting"));
    expect(String(c.maxAlign)).toBe(f("Maximum data alignment"));
    expect(String(c.blcksz)).toBe(f("Database block size"));
    expect(String(c.relsegSize)).toBe(f("Blocks per segment of large relation"));
    expect(String(c.xlogBlcksz)).toBe(f("WAL block size"));
    expect(String(c.xlogSegSize)).toBe(f("Bytes per WAL segment"));
    expect(String(c.nameDataLen)).toBe(f("Maximum length of identifiers"));
    expect(String(c.indexMaxKeys)).toBe(f("Maximum columns in an index"));
    expect(String(c.toastMaxChunkSize)).toBe(f("Maximum size of a TOAST chunk"));
    expect(String(c.loblksize)).toBe(f("Size of a large-object chunk"));
    expect(c.float8ByVal ? "by value" : "by reference").toBe(f("Float8 argument passing"));
    expect(String(c.dataChecksumVersion)).toBe(f("Data page checksum version"));
    expect(c.floatFormat).toBe(1234567.0);
    expect(Buffer.from(c.mockAuthenticationNonce).toString("hex")).toBe(f("Mock authentication nonce"));
    const time = Date.parse(f("Time of latest checkpoint"));
    expect(Number.isNaN(time) || Math.abs(time / 1000 - cp.time) < 86400).toBe(true);
  });

  it("encodes byte-exact and recomputes the CRC", () => {
    const c = decodeControlFile(file);
    expect(encodeControlFile(c)).toEqual(file);
    const cp = encodeCheckPoint(c.checkPointCopy);
    expect(cp).toEqual(file.subarray(40, 128));
    expect(decodeCheckPoint(cp)).toEqual(c.checkPointCopy);
    // A changed field gets a fresh, valid CRC.
    const changed = encodeControlFile({ ...c, state: DbState.InProduction, checkPoint: asLsn(c.checkPoint + 0x1000) });
    const back = decodeControlFile(changed);
    expect(back.state).toBe(DbState.InProduction);
    expect(back.checkPoint).toBe(c.checkPoint + 0x1000);
    expect(back.crc).not.toBe(c.crc);
  });

  it("refuses a corrupt file with a typed error", () => {
    const bad = file.slice();
    bad[40]! ^= 1;
    expect(() => decodeControlFile(bad)).toThrow(ControlFileError);
    expect(() => decodeControlFile(file.subarray(0, 100))).toThrow(ControlFileError);
    const v14 = file.slice();
    v14[8] = 0x10;
    expect(() => decodeControlFile(v14)).toThrow(/version/);
  });
});
