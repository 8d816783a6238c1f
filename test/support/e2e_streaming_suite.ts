/**
 * A suite run by more than one test file, each with its own source settings (E2eVariant):
 * test/e2e.streaming.test.ts (images) and test/e2e.streaming_plain.test.ts (default WAL settings, lz4).
 *
 * End to end with real PostgreSQL 15: a source (the variant's settings) is bootstrapped into a timeline over the HTTP API (BASE_BACKUP + import),
 * keeps streaming while it is written to, and base backups at recorded LSNs start a stock
 * PostgreSQL 15 with exactly the data the source had at each LSN.
 *
 * The indexes are checked on their own: on each restored server the same figures are read
 * once by sequential scans only and once through the indexes only (GiST after page splits,
 * the primary key), EXPLAIN proving which path each side took; the sequential figures must
 * equal the source's at that LSN and the index figures the sequential ones.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../../src/main/config.js";
import { Server } from "../../src/main/server.js";
import { BackupServer } from "./backup_server.js";
import { TestEnv } from "./env.js";
import { PgInstance } from "./postgres.js";
import type { E2eVariant } from "./e2e_variant.js";

export function streamingSuite(testFile: string, variant: E2eVariant): void {
  const env = new TestEnv(testFile);
  let src: PgInstance;
  let server: Server;
  let workdir: string;
  let base: string;
  const backups: BackupServer[] = [];

  async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return {
      status: r.status,
      json: text.length > 0 && r.headers.get("content-type")?.includes("json") ? (JSON.parse(text) as Record<string, unknown>) : {},
    };
  }

  const STATE_SQL = `SELECT (SELECT count(*) || ',' || sum(x) || ',' || sum(length(s)) || ',' || sum(v) FROM t)
  || ';' || (SELECT count(*) FROM g WHERE p <@ box(point(10, 10), point(50, 50)))
  || ';' || (SELECT count(*) FROM t WHERE x <= 20 AND xmax <> 0)`;
  /** Figures an index can answer: a GiST search (after page splits) and a primary-key range. */
  const GIST_COUNT = "SELECT count(*) FROM g WHERE p <@ box(point(10, 10), point(50, 50))";
  const PKEY_SUM = "SELECT sum(x) FROM t WHERE x BETWEEN 100 AND 4000";
  const INDEXED_FIGURES = `SELECT (${GIST_COUNT}) || ';' || (${PKEY_SUM})`;
  /** Planner settings that leave each side one path: heap only, or the indexes only. */
  const SEQ_ONLY = "SET enable_indexscan = off; SET enable_indexonlyscan = off; SET enable_bitmapscan = off;";
  const INDEX_ONLY = "SET enable_seqscan = off; SET enable_bitmapscan = off;";

  /** The indexed figures read by sequential scans and through the indexes, each path shown by EXPLAIN. */
  async function indexedFigures(psql: (sql: string) => Promise<string>): Promise<{ seq: string; idx: string }> {
    const plan = async (settings: string, sql: string): Promise<string> => psql(`${settings} EXPLAIN (COSTS OFF) ${sql}`);
    const seqGist = await plan(SEQ_ONLY, GIST_COUNT);
    const seqPkey = await plan(SEQ_ONLY, PKEY_SUM);
    expect(seqGist, "sequential side, GiST figure").toMatch(/Seq Scan on g\b/);
    expect(seqPkey, "sequential side, primary-key figure").toMatch(/Seq Scan on t\b/);
    expect(`${seqGist}\n${seqPkey}`, "sequential side uses no index").not.toMatch(/Index|Bitmap/);
    expect(await plan(INDEX_ONLY, GIST_COUNT), "index side, GiST figure").toMatch(/Index (Only )?Scan using g_p on g\b/);
    expect(await plan(INDEX_ONLY, PKEY_SUM), "index side, primary-key figure").toMatch(/Index (Only )?Scan using t_pkey on t\b/);
    return { seq: await psql(`${SEQ_ONLY} ${INDEXED_FIGURES}`), idx: await psql(`${INDEX_ONLY} ${INDEXED_FIGURES}`) };
  }

  beforeAll(async () => {
    src = await PgInstance.start({ conf: variant.source_conf });
    env.add("source.log", src.logFile);
    workdir = mkdtempSync(join(tmpdir(), "ps-e2e-"));
    env.add("pageserver_workdir", workdir);
    env.add("pageserver.log", join(workdir, "pageserver.log"));
    const log = pino(
      { level: process.env["TEST_LOG_LEVEL"] ?? "info" },
      pino.destination({ dest: join(workdir, "pageserver.log"), sync: true }),
    );
    server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", import_pgdata_root: tmpdir() }), log);
    base = `http://127.0.0.1:${await server.start()}`;
  });

  afterAll(async () => {
    for (const b of backups) await b.destroy().catch(() => undefined);
    await server?.stop();
    await src?.destroy();
    if (workdir) rmSync(workdir, { recursive: true, force: true });
  });

  /**
   * Two sessions share-lock the same rows at once: PostgreSQL records a multixact (MULTIXACT
   * CREATE_ID: offsets and members pages) as their xmax; one then updates a row.
   */
  async function sharedLocks(round: number): Promise<void> {
    const a = new pg.Client(src.connectionConfig());
    const b = new pg.Client(src.connectionConfig());
    await a.connect();
    await b.connect();
    try {
      await a.query("BEGIN");
      await b.query("BEGIN");
      await a.query("SELECT x FROM t WHERE x <= 20 FOR SHARE");
      await b.query("SELECT x FROM t WHERE x <= 20 FOR SHARE");
      await a.query("COMMIT");
      await b.query(`UPDATE t SET v = v + 1 WHERE x = ${round + 1}`);
      await b.query("COMMIT");
    } finally {
      await a.end();
      await b.end();
    }
  }

  async function waitIngested(tenant: string, timeline: string, lsn: string, timeout_ms = 60_000): Promise<void> {
    const [hi, lo] = lsn.split("/").map((x) => Number.parseInt(x, 16)) as [number, number];
    const want = hi * 2 ** 32 + lo;
    const deadline = Date.now() + timeout_ms;
    for (;;) {
      const r = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
      const [h2, l2] = String(r.json["last_record_lsn"])
        .split("/")
        .map((x) => Number.parseInt(x, 16)) as [number, number];
      if (h2 * 2 ** 32 + l2 >= want) return;
      if (Date.now() > deadline) throw new Error(`timeline did not reach ${lsn}: ${JSON.stringify(r.json)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  async function backupAt(tenant: string, timeline: string, lsn: string): Promise<BackupServer> {
    const r = await fetch(`${base}/v1/tenant/${tenant}/timeline/${timeline}/basebackup?lsn=${lsn}`);
    expect(r.status, await (r.status === 200 ? Promise.resolve("") : r.text())).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/x-tar");
    const b = new BackupServer();
    env.add(`backup_${lsn.replace("/", "_")}.log`, b.log);
    backups.push(b);
    const body = r.body!;
    await b.untar(body as unknown as AsyncIterable<Uint8Array>);
    await b.start();
    return b;
  }

  describe(`streaming ingest (${variant.name})`, { timeout: 300_000 }, () => {
    it("bootstraps from a running source, streams, and serves base backups at past LSNs", async () => {
      await src.psql(`
      CREATE TABLE t (x int PRIMARY KEY, s text, v int DEFAULT 0);
      INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
      CREATE TABLE g (id int, p point);
      CREATE INDEX g_p ON g USING gist (p);
    `);
      const tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
      const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
      expect(created.status, JSON.stringify(created.json)).toBe(201);
      const timeline = String(created.json["timeline_id"]);

      const points: { lsn: string; state: string; indexed: string }[] = [];
      for (let round = 0; round < 3; round++) {
        await src.psql(`
        INSERT INTO t SELECT g, md5(g::text), ${round} FROM generate_series(${10000 + round * 3000}, ${12000 + round * 3000}) g;
        UPDATE t SET v = v + ${round + 1} WHERE x % 7 = ${round};
        DELETE FROM t WHERE x % 101 = ${round};
        BEGIN; INSERT INTO t VALUES (-1, 'rolled back'); ROLLBACK;
        CREATE INDEX IF NOT EXISTS t_v ON t (v);
        INSERT INTO g SELECT i, point(i % 100, (i / 100) + ${round * 100}) FROM generate_series(1, 8000) i;
      `);
        await sharedLocks(round);
        // Recorded while the source is idle (this test is its only writer).
        const lsn = await src.psql("SELECT pg_current_wal_insert_lsn()");
        points.push({ lsn, state: await src.psql(STATE_SQL), indexed: await src.psql(`${SEQ_ONLY} ${INDEXED_FIGURES}`) });
      }
      await src.psql("CREATE TABLE marker (); INSERT INTO marker DEFAULT VALUES;");
      await waitIngested(tenant, timeline, points[points.length - 1]!.lsn);

      const info = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
      expect((info.json["wal_source"] as Record<string, unknown>)["state"]).toBe("streaming");
      expect(Number(info.json["current_logical_size"])).toBeGreaterThan(0);

      for (const p of points) {
        const b = await backupAt(tenant, timeline, p.lsn);
        expect(await b.psql(STATE_SQL), `state at ${p.lsn}`).toBe(p.state);
        const figures = await indexedFigures((sql) => b.psql(sql));
        expect(figures.seq, `sequential scans at ${p.lsn}`).toBe(p.indexed);
        expect(figures.idx, `index scans at ${p.lsn}`).toBe(figures.seq);
        const chk = await b.amcheck();
        expect(chk.code, chk.out).toBe(0);
        await b.destroy();
      }

      // Storage maintenance on a PostgreSQL timeline: flush, image layers made in a worker with
      // the PostgreSQL redo and keyspace, GC to the last LSN; the latest state still serves.
      const tlPath = `/v1/tenant/${tenant}/timeline/${timeline}`;
      expect((await api("PUT", `${tlPath}/checkpoint`)).status).toBe(200);
      const compacted = await api("PUT", `${tlPath}/compact?force_image_layer_creation=true`);
      expect(compacted.status, JSON.stringify(compacted.json)).toBe(200);
      expect(Number(compacted.json["image_layers_created"])).toBeGreaterThan(0);
      const gc = await api("PUT", `${tlPath}/do_gc`, { gc_horizon: 0 });
      expect(gc.status, JSON.stringify(gc.json)).toBe(200);
      expect(Number(gc.json["layers_removed"])).toBeGreaterThan(0);
      const last = String((await api("GET", tlPath)).json["last_record_lsn"]);
      const finalState = await src.psql(STATE_SQL);
      const fb = await backupAt(tenant, timeline, last);
      expect(await fb.psql(STATE_SQL)).toBe(finalState);
      const fchk = await fb.amcheck();
      expect(fchk.code, fchk.out).toBe(0);
      await fb.destroy();
      const old = await fetch(`${base}${tlPath}/basebackup?lsn=${points[0]!.lsn}`);
      expect(old.status).toBe(406);
    });

    it("bootstraps from a cleanly shut down data directory, then streams from its checkpoint", async () => {
      const pg2 = await PgInstance.start({ conf: variant.source_conf });
      env.add("source2.log", pg2.logFile);
      try {
        await pg2.psql("CREATE TABLE d (x int PRIMARY KEY); INSERT INTO d SELECT generate_series(1, 1000);");
        await pg2.stop();
        const tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
        const bad = await api("POST", `/v1/tenant/${tenant}/timeline`, { import_pgdata: "relative/path" });
        expect(bad.status).toBe(400);
        const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { import_pgdata: pg2.dataDir });
        expect(created.status, JSON.stringify(created.json)).toBe(201);
        const timeline = String(created.json["timeline_id"]);
        await pg2.restart();
        const set = await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`, { connstr: pg2.connectionString() });
        expect(set.status, JSON.stringify(set.json)).toBe(200);
        await pg2.psql("INSERT INTO d SELECT generate_series(1001, 3000); DELETE FROM d WHERE x % 10 = 0;");
        const lsn = await pg2.psql("SELECT pg_current_wal_insert_lsn()");
        const state = await pg2.psql("SELECT count(*), sum(x) FROM d");
        await pg2.psql("CREATE TABLE marker (); INSERT INTO marker DEFAULT VALUES;");
        await waitIngested(tenant, timeline, lsn);
        const b = await backupAt(tenant, timeline, lsn);
        expect(await b.psql("SELECT count(*), sum(x) FROM d")).toBe(state);
        await b.destroy();
        await api("DELETE", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`);
      } finally {
        await pg2.destroy();
      }
    });
  });
}
