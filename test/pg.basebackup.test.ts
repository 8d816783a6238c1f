/**
 * End to end with a real PostgreSQL 15: a cluster with tables, an index, TOAST, a second
 * database, committed and aborted transactions, an unlogged table is shut down cleanly and
 * imported into a timeline; a base backup at the import LSN is untarred into a fresh
 * directory and a stock PostgreSQL starts on it without recovery; the same queries give the
 * same results, pg_amcheck is clean, the server takes writes. Again after a tenant restart
 * (layers on disk). Also: the page checksum against real pages, tar import, LSN errors.
 */
import { execFileSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { basebackupTar, checkpointLocation, checkpointRecordEnd, pageChecksum } from "../src/pgdata/basebackup.js";
import { decodeControlFile, encodeControlFile } from "../src/pg/control.js";
import { collectKeyspace, DatadirSnapshot, DatadirWriter, importDatadir, importTarStream, readImportLsn } from "../src/pgdata/index.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { asLsn, INVALID_LSN, lsnToString, parseLsn } from "../src/types/lsn.js";
import { BackupServer, runPg } from "./support/backup_server.js";
import { PgInstance } from "./support/postgres.js";
import { TenantHarness } from "./support/tenant_harness.js";

const run = runPg;

const QUERIES: [string, string][] = [
  ["postgres", "SELECT count(*), sum(x), sum(length(s)) FROM t"],
  ["postgres", "SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(*), sum(x) FROM t WHERE x BETWEEN 1000 AND 3000"],
  ["postgres", "SELECT count(*), sum(length(big)) FROM toasty"],
  ["postgres", "SELECT count(*) FROM t WHERE s = 'aborted'"],
  ["postgres", "SELECT count(*) FROM ul"],
  ["postgres", "SELECT datname FROM pg_database ORDER BY 1"],
  ["postgres", "SELECT count(*) FROM pt"],
  ["postgres", "SELECT gid FROM pg_prepared_xacts"],
  ["db2", "SELECT count(*), sum(v), string_agg(name, ',' ORDER BY v) FROM u"],
];

const AMCHECK_ARGS = ["-U", "postgres", "--all", "--heapallindexed", "--install-missing"];
/** Differences listed at most by diffWithSource. */
const MAX_DIFFS = 20;

/**
 * For a failure report: the relation files of a fresh base backup at `lsn` that differ from
 * the source's own (stopped) files, with the first differing block and offset, the page
 * checksum (bytes 8–9, recomputed by the backup) left out. Unlogged relations (an init fork)
 * are left out: the backup gives them their init fork by design. Empty when every file is
 * equal: then what pg_amcheck printed is not in what the pageserver gave.
 */
async function diffWithSource(timeline: Timeline, lsn: number, srcDir: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "pgbb-diff-"));
  try {
    const tarPath = join(dir, "backup.tar");
    await pipeline(Readable.from(await basebackupTar(timeline, asLsn(lsn))), createWriteStream(tarPath));
    execFileSync("tar", ["-xf", tarPath, "-C", dir]);
    const out: string[] = [];
    const dirs = ["global", ...readdirSync(join(srcDir, "base")).map((d) => `base/${d}`)];
    for (const d of dirs) {
      const names = readdirSync(join(srcDir, d));
      const unlogged = new Set(names.filter((n) => n.endsWith("_init")).map((n) => n.slice(0, -5)));
      for (const n of names) {
        const m = /^(\d+)(_fsm|_vm|_init)?(\.\d+)?$/.exec(n);
        if (m === null || unlogged.has(m[1]!)) continue;
        const a = readFileSync(join(srcDir, d, n));
        const path = join(dir, d, n);
        if (!existsSync(path)) {
          out.push(`${d}/${n}: missing in the backup (${a.length} bytes at the source)`);
          continue;
        }
        const b = readFileSync(path);
        if (a.length !== b.length) out.push(`${d}/${n}: ${b.length} bytes in the backup, ${a.length} at the source`);
        for (let off = 0; off < Math.min(a.length, b.length); off++) {
          if (a[off] === b[off] || off % 8192 === 8 || off % 8192 === 9) continue;
          out.push(`${d}/${n}: block ${Math.floor(off / 8192)} differs from offset ${off % 8192}`);
          break;
        }
        if (out.length >= MAX_DIFFS) return out.join("\n");
      }
    }
    return out.join("\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runQueries(q: (sql: string, db: string) => Promise<string>): Promise<string[]> {
  const out: string[] = [];
  for (const [db, sql] of QUERIES) out.push(await q(sql, db));
  return out;
}

let src: PgInstance | null = null;
let h: TenantHarness | null = null;
const servers: BackupServer[] = [];
let expected: string[] = [];
let importLsn = INVALID_LSN;
let tl: Timeline;

beforeAll(async () => {
  src = await PgInstance.start({ conf: { max_prepared_transactions: 5 } });
  await src.psql(`
    CREATE TABLE t (x int PRIMARY KEY, s text);
    INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
    CREATE INDEX t_s ON t (s);
    BEGIN; INSERT INTO t SELECT g, 'aborted' FROM generate_series(20001, 20500) g; ROLLBACK;
    DELETE FROM t WHERE x % 10 = 0;
    UPDATE t SET s = s || '!' WHERE x % 7 = 0;
    VACUUM t;
    CREATE TABLE toasty (id int, big text);
    INSERT INTO toasty SELECT g, repeat(md5(g::text), 400) FROM generate_series(1, 50) g;
    CREATE UNLOGGED TABLE ul (a int);
    INSERT INTO ul SELECT generate_series(1, 100);
    CREATE DATABASE db2;
  `);
  await src.psql(
    `CREATE TABLE u (v int, name text);
     INSERT INTO u SELECT g, 'n' || g FROM generate_series(1, 300) g;
     BEGIN; INSERT INTO u VALUES (-1, 'gone'); ROLLBACK;`,
    "db2",
  );
  await src.psql("CREATE TABLE pt (a int); BEGIN; INSERT INTO pt SELECT generate_series(1, 10); PREPARE TRANSACTION 'p1';");
  // Rows the unlogged table loses in a backup (as after a crash): expected count 0.
  expected = await runQueries((sql, db) => src!.psql(sql, db));
  expected[4] = "0";
  await src.stop();

  h = new TenantHarness({ keyspace: collectKeyspace, cacheBytes: 32 * 1024 * 1024 });
  const tenant = await h.create();
  importLsn = readImportLsn(src.dataDir).lsn;
  tl = await tenant.createTimeline({ startLsn: importLsn });
  await importDatadir(tl, src.dataDir);
});

afterAll(async () => {
  for (const s of servers) await s.destroy().catch(() => undefined);
  await h?.close();
  await src?.destroy();
});

async function startFromBackup(timeline: Timeline, lsn: number): Promise<BackupServer> {
  const s = new BackupServer();
  servers.push(s);
  await s.untar(await basebackupTar(timeline, asLsn(lsn)));
  await s.start();
  return s;
}

describe("base backup of an imported cluster", () => {
  it("imports the datadir: databases, relations, sizes, SLRUs, control", async () => {
    const snap = new DatadirSnapshot(tl, importLsn);
    const dbs = (await snap.listDbs()).map((d) => `${d.spcnode}/${d.dbnode}`);
    expect(dbs).toContain("1664/0");
    expect(dbs).toContain("1663/5");
    expect(dbs.length).toBe(5); // global, template1, template0, postgres, db2
    expect(await snap.slruSegments(0)).toEqual([0]);
    const ctl = decodeControlFile((await snap.controlFile())!);
    expect(ctl.checkPoint).toBe(importLsn);
    expect(await snap.logicalSize()).toBeGreaterThan(20 * 1024 * 1024);
    expect(tl.diskConsistentLsn).toBe(importLsn);
  });

  it("computes PostgreSQL's page checksums", async () => {
    const snap = new DatadirSnapshot(tl, importLsn);
    let checked = 0;
    for (const rel of await snap.listRels(1663, 5)) {
      const n = Math.min(await snap.relSize(rel), 3);
      for (let b = 0; b < n; b++) {
        const p = await snap.getRelPage(rel, b);
        if ((p[14]! | (p[15]! << 8)) === 0) continue;
        expect(pageChecksum(p, b)).toBe(p[8]! | (p[9]! << 8));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it("starts a stock PostgreSQL without recovery; same results; amcheck clean; takes writes", async () => {
    // Every logged relation file of the backup equals the source's, page for page (checksums aside).
    expect(await diffWithSource(tl, importLsn, src!.dataDir)).toBe("");
    const s = new BackupServer();
    servers.push(s);
    await s.untar(await basebackupTar(tl, importLsn));
    const c = checkpointLocation(importLsn, 16 * 1024 * 1024);
    expect(c).toBe(importLsn);
    // A WAL reader that scans pages finds the synthetic checkpoint record and its CRC is right.
    const dump = await run("pg_waldump", ["--path", join(s.data, "pg_wal"), "--start", lsnToString(c), "--limit", "1"]);
    expect(dump.stdout).toMatch(new RegExp(`CHECKPOINT_SHUTDOWN redo ${lsnToString(c)}; tli 1; prev tli 1; fpw true`));
    await s.start();
    expect(await s.psql("SELECT pg_is_in_recovery()")).toBe("f");
    expect(parseLsn(await s.psql("SELECT pg_current_wal_lsn()"))).toBeGreaterThanOrEqual(checkpointRecordEnd(c));
    expect(s.logText()).not.toMatch(/redo starts|database system was interrupted/);
    expect(await runQueries((sql, db) => s.psql(sql, db))).toEqual(expected);
    const am = await run("pg_amcheck", ["-h", "127.0.0.1", "-p", String(s.port), ...AMCHECK_ARGS]);
    const printed = am.stderr + am.stdout;
    const diff = printed === "" ? "" : await diffWithSource(tl, importLsn, src!.dataDir);
    expect(
      printed,
      `pg_amcheck (exit ${am.code}) printed:\n${printed}\n--- relation files of the backup that differ from the source's ---\n${diff || "(none)"}\n--- server log ---\n${s.logText()}`,
    ).toBe("");
    expect(am.code).toBe(0);
    await s.psql("INSERT INTO t SELECT g, 'new' FROM generate_series(30001, 31000) g; CHECKPOINT;");
    await s.psql("INSERT INTO u VALUES (1000, 'later')", "db2");
    await s.psql("COMMIT PREPARED 'p1'");
    expect(await s.psql("SELECT count(*), sum(a) FROM pt")).toBe("10|55");
    expect(await s.psql("SELECT count(*) FROM t WHERE s = 'new'")).toBe("1000");
    await s.stop();
    expect(s.logText()).toMatch(/database system is shut down/);
  });

  it("works the same after a tenant restart (layers on disk)", async () => {
    const t2 = await h!.restart(true);
    const tl2 = t2.getTimeline(tl.timelineId);
    const s = await startFromBackup(tl2, importLsn);
    expect(await runQueries((sql, db) => s.psql(sql, db))).toEqual(expected);
    await s.psql("INSERT INTO t VALUES (99999, 'x')");
    await s.stop();
    tl = tl2;
  });

  it("re-imports its own base backup tar (importTarStream) with the same data", async () => {
    const tenant = h!.tenant;
    const tl3 = await tenant.createTimeline({ startLsn: importLsn });
    const res = await importTarStream(tl3, importLsn, await basebackupTar(tl, importLsn));
    expect(res.pages).toBeGreaterThan(1000);
    const a = new DatadirSnapshot(tl, importLsn);
    const b = new DatadirSnapshot(tl3, importLsn);
    expect(await b.listDbs()).toEqual(await a.listDbs());
    const all = await a.listRels(1663, 5);
    // Unlogged relations (with an init fork) come back empty, as after a crash; the rest is equal.
    const unlogged = new Set(all.filter((r) => r.forknum === 3).map((r) => r.relnode));
    expect(await b.listRels(1663, 5)).toEqual(all.filter((r) => !unlogged.has(r.relnode) || r.forknum === 0 || r.forknum === 3));
    const logged = all.filter((r) => !unlogged.has(r.relnode));
    expect(unlogged.size).toBe(1);
    let pages = 0;
    for (const rel of logged) {
      const n = await a.relSize(rel);
      expect(await b.relSize(rel)).toBe(n);
      for (let blk = 0; blk < Math.min(n, 4); blk++) {
        // The backup re-stamps checksums; everything else is byte-identical.
        const pa = await a.getRelPage(rel, blk);
        const pb = await b.getRelPage(rel, blk);
        // (Buffer.equals: vitest's deep equality on 8 kB arrays is slow.)
        expect(Buffer.from(pb.subarray(10)).equals(pa.subarray(10)) && Buffer.from(pb.subarray(0, 8)).equals(pa.subarray(0, 8))).toBe(true);
        pages++;
      }
    }
    expect(pages).toBeGreaterThan(200);
    for (const rel of all.filter((r) => unlogged.has(r.relnode) && r.forknum === 0))
      expect(await b.relSize(rel)).toBe(await a.relSize({ ...rel, forknum: 3 }));
  });

  it("refuses bad LSNs with typed errors", async () => {
    await expect(importDatadir(tl, src!.dataDir)).rejects.toThrow(/not empty/);
    await expect(basebackupTar(tl, asLsn(importLsn - 8))).rejects.toThrow(/below the timeline's start/);
    // Beyond last_record_lsn: waits (wait_lsn_timeout 2 s in tests), then times out.
    await expect(basebackupTar(tl, asLsn(importLsn + 0x1000))).rejects.toMatchObject({ code: "lsn_timeout" });
  });

  it("places the checkpoint after the page header when the LSN is on a page boundary; PostgreSQL starts", async () => {
    const x = importLsn - (importLsn % 8192) + 8192;
    const w = new DatadirWriter(tl);
    w.begin(asLsn(x));
    w.putRelmap(1663, 5, (await new DatadirSnapshot(tl, importLsn).relmap(1663, 5))!); // an unchanged rewrite
    w.commit(importLsn);
    const c = checkpointLocation(asLsn(x), 16 * 1024 * 1024);
    expect(c).toBe(x + 24);
    expect(checkpointLocation(asLsn(x - 80), 16 * 1024 * 1024)).toBe(c); // record would cross the page end
    expect(checkpointLocation(asLsn(0x2000000), 16 * 1024 * 1024)).toBe(0x2000000 + 40);
    const s = await startFromBackup(tl, x);
    expect(parseLsn(await s.psql("SELECT pg_current_wal_lsn()"))).toBeGreaterThanOrEqual(checkpointRecordEnd(c));
    expect(await runQueries((sql, db) => s.psql(sql, db))).toEqual(expected);
    await s.stop();
  });

  it("refuses to import a cluster that was not shut down cleanly", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgbad-"));
    try {
      mkdirSync(join(dir, "global"));
      const ctl = decodeControlFile(new Uint8Array(readFileSync(join(src!.dataDir, "global", "pg_control"))));
      writeFileSync(join(dir, "global", "pg_control"), encodeControlFile({ ...ctl, state: 6 }));
      expect(() => readImportLsn(dir)).toThrow(/not shut down cleanly.*in production/);
      const tl4 = await h!.tenant.createTimeline({ startLsn: importLsn });
      await expect(importDatadir(tl4, dir)).rejects.toMatchObject({ code: "invalid_argument" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
