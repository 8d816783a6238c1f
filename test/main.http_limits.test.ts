/**
 * Bounded HTTP clients (issue 16 item 8 and the "smaller" items): in-process Servers, raw
 * sockets where the order of bytes matters.
 * - the token is checked before the body: a request announcing 1 MiB − 1 of body gets its 401
 *   without sending a byte of it (200 such connections hold no body memory), and its
 *   connection is closed; an authenticated one announcing too much gets its 413 the same way;
 * - the node-wide in-flight body budget (http_max_inflight_body_bytes) and the in-flight
 *   request cap (http_max_inflight_requests) answer 429 beyond them, before the body, and
 *   free their share when a client goes away;
 * - deeply nested JSON is a 400, not a 500 "Maximum call stack size exceeded";
 * - a 500 reply never names where the node keeps its files (a path is cut to `…/<file>`);
 * - a WARN at startup for each listener beyond loopback while auth is off.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { generateTenantId } from "../src/types/ids.js";
import { LogCapture } from "./support/log_check.js";
import { within } from "./support/within.js";
import { describeEachAdapter } from "./support/http_adapters.js";
import type { HttpServerKind } from "../src/main/http/wire.js";

const logs = new LogCapture();
const dirs: string[] = [];
const servers: Server[] = [];
const sockets: Socket[] = [];
const BODY = 1024 * 1024 - 1;
/** The adapter of the describe running (describeEachAdapter). */
let adapter: HttpServerKind = "node";

async function start(extra: Parameters<typeof loadNodeConfig>[0] = {}): Promise<{ server: Server; port: number; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), "ps-http-limits-"));
  dirs.push(dir);
  const server = new Server(
    loadNodeConfig({
      workdir: join(dir, "work"),
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      tenant_config: { compaction_period: 0, gc_period: 0 },
      http_server: adapter,
      ...extra,
    }),
    logs.logger,
  );
  servers.push(server);
  return { server, port: await server.start(), dir };
}

/** A connection that sent `head` (and maybe part of a body); resolves its first reply's status line, or "closed". */
function rawRequest(port: number, head: string): { sock: Socket; reply: Promise<{ status: number; text: string; closed: Promise<void> }> } {
  const sock = connect(port, "127.0.0.1");
  sockets.push(sock);
  sock.write(head);
  const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
  const reply = new Promise<{ status: number; text: string; closed: Promise<void> }>((resolve, reject) => {
    let text = "";
    sock.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0 && text.includes("}")) resolve({ status: Number(text.split(" ")[1]), text, closed });
    });
    sock.on("error", reject);
    sock.once("close", () => reject(new Error(`closed without a reply: ${JSON.stringify(text.slice(0, 200))}`)));
  });
  // Held connections that the test ends itself never get a reply: not an unhandled rejection.
  reply.catch(() => undefined);
  return { sock, reply };
}

function post(path: string, contentLength: number, headers: Record<string, string> = {}): string {
  const h = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  return `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${h}Content-Length: ${contentLength}\r\n\r\n`;
}

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  logs.expectClean([/request failed with an unexpected error/, /listening beyond loopback with auth off/]);
});

describeEachAdapter("HTTP limits", (kind) => {
  beforeAll(() => {
    adapter = kind;
  });

  describe("auth and size before the body", () => {
    let key: { privateKey: KeyObject; publicKey: KeyObject };
    const authed = async () => {
      key = generateKeyPairSync("ed25519");
      const d = mkdtempSync(join(tmpdir(), "ps-http-key-"));
      dirs.push(d);
      writeFileSync(join(d, "key.pem"), key.publicKey.export({ type: "spki", format: "pem" }));
      return start({ auth_public_key: join(d, "key.pem") });
    };

    it("200 connections announcing 1 MiB − 1 of body without a token: each a 401 before any body byte, closed, no body held", async () => {
      const { server, port } = await authed();
      const conns = Array.from({ length: 200 }, () => rawRequest(port, post("/v1/tenant", BODY)));
      const replies = await within(Promise.all(conns.map((c) => c.reply)), "200 replies without bodies");
      for (const r of replies) {
        expect(r.status).toBe(401);
        expect(r.text).toContain('"code":"unauthorized"');
      }
      await within(Promise.all(replies.map((r) => r.closed)), "the server closes them");
      expect(server.http.load).toEqual({ requests: 0, body_bytes: 0 });
      // A bad token is refused the same way.
      const bad = rawRequest(port, post("/v1/tenant", BODY, { Authorization: "Bearer not.a.jwt" }));
      expect((await within(bad.reply, "bad token")).status).toBe(401);
    });

    it("a valid token announcing more than 1 MiB: 413 before the body; the connection stays usable (the body is dropped)", async () => {
      const { port } = await authed();
      const token = await new SignJWT({ scope: "pageserverapi" }).setProtectedHeader({ alg: "EdDSA" }).sign(key.privateKey);
      const big = rawRequest(port, post("/v1/tenant", 4 * 1024 * 1024, { Authorization: `Bearer ${token}` }));
      const r = await within(big.reply, "413 before the body");
      expect(r.status).toBe(413);
      expect(r.text).toContain('"code":"payload_too_large"');
      // A tenant-scoped token on a management route is a 403 before the body too.
      const tenantToken = await new SignJWT({ scope: "tenant", tenant_id: generateTenantId() })
        .setProtectedHeader({ alg: "EdDSA" })
        .sign(key.privateKey);
      const forbidden = rawRequest(port, post("/v1/tenant", BODY, { Authorization: `Bearer ${tenantToken}` }));
      expect((await within(forbidden.reply, "403 before the body")).status).toBe(403);
    });
  });

  describe("in-flight bounds", () => {
    it("the body budget: a request whose Content-Length doesn't fit is 429 before its body; a client that goes away frees its share", async () => {
      const { server, port } = await start({ http_max_inflight_body_bytes: 1536 * 1024 });
      const first = rawRequest(port, `${post("/v1/tenant", BODY)}{"config":`);
      await within(
        (async () => {
          while (server.http.load.body_bytes < BODY) await new Promise((r) => setTimeout(r, 10));
        })(),
        "the first body is admitted",
      );
      const second = rawRequest(port, post("/v1/tenant", BODY));
      const r = await within(second.reply, "429 before the body");
      expect(r.status).toBe(429);
      expect(r.text).toContain("http_max_inflight_body_bytes");
      expect(server.http.load.body_bytes).toBeLessThanOrEqual(1536 * 1024);
      first.sock.destroy();
      await within(
        (async () => {
          while (server.http.load.requests > 0 || server.http.load.body_bytes > 0) await new Promise((r) => setTimeout(r, 10));
        })(),
        "the aborted request's share is freed",
      );
      const third = rawRequest(port, `${post("/v1/tenant", 2)}{}`);
      expect((await within(third.reply, "a body fits again")).status).toBe(201);
    });

    it("the request cap: beyond http_max_inflight_requests a request is 429 and its connection closed", async () => {
      const { server, port } = await start({ http_max_inflight_requests: 2 });
      const held = [rawRequest(port, `${post("/v1/tenant", 100)}{`), rawRequest(port, `${post("/v1/tenant", 100)}{`)];
      await within(
        (async () => {
          while (server.http.load.requests < 2) await new Promise((r) => setTimeout(r, 10));
        })(),
        "two requests in flight",
      );
      const over = rawRequest(port, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n");
      const r = await within(over.reply, "429 over the cap");
      expect(r.status).toBe(429);
      expect(r.text).toContain("http_max_inflight_requests");
      await within(r.closed, "closed after the 429");
      for (const h of held) h.sock.destroy();
      await within(
        (async () => {
          while (server.http.load.requests > 0) await new Promise((r) => setTimeout(r, 10));
        })(),
        "the held requests end with their clients",
      );
      expect((await fetch(`http://127.0.0.1:${port}/v1/status`)).status).toBe(200);
    });
  });

  describe("error replies", () => {
    it("deeply nested JSON is a 400 naming the depth, not a 500 (and no ERROR line)", async () => {
      const { port } = await start();
      const before = logs.lines.filter((l) => l.level >= 50).length;
      for (const body of ["[".repeat(100_000) + "]".repeat(100_000), `{"config":${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}}`]) {
        const r = await fetch(`http://127.0.0.1:${port}/v1/tenant`, { method: "POST", body });
        const json = (await r.json()) as { code: string; error: string };
        expect(r.status, JSON.stringify(json).slice(0, 200)).toBe(400);
        expect(json.code).toBe("invalid_argument");
        expect(json.error).toContain("nests deeper than 64 levels");
      }
      // 64 levels are fine (and then judged on their content).
      const ok = await fetch(`http://127.0.0.1:${port}/v1/tenant`, {
        method: "POST",
        body: `{"config":{"pad":${"[".repeat(62)}${"]".repeat(62)}}}`,
      });
      expect(ok.status).toBe(400);
      expect(((await ok.json()) as { error: string }).error).toContain("unknown tenant config key 'pad'");
      expect(logs.lines.filter((l) => l.level >= 50).length).toBe(before);
    });

    it("a 500 does not echo the node's paths (the log has them)", async () => {
      const { port, dir } = await start();
      const base = `http://127.0.0.1:${port}`;
      const tenant = generateTenantId();
      expect((await fetch(`${base}/v1/tenant`, { method: "POST", body: JSON.stringify({ new_tenant_id: tenant }) })).status).toBe(201);
      // The tenant's directory vanishes under it: writing its config fails inside the node.
      rmSync(join(dir, "work", "tenants", tenant), { recursive: true, force: true });
      const r = await fetch(`${base}/v1/tenant/${tenant}/config`, { method: "PUT", body: JSON.stringify({ gc_horizon: 1 }) });
      const text = await r.text();
      expect(r.status).toBe(500);
      expect(text).not.toContain(dir);
      expect(text).not.toContain(tmpdir());
      expect(text).toContain("…/config.json");
      expect(JSON.stringify(logs.lines.filter((l) => l.level >= 50).map((l) => l.raw))).toContain(join(dir, "work", "tenants", tenant));
    });
  });

  describe("exposure", () => {
    it("a listener beyond loopback with auth off is a WARN at startup; loopback or auth on is not", async () => {
      const count = () => logs.lines.filter((l) => l.msg.includes("listening beyond loopback with auth off")).length;
      const before = count();
      await start();
      expect(count()).toBe(before);
      await start({ listen: "0.0.0.0:0" });
      expect(count()).toBe(before + 1);
      const warned = logs.lines.filter((l) => l.msg.includes("listening beyond loopback with auth off")).at(-1)!;
      expect(warned.level).toBe(40);
      expect(warned.raw).toMatchObject({ listener: "listen (HTTP)", host: "0.0.0.0" });
      const key = generateKeyPairSync("ed25519");
      const d = mkdtempSync(join(tmpdir(), "ps-http-key-"));
      dirs.push(d);
      writeFileSync(join(d, "key.pem"), key.publicKey.export({ type: "spki", format: "pem" }));
      await start({ listen: "0.0.0.0:0", listen_pg: "0.0.0.0:0", auth_public_key: join(d, "key.pem") });
      expect(count()).toBe(before + 1);
    });
  });
});
