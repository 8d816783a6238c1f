/**
 * A source streaming into the pageserver can be stopped cleanly (issue 7, item 7). At a fast
 * shutdown PostgreSQL's walsender waits until the flush position the standby reports reaches
 * the end of WAL; ours is disk_consistent_lsn. An endpoint (a stock PostgreSQL 15 started
 * from a branch's base backup, set as the branch's WAL source) runs pgbench; then:
 * - idle for a few seconds, the branch flushes by itself and reports it (pg_stat_replication
 *   on the endpoint shows our flush position at its end of WAL);
 * - more pgbench, then `pg_ctl stop -m fast -t 30` succeeds (the shutdown checkpoint record
 *   makes the pageserver flush and report at once), and the branch holds every commit.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackupServer, freePort, runPg } from "./support/backup_server.js";
import { TestEnv } from "./support/env.js";
import { PageserverProcess } from "./support/pageserver_process.js";
import { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = {
  wal_level: "replica",
  wal_compression: "lz4",
  max_wal_senders: 10,
  max_replication_slots: 10,
};
const ENDPOINT_CONF = { wal_level: "replica", max_wal_senders: "5", max_replication_slots: "5" };
const STATE_SQL = `SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ',' || (SELECT sum(bbalance) FROM pgbench_branches)
  || ',' || (SELECT sum(tbalance) FROM pgbench_tellers) || ',' || (SELECT count(*) FROM pgbench_history)`;

const env = new TestEnv(fileURLToPath(import.meta.url));
let src: PgInstance;
let ps: PageserverProcess;
let dir: string;
const cleanup: (() => Promise<unknown>)[] = [];

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${ps.url}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { raw: text };
  }
  return { status: r.status, json };
}

const lsnNum = (s: string): number => {
  const [hi, lo] = s.split("/").map((x) => Number.parseInt(x, 16)) as [number, number];
  return hi * 2 ** 32 + lo;
};

async function info(t: string, tl: string): Promise<Record<string, unknown>> {
  const r = await api("GET", `/v1/tenant/${t}/timeline/${tl}`);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json;
}

/** Poll timeline info until `field` reaches `lsn` (bounded). */
async function waitLsn(t: string, tl: string, field: string, lsn: string, timeout_ms = 60_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    const i = await info(t, tl);
    if (lsnNum(String(i[field])) >= lsnNum(lsn)) return;
    if (Date.now() > deadline) throw new Error(`${field} of ${tl} did not reach ${lsn}: ${JSON.stringify(i)}\n${ps.logTail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function backup(t: string, tl: string, lsn: string, conf: Record<string, string> = {}): Promise<BackupServer> {
  const r = await fetch(`${ps.url}/v1/tenant/${t}/timeline/${tl}/basebackup?lsn=${lsn}`);
  if (r.status !== 200) throw new Error(`basebackup at ${lsn}: ${r.status} ${await r.text()}`);
  const b = new BackupServer();
  env.add(`backup_${lsn.replace("/", "_")}_${tl.slice(0, 8)}.log`, b.log);
  cleanup.push(() => b.destroy());
  await b.untar(r.body as unknown as AsyncIterable<Uint8Array>);
  await b.start(conf);
  return b;
}

function pgbench(args: string[], port: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return runPg("pgbench", [...args, "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "postgres"]);
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  dir = mkdtempSync(join(tmpdir(), "ps-e2e-endpoint-stop-"));
  ps = new PageserverProcess(join(dir, "workdir"), await freePort(), join(dir, "pageserver.log"));
  env.add("pageserver.log", ps.logFile);
  await ps.start();
});

afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  await ps?.stop();
  await src?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("stopping a source that streams into the pageserver", { timeout: 300_000 }, () => {
  it("an idle stream gets flushed and reported; pg_ctl stop -m fast succeeds and the branch holds every commit", async () => {
    const init = await pgbench(["-i", "-s", "1", "-q"], src.port);
    expect(init.code, init.stderr).toBe(0);
    const tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    const main = String(created.json["timeline_id"]);
    const at = (await src.psql("SELECT pg_current_wal_insert_lsn()")).trim();
    await waitLsn(tenant, main, "last_record_lsn", at);

    const br = await api("POST", `/v1/tenant/${tenant}/timeline`, { ancestor_timeline_id: main, ancestor_start_lsn: at });
    expect(br.status, JSON.stringify(br.json)).toBe(201);
    const branch = String(br.json["timeline_id"]);
    const endpoint = await backup(tenant, branch, at, ENDPOINT_CONF);
    env.add("endpoint.log", endpoint.log);
    const set = await api("PUT", `/v1/tenant/${tenant}/timeline/${branch}/wal_source`, { connstr: endpoint.connectionString() });
    expect(set.status, JSON.stringify(set.json)).toBe(200);

    // Idle after a load: the branch flushes by itself and the endpoint sees it.
    const run1 = await pgbench(["-c", "2", "-j", "2", "-T", "4", "-n"], endpoint.port);
    expect(run1.code, run1.stderr).toBe(0);
    const end1 = (await endpoint.psql("SELECT pg_current_wal_flush_lsn()")).trim();
    await waitLsn(tenant, branch, "disk_consistent_lsn", end1, 30_000);
    // The report follows the flush within a status interval.
    const reportDeadline = Date.now() + 10_000;
    for (;;) {
      const reported = await endpoint.psql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name LIKE 'pageserver%'");
      if (reported !== "" && lsnNum(reported) >= lsnNum(end1)) break;
      if (Date.now() > reportDeadline) throw new Error(`the endpoint sees our flush at ${reported}, below ${end1}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    // More load, then a fast shutdown right away: it must not hang.
    const run2 = await pgbench(["-c", "2", "-j", "2", "-T", "4", "-n"], endpoint.port);
    expect(run2.code, run2.stderr).toBe(0);
    const state = await endpoint.psql(STATE_SQL);
    const commits = Number(state.split(",")[3]);
    expect(commits).toBeGreaterThan(0);
    const stop = await runPg("pg_ctl", ["-D", endpoint.data, "-m", "fast", "-w", "-t", "30", "stop"]);
    expect(stop.code, `pg_ctl stop: ${stop.stdout}${stop.stderr}\n${ps.logTail()}`).toBe(0);
    // It was the shutdown checkpoint record that made us flush (not only the idle timer).
    expect(readFileSync(ps.logFile, "utf8")).toMatch(/shutdown checkpoint from the source/);

    // Every commit is in the branch, durable: the flush reached the end of the endpoint's WAL.
    const i = await info(tenant, branch);
    expect(i["disk_consistent_lsn"]).toBe(i["last_record_lsn"]);
    const after = await backup(tenant, branch, String(i["last_record_lsn"]));
    expect(await after.psql(STATE_SQL)).toBe(state);
    await after.destroy();
  });
});
