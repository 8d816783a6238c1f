/**
 * The cost of one /metrics scrape on a node with many tenants: an in-process Server with
 * TENANTS tenants of one timeline each, every timeline holding a flushed L0 file and some
 * ingested WAL, then SCRAPES scrapes of the registry (what GET /metrics renders). Reports the
 * median and the worst scrape, and the size of the text.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { type BenchRow, row } from "./harness.js";
import { asLsn } from "../src/types/lsn.js";

const TENANTS = Number(process.env["METRICS_BENCH_TENANTS"] ?? 1000);
const SCRAPES = 20;
/** Tenants set up at once (each writes a metadata file and flushes one layer). */
const BATCH = 50;
const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" };

export default async function run(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), "ps-bench-metrics-"));
  const server = new Server(
    loadNodeConfig({ workdir: dir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", max_tenants: TENANTS }),
    pino({ level: "silent" }),
  );
  try {
    await server.start();
    for (let i = 0; i < TENANTS; i += BATCH) {
      const n = Math.min(BATCH, TENANTS - i);
      await Promise.all(
        Array.from({ length: n }, async () => {
          const t = await server.tenants.create(undefined, QUIET);
          const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
          for (let k = 0; k < 10; k++)
            tl.put(makeKey(0, 1663, 5, 16384, 0, k), asLsn(0x1000 + 8 * (k + 1)), imageValue(new Uint8Array(100)));
          tl.finishWrite(asLsn(0x1000 + 80));
          await tl.checkpoint();
          tl.put(makeKey(0, 1663, 5, 16384, 0, 0), asLsn(0x1000 + 88), imageValue(new Uint8Array(100)));
          tl.finishWrite(asLsn(0x1000 + 88));
        }),
      );
    }
    const times_ms: number[] = [];
    let bytes = 0;
    for (let i = 0; i < SCRAPES; i++) {
      const t0 = performance.now();
      const text = await server.metrics.metrics();
      times_ms.push(performance.now() - t0);
      bytes = text.length;
    }
    times_ms.sort((a, b) => a - b);
    return [
      row(`scrape, ${TENANTS} tenants x 1 timeline (median of ${SCRAPES})`, "ms", times_ms[Math.floor(SCRAPES / 2)]!),
      row(`scrape, ${TENANTS} tenants x 1 timeline (worst of ${SCRAPES})`, "ms", times_ms[SCRAPES - 1]!),
      row("scrape text size", "bytes", bytes),
    ];
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
