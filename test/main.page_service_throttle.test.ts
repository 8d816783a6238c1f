/**
 * Per-tenant GetPage throttle (getpage_throttle_rps N, getpage_throttle_burst B): M GetPage
 * pipelined on a throttled tenant account for (M − B) / N seconds of waiting in
 * pageserver_tenant_throttled_seconds_total{tenant_id} (the counter, not wall time), while
 * another tenant on the same node, unthrottled, is served meanwhile and gets no series.
 *
 * Last, closing the page service ends a session that waits for WAL.
 *
 * Why the counter sits just below (M − B) / N: each wait is the bucket's debt / N at the
 * moment of taking, and the time spent serving between two waits refills a little too; so the
 * sum is (M − B) / N minus that serving time (milliseconds here), never more.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LATEST_LSN, type PagestreamResponse } from "../src/protocol/pagestream.js";
import { PageServiceFixture } from "./support/page_service_fixture.js";
import { asLsn } from "../src/types/lsn.js";

const N = 50; // requests per second
const B = 10; // burst
const M = 110; // → (M − B) / N = 2 s of throttling

let fx: PageServiceFixture;
let other: { tenant: string; timeline: string };

beforeAll(async () => {
  fx = await PageServiceFixture.start({ rows: 500, tenantConfig: { getpage_throttle_rps: N, getpage_throttle_burst: B } });
  // A second tenant from the same (shut down) data directory, with no throttle.
  const t = await fx.http("POST", "/v1/tenant", { config: { compaction_period: 0, gc_period: 0 } });
  const tenant = String(t.json["id"]);
  const tl = await fx.http("POST", `/v1/tenant/${tenant}/timeline`, { import_pgdata: fx.pg.dataDir });
  expect(tl.status, JSON.stringify(tl.json)).toBe(201);
  other = { tenant, timeline: String(tl.json["timeline_id"]) };
}, 120_000);

afterAll(async () => {
  await fx?.destroy();
});

async function throttledSeconds(tenant: string): Promise<number | null> {
  const text = Buffer.from((await fx.http("GET", "/metrics")).bytes).toString("utf8");
  const m = new RegExp(`^pageserver_tenant_throttled_seconds_total\\{tenant_id="${tenant}"\\} (\\S+)$`, "m").exec(text);
  return m === null ? null : Number(m[1]);
}

describe("GetPage throttle", () => {
  it(`${M} GetPage at ${N}/s with burst ${B}: ≈ ${(M - B) / N} s throttled; another tenant unthrottled meanwhile`, async () => {
    expect(await throttledSeconds(fx.tenant)).toBeNull();
    const slow = await fx.client();
    const fast = await fx.client();
    try {
      const s = await slow.pagestream(fx.tenant, fx.timeline, 3, { max_in_flight: M });
      const throttled = Array.from({ length: M }, (_, i) => s.getPage(fx.rel, i % 4, LATEST_LSN, fx.lsn));
      let slowDone = false;
      const all = Promise.all(throttled).then((pages) => {
        slowDone = true;
        return pages;
      });

      // Meanwhile the other tenant: 300 GetPage, answered while the throttled ones still wait.
      const f = await fast.pagestream(other.tenant, other.timeline, 3, { max_in_flight: 300 });
      const quick: Promise<PagestreamResponse>[] = [];
      for (let i = 0; i < 300; i++) quick.push(f.send({ kind: "get_page", hdr: f.header(LATEST_LSN, fx.lsn), rel: fx.rel, blkno: i % 4 }));
      const answers = await Promise.all(quick);
      expect(answers.every((a) => a.kind === "get_page")).toBe(true);
      expect(slowDone).toBe(false);
      await f.close();

      const pages = await all;
      expect(pages.length).toBe(M);
      await s.close();
      const secs = await throttledSeconds(fx.tenant);
      expect(secs).not.toBeNull();
      expect(secs!).toBeLessThanOrEqual((M - B) / N + 1e-6);
      expect(secs!).toBeGreaterThan((M - B) / N - 0.25);
      expect(await throttledSeconds(other.tenant)).toBeNull();
    } finally {
      slow.close();
      fast.close();
    }
  }, 60_000);

  it("turning the throttle off (config 0) serves at once and adds no throttled time", async () => {
    const put = await fx.http("PUT", `/v1/tenant/${fx.tenant}/config`, { getpage_throttle_rps: 0 });
    expect(put.status, JSON.stringify(put.json)).toBe(200);
    const before = await throttledSeconds(fx.tenant);
    const c = await fx.client();
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, 2, { max_in_flight: 500 });
      const pages = await Promise.all(Array.from({ length: 500 }, (_, i) => s.getPage(fx.rel, i % 4, LATEST_LSN, fx.lsn)));
      expect(pages.length).toBe(500);
      await s.close();
    } finally {
      c.close();
    }
    expect(await throttledSeconds(fx.tenant)).toBe(before);
  });

  it("closing the page service ends open sessions, even one waiting for WAL that won't come", async () => {
    const c = await fx.client();
    const s = await c.pagestream(fx.tenant, fx.timeline, 3);
    // not_modified_since beyond last_record_lsn: the server waits for ingest (wait_lsn_timeout).
    const waiting = s.getPage(fx.rel, 0, asLsn(fx.lsn + 1_000_000), asLsn(fx.lsn + 1_000_000));
    const settled = waiting.then(
      () => "answered",
      (e: Error) => e.message,
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(fx.server.pageService.connectionStats().length).toBe(1);
    await fx.server.pageService.close();
    expect(await settled).toMatch(/connection closed/);
    expect(fx.server.pageService.connectionStats().length).toBe(0);
    await expect(fx.client()).rejects.toThrow(/ECONNREFUSED/);
    c.close();
  });
});
