/**
 * Bootstrapping from a source many times larger than checkpoint_distance (issue 7, item 8),
 * with the pageserver as a separate process and a tenant whose checkpoint_distance is 2 MiB:
 * - from a running source (`pgbench -i -s 6`, ≈ 90 MB): the timeline is created (the import
 *   goes to image layers, several of them), streams a pgbench run on top, and base backups
 *   at two LSNs of that run start a stock PostgreSQL with the source's figures;
 * - from the same cluster's data directory once shut down (import_pgdata): the same figures.
 */
import { mkdtempSync, rmSync } from "node:fs";
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
const CHECKPOINT_DISTANCE = 2 * 1024 * 1024;
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

async function waitIngested(t: string, tl: string, lsn: string, timeout_ms = 120_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    const r = await api("GET", `/v1/tenant/${t}/timeline/${tl}`);
    if (lsnNum(String(r.json["last_record_lsn"])) >= lsnNum(lsn)) return;
    if (Date.now() > deadline) throw new Error(`timeline ${tl} did not reach ${lsn}: ${JSON.stringify(r.json)}\n${ps.logTail()}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function figuresAt(t: string, tl: string, lsn: string): Promise<string> {
  const r = await fetch(`${ps.url}/v1/tenant/${t}/timeline/${tl}/basebackup?lsn=${lsn}`);
  if (r.status !== 200) throw new Error(`basebackup at ${lsn}: ${r.status} ${await r.text()}`);
  const b = new BackupServer();
  env.add(`backup_${lsn.replace("/", "_")}.log`, b.log);
  try {
    await b.untar(r.body as unknown as AsyncIterable<Uint8Array>);
    await b.start();
    return await b.psql(STATE_SQL);
  } finally {
    await b.destroy();
  }
}

async function samplePoint(): Promise<{ lsn: string; state: string }> {
  const out = await src.psql(`BEGIN;
    LOCK TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history IN EXCLUSIVE MODE;
    SELECT pg_current_wal_insert_lsn() || ' ' || (${STATE_SQL});
    COMMIT;`);
  const [lsn, state] = out.trim().split(" ") as [string, string];
  return { lsn, state };
}

function pgbench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runPg("pgbench", [...args, "-h", "127.0.0.1", "-p", String(src.port), "-U", "postgres", "postgres"]);
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  dir = mkdtempSync(join(tmpdir(), "ps-e2e-bootstrap-"));
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

describe("bootstrap from a source larger than checkpoint_distance", { timeout: 400_000 }, () => {
  it("imports a running source of ≈ 45 × checkpoint_distance, streams on top, and matches the source at two LSNs", async () => {
    const init = await pgbench(["-i", "-s", "6", "-q"]);
    expect(init.code, init.stderr).toBe(0);
    const size = Number(await src.psql("SELECT pg_database_size('postgres')"));
    expect(size).toBeGreaterThan(40 * CHECKPOINT_DISTANCE);
    const tenant = String(
      (await api("POST", "/v1/tenant", { config: { checkpoint_distance: CHECKPOINT_DISTANCE, compaction_target_size: 8 * 1024 * 1024 } })).json["id"],
    );
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, `${JSON.stringify(created.json)}\n${ps.logTail()}`).toBe(201);
    const tl = String(created.json["timeline_id"]);
    const layers = created.json["layers"] as { image: number; l0: number };
    // The import is image layers at the backup's start, cut at compaction_target_size.
    expect(layers.image).toBeGreaterThan(5);

    const load = pgbench(["-c", "2", "-j", "2", "-T", "8", "-n"]);
    await new Promise((r) => setTimeout(r, 3000));
    const a = await samplePoint();
    const done = await load;
    expect(done.code, done.stderr).toBe(0);
    const b = await samplePoint();
    expect(a.state).not.toBe(b.state);
    await waitIngested(tenant, tl, b.lsn);
    expect(await figuresAt(tenant, tl, a.lsn), `figures at ${a.lsn}`).toBe(a.state);
    expect(await figuresAt(tenant, tl, b.lsn), `figures at ${b.lsn}`).toBe(b.state);

    // The same cluster shut down, imported from its data directory.
    const removed = await api("DELETE", `/v1/tenant/${tenant}/timeline/${tl}/wal_source`);
    expect(removed.status, JSON.stringify(removed.json)).toBe(200);
    await src.stop();
    const fromDir = await api("POST", `/v1/tenant/${tenant}/timeline`, { import_pgdata: src.dataDir });
    expect(fromDir.status, `${JSON.stringify(fromDir.json)}\n${ps.logTail()}`).toBe(201);
    expect((fromDir.json["layers"] as { image: number }).image).toBeGreaterThan(5);
    expect(await figuresAt(tenant, String(fromDir.json["timeline_id"]), String(fromDir.json["last_record_lsn"]))).toBe(b.state);
  });
});
