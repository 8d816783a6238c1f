/**
 * /metrics as a real Prometheus sees it: an in-process Server on 127.0.0.1, and the
 * `prometheus` binary (/usr/bin/prometheus, from the distribution's package) scraping it every
 * second with its own config and TSDB in a temp dir. Once `up` is 1 for our job, series are
 * read back through Prometheus' query API: page cache counters, and the storage-operation
 * histogram after a checkpoint made over HTTP, the series named as Neon's (scraped gzipped, as
 * Prometheus asks). Prometheus is killed in afterAll.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { clogSet } from "../src/pg/redo/native.js";
import { SlruKind, slruBlockKey } from "../src/pgdata/keys.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { freePort } from "./support/backup_server.js";
import { LogCapture } from "./support/log_check.js";
import { asLsn } from "../src/types/lsn.js";

const PROMETHEUS = "/usr/bin/prometheus";
const JOB = "pageserver";
/** Bounds on the waits for Prometheus: starting, its first scrape, a new sample. */
const WAIT_MS = 60_000;
const POLL_MS = 250;

const logs = new LogCapture();
let dir = "";
let server: Server | null = null;
let prom: ChildProcess | null = null;
let promOutput = "";
let promUrl = "";
let httpBase = "";
const tenantId = generateTenantId();
const timelineId = generateTimelineId();
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query; the vector's samples (Prometheus answers {status, data: {resultType, result}}). */
async function query(q: string): Promise<Sample[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
  const j = (await res.json()) as { status: string; data?: { resultType: string; result: Sample[] }; error?: string };
  expect(j.status, j.error).toBe("success");
  expect(j.data!.resultType).toBe("vector");
  return j.data!.result;
}

/** Poll `q` until `ok` holds for its samples (bounded by WAIT_MS); returns them. */
async function waitFor(q: string, ok: (s: Sample[]) => boolean): Promise<Sample[]> {
  const deadline = Date.now() + WAIT_MS;
  let last: Sample[] | string = "no answer yet";
  // Bounded in time and in polls (a query takes at least a moment).
  for (let i = 0; i < WAIT_MS / POLL_MS && Date.now() < deadline; i++) {
    if (prom !== null && prom.exitCode !== null) throw new Error(`prometheus exited with ${prom.exitCode}: ${promOutput.slice(-4000)}`);
    try {
      const s = await query(q);
      if (ok(s)) return s;
      last = s;
    } catch (e) {
      // Not listening yet (connection refused) or not ready: try again.
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(
    `prometheus query ${q} not satisfied within ${WAIT_MS} ms; last answer: ${JSON.stringify(last)}; prometheus output: ${promOutput.slice(-4000)}`,
  );
}

const sampleValue = (s: Sample): number => Number(s.value[1]);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ps-prom-"));
  server = new Server(loadNodeConfig({ workdir: join(dir, "pageserver"), listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), logs.logger);
  const port = await server.start();
  httpBase = `http://127.0.0.1:${port}`;
  const t = await server.tenants.create(tenantId, { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" });
  const tl = await t.createTimeline({ timelineId, startLsn: asLsn(0x1000) });
  for (let i = 0; i < 50; i++) tl.put(k(i), asLsn(0x1000 + 8 * (i + 1)), imageValue(Buffer.from(`v${i}`)));
  tl.finishWrite(asLsn(0x1000 + 8 * 50));
  await tl.checkpoint();
  // Reads from the flushed L0 file go through the page cache.
  for (let i = 0; i < 50; i++) expect(Buffer.from((await tl.get(k(i), asLsn(0x1000 + 8 * 50)))!).toString()).toBe(`v${i}`);

  const promPort = await freePort();
  promUrl = `http://127.0.0.1:${promPort}`;
  const config = join(dir, "prometheus.yml");
  writeFileSync(
    config,
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      `  - job_name: ${JOB}`,
      "    static_configs:",
      `      - targets: ["127.0.0.1:${port}"]`,
      "",
    ].join("\n"),
  );
  prom = spawn(
    PROMETHEUS,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "tsdb")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      "--log.level=warn",
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const keep = (d: Buffer): void => {
    promOutput = (promOutput + d.toString()).slice(-64 * 1024);
  };
  prom.stdout!.on("data", keep);
  prom.stderr!.on("data", keep);
  await new Promise<void>((resolve, reject) => {
    prom!.once("spawn", () => resolve());
    prom!.once("error", (e) => reject(new Error(`cannot start ${PROMETHEUS} (apt-get install -y prometheus): ${e.message}`)));
  });
});

afterAll(async () => {
  const p = prom;
  if (p !== null && p.exitCode === null && p.signalCode === null) {
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
  }
  if (server !== null) await server.stop();
  rmSync(dir, { recursive: true, force: true });
  logs.expectClean();
});

describe("a real Prometheus scrapes /metrics", () => {
  it("up is 1 for our job", async () => {
    const up = await waitFor(`up{job="${JOB}"}`, (s) => s.length === 1 && sampleValue(s[0]!) === 1);
    expect(up[0]!.metric["instance"]).toBe(new URL(httpBase).host);
  });

  it("page cache counters are stored with their labels", async () => {
    const s = await waitFor(
      'pageserver_page_cache_read_accesses_total{key_kind="immutable"}',
      (x) => x.length === 1 && sampleValue(x[0]!) > 0,
    );
    expect(s[0]!.metric["job"]).toBe(JOB);
    const hits = await query('pageserver_page_cache_read_hits_total{key_kind="immutable"}');
    expect(hits.length).toBe(1);
    expect(sampleValue(hits[0]!)).toBeLessThanOrEqual(sampleValue(s[0]!));
    // A per-timeline gauge carries the ids as labels.
    const lsn = await query(`pageserver_last_record_lsn{tenant_id="${tenantId}",timeline_id="${timelineId}"}`);
    expect(lsn.map(sampleValue)).toEqual([0x1000 + 8 * 50]);
  });

  it("a checkpoint over HTTP shows in pageserver_storage_operations_seconds_global_count", async () => {
    const q = 'pageserver_storage_operations_seconds_global_count{operation="layer flush"}';
    const before = await waitFor(q, (s) => s.length === 1);
    const n0 = sampleValue(before[0]!);
    expect(n0).toBeGreaterThanOrEqual(1);
    const tl = server!.tenants.get(tenantId).getTimeline(timelineId);
    tl.put(k(0), asLsn(0x1000 + 8 * 51), imageValue(Buffer.from("again")));
    tl.finishWrite(asLsn(0x1000 + 8 * 51));
    const res = await fetch(`${httpBase}/v1/tenant/${tenantId}/timeline/${timelineId}/checkpoint`, { method: "PUT" });
    expect(res.status).toBe(200);
    const after = await waitFor(q, (s) => s.length === 1 && sampleValue(s[0]!) >= n0 + 1);
    expect(sampleValue(after[0]!)).toBe(n0 + 1);
    // The buckets are stored too: the +Inf bucket counts every flush.
    const inf = await query('pageserver_storage_operations_seconds_global_bucket{operation="layer flush",le="+Inf"}');
    expect(inf.map(sampleValue)).toEqual([n0 + 1]);
    // Operations that have not run show at 0.
    const gc = await query('pageserver_storage_operations_seconds_global_count{operation="gc"}');
    expect(gc.map(sampleValue)).toEqual([0]);
  });

  it("Neon's names reach Prometheus (scraped gzipped): smgr _global, materialized cache hits, redo, logical and resident size", async () => {
    // Prometheus asks for gzip: the scrapes it stored were gzipped.
    const direct = await fetch(`${httpBase}/metrics`, { headers: { "accept-encoding": "gzip" } });
    expect(direct.headers.get("content-encoding")).toBe("gzip");
    const tl = server!.tenants.get(tenantId).getTimeline(timelineId);
    const key = slruBlockKey(SlruKind.Clog, 0, 0);
    const at = tl.lastRecordLsn;
    tl.put(key, asLsn(at + 8), imageValue(new Uint8Array(8192)));
    tl.put(key, asLsn(at + 16), clogSet(1, [7]));
    tl.finishWrite(asLsn(at + 16));
    await tl.get(key, asLsn(at + 16));
    await tl.get(key, asLsn(at + 16));
    // Timeline info computes the logical size, which the gauge then shows.
    const info = (await (await fetch(`${httpBase}/v1/tenant/${tenantId}/timeline/${timelineId}`)).json()) as Record<string, unknown>;
    expect(typeof info["current_logical_size"]).toBe("number");
    const ids = `tenant_id="${tenantId}",timeline_id="${timelineId}"`;
    await waitFor("pageserver_wal_redo_seconds_count", (x) => x.length === 1 && sampleValue(x[0]!) >= 1);
    await waitFor("pageserver_materialized_cache_hits_total", (x) => x.length === 1 && sampleValue(x[0]!) >= 1);
    const logical = await waitFor(`pageserver_current_logical_size{${ids}}`, (x) => x.length === 1);
    expect(sampleValue(logical[0]!)).toBe(info["current_logical_size"]);
    const resident = await query(`pageserver_resident_physical_size{${ids}}`);
    expect(resident.map(sampleValue)).toEqual([tl.residentBytes()]);
    const smgr = await query('pageserver_smgr_query_seconds_global_count{smgr_query_type="get_page_at_lsn"}');
    expect(smgr.length).toBe(1);
    // The storage operations histogram is exported once, under Neon's name only.
    expect(await query("pageserver_storage_operations_seconds_count")).toEqual([]);
  });

  it("a read that waits for WAL is observed in pageserver_wait_lsn_seconds; one that doesn't wait is not", async () => {
    const tl = server!.tenants.get(tenantId).getTimeline(timelineId);
    const count = async (): Promise<number> => {
      const m = /^pageserver_wait_lsn_seconds_count (\d+)$/m.exec(await (await fetch(`${httpBase}/metrics`)).text());
      expect(m).not.toBeNull();
      return Number(m![1]);
    };
    expect(await count()).toBe(0);
    const last = tl.lastRecordLsn;
    await tl.get(k(1), last);
    expect(await count()).toBe(0);
    // A read one record ahead parks until the record is written.
    const ahead = tl.get(k(60), asLsn(last + 8));
    tl.put(k(60), asLsn(last + 8), imageValue(Buffer.from("late")));
    tl.finishWrite(asLsn(last + 8));
    expect(Buffer.from((await ahead)!).toString()).toBe("late");
    expect(await count()).toBe(1);
  });
});
