/**
 * `npm run bench -- tenants`: one pageserver hosting TENANTS (1,000) tenants with one small
 * timeline each (PAGES page images at one LSN, checkpointed into a layer file).
 *
 * Setup (in this process): a Server on a temp workdir creates the tenants and timelines,
 * writes and checkpoints them, and stops. Then the built pageserver (`npm run build`, the
 * same entry point `npm start` runs) is started as its own process on that workdir:
 * - startup: from spawn until `GET /v1/tenant` lists every tenant Active;
 * - idle CPU: the process's user+system CPU over IDLE_S seconds of no requests (the
 *   background loops of every tenant still run), in % of one core;
 * - RSS after startup and after the idle window.
 * Then a second run adds the reads: every tenant's timeline read once over HTTP base
 * backup would be too heavy; the reads here are the scrape of /metrics (its cost grows with
 * tenants × timelines): the time of one scrape.
 *
 * The issue names goals, not a peer process: each row's peer column is that goal (labelled
 * as such), so the ratio says how far inside the goal we are. Bounded: every wait has a
 * deadline; the server process is killed and the workdir removed in finally.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { makeKey } from "../src/types/key.js";
import { asLsn } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { freePort } from "../test/support/backup_server.js";
import { type BenchRow, row } from "./harness.js";

const TENANTS = Number(process.env["TENANTS"] ?? 1000);
const PAGES = Number(process.env["TENANT_PAGES"] ?? 16);
/** Longer than compaction_period (20 s): the window holds every tenant's periodic rounds. */
const IDLE_S = Number(process.env["TENANTS_IDLE_S"] ?? 30);
const STARTUP_DEADLINE_MS = 120_000;
const PAGE_CACHE_BYTES = 64 * 1024 * 1024;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const START_LSN = asLsn(0x0100_0000);
const CLK_TCK = 100;
/** Extra node flags for the server process, e.g. TENANTS_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const NODE_ARGS = (process.env["TENANTS_NODE_ARGS"] ?? "").split(" ").filter((a) => a.length > 0);

function cpuSeconds(pid: number): number {
  // /proc/<pid>/stat: fields 14 and 15 (utime, stime) in clock ticks, after the ")" of comm.
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (m === null) throw new Error("no VmRSS");
  return Number(m[1]) * 1024;
}

async function populate(workdir: string): Promise<void> {
  const server = new Server(
    loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", log_level: "warn" }),
    pino({ level: "warn" }),
  );
  await server.start();
  try {
    const page = new Uint8Array(8192);
    for (let i = 0; i < TENANTS; i++) {
      const t = await server.tenants.create(undefined, {});
      const tl = await t.createTimeline({ startLsn: START_LSN });
      for (let b = 0; b < PAGES; b++) {
        page[0] = i & 0xff;
        page[1] = b;
        tl.put(makeKey(0, 1663, 5, 16384 + (i % 100), 0, b), asLsn(START_LSN + 8), imageValue(page));
      }
      tl.finishWrite(asLsn(START_LSN + 8));
      await tl.checkpoint();
    }
  } finally {
    await server.stop();
  }
}

async function waitAllActive(url: string, child: ChildProcess, deadline_ms: number): Promise<void> {
  for (;;) {
    if (child.exitCode !== null) throw new Error(`pageserver exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${url}/v1/tenant`);
      if (r.status === 200) {
        const list = (await r.json()) as { state: string }[];
        if (list.length === TENANTS && list.every((t) => t.state === "Active")) return;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline_ms) throw new Error("tenants did not all become Active in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

export default async function run(): Promise<BenchRow[]> {
  execFileSync("npm", ["run", "-s", "build"], { cwd: ROOT, stdio: "inherit" });
  const workdir = mkdtempSync(join(tmpdir(), "bench-tenants-"));
  let child: ChildProcess | null = null;
  try {
    const t0 = performance.now();
    await populate(workdir);
    console.log(`populated ${TENANTS} tenants × ${PAGES} pages in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const port = await freePort();
    const pgPort = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const started = performance.now();
    child = spawn(
      process.execPath,
      [
        ...NODE_ARGS,
        join(ROOT, "dist/src/main/pageserver.js"),
        "--workdir",
        workdir,
        "--listen",
        `127.0.0.1:${port}`,
        "--listen-pg",
        `127.0.0.1:${pgPort}`,
        "--page-cache-size",
        String(PAGE_CACHE_BYTES),
        "--log-level",
        "warn",
      ],
      { stdio: ["ignore", "inherit", "inherit"] },
    );
    const pid = child.pid!;
    await waitAllActive(url, child, Date.now() + STARTUP_DEADLINE_MS);
    const startup_s = (performance.now() - started) / 1000;
    const rssStart = rssBytes(pid);
    // Let startup's own work settle, then measure a quiet window.
    await new Promise((r) => setTimeout(r, 2000));
    const cpu0 = cpuSeconds(pid);
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    const idlePct = ((cpuSeconds(pid) - cpu0) / ((performance.now() - w0) / 1000)) * 100;
    const rssIdle = rssBytes(pid);
    const s0 = performance.now();
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const scrape_ms = performance.now() - s0;
    // A clean stop (SIGTERM: flush every timeline, exit 0), timed.
    const st0 = performance.now();
    const exited = new Promise<number | null>((r) => child!.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    const code = await exited;
    if (code !== 0) throw new Error(`pageserver exited with ${code} on SIGTERM`);
    const stop_s = (performance.now() - st0) / 1000;
    const goal = "goal (issue 9)";
    const mb = 1024 * 1024;
    return [
      row(`startup to ${TENANTS} tenants Active`, "s", startup_s, goal, 5),
      row(`idle CPU, ${TENANTS} tenants (% of one core)`, "%", idlePct, goal, 1),
      row(`RSS after startup (page cache ${PAGE_CACHE_BYTES / mb} MiB)`, "MiB", rssStart / mb, goal, PAGE_CACHE_BYTES / mb + 300),
      row(`RSS after ${IDLE_S} s idle`, "MiB", rssIdle / mb, goal, PAGE_CACHE_BYTES / mb + 300),
      row(`clean stop (SIGTERM → exit 0) with ${TENANTS} tenants`, "s", stop_s),
      row(`one /metrics scrape (${Math.round(metrics.length / 1024)} KiB)`, "ms", scrape_ms),
    ];
  } finally {
    if (child !== null && child.exitCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(workdir, { recursive: true, force: true });
  }
}
