/**
 * WAL sources over the HTTP API with real PostgreSQL 15 (issue 7, items 2, 3, 5):
 * - a bad `PUT …/wal_source` (unreachable, another system, malformed) is a 4xx and the
 *   working stream goes on untouched, its slot still active on the source;
 * - switching to a standby of the same system is atomic and drops the old slot;
 * - `DELETE …/wal_source` says whether the slot was dropped (and WARNs when it wasn't);
 * - a source that goes away shows "retrying" with its error and the next attempt's time,
 *   also after a pageserver restart, and streams again when it is back;
 * - concurrent PUTs of wal_source (issue 16, item 2): all 200, exactly one source running
 *   afterwards, the last one (also in wal_source.json), and after DELETE no replication
 *   connection or slot of ours comes back (no source left running that nothing references);
 * - every log line about a timeline carries tenant_id and timeline_id, each once.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { parseLsn } from "../src/types/lsn.js";
import { TestEnv } from "./support/env.js";
import { PgInstance } from "./support/postgres.js";
import { Standby } from "./support/standby.js";

const SOURCE_CONF = {
  wal_level: "replica",
  max_wal_senders: 6,
  max_replication_slots: 6,
  hot_standby: "on",
};

const env = new TestEnv(fileURLToPath(import.meta.url));
let src: PgInstance;
let other: PgInstance;
let server: Server | null = null;
let workdir: string;
let base: string;
let tenant: string;
let timeline: string;
const logFile = (): string => join(workdir, "pageserver.log");

async function startServer(): Promise<void> {
  const log = pino({ level: "info" }, pino.destination({ dest: logFile(), sync: true, append: true }));
  server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), log);
  base = `http://127.0.0.1:${await server.start()}`;
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

type SourceStatus = { connstr: string; state: string; last_error: string | null; next_retry_at: string | null };
async function sourceStatus(): Promise<SourceStatus> {
  const r = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
  return r.json["wal_source"] as SourceStatus;
}

async function waitFor<T>(what: string, fn: () => Promise<T | null>, timeout_ms = 60_000): Promise<T> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

const waitState = (state: string): Promise<SourceStatus> =>
  waitFor(`wal_source state ${state}`, async () => {
    const s = await sourceStatus();
    return s.state === state ? s : null;
  });

/** Write to the source and wait until the timeline has ingested past it. */
async function writeAndIngest(n: number): Promise<void> {
  await src.psql(`INSERT INTO t SELECT g FROM generate_series(1, ${n}) g`);
  const lsn = parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
  await waitFor("ingest past the write", async () => {
    const r = await api("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    return parseLsn(String(r.json["last_record_lsn"])) >= lsn - 8192 ? true : null;
  });
}

const walsendersOf = async (tl: string): Promise<number> =>
  Number(await src.psql(`SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pageserver_${tl}'`));
const slotsOf = async (tl: string): Promise<number> =>
  Number(await src.psql(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pageserver_${tl}'`));

async function slotsOn(pg: PgInstance): Promise<string> {
  return pg.psql("SELECT coalesce(string_agg(slot_name || ':' || active, ',' ORDER BY slot_name), '') FROM pg_replication_slots");
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  other = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  workdir = mkdtempSync(join(tmpdir(), "ps-e2e-ws-"));
  env.add("pageserver.log", logFile());
  await startServer();
  await src.psql("CREATE TABLE t (x int)");
  tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
  const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  timeline = String(created.json["timeline_id"]);
  await waitState("streaming");
});

afterAll(async () => {
  await server?.stop();
  await src?.destroy();
  await other?.destroy();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

describe("WAL sources", { timeout: 300_000 }, () => {
  it("a bad PUT wal_source is a 4xx and the working stream goes on untouched", async () => {
    await writeAndIngest(100);
    const before = await sourceStatus();
    const slot = `pageserver_${timeline}`;
    expect(await slotsOn(src)).toBe(`${slot}:true`);

    const put = (connstr: unknown) => api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`, { connstr });
    const unreachable = await put("postgresql://nobody@127.0.0.1:1/x");
    expect(unreachable.status).toBe(422);
    expect(unreachable.json["code"]).toBe("source_unavailable");
    expect(String(unreachable.json["error"])).toMatch(/cannot connect to the WAL source/);

    const otherSystem = await put(other.connectionString());
    expect(otherSystem.status).toBe(409);
    expect(String(otherSystem.json["error"])).toMatch(/system identifier \d+ differs from this timeline's \d+/);

    expect((await put("ftp://x")).status).toBe(400);

    // Nothing changed: same source, streaming, its slot active, and it keeps ingesting.
    const after = await sourceStatus();
    expect(after.connstr).toBe(before.connstr);
    expect(after.state).toBe("streaming");
    expect(await slotsOn(src)).toBe(`${slot}:true`);
    expect(await slotsOn(other)).toBe("");
    await writeAndIngest(100);
  });

  it("switching to a standby of the same system drops the old slot; DELETE says whether the slot was dropped", async () => {
    const sb = await Standby.create(src, { slot: "standby_slot" });
    try {
      await sb.start();
      const slot = `pageserver_${timeline}`;
      const put = await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`, { connstr: sb.connectionString() });
      expect(put.status, JSON.stringify(put.json)).toBe(200);
      expect(put.json["old_slot"]).toEqual({ slot_dropped: true });
      expect(await slotsOn(src)).toBe("standby_slot:true");
      await waitState("streaming");
      await writeAndIngest(200);

      // The standby goes away: the slot on it can't be dropped, and the reply says so.
      await sb.stop();
      const del = await api("DELETE", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`);
      expect(del.status).toBe(200);
      expect(del.json["removed"]).toBe(true);
      expect(del.json["slot_dropped"]).toBe(false);
      expect(String(del.json["slot_error"])).not.toBe("");
      const warned = readFileSync(logFile(), "utf8")
        .split("\n")
        .filter((l) => l.includes("could not drop the source's replication slot"));
      expect(warned.length).toBeGreaterThan(0);
      expect(JSON.parse(warned[0]!).level).toBe(40);
      expect(await sourceStatus()).toBeNull();
      expect(slot).toMatch(/^pageserver_/);
    } finally {
      await sb.destroy();
    }

    // Back to the primary: a new slot there, streaming again; DELETE drops it for real.
    const put = await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`, { connstr: src.connectionString() });
    expect(put.status, JSON.stringify(put.json)).toBe(200);
    await waitState("streaming");
    const del = await api("DELETE", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`);
    expect(del.json).toEqual({ removed: true, slot_dropped: true });
    expect(await slotsOn(src)).toBe("");
  });

  it("a source that goes away shows retrying with its error and next retry time, also after a restart, and streams again", async () => {
    // The slot was dropped above: this source starts from a new slot at the current WAL.
    const put = await api("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/wal_source`, { connstr: src.connectionString() });
    expect(put.status, JSON.stringify(put.json)).toBe(200);
    await waitState("streaming");
    await writeAndIngest(50);

    await src.run("pg_ctl", ["-D", src.dataDir, "-m", "immediate", "-w", "-t", "30", "stop"]);
    const down = await waitState("retrying");
    expect(down.last_error).not.toBeNull();
    expect(Number.isNaN(Date.parse(String(down.next_retry_at)))).toBe(false);

    // A restart while the source is down: the source retries instead of failing for good.
    await server!.stop();
    server = null;
    await startServer();
    const downAgain = await waitState("retrying");
    expect(downAgain.last_error).toMatch(/connect/i);
    expect(Number.isNaN(Date.parse(String(downAgain.next_retry_at)))).toBe(false);

    await src.restart();
    await waitState("streaming");
    await writeAndIngest(50);
  });

  it("concurrent PUTs of wal_source: all 200, one source running (the last), none left after DELETE", async () => {
    const tl = timeline;
    await waitState("streaming");
    const WRITERS = 4;
    const ROUNDS = 3;
    // One server, several spellings of it (a physical walsender ignores dbname): the one
    // that stays is visible in the status.
    const spell = (round: number, w: number): string => src.connectionString(`r${round}w${w}`);
    for (let round = 0; round < ROUNDS; round++) {
      const arrived: string[] = [];
      const replies = await Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
          const r = await api("PUT", `/v1/tenant/${tenant}/timeline/${tl}/wal_source`, { connstr: spell(round, w) });
          arrived.push(spell(round, w));
          return r;
        }),
      );
      for (const r of replies) expect(r.status, JSON.stringify(r.json)).toBe(200);
      const s = await waitState("streaming");
      expect(s.connstr).toBe(arrived[arrived.length - 1]);
      const onDisk = JSON.parse(readFileSync(join(workdir, "tenants", tenant, "timelines", tl, "wal_source.json"), "utf8")) as {
        connstr: string;
      };
      expect(onDisk.connstr).toBe(s.connstr);
      expect(await walsendersOf(tl)).toBe(1);
    }
    const del = await api("DELETE", `/v1/tenant/${tenant}/timeline/${tl}/wal_source`);
    expect(del.status, JSON.stringify(del.json)).toBe(200);
    expect(del.json["slot_dropped"], JSON.stringify(del.json)).toBe(true);
    // A source nothing references would reconnect within its backoff (100 ms, doubling) and
    // create the slot again: watch for a while that nothing of ours comes back.
    for (let i = 0; i < 30; i++) {
      expect(await walsendersOf(tl)).toBe(0);
      expect(await slotsOf(tl)).toBe(0);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it("log lines about a timeline carry tenant_id and timeline_id, each once", () => {
    const lines = readFileSync(logFile(), "utf8")
      .split("\n")
      .filter((l) => l.length > 0);
    let aboutTimeline = 0;
    for (const line of lines) {
      const tl = line.split('"timeline_id":').length - 1;
      const tn = line.split('"tenant_id":').length - 1;
      expect(tl, line).toBeLessThanOrEqual(1);
      expect(tn, line).toBeLessThanOrEqual(1);
      if (tl === 1) {
        aboutTimeline++;
        expect(tn, line).toBe(1);
      }
    }
    // The walreceiver's lines are among them.
    expect(lines.some((l) => l.includes('"msg":"streaming WAL"') && l.includes(`"tenant_id":"${tenant}"`))).toBe(true);
    expect(aboutTimeline).toBeGreaterThan(5);
  });
});
