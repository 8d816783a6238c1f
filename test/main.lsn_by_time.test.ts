/**
 * get_lsn_by_timestamp and branch creation at a time, against a real PostgreSQL 15 source
 * streaming into an in-process Server (logs checked): the source's commits are timed with
 * clock_timestamp() read between them (pg_last_committed_xact() is off by default), so a
 * time T_i read after commit i and before commit i+1 must answer `present` with an LSN
 * within commit i's WAL; before every commit seen → `past`; after the last → `future`
 * (last_record_lsn); before any commit was seen → `nodata`. A branch at T_i
 * (ancestor_start_time) holds exactly the rows committed by then (its base backup started
 * as a stock PostgreSQL); a branch sees its ancestor's commits below its branch point (a
 * later time is its `future`, an earlier one its `past` at the branch point); a branch at a
 * `past` time is a 400 naming the kind. After a restart of the
 * pageserver the answers are the same (the index is durable). Deleting the streaming timeline
 * (after its branches; before, a 409 that stops nothing) drops its slot on the source.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { COMMIT_TIMES_FILE } from "../src/tenant/commit_time_format.js";
import type { TenantId, TimelineId } from "../src/types/ids.js";
import { asLsn, parseLsn } from "../src/types/lsn.js";
import { BackupServer } from "./support/backup_server.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";

const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
/** Autovacuum off: no transaction commits on the source but the test's own. */
const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4, autovacuum: "off" };
const ENDPOINT_CONF = { wal_level: "replica", max_wal_senders: "4", max_replication_slots: "4" };

let src: PgInstance;
let server: Server | null = null;
let workdir: string;
let base: string;
let tenant = "";
let timeline = "";
const cleanup: (() => Promise<unknown>)[] = [];

async function startServer(): Promise<void> {
  server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), logs.logger);
  server.http.checkResponses = true;
  base = `http://127.0.0.1:${await server.start()}`;
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function lsnAt(tl: string, time: string): Promise<{ lsn: string; kind: string }> {
  const r = await api("GET", `/v1/tenant/${tenant}/timeline/${tl}/get_lsn_by_timestamp?timestamp=${encodeURIComponent(time)}`);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json as { lsn: string; kind: string };
}

/** The source's clock now, RFC 3339 in UTC with microseconds. */
async function sourceNow(): Promise<string> {
  return src.psql(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
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

/** Rows of t in a stock PostgreSQL started from `tl`'s base backup at its last record LSN. */
async function rowsOnBranch(tl: string): Promise<string> {
  const info = await api("GET", `/v1/tenant/${tenant}/timeline/${tl}`);
  const res = await fetch(`${base}/v1/tenant/${tenant}/timeline/${tl}/basebackup?lsn=${String(info.json["last_record_lsn"])}`);
  expect(res.status).toBe(200);
  const b = new BackupServer();
  env.add(`backup_${tl.slice(0, 8)}.log`, b.log);
  cleanup.push(() => b.destroy());
  await b.untar(res.body as unknown as AsyncIterable<Uint8Array>);
  await b.start(ENDPOINT_CONF);
  const rows = await b.psql("SELECT string_agg(x::text, ',' ORDER BY x) FROM t");
  await b.destroy();
  return rows;
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  workdir = mkdtempSync(join(tmpdir(), "ps-lsn-time-"));
  await startServer();
  tenant = String((await api("POST", "/v1/tenant", { config: { compaction_period: "0s", gc_period: "0s" } })).json["id"]);
  const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  timeline = String(created.json["timeline_id"]);
}, 180_000);

afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  await server?.stop();
  await src?.destroy();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("get_lsn_by_timestamp", { timeout: 300_000 }, () => {
  const times: string[] = [];
  /** Per commit: the source's insert LSN before and after it. */
  const commits: { before: number; after: number }[] = [];

  it("nodata before any commit; present / past / future from the commit timestamps ingested", async () => {
    await waitIngested(await insertLsn());
    const none = await lsnAt(timeline, await sourceNow());
    expect(none.kind).toBe("nodata");
    const info = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    // The earliest LSN a branch may start at: the GC cutoff (a bootstrap raises it to where its
    // base backup is consistent), never below the timeline's start.
    const earliest = Math.max(parseLsn(String(info.json["initdb_lsn"])), parseLsn(String(info.json["latest_gc_cutoff_lsn"])));
    expect(parseLsn(none.lsn)).toBe(earliest);

    times.push(await sourceNow()); // T0: before every commit
    const sqls = ["CREATE TABLE t (x int); INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (3)"];
    for (const sql of sqls) {
      const before = await insertLsn();
      await src.psql(sql);
      const after = await insertLsn();
      commits.push({ before, after });
      times.push(await sourceNow()); // T_i: after commit i, before commit i+1
      // Commit timestamps have µs resolution: keep the reads apart.
      await new Promise((res) => setTimeout(res, 20));
    }
    await waitIngested(commits[commits.length - 1]!.after);

    const past = await lsnAt(timeline, times[0]!);
    expect(past.kind).toBe("past");
    expect(parseLsn(past.lsn)).toBe(earliest);
    for (const i of [1, 2]) {
      const r = await lsnAt(timeline, times[i]!);
      expect(r.kind, `T${i}`).toBe("present");
      const lsn = parseLsn(r.lsn);
      expect(lsn, `T${i}: within commit ${i}'s WAL`).toBeGreaterThan(commits[i - 1]!.before);
      expect(lsn).toBeLessThanOrEqual(commits[i - 1]!.after);
      // And back: the commit's time lies between the reads around it (the same clock).
      const tl = server!.tenants.get(tenant as TenantId).getTimeline(timeline as TimelineId);
      const at = tl.timeForLsn(lsn);
      expect(at).not.toBeNull();
      expect(at!).toBeGreaterThan(Date.parse(times[i - 1]!));
      expect(at!).toBeLessThanOrEqual(Date.parse(times[i]!) + 1);
      expect(tl.timeForLsn(asLsn(commits[i - 1]!.before))).toBe(
        i === 1 ? null : tl.timeForLsn(parseLsn((await lsnAt(timeline, times[i - 1]!)).lsn)),
      );
    }
    const last = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    const future = await lsnAt(timeline, times[3]!);
    expect(future).toEqual({ kind: "future", lsn: last.json["last_record_lsn"] });
    // Zones other than Z mean the same instant.
    const shifted = new Date(Date.parse(times[0]!) + 2 * 3_600_000).toISOString().replace("Z", "+02:00");
    expect((await lsnAt(timeline, shifted)).kind).toBe("past");
  });

  it("a branch at a time holds exactly the rows committed by then; it sees its ancestor's commits below its branch point", async () => {
    const branchAt = async (time: string): Promise<{ status: number; json: Record<string, unknown> }> =>
      api("POST", `/v1/tenant/${tenant}/timeline`, { ancestor_timeline_id: timeline, ancestor_start_time: time });
    const b1 = await branchAt(times[1]!);
    expect(b1.status, JSON.stringify(b1.json)).toBe(201);
    expect(b1.json["ancestor_lsn"]).toBe((await lsnAt(timeline, times[1]!)).lsn);
    const b2 = await branchAt(times[2]!);
    expect(b2.status, JSON.stringify(b2.json)).toBe(201);
    expect(await rowsOnBranch(String(b1.json["timeline_id"]))).toBe("1");
    expect(await rowsOnBranch(String(b2.json["timeline_id"]))).toBe("1,2");

    // The branch at T2 sees its ancestor's commits below its branch point, not commit 3: a time
    // after commit 2 is its future; T1 is before its start (its earliest LSN: the branch point).
    const b2id = String(b2.json["timeline_id"]);
    expect(await lsnAt(b2id, times[1]!)).toEqual({ kind: "past", lsn: b2.json["ancestor_lsn"] });
    expect(await lsnAt(b2id, times[3]!)).toEqual({ kind: "future", lsn: b2.json["last_record_lsn"] });

    const refused = await branchAt(times[0]!);
    expect(refused.status).toBe(400);
    expect(refused.json["code"]).toBe("invalid_argument");
    expect(String(refused.json["error"])).toContain('answers "past"');
    const both = await api("POST", `/v1/tenant/${tenant}/timeline`, {
      ancestor_timeline_id: timeline,
      ancestor_start_time: times[1],
      ancestor_start_lsn: "0/1",
    });
    expect(both.status).toBe(400);
  });

  it("a restart keeps the answers (the index is saved with disk_consistent_lsn)", async () => {
    const before = await Promise.all(times.map((t) => lsnAt(timeline, t)));
    await server!.stop();
    server = null;
    expect(existsSync(join(workdir, "tenants", tenant, "timelines", timeline, COMMIT_TIMES_FILE))).toBe(true);
    await startServer();
    const after = await Promise.all(times.map((t) => lsnAt(timeline, t)));
    // The last answer is `future` at last_record_lsn, which the restart keeps (nothing new committed).
    expect(after).toEqual(before);
    expect(after.map((a) => a.kind)).toEqual(["past", "present", "present", "future"]);
  });

  it("deleting the streaming timeline (after its branches) drops its slot on the source; deleting the tenant removes it", async () => {
    const slot = `pageserver_${timeline}`;
    const state = async (): Promise<unknown> =>
      ((await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`)).json["wal_source"] as { state: string }).state;
    for (let i = 0; (await state()) !== "streaming"; i++) {
      expect(i, "the source streams again after the restart").toBeLessThan(600);
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(await src.psql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots")).toBe(slot);
    const refused = await api("DELETE", `/v1/tenant/${tenant}/timeline/${timeline}`);
    expect(refused.status).toBe(409);
    // Refused before anything stopped: still streaming.
    expect(await state()).toBe("streaming");
    const all = (await api("GET", `/v1/tenant/${tenant}/timeline`)).json as unknown as {
      timeline_id: string;
      ancestor_timeline_id: string | null;
    }[];
    for (const b of all.filter((x) => x.ancestor_timeline_id !== null)) {
      expect((await api("DELETE", `/v1/tenant/${tenant}/timeline/${b.timeline_id}`)).status).toBe(200);
    }
    const del = await api("DELETE", `/v1/tenant/${tenant}/timeline/${timeline}`);
    expect(del.status, JSON.stringify(del.json)).toBe(200);
    expect(del.json).toEqual({ tenant_id: tenant, timeline_id: timeline, wal_source: { slot_dropped: true } });
    expect(await src.psql("SELECT count(*) FROM pg_replication_slots")).toBe("0");
    expect(existsSync(join(workdir, "tenants", tenant, "timelines", timeline))).toBe(false);
    const delTenant = await api("DELETE", `/v1/tenant/${tenant}`);
    expect(delTenant.json).toEqual({ tenant_id: tenant, timelines: [] });
    expect(existsSync(join(workdir, "tenants", tenant))).toBe(false);
  });
});
