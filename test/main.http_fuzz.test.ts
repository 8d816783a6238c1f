/**
 * Bad input on the HTTP API: thousands of random and mutated requests (seeded, bounded in
 * count and time) against every registered route of an in-process Server holding a tenant
 * with data: mutated path ids, percent-escapes, long segments, random query strings, random
 * methods, bodies that are random bytes, truncated JSON, wrong types, huge numbers, deep
 * nesting. Never a 5xx, never a crash; every error is JSON {error, code}; afterwards the
 * server still serves and the tenant's data reads back the same.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LogCapture } from "./support/log_check.js";
import { describeEachAdapter } from "./support/http_adapters.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { asLsn } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { rng } from "./support/rng.js";

/** Integers in [lo, hi] from the tests' seeded PRNG. */
class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = rng(seed);
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
}

const REQUESTS = 3000;
const BUDGET_MS = 90_000;
const START_LSN = asLsn(0x0100_0000);
const logs = new LogCapture();

let dir: string;
let server: Server;
let base: string;
let tenantId = "";
let timelineId = "";
let tl: Timeline;
const OTHER_TENANT = generateTenantId();
const OTHER_TIMELINE = generateTimelineId();
const keys = Array.from({ length: 8 }, (_, b) => makeKey(0, 1663, 5, 16384, 0, b));

describeEachAdapter("HTTP bad input", (kind) => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ps-fuzz-"));
    server = new Server(
      loadNodeConfig({
        workdir: dir,
        listen: "127.0.0.1:0",
        listen_pg: "127.0.0.1:0",
        max_tenants: 200,
        http_server: kind,
        tenant_config: { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d", wait_lsn_timeout: "100ms" },
      }),
      logs.logger,
    );
    server.http.checkResponses = true;
    base = `http://127.0.0.1:${await server.start()}`;
    const t = await server.tenants.create(undefined, {});
    tenantId = t.id;
    tl = await t.createTimeline({ startLsn: START_LSN });
    timelineId = tl.timelineId;
    const page = new Uint8Array(8192);
    for (const [b, k] of keys.entries()) {
      page.fill(b + 1);
      tl.put(k, asLsn(START_LSN + 8), imageValue(page));
    }
    tl.finishWrite(asLsn(START_LSN + 8));
    await tl.checkpoint();
  });

  afterAll(async () => {
    await server?.stop();
    logs.expectClean([]);
    rmSync(dir, { recursive: true, force: true });
  });

  const JUNK_SEGMENTS = [
    "",
    "x",
    "%zz",
    "%00",
    "..",
    "%2e%2e",
    "0".repeat(31),
    "g".repeat(32),
    "A".repeat(32),
    "a".repeat(5000),
    "é",
    "%E2%82",
    "null",
    "-1",
  ];
  const JUNK_QUERY = [
    "lsn=",
    "lsn=0/0",
    "lsn=zz/zz",
    "lsn=FFFFFFFF/FFFFFFFF",
    "lsn=1/",
    "force_image_layer_creation=maybe",
    "a=%zz",
    "lsn=0/1000000&lsn=1/0",
    "x".repeat(9000),
  ];

  function randomString(r: Rng, n: number): string {
    let s = "";
    for (let i = 0; i < n; i++) s += String.fromCharCode(r.int(0x20, 0x7e));
    return s;
  }

  function randomJson(r: Rng, depth: number): unknown {
    switch (r.int(0, 8)) {
      case 0:
        return null;
      case 1:
        return r.int(0, 1) === 1;
      case 2:
        return [0, -1, 1.5, 2 ** 53, 2 ** 64, -(2 ** 63), Number.MAX_VALUE][r.int(0, 6)];
      case 3:
        return randomString(r, r.int(0, 40));
      case 4:
        return ["0/1000000", "0/0", "FFFFFFFF/FFFFFFFF", "0/1000008", "1/0", "0/"][r.int(0, 5)];
      case 5:
        return [tenantId, timelineId, "0".repeat(32), "z".repeat(32)][r.int(0, 3)];
      case 6:
        return depth > 3 ? 1 : Array.from({ length: r.int(0, 3) }, () => randomJson(r, depth + 1));
      default: {
        if (depth > 3) return {};
        const o: Record<string, unknown> = {};
        // No wal_source / import_pgdata: bodies naming a source or a datadir would reach out of the process.
        const fields = [
          "new_tenant_id",
          "new_timeline_id",
          "ancestor_timeline_id",
          "ancestor_start_lsn",
          "start_lsn",
          "pg_version",
          "config",
          "gc_horizon",
          "checkpoint_distance",
          "compaction_threshold",
          "gc_period",
          "wait_lsn_timeout",
          "ancestor_start_time",
          "x",
        ];
        for (let i = r.int(0, 4); i > 0; i--) o[fields[r.int(0, fields.length - 1)]!] = randomJson(r, depth + 1);
        return o;
      }
    }
  }

  function randomBody(r: Rng): string | Uint8Array | undefined {
    switch (r.int(0, 5)) {
      case 0:
        return undefined;
      case 1: {
        const b = new Uint8Array(r.int(1, 200));
        for (let i = 0; i < b.length; i++) b[i] = r.int(0, 255);
        return b;
      }
      case 2: {
        const s = JSON.stringify(randomJson(r, 0)) ?? "null";
        return s.slice(0, r.int(0, s.length));
      }
      case 3:
        return r.int(0, 50) === 0 ? "x".repeat(1024 * 1024 + 1) : `${"[".repeat(r.int(1, 5000))}`;
      default:
        return JSON.stringify(randomJson(r, 0));
    }
  }

  describe("HTTP bad input", () => {
    it(`${REQUESTS} random and mutated requests: no 5xx, JSON errors, still serving`, async () => {
      const r = new Rng(0x5eed_0009);
      const routes = server.http.routes;
      const methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
      const deadline = Date.now() + BUDGET_MS;
      const statuses = new Map<number, number>();
      let sent = 0;
      for (; sent < REQUESTS && Date.now() < deadline; sent++) {
        const route = routes[r.int(0, routes.length - 1)]!;
        const method = r.int(0, 4) === 0 ? methods[r.int(0, methods.length - 1)]! : route.method.toUpperCase();
        const seg = (valid: string): string => (r.int(0, 2) === 0 ? JUNK_SEGMENTS[r.int(0, JUNK_SEGMENTS.length - 1)]! : valid);
        // DELETE on the real ids would delete the tenant whose data is checked at the end: those
        // go to ids that don't exist (deletes are tested in test/main.openapi.test.ts).
        const [t, tl] = method === "DELETE" ? [OTHER_TENANT, OTHER_TIMELINE] : [tenantId, timelineId];
        let path = route.pattern.replace(":tenant_id", seg(t)).replace(":timeline_id", seg(tl));
        if (r.int(0, 3) === 0) path += `?${JUNK_QUERY[r.int(0, JUNK_QUERY.length - 1)]}`;
        const body = method === "GET" ? undefined : randomBody(r);
        const what = `${method} ${path.slice(0, 120)} ${typeof body === "string" ? body.slice(0, 120) : ""}`;
        let status: number;
        let text: string;
        let ctype: string | null;
        try {
          const res = await fetch(`${base}${path}`, { method, body });
          status = res.status;
          ctype = res.headers.get("content-type");
          text = ctype === "application/x-tar" ? "" : await res.text();
        } catch (e) {
          throw new Error(`request failed at the transport level: ${what}: ${(e as Error).message}`);
        }
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        expect(status, `${what} → ${text.slice(0, 300)}`).toBeLessThan(500);
        if (status >= 400) {
          expect(ctype, what).toBe("application/json");
          const j = JSON.parse(text) as { error: unknown; code: unknown };
          expect(typeof j.error, what).toBe("string");
          expect(typeof j.code, what).toBe("string");
        }
      }
      expect(sent).toBeGreaterThan(REQUESTS / 2);
      // Still serving, the data unchanged.
      const st = await fetch(`${base}/v1/tenant/${tenantId}/timeline/${timelineId}`);
      expect(st.status).toBe(200);
      for (const [b, k] of keys.entries()) {
        const page = await tl.get(k, tl.lastRecordLsn);
        expect(page?.every((x) => x === b + 1)).toBe(true);
      }
      console.log(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
    }, 120_000);
  });
});
