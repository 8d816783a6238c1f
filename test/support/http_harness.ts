/**
 * Just the HTTP framework (src/main/http/http_server.ts) on one wire adapter, with a few routes
 * that exercise it: an open JSON echo, a management route with a JSON body (auth and body
 * limits), a raw reply with extra headers, a streamed body produced under backpressure, and the
 * producers' counters. In-process (`startHarness`) or as a script, so the conformance suite can
 * run uWS on the system's Node 20 when the test process runs a Node where uWS does not load:
 *
 *   node --import tsx test/support/http_harness.ts --adapter uws [--port N] [--tls CERT,KEY] [--auth-key PEM]
 *
 * The script prints `{"port":N}` once listening, exits 0 on SIGTERM after closing, and exits 2
 * with the error on stderr when it can't start (a taken port: the ConflictError naming it).
 */
import { pathToFileURL } from "node:url";
import { pino } from "pino";
import { Type } from "@sinclair/typebox";
import { Auth } from "../../src/main/auth.js";
import { HttpServer } from "../../src/main/http/http_server.js";
import type { HttpServerKind, HttpTls } from "../../src/main/http/wire.js";

export interface HarnessOptions {
  port: number;
  tls: HttpTls;
  /** PEM public key: auth on (the management route then needs a pageserverapi token). */
  auth_key_file: string | null;
}

/** What the stream producers did (GET /stats). */
interface Stats {
  finished: number;
  failed: number;
  produced_bytes: number;
}

/** The streamed body's chunk (varied sizes, content a function of the offset). */
const STREAM_CHUNK_MAX_BYTES = 256 * 1024;
export const RAW_BODY = "raw body\n";

/** Byte `i` of every streamed body. */
export function streamByte(i: number): number {
  return (i * 31 + (i >>> 13)) & 0xff;
}

export async function startHarness(kind: HttpServerKind, o: HarnessOptions): Promise<{ port: number; server: HttpServer }> {
  const server = new HttpServer(pino({ level: "silent" }), undefined, { kind, tls: o.tls });
  server.checkResponses = true;
  if (o.auth_key_file !== null) server.setAuth(await Auth.fromPublicKeyFile(o.auth_key_file));
  const stats: Stats = { finished: 0, failed: 0, produced_bytes: 0 };
  server.route(
    {
      method: "get",
      path: "/echo/:word",
      summary: "the word",
      open: true,
      params: Type.Object({ word: Type.String() }),
      responses: { 200: { description: "the word", schema: Type.Object({ word: Type.String() }) } },
    },
    (r) => ({ status: 200, json: { word: r.params["word"] } }),
  );
  server.route(
    {
      method: "post",
      path: "/body",
      summary: "the body's size",
      scope: "management",
      body: Type.Object({ pad: Type.String() }),
      responses: { 200: { description: "its size", schema: Type.Object({ length: Type.Number() }) } },
    },
    (r) => ({ status: 200, json: { length: r.body.pad.length } }),
  );
  server.route(
    {
      method: "get",
      path: "/raw",
      summary: "a raw reply with extra headers",
      open: true,
      responses: { 200: { description: "text", contentType: "text/plain" } },
    },
    () => ({ status: 200, contentType: "text/plain; charset=utf-8", headers: { "x-harness": "raw" }, body: RAW_BODY }),
  );
  server.route(
    {
      method: "get",
      path: "/stream/:bytes",
      summary: "a streamed body of that many bytes",
      open: true,
      params: Type.Object({ bytes: Type.String({ pattern: "^[0-9]{1,10}$" }) }),
      responses: { 200: { description: "bytes", contentType: "application/octet-stream" } },
    },
    (r) => {
      const total = Number(r.params["bytes"]);
      return {
        status: 200,
        contentType: "application/octet-stream",
        headers: { "x-harness": "stream" },
        produce: async (write) => {
          try {
            let made = 0;
            for (let n = 1; made < total; n++) {
              const size = Math.min(total - made, 1 + ((n * 7919) % STREAM_CHUNK_MAX_BYTES));
              const c = new Uint8Array(size);
              for (let i = 0; i < size; i++) c[i] = streamByte(made + i);
              await write(c);
              made += size;
              stats.produced_bytes += size;
            }
            stats.finished++;
          } catch (e) {
            stats.failed++;
            throw e;
          }
        },
      };
    },
  );
  server.route(
    {
      method: "get",
      path: "/stats",
      summary: "what the producers did",
      open: true,
      responses: {
        200: {
          description: "counters",
          schema: Type.Object({ finished: Type.Number(), failed: Type.Number(), produced_bytes: Type.Number(), kind: Type.String() }),
        },
      },
    },
    () => ({ status: 200, json: { ...stats, kind: server.kind } }),
  );
  return { port: await server.listen("127.0.0.1", o.port), server };
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i < 0 ? undefined : argv[i + 1];
  };
  const kind = arg("--adapter");
  if (kind !== "uws" && kind !== "node") throw new Error(`--adapter uws|node, got ${kind}`);
  const tls = arg("--tls")?.split(",");
  const { port, server } = await startHarness(kind, {
    port: Number(arg("--port") ?? 0),
    tls: tls === undefined ? null : { cert_file: tls[0]!, key_file: tls[1]! },
    auth_key_file: arg("--auth-key") ?? null,
  });
  process.stdout.write(`${JSON.stringify({ port, node: process.versions.node })}\n`);
  process.once("SIGTERM", () => {
    server.close();
    process.exit(0);
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`http_harness: ${(e as Error).message}\n`);
    process.exit(2);
  });
}
