/**
 * A real PostgreSQL 15 for tests: initdb -k into a temp dir, start on 127.0.0.1 with a free
 * port, run SQL through psql, run pg_waldump and other PostgreSQL binaries, stop and clean up.
 *
 *   const pg = await PgInstance.start({ conf: { wal_level: "replica" } });
 *   try { await pg.psql("CREATE TABLE t (x int)"); … } finally { await pg.destroy(); }
 *
 * PostgreSQL refuses to run as root. Tests run as root here, so every PostgreSQL binary runs
 * as the `postgres` user (`runuser -u postgres -- …`) in a temp dir chowned to it; a non-root
 * test process (e.g. the postgres user itself) runs them directly.
 *
 * Layout of the temp dir:   <tmp>/pgtest-XXXX/
 *                              data/           PGDATA (pg_wal inside)
 *                              sock/           unix_socket_directories
 *                              postgres.log    server log (printed in start errors)
 *
 * Safety: every started instance is registered; a process 'exit' hook SIGKILLs any postmaster
 * still running and removes its dir, so a failing test never leaves a server behind.
 * destroy() is idempotent: stop (fast, then immediate, then SIGKILL) and remove the dir.
 */
import { findPgBinDir } from "../../src/cli/endpoint.js";
import { type ExecFileException, execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface PgStartOptions {
  /** postgresql.conf settings, appended after ours (so they win). */
  conf?: Record<string, string | number | boolean>;
  /** Extra initdb arguments, e.g. ["--wal-segsize=1"]. */
  initdbArgs?: string[];
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
let postgresIds: { uid: number; gid: number } | null = null;

/** uid/gid of the `postgres` user (only needed, and only looked up, when we are root). */
function pgOwner(): { uid: number; gid: number } {
  if (postgresIds === null) {
    postgresIds = {
      uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim()),
      gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim()),
    };
  }
  return postgresIds;
}
const live = new Set<PgInstance>();
let exitHookInstalled = false;

/** Whether a PostgreSQL 15 is available (for skipping tests where it is not). */
export function havePg15(): boolean {
  try {
    findPgBinDir();
    return true;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function confValue(v: string | number | boolean): string {
  if (typeof v === "number") return String(v);
  if (typeof v === "boolean") return v ? "on" : "off";
  return `'${v.replace(/'/g, "''")}'`;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pg of live) pg.killNow();
  });
}

export class PgInstance {
  readonly bindir: string;
  readonly baseDir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  readonly host = "127.0.0.1";
  readonly user = "postgres";
  port = 0;
  private running = false;
  private destroyed = false;

  private constructor(bindir: string, baseDir: string) {
    this.bindir = bindir;
    this.baseDir = baseDir;
    this.dataDir = join(baseDir, "data");
    this.socketDir = join(baseDir, "sock");
    this.logFile = join(baseDir, "postgres.log");
  }

  /** initdb -k, configure, start. On failure everything created is removed again. */
  static async start(opts: PgStartOptions = {}): Promise<PgInstance> {
    const bindir = findPgBinDir();
    const baseDir = mkdtempSync(join(tmpdir(), "pgtest-"));
    const pg = new PgInstance(bindir, baseDir);
    live.add(pg);
    installExitHook();
    try {
      mkdirSync(pg.socketDir);
      if (IS_ROOT) {
        const { uid, gid } = pgOwner();
        chownSync(baseDir, uid, gid);
        chownSync(pg.socketDir, uid, gid);
      }
      await pg.runChecked("initdb", [
        "-D",
        pg.dataDir,
        "-k",
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
        ...(opts.initdbArgs ?? []),
      ]);
      for (let attempt = 0; ; attempt++) {
        pg.port = await freePort();
        pg.writeConf(opts.conf ?? {});
        try {
          await pg.runChecked("pg_ctl", ["-D", pg.dataDir, "-l", pg.logFile, "-w", "-t", "60", "start"]);
          break;
        } catch (e) {
          // The port may have been taken between probing and binding: try another once.
          if (attempt >= 1) throw e;
        }
      }
      pg.running = true;
      return pg;
    } catch (e) {
      const log = existsSync(pg.logFile) ? readFileSync(pg.logFile, "utf8").slice(-4000) : "";
      await pg.destroy();
      throw new Error(`PostgreSQL failed to start: ${(e as Error).message}\n${log}`);
    }
  }

  private writeConf(conf: Record<string, string | number | boolean>): void {
    const base: Record<string, string | number | boolean> = {
      port: this.port,
      listen_addresses: "127.0.0.1",
      unix_socket_directories: this.socketDir,
      fsync: false,
      synchronous_commit: false,
      shared_buffers: "32MB",
      max_connections: 20,
      logging_collector: false,
      ...conf,
    };
    const text = Object.entries(base)
      .map(([k, v]) => `${k} = ${confValue(v)}`)
      .join("\n");
    // Our settings live in their own file, included at the end of postgresql.conf (so they
    // win over initdb's) and rewritten whole when the port changes on a retry.
    this.writeAsPostgres(join(this.dataDir, "pgtest.conf"), `# written by test/support/postgres.ts\n${text}\n`);
    const mainConf = join(this.dataDir, "postgresql.conf");
    const main = readFileSync(mainConf, "utf8");
    if (!main.includes("include 'pgtest.conf'")) writeFileSync(mainConf, `${main}\ninclude 'pgtest.conf'\n`);
  }

  private writeAsPostgres(path: string, text: string): void {
    writeFileSync(path, text);
    if (IS_ROOT) {
      const { uid, gid } = pgOwner();
      chownSync(path, uid, gid);
    }
  }

  /** libpq connection string for `db`. */
  connectionString(db = "postgres"): string {
    return `postgresql://${this.user}@${this.host}:${this.port}/${db}`;
  }

  /** Connection parameters in the shape node-postgres takes. */
  connectionConfig(db = "postgres"): { host: string; port: number; user: string; database: string } {
    return { host: this.host, port: this.port, user: this.user, database: db };
  }

  get walDir(): string {
    return join(this.dataDir, "pg_wal");
  }

  /** Run a PostgreSQL binary (as the postgres user when we are root). Never throws on exit codes. */
  async run(binary: string, args: string[], input?: string): Promise<RunResult> {
    const path = join(this.bindir, binary);
    const [cmd, argv] = IS_ROOT ? ["runuser", ["-u", "postgres", "--", path, ...args]] : [path, args];
    return await new Promise((resolve) => {
      const child = execFile(
        cmd,
        argv,
        { encoding: "utf8", maxBuffer: 512 * 1024 * 1024, cwd: this.baseDir, env: { ...process.env, PGCONNECT_TIMEOUT: "30" } },
        (err: ExecFileException | null, stdout: string, stderr: string) => {
          const code = err === null ? 0 : typeof err.code === "number" ? err.code : 1;
          resolve({ stdout, stderr, code });
        },
      );
      if (input !== undefined) child.stdin?.end(input);
      else child.stdin?.end();
    });
  }

  /** run(), but a non-zero exit is an error carrying stderr. */
  async runChecked(binary: string, args: string[], input?: string): Promise<string> {
    const r = await this.run(binary, args, input);
    if (r.code !== 0) throw new Error(`${binary} ${args.join(" ")} exited with ${r.code}: ${r.stderr || r.stdout}`);
    return r.stdout;
  }

  /**
   * Run SQL (any number of statements) with psql; returns the unaligned, tuples-only output,
   * trimmed: one row per line, columns separated by '|'. Stops at the first error and throws.
   */
  async psql(sql: string, db = "postgres"): Promise<string> {
    const out = await this.runChecked(
      "psql",
      ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", this.host, "-p", String(this.port), "-U", this.user, "-d", db, "-f", "-"],
      sql,
    );
    return out.trim();
  }

  /** pg_waldump with `args`; the WAL directory is passed as --path unless args give one. */
  async waldump(args: string[]): Promise<RunResult> {
    const hasPath = args.some((a) => a === "-p" || a.startsWith("--path"));
    return await this.run("pg_waldump", hasPath ? args : ["--path", this.walDir, ...args]);
  }

  /** WAL segment file names in pg_wal, sorted. */
  walSegments(): string[] {
    return readdirSync(this.walDir)
      .filter((f) => /^[0-9A-F]{24}$/.test(f))
      .sort();
  }

  /** Stop the server (fast shutdown; immediate and then SIGKILL if that fails). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    const fast = await this.run("pg_ctl", ["-D", this.dataDir, "-m", "fast", "-w", "-t", "30", "stop"]);
    if (fast.code === 0) return;
    const immediate = await this.run("pg_ctl", ["-D", this.dataDir, "-m", "immediate", "-w", "-t", "10", "stop"]);
    if (immediate.code !== 0) this.killPostmaster();
  }

  /** Start again after stop() (same data dir, same port). */
  async restart(): Promise<void> {
    if (this.running) await this.stop();
    await this.runChecked("pg_ctl", ["-D", this.dataDir, "-l", this.logFile, "-w", "-t", "60", "start"]);
    this.running = true;
  }

  /** Stop and remove everything. Safe to call more than once. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    try {
      await this.stop();
    } finally {
      this.destroyed = true;
      this.killNow();
      live.delete(this);
    }
  }

  /** SIGKILL the postmaster named by postmaster.pid, if any (its backends follow it). */
  killPostmaster(): void {
    const pidFile = join(this.dataDir, "postmaster.pid");
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    if (!(Number.isInteger(pid) && pid > 0)) return;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Synchronous last resort (also the process 'exit' hook): kill the server, remove the dir. */
  killNow(): void {
    try {
      this.killPostmaster();
    } finally {
      rmSync(this.baseDir, { recursive: true, force: true });
    }
  }
}

/** The PostgreSQL 15 binaries the tests run: the same lookup pagectl's endpoints use. */
export { findPgBinDir };
