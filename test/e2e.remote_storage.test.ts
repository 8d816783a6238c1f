/**
 * Remote storage with a real PostgreSQL 15 source (issue 10): a timeline bootstrapped from the
 * source streams into a Server whose remote storage is S3 (s3rver). The flush position the
 * source hears is remote_consistent_lsn: while the bucket is down, checkpoints advance
 * disk_consistent_lsn but the slot's restart_lsn stays at what is in the bucket; once it is
 * back, uploads finish, the slot follows, and the bucket matches the timeline's layers.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import { parseTenantId, parseTimelineId } from "../src/types/ids.js";
import { parseLsn } from "../src/types/lsn.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";
import { TestS3 } from "./support/s3rver.js";

const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4 };
const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
const s3 = new TestS3();
let src: PgInstance;
let server: Server | null = null;
let workdir: string;
let base: string;
let tenant: string;
let timeline: string;

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function waitFor<T>(what: string, fn: () => Promise<T | null>, timeout_ms = 60_000): Promise<T> {
  for (let waited = 0; ; waited += 100) {
    const v = await fn();
    if (v !== null) return v;
    if (waited > timeout_ms) throw new Error(`bound exceeded waiting for ${what}`);
    await sleep(100);
  }
}

async function info(): Promise<{ last: number; dcl: number; remote: number | null }> {
  const j = (await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`)).json;
  const remote = j["remote_consistent_lsn"];
  return {
    last: parseLsn(String(j["last_record_lsn"])),
    dcl: parseLsn(String(j["disk_consistent_lsn"])),
    remote: remote === null ? null : parseLsn(String(remote)),
  };
}

async function restartLsn(): Promise<number> {
  return parseLsn(await src.psql(`SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pageserver_${timeline}'`));
}

/** Write to the source, wait for ingest past it, checkpoint. Returns disk_consistent_lsn. */
async function writeAndCheckpoint(rows: number): Promise<number> {
  await src.psql(`INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, ${rows}) g`);
  const lsn = parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
  await waitFor("ingest past the write", async () => ((await info()).last >= lsn - 8192 ? true : null));
  expect((await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
  return (await info()).dcl;
}

beforeAll(async () => {
  await s3.start();
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  workdir = mkdtempSync(join(tmpdir(), "ps-e2e-remote-"));
  server = new Server(
    loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: s3.url("e2e") }),
    logs.logger,
  );
  base = `http://127.0.0.1:${await server.start()}`;
  await src.psql("CREATE TABLE t (x int, pad text)");
  tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
  const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  timeline = String(created.json["timeline_id"]);
});

afterAll(async () => {
  await s3.start();
  await server?.stop();
  await src?.destroy();
  await s3.destroy();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  logs.expectClean([/remote operation failed, retrying/]);
});

describe("remote storage with a PostgreSQL source", { timeout: 300_000 }, () => {
  it("the source keeps WAL until it is in the bucket", async () => {
    const dcl1 = await writeAndCheckpoint(2000);
    await waitFor("remote_consistent_lsn reaches the checkpoint", async () => ((await info()).remote! >= dcl1 ? true : null));
    await waitFor("the slot follows remote_consistent_lsn", async () => ((await restartLsn()) >= dcl1 ? true : null));

    // The bucket goes away: what it holds now is all the source may forget.
    await s3.stop();
    const r1 = (await info()).remote!;
    expect(r1).toBeGreaterThanOrEqual(dcl1);
    await waitFor("the slot at what the bucket holds", async () => ((await restartLsn()) === r1 ? true : null));
    // Checkpoints go on locally; uploads fail and retry.
    const dcl2 = await writeAndCheckpoint(2000);
    expect(dcl2).toBeGreaterThan(r1);
    await waitFor("upload retries while the bucket is down", async () => {
      const c = server!.remote!.clientOf(server!.tenants.get(parseTenantId(tenant)).getTimeline(parseTimelineId(timeline)));
      return c !== undefined && c.stats().retries_total > 0 ? true : null;
    });
    // Several status intervals (1 s) pass: none may report more than the bucket holds.
    await sleep(3000);
    expect((await info()).remote).toBe(r1);
    expect(await restartLsn()).toBe(r1);

    // Back: the uploads finish and the slot moves on.
    await s3.start();
    await waitFor("remote_consistent_lsn catches up", async () => ((await info()).remote! >= dcl2 ? true : null));
    await waitFor("the slot follows", async () => ((await restartLsn()) >= dcl2 ? true : null));
    const tl = server!.tenants.get(parseTenantId(tenant)).getTimeline(parseTimelineId(timeline));
    // The stream goes on (an idle flush or a compaction may add or replace layers while the
    // bucket is checked): compare once the layer set held still across a whole check.
    const layerNames = (): string =>
      tl
        .layerFiles()
        .map((l) => l.name)
        .sort()
        .join(",");
    await waitFor("the index names exactly the local layers", async () => {
      const before = layerNames();
      await server!.remote!.clientOf(tl)!.waitUploaded();
      const check = await checkRemoteTimeline(server!.remote!.storage, tl.tenantId, tl.timelineId, 1, { verify_checksums: true });
      expect(check.ok, JSON.stringify(check)).toBe(true);
      if (layerNames() !== before) return null;
      expect(check, JSON.stringify(check)).toMatchObject({ ok: true, layers_named: tl.layerFiles().length });
      return true;
    });
  });
});
