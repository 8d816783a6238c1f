/**
 * Split brain (issue 10, RFC 025): two pageservers, one bucket. A (a process) streams a
 * timeline from PostgreSQL 15 and is SIGKILLed without detaching; B attaches the tenant in
 * generation 2, takes the WAL source and streams on. A restarts with its stale local state:
 * its tenant ends Broken ("superseded by generation 2"), its WAL source stops, it deletes
 * nothing; B's state in the bucket stays whole and B keeps streaming.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import { parseTenantId, parseTimelineId } from "../src/types/ids.js";
import { parseLsn } from "../src/types/lsn.js";
import { freePort } from "./support/backup_server.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PageserverProcess } from "./support/pageserver_process.js";
import { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4 };
const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
let dir: string;
let src: PgInstance;
let a: PageserverProcess;
let b: Server;
let bucket: LocalFs;
let tenant = "";
let timeline = "";

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function waitFor<T>(what: string, fn: () => Promise<T | null>, timeout_ms = 120_000): Promise<T> {
  for (let waited = 0; ; waited += 100) {
    const v = await fn().catch(() => null);
    if (v !== null) return v;
    if (waited > timeout_ms) throw new Error(`bound exceeded waiting for ${what}`);
    await sleep(100);
  }
}

const bBase = (): string => `http://127.0.0.1:${b.port}`;

async function ingested(base: string, lsn: number): Promise<Record<string, unknown>> {
  return waitFor(`ingest to ${lsn} on ${base}`, async () => {
    const r = await call(base, "GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    return r.status === 200 && parseLsn(String(r.json["last_record_lsn"])) >= lsn ? r.json : null;
  });
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  dir = mkdtempSync(join(tmpdir(), "ps-split-brain-"));
  const root = join(dir, "bucket");
  mkdirSync(root);
  bucket = new LocalFs(root);
  const aWork = join(dir, "a");
  mkdirSync(aWork);
  writeFileSync(join(aWork, "pageserver.json"), JSON.stringify({ remote_storage: `file://${root}` }));
  a = new PageserverProcess(aWork, await freePort(), join(dir, "a.log"));
  env.add("a.log", a.logFile);
  await a.start();
  const bWork = join(dir, "b");
  b = new Server(
    loadNodeConfig({ workdir: bWork, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: `file://${root}` }),
    logs.logger,
  );
  await b.start();
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await src?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("split brain", { timeout: 600_000 }, () => {
  it("A killed, B attaches in generation 2; A comes back stale: Broken, deletes nothing; B streams on", async () => {
    await src.psql("CREATE TABLE t (i int, pad text); INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series(1, 3000) g");
    tenant = String((await call(a.url, "POST", "/v1/tenant", {})).json["id"]);
    const created = await call(a.url, "POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    timeline = String(created.json["timeline_id"]);
    await src.psql("INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series(3001, 6000) g");
    await ingested(a.url, parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()")));
    expect((await call(a.url, "PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
    await waitFor("A's uploads", async () => {
      const j = (await call(a.url, "GET", `/v1/tenant/${tenant}/timeline/${timeline}`)).json;
      return j["remote_consistent_lsn"] !== null && j["remote_consistent_lsn"] === j["disk_consistent_lsn"] ? true : null;
    });
    await a.kill();

    // B takes over in generation 2 and streams on.
    const attached = await call(bBase(), "POST", `/v1/tenant/${tenant}/attach`, { generation: 2 });
    expect(attached.status, JSON.stringify(attached.json)).toBe(201);
    const put = await call(bBase(), "PUT", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`, { connstr: src.connectionString() });
    expect(put.status, JSON.stringify(put.json)).toBe(200);
    await src.psql("INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series(6001, 9000) g");
    await ingested(bBase(), parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()")));
    expect((await call(bBase(), "PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
    const tl = b.tenants.get(parseTenantId(tenant)).getTimeline(parseTimelineId(timeline));
    await waitFor("B's client", async () => (b.remote!.clientOf(tl) !== undefined ? true : null));
    await b.remote!.clientOf(tl)!.waitUploaded();
    const bObjects = (await bucket.list(`tenants/${tenant}/`)).map((o) => o.key).filter((k) => k.endsWith("-00000002"));
    expect(bObjects.length).toBeGreaterThan(1);

    // A comes back with its stale state.
    await a.start();
    const broken = await waitFor("A's tenant superseded", async () => {
      const j = (await call(a.url, "GET", `/v1/tenant/${tenant}`)).json;
      return j["state"] === "Broken" ? j : null;
    });
    expect(String(broken["broken_reason"])).toContain("superseded by generation 2");
    // A's WAL source was stopped: B still streams, and takes new WAL.
    await src.psql("INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series(9001, 10000) g");
    await ingested(bBase(), parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()")));
    const slotPid = await src.psql(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'pageserver_${timeline}'`);
    expect(slotPid).not.toBe("");

    // A deleted nothing: every object of B's generation is there, and B's state checks whole.
    await b.remote!.clientOf(tl)!.waitUploaded();
    const after = new Set((await bucket.list(`tenants/${tenant}/`)).map((o) => o.key));
    for (const k of bObjects) expect(after.has(k), k).toBe(true);
    const check = await checkRemoteTimeline(bucket, parseTenantId(tenant), parseTimelineId(timeline), 2, { verify_checksums: true });
    expect(check.missing).toEqual([]);
    expect(check.size_mismatch).toEqual([]);
    expect(check.checksum_mismatch).toEqual([]);
  });
});
