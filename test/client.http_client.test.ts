/**
 * PageserverHttpClient against a scripted HTTP server (node:http): how replies become results
 * or typed errors. The real server is exercised in test/cli.pagectl.test.ts; here the
 * replies a real server never sends (a proxy's HTML 502, a wrong shape, a stall) are made.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpApiError, PageserverHttpClient } from "../src/client/http_client.js";
import { ResponseShapeError } from "../src/client/reply_checks.js";

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;
let handler: Handler = (_req, _body, res) => res.end();
let server: Server;
let url: string;
const seen: { method: string; url: string; auth: string | undefined; body: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString();
    });
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", auth: req.headers.authorization, body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function reply(status: number, body: string, type = "application/json"): Handler {
  return (_req, _body, res) => {
    res.writeHead(status, { "content-type": type });
    res.end(body);
  };
}

async function failure(p: Promise<unknown>): Promise<HttpApiError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HttpApiError);
  return e as HttpApiError;
}

describe("PageserverHttpClient", () => {
  it("sends JSON bodies and the token as Bearer; returns checked shapes", async () => {
    const api = new PageserverHttpClient({ url: `${url}/`, token: "tok" });
    handler = reply(201, JSON.stringify({ id: "a".repeat(32) }));
    expect(await api.createTenant({ config: { gc_period: "0" } })).toEqual({ id: "a".repeat(32) });
    const last = seen.at(-1)!;
    expect(last).toMatchObject({ method: "POST", url: "/v1/tenant", auth: "Bearer tok" });
    expect(JSON.parse(last.body)).toEqual({ config: { gc_period: "0" } });

    handler = reply(200, JSON.stringify({ lsn: "0/16B3748", kind: "present" }));
    expect(await api.lsnByTimestamp("t", "l", "2026-01-01T00:00:00+01:00")).toEqual({ lsn: "0/16B3748", kind: "present" });
    // The timestamp is encoded ('+' would read as a space).
    expect(seen.at(-1)!.url).toBe("/v1/tenant/t/timeline/l/get_lsn_by_timestamp?timestamp=2026-01-01T00%3A00%3A00%2B01%3A00");
  });

  it("an error reply is an HttpApiError with the server's code and the status", async () => {
    const api = new PageserverHttpClient({ url });
    handler = reply(404, JSON.stringify({ error: "tenant x not found", code: "not_found" }));
    const e = await failure(api.getTenant("x"));
    expect(e).toMatchObject({ code: "not_found", status: 404, message: "tenant x not found" });

    // A code this client doesn't know, or no body: the code follows the status.
    handler = reply(409, JSON.stringify({ error: "busy", code: "brand_new_code" }));
    expect(await failure(api.getTenant("x"))).toMatchObject({ code: "conflict", status: 409, message: "busy" });
    handler = reply(502, "<html>Bad Gateway</html>", "text/html");
    const proxy = await failure(api.status());
    expect(proxy).toMatchObject({ code: "internal", status: 502 });
    expect(proxy.message).toMatch(/HTTP 502: <html>Bad Gateway/);
  });

  it("a reply of the wrong shape is a ResponseShapeError, not a silent misread", async () => {
    const api = new PageserverHttpClient({ url });
    handler = reply(200, JSON.stringify([{ id: 1 }]));
    await expect(api.listTenants()).rejects.toBeInstanceOf(ResponseShapeError);
    handler = reply(200, JSON.stringify({ lsn: "0/1", kind: "sometime" }));
    await expect(api.lsnByTimestamp("t", "l", "2026-01-01T00:00:00Z")).rejects.toThrow(/kind/);
    handler = reply(200, "not json");
    await expect(api.status()).rejects.toThrow(/not JSON/);
    handler = reply(200, "{}", "image/svg+xml");
    await expect(api.layerMapSvg("t", "l")).rejects.toThrow(/not SVG/);
  });

  it("an unreachable server or one that never answers: source_unavailable, status null", async () => {
    const down = new PageserverHttpClient({ url: "http://127.0.0.1:1" });
    expect(await failure(down.status())).toMatchObject({ code: "source_unavailable", status: null });

    handler = () => undefined; // never answers
    const slow = new PageserverHttpClient({ url, timeout_ms: 200 });
    const e = await failure(slow.status());
    expect(e).toMatchObject({ code: "source_unavailable", status: null });
    expect(e.message).toMatch(/no answer within 200 ms/);

    expect(() => new PageserverHttpClient({ url: "ftp://x" })).toThrow(/must be http/);
    expect(() => new PageserverHttpClient({ url: "not a url" })).toThrow(/invalid server URL/);
  });

  it("a base backup streams past the request timeout", async () => {
    handler = (_req, _body, res) => {
      res.writeHead(200, { "content-type": "application/x-tar", "content-length": "3000" });
      res.write(Buffer.alloc(1000, 1));
      setTimeout(() => res.write(Buffer.alloc(1000, 2)), 150);
      setTimeout(() => res.end(Buffer.alloc(1000, 3)), 300);
    };
    const api = new PageserverHttpClient({ url, timeout_ms: 100 });
    const r = await api.basebackup("t", "l", "0/16B3748");
    expect(r.size_bytes).toBe(3000);
    let n = 0;
    for await (const c of r.body) n += c.byteLength;
    expect(n).toBe(3000);
    expect(seen.at(-1)!.url).toBe("/v1/tenant/t/timeline/l/basebackup?lsn=0%2F16B3748");
  });
});
