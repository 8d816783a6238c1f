/**
 * `npm run bench -- metrics`: the cost of one /metrics scrape on a node with many tenants. An
 * in-process Server (no PostgreSQL) gets tenants of one timeline each, every timeline holding
 * one flushed L0 file (a handful of page images at one LSN, checkpointed); nothing stays in
 * memory after the checkpoint, so 10,000 tenants cost metadata and one small file each.
 *
 * At each size in METRICS_BENCH_TENANTS (default 1,000 then 10,000: the second size adds
 * tenants to the first's), four scrapes are timed, each the median of SCRAPES runs of what
 * GET /metrics does (metricsReply: the registry's text, gzipped on libuv's pool when asked):
 *   per-timeline on / plain  (the defaults: the peer of every other row)
 *   per-timeline on / gzip   (what Prometheus asks for)
 *   per-timeline off / plain and off / gzip (metrics_per_timeline false)
 * with, for each, the text's size, the gzipped size and the series (sample lines). A last row
 * per size compares gzip levels: METRICS_GZIP_LEVEL against zlib's default 6 on the same text.
 * Bounded: tenants are created BATCH at a time; the server stops and the workdir goes in finally.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { pino } from "pino";
import { loadNodeConfig } from "../src/main/config.js";
import { METRICS_GZIP_LEVEL, metricsReply } from "../src/main/metrics.js";
import { Server } from "../src/main/server.js";
import { makeKey } from "../src/types/key.js";
import { asLsn } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { type BenchRow, row } from "./harness.js";

const SIZES = (process.env["METRICS_BENCH_TENANTS"] ?? "1000,10000").split(",").map(Number);
/** Scrapes per measurement: fewer at the large size, where one takes most of a second. */
const scrapesAt = (tenants: number): number => (tenants >= 5000 ? 5 : 11);
/** Tenants set up at once (each writes its metadata and flushes one layer). */
const BATCH = 50;
const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" };
const MIB = 1024 * 1024;

interface Scrape {
  ms: number;
  textBytes: number;
  gzipBytes: number;
  series: number;
}

export default async function run(): Promise<BenchRow[]> {
  for (const n of SIZES) if (!(Number.isSafeInteger(n) && n > 0)) throw new Error(`METRICS_BENCH_TENANTS: bad size ${n}`);
  const max = Math.max(...SIZES);
  const dir = mkdtempSync(join(tmpdir(), "ps-bench-metrics-"));
  const server = new Server(
    loadNodeConfig({ workdir: dir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", max_tenants: max }),
    pino({ level: "silent" }),
  );
  const rows: BenchRow[] = [];
  try {
    await server.start();
    const registry = server.metrics;
    let have = 0;
    for (const tenants of [...SIZES].sort((a, b) => a - b)) {
      const t0 = performance.now();
      await addTenants(server, tenants - have);
      have = tenants;
      console.log(
        `${tenants} tenants set up (+${((performance.now() - t0) / 1000).toFixed(1)} s), RSS ${(process.memoryUsage().rss / MIB).toFixed(0)} MiB`,
      );

      const measure = async (perTimeline: boolean, gzip: boolean): Promise<Scrape> => {
        registry.perTimeline = perTimeline;
        // One unmeasured scrape: the mode switch resets counters, which the next scrape fills.
        await metricsReply(registry, undefined);
        const n = scrapesAt(tenants);
        const times: number[] = [];
        let body: string | Uint8Array = "";
        for (let i = 0; i < n; i++) {
          const s = performance.now();
          body = (await metricsReply(registry, gzip ? "gzip" : undefined)).body;
          times.push(performance.now() - s);
        }
        times.sort((a, b) => a - b);
        const text = gzip ? "" : (body as string);
        return {
          ms: times[Math.floor(n / 2)]!,
          textBytes: Buffer.byteLength(text),
          gzipBytes: gzip ? body.length : 0,
          series: text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).length,
        };
      };
      const onPlain = await measure(true, false);
      const onGzip = await measure(true, true);
      const offPlain = await measure(false, false);
      const offGzip = await measure(false, true);
      const peer = "per-timeline on, plain (defaults)";
      const what = `${tenants} tenants x 1 timeline`;
      rows.push(
        row(`scrape, ${what}, per-timeline on, plain (median of ${scrapesAt(tenants)})`, "ms", onPlain.ms),
        row(`scrape, ${what}, per-timeline on, gzip`, "ms", onGzip.ms, peer, onPlain.ms),
        row(`scrape, ${what}, per-timeline off, plain`, "ms", offPlain.ms, peer, onPlain.ms),
        row(`scrape, ${what}, per-timeline off, gzip`, "ms", offGzip.ms, peer, onPlain.ms),
        row(`size, ${what}, per-timeline on, plain`, "MiB", onPlain.textBytes / MIB),
        row(`size, ${what}, per-timeline on, gzip`, "MiB", onGzip.gzipBytes / MIB, peer, onPlain.textBytes / MIB),
        row(`size, ${what}, per-timeline off, plain`, "MiB", offPlain.textBytes / MIB, peer, onPlain.textBytes / MIB),
        row(`size, ${what}, per-timeline off, gzip`, "MiB", offGzip.gzipBytes / MIB, peer, onPlain.textBytes / MIB),
        row(`series, ${what}, per-timeline on`, "series", onPlain.series),
        row(`series, ${what}, per-timeline off`, "series", offPlain.series, "per-timeline on (default)", onPlain.series),
      );
      // gzip levels on the default scrape's text: CPU (main-thread-free, but a pool thread's) and size.
      registry.perTimeline = true;
      const text = await registry.metrics();
      const level = (l: number): { ms: number; bytes: number } => {
        const s = performance.now();
        const bytes = gzipSync(text, { level: l }).length;
        return { ms: performance.now() - s, bytes };
      };
      const chosen = level(METRICS_GZIP_LEVEL);
      const six = level(6);
      rows.push(
        row(`gzip level ${METRICS_GZIP_LEVEL} of the default scrape, ${what}`, "ms", chosen.ms, "gzip level 6", six.ms),
        row(`gzip level ${METRICS_GZIP_LEVEL} size, ${what}`, "MiB", chosen.bytes / MIB, "gzip level 6", six.bytes / MIB),
      );
    }
    return rows;
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `count` more tenants of one timeline with one L0 file each, BATCH at a time. */
async function addTenants(server: Server, count: number): Promise<void> {
  for (let i = 0; i < count; i += BATCH) {
    const n = Math.min(BATCH, count - i);
    await Promise.all(
      Array.from({ length: n }, async () => {
        const t = await server.tenants.create(undefined, QUIET);
        const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
        for (let k = 0; k < 10; k++) tl.put(makeKey(0, 1663, 5, 16384, 0, k), asLsn(0x1000 + 8 * (k + 1)), imageValue(new Uint8Array(100)));
        tl.finishWrite(asLsn(0x1000 + 80));
        await tl.checkpoint();
      }),
    );
  }
}
