/**
 * Both HTTP wire adapters (src/main/http/wire.ts: uws_adapter.ts, node_adapter.ts) held to the
 * same behaviour through the HTTP framework and a few routes (test/support/http_harness.ts):
 * JSON and raw replies with extra headers, 404/400/414, 401 before the body, 413 before the
 * body with the connection kept, keep-alive, a streamed body under backpressure to a slow
 * reader (the producer waits for the client and stops when it goes away), a slow client that
 * holds no one up, exclusive listen (the ConflictError naming the port), TLS with a CA and a
 * certificate for 127.0.0.1 made by openssl here, and a clean stop.
 *
 * Targets, one describe each: uWS and node:http in this process, and uWS in the harness
 * spawned on the system's Node 20 (/usr/bin/node), so uWS stays covered when this process
 * runs a Node where no uWS build loads. A target that can't run here is skipped, its reason
 * printed (the only conditional). `UWS_USE_FALLBACK=1 npx vitest run <this file>` shows that
 * case on Node 20: uWS in-process is skipped, the harness still serves on uWS.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KNOWN_UWS_ABSENCE } from "./support/http_adapters.js";
import { uwsUnavailable } from "../src/main/http/adapter_choice.js";
import type { HttpServerKind, HttpTls } from "../src/main/http/wire.js";
import { type HarnessOptions, RAW_BODY, startHarness, streamByte } from "./support/http_harness.js";
import { within } from "./support/within.js";

const ROOT = new URL("..", import.meta.url).pathname;
const HARNESS = join(ROOT, "test/support/http_harness.ts");
const SYSTEM_NODE = "/usr/bin/node";

interface Running {
  port: number;
  stop(): Promise<void>;
}
interface Target {
  name: string;
  /** Why this target can't run here; null: it runs. */
  unavailable: string | null;
  start(o: HarnessOptions): Promise<Running>;
}

async function inProcess(kind: HttpServerKind, o: HarnessOptions): Promise<Running> {
  const { port, server } = await startHarness(kind, o);
  return {
    port,
    stop: async () => server.close(),
  };
}

/** The harness on the system's Node; rejects with its stderr when it exits before listening. */
function spawned(kind: HttpServerKind, o: HarnessOptions): Promise<Running> {
  const args = ["--import", "tsx", HARNESS, "--adapter", kind, "--port", String(o.port)];
  if (o.tls !== null) args.push("--tls", `${o.tls.cert_file},${o.tls.key_file}`);
  if (o.auth_key_file !== null) args.push("--auth-key", o.auth_key_file);
  // Without UWS_USE_FALLBACK, with which a run on Node 20 stands in for a Node where uWS does not load.
  const { UWS_USE_FALLBACK: _, ...env } = process.env;
  const child: ChildProcess = spawn(SYSTEM_NODE, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return within(
    new Promise<Running>((resolve, reject) => {
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const nl = out.indexOf("\n");
        if (nl < 0) return;
        const { port } = JSON.parse(out.slice(0, nl)) as { port: number };
        resolve({
          port,
          stop: async () => {
            child.kill("SIGTERM");
            await within(exited, "the harness exits on SIGTERM");
          },
        });
      });
      child.once("exit", (code) => reject(new Error(`harness exited ${code}: ${err}`)));
    }),
    "the harness listens",
  );
}

/** Why the system's Node 20 can't run the harness here, or null. */
function systemNode20Unavailable(): string | null {
  if (!existsSync(SYSTEM_NODE)) return `no ${SYSTEM_NODE}`;
  const v = spawnSync(SYSTEM_NODE, ["-p", "process.versions.node"], { encoding: "utf8" }).stdout.trim();
  return v.split(".")[0] === "20" ? null : `${SYSTEM_NODE} is Node ${v}, not 20`;
}

const TARGETS: Target[] = [
  { name: "uws in-process", unavailable: uwsUnavailable(), start: (o) => inProcess("uws", o) },
  { name: "node in-process", unavailable: null, start: (o) => inProcess("node", o) },
  { name: "uws in the harness on /usr/bin/node 20", unavailable: systemNode20Unavailable(), start: (o) => spawned("uws", o) },
];

const dir = mkdtempSync(join(tmpdir(), "ps-http-conformance-"));
let key: { privateKey: KeyObject; publicKey: KeyObject };
let tls: NonNullable<HttpTls>;
let ca: Buffer;

beforeAll(() => {
  key = generateKeyPairSync("ed25519");
  writeFileSync(join(dir, "auth.pem"), key.publicKey.export({ type: "spki", format: "pem" }));
  // A CA, and a server certificate for IP 127.0.0.1 it signed.
  const openssl = (args: string[]): void => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=conformance test CA"]);
  openssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
  openssl([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.crt",
    "-days",
    "1",
    "-extfile",
    "ext.cnf",
  ]);
  tls = { cert_file: join(dir, "server.crt"), key_file: join(dir, "server.key") };
  ca = readFileSync(join(dir, "ca.crt"));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const admin = (): Promise<string> => new SignJWT({ scope: "pageserverapi" }).setProtectedHeader({ alg: "EdDSA" }).sign(key.privateKey);

/** A raw connection (TLS with the test CA when `secure`). */
function rawConnect(port: number, secure = false): Socket {
  return secure ? tlsConnect({ host: "127.0.0.1", port, ca }) : connect(port, "127.0.0.1");
}

/**
 * Write `requests` one after another on ONE connection, each once the previous reply is in;
 * resolve with each reply's status and body, and whether the server closed the connection.
 * Replies here carry Content-Length.
 */
function exchange(
  port: number,
  requests: string[],
  o: { secure?: boolean; awaitClose?: boolean } = {},
): Promise<{ replies: { status: number; body: string }[]; closed: boolean }> {
  const secure = o.secure === true;
  return within(
    new Promise((resolve, reject) => {
      const sock = rawConnect(port, secure);
      const replies: { status: number; body: string }[] = [];
      let buf = "";
      let next = 0;
      const sendNext = (): void => {
        if (next < requests.length) sock.write(requests[next++]!);
        else if (o.awaitClose !== true) {
          sock.destroy();
          resolve({ replies, closed: false });
        }
      };
      sock.once(secure ? "secureConnect" : "connect", sendNext);
      sock.on("error", reject);
      sock.on("close", () => resolve({ replies, closed: true }));
      sock.on("data", (d: Buffer) => {
        buf += d.toString("latin1");
        for (;;) {
          const head = buf.indexOf("\r\n\r\n");
          if (head < 0) return;
          const m = /content-length: (\d+)/i.exec(buf.slice(0, head));
          const len = m === null ? 0 : Number(m[1]);
          if (buf.length < head + 4 + len) return;
          replies.push({ status: Number(buf.split(" ")[1]), body: buf.slice(head + 4, head + 4 + len) });
          buf = buf.slice(head + 4 + len);
          sendNext();
        }
      });
    }),
    "the exchange",
  );
}

/** A GET through node's client (https with the test CA when `secure`). */
function get(port: number, path: string, secure = false): Promise<{ res: IncomingMessage; body: Buffer }> {
  return within(
    new Promise((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)({ host: "127.0.0.1", port, path, ca, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => resolve({ res, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    }),
    `GET ${path}`,
  );
}

async function stats(port: number): Promise<{ finished: number; failed: number; produced_bytes: number; kind: string }> {
  return JSON.parse((await get(port, "/stats")).body.toString()) as {
    finished: number;
    failed: number;
    produced_bytes: number;
    kind: string;
  };
}

/** Poll until `f` holds (bounded). */
async function until(f: () => Promise<boolean>, what: string): Promise<void> {
  await within(
    (async () => {
      while (!(await f())) await new Promise((r) => setTimeout(r, 100));
    })(),
    what,
  );
}

/** Bytes of a streamed body that differ from the harness's pattern, from `offset` on. */
function mismatches(chunk: Buffer, offset: number): number {
  let bad = 0;
  for (let i = 0; i < chunk.length; i++) if (chunk[i] !== streamByte(offset + i)) bad++;
  return bad;
}

const post = (path: string, contentLength: number, headers: Record<string, string> = {}): string =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;

describe.each(TARGETS)("HTTP conformance: $name", (target) => {
  if (target.unavailable !== null) {
    // Only uWS in-process may be absent (Node 24 here), and only for the known reason; the
    // Node 20 harness then covers uWS. A missing harness node is a failure.
    const why = target.unavailable;
    it(`${target.name} does not load here, for the known reason: ${why}`, () => {
      expect(target.name).toBe("uws in-process");
      expect(why).toMatch(KNOWN_UWS_ABSENCE);
    });
    return;
  }
  let plain: Running;
  let secure: Running;

  beforeAll(async () => {
    plain = await target.start({ port: 0, tls: null, auth_key_file: join(dir, "auth.pem") });
    secure = await target.start({ port: 0, tls, auth_key_file: join(dir, "auth.pem") });
  });

  afterAll(async () => {
    await plain?.stop();
    await secure?.stop();
  });

  it("JSON and raw replies (with their extra headers), 404 JSON, 400 for a malformed escape", async () => {
    const kind = target.name.split(" ")[0];
    expect((await stats(plain.port)).kind).toBe(kind);
    const echo = await get(plain.port, "/echo/h%C3%A9llo");
    expect(echo.res.statusCode).toBe(200);
    expect(echo.res.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(echo.body.toString())).toEqual({ word: "héllo" });
    const raw = await get(plain.port, "/raw");
    expect(raw.res.statusCode).toBe(200);
    expect(raw.res.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(raw.res.headers["x-harness"]).toBe("raw");
    expect(raw.body.toString()).toBe(RAW_BODY);
    for (const path of ["/nowhere", "/echo", "/echo/a/b", "/raw/"]) {
      const r = await get(plain.port, path);
      expect(r.res.statusCode, path).toBe(404);
      expect(JSON.parse(r.body.toString())).toEqual({ error: `no route for GET ${path}`, code: "not_found" });
    }
    const bad = await get(plain.port, "/echo/%zz");
    expect(bad.res.statusCode).toBe(400);
    expect(JSON.parse(bad.body.toString())).toMatchObject({ code: "invalid_argument" });
    // A management route with a token and a body.
    const ok = await fetch(`http://127.0.0.1:${plain.port}/body`, {
      method: "POST",
      headers: { authorization: `Bearer ${await admin()}`, "content-type": "application/json" },
      body: JSON.stringify({ pad: "x".repeat(1000) }),
    });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ length: 1000 });
  });

  it("401 before the body: a head announcing 1 MiB − 1 without a token is answered and closed, no body byte sent", async () => {
    const r = await exchange(plain.port, [post("/body", 1024 * 1024 - 1)], { awaitClose: true });
    expect(r.replies.map((x) => x.status)).toEqual([401]);
    expect(JSON.parse(r.replies[0]!.body)).toMatchObject({ code: "unauthorized" });
    expect(r.closed).toBe(true);
  });

  it("413 before the body with a valid token; the body is dropped and the connection serves the next request", async () => {
    const big = 2 * 1024 * 1024;
    const r = await exchange(plain.port, [
      post("/body", big, { authorization: `Bearer ${await admin()}` }),
      `${"x".repeat(big)}GET /echo/after HTTP/1.1\r\nHost: x\r\n\r\n`,
    ]);
    expect(r.replies.map((x) => x.status)).toEqual([413, 200]);
    expect(JSON.parse(r.replies[0]!.body)).toMatchObject({ code: "payload_too_large" });
    expect(JSON.parse(r.replies[1]!.body)).toEqual({ word: "after" });
  });

  it("414 for a URL past 8 KiB, on a route and off any route; keep-alive across replies", async () => {
    const long = "a".repeat(9000);
    const r = await exchange(plain.port, [
      `GET /echo/${long} HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /nowhere/${long} HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /echo/one HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /echo/two HTTP/1.1\r\nHost: x\r\n\r\n`,
    ]);
    expect(r.replies.map((x) => x.status)).toEqual([414, 414, 200, 200]);
    expect(JSON.parse(r.replies[0]!.body)).toMatchObject({ code: "uri_too_long" });
    expect(r.closed).toBe(false);
  });

  it("a streamed body: the producer waits while the client doesn't read, and all of it arrives byte-exact to a slow reader", async () => {
    const total = 96 * 1024 * 1024;
    const before = await stats(plain.port);
    let stalled = 0;
    const result = await within(
      new Promise<{ bytes: number; bad: number }>((resolve, reject) => {
        const req = httpRequest({ host: "127.0.0.1", port: plain.port, path: `/stream/${total}`, agent: false }, (res) => {
          expect(res.headers["x-harness"]).toBe("stream");
          let bytes = 0;
          let bad = 0;
          let paused = false;
          res.on("data", (d: Buffer) => {
            bad += mismatches(d, bytes);
            bytes += d.length;
            if (!paused && bytes >= 1024 * 1024) {
              // Stop reading; wait until the producer stops too, then read slowly to the end.
              paused = true;
              res.pause();
              void (async () => {
                let last = -1;
                let same = 0;
                await until(async () => {
                  const p = (await stats(plain.port)).produced_bytes - before.produced_bytes;
                  same = p === last ? same + 1 : 0;
                  last = p;
                  return same >= 5;
                }, "the producer stops while the client doesn't read");
                stalled = last;
                res.resume();
              })().catch(reject);
            }
          });
          res.on("end", () => resolve({ bytes, bad }));
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end();
      }),
      "the streamed body",
      120_000,
    );
    expect(result).toEqual({ bytes: total, bad: 0 });
    // Bounded: the adapter's queue and the sockets' buffers, far from the whole body.
    expect(stalled).toBeGreaterThan(0);
    expect(stalled).toBeLessThan(total / 2);
    await until(async () => (await stats(plain.port)).finished === before.finished + 1, "the producer finishes");
  });

  it("a client that goes away mid-stream stops the producer", async () => {
    const before = await stats(plain.port);
    await within(
      new Promise<void>((resolve, reject) => {
        const req = httpRequest({ host: "127.0.0.1", port: plain.port, path: `/stream/${512 * 1024 * 1024}`, agent: false }, (res) => {
          let bytes = 0;
          res.on("data", (d: Buffer) => {
            bytes += d.length;
            if (bytes >= 2 * 1024 * 1024) {
              req.destroy();
              resolve();
            }
          });
        });
        req.on("error", () => undefined);
        req.on("close", () => resolve());
        req.once("error", reject);
        req.end();
      }),
      "part of the body",
    );
    await until(async () => (await stats(plain.port)).failed === before.failed + 1, "the producer ends at its next write");
    expect((await stats(plain.port)).finished).toBe(before.finished);
  });

  it("a slow client (its head never completes) holds no one up and is closed by the server", async () => {
    const slow = rawConnect(plain.port);
    const closed = new Promise<void>((resolve) => slow.once("close", () => resolve()));
    slow.on("error", () => undefined);
    // Read what the server sends (node: a 408; uWS: nothing): the close is seen only once the FIN is read.
    slow.resume();
    slow.write("GET /echo/slow HTTP/1.1\r\nHost: x\r\n");
    const other = await get(plain.port, "/echo/other");
    expect(other.res.statusCode).toBe(200);
    await within(closed, "the server closes the slow client");
  });

  it("TLS: JSON, a 401 before the body and a streamed body over https with the test CA", async () => {
    const echo = await get(secure.port, "/echo/tls", true);
    expect(echo.res.statusCode).toBe(200);
    expect(JSON.parse(echo.body.toString())).toEqual({ word: "tls" });
    const r = await exchange(secure.port, [post("/body", 1000)], { secure: true, awaitClose: true });
    expect(r.replies.map((x) => x.status)).toEqual([401]);
    const total = 8 * 1024 * 1024;
    const s = await get(secure.port, `/stream/${total}`, true);
    expect(s.body.length).toBe(total);
    expect(mismatches(s.body, 0)).toBe(0);
  });

  it("exclusive listen: a second server on the port fails with the ConflictError naming it; stop frees the port", async () => {
    const first = await target.start({ port: 0, tls: null, auth_key_file: null });
    await expect(target.start({ port: first.port, tls: null, auth_key_file: null })).rejects.toThrow(
      `cannot listen on 127.0.0.1:${first.port} (HTTP API): the port is in use`,
    );
    expect((await get(first.port, "/echo/still")).res.statusCode).toBe(200);
    await first.stop();
    const refused = await within(
      new Promise<string>((resolve) => {
        const s = connect(first.port, "127.0.0.1");
        s.on("connect", () => {
          s.destroy();
          resolve("connected");
        });
        s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      }),
      "a connection after stop",
    );
    expect(refused).toBe("ECONNREFUSED");
  });
});
