/**
 * Per-tenant limits on heavy work (issue 16 item 7; src/tenant/heavy_work.ts), on a real
 * PostgreSQL 15 data directory imported into an in-process Server with
 * max_heavy_requests_per_tenant 1:
 * - while one base backup of tenant A runs (held at the basebackup-start failpoint), A's next
 *   heavy request is refused at once: an HTTP base backup, do_gc, a forced image compaction
 *   and /size answer 429 limit_reached, a page-service `basebackup` an ErrorResponse 53400;
 *   A's light requests (a plain compaction) and tenant B's heavy ones go on;
 * - the held request outlives uWebSockets.js' 10 s idle timeout and still gets its reply;
 * - a client that goes away in the middle of a streamed base backup frees its permit: the
 *   stream stops (logged at INFO, no ERROR) and the next base backup is served.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PageServiceError } from "../src/client/page_service_client.js";
import { applyFailpoints, clearFailpoints, parseFailpointSpec } from "../src/types/failpoints.js";
import { LogCapture } from "./support/log_check.js";
import { PageServiceFixture } from "./support/page_service_fixture.js";
import { within } from "./support/within.js";

const logs = new LogCapture();
let fx: PageServiceFixture;

/** Poll until `ok` (bounded by within's default). */
async function until(what: string, ok: () => boolean): Promise<void> {
  await within(
    (async () => {
      while (!ok()) await new Promise((r) => setTimeout(r, 10));
    })(),
    what,
  );
}

beforeAll(async () => {
  fx = await PageServiceFixture.start({ rows: 20_000, nodeConfig: { max_heavy_requests_per_tenant: 1 }, logger: logs.logger });
}, 120_000);

afterAll(async () => {
  clearFailpoints();
  await fx?.destroy();
  logs.expectClean([]);
});

describe("heavy work per tenant", () => {
  it("beyond max_heavy_requests_per_tenant: 429 over HTTP, 53400 over the page service; light requests and other tenants go on", async () => {
    const heavy = fx.server.heavy;
    const tl = `/v1/tenant/${fx.tenant}/timeline/${fx.timeline}`;
    // Held longer than uWebSockets.js' 10 s idle timeout: a handler this slow keeps its
    // connection (reading stays paused while it runs), and its reply arrives.
    applyFailpoints(parseFailpointSpec("basebackup-start=sleep(11000)"));
    const first = fx.http("GET", `${tl}/basebackup`);
    await until("the first base backup holds A's permit", () => heavy.runningFor(fx.tenant) === 1);
    for (const [method, path] of [
      ["GET", `${tl}/basebackup`],
      ["PUT", `${tl}/do_gc`],
      ["PUT", `${tl}/compact?force_image_layer_creation=true`],
      ["GET", `/v1/tenant/${fx.tenant}/size`],
    ] as const) {
      const r = await fx.http(method, path, method === "PUT" && path.endsWith("do_gc") ? {} : undefined);
      expect(r.status, `${method} ${path}: ${JSON.stringify(r.json)}`).toBe(429);
      expect(r.json["code"]).toBe("limit_reached");
      expect(String(r.json["error"])).toContain("max_heavy_requests_per_tenant 1");
    }
    const c = await fx.client();
    try {
      const refused = await c.basebackup(fx.tenant, fx.timeline, "latest").then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(PageServiceError);
      expect((refused as PageServiceError).sqlstate).toBe("53400");
      expect((refused as Error).message).toContain("max_heavy_requests_per_tenant");
    } finally {
      c.close();
    }
    // A plain compaction is not heavy; another tenant's heavy work is not A's.
    expect((await fx.http("PUT", `${tl}/compact`)).status).toBe(200);
    const other = await fx.http("POST", "/v1/tenant", { config: { compaction_period: 0, gc_period: 0 } });
    const otherId = String(other.json["id"]);
    const otherTl = await fx.http("POST", `/v1/tenant/${otherId}/timeline`, { start_lsn: "0/1000000" });
    expect(otherTl.status).toBe(201);
    expect((await fx.http("PUT", `/v1/tenant/${otherId}/timeline/${String(otherTl.json["timeline_id"])}/do_gc`, {})).status).toBe(200);
    clearFailpoints();
    const done = await within(first, "the first base backup");
    expect(done.status).toBe(200);
    expect(done.bytes.length).toBeGreaterThan(1024 * 1024);
    await until("A's permit is back", () => heavy.runningFor(fx.tenant) === 0);
    // Now A's heavy requests are served again, the page service's too.
    const c2 = await fx.client();
    try {
      expect((await c2.basebackup(fx.tenant, fx.timeline, "latest")).length).toBeGreaterThan(1024 * 1024);
    } finally {
      c2.close();
    }
    expect((await fx.http("GET", `/v1/tenant/${fx.tenant}/size`)).status).toBe(200);
  });

  it("a client that goes away mid-stream frees its permit: the stream stops, the next base backup is served", async () => {
    const heavy = fx.server.heavy;
    const ac = new AbortController();
    const res = await fetch(`http://127.0.0.1:${fx.server.port}/v1/tenant/${fx.tenant}/timeline/${fx.timeline}/basebackup`, {
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const firstChunk = await reader.read();
    expect(firstChunk.done).toBe(false);
    ac.abort();
    await until("the aborted stream's permit is back", () => heavy.runningFor(fx.tenant) === 0);
    await until("the stream ended as the client went away", () => logs.find(/streamed response ended: the client went away/).length > 0);
    const next = await fx.http("GET", `/v1/tenant/${fx.tenant}/timeline/${fx.timeline}/basebackup`);
    expect(next.status).toBe(200);
  });
});
