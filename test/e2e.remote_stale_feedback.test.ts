/**
 * A stale node stops feeding the source's slot (issue 16, item 3; RFC 025). Two pageservers,
 * one bucket, one PostgreSQL 15 source: A streams a timeline and reports its
 * remote_consistent_lsn as the slot's flush position, but only once a generation check
 * confirmed it (generation_check_interval_ms). B attaches the tenant in generation 2 (A is not
 * told). A streams and uploads on; before it reports the new position it checks, finds
 * generation 2: its tenant goes Broken ("superseded"), its stream stops, and the slot's
 * restart_lsn never passed the position B started from.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { parseTenantId, parseTimelineId } from "../src/types/ids.js";
import { asLsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4 };
const CHECK_INTERVAL_MS = 500;
const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
let dir: string;
let src: PgInstance;
let a: Server;
let b: Server;

async function call(s: Server, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`http://127.0.0.1:${s.port}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
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

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  dir = mkdtempSync(join(tmpdir(), "ps-stale-feedback-"));
  const root = join(dir, "bucket");
  mkdirSync(root);
  const remote = `file://${root}?generation_check_interval_ms=${CHECK_INTERVAL_MS}`;
  a = new Server(
    loadNodeConfig({ workdir: join(dir, "a"), listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: remote }),
    logs.logger,
  );
  await a.start();
  b = new Server(
    loadNodeConfig({ workdir: join(dir, "b"), listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: remote }),
    logs.logger,
  );
  await b.start();
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await src?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  logs.expectClean([/tenant is broken/, /a newer generation holds the tenant/, /upload queue stopped/, /flush for the source failed/]);
});

describe("stale node and the source's slot", { timeout: 600_000 }, () => {
  it("after B attaches in generation 2, A's flush position never passes B's start and A goes Broken (superseded)", async () => {
    await src.psql("CREATE TABLE t (i int, pad text); INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series(1, 3000) g");
    const tenant = String((await call(a, "POST", "/v1/tenant", {})).json["id"]);
    const created = await call(a, "POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    const timeline = String(created.json["timeline_id"]);
    const slotRestart = async (): Promise<number> => {
      const v = await src.psql(`SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pageserver_${timeline}'`);
      return v === "" ? 0 : parseLsn(v);
    };
    const info = async (): Promise<Record<string, unknown>> => (await call(a, "GET", `/v1/tenant/${tenant}/timeline/${timeline}`)).json;

    // A streams, uploads, and (after a generation check) reports its position to the slot.
    await src.psql("INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series(3001, 6000) g");
    const end1 = parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
    await waitFor("A ingests", async () => (parseLsn(String((await info())["last_record_lsn"])) >= end1 ? true : null));
    expect((await call(a, "PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
    const rcl1 = await waitFor("A's uploads", async () => {
      const j = await info();
      return j["remote_consistent_lsn"] !== null && j["remote_consistent_lsn"] === j["disk_consistent_lsn"]
        ? parseLsn(String(j["remote_consistent_lsn"]))
        : null;
    });
    await waitFor("the slot follows A's confirmed position", async () => ((await slotRestart()) >= rcl1 ? true : null));

    // B takes the tenant in generation 2; nobody tells A.
    const attached = await call(b, "POST", `/v1/tenant/${tenant}/attach`, { generation: 2 });
    expect(attached.status, JSON.stringify(attached.json)).toBe(201);
    const bStart = b.tenants.get(parseTenantId(tenant)).getTimeline(parseTimelineId(timeline)).diskConsistentLsn;

    // A streams on and would upload a newer position.
    await src.psql("INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series(6001, 12000) g");
    const end2 = parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
    await waitFor("A ingests more", async () => {
      const j = await call(a, "GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
      return j.status !== 200 || parseLsn(String(j.json["last_record_lsn"])) >= end2 ? true : null;
    });
    await call(a, "PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`);
    const broken = await waitFor("A's tenant superseded", async () => {
      const j = (await call(a, "GET", `/v1/tenant/${tenant}`)).json;
      return j["state"] === "Broken" ? j : null;
    });
    expect(String(broken["broken_reason"])).toContain("superseded");
    // A's stream is gone from the slot, and the slot never moved past where B started.
    await waitFor("A's stream stopped", async () =>
      (await src.psql(`SELECT active FROM pg_replication_slots WHERE slot_name = 'pageserver_${timeline}'`)) === "f" ? true : null,
    );
    const restart = await slotRestart();
    expect(restart, `slot restart_lsn ${lsnToString(asLsn(restart))} vs B's start ${lsnToString(bStart)}`).toBeLessThanOrEqual(bStart);
  });
});
