/**
 * A base backup read slowly while its layers change under it (issue 16 item 13), step by step
 * with no timing luck: a real PostgreSQL 15 source streams into a timeline on a node with
 * remote storage (LocalFs) and `max_local_disk_bytes` of 1 (every uploaded layer that may go,
 * goes). The newest versions of the table's pages are still in the in-memory layer when the
 * backup starts at X. After its first chunk, between two reads of the stream:
 *   - a checkpoint flushes the in-memory layer into a new L0 file (it did not exist when the
 *     backup started), which is uploaded and then evicted by an eviction round called directly;
 *   - a compaction replaces the L0 files by L1 files, uploaded, another eviction round;
 *   - GC is asked for a cutoff above X.
 * The rest of the stream then reads every page: the backup must complete, and a stock
 * PostgreSQL started from it has exactly the source's rows as of X. (Before the fix the
 * backup pinned only the layers present at its start: the flushed L0 was evicted and the
 * stream failed with LayerEvictedError, as the e2e eviction test saw under load; GC moved
 * the cutoff above X and the stream failed with a GC cutoff error.)
 * Also: the LayerEvictedError a synchronous read gets names the layer and holds no live
 * object, and its log line through the node's logger stays small.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LayerEvictedError } from "../src/layers/historic_layer.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { basebackupTar } from "../src/pgdata/basebackup.js";
import { relBlockKey } from "../src/pgdata/keys.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { generateTenantId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { asLsn, parseLsn } from "../src/types/lsn.js";
import { BackupServer } from "./support/backup_server.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";
import { WAIT_BOUND_MS, within } from "./support/within.js";

// No autovacuum: its WAL would arrive at any time.
const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4, autovacuum: "off" };
const FIGURES = "SELECT count(*) || ',' || sum(i) || ',' || count(*) FILTER (WHERE v LIKE 'second%') FROM t";
// Nothing flushes, compacts or collects on its own: the test does each step.
const QUIET = {
  compaction_period: 0,
  gc_period: 0,
  checkpoint_timeout: "1d",
  checkpoint_distance: 256 * 1024 * 1024,
  compaction_threshold: 2,
  image_creation_threshold: 100,
};

const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
const dirs: string[] = [];
let src: PgInstance;
let ps: Server;
let backup: BackupServer | null = null;

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`http://127.0.0.1:${ps.port}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function sourceLsn(): Promise<number> {
  return parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
}

async function waitIngested(tl: Timeline, lsn: number): Promise<void> {
  const deadline = Date.now() + WAIT_BOUND_MS;
  while (tl.lastRecordLsn < lsn) {
    if (Date.now() > deadline) throw new Error(`ingest did not reach ${lsn}: at ${tl.lastRecordLsn}`);
    await sleep(50);
  }
}

/** Flush what is in memory, wait for the uploads, and run one eviction round. */
async function checkpointUploadEvict(tl: Timeline): Promise<void> {
  await within(tl.checkpoint(), "checkpoint");
  await within(ps.remote!.whenConnected(), "remote connect");
  await ps.remote!.clientOf(tl)!.waitUploaded({ signal: AbortSignal.timeout(WAIT_BOUND_MS) });
  await ps.eviction!.round();
}

/**
 * Eviction rounds until no layer of `tl` is resident: a download ingest started (its lookups
 * meet evicted layers) may land just after a round. Bounded.
 */
async function evictAll(tl: Timeline): Promise<void> {
  const deadline = Date.now() + WAIT_BOUND_MS;
  for (;;) {
    await ps.eviction!.round();
    if (tl.residentBytes() === 0) return;
    if (Date.now() > deadline) throw new Error(`still ${tl.residentBytes()} bytes resident after eviction rounds`);
    await sleep(100);
  }
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  const bucket = mkdtempSync(join(tmpdir(), "ps-bbevict-bucket-"));
  const workdir = mkdtempSync(join(tmpdir(), "ps-bbevict-"));
  dirs.push(bucket, workdir);
  ps = new Server(
    loadNodeConfig({
      workdir,
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      remote_storage: `file://${bucket}`,
      max_local_disk_bytes: 1,
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

describe("a base backup while its layers are flushed, compacted, evicted and collected", { timeout: 300_000 }, () => {
  let tl: Timeline;
  let x = 0;

  it("completes, and a stock PostgreSQL started from it has the source's rows at its LSN", async () => {
    await src.psql(
      "CREATE TABLE t (i int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'first ' || g || repeat('x', 100) FROM generate_series(1, 20000) g",
    );
    const tenantId = generateTenantId();
    await ps.tenants.create(tenantId, QUIET);
    const created = await api("POST", `/v1/tenant/${tenantId}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    tl = ps.tenants.get(tenantId).getTimeline(String(created.json["timeline_id"]) as TimelineId);
    await waitIngested(tl, await sourceLsn());
    // Everything so far in layer files, uploaded, and evicted (the limit is 1 byte).
    await checkpointUploadEvict(tl);
    await evictAll(tl);
    expect(tl.evictedLayerNames().length).toBeGreaterThan(0);

    // Every page of t gets a newer version, held only in memory when the backup starts.
    await src.psql("UPDATE t SET v = 'second ' || i");
    x = await sourceLsn();
    await waitIngested(tl, x);
    const expected = await src.psql(FIGURES);
    expect(expected).toBe("20000,200010000,20000");
    // Ingest's lookups downloaded layers again: evict them, so the backup starts with none here.
    await evictAll(tl);
    const downloadsBefore = ps.remote!.ondemand.downloads;

    const stream = (await basebackupTar(tl, asLsn(x)))[Symbol.asyncIterator]();
    const first = await stream.next();
    expect(first.done).toBe(false);
    // The start downloaded what a read at X may visit, and leased X.
    expect(ps.remote!.ondemand.downloads).toBeGreaterThan(downloadsBefore);
    expect(tl.readLeaseCount).toBe(1);

    // 1. The in-memory layer becomes an L0 file the backup has not seen; eviction runs.
    await src.psql("INSERT INTO t VALUES (30000, 'after the backup LSN')");
    await waitIngested(tl, await sourceLsn());
    const layersBefore = new Set(tl.layerMap.layers.map((l) => l.desc.fileName));
    await checkpointUploadEvict(tl);
    const flushed = tl.layerMap.layers.filter((l) => !layersBefore.has(l.desc.fileName) && l.desc.lsnRange.start <= x);
    expect(flushed.length).toBe(1);
    expect(flushed[0]!.resident).toBe(true);
    // 2. Compaction replaces the L0 files by L1 files; uploaded; eviction runs again.
    const compacted = await within(ps.tenants.get(tenantId).compact({ timeline: tl }), "compaction");
    expect(compacted.l0Compacted).toBeGreaterThanOrEqual(1);
    await checkpointUploadEvict(tl);
    // Every layer a read at X may visit is here; the rest may go.
    for (const l of tl.layerMap.layers) if (l.desc.lsnRange.start <= x) expect(l.resident, l.desc.fileName).toBe(true);
    // 3. GC asked for a cutoff above X keeps it at X at most.
    await within(ps.tenants.get(tenantId).gc({ timeline: tl, cutoffLsn: tl.lastRecordLsn }), "gc");
    expect(tl.latestGcCutoffLsn).toBeLessThanOrEqual(x);

    // The rest of the stream reads every page.
    async function* rest(): AsyncGenerator<Uint8Array> {
      yield first.value as Uint8Array;
      for (let r = await stream.next(); r.done !== true; r = await stream.next()) yield r.value;
    }
    backup = new BackupServer();
    env.add("backup.log", backup.log);
    await within(backup.untar(rest()), "the rest of the base backup");
    expect(tl.readLeaseCount).toBe(0);
    await backup.start();
    expect(await backup.psql(FIGURES)).toBe(expected);
    expect(await backup.psql("SELECT count(*) FROM t WHERE i = 30000")).toBe("0");

    // The lease is gone: the same round now evicts what the backup kept.
    await evictAll(tl);
  });

  it("a synchronous read of an evicted layer: the error names the layer, holds no live object, and its log line is small", async () => {
    // Block 0 of t at X: its version is in an evicted layer (the backup kept its pages out of the materialized cache).
    const dbnode = Number(await src.psql("SELECT oid FROM pg_database WHERE datname = 'postgres'"));
    const relnode = Number(await src.psql("SELECT pg_relation_filenode('t')"));
    await evictAll(tl);
    let caught: unknown = null;
    try {
      tl.getNow(relBlockKey({ spcnode: 1663, dbnode, relnode, forknum: 0 }, 0), asLsn(x));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(LayerEvictedError);
    const e = caught as LayerEvictedError;
    expect(tl.evictedLayerNames()).toContain(e.layer_name);
    expect(e.timeline_dir).toBe(tl.dir);
    // Only strings and numbers on the error itself: nothing that reaches the cache.
    for (const [k, v] of Object.entries(e)) expect(["string", "number", "boolean"], k).toContain(typeof v);
    ps.log.info({ err: e, tenant_id: tl.tenantId as TenantId }, "probe: a logged eviction error");
    const [line] = logs.find(/probe: a logged eviction error/);
    expect(line).toBeDefined();
    const text = JSON.stringify(line!.raw);
    expect(text.length).toBeLessThan(4096);
    expect((line!.raw["err"] as Record<string, unknown>)["layer_name"]).toBe(e.layer_name);
    expect(text).not.toMatch(/not stringified|"cache"/);
  });

  it("a stream handed out but never read (its HTTP client left first) gives its lease back; read later, it leases again", async () => {
    // Fake timers only for the lease's own timer (the node's loops pause meanwhile).
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    let tar: AsyncIterable<Uint8Array>;
    try {
      tar = await basebackupTar(tl, asLsn(x));
      expect(tl.readLeaseCount).toBe(1);
      vi.advanceTimersByTime(60_000);
      expect(tl.readLeaseCount).toBe(0);
    } finally {
      vi.useRealTimers();
    }
    let bytes = 0;
    let leasedWhileReading = 0;
    for await (const chunk of tar) {
      bytes += chunk.length;
      leasedWhileReading = Math.max(leasedWhileReading, tl.readLeaseCount);
    }
    expect(bytes).toBeGreaterThan(1024 * 1024);
    expect(leasedWhileReading).toBe(1);
    expect(tl.readLeaseCount).toBe(0);
  });
});
