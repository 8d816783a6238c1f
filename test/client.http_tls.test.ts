/**
 * PageserverHttpClient and pagectl over HTTPS verified against a CA file (issue 18): a
 * node:https server with a certificate for 127.0.0.1 made by openssl here. With the CA:
 * JSON replies, error replies (their code and status), a POST body, a streamed body, the
 * token sent. Without it (the system's roots), or with another CA: the server is unreachable
 * with a certificate error, and no request reaches it. pagectl's --ca-file and
 * PAGESERVER_CA_FILE give the CA; a missing CA file is a usage error.
 */
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpApiError, PageserverHttpClient } from "../src/client/http_client.js";
import { makeTestCerts, type TestCerts } from "./support/tls_certs.js";

const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));
const STATUS = { status: "ok", version: "0.1.0", git_commit: "abc", started_at: "2026-01-01T00:00:00.000Z", tls: true };
const TENANT = "0123456789abcdef0123456789abcdef";
const TIMELINE = "fedcba9876543210fedcba9876543210";

let certs: TestCerts;
let server: Server;
let url: string;
const seen: { method: string; url: string; auth: string | undefined; body: string }[] = [];

beforeAll(async () => {
  certs = makeTestCerts();
  server = createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString();
    });
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", auth: req.headers.authorization, body });
      if (req.url === "/v1/status") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(STATUS));
      } else if (req.method === "POST" && req.url === "/v1/tenant") {
        res.writeHead(201, { "content-type": "application/json" });
        res.end(JSON.stringify({ id: TENANT }));
      } else if (req.url?.endsWith("/basebackup")) {
        res.writeHead(200, { "content-type": "application/x-tar" });
        // Streamed in pieces (chunked): the client reads them as they come.
        for (let i = 0; i < 4; i++) res.write(Buffer.alloc(10_000, i));
        res.end();
      } else {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ code: "not_found", error: `no route ${req.url}` }));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  certs?.remove();
});

async function pagectl(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (env["PAGESERVER_CA_FILE"] === undefined) delete childEnv["PAGESERVER_CA_FILE"];
  const child = spawn(process.execPath, ["--import", "tsx", PAGECTL, ...args], { stdio: ["ignore", "pipe", "pipe"], env: childEnv });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number>((r) => child.once("close", (c) => r(c ?? -1)));
  return { code, stdout, stderr };
}

describe("PageserverHttpClient over HTTPS with a CA", () => {
  it("verifies the server against the CA: JSON, errors, a POST body, a streamed body, the token", async () => {
    const api = new PageserverHttpClient({ url, token: "t0k", ca: certs.ca });
    expect(await api.status()).toEqual(STATUS);
    expect(seen.at(-1)?.auth).toBe("Bearer t0k");
    expect(await api.createTenant({ new_tenant_id: TENANT })).toEqual({ id: TENANT });
    expect(JSON.parse(seen.at(-1)?.body ?? "")).toEqual({ new_tenant_id: TENANT });
    const e = await api.getTenant(TENANT).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HttpApiError);
    expect([(e as HttpApiError).code, (e as HttpApiError).status]).toEqual(["not_found", 404]);
    const tar = await api.basebackup(TENANT, TIMELINE);
    const chunks: Uint8Array[] = [];
    for await (const c of tar.body) chunks.push(c);
    const all = Buffer.concat(chunks);
    expect(all.length).toBe(40_000);
    expect([all[0], all[39_999]]).toEqual([0, 3]);
  });

  it("without the CA, or with another, the server is unreachable with a certificate error and sees no request", async () => {
    const before = seen.length;
    for (const api of [new PageserverHttpClient({ url }), new PageserverHttpClient({ url, ca: certs.other_ca })]) {
      const e = await api.status().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(HttpApiError);
      expect((e as HttpApiError).code).toBe("source_unavailable");
      expect((e as HttpApiError).message).toMatch(/cannot reach the pageserver at https:\/\/127\.0\.0\.1:\d+: .*(certificate|issuer)/);
    }
    expect(seen.length).toBe(before);
  });

  it("pagectl takes the CA from --ca-file or PAGESERVER_CA_FILE; a missing CA file is a usage error", async () => {
    const flag = await pagectl(["--server", url, "--ca-file", certs.ca_file, "--json", "status"]);
    expect(flag.code, flag.stderr).toBe(0);
    expect(JSON.parse(flag.stdout)).toEqual(STATUS);
    const env = await pagectl(["--server", url, "--json", "status"], { PAGESERVER_CA_FILE: certs.ca_file });
    expect(env.code, env.stderr).toBe(0);
    const none = await pagectl(["--server", url, "status"]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^pagectl: cannot reach the pageserver .*\(source_unavailable\)\n$/);
    const missing = await pagectl(["--server", url, "--ca-file", `${certs.dir}/nope.pem`, "status"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^pagectl: --ca-file .*nope\.pem: cannot read it \(ENOENT\) \(usage\)\n$/);
  }, 60_000);
});
