/**
 * Tenant and timeline lifecycle on the HTTP API, in-process (replies checked against their
 * declared schemas, logs checked):
 * - concurrent creates of one tenant id, one timeline id, one branch id (Promise.all of two
 *   POSTs, several rounds): one 201, the other 409, and exactly one of it afterwards, whole;
 * - DELETE of a timeline with a child branch is 409; of the child, then the parent, 200 and
 *   their directories gone; DELETE of a tenant removes it and its directory; both stay gone
 *   after a restart; a deleted tenant's id can be created again, empty;
 * - GET …/layer lists the layer files (L0, L1, image) and the frozen/open in-memory layers;
 * - GET …/layer_map.svg is well-formed XML with one `rect.layer` per listed layer, a line per
 *   branch point and one for the GC cutoff.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validate as validateXml } from "fast-xml-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { asLsn, lsnToString } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";

const logs = new LogCapture();
const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d", compaction_threshold: 2, image_creation_threshold: 1 };
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const ROUNDS = 8;

let workdir: string;
let server: Server | null = null;
let base = "";

async function start(): Promise<void> {
  server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", max_tenants: 100 }), logs.logger);
  server.http.checkResponses = true;
  base = `http://127.0.0.1:${await server.start()}`;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown>; text: string; type: string | null }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  const type = r.headers.get("content-type");
  return { status: r.status, json: type === "application/json" ? (JSON.parse(text) as Record<string, unknown>) : {}, text, type };
}

const tenantDir = (t: string): string => join(workdir, "tenants", t);
const timelineDir = (t: string, tl: string): string => join(tenantDir(t), "timelines", tl);

/** Values at three LSNs per round, each round checkpointed: L0 files to list and draw. */
async function fill(t: string, tl: string, from: number, rounds: number): Promise<number> {
  const timeline = server!.tenants.get(t as never).getTimeline(tl as never);
  let lsn = from;
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < 20; i++) {
      lsn += 8;
      timeline.put(k(i), asLsn(lsn), imageValue(Buffer.from(`v${i}r${round}`)));
    }
    timeline.finishWrite(asLsn(lsn));
    await timeline.checkpoint();
  }
  return lsn;
}

beforeAll(async () => {
  workdir = mkdtempSync(join(tmpdir(), "ps-api-life-"));
  await start();
});

afterAll(async () => {
  await server?.stop();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("API lifecycle", { timeout: 120_000 }, () => {
  it(`concurrent creates of one tenant, timeline or branch id: one 201, one 409, never half-created (${ROUNDS} rounds)`, async () => {
    /** The 409s' messages: "is being created" shows the two requests overlapped. */
    const overlapped: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const tid = generateTenantId();
      const twice = await Promise.all([0, 1].map(() => call("POST", "/v1/tenant", { new_tenant_id: tid, config: QUIET })));
      expect(twice.map((r) => r.status).sort()).toEqual([201, 409]);
      expect(twice.find((r) => r.status === 409)!.json["code"]).toBe("conflict");
      overlapped.push(String(twice.find((r) => r.status === 409)!.json["error"]));
      expect((await call("GET", "/v1/tenant")).json as unknown as { id: string }[]).toSatisfy(
        (l: { id: string }[]) => l.filter((x) => x.id === tid).length === 1,
      );
      expect((await call("GET", `/v1/tenant/${tid}`)).json["state"]).toBe("Active");

      const tl = generateTimelineId();
      const tls = await Promise.all(
        [0, 1].map(() => call("POST", `/v1/tenant/${tid}/timeline`, { new_timeline_id: tl, start_lsn: "0/1000" })),
      );
      expect(tls.map((r) => r.status).sort()).toEqual([201, 409]);
      const end = await fill(tid, tl, 0x1000, 1);

      const br = generateTimelineId();
      const brs = await Promise.all(
        [0, 1].map(() =>
          call("POST", `/v1/tenant/${tid}/timeline`, {
            new_timeline_id: br,
            ancestor_timeline_id: tl,
            ancestor_start_lsn: lsnToString(asLsn(end)),
          }),
        ),
      );
      expect(brs.map((r) => r.status).sort()).toEqual([201, 409]);
      overlapped.push(String(tls.find((r) => r.status === 409)!.json["error"]), String(brs.find((r) => r.status === 409)!.json["error"]));
      const list = (await call("GET", `/v1/tenant/${tid}/timeline`)).json as unknown as {
        timeline_id: string;
        ancestor_lsn: string | null;
      }[];
      expect(list.map((x) => x.timeline_id).sort()).toEqual([tl, br].sort());
      expect(list.find((x) => x.timeline_id === br)!.ancestor_lsn).toBe(lsnToString(asLsn(end)));
      expect(readdirSync(join(tenantDir(tid), "timelines")).sort()).toEqual([tl, br].sort());
      expect((await call("GET", `/v1/tenant/${tid}`)).json).toMatchObject({ timelines: 2, timeline_ids: [tl, br].sort(), config: QUIET });
      for (const id of [tl, br]) expect(existsSync(join(timelineDir(tid, id), "metadata"))).toBe(true);
    }
    console.log(
      `409 answers: ${overlapped.filter((m) => m.includes("is being created")).length} while the other was being created, ${overlapped.filter((m) => m.includes("already exists")).length} after`,
    );
    // The requests did race: a creation in progress was seen (its id reserved before its first await).
    expect(overlapped.some((m) => /tenant \w+ is being created/.test(m))).toBe(true);
  });

  it("deletes: a timeline with children is 409; child then parent then tenant go, also from disk and across a restart", async () => {
    const tid = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tid, config: QUIET })).status).toBe(201);
    const parent = String((await call("POST", `/v1/tenant/${tid}/timeline`, { start_lsn: "0/1000" })).json["timeline_id"]);
    const end = await fill(tid, parent, 0x1000, 2);
    const child = String(
      (await call("POST", `/v1/tenant/${tid}/timeline`, { ancestor_timeline_id: parent, ancestor_start_lsn: lsnToString(asLsn(end)) }))
        .json["timeline_id"],
    );
    await fill(tid, child, end, 1);

    const refused = await call("DELETE", `/v1/tenant/${tid}/timeline/${parent}`);
    expect(refused.status).toBe(409);
    expect(refused.json["code"]).toBe("conflict");
    expect(String(refused.json["error"])).toContain(`has child branches (${child})`);
    expect(existsSync(timelineDir(tid, parent))).toBe(true);

    const delChild = await call("DELETE", `/v1/tenant/${tid}/timeline/${child}`);
    expect(delChild.status, delChild.text).toBe(200);
    expect(delChild.json).toEqual({ tenant_id: tid, timeline_id: child, wal_source: null });
    expect(existsSync(timelineDir(tid, child))).toBe(false);
    expect((await call("GET", `/v1/tenant/${tid}/timeline/${child}`)).status).toBe(404);
    expect((await call("DELETE", `/v1/tenant/${tid}/timeline/${child}`)).status).toBe(404);
    expect((await call("DELETE", `/v1/tenant/${tid}/timeline/${parent}`)).status).toBe(200);
    expect(readdirSync(join(tenantDir(tid), "timelines"))).toEqual([]);

    // A tenant with a timeline: the tenant and its directory go.
    const tid2 = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tid2, config: QUIET })).status).toBe(201);
    const tl2 = String((await call("POST", `/v1/tenant/${tid2}/timeline`, { start_lsn: "0/1000" })).json["timeline_id"]);
    await fill(tid2, tl2, 0x1000, 1);
    const delTenant = await call("DELETE", `/v1/tenant/${tid2}`);
    expect(delTenant.status, delTenant.text).toBe(200);
    expect(delTenant.json).toEqual({ tenant_id: tid2, timelines: [{ tenant_id: tid2, timeline_id: tl2, wal_source: null }] });
    expect(existsSync(tenantDir(tid2))).toBe(false);
    expect((await call("GET", `/v1/tenant/${tid2}`)).status).toBe(404);
    expect((await call("DELETE", `/v1/tenant/${tid2}`)).status).toBe(404);

    await server!.stop();
    await start();
    expect((await call("GET", `/v1/tenant/${tid2}`)).status).toBe(404);
    expect(((await call("GET", `/v1/tenant/${tid}/timeline`)).json as unknown as unknown[]).length).toBe(0);
    // The id is free again: a new, empty tenant.
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tid2 })).status).toBe(201);
    expect((await call("GET", `/v1/tenant/${tid2}`)).json["timelines"]).toBe(0);
  });

  it("layers: files by level and the in-memory layers; the SVG has one rect per layer, branch points and the GC cutoff", async () => {
    const tid = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tid, config: QUIET })).status).toBe(201);
    const tl = String((await call("POST", `/v1/tenant/${tid}/timeline`, { start_lsn: "0/1000" })).json["timeline_id"]);
    const mid = await fill(tid, tl, 0x1000, 3);
    const compact = await call("PUT", `/v1/tenant/${tid}/timeline/${tl}/compact?force_image_layer_creation=true`);
    expect(compact.status).toBe(200);
    const end = await fill(tid, tl, mid, 2);
    const branches = [];
    for (const at of [mid, end]) {
      const b = await call("POST", `/v1/tenant/${tid}/timeline`, { ancestor_timeline_id: tl, ancestor_start_lsn: lsnToString(asLsn(at)) });
      expect(b.status).toBe(201);
      branches.push(b.json);
    }
    // Unflushed values: the open in-memory layer.
    const timeline = server!.tenants.get(tid as never).getTimeline(tl as never);
    timeline.put(k(0), asLsn(end + 8), imageValue(Buffer.from("open")));
    timeline.finishWrite(asLsn(end + 8));

    type Layer = {
      name: string;
      kind: string;
      level: string;
      in_memory: string | null;
      key_start: string;
      key_end: string;
      lsn_start: string;
      lsn_end: string;
      size_bytes: number;
    };
    const layers = (await call("GET", `/v1/tenant/${tid}/timeline/${tl}/layer`)).json as unknown as Layer[];
    const files = layers.filter((l) => l.in_memory === null);
    expect(files.length).toBe(timeline.layerMap.size);
    const levels = new Set(files.map((l) => l.level));
    expect([...levels].sort()).toEqual(["image", "l0", "l1"]);
    for (const l of files) {
      expect(l.kind).toBe(l.level === "image" ? "image" : "delta");
      expect(l.key_start < l.key_end).toBe(true);
      expect(l.size_bytes).toBeGreaterThan(0);
      expect(timeline.layerMap.get(l.name)).toBeDefined();
    }
    const l0 = files.filter((l) => l.level === "l0");
    expect(l0.every((l) => l.key_start === "0".repeat(36) && l.key_end === "F".repeat(36))).toBe(true);
    const open = layers.filter((l) => l.in_memory === "open");
    expect(open.length).toBe(1);
    expect(open[0]!.lsn_end).toBe(lsnToString(asLsn(end + 9)));
    expect(layers.slice(files.length).every((l) => l.in_memory !== null)).toBe(true);

    const svg = await call("GET", `/v1/tenant/${tid}/timeline/${tl}/layer_map.svg`);
    expect(svg.status).toBe(200);
    expect(svg.type).toBe("image/svg+xml");
    expect(validateXml(svg.text)).toBe(true);
    expect(svg.text.match(/<rect class="layer"/g)?.length).toBe(layers.length);
    for (const l of layers) expect(svg.text).toContain(l.name);
    expect(svg.text.match(/<g class="branch">/g)?.length).toBe(2);
    for (const b of branches) expect(svg.text).toContain(`@ ${String(b["ancestor_lsn"])}`);
    expect(svg.text.match(/<g class="gc">/g)?.length).toBe(1);
    expect(svg.text).toContain("LSN (rank order");
    expect(svg.text).toContain("key range (rank order");
  });
});
