/**
 * JWT auth on the HTTP API (src/main/auth.ts, src/main/http/server.ts): a Server started with
 * an Ed25519 public key (and one with an RSA key). Every registered route (walked from the
 * server's own route table, so new routes are covered) × {no token, malformed, bad signature,
 * expired, wrong algorithm, unknown scope, tenant A's token on tenant B, a tenant token on a
 * management route, the tenant's own token, pageserverapi}: 401 for a token that doesn't
 * verify, 403 for one that doesn't cover the route, and otherwise the route's own answer.
 * A refused request changes nothing: the tenants and timelines are the same afterwards.
 * /metrics and /v1/status stay open.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { LogCapture } from "./support/log_check.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Auth } from "../src/main/auth.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { generateTenantId, type TenantId } from "../src/types/ids.js";

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
    const tls = (await req("GET", `/v1/tenant/${t}/timeline`, admin)).json as { timeline_id: string; last_record_lsn: string; wal_source: unknown }[];
    out.push(`${t}: ${tls.map((x) => `${x.timeline_id}@${x.last_record_lsn}/${JSON.stringify(x.wal_source)}`).sort().join(",")}`);
  }
  const cfg = (await req("GET", `/v1/tenant/${tenantA}/config`, admin)).json;
  return `${out.join("\n")}\n${JSON.stringify(cfg)}`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ps-auth-"));
  ed = generateKeyPairSync("ed25519");
  writeFileSync(join(dir, "ed25519.pem"), ed.publicKey.export({ type: "spki", format: "pem" }));
  const conf = loadNodeConfig({
    workdir: join(dir, "work"),
    listen: "127.0.0.1:0",
    listen_pg: "127.0.0.1:0",
    auth_public_key: join(dir, "ed25519.pem"),
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
    const routes = server.http.routes;
    expect(routes.length).toBeGreaterThan(10);
    let checked = 0;
    for (const r of routes) {
      const path = (tenant: TenantId, timeline: string) => r.pattern.replace(":tenant_id", tenant).replace(":timeline_id", timeline);
      const method = r.method.toUpperCase();
      const onA = path(tenantA, timelineA);
      const onB = path(tenantB, timelineB);
      const isTenantRoute = r.pattern.includes(":tenant_id");
      // Refused bodies: harmless if they did run, so a pass here can't hide a missing check.
      const body = method === "GET" ? undefined : {};
      for (const [what, tok] of unauthorized) {
        const res = await req(method, onA, tok, body);
        if (r.open) expect(res.status, `${what} ${method} ${r.pattern}`).not.toBe(401);
        else {
          expect(res.status, `${what} ${method} ${r.pattern}: ${JSON.stringify(res.json)}`).toBe(401);
          expect((res.json as { code: string }).code).toBe("unauthorized");
        }
        checked++;
      }
      if (r.open) continue;
      if (isTenantRoute) {
        const wrong = await req(method, onB, tokenA, body);
        expect(wrong.status, `tenant A's token on B: ${method} ${r.pattern}`).toBe(403);
        expect((wrong.json as { error: string }).error).toContain(`not ${tenantB}`);
      } else {
        const mgmt = await req(method, onA, tokenA, body);
        expect(mgmt.status, `tenant token on management route ${method} ${r.pattern}`).toBe(403);
        expect((mgmt.json as { code: string }).code).toBe("forbidden");
      }
      checked += 1;
    }
    expect(await snapshot(admin)).toBe(before);
    // Allowed: the route's own answer (read-only routes, so the state stays as it is).
    for (const r of routes.filter((x) => x.method === "get")) {
      const onA = r.pattern.replace(":tenant_id", tenantA).replace(":timeline_id", timelineA);
      for (const tok of r.pattern.includes(":tenant_id") ? [tokenA, admin] : [admin]) {
        const res = await req("GET", onA, tok);
        expect([401, 403], `${r.pattern}: ${JSON.stringify(res.json).slice(0, 200)}`).not.toContain(res.status);
        expect(res.status, `${r.pattern}: ${JSON.stringify(res.json).slice(0, 200)}`).toBeLessThan(500);
      }
    }
    expect(checked).toBeGreaterThan(routes.length * unauthorized.length);
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
    await expect(Auth.fromPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")).rejects.toThrow(/not an Ed25519 or RSA public key/);
    await expect(Auth.fromPublicKeyFile(join(dir, "missing.pem"))).rejects.toThrow(/cannot read/);
  });
});
