/**
 * JWT auth on the HTTP API (src/main/auth.ts, src/main/http/http_server.ts): a Server started with
 * an Ed25519 public key (and one with an RSA key), with remote storage (so attach, detach and
 * remote_check exist). Every registered route (walked from the server's own route table, so
 * new routes are covered), with the scope the OpenAPI document states for it (x-scope) ×
 * {no token, malformed, bad signature, expired, wrong algorithm, unknown scope, tenant A's
 * token on tenant B, tenant A's token on A, pageserverapi}: 401 for a token that doesn't
 * verify, 403 for one that doesn't cover the route (a tenant token on a management route,
 * its own tenant's included), and otherwise the route's own answer. A refused request changes
 * nothing: the tenants and timelines are the same afterwards. /metrics and /v1/status stay open.
 *
 * Within tenant routes, what needs management: import_pgdata and wal_source in a creation,
 * node-protecting settings (throttle, frozen layers, L0 thresholds, wait_lsn_timeout,
 * compaction off, checkpoint_distance / gc_horizon / pitr_interval below the node's floors),
 * do_gc below the gc_horizon floor; a tenant token keeps its safe settings.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { LogCapture } from "./support/log_check.js";
import { describeEachAdapter } from "./support/http_adapters.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Auth } from "../src/main/auth.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { generateTenantId, type TenantId } from "../src/types/ids.js";
import { openApiPath } from "../src/main/http/openapi.js";

const logs = new LogCapture();

let dir: string;
let server: Server;
let base: string;
let ed: { privateKey: KeyObject; publicKey: KeyObject };
const tenantA = generateTenantId();
const tenantB = generateTenantId();
let timelineA = "";
let timelineB = "";

function sign(claims: Record<string, unknown>, opts: { key?: KeyObject; alg?: string; exp?: number } = {}): Promise<string> {
  const j = new SignJWT(claims).setProtectedHeader({ alg: opts.alg ?? "EdDSA" }).setIssuedAt();
  if (opts.exp !== undefined) j.setExpirationTime(opts.exp);
  return j.sign(opts.key ?? ed.privateKey);
}

async function req(method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers["authorization"] = `Bearer ${token}`;
  const r = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON (metrics)
  }
  return { status: r.status, json };
}

async function snapshot(admin: string): Promise<string> {
  const tenants = (await req("GET", "/v1/tenant", admin)).json as { id: string }[];
  const out: string[] = [];
  for (const t of tenants.map((x) => x.id).sort()) {
    const tls = (await req("GET", `/v1/tenant/${t}/timeline`, admin)).json as {
      timeline_id: string;
      last_record_lsn: string;
      wal_source: unknown;
    }[];
    out.push(
      `${t}: ${tls
        .map((x) => `${x.timeline_id}@${x.last_record_lsn}/${JSON.stringify(x.wal_source)}`)
        .sort()
        .join(",")}`,
    );
  }
  const cfg = (await req("GET", `/v1/tenant/${tenantA}/config`, admin)).json;
  return `${out.join("\n")}\n${JSON.stringify(cfg)}`;
}

describeEachAdapter("HTTP auth", (kind) => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ps-auth-"));
    ed = generateKeyPairSync("ed25519");
    writeFileSync(join(dir, "ed25519.pem"), ed.publicKey.export({ type: "spki", format: "pem" }));
    const conf = loadNodeConfig({
      workdir: join(dir, "work"),
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      auth_public_key: join(dir, "ed25519.pem"),
      http_server: kind,
      remote_storage: `file://${join(dir, "bucket")}`,
      tenant_min_checkpoint_distance: 1024 * 1024,
      tenant_min_gc_horizon: 1024 * 1024,
      tenant_min_pitr_interval: "1h",
      import_pgdata_root: dir,
      tenant_config: { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" },
    });
    server = new Server(conf, logs.logger);
    server.http.checkResponses = true;
    base = `http://127.0.0.1:${await server.start()}`;
    const admin = await sign({ scope: "pageserverapi" });
    for (const [t, set] of [
      [tenantA, (id: string) => (timelineA = id)],
      [tenantB, (id: string) => (timelineB = id)],
    ] as const) {
      expect((await req("POST", "/v1/tenant", admin, { new_tenant_id: t })).status).toBe(201);
      const tl = await req("POST", `/v1/tenant/${t}/timeline`, admin, { start_lsn: "0/1000000" });
      expect(tl.status).toBe(201);
      set((tl.json as { timeline_id: string }).timeline_id);
    }
  });

  afterAll(async () => {
    await server?.stop();
    logs.expectClean([]);
    rmSync(dir, { recursive: true, force: true });
  });

  describe("HTTP auth", () => {
    it("every route × every kind of token: 401 / 403 before the handler, the route's own answer otherwise", async () => {
      const admin = await sign({ scope: "pageserverapi" });
      const other = generateKeyPairSync("ed25519");
      const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const now = Math.floor(Date.now() / 1000);
      const unauthorized: [string, string | undefined][] = [
        ["no token", undefined],
        ["malformed", "not.a.jwt"],
        ["bad signature", await sign({ scope: "pageserverapi" }, { key: other.privateKey })],
        ["expired", await sign({ scope: "pageserverapi" }, { exp: now - 60 })],
        ["wrong algorithm (RS256 against an Ed25519 key)", await sign({ scope: "pageserverapi" }, { key: rsa.privateKey, alg: "RS256" })],
        ["unknown scope", await sign({ scope: "safekeeperdata" })],
        ["tenant scope without tenant_id", await sign({ scope: "tenant" })],
      ];
      const tokenA = await sign({ scope: "tenant", tenant_id: tenantA });
      const before = await snapshot(admin);
      const doc = (await req("GET", "/v1/openapi.json")).json as { paths: Record<string, Record<string, { "x-scope"?: string }>> };
      const routes = server.http.routes;
      expect(routes.length).toBeGreaterThan(10);
      // The routes that must be management whatever else changes (issue 16: attach/detach,
      // WAL sources, failpoints, tenants as a whole).
      const management = [
        "post /v1/tenant",
        "get /v1/tenant",
        "delete /v1/tenant/:tenant_id",
        "post /v1/tenant/:tenant_id/attach",
        "post /v1/tenant/:tenant_id/detach",
        "put /v1/tenant/:tenant_id/timeline/:timeline_id/wal_source",
        "delete /v1/tenant/:tenant_id/timeline/:timeline_id/wal_source",
        "get /v1/failpoints",
        "put /v1/failpoints",
      ];
      let checked = 0;
      for (const r of routes) {
        const scope = doc.paths[openApiPath(r.pattern)]?.[r.method]?.["x-scope"];
        expect(scope, `x-scope of ${r.method} ${r.pattern} in the OpenAPI document`).toBe(r.scope);
        if (management.includes(`${r.method} ${r.pattern}`)) expect(scope, `${r.method} ${r.pattern}`).toBe("management");
        const path = (tenant: TenantId, timeline: string) => r.pattern.replace(":tenant_id", tenant).replace(":timeline_id", timeline);
        const method = r.method.toUpperCase();
        const onA = path(tenantA, timelineA);
        const onB = path(tenantB, timelineB);
        // Bodies no route accepts: a request that passes auth stops at validation (400), so a
        // pass here can't hide a missing check and nothing changes.
        const body = method === "GET" ? undefined : { __not_a_field__: 1 };
        for (const [what, tok] of unauthorized) {
          const res = await req(method, onA, tok, body);
          if (scope === "open") expect(res.status, `${what} ${method} ${r.pattern}`).not.toBe(401);
          else {
            expect(res.status, `${what} ${method} ${r.pattern}: ${JSON.stringify(res.json)}`).toBe(401);
            expect((res.json as { code: string }).code).toBe("unauthorized");
          }
          checked++;
        }
        if (scope === "open") continue;
        const own = await req(method, onA, tokenA, body);
        if (scope === "tenant") {
          const wrong = await req(method, onB, tokenA, body);
          expect(wrong.status, `tenant A's token on B: ${method} ${r.pattern}`).toBe(403);
          expect((wrong.json as { error: string }).error).toContain(`not ${tenantB}`);
          expect([401, 403], `tenant A's token on A: ${method} ${r.pattern}: ${JSON.stringify(own.json)}`).not.toContain(own.status);
        } else {
          expect(own.status, `tenant token on management route ${method} ${r.pattern}`).toBe(403);
          expect((own.json as { code: string }).code).toBe("forbidden");
        }
        const asAdmin = await req(method, onA, admin, body);
        expect([401, 403], `pageserverapi: ${method} ${r.pattern}: ${JSON.stringify(asAdmin.json)}`).not.toContain(asAdmin.status);
        expect(asAdmin.status, `pageserverapi: ${method} ${r.pattern}: ${JSON.stringify(asAdmin.json)}`).toBeLessThan(500);
        checked += 3;
      }
      expect(await snapshot(admin)).toBe(before);
      // Allowed: the route's own answer (read-only routes, so the state stays as it is).
      for (const r of routes.filter((x) => x.method === "get" && x.scope !== "open")) {
        const onA = r.pattern.replace(":tenant_id", tenantA).replace(":timeline_id", timelineA);
        for (const tok of r.scope === "tenant" ? [tokenA, admin] : [admin]) {
          const res = await req("GET", onA, tok);
          expect([401, 403], `${r.pattern}: ${JSON.stringify(res.json).slice(0, 200)}`).not.toContain(res.status);
          expect(res.status, `${r.pattern}: ${JSON.stringify(res.json).slice(0, 200)}`).toBeLessThan(500);
        }
      }
      expect(checked).toBeGreaterThan(routes.length * unauthorized.length);
    });

    it("a tenant token can't attach (any generation) or detach, even its own tenant; pageserverapi can reach them", async () => {
      const tokenA = await sign({ scope: "tenant", tenant_id: tenantA });
      const fresh = generateTenantId();
      const tokenFresh = await sign({ scope: "tenant", tenant_id: fresh });
      const attach = await req("POST", `/v1/tenant/${fresh}/attach`, tokenFresh, { generation: 4294967295 });
      expect(attach.status, JSON.stringify(attach.json)).toBe(403);
      expect((await req("POST", `/v1/tenant/${tenantA}/detach`, tokenA)).status).toBe(403);
      expect((await req("GET", `/v1/tenant/${fresh}`, await sign({ scope: "pageserverapi" }))).status).toBe(404);
      expect((await req("GET", `/v1/tenant/${tenantA}`, tokenA)).json).toMatchObject({ state: "Active" });
    });

    it("within tenant routes: import_pgdata, wal_source and node-protecting settings need pageserverapi; safe settings don't", async () => {
      const tokenA = await sign({ scope: "tenant", tenant_id: tenantA });
      const admin = await sign({ scope: "pageserverapi" });
      const forbidden = async (method: string, path: string, body: unknown, what: string) => {
        const r = await req(method, path, tokenA, body);
        expect(r.status, `${what}: ${JSON.stringify(r.json)}`).toBe(403);
        expect((r.json as { code: string }).code).toBe("forbidden");
      };
      const tl = `/v1/tenant/${tenantA}/timeline`;
      await forbidden("POST", tl, { import_pgdata: join(dir, "nowhere") }, "import_pgdata");
      await forbidden("POST", tl, { wal_source: { connstr: "postgresql://postgres@127.0.0.1:1/postgres" } }, "wal_source in a creation");
      const cfg = `/v1/tenant/${tenantA}/config`;
      // The operator throttles the tenant; the tenant may send that back unchanged, not change it.
      expect(
        (await req("PUT", cfg, admin, { getpage_throttle_rps: 1000, compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" })).status,
      ).toBe(200);
      const base = { getpage_throttle_rps: 1000, compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" };
      for (const [what, change] of [
        ["getpage_throttle_rps", { getpage_throttle_rps: 0 }],
        ["getpage_throttle_burst", { getpage_throttle_burst: 100000 }],
        ["max_frozen_layers", { max_frozen_layers: 1000 }],
        ["l0_flush_delay_threshold", { l0_flush_delay_threshold: 0 }],
        ["l0_flush_stall_threshold", { l0_flush_stall_threshold: 10000 }],
        ["wait_lsn_timeout", { wait_lsn_timeout: "1h" }],
        ["checkpoint_distance below the floor", { checkpoint_distance: 8192 }],
        ["gc_horizon below the floor", { gc_horizon: 0 }],
        ["pitr_interval below the floor", { pitr_interval: "1s" }],
      ] as const) {
        await forbidden("PUT", cfg, { ...base, ...change }, what);
      }
      const overrides = (await req("GET", cfg, admin)).json;
      // compaction off: the operator's override is kept; a tenant can't turn it off itself.
      expect((await req("PUT", cfg, admin, { ...base, compaction_period: "20s" })).status).toBe(200);
      await forbidden("PUT", cfg, { ...base, compaction_period: 0 }, "compaction_period 0");
      // Safe settings, and node-protecting ones sent back unchanged: the tenant's own.
      const safe = await req("PUT", cfg, tokenA, {
        ...base,
        compaction_period: "20s",
        image_creation_threshold: 5,
        checkpoint_distance: 2 * 1024 * 1024,
        gc_horizon: 2 * 1024 * 1024,
        pitr_interval: "2h",
      });
      expect(safe.status, JSON.stringify(safe.json)).toBe(200);
      expect((await req("PUT", cfg, admin, base)).status).toBe(200);
      expect((await req("GET", cfg, admin)).json).toEqual(overrides);
      const gc = `/v1/tenant/${tenantA}/timeline/${timelineA}/do_gc`;
      await forbidden("PUT", gc, { gc_horizon: 0 }, "do_gc below the gc_horizon floor");
      expect((await req("PUT", gc, tokenA, { gc_horizon: 4 * 1024 * 1024 })).status).toBe(200);
      expect((await req("PUT", gc, admin, { gc_horizon: 0 })).status).toBe(200);
    });

    it("a tenant's own token reaches its routes; pageserverapi reaches management; /metrics and /v1/status need no token", async () => {
      const tokenA = await sign({ scope: "tenant", tenant_id: tenantA });
      const admin = await sign({ scope: "pageserverapi" });
      expect((await req("GET", `/v1/tenant/${tenantA}/timeline/${timelineA}`, tokenA)).status).toBe(200);
      expect((await req("PUT", `/v1/tenant/${tenantA}/timeline/${timelineA}/checkpoint`, tokenA)).status).toBe(200);
      expect((await req("GET", "/v1/tenant", admin)).status).toBe(200);
      expect((await req("GET", "/v1/tenant", tokenA)).status).toBe(403);
      expect((await req("GET", "/metrics")).status).toBe(200);
      expect((await req("GET", "/v1/status")).status).toBe(200);
      const created = generateTenantId();
      expect((await req("POST", "/v1/tenant", tokenA, { new_tenant_id: created })).status).toBe(403);
      expect((await req("GET", `/v1/tenant/${created}`, admin)).status).toBe(404);
    });

    it("RS256 keys work too; a key file that is not a public key is refused at startup", async () => {
      const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const auth = await Auth.fromPem(rsa.publicKey.export({ type: "spki", format: "pem" }) as string);
      const tok = await new SignJWT({ scope: "tenant", tenant_id: tenantA }).setProtectedHeader({ alg: "RS256" }).sign(rsa.privateKey);
      expect(await auth.verify(tok)).toEqual({ scope: "tenant", tenant_id: tenantA });
      const edTok = await sign({ scope: "pageserverapi" });
      await expect(auth.verify(edTok)).rejects.toThrow(/does not match the server key/);
      await expect(Auth.fromPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")).rejects.toThrow(
        /not an Ed25519 or RSA public key/,
      );
      await expect(Auth.fromPublicKeyFile(join(dir, "missing.pem"))).rejects.toThrow(/cannot read/);
    });
  });
});
