/**
 * Failpoints in the pageserver as a process, with a real PostgreSQL 15 source:
 * - `exit` on flush-before-layer-map (set at runtime over HTTP): a checkpoint makes the
 *   process exit at once with code 1, after the L0 file was written and before the layer map
 *   or disk_consistent_lsn knew it. The restart deletes that "future" layer, streams the WAL
 *   again from disk_consistent_lsn (the source's slot kept it), and a stock PostgreSQL started
 *   from a base backup sees every committed row.
 * - FAILPOINTS in the environment: `tenant-load=return` makes the tenant Broken with the
 *   failpoint's name (the other routes keep serving) and the startup log lists it; a bad spec
 *   exits 2 with a clear message.
 * - `basebackup-start=return` fails a base backup request naming it; `walreceiver-before-ingest
 *   =return` makes ingest fail: the source shows state error with the reason, retries with a
 *   backoff (pageserver_wal_ingest_errors_total counts each failure), and streams the WAL it
 *   missed by itself once the failpoint is off.
 * - The restarted process's /metrics: WAL received, walreceiver lag, base backup timing.
 * The pageserver's log file is checked for warnings nobody provoked.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pageserverApi, startE2e, stopE2e } from "./support/e2e_fixture.js";
import { TestEnv } from "./support/env.js";
import { expectLogFileClean, parseLogLines } from "./support/log_check.js";
import type { PageserverProcess } from "./support/pageserver_process.js";
import type { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 10, max_replication_slots: 10 };
const ROOT = fileURLToPath(new URL("..", import.meta.url));

const env = new TestEnv(fileURLToPath(import.meta.url));
let src: PgInstance;
let ps: PageserverProcess;
let dir: string;
const cleanup: (() => Promise<unknown>)[] = [];
const { api, timelineInfo, waitLsn, startBackup } = pageserverApi(() => ps, env, cleanup);

/** After a (re)start: tenants may load after the API answers; wait until this one has (bounded). */
async function waitLoaded(tenant: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 60_000;
  for (let i = 0; i < 1200 && Date.now() < deadline; i++) {
    const r = await api("GET", `/v1/tenant/${tenant}`);
    if (r.status === 200 && r.json["state"] !== "Loading") return r.json;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`tenant ${tenant} did not finish loading: ${ps.logTail()}`);
}

beforeAll(async () => {
  ({ src, ps, dir } = await startE2e(env, SOURCE_CONF, "ps-e2e-failpoints-", ["--enable-failpoints"]));
});

afterAll(async () => {
  await stopE2e(cleanup, ps, src, dir);
});

describe("failpoints in the pageserver process", { timeout: 300_000 }, () => {
  let tenant = "";
  let timeline = "";
  let rowsAt = "";

  it("exit on flush-before-layer-map: the process exits 1 at the checkpoint; the restart recovers every row", async () => {
    await src.psql("CREATE TABLE t (i int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g");
    tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    timeline = String(created.json["timeline_id"]);
    // Rows after the bootstrap arrive as WAL: they sit in the open layer until a checkpoint.
    await src.psql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1001, 3000) g; UPDATE t SET v = 'updated' WHERE i % 7 = 0");
    rowsAt = (await src.psql("SELECT pg_current_wal_insert_lsn()")).trim();
    await waitLsn(tenant, timeline, "last_record_lsn", rowsAt);
    const before = await timelineInfo(tenant, timeline);

    const fp = await api("PUT", "/v1/failpoints", [{ name: "flush-before-layer-map", actions: "exit" }]);
    expect(fp.status, JSON.stringify(fp.json)).toBe(200);
    // The reply never comes: the process is gone.
    await expect(fetch(`${ps.url}/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`, { method: "PUT" })).rejects.toThrow();
    expect(await ps.waitExit()).toBe(1);
    expect(ps.logTail()).toContain("failpoint 'flush-before-layer-map': exit");

    // No FAILPOINTS in the environment: the runtime setting died with the process.
    await ps.start();
    expect(await waitLoaded(tenant)).toMatchObject({ state: "Active" });
    const lines = parseLogLines(readFileSync(ps.logFile, "utf8"));
    expect(
      lines.some((l) => l.msg === "deleting future layer"),
      "the L0 file written before the exit is deleted at load",
    ).toBe(true);
    const starting = lines.filter((l) => l.msg === "pageserver starting");
    expect(starting.length).toBe(2);
    expect(starting[1]!.raw["failpoints"]).toEqual({});
    await waitLsn(tenant, timeline, "last_record_lsn", rowsAt);
    const after = await timelineInfo(tenant, timeline);
    expect(after["disk_consistent_lsn"]).toBe(before["disk_consistent_lsn"]);
    const cp = await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`);
    expect(cp.status, JSON.stringify(cp.json)).toBe(200);
    const pg = await startBackup(tenant, timeline, rowsAt);
    expect(await pg.psql("SELECT count(*), count(*) FILTER (WHERE v = 'updated'), max(i) FROM t")).toBe(
      await src.psql("SELECT count(*), count(*) FILTER (WHERE v = 'updated'), max(i) FROM t"),
    );
    expect(await pg.psql("SELECT count(*) FROM t")).toBe("3000");

    // The restarted process's metrics: WAL received, the walreceiver's lag, the base backup.
    const text = await (await fetch(`${ps.url}/metrics`)).text();
    const value = (series: string): number => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      expect(line, series).toBeDefined();
      return Number(line!.slice(series.length + 1));
    };
    expect(value("pageserver_wal_ingest_records_received_total")).toBeGreaterThan(0);
    expect(value("pageserver_wal_ingest_bytes_received_total")).toBeGreaterThan(0);
    expect(value(`pageserver_walreceiver_lag_bytes{tenant_id="${tenant}",timeline_id="${timeline}"}`)).toBeGreaterThanOrEqual(0);
    expect(value('pageserver_storage_operations_seconds_global_count{operation="basebackup"}')).toBe(1);
    expect(value('pageserver_storage_operations_seconds_global_count{operation="layer flush"}')).toBeGreaterThanOrEqual(1);
    const promtool = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 20_000 });
    expect(promtool.status, `${promtool.stdout}${promtool.stderr}`).toBe(0);
  });

  it("FAILPOINTS=tenant-load=return: the tenant is Broken naming the failpoint, the server serves; without it the tenant loads", async () => {
    await ps.stop();
    await ps.start(30_000, { FAILPOINTS: "tenant-load=return" });
    expect(await waitLoaded(tenant)).toMatchObject({
      state: "Broken",
      broken_reason: "cannot load: failpoint 'tenant-load' returned an error",
    });
    expect((await api("GET", "/v1/status")).status).toBe(200);
    expect((await api("GET", "/v1/failpoints")).json).toEqual({ "tenant-load": "return" });
    const starting = parseLogLines(readFileSync(ps.logFile, "utf8")).filter((l) => l.msg === "pageserver starting");
    expect(starting[starting.length - 1]!.raw["failpoints"]).toEqual({ "tenant-load": "return" });

    await ps.stop();
    await ps.start();
    expect(await waitLoaded(tenant)).toMatchObject({ state: "Active" });
    await waitLsn(tenant, timeline, "last_record_lsn", rowsAt);

    // basebackup-start=return at runtime: the request fails naming it; off, it works again.
    expect((await api("PUT", "/v1/failpoints", [{ name: "basebackup-start", actions: "return" }])).status).toBe(200);
    const bb = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}/basebackup?lsn=${rowsAt}`);
    expect(bb.status).toBe(500);
    expect(bb.json).toEqual({ code: "internal", error: "failpoint 'basebackup-start' returned an error" });
    expect((await api("PUT", "/v1/failpoints", [{ name: "basebackup-start", actions: "off" }])).status).toBe(200);
    const ok = await fetch(`${ps.url}/v1/tenant/${tenant}/timeline/${timeline}/basebackup?lsn=${rowsAt}`);
    expect(ok.status).toBe(200);
    expect((await ok.arrayBuffer()).byteLength).toBeGreaterThan(0);
  });

  it("walreceiver-before-ingest=return: the source shows state error with the reason and a counted, retried failure; once the failpoint is off it streams again by itself", async () => {
    expect((await api("PUT", "/v1/failpoints", [{ name: "walreceiver-before-ingest", actions: "return" }])).status).toBe(200);
    await src.psql("INSERT INTO t SELECT g, 'late ' || g FROM generate_series(3001, 3100) g");
    const lateAt = (await src.psql("SELECT pg_current_wal_insert_lsn()")).trim();
    const errorsMetric = async (): Promise<number> => {
      const text = await (await fetch(`${ps.url}/metrics`)).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`pageserver_wal_ingest_errors_total{tenant_id="${tenant}",timeline_id="${timeline}"}`));
      return line === undefined ? 0 : Number(line.split(" ").at(-1));
    };
    const deadline = Date.now() + 60_000;
    let status: Record<string, unknown> = {};
    // Two failures: the first attempt and at least one retry after its backoff.
    for (let i = 0; i < 1200 && Date.now() < deadline; i++) {
      status = (await timelineInfo(tenant, timeline))["wal_source"] as Record<string, unknown>;
      if (status["state"] === "error" && (await errorsMetric()) >= 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(status["state"]).toBe("error");
    expect(String(status["last_error"])).toMatch(
      /^WAL consumer failed at [0-9A-F]+\/[0-9A-F]+: failpoint 'walreceiver-before-ingest' returned an error$/,
    );
    expect(Number.isNaN(Date.parse(String(status["next_retry_at"])))).toBe(false);
    expect(await errorsMetric()).toBeGreaterThanOrEqual(2);
    expect((await api("PUT", "/v1/failpoints", [{ name: "walreceiver-before-ingest", actions: "off" }])).status).toBe(200);
    // No restart: the next retry streams again from last_record_lsn.
    await waitLsn(tenant, timeline, "last_record_lsn", lateAt);
    for (let i = 0; i < 1200 && Date.now() < deadline + 60_000; i++) {
      status = (await timelineInfo(tenant, timeline))["wal_source"] as Record<string, unknown>;
      if (status["state"] === "streaming" && status["last_error"] === null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toMatchObject({ state: "streaming", last_error: null, next_retry_at: null });
  });

  it("a bad FAILPOINTS spec exits 2 with a clear message", () => {
    const work = mkdtempSync(join(tmpdir(), "ps-fp-bad-"));
    try {
      for (const [spec, msg] of [
        ["no-such-failpoint=return", "pageserver: FAILPOINTS: unknown failpoint 'no-such-failpoint': known failpoints are "],
        ["tenant-load=explode", "pageserver: FAILPOINTS: invalid failpoint action 'explode': expected return, exit, sleep(<ms>) or off"],
        ["tenant-load", "pageserver: FAILPOINTS: invalid FAILPOINTS entry 'tenant-load': expected name=action"],
      ] as const) {
        const r = spawnSync(process.execPath, ["--import", "tsx", "src/main/pageserver.ts", "--workdir", work, "--listen", "127.0.0.1:0"], {
          cwd: ROOT,
          encoding: "utf8",
          timeout: 20_000,
          env: { ...process.env, FAILPOINTS: spec, PAGESERVER_ENABLE_FAILPOINTS: "1" },
        });
        expect(r.status, r.stderr).toBe(2);
        expect(r.stderr).toContain(msg);
        expect(r.stderr).not.toContain("    at ");
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("the pageserver's log has no warning but those the failpoints caused", () => {
    expectLogFileClean(ps.logFile, [
      // FAILPOINTS=tenant-load=return breaks the tenant on purpose.
      /^tenant is broken$/,
      // The HTTP layer logs every 5xx reply: the base backup failed by basebackup-start.
      /^request failed$/,
      // walreceiver-before-ingest=return fails ingest until it is off.
      /^WAL ingest failed; the stream restarts after a backoff$/,
    ]);
  });
});
