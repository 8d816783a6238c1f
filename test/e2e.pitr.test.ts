/**
 * PITR retention by commit time against a real PostgreSQL 15 source streaming into an
 * in-process Server (logs checked). Phase A commits (A1; checkpoint; A2; checkpoint and image
 * layers; A3), the source's clock is read (T_mid), phase B commits. A branch is made between
 * A1 and A2. GC as of T_mid + pitr_interval (1h) — the commit timestamps are PostgreSQL's, the
 * `now` GC uses is given, so nothing depends on how long the test takes:
 * - the cutoff is the end of A3's commit record (the last commit at or before T_mid), reported
 *   as latest_gc_cutoff_lsn; layers below it went;
 * - a base backup at the cutoff starts a stock PostgreSQL holding exactly phase A's rows; one
 *   at the last record LSN holds A and B; below the cutoff, a base backup and a branch are a
 *   406 `gc_cutoff`;
 * - the branch made before GC (its point below the cutoff) still holds exactly A1's rows.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import type { TenantId, TimelineId } from "../src/types/ids.js";
import { asLsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { BackupServer } from "./support/backup_server.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";

const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4, autovacuum: "off" };
const ENDPOINT_CONF = { wal_level: "replica", max_wal_senders: "4", max_replication_slots: "4" };
const HOUR_MS = 3_600_000;

let src: PgInstance;
let server: Server | null = null;
let workdir = "";
let base = "";
let tenant = "";
let timeline = "";
const cleanup: (() => Promise<unknown>)[] = [];

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function insertLsn(): Promise<number> {
  return parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
}

async function waitIngested(lsn: number): Promise<void> {
  for (let i = 0; ; i++) {
    const r = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    if (parseLsn(String(r.json["last_record_lsn"])) >= lsn) return;
    if (i > 600) throw new Error(`ingest did not reach the source's LSN: ${JSON.stringify(r.json)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function ok(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const r = await api(method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.json)}`).toBeLessThan(300);
  return r.json;
}

/** count(*) of t in a stock PostgreSQL started from `tl`'s base backup at `lsn`. */
async function rowsAt(tl: string, lsn: string): Promise<number> {
  const res = await fetch(`${base}/v1/tenant/${tenant}/timeline/${tl}/basebackup?lsn=${lsn}`);
  expect(res.status).toBe(200);
  const b = new BackupServer();
  env.add(`backup_${tl.slice(0, 8)}_${lsn.replace("/", "_")}.log`, b.log);
  cleanup.push(() => b.destroy());
  await b.untar(res.body as unknown as AsyncIterable<Uint8Array>);
  await b.start(ENDPOINT_CONF);
  const n = Number(await b.psql("SELECT count(*) FROM t"));
  await b.destroy();
  return n;
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  workdir = mkdtempSync(join(tmpdir(), "ps-pitr-"));
  server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), logs.logger);
  server.http.checkResponses = true;
  base = `http://127.0.0.1:${await server.start()}`;
  const conf = { compaction_period: "0s", gc_period: "0s", gc_horizon: 0, pitr_interval: "1h", image_creation_threshold: 1 };
  tenant = String((await ok("POST", "/v1/tenant", { config: conf }))["id"]);
  timeline = String(
    (await ok("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } }))["timeline_id"],
  );
}, 180_000);

afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  await server?.stop();
  await src?.destroy();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("PITR by commit time with a streaming source", { timeout: 300_000 }, () => {
  it("keeps what was committed inside pitr_interval, collects what is older, keeps a branch's point", async () => {
    const TL = `/v1/tenant/${tenant}/timeline/${timeline}`;
    const checkpoint = async () => {
      await waitIngested(await insertLsn());
      await ok("PUT", `${TL}/checkpoint`);
    };
    await src.psql("CREATE TABLE t (x int); INSERT INTO t SELECT g FROM generate_series(1, 1000) g");
    await checkpoint();
    // The branch: after A1's commit, before A2.
    const branch = String((await ok("POST", `/v1/tenant/${tenant}/timeline`, { ancestor_timeline_id: timeline }))["timeline_id"]);
    await src.psql("INSERT INTO t SELECT g FROM generate_series(1001, 2000) g");
    await checkpoint();
    await ok("PUT", `${TL}/compact?force_image_layer_creation=true`);
    const beforeA3 = await insertLsn();
    await src.psql("INSERT INTO t VALUES (2001)");
    const afterA3 = await insertLsn();
    const tMid = Date.parse(await src.psql(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`));
    // Commit timestamps have µs resolution: keep phase B's apart from the clock read.
    await new Promise((res) => setTimeout(res, 20));
    await src.psql("INSERT INTO t SELECT g FROM generate_series(3001, 4000) g");
    await src.psql("INSERT INTO t SELECT g FROM generate_series(4001, 5000) g");
    await checkpoint();

    const t = server!.tenants.get(tenant as TenantId);
    const tl = t.getTimeline(timeline as TimelineId);
    const layersBefore = tl.layerMap.size;
    const removed = await t.gc({ timeline: tl, now_ms: tMid + HOUR_MS });
    const info = await ok("GET", TL);
    const cutoff = parseLsn(String(info["latest_gc_cutoff_lsn"]));
    expect(cutoff, "the end of A3's commit record").toBeGreaterThan(beforeA3);
    expect(cutoff).toBeLessThanOrEqual(afterA3);
    expect(removed).toBeGreaterThan(0);
    expect(tl.layerMap.size).toBe(layersBefore - removed);

    expect(await rowsAt(timeline, lsnToString(cutoff))).toBe(2001);
    expect(await rowsAt(timeline, String(info["last_record_lsn"]))).toBe(4001);
    const below = lsnToString(asLsn(cutoff - 8));
    const bb = await fetch(`${base}${TL}/basebackup?lsn=${below}`);
    expect(bb.status).toBe(406);
    expect(((await bb.json()) as { code: string }).code).toBe("gc_cutoff");
    const br = await api("POST", `/v1/tenant/${tenant}/timeline`, { ancestor_timeline_id: timeline, ancestor_start_lsn: below });
    expect(br.status).toBe(406);
    expect(br.json["code"]).toBe("gc_cutoff");
    // The branch made before GC, below the cutoff, still reads its point.
    const binfo = await ok("GET", `/v1/tenant/${tenant}/timeline/${branch}`);
    expect(parseLsn(String(binfo["ancestor_lsn"]))).toBeLessThan(cutoff);
    expect(await rowsAt(branch, String(binfo["last_record_lsn"]))).toBe(1000);
    // Nothing more to collect as of the same moment.
    expect(await t.gc({ timeline: tl, now_ms: tMid + HOUR_MS })).toBe(0);
  });
});
