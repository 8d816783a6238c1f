/**
 * End to end: tablespaces on a default-settings source streaming into a timeline.
 * - Before the timeline exists the source has a tablespace with a LOCATION (a table and a
 *   database in it), which the bootstrap's BASE_BACKUP sends as a tar of its own, and an
 *   in-place one (a table in it), a directory in base.tar.
 * - PostgreSQL 15's own `tablespace` regression test (test/fixtures/pg15_regress_tablespace.sql)
 *   runs with psql on the source, ON_ERROR_STOP off as pg_regress runs it, in two parts; then
 *   more: an in-place tablespace with a table, an index and a database (CREATE DATABASE
 *   WAL_LOG), a FILE_COPY database from it, a second LOCATION tablespace created while
 *   streaming, ALTER DATABASE SET TABLESPACE.
 * - The stream never stops (state streaming, no error), and a base backup at the end of each
 *   part starts a stock PostgreSQL whose pg_dumpall equals the source's at that point: in-place
 *   tablespaces in place, the LOCATION ones moved out with applyTablespaceMappings (what
 *   `pagectl endpoint start --tablespace-mapping OLD=NEW` does), so the dumps differ only in
 *   those locations.
 * - `pagectl endpoint start --branch --tablespace-mapping OLD=NEW`: the endpoint's LOCATION
 *   tablespaces are symlinks to NEW; tablespace DDL on the endpoint streams into its branch.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyTablespaceMappings, IS_ROOT } from "../src/cli/endpoint.js";
import { BackupServer, freePort, runPg } from "./support/backup_server.js";
import { pageserverApi, startE2e, stopE2e } from "./support/e2e_fixture.js";
import { DEFAULT_WAL } from "./support/e2e_variant.js";
import { TestEnv } from "./support/env.js";
import type { PageserverProcess } from "./support/pageserver_process.js";
import type { PgInstance } from "./support/postgres.js";

const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));
const REGRESS_SQL = readFileSync(fileURLToPath(new URL("./fixtures/pg15_regress_tablespace.sql", import.meta.url)), "utf8");
/** The regression test in two parts: the second starts where its tablespace is emptied and dropped. */
const SPLIT_AT = REGRESS_SQL.indexOf("-- Will fail with bad path");

const env = new TestEnv(fileURLToPath(import.meta.url));
let src: PgInstance;
let ps: PageserverProcess;
let dir: string;
const cleanup: (() => Promise<unknown>)[] = [];
const { api, timelineInfo, waitLsn } = pageserverApi(() => ps, env, cleanup);

beforeAll(async () => {
  ({ src, ps, dir } = await startE2e(env, DEFAULT_WAL.source_conf, "ps-e2e-tablespace-"));
});

afterAll(async () => {
  await stopE2e(cleanup, ps, src, dir);
});

/** A directory the source's postgres user owns, for a tablespace LOCATION. */
function pgOwnedDir(path: string): string {
  mkdirSync(path, { recursive: true });
  if (IS_ROOT) execFileSync("chown", ["postgres:postgres", path]);
  return path;
}

/** psql as pg_regress runs a test: echo off, errors don't stop it; the output (with its ERRORs) is returned. */
async function runRegress(sql: string, db: string): Promise<string> {
  const r = await src.run(
    "psql",
    ["-X", "-q", "-v", "ON_ERROR_STOP=0", "-h", src.host, "-p", String(src.port), "-U", "postgres", "-d", db, "-f", "-"],
    sql,
  );
  expect(r.code, r.stderr).toBe(0);
  return r.stdout + r.stderr;
}

async function dumpall(port: number): Promise<string> {
  const r = await runPg("pg_dumpall", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres"]);
  expect(r.code, r.stderr).toBe(0);
  // The header's version lines name the pg_dump run, and \restrict keys are random per run; the rest is the cluster.
  return r.stdout
    .split("\n")
    .filter((l) => !l.startsWith("-- Dumped") && !l.startsWith("\\restrict ") && !l.startsWith("\\unrestrict "))
    .join("\n");
}

describe("tablespaces: PostgreSQL's tablespace regression test on a streaming source", { timeout: 600_000 }, () => {
  let tenant = "";
  let timeline = "";
  let preLoc = "";
  let lateLoc = "";

  /** The source's WAL position now and its pg_dumpall, with nothing else writing. */
  async function sourcePoint(): Promise<{ lsn: string; dump: string }> {
    await src.psql("CHECKPOINT");
    const dump = await dumpall(src.port);
    const lsn = (await src.psql("SELECT pg_current_wal_insert_lsn()")).trim();
    return { lsn, dump };
  }

  /** A stock PostgreSQL on the timeline's base backup at `lsn`, LOCATION tablespaces mapped into its own directory. */
  function backupAt(lsn: string, locations: string[]): Promise<{ b: BackupServer; mapped: Map<string, string> }> {
    return backupAtOf(timeline, lsn, locations);
  }

  async function backupAtOf(tl: string, lsn: string, locations: string[] = []): Promise<{ b: BackupServer; mapped: Map<string, string> }> {
    await waitLsn(tenant, tl, "last_record_lsn", lsn, 120_000);
    const r = await fetch(`${ps.url}/v1/tenant/${tenant}/timeline/${tl}/basebackup?lsn=${lsn}`);
    expect(r.status).toBe(200);
    const b = new BackupServer();
    env.add(`backup_${lsn.replace("/", "_")}.log`, b.log);
    cleanup.push(() => b.destroy());
    await b.untar(r.body as unknown as AsyncIterable<Uint8Array>);
    const mapped = new Map(locations.map((l, i) => [l, join(b.base, `ts_mapped_${i}`)]));
    const done = applyTablespaceMappings(
      b.data,
      [...mapped].map(([old, to]) => ({ old, new: to })),
    );
    expect(done.map((d) => d.from).sort()).toEqual([...locations].sort());
    for (const d of done) expect(readlinkSync(join(b.data, "pg_tblspc", String(d.oid)))).toBe(d.to);
    await b.start();
    return { b, mapped };
  }

  function expectSameDump(backupDump: string, sourceDump: string, mapped: Map<string, string>): void {
    let expected = sourceDump;
    for (const [old, to] of mapped) expected = expected.split(`'${old}'`).join(`'${to}'`);
    expect(backupDump).toBe(expected);
  }

  it("bootstraps from a source that already has a LOCATION tablespace (one BASE_BACKUP tar per tablespace) and an in-place one", async () => {
    preLoc = pgOwnedDir(join(src.baseDir, "ts_pre"));
    await src.psql(`CREATE TABLESPACE pre_ts LOCATION '${preLoc}'`);
    await src.psql(
      "CREATE TABLE pre_t (i int PRIMARY KEY, t text) TABLESPACE pre_ts; INSERT INTO pre_t SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
    );
    await src.psql("CREATE DATABASE pre_db TABLESPACE pre_ts");
    await src.psql("CREATE TABLE in_pre_db (i int); INSERT INTO in_pre_db SELECT generate_series(1, 100)", "pre_db");
    await src.psql("SET allow_in_place_tablespaces = true; CREATE TABLESPACE pre_inplace LOCATION ''");
    await src.psql("CREATE TABLE pre_ip (i int) TABLESPACE pre_inplace; INSERT INTO pre_ip SELECT generate_series(1, 1000)");
    await src.psql("CREATE DATABASE regression");

    tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    timeline = String(created.json["timeline_id"]);

    const p = await sourcePoint();
    const { b, mapped } = await backupAt(p.lsn, [preLoc]);
    expectSameDump(await dumpall(b.port), p.dump, mapped);
    expect(await b.psql("SELECT (SELECT count(*) FROM pre_t) || ',' || (SELECT count(*) FROM pre_ip)")).toBe("3000,1000");
    await b.destroy();
  });

  it("streams the regression test's first part; a base backup at its end has the same dump (in-place tablespace with partitioned tables, indexes, a matview)", async () => {
    const out = await runRegress(REGRESS_SQL.slice(0, SPLIT_AT), "regression");
    // It ran: the statements that fail on purpose did, and its tablespace has relations.
    expect(out).toContain("ERROR:  tablespace location must be an absolute path");
    expect(
      await src.psql(
        "SELECT count(*) > 0 FROM pg_class c JOIN pg_tablespace s ON c.reltablespace = s.oid WHERE s.spcname = 'regress_tblspace'",
        "regression",
      ),
    ).toBe("t");
    const info = await timelineInfo(tenant, timeline);
    expect(info["wal_source"]).toMatchObject({ state: "streaming", last_error: null });

    const p = await sourcePoint();
    const { b, mapped } = await backupAt(p.lsn, [preLoc]);
    expectSameDump(await dumpall(b.port), p.dump, mapped);
    // The endpoint writes to an in-place tablespace and the mapped one.
    await b.psql(
      "CREATE TABLE testschema.written_here (i int) TABLESPACE regress_tblspace; INSERT INTO testschema.written_here VALUES (1)",
      "regression",
    );
    await b.psql("INSERT INTO pre_t VALUES (100000, 'endpoint')");
    expect(await b.psql("SELECT count(*) FROM pre_t")).toBe("3001");
    expect((await b.amcheck("regression")).code).toBe(0);
    await b.destroy();
  });

  it("streams its second part (drops) and more tablespace DDL; a base backup at the end has the same dump", async () => {
    await runRegress(REGRESS_SQL.slice(SPLIT_AT), "regression");
    lateLoc = pgOwnedDir(join(src.baseDir, "ts_late"));
    await runRegress(
      `SET allow_in_place_tablespaces = true;
      CREATE TABLESPACE ts_keep LOCATION '';
      CREATE TABLE kept (i int, t text) TABLESPACE ts_keep;
      INSERT INTO kept SELECT g, repeat('x', g % 200) FROM generate_series(1, 20000) g;
      CREATE INDEX kept_i ON kept (i) TABLESPACE ts_keep;
      CREATE DATABASE db_inplace TABLESPACE ts_keep;
      CREATE DATABASE db_copy TEMPLATE db_inplace STRATEGY FILE_COPY;
      CREATE TABLESPACE ts_late LOCATION '${lateLoc}';
      CREATE DATABASE db_late TABLESPACE ts_late STRATEGY FILE_COPY;
      ALTER DATABASE db_copy SET TABLESPACE ts_late;
      ALTER TABLE pre_t SET TABLESPACE ts_late;
      CREATE TABLESPACE ts_gone LOCATION '';
      CREATE TABLE gone (i int) TABLESPACE ts_gone;
      DROP TABLE gone;
      DROP TABLESPACE ts_gone;`,
      "postgres",
    );
    await src.psql("CREATE TABLE in_db_inplace AS SELECT generate_series(1, 500) i", "db_inplace");
    expect(await src.psql("SELECT string_agg(spcname, ',' ORDER BY spcname) FROM pg_tablespace")).toBe(
      "pg_default,pg_global,pre_inplace,pre_ts,ts_keep,ts_late",
    );
    const info = await timelineInfo(tenant, timeline);
    expect(info["wal_source"]).toMatchObject({ state: "streaming", last_error: null });

    const p = await sourcePoint();
    const { b, mapped } = await backupAt(p.lsn, [preLoc, lateLoc]);
    expectSameDump(await dumpall(b.port), p.dump, mapped);
    expect(await b.psql("SELECT count(*) FROM in_db_inplace", "db_inplace")).toBe("500");
    // A tablespace can be emptied and dropped on the endpoint (its directories are PostgreSQL's own).
    await b.psql("DROP DATABASE db_inplace; DROP TABLE kept; DROP TABLESPACE ts_keep");
    await b.destroy();
  });

  it("pagectl endpoint start --tablespace-mapping: tablespaces mapped, tablespace DDL on the endpoint streams into its branch", async () => {
    const base = join(src.baseDir, "endpoint");
    const pgdata = join(base, "data");
    const [newPre, newLate] = [join(base, "ts_pre"), join(base, "ts_late")];
    pgOwnedDir(base);
    const epPort = await freePort();
    const pagectl = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        execFile(
          process.execPath,
          ["--import", "tsx", PAGECTL, "--server", ps.url, "--json", ...args],
          { encoding: "utf8", timeout: 180_000 },
          (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, stdout, stderr }),
        );
      });
    const started = await pagectl([
      "endpoint",
      "start",
      "--tenant",
      tenant,
      "--timeline",
      timeline,
      "--branch",
      "--pgdata",
      pgdata,
      "--port",
      String(epPort),
      "--conf",
      "fsync=off",
      "--conf",
      "shared_buffers=16MB",
      "--tablespace-mapping",
      `${preLoc}=${newPre}`,
      "--tablespace-mapping",
      `${lateLoc}=${newLate}`,
    ]);
    cleanup.push(() => pagectl(["endpoint", "stop", "--pgdata", pgdata]));
    expect(started.code, started.stderr).toBe(0);
    const ep = JSON.parse(started.stdout) as { timeline_id: string; wal_source_state: string };
    expect(ep.wal_source_state).toBe("streaming");
    const q = async (sql: string): Promise<string> => {
      const r = await runPg(
        "psql",
        [
          "-X",
          "-q",
          "-A",
          "-t",
          "-v",
          "ON_ERROR_STOP=1",
          "-h",
          "127.0.0.1",
          "-p",
          String(epPort),
          "-U",
          "postgres",
          "-d",
          "postgres",
          "-f",
          "-",
        ],
        sql,
      );
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    expect(
      await q(
        "SELECT string_agg(spcname || '=' || pg_tablespace_location(oid), ',' ORDER BY spcname) FROM pg_tablespace WHERE spcname IN ('pre_ts', 'ts_late')",
      ),
    ).toBe(`pre_ts=${newPre},ts_late=${newLate}`);
    expect(readlinkSync(join(pgdata, "pg_tblspc", await q("SELECT oid FROM pg_tablespace WHERE spcname = 'pre_ts'")))).toBe(newPre);
    // Tablespace DDL on the endpoint: into its branch.
    await q("SET allow_in_place_tablespaces = true; CREATE TABLESPACE ep_ts LOCATION ''");
    await q("CREATE TABLE ep_t TABLESPACE ep_ts AS SELECT generate_series(1, 777) i; INSERT INTO pre_t VALUES (200000, 'endpoint')");
    const stopped = await pagectl(["endpoint", "stop", "--pgdata", pgdata]);
    expect(stopped.code, stopped.stderr).toBe(0);
    const branchInfo = await timelineInfo(tenant, ep.timeline_id);
    const { b } = await backupAtOf(ep.timeline_id, String(branchInfo["last_record_lsn"]));
    expect(await b.psql("SELECT (SELECT count(*) FROM ep_t) || ',' || (SELECT count(*) FROM pre_t)")).toBe("777,3001");
    await b.destroy();
  });

  it("the timeline's ingest never failed", async () => {
    const metrics = await (await fetch(`${ps.url}/metrics`)).text();
    const line = metrics
      .split("\n")
      .find((l) => l.startsWith(`pageserver_wal_ingest_errors_total{tenant_id="${tenant}",timeline_id="${timeline}"}`));
    expect(line?.split(" ").at(-1)).toBe("0");
  });
});
