/**
 * The HTTP API v1 (src/main/http/tenant_routes.ts over src/main/http/http_server.ts) in-process through a real
 * Server on an ephemeral port: every route (tenants, timelines, branching, checkpoint,
 * compact, do_gc, config, status, metrics) with fetch(), the error mapping (bad ids, unknown
 * routes, malformed and oversized bodies → JSON {error, code}), /metrics checked by
 * `promtool check metrics`, and a stop / restart on the same workdir. Then the entry point
 * as a process: SIGTERM exits 0, a bad flag exits 2 with a clear message. The in-process
 * servers' logs are checked (test/support/log_check.ts): no warning but those provoked here.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { generateTenantId, generateTimelineId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { asLsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { DBDIR_KEY } from "../src/pgdata/keys.js";
import { LogCapture } from "./support/log_check.js";
import { describeEachAdapter } from "./support/http_adapters.js";
import type { HttpServerKind } from "../src/main/http/wire.js";

const ROOT = new URL("..", import.meta.url).pathname;
/** Every in-process Server of this file logs here; afterAll fails on a warning not provoked on purpose. */
const logs = new LogCapture();

let workdir: string;
let server: Server | null = null;
let base = "";
/** The adapter of the describe running (describeEachAdapter). */
let adapter: HttpServerKind = "node";
const children: ChildProcess[] = [];

interface ApiError {
  error: string;
  code: string;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
  raw?: string | Uint8Array,
): Promise<{ status: number; json: unknown; type: string | null }> {
  const init: RequestInit = { method };
  if (raw !== undefined) init.body = raw;
  else if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, json, type: res.headers.get("content-type") };
}

/** Expect a JSON error reply with `status`, `code` and a message containing `msg`. */
async function expectError(
  p: Promise<{ status: number; json: unknown; type: string | null }>,
  status: number,
  code: string,
  msg: string,
): Promise<void> {
  const r = await p;
  expect(r.status, JSON.stringify(r.json)).toBe(status);
  expect(r.type).toBe("application/json");
  const e = r.json as ApiError;
  expect(Object.keys(e).sort()).toEqual(["code", "error"]);
  expect(e.code).toBe(code);
  expect(e.error).toContain(msg);
}

/**
 * Send `requests` one after another on ONE keep-alive connection; resolve with the status
 * line of each reply (a connection closed early shows as fewer replies).
 */
function rawExchange(requests: string[]): Promise<string[]> {
  const port = Number(new URL(base).port);
  return new Promise((resolve, reject) => {
    const sock = connect(port, "127.0.0.1");
    const lines: string[] = [];
    let buf = "";
    let next = 0;
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(lines);
    }, 10_000);
    const sendNext = (): void => {
      if (next < requests.length) sock.write(requests[next++]!);
      else {
        clearTimeout(timer);
        sock.end();
        resolve(lines);
      }
    };
    sock.on("connect", sendNext);
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(lines);
    });
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      // Replies here are small and not chunked: head, then content-length bytes.
      for (;;) {
        const head = buf.indexOf("\r\n\r\n");
        if (head < 0) return;
        const m = /content-length: (\d+)/i.exec(buf.slice(0, head));
        const len = m === null ? 0 : Number(m[1]);
        if (buf.length < head + 4 + len) return;
        lines.push(buf.slice(0, buf.indexOf("\r\n")));
        buf = buf.slice(head + 4 + len);
        sendNext();
      }
    });
  });
}

async function startServer(): Promise<Server> {
  const s = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", http_server: adapter }), logs.logger);
  s.http.checkResponses = true;
  const port = await s.start();
  expect(port).toBeGreaterThan(0);
  base = `http://127.0.0.1:${port}`;
  return s;
}

const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d", compaction_threshold: 2, image_creation_threshold: 1 };
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);

describeEachAdapter("HTTP API v1", (kind) => {
  beforeAll(() => {
    adapter = kind;
  });

  beforeAll(async () => {
    workdir = mkdtempSync(join(tmpdir(), "ps-http-"));
    server = await startServer();
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    if (server !== null) await server.stop();
    rmSync(workdir, { recursive: true, force: true });
    logs.expectClean([
      // "current_logical_size is null …" breaks a database directory on purpose.
      /^could not compute the logical size$/,
      // "the tenant limit is the client's problem" fills max_tenants on purpose.
      /^tenant creation refused: max_tenants reached$/,
    ]);
  });

  describe("HTTP API v1 in-process", () => {
    const tenantId: TenantId = generateTenantId();
    const mainTl: TimelineId = generateTimelineId();
    let otherTenant = "";
    let branchTl = "";

    it("GET /v1/status", async () => {
      const r = await call("GET", "/v1/status");
      expect(r.status).toBe(200);
      expect(r.type).toBe("application/json");
      const j = r.json as { status: string; started_at: string; http_server: string; tls: boolean };
      expect(j.status).toBe("ok");
      expect(j.http_server).toBe(kind);
      expect(j.tls).toBe(false); // no --tls-cert
      expect(Number.isNaN(Date.parse(j.started_at))).toBe(false);
    });

    it("POST /v1/tenant with and without new_tenant_id; a duplicate is 409", async () => {
      const a = await call("POST", "/v1/tenant", { new_tenant_id: tenantId, config: QUIET });
      expect(a.status).toBe(201);
      expect(a.json).toEqual({ id: tenantId });
      const b = await call("POST", "/v1/tenant", {});
      expect(b.status).toBe(201);
      otherTenant = (b.json as { id: string }).id;
      expect(otherTenant).toMatch(/^[0-9a-f]{32}$/);
      expect(otherTenant).not.toBe(tenantId);
      // No body at all is an empty object.
      const c = await call("POST", "/v1/tenant");
      expect(c.status).toBe(201);
      await expectError(call("POST", "/v1/tenant", { new_tenant_id: tenantId }), 409, "conflict", `tenant ${tenantId} already exists`);
      await expectError(
        call("POST", "/v1/tenant", { new_tenant_id: "xyz" }),
        400,
        "invalid_argument",
        'body.new_tenant_id: expected 32 lower-case hex characters, got "xyz"',
      );
      await expectError(call("POST", "/v1/tenant", { config: { nope: 1 } }), 400, "invalid_argument", "unknown tenant config key 'nope'");
      await expectError(call("POST", "/v1/tenant", { config: [1] }), 400, "invalid_argument", "body.config: expected object, got [1]");
      await expectError(call("POST", "/v1/tenant", [1, 2]), 400, "invalid_argument", "body: expected object, got [1,2]");
    });

    it("GET /v1/tenant lists and GET /v1/tenant/:id describes", async () => {
      const list = await call("GET", "/v1/tenant");
      expect(list.status).toBe(200);
      const ids = (list.json as Array<{ id: string; state: string }>).map((t) => t.id);
      expect(ids).toContain(tenantId);
      expect(ids).toContain(otherTenant);
      expect(ids.length).toBe(3);
      expect((list.json as Array<{ state: string }>).every((t) => t.state === "Active")).toBe(true);
      const one = await call("GET", `/v1/tenant/${tenantId}`);
      expect(one.status).toBe(200);
      expect(one.json).toEqual({ id: tenantId, state: "Active", name: null, timelines: 0, timeline_ids: [], config: QUIET });
      await expectError(call("GET", `/v1/tenant/${generateTenantId()}`), 404, "not_found", "not found");
    });

    it("POST /v1/tenant/:id/timeline bootstraps at start_lsn", async () => {
      const r = await call("POST", `/v1/tenant/${tenantId}/timeline`, { new_timeline_id: mainTl, start_lsn: "0/1000" });
      expect(r.status).toBe(201);
      const j = r.json as Record<string, unknown>;
      expect(j).toMatchObject({
        tenant_id: tenantId,
        timeline_id: mainTl,
        ancestor_timeline_id: null,
        ancestor_lsn: null,
        last_record_lsn: "0/1000",
        disk_consistent_lsn: "0/1000",
        remote_consistent_lsn: null,
        state: "Active",
      });
      await expectError(call("POST", `/v1/tenant/${tenantId}/timeline`, { new_timeline_id: mainTl }), 409, "conflict", "already exists");
      await expectError(
        call("POST", `/v1/tenant/${tenantId}/timeline`, { start_lsn: "nope" }),
        400,
        "invalid_argument",
        'body.start_lsn: expected an LSN like "0/16B3748", got "nope"',
      );
      await expectError(
        call("POST", `/v1/tenant/${tenantId}/timeline`, { start_lsn: 4096 }),
        400,
        "invalid_argument",
        'body.start_lsn: expected an LSN like "0/16B3748" or null, got 4096',
      );
      await expectError(
        call("POST", `/v1/tenant/${tenantId}/timeline`, { new_timeline_id: "../etc" }),
        400,
        "invalid_argument",
        'body.new_timeline_id: expected 32 lower-case hex characters, got "../etc"',
      );
      await expectError(
        call("POST", `/v1/tenant/${tenantId}/timeline`, { ancestor_start_lsn: "0/1000" }),
        400,
        "invalid_argument",
        "without ancestor_timeline_id",
      );
    });

    it("data written in-process: checkpoint makes it durable; compact and do_gc act on it", async () => {
      const tl = server!.tenants.get(tenantId).getTimeline(mainTl);
      let lsn = 0x1000;
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 20; i++) {
          lsn += 8;
          tl.put(k(i), asLsn(lsn), imageValue(Buffer.from(`v${i}r${round}`)));
        }
        tl.finishWrite(asLsn(lsn));
        const cp = await call("PUT", `/v1/tenant/${tenantId}/timeline/${mainTl}/checkpoint`);
        expect(cp.status).toBe(200);
        expect(cp.json).toEqual({ disk_consistent_lsn: lsnToString(asLsn(lsn)) });
      }
      expect(Buffer.from((await tl.get(k(3), asLsn(lsn)))!).toString()).toBe("v3r2");
      expect(Buffer.from((await tl.get(k(3), asLsn(lsn - 20 * 8)))!).toString()).toBe("v3r1");
      const info = (await call("GET", `/v1/tenant/${tenantId}/timeline/${mainTl}`)).json as {
        last_record_lsn: string;
        layers: { l0: number; delta: number; image: number };
      };
      expect(info.last_record_lsn).toBe(lsnToString(asLsn(lsn)));
      expect(info.layers.l0).toBe(3);
      const compact = await call("PUT", `/v1/tenant/${tenantId}/timeline/${mainTl}/compact?force_image_layer_creation=true`);
      expect(compact.status).toBe(200);
      const cj = compact.json as { l0_compacted: number; image_layers_created: number };
      expect(cj.l0_compacted).toBe(3);
      expect(cj.image_layers_created).toBeGreaterThan(0);
      const after = (await call("GET", `/v1/tenant/${tenantId}/timeline/${mainTl}`)).json as { layers: { l0: number; image: number } };
      expect(after.layers.l0).toBe(0);
      expect(after.layers.image).toBeGreaterThan(0);
      const gc = await call("PUT", `/v1/tenant/${tenantId}/timeline/${mainTl}/do_gc`, { gc_horizon: 0 });
      expect(gc.status).toBe(200);
      const gj = gc.json as { layers_removed: number; latest_gc_cutoff_lsn: string };
      expect(gj.layers_removed).toBeGreaterThan(0);
      expect(gj.latest_gc_cutoff_lsn).toBe(lsnToString(asLsn(lsn)));
      await expectError(
        call("PUT", `/v1/tenant/${tenantId}/timeline/${mainTl}/do_gc`, { gc_horizon: -1 }),
        400,
        "invalid_argument",
        "body.gc_horizon: expected integer ≥ 0, got -1",
      );
      await expectError(
        call("PUT", `/v1/tenant/${tenantId}/timeline/${mainTl}/do_gc`, { gc_horizon: "1MB" }),
        400,
        "invalid_argument",
        'body.gc_horizon: expected integer ≥ 0, got "1MB"',
      );
      // A GC with the default cutoff works too.
      expect((await call("PUT", `/v1/tenant/${tenantId}/timeline/${mainTl}/do_gc`)).status).toBe(200);
    });

    it("compact and do_gc act on the timeline in the URL only: siblings, parents and branches keep their history", async () => {
      const tid = generateTenantId();
      expect((await call("POST", "/v1/tenant", { new_tenant_id: tid, config: QUIET })).status).toBe(201);
      const mk = async (body: Record<string, unknown>): Promise<TimelineId> => {
        const r = await call("POST", `/v1/tenant/${tid}/timeline`, body);
        expect(r.status, JSON.stringify(r.json)).toBe(201);
        return (r.json as { timeline_id: TimelineId }).timeline_id;
      };
      const t = server!.tenants.get(tid);
      // Three rounds of 20 keys, each checkpointed: versions to lose if a GC reached them.
      const fill = async (id: TimelineId, from: number, tag: string): Promise<number> => {
        const tl = t.getTimeline(id);
        let lsn = from;
        for (let round = 0; round < 3; round++) {
          for (let i = 0; i < 20; i++) {
            lsn += 8;
            tl.put(k(i), asLsn(lsn), imageValue(Buffer.from(`${tag}${i}r${round}`)));
          }
          tl.finishWrite(asLsn(lsn));
          await tl.checkpoint();
        }
        return lsn;
      };
      const a = await mk({ start_lsn: "0/1000" });
      const b = await mk({ start_lsn: "0/1000" });
      const aMid = await fill(a, 0x1000, "a");
      const bEnd = await fill(b, 0x1000, "b");
      const c = await mk({ ancestor_timeline_id: a, ancestor_start_lsn: lsnToString(asLsn(aMid)) });
      const cEnd = await fill(c, aMid, "c");
      const aEnd = await fill(a, aMid, "A");
      type Info = { latest_gc_cutoff_lsn: string; layers: { l0: number } };
      const info = async (id: TimelineId): Promise<Info> => (await call("GET", `/v1/tenant/${tid}/timeline/${id}`)).json as Info;
      const read = async (id: TimelineId, i: number, lsn: number): Promise<string> =>
        Buffer.from((await t.getTimeline(id).get(k(i), asLsn(lsn)))!).toString();
      const cutoff0 = (await info(a)).latest_gc_cutoff_lsn;
      const op = async (id: TimelineId, what: "compact" | "do_gc"): Promise<void> => {
        const path = `/v1/tenant/${tid}/timeline/${id}/${what === "compact" ? "compact?force_image_layer_creation=true" : "do_gc"}`;
        const r = await call("PUT", path, what === "do_gc" ? { gc_horizon: 0 } : undefined);
        expect(r.status, JSON.stringify(r.json)).toBe(200);
      };

      // The branch first: its parent and the unrelated timeline keep their L0s and history.
      await op(c, "compact");
      await op(c, "do_gc");
      expect((await info(c)).latest_gc_cutoff_lsn).toBe(lsnToString(asLsn(cEnd)));
      for (const id of [a, b]) {
        expect((await info(id)).latest_gc_cutoff_lsn).toBe(cutoff0);
        expect((await info(id)).layers.l0).toBeGreaterThan(0);
      }
      expect(await read(a, 3, 0x1000 + 8 * 4)).toBe("a3r0");
      expect(await read(a, 3, aEnd)).toBe("A3r2");
      expect(await read(b, 5, 0x1000 + 8 * 6)).toBe("b5r0");

      // The unrelated one: the other two keep theirs.
      await op(b, "compact");
      await op(b, "do_gc");
      expect((await info(b)).latest_gc_cutoff_lsn).toBe(lsnToString(asLsn(bEnd)));
      expect((await info(a)).latest_gc_cutoff_lsn).toBe(cutoff0);
      expect((await info(c)).latest_gc_cutoff_lsn).toBe(lsnToString(asLsn(cEnd)));
      expect(await read(a, 7, 0x1000 + 8 * 8)).toBe("a7r0");

      // The parent last: the others keep their cutoffs. (These keys are outside any PostgreSQL
      // directory, so a timeline's own image layers treat them as deleted: reads are checked
      // only on timelines not compacted yet; test/tenant.timeline.test.ts has a keyspace.)
      await op(a, "compact");
      await op(a, "do_gc");
      expect((await info(a)).latest_gc_cutoff_lsn).toBe(lsnToString(asLsn(aEnd)));
      expect((await info(b)).latest_gc_cutoff_lsn).toBe(lsnToString(asLsn(bEnd)));
      expect((await info(c)).latest_gc_cutoff_lsn).toBe(lsnToString(asLsn(cEnd)));
      await expectError(
        call("PUT", `/v1/tenant/${tid}/timeline/${generateTimelineId()}/do_gc`, { gc_horizon: 0 }),
        404,
        "not_found",
        "timeline",
      );
    });

    it("current_logical_size is null with the reason when it can't be computed, never a made-up 0", async () => {
      const tid = generateTenantId();
      expect((await call("POST", "/v1/tenant", { new_tenant_id: tid, config: QUIET })).status).toBe(201);
      const r = await call("POST", `/v1/tenant/${tid}/timeline`, { start_lsn: "0/2000" });
      expect(r.status).toBe(201);
      const id = (r.json as { timeline_id: TimelineId }).timeline_id;
      expect((r.json as { current_logical_size: number | null }).current_logical_size).toBe(0);
      const tl = server!.tenants.get(tid).getTimeline(id);
      // A database directory value that doesn't decode: the size can't be known.
      tl.put(DBDIR_KEY, asLsn(0x2008), imageValue(Buffer.from("not a directory")));
      tl.finishWrite(asLsn(0x2008));
      await new Promise((res) => setTimeout(res, 2100)); // the size is cached for 2 s
      const info = (await call("GET", `/v1/tenant/${tid}/timeline/${id}`)).json as Record<string, unknown>;
      expect(info["current_logical_size"]).toBeNull();
      expect(String(info["current_logical_size_error"])).not.toBe("");
    });

    it("branches with ancestor_timeline_id / ancestor_start_lsn; beyond the last LSN or below the GC cutoff is refused", async () => {
      const main = server!.tenants.get(tenantId).getTimeline(mainTl);
      const last = main.lastRecordLsn;
      // Write more so there is a branch point above the GC cutoff.
      main.put(k(1), asLsn(last + 8), imageValue(Buffer.from("v1!")));
      main.finishWrite(asLsn(last + 8));
      const r = await call("POST", `/v1/tenant/${tenantId}/timeline`, {
        ancestor_timeline_id: mainTl,
        ancestor_start_lsn: lsnToString(asLsn(last + 8)),
      });
      expect(r.status).toBe(201);
      const j = r.json as Record<string, unknown>;
      branchTl = j["timeline_id"] as string;
      expect(j).toMatchObject({
        ancestor_timeline_id: mainTl,
        ancestor_lsn: lsnToString(asLsn(last + 8)),
        last_record_lsn: lsnToString(asLsn(last + 8)),
      });
      // Without ancestor_start_lsn: at the ancestor's last record LSN.
      const r2 = await call("POST", `/v1/tenant/${tenantId}/timeline`, { ancestor_timeline_id: mainTl });
      expect(r2.status).toBe(201);
      expect((r2.json as Record<string, unknown>)["ancestor_lsn"]).toBe(lsnToString(asLsn(last + 8)));
      const beyond = lsnToString(asLsn(last + 0x100));
      await expectError(
        call("POST", `/v1/tenant/${tenantId}/timeline`, { ancestor_timeline_id: mainTl, ancestor_start_lsn: beyond }),
        400,
        "invalid_argument",
        `invalid branch start lsn ${beyond}: beyond the ancestor's last record LSN ${lsnToString(asLsn(last + 8))}`,
      );
      await expectError(
        call("POST", `/v1/tenant/${tenantId}/timeline`, { ancestor_timeline_id: mainTl, ancestor_start_lsn: "0/1000" }),
        406,
        "gc_cutoff",
        "less than latest GC cutoff",
      );
      await expectError(
        call("POST", `/v1/tenant/${tenantId}/timeline`, { ancestor_timeline_id: generateTimelineId() }),
        404,
        "not_found",
        "not found",
      );
      const list = await call("GET", `/v1/tenant/${tenantId}/timeline`);
      expect(list.status).toBe(200);
      expect((list.json as Array<{ timeline_id: string }>).map((t) => t.timeline_id).sort()).toEqual(
        [mainTl, branchTl, (r2.json as { timeline_id: string }).timeline_id].sort(),
      );
      expect(((await call("GET", `/v1/tenant/${tenantId}`)).json as { timelines: number }).timelines).toBe(3);
      // The branch reads its ancestor's data.
      const branch = server!.tenants.get(tenantId).getTimeline(branchTl as TimelineId);
      expect(Buffer.from((await branch.get(k(1), asLsn(last + 8)))!).toString()).toBe("v1!");
    });

    it("GET/PUT /v1/tenant/:id/config", async () => {
      const g = await call("GET", `/v1/tenant/${tenantId}/config`);
      expect(g.status).toBe(200);
      const gj = g.json as { overrides: Record<string, unknown>; effective: Record<string, unknown> };
      expect(gj.overrides).toMatchObject(QUIET);
      expect(gj.effective).toMatchObject({ compaction_threshold: 2, gc_period_ms: 0, checkpoint_distance_bytes: 256 * 1024 * 1024 });
      const p = await call("PUT", `/v1/tenant/${tenantId}/config`, { ...QUIET, checkpoint_distance: 1 << 20, wait_lsn_timeout: "5s" });
      expect(p.status).toBe(200);
      expect((p.json as { overrides: Record<string, unknown> }).overrides).toMatchObject({
        checkpoint_distance: 1 << 20,
        wait_lsn_timeout: "5s",
      });
      const g2 = (await call("GET", `/v1/tenant/${tenantId}/config`)).json as { effective: Record<string, unknown> };
      expect(g2.effective).toMatchObject({ checkpoint_distance_bytes: 1 << 20, wait_lsn_timeout_ms: 5000 });
      await expectError(
        call("PUT", `/v1/tenant/${tenantId}/config`, { bogus: true }),
        400,
        "invalid_argument",
        "unknown tenant config key 'bogus'",
      );
      await expectError(
        call("PUT", `/v1/tenant/${tenantId}/config`, { gc_period: "soon" }),
        400,
        "invalid_argument",
        'gc_period: invalid duration "soon"',
      );
      // A refused update changes nothing.
      const g3 = (await call("GET", `/v1/tenant/${tenantId}/config`)).json as { effective: Record<string, unknown> };
      expect(g3.effective).toEqual(g2.effective);
    });

    it("bad ids are 400 with a JSON {error, code}; unknown ones 404", async () => {
      await expectError(
        call("GET", "/v1/tenant/xyz"),
        400,
        "invalid_argument",
        'params.tenant_id: expected 32 lower-case hex characters, got "xyz"',
      );
      await expectError(
        call("GET", "/v1/tenant/%2E%2E%2Fetc"),
        400,
        "invalid_argument",
        'params.tenant_id: expected 32 lower-case hex characters, got "../etc"',
      );
      await expectError(
        call("GET", `/v1/tenant/${tenantId.toUpperCase()}`),
        400,
        "invalid_argument",
        "params.tenant_id: expected 32 lower-case hex characters",
      );
      await expectError(
        call("GET", `/v1/tenant/${tenantId}/timeline/xyz`),
        400,
        "invalid_argument",
        'params.timeline_id: expected 32 lower-case hex characters, got "xyz"',
      );
      await expectError(
        call("PUT", `/v1/tenant/${tenantId}/timeline/%2E%2E%2Fx/checkpoint`),
        400,
        "invalid_argument",
        'params.timeline_id: expected 32 lower-case hex characters, got "../x"',
      );
      await expectError(
        call("PUT", `/v1/tenant/xyz/timeline/${mainTl}/compact`),
        400,
        "invalid_argument",
        "params.tenant_id: expected 32 lower-case hex characters",
      );
      await expectError(call("GET", `/v1/tenant/${tenantId}/timeline/${generateTimelineId()}`), 404, "not_found", "not found");
      await expectError(call("PUT", `/v1/tenant/${tenantId}/timeline/${generateTimelineId()}/do_gc`), 404, "not_found", "not found");
      await expectError(call("GET", `/v1/tenant/${generateTenantId()}/timeline`), 404, "not_found", "not found");
      // A malformed escape is bad input too, not a dropped connection.
      await expectError(call("GET", "/v1/tenant/%zz"), 400, "invalid_argument", "malformed percent-encoding in path segment '%zz'");
      await expectError(call("GET", `/v1/tenant/${tenantId}/timeline/%E0%A4%A`), 400, "invalid_argument", "malformed percent-encoding");
    });

    it("unknown routes and methods are 404 JSON", async () => {
      await expectError(call("GET", "/v1/nope"), 404, "not_found", "no route for GET /v1/nope");
      await expectError(
        call("DELETE", `/v1/tenant/${tenantId}/config`),
        404,
        "not_found",
        `no route for DELETE /v1/tenant/${tenantId}/config`,
      );
      await expectError(call("POST", "/v1/status"), 404, "not_found", "no route for POST /v1/status");
      await expectError(call("GET", "/"), 404, "not_found", "no route");
    });

    it("malformed JSON is 400; bodies over 1 MiB are 413, URLs over 8 KiB 414; the connection stays usable", async () => {
      await expectError(call("POST", "/v1/tenant", undefined, "{not json"), 400, "invalid_argument", "request body is not valid JSON");
      await expectError(
        call("PUT", `/v1/tenant/${tenantId}/config`, undefined, "[1,"),
        400,
        "invalid_argument",
        "request body is not valid JSON",
      );
      const big = JSON.stringify({ config: { pad: "x".repeat(1024 * 1024) } });
      await expectError(call("POST", "/v1/tenant", undefined, big), 413, "payload_too_large", "request body larger than 1048576 bytes");
      // Exactly at the limit is read (and then judged on its content).
      const atLimit = `{"config":{"pad":"${"x".repeat(1024 * 1024 - 21)}"}}`;
      expect(Buffer.byteLength(atLimit)).toBe(1024 * 1024);
      await expectError(call("POST", "/v1/tenant", undefined, atLimit), 400, "invalid_argument", "unknown tenant config key 'pad'");
      // A 100 kB URL, on a route and off any route: 414, and the error does not echo it.
      const longId = "a".repeat(100_000);
      for (const path of [`/v1/tenant/${longId}`, `/nowhere/${longId}`, `/v1/status?${longId}`]) {
        const r = await call("GET", path);
        expect(r.status, path.slice(0, 20)).toBe(414);
        expect((r.json as ApiError).code).toBe("uri_too_long");
        expect(JSON.stringify(r.json).length).toBeLessThan(200);
      }
      // A bad id just under the URL limit is a 400 whose message is cut short.
      const r400 = await call("GET", `/v1/tenant/${"b".repeat(8000)}`);
      expect(r400.status).toBe(400);
      expect(JSON.stringify(r400.json).length).toBeLessThan(300);
      // One keep-alive connection: an oversized body, then a long URL, then a normal request.
      const replies = await rawExchange([
        `POST /v1/tenant HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n${big}`,
        `GET /v1/tenant/${longId} HTTP/1.1\r\nHost: x\r\n\r\n`,
        "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
      ]);
      expect(replies.map((x) => x.split(" ")[1])).toEqual(["413", "414", "200"]);
      // The server is still fine afterwards.
      expect((await call("GET", "/v1/status")).status).toBe(200);
    });

    it("the tenant limit is the client's problem: 429 naming max_tenants", async () => {
      const dir = mkdtempSync(join(tmpdir(), "ps-http-limit-"));
      const s = new Server(
        loadNodeConfig({ workdir: dir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", max_tenants: 2, http_server: adapter }),
        logs.logger,
      );
      const port = await s.start();
      try {
        const post = (): Promise<Response> => fetch(`http://127.0.0.1:${port}/v1/tenant`, { method: "POST", body: "{}" });
        expect((await post()).status).toBe(201);
        expect((await post()).status).toBe(201);
        const r = await post();
        expect(r.status).toBe(429);
        const e = (await r.json()) as ApiError;
        expect(e.code).toBe("limit_reached");
        expect(e.error).toContain("max_tenants");
        expect((await fetch(`http://127.0.0.1:${port}/v1/tenant`)).status).toBe(200);
      } finally {
        await s.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("/metrics is Prometheus text that promtool accepts", async () => {
      const r = await call("GET", "/metrics");
      expect(r.status).toBe(200);
      expect(r.type).toMatch(/^text\/plain/);
      const text = r.json as string;
      expect(typeof text).toBe("string");
      const sample =
        /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.]+([eE][-+]?[0-9]+)?|NaN|[+-]Inf)$/;
      const names = new Set<string>();
      for (const line of text.split("\n")) {
        if (line === "") continue;
        if (line.startsWith("# HELP ") || line.startsWith("# TYPE ")) {
          names.add(line.split(" ")[2]!);
          continue;
        }
        expect(line, "sample line").toMatch(sample);
      }
      for (const n of [
        "pageserver_page_cache_read_accesses_total",
        "pageserver_last_record_lsn",
        "pageserver_disk_consistent_lsn",
        "pageserver_layers",
        "pageserver_tenant_states",
        "pageserver_background_loop_rounds",
      ]) {
        expect(names.has(n), n).toBe(true);
      }
      expect(text).toContain(`pageserver_last_record_lsn{tenant_id="${tenantId}",timeline_id="${mainTl}"}`);
      const promtool = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 20_000 });
      expect(promtool.error, "promtool must be installed (apt-get install -y prometheus)").toBeUndefined();
      expect(promtool.status, `${promtool.stdout}${promtool.stderr}`).toBe(0);
    });

    it("stop, then a restart on the same workdir lists the same tenants and timelines", async () => {
      const before = (await call("GET", "/v1/tenant")).json as Array<{ id: string }>;
      const tlsBefore = (await call("GET", `/v1/tenant/${tenantId}/timeline`)).json as Array<Record<string, unknown>>;
      await server!.stop();
      server = null;
      // The listening socket is closed: no new connection is accepted.
      const port = Number(new URL(base).port);
      await expect(
        new Promise((resolve, reject) => {
          const sock = connect(port, "127.0.0.1", () => {
            sock.destroy();
            resolve("connected");
          });
          sock.once("error", reject);
        }),
      ).rejects.toThrow(/ECONNREFUSED/);
      server = await startServer();
      const after = (await call("GET", "/v1/tenant")).json as Array<{ id: string; state: string }>;
      expect(after.map((t) => t.id).sort()).toEqual(before.map((t) => t.id).sort());
      expect(after.every((t) => t.state === "Active")).toBe(true);
      const tlsAfter = (await call("GET", `/v1/tenant/${tenantId}/timeline`)).json as Array<Record<string, unknown>>;
      const pick = (t: Record<string, unknown>) => [t["timeline_id"], t["ancestor_timeline_id"], t["ancestor_lsn"], t["last_record_lsn"]];
      const byId = (a: Array<Record<string, unknown>>) => a.map(pick).sort((x, y) => String(x[0]).localeCompare(String(y[0])));
      expect(byId(tlsAfter)).toEqual(byId(tlsBefore));
      // stop() flushed everything: each timeline is durable up to its last record.
      for (const t of tlsAfter) expect(t["disk_consistent_lsn"]).toBe(t["last_record_lsn"]);
      // Data flushed at stop reads back after the restart.
      const main = server.tenants.get(tenantId).getTimeline(mainTl);
      const last = parseLsn(String(tlsBefore.find((t) => t["timeline_id"] === mainTl)!["last_record_lsn"]));
      expect(Buffer.from((await main.get(k(1), last))!).toString()).toBe("v1!");
      const conf = (await call("GET", `/v1/tenant/${tenantId}/config`)).json as { effective: Record<string, unknown> };
      expect(conf.effective).toMatchObject({ checkpoint_distance_bytes: 1 << 20, wait_lsn_timeout_ms: 5000 });
    });
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function exitOf(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    const t = setTimeout(() => reject(new Error(`process ${child.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

function startProcess(args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main/pageserver.ts", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return { child, output: () => out };
}

describe("pageserver process", () => {
  it("every bin in package.json is built from a source file that exists", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: Record<string, string> };
    expect(Object.keys(pkg.bin).length).toBeGreaterThan(0);
    for (const [name, file] of Object.entries(pkg.bin)) {
      const m = /^dist\/(src\/.+)\.js$/.exec(file);
      expect(m, `${name}: ${file} is not a built file of src/`).not.toBeNull();
      expect(existsSync(join(ROOT, `${m![1]}.ts`)), `${name}: ${m![1]}.ts does not exist`).toBe(true);
    }
  });

  it("serves /v1/status (on the server --http-server names, logged at startup) and exits 0 on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ps-proc-"));
    try {
      const port = await freePort();
      const { child, output } = startProcess([
        "--workdir",
        dir,
        "--listen",
        `127.0.0.1:${port}`,
        "--listen-pg",
        "127.0.0.1:0",
        "--page-cache-size",
        String(4 * 1024 * 1024),
        "--http-server",
        "node",
      ]);
      let up = false;
      for (let i = 0; i < 200 && !up; i++) {
        if (child.exitCode !== null) break;
        try {
          up = (await fetch(`http://127.0.0.1:${port}/v1/status`)).status === 200;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(up, output()).toBe(true);
      expect(((await (await fetch(`http://127.0.0.1:${port}/v1/status`)).json()) as { http_server: string }).http_server).toBe("node");
      expect(output()).toContain('"http_server":"node","http_server_why":"http_server is node"');
      const created = await fetch(`http://127.0.0.1:${port}/v1/tenant`, { method: "POST", body: "{}" });
      expect(created.status).toBe(201);
      child.kill("SIGTERM");
      expect(await exitOf(child, 20_000), output()).toEqual({ code: 0, signal: null });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a bad flag value exits 2 with a clear message on stderr", () => {
    const dir = mkdtempSync(join(tmpdir(), "ps-proc-"));
    try {
      const r = spawnSync(process.execPath, ["--import", "tsx", "src/main/pageserver.ts", "--workdir", dir, "--listen", "nope"], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 20_000,
      });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim()).toBe("pageserver: --listen: invalid listen address 'nope': expected HOST:PORT");
      const r2 = spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "src/main/pageserver.ts",
          "--workdir",
          dir,
          "--listen",
          "127.0.0.1:0",
          "--listen-pg",
          "127.0.0.1:0",
          "--page-cache-size",
          "1000",
        ],
        {
          cwd: ROOT,
          encoding: "utf8",
          timeout: 20_000,
        },
      );
      expect(r2.status, r2.stderr).toBe(2);
      expect(r2.stderr).toContain("pageserver: page cache size_bytes 1000 is not a multiple of 8192");
      expect(r2.stderr).not.toContain("    at ");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--http-server uws where uWS does not load is a startup error saying why (auto then serves on node:http)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ps-proc-"));
    // UWS_USE_FALLBACK stands in for a Node where no native build of uWebSockets.js loads.
    const env = { ...process.env, UWS_USE_FALLBACK: "1" };
    try {
      const r = spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "src/main/pageserver.ts",
          "--workdir",
          dir,
          "--listen",
          "127.0.0.1:0",
          "--listen-pg",
          "127.0.0.1:0",
          "--http-server",
          "uws",
        ],
        { cwd: ROOT, encoding: "utf8", timeout: 20_000, env },
      );
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toBe(
        "pageserver: http_server is uws but uWebSockets.js is not used: UWS_USE_FALLBACK is set and its pure-JS fallback is refused; use http_server auto or node\n",
      );
      const port = await freePort();
      const child = spawn(
        process.execPath,
        ["--import", "tsx", "src/main/pageserver.ts", "--workdir", dir, "--listen", `127.0.0.1:${port}`, "--listen-pg", "127.0.0.1:0"],
        { cwd: ROOT, stdio: "ignore", env },
      );
      children.push(child);
      let status: { http_server?: string } = {};
      for (let i = 0; i < 200 && status.http_server === undefined && child.exitCode === null; i++) {
        try {
          status = (await (await fetch(`http://127.0.0.1:${port}/v1/status`)).json()) as { http_server: string };
        } catch {
          await new Promise((res) => setTimeout(res, 100));
        }
      }
      expect(status.http_server).toBe("node");
      child.kill("SIGTERM");
      expect(await exitOf(child, 20_000)).toEqual({ code: 0, signal: null });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
