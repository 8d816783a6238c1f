/**
 * What the pgbench end-to-end tests share (test/e2e.bootstrap_large.test.ts,
 * test/e2e.endpoint_stop.test.ts, test/support/e2e_pgbench_suite.ts): a source PostgreSQL 15
 * and the pageserver as a separate process in a temp dir, started in beforeAll and stopped
 * (after the test's own cleanups, newest first) in afterAll; the pageserver's HTTP API as
 * JSON; waiting for a timeline to reach an LSN; a base backup started as a stock PostgreSQL;
 * and pgbench with the figures that show a run's effect.
 *
 * Every wait is bounded by a timeout; every process started here is stopped in stopE2e.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { BackupServer, freePort, runPg } from "./backup_server.js";
import type { TestEnv } from "./env.js";
import { PageserverProcess } from "./pageserver_process.js";
import { PgInstance } from "./postgres.js";

/** pgbench's figures: balances of the three tables and the history's row count. */
export const PGBENCH_STATE_SQL = `SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ',' || (SELECT sum(bbalance) FROM pgbench_branches)
  || ',' || (SELECT sum(tbalance) FROM pgbench_tellers) || ',' || (SELECT count(*) FROM pgbench_history)`;

/** A source and a pageserver, for a test's beforeAll. */
export async function startE2e(
  env: TestEnv,
  sourceConf: Record<string, string | number>,
  tmpPrefix: string,
  psArgs: string[] = [],
): Promise<{ src: PgInstance; ps: PageserverProcess; dir: string }> {
  const src = await PgInstance.start({ conf: sourceConf });
  env.add("source.log", src.logFile);
  const dir = mkdtempSync(join(tmpdir(), tmpPrefix));
  const ps = new PageserverProcess(join(dir, "workdir"), await freePort(), join(dir, "pageserver.log"));
  ps.extraArgs.push(...psArgs);
  env.add("pageserver.log", ps.logFile);
  await ps.start();
  return { src, ps, dir };
}

/** afterAll: the test's cleanups (newest first, failures ignored), then pageserver, source, temp dir. */
export async function stopE2e(
  cleanup: (() => Promise<unknown>)[],
  ps: PageserverProcess | undefined,
  src: PgInstance | undefined,
  dir: string | undefined,
): Promise<void> {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  await ps?.stop();
  await src?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/** "16/B374D848" as a number (exact below 2^53). */
export function lsnNum(s: string): number {
  const [hi, lo] = s.split("/").map((x) => Number.parseInt(x, 16)) as [number, number];
  return hi * 2 ** 32 + lo;
}

export function pgbench(args: string[], port: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return runPg("pgbench", [...args, "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "postgres"]);
}

/** The source's pgbench figures and the WAL position they are exact at (writers are locked out meanwhile). */
export async function pgbenchPoint(q: (sql: string) => Promise<string>): Promise<{ lsn: string; state: string }> {
  const out = await q(`BEGIN;
    LOCK TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history IN EXCLUSIVE MODE;
    SELECT pg_current_wal_insert_lsn() || ' ' || (${PGBENCH_STATE_SQL});
    COMMIT;`);
  const [lsn, state] = out.trim().split(" ") as [string, string];
  return { lsn, state };
}

export interface PageserverApi {
  /** A request to the HTTP API; a body that is not JSON comes back as `{ raw: text }`. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }>;
  /** GET of the timeline's info, which must succeed. */
  timelineInfo(t: string, tl: string): Promise<Record<string, unknown>>;
  /** Poll the timeline's info until `field` reaches `lsn` (bounded by timeout_ms). */
  waitLsn(t: string, tl: string, field: string, lsn: string, timeout_ms?: number): Promise<void>;
  /** A stock PostgreSQL started from the timeline's base backup at `lsn`; destroyed by the cleanups. */
  startBackup(t: string, tl: string, lsn: string, conf?: Record<string, string>): Promise<BackupServer>;
}

/** The API of the pageserver `ps()` returns (called on each use: a test may restart it). */
export function pageserverApi(ps: () => PageserverProcess, env: TestEnv, cleanup: (() => Promise<unknown>)[]): PageserverApi {
  async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const r = await fetch(`${ps().url}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      json = { raw: text };
    }
    return { status: r.status, json };
  }

  async function timelineInfo(t: string, tl: string): Promise<Record<string, unknown>> {
    const r = await api("GET", `/v1/tenant/${t}/timeline/${tl}`);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    return r.json;
  }

  async function waitLsn(t: string, tl: string, field: string, lsn: string, timeout_ms = 60_000): Promise<void> {
    const deadline = Date.now() + timeout_ms;
    for (;;) {
      const info = await timelineInfo(t, tl);
      if (lsnNum(String(info[field])) >= lsnNum(lsn)) return;
      if (Date.now() > deadline) throw new Error(`${field} of ${tl} did not reach ${lsn}: ${JSON.stringify(info)}\n${ps().logTail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function startBackup(t: string, tl: string, lsn: string, conf: Record<string, string> = {}): Promise<BackupServer> {
    const r = await fetch(`${ps().url}/v1/tenant/${t}/timeline/${tl}/basebackup?lsn=${lsn}`);
    if (r.status !== 200) throw new Error(`basebackup at ${lsn}: ${r.status} ${await r.text()}`);
    const b = new BackupServer();
    env.add(`backup_${lsn.replace("/", "_")}_${tl.slice(0, 8)}.log`, b.log);
    cleanup.push(() => b.destroy());
    await b.untar(r.body as unknown as AsyncIterable<Uint8Array>);
    await b.start(conf);
    return b;
  }

  return { api, timelineInfo, waitLsn, startBackup };
}
