/**
 * A stock PostgreSQL 15 started on a base backup tar (ours, from the HTTP API or
 * basebackupTar): untarred into a temp dir owned by `postgres`, started on 127.0.0.1 with a
 * free port, queried with psql, stopped and removed. Runs as `postgres` via runuser when the
 * tests run as root.
 */
import { execFile, execFileSync } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { findPgBinDir } from "./postgres.js";

const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
const live = new Set<BackupServer>();
process.once("exit", () => {
  for (const s of live) s.killNow();
});

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function runPg(bin: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const path = join(findPgBinDir(), bin);
  const [cmd, argv] = IS_ROOT ? ["runuser", ["-u", "postgres", "--", path, ...args]] : [path, args];
  return new Promise((resolve) => {
    const child = execFile(cmd, argv, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, stdout, stderr });
    });
    // A binary that exits without reading its input (pg_ctl) must not crash us with EPIPE.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(input ?? "");
  });
}

export class BackupServer {
  readonly base: string;
  readonly data: string;
  readonly sock: string;
  readonly log: string;
  port = 0;
  private running = false;

  constructor() {
    this.base = mkdtempSync(join(tmpdir(), "pgbb-"));
    this.data = join(this.base, "data");
    this.sock = join(this.base, "sock");
    this.log = join(this.base, "postgres.log");
    mkdirSync(this.data, { mode: 0o700 });
    mkdirSync(this.sock);
    live.add(this);
  }

  async untar(stream: AsyncIterable<Uint8Array>): Promise<void> {
    const tarPath = join(this.base, "base.tar");
    await pipeline(Readable.from(stream), createWriteStream(tarPath));
    execFileSync("tar", ["-xf", tarPath, "-C", this.data]);
    rmSync(tarPath);
    if (IS_ROOT) execFileSync("chown", ["-R", "postgres:postgres", this.base]);
    execFileSync("chmod", ["700", this.data]);
  }

  /**
   * Start; `conf` adds -c settings (e.g. to make it a WAL source: wal_consistency_checking).
   * pg_ctl waits up to `timeoutS` (a PITR replaying a long archive with hot_standby off
   * only answers once its recovery is done).
   */
  async start(conf: Record<string, string> = {}, timeoutS = 60): Promise<void> {
    this.port = await freePort();
    const extra = Object.entries(conf)
      .map(([k, v]) => `-c ${k}=${v}`)
      .join(" ");
    const opts = `-p ${this.port} -c listen_addresses=127.0.0.1 -k ${this.sock} -c fsync=off -c max_connections=20 -c shared_buffers=16MB -c max_prepared_transactions=5 ${extra}`;
    // Running from here on: a start that times out leaves a postmaster that destroy() must stop.
    this.running = true;
    const r = await runPg("pg_ctl", ["-D", this.data, "-l", this.log, "-w", "-t", String(timeoutS), "-o", opts, "start"]);
    if (r.code !== 0) throw new Error(`PostgreSQL on the base backup failed to start: ${r.stderr}\n${this.logText()}`);
  }

  connectionString(db = "postgres"): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/${db}`;
  }

  logText(): string {
    try {
      return readFileSync(this.log, "utf8");
    } catch {
      return "";
    }
  }

  async psql(sql: string, db = "postgres"): Promise<string> {
    const r = await runPg(
      "psql",
      ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(this.port), "-U", "postgres", "-d", db, "-f", "-"],
      sql,
    );
    if (r.code !== 0) throw new Error(`psql: ${r.stderr}`);
    return r.stdout.trim();
  }

  async amcheck(db = "postgres"): Promise<{ code: number; out: string }> {
    await this.psql("CREATE EXTENSION IF NOT EXISTS amcheck", db);
    const r = await runPg("pg_amcheck", [
      "-h",
      "127.0.0.1",
      "-p",
      String(this.port),
      "-U",
      "postgres",
      "--heapallindexed",
      "--no-dependent-toast",
      db,
    ]);
    return { code: r.code, out: r.stdout + r.stderr };
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    const r = await runPg("pg_ctl", ["-D", this.data, "-m", "fast", "-w", "-t", "30", "stop"]);
    if (r.code !== 0) await runPg("pg_ctl", ["-D", this.data, "-m", "immediate", "-w", "-t", "10", "stop"]);
  }

  killNow(): void {
    try {
      const pid = Number(readFileSync(join(this.data, "postmaster.pid"), "utf8").split("\n")[0]);
      if (pid > 0) process.kill(pid, "SIGKILL");
    } catch {
      // not running
    }
  }

  async destroy(): Promise<void> {
    try {
      await this.stop();
    } finally {
      live.delete(this);
      rmSync(this.base, { recursive: true, force: true });
    }
  }
}
