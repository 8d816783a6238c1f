/**
 * Crashes in the middle of remote storage work (issue 10: failpoints in upload and index
 * write; SIGKILL during uploads). The pageserver runs as a process with `remote_storage` in
 * its pageserver.json (LocalFs), streaming from a PostgreSQL 15 source. At each of
 * remote-upload-layer, remote-upload-index and remote-delete-layers the process exits on the
 * spot (failpoint `exit`, a crash with nothing cleaned up); a SIGKILL lands while uploads are
 * held back by a sleep failpoint. After every restart the bucket converges to exactly the
 * timeline's local layers and an index naming them: nothing missing, nothing orphaned, every
 * checksum right; and remote_consistent_lsn reaches disk_consistent_lsn.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseLayerName } from "../src/layers/layer_name.js";
import { findLatestIndex } from "../src/remote/index_part.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { checkRemoteTimeline, type RemoteTimelineCheck } from "../src/remote/remote_check.js";
import { parseTenantId, parseTimelineId } from "../src/types/ids.js";
import { parseLsn } from "../src/types/lsn.js";
import { startE2e, stopE2e } from "./support/e2e_fixture.js";
import { TestEnv } from "./support/env.js";
import { parseLogLines } from "./support/log_check.js";
import { freePort } from "./support/backup_server.js";
import { PageserverProcess } from "./support/pageserver_process.js";
import type { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4 };
const TENANT_CONF = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d", compaction_threshold: 2, image_creation_threshold: 1 };
const env = new TestEnv(fileURLToPath(import.meta.url));
const cleanup: (() => Promise<unknown>)[] = [];
let src: PgInstance;
let ps: PageserverProcess;
let dir: string;
let bucket: LocalFs;
let tenant: string;
let timeline: string;

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${ps.url}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function waitFor<T>(what: string, fn: () => Promise<T | null>, timeout_ms = 60_000): Promise<T> {
  for (let waited = 0; ; waited += 100) {
    const v = await fn().catch(() => null);
    if (v !== null) return v;
    if (waited > timeout_ms) throw new Error(`bound exceeded waiting for ${what}: ${ps.logTail(2000)}`);
    await sleep(100);
  }
}

async function info(): Promise<Record<string, unknown>> {
  const r = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
  if (r.status !== 200) throw new Error(`timeline info: ${r.status}`);
  return r.json;
}

/** Write to the source and wait until the timeline ingested it. */
async function write(rows: number): Promise<void> {
  await src.psql(`INSERT INTO t SELECT g, repeat('y', 300) FROM generate_series(1, ${rows}) g`);
  const lsn = parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
  await waitFor("ingest", async () => (parseLsn(String((await info())["last_record_lsn"])) >= lsn - 8192 ? true : null));
}

function localLayers(): string[] {
  return readdirSync(join(ps.workdir, "tenants", tenant, "timelines", timeline))
    .filter((n) => {
      try {
        return parseLayerName(n) !== null;
      } catch {
        return false;
      }
    })
    .sort();
}

/** The bucket converges to the local layers, and remote_consistent_lsn to disk_consistent_lsn. */
async function converged(): Promise<RemoteTimelineCheck> {
  return waitFor("the bucket to match the timeline", async () => {
    const i = await info();
    if (i["remote_consistent_lsn"] !== i["disk_consistent_lsn"]) return null;
    const check = await checkRemoteTimeline(bucket, parseTenantId(tenant), parseTimelineId(timeline), 1, { verify_checksums: true });
    const idx = await findLatestIndex(bucket, parseTenantId(tenant), parseTimelineId(timeline), 1);
    const named = [...(idx?.index.layers.keys() ?? [])].sort();
    return check.ok && JSON.stringify(named) === JSON.stringify(localLayers()) ? check : null;
  });
}

/** Arm `failpoint` with exit, run `trigger` (whose request dies with the process), restart. */
async function crashAt(failpoint: string, trigger: () => Promise<unknown>): Promise<void> {
  expect((await api("PUT", "/v1/failpoints", [{ name: failpoint, actions: "exit" }])).status).toBe(200);
  await trigger().catch(() => undefined);
  expect(await ps.waitExit(60_000)).toBe(1);
  expect(ps.logTail()).toContain(`failpoint '${failpoint}': exit`);
  await ps.start();
  await waitFor("tenant active", async () => ((await api("GET", `/v1/tenant/${tenant}`)).json["state"] === "Active" ? true : null));
}

beforeAll(async () => {
  ({ src, ps, dir } = await startE2e(env, SOURCE_CONF, "ps-e2e-remote-crash-", ["--enable-failpoints"]));
  // Remote storage from the workdir's config file, so every restart has it.
  await ps.stop();
  const root = join(dir, "bucket");
  mkdirSync(root, { recursive: true });
  bucket = new LocalFs(root);
  writeFileSync(join(ps.workdir, "pageserver.json"), JSON.stringify({ remote_storage: `file://${root}` }));
  await ps.start();
  await src.psql("CREATE TABLE t (i int, pad text)");
  tenant = String((await api("POST", "/v1/tenant", { config: TENANT_CONF })).json["id"]);
  const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  timeline = String(created.json["timeline_id"]);
});

afterAll(async () => {
  await stopE2e(cleanup, ps, src, dir);
});

describe("crashes during remote storage work", { timeout: 600_000 }, () => {
  it("starts consistent", async () => {
    await write(1000);
    expect((await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
    await converged();
  });

  it("exit at a layer upload (a checkpoint's new L0)", async () => {
    await write(1000);
    await crashAt("remote-upload-layer", () => api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`));
    await write(500);
    expect((await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
    await converged();
  });

  it("exit at an index upload", async () => {
    await write(1000);
    await crashAt("remote-upload-index", () => api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`));
    await write(500);
    expect((await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
    await converged();
  });

  it("exit at the deletion of compacted L0 layers", async () => {
    for (let i = 0; i < 2; i++) {
      await write(500);
      expect((await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
    }
    await converged();
    await crashAt("remote-delete-layers", () => api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/compact`));
    const check = await converged();
    expect(check.orphans).toEqual([]);
    // The compacted L0 objects were left behind by the crash; the restart found and deleted them.
    const reconciled = parseLogLines(readFileSync(ps.logFile, "utf8")).filter((l) => l.msg === "remote state reconciled with local layers");
    expect(Number(reconciled.at(-1)!.raw["orphans"]), JSON.stringify(reconciled.map((l) => l.raw))).toBeGreaterThanOrEqual(2);
  });

  it("SIGKILL while uploads are held back", async () => {
    expect((await api("PUT", "/v1/failpoints", [{ name: "remote-upload-layer", actions: "sleep(60000)" }])).status).toBe(200);
    await write(1000);
    expect((await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
    const i = await info();
    expect(i["remote_consistent_lsn"]).not.toBe(i["disk_consistent_lsn"]);
    await ps.kill();
    await ps.start();
    await converged();
  });

  it("exit during an attach on another pageserver: its restart resumes the attach; the tenant is Active, holds what A uploaded and serves a base backup", async () => {
    expect((await api("PUT", "/v1/failpoints", [])).status).toBe(200);
    await converged();
    const durable = parseLsn(String((await info())["remote_consistent_lsn"]));
    const workB = join(dir, "b");
    mkdirSync(workB, { recursive: true });
    writeFileSync(join(workB, "pageserver.json"), JSON.stringify({ remote_storage: `file://${join(dir, "bucket")}` }));
    const b = new PageserverProcess(workB, await freePort(), join(dir, "pageserver-b.log"));
    b.extraArgs.push("--enable-failpoints");
    cleanup.push(() => b.stop());
    await b.start(30_000, { FAILPOINTS: "remote-attach-timeline=exit" });
    await fetch(`${b.url}/v1/tenant/${tenant}/attach`, { method: "POST", body: JSON.stringify({ generation: 2 }) }).catch(() => undefined);
    expect(await b.waitExit(60_000)).toBe(1);
    expect(b.logTail()).toContain("failpoint 'remote-attach-timeline': exit");
    await b.start();
    const state = async (): Promise<string | null> => {
      const r = await fetch(`${b.url}/v1/tenant/${tenant}`);
      return r.status === 200 ? String(((await r.json()) as Record<string, unknown>)["state"]) : null;
    };
    for (let waited = 0; (await state()) !== "Active"; waited += 100) {
      if (waited > 60_000) throw new Error(`attach did not resume: ${b.logTail(2000)}`);
      await sleep(100);
    }
    const r = await fetch(`${b.url}/v1/tenant/${tenant}/timeline/${timeline}`);
    expect(r.status).toBe(200);
    // B holds the timeline as far as the bucket had it: at least everything A had uploaded.
    expect(parseLsn(String(((await r.json()) as Record<string, unknown>)["last_record_lsn"]))).toBeGreaterThanOrEqual(durable);
    const tar = await fetch(`${b.url}/v1/tenant/${tenant}/timeline/${timeline}/basebackup`);
    expect(tar.status).toBe(200);
    expect((await tar.arrayBuffer()).byteLength).toBeGreaterThan(1024 * 1024);
    await b.stop();
  });
});
