/**
 * Metric series of deleted tenants and timelines go (src/main/metrics.ts PruningRegistry):
 * an in-process Server, tenants and timelines created, scraped, deleted, scraped again: no
 * series names a deleted tenant or timeline, whoever registered the metric (a counter of the
 * node's, a remote-storage counter, the page service's throttle counter); a live timeline's
 * series stay. With listen_metrics, /metrics is served on its own listener only. A client
 * that accepts gzip gets the scrape gzipped. The series named as Neon's (renamed, new) are
 * there; with metrics_per_timeline false the per-timeline families are per node only.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type IncomingHttpHeaders, get as httpGet } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { Counter } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { acceptsGzip } from "../src/main/metrics.js";
import { clogSet } from "../src/pg/redo/native.js";
import { SlruKind, slruBlockKey } from "../src/pgdata/keys.js";
import { generateTenantId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { asLsn } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";

const logs = new LogCapture();
let dir = "";
let server: Server;
let base = "";

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

async function scrape(): Promise<string[]> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ps-metrics-series-"));
  server = new Server(
    loadNodeConfig({
      workdir: join(dir, "work"),
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      remote_storage: `file://${join(dir, "bucket")}`,
      tenant_config: { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" },
    }),
    logs.logger,
  );
  base = `http://127.0.0.1:${await server.start()}`;
});

afterAll(async () => {
  await server?.stop();
  logs.expectClean([]);
  rmSync(dir, { recursive: true, force: true });
});

describe("series of deleted tenants and timelines", () => {
  it("20 create/scrape/delete cycles leave no series behind; a deleted timeline's series go, its sibling's stay", async () => {
    // A metric registered by another part (as the page service registers its throttle counter).
    const throttled = server.metrics.getSingleMetric("pageserver_tenant_throttled_seconds_total") as Counter<string>;
    expect(throttled).toBeDefined();
    const gone: string[] = [];
    for (let i = 0; i < 20; i++) {
      const tenant = generateTenantId();
      expect((await call("POST", "/v1/tenant", { new_tenant_id: tenant })).status).toBe(201);
      const tl = await call("POST", `/v1/tenant/${tenant}/timeline`, { start_lsn: "0/1000000" });
      expect(tl.status).toBe(201);
      throttled.inc({ tenant_id: tenant }, 0.5);
      const during = await scrape();
      expect(during.filter((l) => l.includes(tenant)).length, "the tenant's series while it exists").toBeGreaterThan(10);
      expect((await call("DELETE", `/v1/tenant/${tenant}`)).status).toBe(200);
      gone.push(tenant);
    }
    const after = await scrape();
    const stale = after.filter((l) => gone.some((t) => l.includes(t)));
    expect(stale, stale.slice(0, 5).join("\n")).toEqual([]);

    // A timeline deleted from a live tenant: its series go, the sibling's stay.
    const tenant = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tenant })).status).toBe(201);
    const keep = String((await call("POST", `/v1/tenant/${tenant}/timeline`, { start_lsn: "0/1000000" })).json["timeline_id"]);
    const drop = String((await call("POST", `/v1/tenant/${tenant}/timeline`, { start_lsn: "0/1000000" })).json["timeline_id"]);
    expect((await scrape()).filter((l) => l.includes(drop)).length).toBeGreaterThan(5);
    expect((await call("DELETE", `/v1/tenant/${tenant}/timeline/${drop}`)).status).toBe(200);
    const later = await scrape();
    expect(later.filter((l) => l.includes(drop))).toEqual([]);
    const kept = later.filter((l) => l.includes(keep));
    expect(kept.length).toBeGreaterThan(5);
    expect(kept.some((l) => l.startsWith("pageserver_wal_ingest_stalled_seconds_total{"))).toBe(true);
  });
});

describe("listen_metrics", () => {
  it("serves /metrics on its own address, and not on the API's", async () => {
    const work = mkdtempSync(join(tmpdir(), "ps-metrics-listen-"));
    const s = new Server(
      loadNodeConfig({ workdir: work, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", listen_metrics: "127.0.0.1:0" }),
      logs.logger,
    );
    try {
      const api = `http://127.0.0.1:${await s.start()}`;
      expect(s.metricsPort).toBeGreaterThan(0);
      const m = await fetch(`http://127.0.0.1:${s.metricsPort}/metrics`);
      expect(m.status).toBe(200);
      expect(await m.text()).toContain("pageserver_page_cache_size_max_bytes");
      expect((await fetch(`http://127.0.0.1:${s.metricsPort}/v1/status`)).status).toBe(404);
      expect((await fetch(`${api}/metrics`)).status).toBe(404);
      expect((await fetch(`${api}/v1/status`)).status).toBe(200);
    } finally {
      await s.stop();
      rmSync(work, { recursive: true, force: true });
    }
  });
});

/** GET `url` with node:http (fetch would ask for gzip and decode it itself): status, headers, raw body. */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

/** promtool's lint of a scrape: exit status and what it said. */
function promtoolCheck(text: string): { status: number | null; out: string } {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 20_000 });
  expect(r.error, "promtool must be installed (apt-get install -y prometheus)").toBeUndefined();
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Sample lines of `family` (exactly that name, any labels). */
const samplesOf = (lines: string[], family: string): string[] =>
  lines.filter((l) => l.startsWith(`${family}{`) || l.startsWith(`${family} `));
const sampleValue = (line: string): number => Number(line.slice(line.lastIndexOf(" ") + 1));

describe("gzip", () => {
  it("a scrape that accepts gzip is gzipped (content-encoding), the same text; one that doesn't is plain", async () => {
    const gz = await rawGet(`${base}/metrics`, { "accept-encoding": "gzip" });
    expect(gz.status).toBe(200);
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gz.headers["content-type"]).toMatch(/^text\/plain/);
    const text = gunzipSync(gz.body).toString("utf8");
    expect(text.length).toBeGreaterThan(gz.body.length * 3);
    expect(text).toContain("# TYPE pageserver_page_cache_size_max_bytes gauge");
    expect(promtoolCheck(text).status).toBe(0);

    const plain = await rawGet(`${base}/metrics`, {});
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expect(plain.body.toString("utf8")).toContain("# TYPE pageserver_page_cache_size_max_bytes gauge");
    // q=0 refuses a coding.
    const refused = await rawGet(`${base}/metrics`, { "accept-encoding": "gzip;q=0, identity" });
    expect(refused.headers["content-encoding"]).toBeUndefined();
    expect(acceptsGzip("deflate, gzip;q=0.5")).toBe(true);
    expect(acceptsGzip("*")).toBe(true);
    expect(acceptsGzip("br")).toBe(false);
    expect(acceptsGzip(undefined)).toBe(false);
  });
});

describe("series Neon's dashboards look for", () => {
  it("renamed and new series: smgr _global, storage operations once, materialized cache hits, redo, logical and resident size", async () => {
    const tenant = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tenant })).status).toBe(201);
    const created = await call("POST", `/v1/tenant/${tenant}/timeline`, { start_lsn: "0/1000000" });
    expect(created.status).toBe(201);
    const timeline = String(created.json["timeline_id"]);
    const tl = server.tenants.get(tenant as TenantId).getTimeline(timeline as TimelineId);
    // A CLOG page and a record on it: a read applies it (a redo), a second read of the same
    // LSN starts from the materialized page.
    const key = slruBlockKey(SlruKind.Clog, 0, 0);
    const start = tl.lastRecordLsn;
    tl.put(key, asLsn(start + 8), imageValue(new Uint8Array(8192)));
    tl.put(key, asLsn(start + 16), clogSet(1, [5]));
    tl.finishWrite(asLsn(start + 16));
    await tl.get(key, asLsn(start + 16));
    await tl.get(key, asLsn(start + 16));
    await tl.checkpoint();

    const lines = await scrape();
    const l = `tenant_id="${tenant}",timeline_id="${timeline}"`;
    expect(samplesOf(lines, "pageserver_wal_redo_seconds_count").map(sampleValue)).toEqual([1]);
    expect(samplesOf(lines, "pageserver_materialized_cache_hits_total").map(sampleValue)[0]).toBeGreaterThanOrEqual(1);
    expect(samplesOf(lines, "pageserver_materialized_page_hits_total")).toEqual([]);
    // The storage operations histogram once, under Neon's name.
    expect(lines.some((x) => x.startsWith('pageserver_storage_operations_seconds_global_count{operation="layer flush"} '))).toBe(true);
    expect(lines.filter((x) => x.startsWith("pageserver_storage_operations_seconds_"))).toEqual(
      lines.filter((x) => x.startsWith("pageserver_storage_operations_seconds_global_")),
    );
    expect(lines.some((x) => x.startsWith('pageserver_smgr_query_seconds_global_count{smgr_query_type="get_page_at_lsn"} '))).toBe(true);
    expect(lines.some((x) => x.startsWith("pageserver_smgr_query_seconds_count"))).toBe(false);
    // Resident size: the timeline's layer files (the L0 file just flushed).
    const resident = lines.find((x) => x.startsWith(`pageserver_resident_physical_size{${l}} `));
    expect(resident).toBeDefined();
    expect(sampleValue(resident!)).toBe(tl.residentBytes());
    expect(sampleValue(resident!)).toBeGreaterThan(0);
    // Logical size: as timeline info last computed it (the creation's answer: 0, no relations).
    const logical = lines.find((x) => x.startsWith(`pageserver_current_logical_size{${l}} `));
    expect(logical).toBeDefined();
    expect(sampleValue(logical!)).toBe(created.json["current_logical_size"]);
    expect(promtoolCheck(`${await (await fetch(`${base}/metrics`)).text()}`).status).toBe(0);
    // The per-timeline families (rendered by the registry itself) serve prom-client's JSON too.
    const json = await server.metrics.getMetricsAsJSON();
    const layers = json.find((m) => m.name === "pageserver_layers");
    expect(layers?.type).toBe("gauge");
    expect(layers?.values).toContainEqual({ labels: { tenant_id: tenant, timeline_id: timeline, level: "l0", kind: "delta" }, value: 1 });
    expect((await call("DELETE", `/v1/tenant/${tenant}`)).status).toBe(200);
  });
});

describe("metrics_per_timeline false", () => {
  it("is read from pageserver.json, a flag overrides it, and a non-boolean is refused naming the key", () => {
    const work = mkdtempSync(join(tmpdir(), "ps-metrics-conf-"));
    try {
      expect(loadNodeConfig({ workdir: work }).metrics_per_timeline).toBe(true);
      writeFileSync(join(work, "pageserver.json"), JSON.stringify({ metrics_per_timeline: false }));
      expect(loadNodeConfig({ workdir: work }).metrics_per_timeline).toBe(false);
      expect(loadNodeConfig({ workdir: work, metrics_per_timeline: true }).metrics_per_timeline).toBe(true);
      writeFileSync(join(work, "pageserver.json"), JSON.stringify({ metrics_per_timeline: "no" }));
      expect(() => loadNodeConfig({ workdir: work })).toThrow(/metrics_per_timeline/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("the per-timeline families have per-node series only: sums, maxima, no LSNs; promtool accepts the scrape", async () => {
    const work = mkdtempSync(join(tmpdir(), "ps-metrics-pernode-"));
    const s = new Server(
      loadNodeConfig({
        workdir: work,
        listen: "127.0.0.1:0",
        listen_pg: "127.0.0.1:0",
        remote_storage: `file://${join(work, "bucket")}`,
        metrics_per_timeline: false,
        tenant_config: { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" },
      }),
      logs.logger,
    );
    try {
      const api = `http://127.0.0.1:${await s.start()}`;
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const t = await s.tenants.create(undefined, { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" });
        const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
        ids.push(t.id);
        tl.put(makeKey(0, 1663, 5, 16384, 0, 1), asLsn(0x1008), imageValue(new Uint8Array(100)));
        tl.finishWrite(asLsn(0x1008));
        await tl.checkpoint();
        // Unflushed WAL of 8 × (i + 1) bytes.
        tl.put(makeKey(0, 1663, 5, 16384, 0, 2), asLsn(0x1008 + 8 * (i + 1)), imageValue(new Uint8Array(100)));
        tl.finishWrite(asLsn(0x1008 + 8 * (i + 1)));
      }
      const text = await (await fetch(`${api}/metrics`)).text();
      const lines = text.split("\n").filter((x) => x !== "" && !x.startsWith("#"));
      expect(lines.filter((x) => x.includes("timeline_id=")).slice(0, 5)).toEqual([]);
      for (const id of ids) expect(text).not.toContain(id);
      // Sums: three L0 files; maxima: the largest unflushed WAL; no LSN series.
      expect(samplesOf(lines, "pageserver_layers").find((x) => x.startsWith('pageserver_layers{level="l0",kind="delta"} '))).toBe(
        'pageserver_layers{level="l0",kind="delta"} 3',
      );
      expect(samplesOf(lines, "pageserver_flush_lag_bytes")).toEqual(["pageserver_flush_lag_bytes 24"]);
      expect(samplesOf(lines, "pageserver_last_record_lsn")).toEqual([]);
      expect(samplesOf(lines, "pageserver_projected_remote_consistent_lsn")).toEqual([]);
      const resident = samplesOf(lines, "pageserver_resident_physical_size");
      expect(resident.length).toBe(1);
      const sum = ids.reduce(
        (n, id) =>
          n +
          s.tenants
            .get(id as TenantId)
            .listTimelines()[0]!
            .residentBytes(),
        0,
      );
      expect(sampleValue(resident[0]!)).toBe(sum);
      expect(samplesOf(lines, "pageserver_wal_ingest_stalled_seconds_total")).toEqual(["pageserver_wal_ingest_stalled_seconds_total 0"]);
      expect(samplesOf(lines, "pageserver_remote_upload_retries_total")).toEqual(["pageserver_remote_upload_retries_total 0"]);
      expect(promtoolCheck(text).status).toBe(0);

      // Switched on (what the setting does at start), the same families are per timeline again.
      s.metrics.perTimeline = true;
      const again = await (await fetch(`${api}/metrics`)).text();
      for (const id of ids) expect(again).toContain(`pageserver_last_record_lsn{tenant_id="${id}"`);
      expect(again).not.toMatch(/^pageserver_wal_ingest_stalled_seconds_total 0$/m);
      expect(promtoolCheck(again).status).toBe(0);
    } finally {
      await s.stop();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
