/**
 * Metric series of deleted tenants and timelines go (src/main/metrics.ts PruningRegistry):
 * an in-process Server, tenants and timelines created, scraped, deleted, scraped again: no
 * series names a deleted tenant or timeline, whoever registered the metric (a counter of the
 * node's, a remote-storage counter, the page service's throttle counter); a live timeline's
 * series stay. With listen_metrics, /metrics is served on its own listener only.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Counter } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { generateTenantId } from "../src/types/ids.js";
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
