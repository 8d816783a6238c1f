/**
 * Base backups over HTTP, per HTTP adapter: MB/s of `GET …/basebackup?lsn=` streamed to a
 * client that counts and discards the tar, against the peer doing the same work on the same
 * database in the same run: `pg_basebackup -Ft -X none -D -` from the source PostgreSQL 15,
 * its tar to stdout, counted and discarded.
 *
 * Data: `pgbench -i -s BASEBACKUP_SCALE` (default 20, ≈ 320 MB). The source is shut down
 * after the peer's runs and its data directory imported (import_pgdata) into a pageserver
 * running as its own process, so the client's reading never shares a thread with the server.
 *
 * Adapters: the pageserver's default first (what `/v1/status` names as `http_server`; a
 * build without that field serves with uWebSockets.js), then, where the build knows
 * `--http-server`, every other adapter that starts on this Node; one that doesn't start is a
 * row saying so. Each side runs ROUNDS times; the best run counts (warm caches on both sides).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PgInstance } from "../test/support/postgres.js";
import { type BenchRow, row } from "./harness.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SCALE = Number(process.env["BASEBACKUP_SCALE"] ?? 20);
const ROUNDS = 3;
const PEER = "pg_basebackup -Ft -X none to stdout";
const MB = 1e6;
const START_TIMEOUT_MS = 60_000;

function log(msg: string): void {
  console.error(`[basebackup] ${msg}`);
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a !== null ? a.port : 0));
    });
  });
}

/** Runs a command to its end, counting its stdout bytes (discarded). */
async function countStdout(cmd: string, args: string[]): Promise<{ bytes: number; seconds: number }> {
  const t0 = performance.now();
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let bytes = 0;
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      bytes += d.length;
    });
    child.stderr.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.once("error", reject);
    child.once("close", (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${err}`));
      else resolve({ bytes, seconds: (performance.now() - t0) / 1000 });
    });
  });
}

class Pageserver {
  private child: ChildProcess | null = null;
  private output = "";
  constructor(
    readonly workdir: string,
    readonly port: number,
  ) {}

  /** Starts it; false (with its output) when it exits first (an adapter that doesn't load). */
  async start(extra: string[]): Promise<{ ok: boolean; output: string }> {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "src/main/pageserver.ts"),
        "--workdir",
        this.workdir,
        "--listen",
        `127.0.0.1:${this.port}`,
        "--listen-pg",
        `127.0.0.1:${await freePort()}`,
        "--log-level",
        "warn",
        "--import-pgdata-root",
        tmpdir(),
        ...extra,
      ],
      { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT },
    );
    this.child = child;
    this.output = "";
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString()).slice(-8000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    const deadline = performance.now() + START_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if (child.exitCode !== null) return { ok: false, output: this.output.trim() };
      try {
        if ((await fetch(`http://127.0.0.1:${this.port}/v1/status`)).status === 200) return { ok: true, output: "" };
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.stop();
    throw new Error(`pageserver did not start in ${START_TIMEOUT_MS} ms:\n${this.output}`);
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
    const r = await fetch(`http://127.0.0.1:${this.port}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const j = (await r.json()) as Record<string, unknown>;
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j)}\n${this.output}`);
    return j;
  }
}

/** One GET of the base backup, its body counted and discarded. */
async function fetchBasebackup(port: number, path: string): Promise<{ bytes: number; seconds: number }> {
  const t0 = performance.now();
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  if (r.status !== 200 || r.body === null) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
  let bytes = 0;
  for await (const chunk of r.body) bytes += (chunk as Uint8Array).length;
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

export default async function run(): Promise<BenchRow[]> {
  const pg = await PgInstance.start({ conf: { wal_level: "replica", max_wal_senders: 4 } });
  const workdir = mkdtempSync(join(tmpdir(), "bench-basebackup-"));
  const rows: BenchRow[] = [];
  try {
    log(`pgbench -i -s ${SCALE}`);
    await pg.runChecked("pgbench", ["-i", "-s", String(SCALE), "-q", "-h", pg.host, "-p", String(pg.port), "-U", "postgres", "postgres"]);
    await pg.psql("CHECKPOINT;");
    const peerArgs = ["-h", pg.host, "-p", String(pg.port), "-U", "postgres", "-D", "-", "-Ft", "-X", "none", "--checkpoint=fast"];
    const [cmd, argv] =
      process.getuid?.() === 0
        ? ["runuser", ["-u", "postgres", "--", join(pg.bindir, "pg_basebackup"), ...peerArgs]]
        : [join(pg.bindir, "pg_basebackup"), peerArgs];
    let peerBest = { bytes: 0, seconds: Number.POSITIVE_INFINITY };
    for (let i = 0; i < ROUNDS; i++) {
      const r = await countStdout(cmd, argv);
      log(`peer round ${i}: ${(r.bytes / MB).toFixed(1)} MB in ${r.seconds.toFixed(2)} s`);
      if (r.seconds < peerBest.seconds) peerBest = r;
    }
    const peerMBs = peerBest.bytes / MB / peerBest.seconds;
    await pg.stop();

    const ps = new Pageserver(workdir, await freePort());
    const first = await ps.start([]);
    if (!first.ok) throw new Error(`pageserver did not start:\n${first.output}`);
    const status = await ps.api("GET", "/v1/status");
    const tenant = String((await ps.api("POST", "/v1/tenant", { config: { compaction_period: 0, gc_period: 0 } }))["id"]);
    const tl = await ps.api("POST", `/v1/tenant/${tenant}/timeline`, { import_pgdata: pg.dataDir });
    const path = `/v1/tenant/${tenant}/timeline/${String(tl["timeline_id"])}/basebackup?lsn=${String(tl["last_record_lsn"])}`;
    const defaultKind = typeof status["http_server"] === "string" ? status["http_server"] : "uws";
    const kinds: { kind: string; flag: string[] }[] = [{ kind: defaultKind, flag: [] }];
    if (typeof status["http_server"] === "string") {
      for (const k of ["uws", "node"]) if (k !== defaultKind) kinds.push({ kind: k, flag: ["--http-server", k] });
    }
    for (const [i, { kind, flag }] of kinds.entries()) {
      if (i > 0) {
        await ps.stop();
        const started = await ps.start(flag);
        if (!started.ok) {
          log(`${kind}: does not start on Node ${process.versions.node}: ${started.output.split("\n")[0]}`);
          continue;
        }
      }
      let best = { bytes: 0, seconds: Number.POSITIVE_INFINITY };
      for (let r = 0; r < ROUNDS; r++) {
        const x = await fetchBasebackup(ps.port, path);
        log(`${kind} round ${r}: ${(x.bytes / MB).toFixed(1)} MB in ${x.seconds.toFixed(2)} s`);
        if (x.seconds < best.seconds) best = x;
      }
      const label = `base backup over HTTP (${kind === "uws" ? "uWebSockets.js" : "node:http"}, Node ${process.versions.node.split(".")[0]})`;
      rows.push(row(`${label}, tar of ${(best.bytes / MB).toFixed(0)} MB`, "MB/s", best.bytes / MB / best.seconds, PEER, peerMBs));
      rows.push(row(`${label}: time`, "s", best.seconds, PEER, peerBest.seconds));
    }
    await ps.stop();
    rows.push(row(`peer: ${PEER}, tar of ${(peerBest.bytes / MB).toFixed(0)} MB`, "MB/s", peerMBs));
    return rows;
  } finally {
    await pg.destroy();
    rmSync(workdir, { recursive: true, force: true });
  }
}
