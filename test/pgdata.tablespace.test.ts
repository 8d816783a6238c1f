/**
 * Tablespaces in the datadir key map, record by record:
 * - the Tablespace rmgr's decoder (CREATE with its location, DROP; malformed records are
 *   CorruptionErrors naming LSN, rmgr and info);
 * - the TablespaceDirectory encoding (round trip, corrupt bytes refused);
 * - WalIngest of every record kind that names a tablespace: Tablespace/CREATE and DROP,
 *   Storage/CREATE of a relation in a user tablespace, Database/CREATE_WAL_LOG,
 *   CREATE_FILE_COPY (CREATE DATABASE … TABLESPACE and ALTER DATABASE SET TABLESPACE) and
 *   DROP with tablespace ids; what a snapshot sees at each LSN, and the keyspace;
 * - a record ingest refuses leaves the timeline as it was (the WAL source retries it);
 * - importDatadir of a shut-down PostgreSQL 15 with an in-place tablespace and one with a
 *   LOCATION (a pg_tblspc symlink): both recorded with their locations, their relations and
 *   databases imported.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IS_ROOT } from "../src/cli/endpoint.js";
import { type CheckPoint, encodeCheckPoint } from "../src/pg/control.js";
import { type DecodedRecord, decodeRecord } from "../src/pg/wal/record.js";
import { decodeTblspcRecord, XLOG_TBLSPC_CREATE, XLOG_TBLSPC_DROP } from "../src/pg/wal/records/tblspc.js";
import { RM_DBASE_ID, RM_RELMAP_ID, RM_SMGR_ID, RM_TBLSPC_ID } from "../src/pg/wal/rmgr_ids.js";
import {
  collectKeyspace,
  DatadirSnapshot,
  DatadirWriter,
  DirectoryDecodeError,
  decodeTablespaceDirectory,
  encodeTablespaceDirectory,
  relTag,
  TABLESPACEDIR_KEY,
  WalIngest,
} from "../src/pgdata/index.js";
import { classifyPath, importDatadir, readImportLsn } from "../src/pgdata/import.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { AssertionError } from "../src/types/assert.js";
import { CorruptionError } from "../src/types/errors.js";
import { keyNext } from "../src/types/key.js";
import { asLsn, type Lsn, lsnToString } from "../src/types/lsn.js";
import { PgInstance } from "./support/postgres.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { buildRecord, bytesOf, u32le } from "./support/walgen.js";

let h: TenantHarness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

/** A record of `rmid`/`info` with main data `main` at `lsn` (no block references). */
function record(rmid: number, info: number, main: Uint8Array | number[], lsn: Lsn): DecodedRecord {
  const data = bytesOf(main);
  const hdr = data.length === 0 ? [] : data.length <= 255 ? [255, data.length] : [254, ...u32le(data.length)];
  return decodeRecord(buildRecord({ rmid, info, body: bytesOf(hdr, data) }, asLsn(0x100)), lsn, asLsn(lsn + 24 + hdr.length + data.length));
}

function cstring(s: string): number[] {
  return [...new TextEncoder().encode(s), 0];
}

const CHECKPOINT: CheckPoint = {
  redo: asLsn(0x1000),
  thisTimeLineId: 1,
  prevTimeLineId: 1,
  fullPageWrites: true,
  nextXidEpoch: 0,
  nextXid: 1000,
  nextOid: 40000,
  nextMulti: 1,
  nextMultiOffset: 0,
  oldestXid: 700,
  oldestXidDb: 1,
  oldestMulti: 1,
  oldestMultiDb: 1,
  time: 1_700_000_000,
  oldestCommitTsXid: 0,
  newestCommitTsXid: 0,
  oldestActiveXid: 0,
};

const TS_INPLACE = 16390;
const TS_LOC = 16391;
const DB = 16400;

describe("Tablespace records", () => {
  it("decodes CREATE with its location and DROP", async () => {
    expect(decodeTblspcRecord(record(RM_TBLSPC_ID, XLOG_TBLSPC_CREATE, [...u32le(TS_INPLACE), ...cstring("")], asLsn(0x2000)))).toEqual({
      op: XLOG_TBLSPC_CREATE,
      tsId: TS_INPLACE,
      path: "",
    });
    expect(
      decodeTblspcRecord(record(RM_TBLSPC_ID, XLOG_TBLSPC_CREATE, [...u32le(TS_LOC), ...cstring("/srv/ts é")], asLsn(0x2000))),
    ).toEqual({
      op: XLOG_TBLSPC_CREATE,
      tsId: TS_LOC,
      path: "/srv/ts é",
    });
    expect(decodeTblspcRecord(record(RM_TBLSPC_ID, XLOG_TBLSPC_DROP, u32le(TS_LOC), asLsn(0x2000)))).toEqual({
      op: XLOG_TBLSPC_DROP,
      tsId: TS_LOC,
    });
  });

  it("refuses malformed records naming LSN, rmgr and info", async () => {
    const bad: [number, number[], RegExp][] = [
      [XLOG_TBLSPC_CREATE, u32le(TS_LOC), /xl_tblspc_create_rec/],
      [XLOG_TBLSPC_CREATE, [...u32le(TS_LOC), 0x2f, 0x61], /not NUL-terminated/],
      [XLOG_TBLSPC_CREATE, [...u32le(TS_LOC), ...cstring("/a"), 1], /after ts_path's NUL/],
      [XLOG_TBLSPC_CREATE, [...u32le(TS_LOC), ...cstring("x".repeat(1024))], /ts_path of 1024 bytes/],
      [XLOG_TBLSPC_DROP, [1, 2, 3], /xl_tblspc_drop_rec/],
      [XLOG_TBLSPC_DROP, [...u32le(TS_LOC), 0], /xl_tblspc_drop_rec/],
      [0x20, u32le(TS_LOC), /unknown Tablespace info code 0x20/],
    ];
    for (const [info, main, re] of bad) {
      const rec = record(RM_TBLSPC_ID, info, main, asLsn(0x2000));
      let err: unknown;
      try {
        decodeTblspcRecord(rec);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CorruptionError);
      expect((err as Error).message).toMatch(re);
      expect((err as Error).message).toContain(`at ${lsnToString(asLsn(0x2000))}`);
      expect((err as Error).message).toContain(`rmgr 5, info 0x${info.toString(16).padStart(2, "0")}`);
    }
  });
});

describe("TablespaceDirectory", () => {
  it("round-trips and refuses corrupt bytes", async () => {
    const d = new Map([
      [TS_LOC, "/srv/ts2"],
      [TS_INPLACE, ""],
      [70000, "/ü/x"],
    ]);
    const b = encodeTablespaceDirectory(d);
    expect(decodeTablespaceDirectory(b)).toEqual(d);
    expect(encodeTablespaceDirectory(decodeTablespaceDirectory(b))).toEqual(b);
    expect(decodeTablespaceDirectory(encodeTablespaceDirectory(new Map()))).toEqual(new Map());
    // Every strict prefix, a byte too many, a wrong kind, entries out of order.
    for (let n = 0; n < b.length; n++) expect(() => decodeTablespaceDirectory(b.subarray(0, n))).toThrow(DirectoryDecodeError);
    expect(() => decodeTablespaceDirectory(bytesOf(b, [0]))).toThrow(DirectoryDecodeError);
    const wrongKind = b.slice();
    wrongKind[0] = 0x44;
    expect(() => decodeTablespaceDirectory(wrongKind)).toThrow(/kind byte/);
    const swapped = encodeTablespaceDirectory(new Map([[5, ""]]));
    const two = bytesOf(swapped.subarray(0, 4), u32le(2), swapped.subarray(8), swapped.subarray(8));
    expect(() => decodeTablespaceDirectory(two)).toThrow(/not ascending/);
  });
});

describe("WalIngest of tablespace records", () => {
  async function setup(): Promise<Timeline> {
    h = new TenantHarness({ keyspace: collectKeyspace });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
    const w = new DatadirWriter(tl);
    w.begin(asLsn(0x1000));
    w.createDb(1663, 5);
    w.putCheckpoint(encodeCheckPoint(CHECKPOINT));
    w.commit();
    return tl;
  }

  const smgrCreate = (spc: number, db: number, rel: number, lsn: Lsn): DecodedRecord =>
    record(RM_SMGR_ID, 0x10, [...u32le(spc), ...u32le(db), ...u32le(rel), ...u32le(0)], lsn);

  it("ingests CREATE/DROP TABLESPACE, relations and databases in user tablespaces, and database moves", async () => {
    const tl = await setup();
    const ing = new WalIngest(tl);
    const snap = (): DatadirSnapshot => new DatadirSnapshot(tl, tl.lastRecordLsn);

    // CREATE TABLESPACE: one in place, one with a LOCATION.
    ing.ingest(record(RM_TBLSPC_ID, XLOG_TBLSPC_CREATE, [...u32le(TS_INPLACE), ...cstring("")], asLsn(0x2000)));
    ing.ingest(record(RM_TBLSPC_ID, XLOG_TBLSPC_CREATE, [...u32le(TS_LOC), ...cstring("/srv/ts2")], asLsn(0x2100)));
    const afterCreate = tl.lastRecordLsn;
    expect(await snap().listTablespaces()).toEqual([
      { spcnode: TS_INPLACE, location: "" },
      { spcnode: TS_LOC, location: "/srv/ts2" },
    ]);

    // CREATE TABLE … TABLESPACE: the database gets a directory in the tablespace.
    ing.ingest(smgrCreate(TS_INPLACE, 5, 20000, asLsn(0x2200)));
    expect(await snap().listDbs()).toEqual([
      { spcnode: 1663, dbnode: 5, relmapExists: false },
      { spcnode: TS_INPLACE, dbnode: 5, relmapExists: false },
    ]);
    expect(await snap().listRels(TS_INPLACE, 5)).toEqual([relTag(TS_INPLACE, 5, 20000, 0)]);

    // CREATE DATABASE … TABLESPACE (WAL_LOG): directory, relmap, relations there.
    ing.ingest(record(RM_DBASE_ID, 0x10, [...u32le(DB), ...u32le(TS_INPLACE)], asLsn(0x2300)));
    const relmap = new Uint8Array(512).fill(9);
    ing.ingest(record(RM_RELMAP_ID, 0x00, [...u32le(DB), ...u32le(TS_INPLACE), ...u32le(512), ...relmap], asLsn(0x2400)));
    ing.ingest(smgrCreate(TS_INPLACE, DB, 1259, asLsn(0x2700)));
    // A page of it, as a full-page write would leave it.
    const w = new DatadirWriter(tl);
    w.begin(asLsn(0x2800));
    w.putRelPageImage(relTag(TS_INPLACE, DB, 1259, 0), 0, new Uint8Array(8192).fill(3));
    w.commit();
    expect(await snap().relmap(TS_INPLACE, DB)).toEqual(relmap);
    expect(await snap().dbExists(TS_INPLACE, DB)).toBe(true);

    // CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY TABLESPACE ts2: the files are copied.
    ing.ingest(record(RM_DBASE_ID, 0x00, [...u32le(DB + 1), ...u32le(TS_LOC), ...u32le(DB), ...u32le(TS_INPLACE)], asLsn(0x2900)));
    expect(await snap().relmap(TS_LOC, DB + 1)).toEqual(relmap);
    expect(await snap().relSize(relTag(TS_LOC, DB + 1, 1259, 0))).toBe(1);
    expect(await snap().getRelPage(relTag(TS_LOC, DB + 1, 1259, 0), 0)).toEqual(new Uint8Array(8192).fill(3));

    // ALTER DATABASE SET TABLESPACE pg_default: FILE_COPY into the new one, DROP of the old.
    ing.ingest(record(RM_DBASE_ID, 0x00, [...u32le(DB + 1), ...u32le(1663), ...u32le(DB + 1), ...u32le(TS_LOC)], asLsn(0x2a00)));
    ing.ingest(record(RM_DBASE_ID, 0x20, [...u32le(DB + 1), ...u32le(1), ...u32le(TS_LOC)], asLsn(0x2b00)));
    expect(await snap().dbExists(TS_LOC, DB + 1)).toBe(false);
    expect(await snap().getRelPage(relTag(1663, DB + 1, 1259, 0), 0)).toEqual(new Uint8Array(8192).fill(3));

    // DROP DATABASE in two tablespaces, then DROP TABLESPACE: its leftover directories go too.
    ing.ingest(record(RM_DBASE_ID, 0x20, [...u32le(DB), ...u32le(1), ...u32le(TS_INPLACE)], asLsn(0x2c00)));
    expect(await snap().dbExists(TS_INPLACE, DB)).toBe(false);
    ing.ingest(record(RM_TBLSPC_ID, XLOG_TBLSPC_DROP, u32le(TS_INPLACE), asLsn(0x2d00)));
    expect(await snap().listTablespaces()).toEqual([{ spcnode: TS_LOC, location: "/srv/ts2" }]);
    expect((await snap().listDbs()).map((d) => `${d.spcnode}/${d.dbnode}`)).toEqual(["1663/5", `1663/${DB + 1}`]);

    // Earlier LSNs still see what was there then.
    const then = new DatadirSnapshot(tl, afterCreate);
    expect((await then.listTablespaces()).map((t) => t.spcnode)).toEqual([TS_INPLACE, TS_LOC]);
    expect(await then.dbExists(TS_INPLACE, 5)).toBe(false);

    // The directory is a live key (image layers keep it).
    const ks = await collectKeyspace(tl, tl.lastRecordLsn);
    expect(ks.some((r) => r.start <= TABLESPACEDIR_KEY && keyNext(TABLESPACEDIR_KEY) <= r.end)).toBe(true);
  });

  it("a record it refuses changes nothing, and the same ingest goes on after it", async () => {
    const tl = await setup();
    const ing = new WalIngest(tl);
    ing.ingest(record(RM_TBLSPC_ID, XLOG_TBLSPC_CREATE, [...u32le(TS_LOC), ...cstring("/srv/ts2")], asLsn(0x2000)));
    const before = tl.lastRecordLsn;
    expect(() => ing.ingest(record(RM_TBLSPC_ID, 0x30, u32le(TS_LOC), asLsn(0x2100)))).toThrow(/Tablespace.*rmgr 5, info 0x30/);
    expect(tl.lastRecordLsn).toBe(before);
    ing.ingest(record(RM_TBLSPC_ID, XLOG_TBLSPC_DROP, u32le(TS_LOC), asLsn(0x2200)));
    expect(await new DatadirSnapshot(tl, tl.lastRecordLsn).listTablespaces()).toEqual([]);
  });

  it("records reach ingest in WAL order: a replayed or overlapping record is an assertion", async () => {
    const tl = await setup();
    const ing = new WalIngest(tl);
    const first = record(RM_TBLSPC_ID, XLOG_TBLSPC_CREATE, [...u32le(TS_LOC), ...cstring("/srv/ts2")], asLsn(0x2000));
    ing.ingest(first);
    const after = tl.lastRecordLsn;
    // The same record again: its end LSN equals last_record_lsn, which the writer accepts.
    expect(() => ing.ingest(first)).toThrow(AssertionError);
    // One that starts inside the previous record.
    expect(() => ing.ingest(smgrCreate(TS_LOC, 5, 20000, asLsn(first.endLsn - 8)))).toThrow(/out of LSN order/);
    expect(tl.lastRecordLsn).toBe(after);
    ing.ingest(smgrCreate(TS_LOC, 5, 20000, first.endLsn));
    expect(tl.lastRecordLsn).toBeGreaterThan(after);
  });
});

describe("import paths", () => {
  it("classifies files of user tablespaces", async () => {
    expect(classifyPath(`pg_tblspc/${TS_LOC}/PG_15_202209061/${DB}/16384_fsm.2`)).toEqual({
      kind: "rel",
      rel: relTag(TS_LOC, DB, 16384, 1),
      segno: 2,
    });
    expect(classifyPath(`pg_tblspc/${TS_LOC}/PG_15_202209061/${DB}/pg_filenode.map`)).toEqual({
      kind: "relmap",
      spcnode: TS_LOC,
      dbnode: DB,
    });
    expect(classifyPath(`pg_tblspc/${TS_LOC}/PG_14_202107181/${DB}/16384`)).toEqual({ kind: "skip" });
  });
});

describe("importDatadir with tablespaces", () => {
  it("records in-place and LOCATION tablespaces and imports what is in them", { timeout: 120_000 }, async () => {
    const pg = await PgInstance.start();
    try {
      const loc = join(pg.baseDir, "ts_loc");
      mkdirSync(loc);
      if (IS_ROOT) execFileSync("chown", ["postgres:postgres", loc]);
      await pg.psql(
        `SET allow_in_place_tablespaces = true; CREATE TABLESPACE ts_in LOCATION ''; CREATE TABLESPACE ts_loc LOCATION '${loc}'`,
      );
      await pg.psql("CREATE TABLE a (i int) TABLESPACE ts_in; INSERT INTO a SELECT generate_series(1, 1000)");
      await pg.psql("CREATE DATABASE d TABLESPACE ts_loc");
      const ids = (await pg.psql("SELECT string_agg(oid::text, ',' ORDER BY spcname) FROM pg_tablespace WHERE spcname LIKE 'ts_%'"))
        .split(",")
        .map(Number);
      const db = Number(await pg.psql("SELECT oid FROM pg_database WHERE datname = 'd'"));
      const [relIn, dbPostgres] = (
        await pg.psql("SELECT pg_relation_filenode('a') || ',' || (SELECT oid FROM pg_database WHERE datname = 'postgres')")
      )
        .split(",")
        .map(Number) as [number, number];
      await pg.stop();

      h = new TenantHarness({ keyspace: collectKeyspace });
      const tl = await (await h.create()).createTimeline({ startLsn: readImportLsn(pg.dataDir).lsn });
      await importDatadir(tl, pg.dataDir);
      const snap = new DatadirSnapshot(tl, tl.lastRecordLsn);
      expect(await snap.listTablespaces()).toEqual([
        { spcnode: ids[0], location: "" },
        { spcnode: ids[1], location: loc },
      ]);
      expect(await snap.relSize(relTag(ids[0]!, dbPostgres, relIn, 0))).toBeGreaterThan(0);
      expect(await snap.dbExists(ids[1]!, db)).toBe(true);
      expect(await snap.relmap(ids[1]!, db)).not.toBeNull();
    } finally {
      await pg.destroy();
    }
  });
});
