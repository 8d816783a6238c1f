/**
 * Tenant migration end to end (issue 10) with a real PostgreSQL 15 source: pageserver A
 * streams a timeline, detaches it over HTTP (flush, everything in the bucket, A keeps
 * nothing; the source's slot stays at A's remote_consistent_lsn); the source writes on
 * meanwhile; pageserver B attaches it in generation 2 over HTTP, takes the WAL source, and
 * continues the stream where A left it. A base backup from B at the source's final LSN starts
 * a stock PostgreSQL with exactly the source's rows: no commit lost across the move.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { parseLsn } from "../src/types/lsn.js";
import { BackupServer } from "./support/backup_server.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4 };
const FIGURES = "SELECT count(*) || ',' || sum(i) || ',' || count(*) FILTER (WHERE v = 'updated') FROM t";
const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
const dirs: string[] = [];
let src: PgInstance;
let a: Server;
let b: Server;
let backup: BackupServer | null = null;
let tenant = "";
let timeline = "";

async function api(s: Server, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`http://127.0.0.1:${s.port}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function waitIngested(s: Server, lsn: number): Promise<void> {
  for (let waited = 0; ; waited += 100) {
    const r = await api(s, "GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    if (r.status === 200 && parseLsn(String(r.json["last_record_lsn"])) >= lsn) return;
    if (waited > 120_000) throw new Error(`ingest did not reach ${lsn}: ${JSON.stringify(r.json)}`);
    await sleep(100);
  }
}

async function sourceLsn(): Promise<number> {
  return parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
}

async function server(name: string, bucket: string): Promise<Server> {
  const workdir = mkdtempSync(join(tmpdir(), `ps-migrate-${name}-`));
  dirs.push(workdir);
  const s = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: bucket }), logs.logger);
  await s.start();
  return s;
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  const bucket = mkdtempSync(join(tmpdir(), "ps-migrate-bucket-"));
  dirs.push(bucket);
  a = await server("a", `file://${bucket}`);
  b = await server("b", `file://${bucket}`);
});

afterAll(async () => {
  await backup?.destroy();
  await a?.stop();
  await b?.stop();
  await src?.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("tenant migration with a streaming source", { timeout: 600_000 }, () => {
  it("A detaches, B attaches in generation 2 and continues the stream: no commit lost", async () => {
    await src.psql("CREATE TABLE t (i int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 2000) g");
    tenant = String((await api(a, "POST", "/v1/tenant", {})).json["id"]);
    const created = await api(a, "POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    timeline = String(created.json["timeline_id"]);
    await src.psql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(2001, 4000) g; UPDATE t SET v = 'updated' WHERE i % 5 = 0");
    await waitIngested(a, await sourceLsn());

    const detached = await api(a, "POST", `/v1/tenant/${tenant}/detach`);
    expect(detached.status, JSON.stringify(detached.json)).toBe(200);
    const slot = `pageserver_${timeline}`;
    // The slot stays, holding WAL from what the bucket has.
    expect(await src.psql(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${slot}'`)).toBe("1");

    // The source goes on while no pageserver streams.
    await src.psql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(4001, 6000) g; DELETE FROM t WHERE i % 7 = 0");

    const attached = await api(b, "POST", `/v1/tenant/${tenant}/attach`, { generation: 2 });
    expect(attached.status, JSON.stringify(attached.json)).toBe(201);
    expect(attached.json["state"]).toBe("Active");
    const source = await api(b, "PUT", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`, { connstr: src.connectionString() });
    expect(source.status, JSON.stringify(source.json)).toBe(200);

    await src.psql("UPDATE t SET v = 'updated' WHERE i % 11 = 0");
    const end = await sourceLsn();
    await waitIngested(b, end);
    const endText = await src.psql("SELECT pg_current_wal_insert_lsn()");

    const r = await fetch(`http://127.0.0.1:${b.port}/v1/tenant/${tenant}/timeline/${timeline}/basebackup?lsn=${endText}`);
    expect(r.status).toBe(200);
    backup = new BackupServer();
    env.add("backup.log", backup.log);
    await backup.untar(r.body as unknown as AsyncIterable<Uint8Array>);
    await backup.start();
    expect(await backup.psql(FIGURES)).toBe(await src.psql(FIGURES));
  });
});
