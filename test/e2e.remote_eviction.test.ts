/**
 * Disk-usage eviction end to end (issue 10) with a real PostgreSQL 15 source: a pageserver
 * with remote storage (LocalFs) and a small `max_local_disk_bytes` streams a timeline while
 * the source writes in rounds; after each round's checkpoint and uploads, eviction brings the
 * resident layer bytes back under the limit, and the WAL receiver keeps ingesting (its
 * lookups download what was evicted). Then a base backup at the source's final LSN (which
 * downloads every layer it needs first, and keeps them from the node's eviction loop, which
 * runs every second, until its stream ends) starts a stock PostgreSQL with exactly the
 * source's rows.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import type { TenantId, TimelineId } from "../src/types/ids.js";
import { parseLsn } from "../src/types/lsn.js";
import { BackupServer } from "./support/backup_server.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";

// No autovacuum: its WAL would arrive at any time and make the resident bytes move under the test.
const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4, autovacuum: "off" };
const FIGURES = "SELECT count(*) || ',' || sum(i) || ',' || count(*) FILTER (WHERE v = 'updated') FROM t";
const LIMIT_BYTES = 1024 * 1024;
const ROUNDS = 5;
const WAIT_BOUND_MS = 120_000;
const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
const dirs: string[] = [];
let src: PgInstance;
let ps: Server;
let backup: BackupServer | null = null;
let tenant = "";
let timeline = "";

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`http://127.0.0.1:${ps.port}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function waitIngested(lsn: number): Promise<void> {
  for (let waited = 0; ; waited += 100) {
    const r = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    if (r.status === 200 && parseLsn(String(r.json["last_record_lsn"])) >= lsn) return;
    if (waited > WAIT_BOUND_MS) throw new Error(`ingest did not reach ${lsn}: ${JSON.stringify(r.json)}`);
    await sleep(100);
  }
}

async function sourceLsn(): Promise<number> {
  return parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  const bucket = mkdtempSync(join(tmpdir(), "ps-evict-bucket-"));
  const workdir = mkdtempSync(join(tmpdir(), "ps-evict-"));
  dirs.push(bucket, workdir);
  ps = new Server(
    loadNodeConfig({
      workdir,
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      remote_storage: `file://${bucket}`,
      max_local_disk_bytes: LIMIT_BYTES,
    }),
    logs.logger,
  );
  await ps.start();
});

afterAll(async () => {
  await backup?.destroy();
  await ps?.stop();
  await src?.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("disk-usage eviction with a streaming source", { timeout: 600_000 }, () => {
  it("resident layers stay under max_local_disk_bytes across rounds of writes; a base backup has exactly the source's rows", async () => {
    await src.psql("CREATE TABLE t (i int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 2000) g");
    tenant = String(
      (await api("POST", "/v1/tenant", { config: { compaction_period: 0, gc_period: 0, checkpoint_distance: 1024 * 1024 } })).json["id"],
    );
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    timeline = String(created.json["timeline_id"]);
    const tl = ps.tenants.get(tenant as TenantId).getTimeline(timeline as TimelineId);
    for (let r = 0; r < ROUNDS; r++) {
      const from = 2001 + r * 4000;
      await src.psql(
        `INSERT INTO t SELECT g, 'row ' || g || repeat('x', 200) FROM generate_series(${from}, ${from + 3999}) g; UPDATE t SET v = 'updated' WHERE i % ${5 + r} = 0`,
      );
      await waitIngested(await sourceLsn());
      const cp = await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`);
      expect(cp.status, JSON.stringify(cp.json)).toBe(200);
      await ps.remote!.whenConnected();
      await ps.remote!.clientOf(tl)!.waitUploaded({ signal: AbortSignal.timeout(WAIT_BOUND_MS) });
      // The node's loop (every second) and this round evict; WAL the source still sends (a
      // checkpoint's records) may download a layer again meanwhile: bounded wait for the limit.
      await ps.eviction!.round();
      const deadline = Date.now() + WAIT_BOUND_MS;
      while (tl.residentBytes() > LIMIT_BYTES && Date.now() < deadline) await sleep(100);
      expect(tl.residentBytes(), `round ${r}`).toBeLessThanOrEqual(LIMIT_BYTES);
    }
    expect(ps.eviction!.counters.evictions).toBeGreaterThan(0);
    expect(tl.evictedLayerNames().length).toBeGreaterThan(0);

    await src.psql("DELETE FROM t WHERE i % 7 = 0");
    await waitIngested(await sourceLsn());
    const endText = await src.psql("SELECT pg_current_wal_insert_lsn()");
    // Ingest itself met evicted layers (relation sizes, directories) and downloaded them.
    expect(ps.remote!.ondemand.downloads).toBeGreaterThan(0);
    // What ingest brought back may still be here (the node's loop runs every second): one
    // round now, so the backup below surely starts with layers it needs evicted.
    await ps.eviction!.round();
    expect(tl.evictedLayerNames().length).toBeGreaterThan(0);
    const downloads = ps.remote!.ondemand.downloads;
    const r = await fetch(`http://127.0.0.1:${ps.port}/v1/tenant/${tenant}/timeline/${timeline}/basebackup?lsn=${endText}`);
    expect(r.status).toBe(200);
    backup = new BackupServer();
    env.add("backup.log", backup.log);
    await backup.untar(r.body as unknown as AsyncIterable<Uint8Array>);
    expect(ps.remote!.ondemand.downloads).toBeGreaterThan(downloads);
    await backup.start();
    expect(await backup.psql(FIGURES)).toBe(await src.psql(FIGURES));
  });
});
