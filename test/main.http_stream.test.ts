/**
 * Streamed HTTP bodies (base backups use this path): many chunks of varied sizes, a client
 * that reads slowly so backpressure builds up, several responses at once. Every body must
 * arrive byte-exact with valid chunked framing; a client that goes away mid-body must not
 * leave the producer waiting forever.
 */
import { createHash } from "node:crypto";
import { request } from "node:http";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Type } from "@sinclair/typebox";
import { HttpServer } from "../src/main/http/http_server.js";
import { describeEachAdapter } from "./support/http_adapters.js";

const TOTAL_BYTES = 24 * 1024 * 1024;
let server: HttpServer;
let port = 0;
let producersFinished = 0;
let producersFailed = 0;

function body(seed: number): { chunks: Uint8Array[]; sha: string } {
  const chunks: Uint8Array[] = [];
  const h = createHash("sha256");
  let made = 0;
  let x = seed;
  while (made < TOTAL_BYTES) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const n = Math.min(TOTAL_BYTES - made, 1 + (x % 300_000));
    const c = new Uint8Array(n);
    for (let i = 0; i < n; i += 4096) c[i] = (x >>> (i % 24)) & 0xff;
    // Views into a larger buffer, as real producers hand out.
    const big = new Uint8Array(n + 16);
    big.set(c, 8);
    chunks.push(big.subarray(8, 8 + n));
    h.update(c);
    made += n;
  }
  return { chunks, sha: h.digest("hex") };
}

describeEachAdapter("streamed responses", (kind) => {
  beforeAll(async () => {
    producersFinished = 0;
    producersFailed = 0;
    server = new HttpServer(pino({ level: "silent" }), undefined, { kind, tls: null });
    const spec = {
      method: "get",
      path: "/stream/:seed",
      summary: "a streamed body",
      params: Type.Object({ seed: Type.String({ pattern: "^[0-9]+$" }) }),
      responses: { 200: { description: "bytes", contentType: "application/octet-stream" } },
    } as const;
    server.route(spec, (r) => {
      const { chunks } = body(Number(r.params["seed"]));
      return {
        status: 200,
        contentType: "application/octet-stream",
        produce: async (write) => {
          try {
            for (const c of chunks) await write(c);
            producersFinished++;
          } catch (e) {
            producersFailed++;
            throw e;
          }
        },
      };
    });
    port = await server.listen("127.0.0.1", 0);
  });
  afterAll(() => server.close());

  function fetchSlow(path: string, pauseEvery: number, abortAfterBytes = -1): Promise<{ sha: string; bytes: number; aborted: boolean }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path }, (res) => {
        const h = createHash("sha256");
        let bytes = 0;
        let n = 0;
        res.on("data", (d: Buffer) => {
          h.update(d);
          bytes += d.length;
          if (abortAfterBytes >= 0 && bytes >= abortAfterBytes) {
            req.destroy();
            resolve({ sha: "", bytes, aborted: true });
            return;
          }
          if (++n % pauseEvery === 0) {
            res.pause();
            setTimeout(() => res.resume(), 3);
          }
        });
        res.on("end", () => resolve({ sha: h.digest("hex"), bytes, aborted: false }));
        res.on("error", reject);
      });
      req.on("error", (e) => (abortAfterBytes >= 0 ? undefined : reject(e)));
      req.end();
    });
  }

  describe("each body", () => {
    it("arrive byte-exact under backpressure, several at once", async () => {
      const seeds = [1, 2, 3, 4];
      const results = await Promise.all(seeds.map((s, i) => fetchSlow(`/stream/${s}`, 5 + i * 7)));
      results.forEach((r, i) => {
        expect(r.bytes).toBe(TOTAL_BYTES);
        expect(r.sha).toBe(body(seeds[i]!).sha);
      });
      expect(producersFinished).toBe(seeds.length);
    });

    it("a client that goes away releases the producer", async () => {
      const before = producersFailed;
      const r = await fetchSlow("/stream/9", 3, 2 * 1024 * 1024);
      expect(r.aborted).toBe(true);
      const deadline = Date.now() + 10_000;
      while (producersFailed === before && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      expect(producersFailed).toBe(before + 1);
    });
  });
});
