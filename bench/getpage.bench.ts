/**
 * `npm run bench -- getpage`: GetPage@latest throughput and latency of the page service, next
 * to a stock PostgreSQL 15 serving the same pages.
 *
 * Data: `pgbench -i -s GETPAGE_SCALE` (10: pgbench_accounts ≈ 16,400 blocks, 130 MB) on a
 * PostgreSQL 15, CHECKPOINT.
 * Peer: that server with pageinspect, `pgbench -n -M prepared -f script -c CONNS -j 2 -T …`
 * where the script is `SELECT get_raw_page('pgbench_accounts', :blk)` of a random block: its
 * transactions/s are pages/s, and its per-transaction log (-l) gives the latencies. Then the
 * same at half its peak rate (`-R`) for the p99 at a moderate load.
 * Ours: the server shut down, imported (import_pgdata) into a pageserver running as its own
 * process (page cache GETPAGE_CACHE_MB), restarted (cold), then CONNS connections of
 * pagestream v2, each with DEPTH GetPage of random blocks in flight, for RUN_S seconds: cold
 * (fresh process), then hot (after one pass over every block), then hot with one request in
 * flight per connection (as pgbench's clients), then open-loop at half the hot peak rate.
 * Latency: from a request's send to its answer.
 * Pages are checked against the relation file (a sample) so that the numbers are of real reads.
 * Bounded: each run has a deadline; everything started is stopped and removed in finally.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PageServiceClient, type PagestreamSession } from "../src/client/page_service_client.js";
import { LATEST_LSN } from "../src/protocol/pagestream.js";
import { asLsn, parseLsn } from "../src/types/lsn.js";
import { PgInstance } from "../test/support/postgres.js";
import { rng } from "../test/support/rng.js";
import { type BenchRow, percentile, row } from "./harness.js";

const SCALE = Number(process.env["GETPAGE_SCALE"] ?? 10);
const CONNS = Number(process.env["GETPAGE_CONNS"] ?? 4);
const DEPTH = Number(process.env["GETPAGE_DEPTH"] ?? 16);
const RUN_S = Number(process.env["GETPAGE_RUN_S"] ?? 8);
const HALF_RATE_S = 5;
const CACHE_MB = Number(process.env["GETPAGE_CACHE_MB"] ?? 512);
/** Latency samples kept per run at most. */
const MAX_SAMPLES = 4_000_000;
const PEER = "PG15 pageinspect get_raw_page via pgbench";
const ROOT = new URL("..", import.meta.url).pathname;
/** Extra node flags for the server process, e.g. GETPAGE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const NODE_ARGS = (process.env["GETPAGE_NODE_ARGS"] ?? "").split(" ").filter((a) => a.length > 0);

interface RunResult {
  pages: number;
  seconds: number;
  latencies_us: Float64Array;
}

function stats(lat: Float64Array): { p50: number; p99: number; p999: number } {
  const s = lat.slice().sort();
  return { p50: percentile(s, 50), p99: percentile(s, 99), p999: percentile(s, 99.9) };
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

// ─── the peer ────────────────────────────────────────────────────────────────────────────

/** pgbench with the get_raw_page script; tps and the latencies of its -l log. */
async function pgbenchRun(pg: PgInstance, nblocks: number, args: string[], tag: string): Promise<RunResult> {
  const script = join(pg.baseDir, "getpage.sql");
  writeFileSync(script, `\\set blk random(0, ${nblocks - 1})\nSELECT get_raw_page('pgbench_accounts', :blk);\n`, { mode: 0o644 });
  for (const f of readdirSync(pg.baseDir)) if (f.startsWith(`${tag}.`)) rmSync(join(pg.baseDir, f));
  const r = await pg.run("pgbench", [
    "-n",
    "-M",
    "prepared",
    "-f",
    script,
    "-c",
    String(CONNS),
    "-j",
    "2",
    "-l",
    `--log-prefix=${tag}`,
    ...args,
    "-h",
    pg.host,
    "-p",
    String(pg.port),
    "-U",
    "postgres",
    "postgres",
  ]);
  if (r.code !== 0) throw new Error(`pgbench failed: ${r.stderr}`);
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
  if (tps === null) throw new Error(`no tps in pgbench output:\n${r.stdout}`);
  const lat: number[] = [];
  for (const f of readdirSync(pg.baseDir)) {
    if (!f.startsWith(`${tag}.`)) continue;
    for (const line of readFileSync(join(pg.baseDir, f), "utf8").split("\n")) {
      const cols = line.split(" ");
      if (cols.length >= 3 && lat.length < MAX_SAMPLES) lat.push(Number(cols[2]));
    }
  }
  const seconds = Number(/duration: (\d+) s/.exec(r.stdout)?.[1] ?? "0");
  return { pages: Math.round(Number(tps[1]) * seconds), seconds, latencies_us: Float64Array.from(lat) };
}

// ─── ours ────────────────────────────────────────────────────────────────────────────────

class PageserverChild {
  child: ChildProcess | null = null;
  log = "";
  constructor(
    readonly workdir: string,
    readonly httpPort: number,
    readonly pgPort: number,
  ) {}

  async start(): Promise<void> {
    const child = spawn(
      process.execPath,
      [
        ...NODE_ARGS,
        "--import",
        "tsx",
        join(ROOT, "src/main/pageserver.ts"),
        "--workdir",
        this.workdir,
        "--listen",
        `127.0.0.1:${this.httpPort}`,
        "--listen-pg",
        `127.0.0.1:${this.pgPort}`,
        "--page-cache-size",
        String(CACHE_MB * 1024 * 1024),
        "--log-level",
        "warn",
        // The source's data directory is a PgInstance's, under the temp directory.
        "--import-pgdata-root",
        tmpdir(),
      ],
      { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT },
    );
    this.child = child;
    const keep = (d: Buffer): void => {
      this.log = (this.log + d.toString()).slice(-20_000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    for (let i = 0; i < 300; i++) {
      if (child.exitCode !== null) break;
      try {
        if ((await fetch(`http://127.0.0.1:${this.httpPort}/v1/status`)).status === 200) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`pageserver did not start:\n${this.log}`);
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (c === null || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    const t = setTimeout(() => c.kill("SIGKILL"), 60_000);
    await exited;
    clearTimeout(t);
  }

  async api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    const r = await fetch(`http://127.0.0.1:${this.httpPort}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const j = (await r.json()) as Record<string, unknown>;
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j)}\n${this.log}`);
    return j;
  }
}

interface Target {
  port: number;
  tenant: string;
  timeline: string;
  rel: { spcnode: number; dbnode: number; relnode: number; forknum: number };
  nblocks: number;
  lsn: number;
}

async function sessions(
  t: Target,
  n: number,
  maxInFlight: number,
): Promise<{ clients: PageServiceClient[]; sessions: PagestreamSession[] }> {
  const clients: PageServiceClient[] = [];
  const ss: PagestreamSession[] = [];
  for (let i = 0; i < n; i++) {
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port: t.port });
    clients.push(c);
    ss.push(await c.pagestream(t.tenant, t.timeline, 2, { max_in_flight: maxInFlight }));
  }
  return { clients, sessions: ss };
}

async function closeAll(x: { clients: PageServiceClient[]; sessions: PagestreamSession[] }): Promise<void> {
  for (const s of x.sessions) await s.close();
  for (const c of x.clients) c.close();
}

/** Closed loop: CONNS connections × `depth` requests in flight, for `seconds`. */
async function closedLoop(t: Target, depth: number, seconds: number, seed: number): Promise<RunResult> {
  const x = await sessions(t, CONNS, depth);
  const lat = new Float64Array(MAX_SAMPLES);
  let n = 0;
  const random = rng(seed);
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const worker = async (s: PagestreamSession): Promise<void> => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await s.getPage(t.rel, Math.floor(random() * t.nblocks), LATEST_LSN, asLsn(t.lsn));
      if (n < MAX_SAMPLES) lat[n++] = (performance.now() - t0) * 1000;
    }
  };
  await Promise.all(x.sessions.flatMap((s) => Array.from({ length: depth }, () => worker(s))));
  const secs = (performance.now() - start) / 1000;
  await closeAll(x);
  return { pages: n, seconds: secs, latencies_us: lat.subarray(0, n) };
}

/**
 * Open loop: requests at `rate` per second (spread over the connections), sent on a 1 ms
 * tick. Latency from the send (the tick's timer lag is the client's, not the server's; the
 * requests are still sent on schedule whatever the answers do).
 */
async function openLoop(t: Target, rate: number, seconds: number, seed: number): Promise<RunResult> {
  const x = await sessions(t, CONNS, 100_000);
  const total = Math.min(MAX_SAMPLES, Math.floor(rate * seconds));
  const lat = new Float64Array(total);
  const random = rng(seed);
  const start = performance.now();
  const pending: Promise<void>[] = [];
  let sent = 0;
  while (sent < total) {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - start) / 1000) * rate) + 1);
    for (; sent < due; sent++) {
      const i = sent;
      const s = x.sessions[i % x.sessions.length]!;
      pending.push(
        s.getPage(t.rel, Math.floor(random() * t.nblocks), LATEST_LSN, asLsn(t.lsn)).then(() => {
          lat[i] = (performance.now() - now) * 1000;
        }),
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  const secs = (performance.now() - start) / 1000;
  await closeAll(x);
  return { pages: total, seconds: secs, latencies_us: lat };
}

async function checkPages(t: Target, file: Uint8Array): Promise<void> {
  const x = await sessions(t, 1, 64);
  const s = x.sessions[0]!;
  for (const b of [0, 1, Math.floor(t.nblocks / 2), t.nblocks - 1]) {
    const p = await s.getPage(t.rel, b, LATEST_LSN, asLsn(t.lsn));
    if (!Buffer.from(p).equals(Buffer.from(file.subarray(b * 8192, (b + 1) * 8192))))
      throw new Error(`block ${b} differs from the relation file`);
  }
  await closeAll(x);
}

/** One pass over every block (pipelined), to warm the cache. */
async function warm(t: Target): Promise<void> {
  const x = await sessions(t, 1, 256);
  const s = x.sessions[0]!;
  const all: Promise<Uint8Array>[] = [];
  for (let b = 0; b < t.nblocks; b++) all.push(s.getPage(t.rel, b, LATEST_LSN, asLsn(t.lsn)));
  await Promise.all(all);
  await closeAll(x);
}

export default async function run(): Promise<BenchRow[]> {
  const pg = await PgInstance.start({ conf: { shared_buffers: "128MB" } });
  const workdir = mkdtempSync(join(tmpdir(), "bench-getpage-"));
  const ps = new PageserverChild(workdir, await freePort(), await freePort());
  const rows: BenchRow[] = [];
  try {
    const init = await pg.run("pgbench", [
      "-i",
      "-s",
      String(SCALE),
      "-q",
      "-h",
      pg.host,
      "-p",
      String(pg.port),
      "-U",
      "postgres",
      "postgres",
    ]);
    if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
    await pg.psql("CREATE EXTENSION pageinspect; CHECKPOINT;");
    const [dbOid, relnode, nblocks] = (
      await pg.psql(
        "SELECT d.oid, c.relfilenode, pg_relation_size(c.oid) / 8192 FROM pg_database d, pg_class c WHERE d.datname = 'postgres' AND c.relname = 'pgbench_accounts'",
      )
    )
      .split("|")
      .map(Number) as [number, number, number];

    // The peer: warm (a first pass through its buffers and the OS cache), peak, then half rate.
    await pgbenchRun(pg, nblocks, ["-T", "3"], "warm");
    const peerPeak = await pgbenchRun(pg, nblocks, ["-T", String(RUN_S)], "peak");
    const peerPeakRate = peerPeak.pages / peerPeak.seconds;
    const peerHalf = await pgbenchRun(pg, nblocks, ["-T", String(HALF_RATE_S), "-R", String(Math.floor(peerPeakRate / 2))], "half");
    await pg.stop();
    const file = readFileSync(join(pg.dataDir, "base", String(dbOid), String(relnode)));

    // Ours: import, restart (cold), measure.
    await ps.start();
    const tenant = String((await ps.api("POST", "/v1/tenant", { config: { compaction_period: 0, gc_period: 0 } }))["id"]);
    const tl = await ps.api("POST", `/v1/tenant/${tenant}/timeline`, { import_pgdata: pg.dataDir });
    await ps.stop();
    await ps.start();
    const t: Target = {
      port: ps.pgPort,
      tenant,
      timeline: String(tl["timeline_id"]),
      rel: { spcnode: 1663, dbnode: dbOid, relnode, forknum: 0 },
      nblocks,
      lsn: parseLsn(String(tl["last_record_lsn"])),
    };
    const cold = await closedLoop(t, DEPTH, RUN_S, 1);
    await warm(t);
    await checkPages(t, file);
    const hot = await closedLoop(t, DEPTH, RUN_S, 2);
    const hot1 = await closedLoop(t, 1, RUN_S, 3);
    const hotRate = hot.pages / hot.seconds;
    const half = await openLoop(t, Math.floor(hotRate / 2), HALF_RATE_S, 4);

    const pp = stats(peerPeak.latencies_us);
    const ph = stats(peerHalf.latencies_us);
    const hs = stats(hot.latencies_us);
    const h1 = stats(hot1.latencies_us);
    const cs = stats(cold.latencies_us);
    const hh = stats(half.latencies_us);
    const shape = `${CONNS} conns`;
    rows.push(row(`hot pages/s (${shape} × ${DEPTH} in flight)`, "pages/s", hotRate, PEER, peerPeakRate));
    rows.push(row(`hot pages/s (${shape} × 1 in flight)`, "pages/s", hot1.pages / hot1.seconds, PEER, peerPeakRate));
    rows.push(row(`cold pages/s (fresh process, ${shape} × ${DEPTH})`, "pages/s", cold.pages / cold.seconds));
    rows.push(row(`hot p50 (${shape} × 1 in flight)`, "us", h1.p50, PEER, pp.p50));
    rows.push(row(`hot p99 (${shape} × 1 in flight)`, "us", h1.p99, PEER, pp.p99));
    rows.push(row(`hot p99.9 (${shape} × 1 in flight)`, "us", h1.p999, PEER, pp.p999));
    rows.push(row(`hot p50 (× ${DEPTH} in flight)`, "us", hs.p50));
    rows.push(row(`hot p99 (× ${DEPTH} in flight)`, "us", hs.p99));
    rows.push(row(`hot p99.9 (× ${DEPTH} in flight)`, "us", hs.p999));
    rows.push(row(`cold p50 (× ${DEPTH} in flight)`, "us", cs.p50));
    rows.push(row(`cold p99 (× ${DEPTH} in flight)`, "us", cs.p99));
    rows.push(row(`cold p99.9 (× ${DEPTH} in flight)`, "us", cs.p999));
    rows.push(
      row(
        `p99 at half the peak rate (ours ${Math.floor(hotRate / 2)}/s, peer ${Math.floor(peerPeakRate / 2)}/s)`,
        "us",
        hh.p99,
        PEER,
        ph.p99,
      ),
    );
    rows.push(row("p50 at half the peak rate", "us", hh.p50, PEER, ph.p50));
    rows.push(row("pgbench_accounts blocks", "blocks", nblocks));
  } finally {
    await ps.stop();
    await pg.destroy();
    rmSync(workdir, { recursive: true, force: true });
  }
  return rows;
}
