/**
 * A stock PostgreSQL 15 streaming standby of a PgInstance, for benches and tests that compare
 * the pageserver's WAL ingest with PostgreSQL's own replay:
 *
 *   const sb = await Standby.create(primary, { slot: "standby_slot" });   // pg_basebackup -R -X stream -C -S
 *   try { await sb.start(); … await sb.replayLsn(); … } finally { await sb.destroy(); }
 *
 * The data dir lives in a temp dir owned by `postgres` (every binary runs as `postgres` via
 * runuser when we are root); the standby listens on 127.0.0.1 on a free port with its own
 * socket dir, hot_standby on. destroy() stops it (fast, immediate, SIGKILL), drops its slot on
 * the primary (best effort, when the primary still runs) and removes the dir. A process 'exit'
 * hook SIGKILLs any standby still running.
 */
import { execFileSync } from "node:child_process";
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort, runPg } from "./backup_server.js";
import type { PgInstance } from "./postgres.js";

const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
const live = new Set<Standby>();
process.once("exit", () => {
  for (const s of live) s.killNow();
});

export interface StandbyOptions {
  /** Physical replication slot created on the primary by pg_basebackup -C. */
  slot: string;
  /** Extra settings appended to postgresql.auto.conf. */
  conf?: Record<string, string | number>;
}

export class Standby {
  readonly base: string;
  readonly data: string;
  readonly sock: string;
  readonly log: string;
  readonly slot: string;
  readonly primary: PgInstance;
  port = 0;
  private running = false;
  private destroyed = false;

  private constructor(primary: PgInstance, slot: string) {
    this.primary = primary;
    this.slot = slot;
    this.base = mkdtempSync(join(tmpdir(), "pgstandby-"));
    this.data = join(this.base, "data");
    this.sock = join(this.base, "sock");
    this.log = join(this.base, "postgres.log");
    mkdirSync(this.sock);
    if (IS_ROOT) {
      const uid = pgId("-u");
      const gid = pgId("-g");
      chownSync(this.base, uid, gid);
      chownSync(this.sock, uid, gid);
    }
    live.add(this);
  }

  /** pg_basebackup -R -X stream -C -S slot from the primary; configured, not started. */
  static async create(primary: PgInstance, opts: StandbyOptions): Promise<Standby> {
    const sb = new Standby(primary, opts.slot);
    try {
      sb.port = await freePort();
      await primary.runChecked("pg_basebackup", [
        "-h",
        primary.host,
        "-p",
        String(primary.port),
        "-U",
        primary.user,
        "-D",
        sb.data,
        "-R",
        "-X",
        "stream",
        "-C",
        "-S",
        opts.slot,
        "--checkpoint=fast",
        "--no-sync",
      ]);
      const conf: Record<string, string | number> = {
        port: sb.port,
        listen_addresses: "127.0.0.1",
        unix_socket_directories: sb.sock,
        hot_standby: "on",
        fsync: "off",
        ...opts.conf,
      };
      const text = Object.entries(conf)
        .map(([k, v]) => `${k} = ${typeof v === "number" ? String(v) : `'${v.replace(/'/g, "''")}'`}`)
        .join("\n");
      const auto = join(sb.data, "postgresql.auto.conf");
      writeFileSync(auto, `${readFileSync(auto, "utf8")}\n# written by test/support/standby.ts\n${text}\n`);
      return sb;
    } catch (e) {
      await sb.destroy();
      throw e;
    }
  }

  /** pg_ctl start -w (returns once the standby accepts read-only connections). */
  async start(): Promise<void> {
    this.running = true;
    const r = await runPg("pg_ctl", ["-D", this.data, "-l", this.log, "-w", "-t", "60", "start"]);
    if (r.code !== 0) throw new Error(`standby failed to start: ${r.stderr}\n${this.logText().slice(-4000)}`);
  }

  /** pg_ctl start without waiting: returns as soon as the postmaster is launched. */
  async startNoWait(): Promise<void> {
    this.running = true;
    const r = await runPg("pg_ctl", ["-D", this.data, "-l", this.log, "-W", "start"]);
    if (r.code !== 0) throw new Error(`standby failed to start: ${r.stderr}\n${this.logText().slice(-4000)}`);
  }

  /** Fast shutdown; immediate and then SIGKILL if that fails. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    const fast = await runPg("pg_ctl", ["-D", this.data, "-m", "fast", "-w", "-t", "30", "stop"]);
    if (fast.code === 0) return;
    const imm = await runPg("pg_ctl", ["-D", this.data, "-m", "immediate", "-w", "-t", "10", "stop"]);
    if (imm.code !== 0) this.killNow();
  }

  connectionConfig(): pg.ClientConfig {
    return { host: "127.0.0.1", port: this.port, user: "postgres", database: "postgres", connectionTimeoutMillis: 5000 };
  }

  connectionString(db = "postgres"): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/${db}`;
  }

  /** pg_last_wal_replay_lsn() over a fresh connection (null while it does not accept connections). */
  async replayLsn(): Promise<string | null> {
    const c = new pg.Client(this.connectionConfig());
    try {
      await c.connect();
      const r = await c.query<{ lsn: string | null }>("SELECT pg_last_wal_replay_lsn()::text AS lsn");
      return r.rows[0]?.lsn ?? null;
    } catch {
      return null;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  logText(): string {
    try {
      return readFileSync(this.log, "utf8");
    } catch {
      return "";
    }
  }

  /** SIGKILL the postmaster named by postmaster.pid, if any. */
  killNow(): void {
    try {
      const pid = Number(readFileSync(join(this.data, "postmaster.pid"), "utf8").split("\n")[0]);
      if (Number.isInteger(pid) && pid > 0) process.kill(pid, "SIGKILL");
    } catch {
      // not running
    }
  }

  /** Stop, drop the slot on the primary (best effort), remove the dir. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await this.stop();
    } finally {
      this.killNow();
      live.delete(this);
      await this.primary
        .run("psql", [
          "-X",
          "-q",
          "-h",
          this.primary.host,
          "-p",
          String(this.primary.port),
          "-U",
          this.primary.user,
          "-c",
          `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${this.slot.replace(/'/g, "''")}'`,
        ])
        .catch(() => undefined);
      rmSync(this.base, { recursive: true, force: true });
    }
  }
}

/** uid (-u) or gid (-g) of the `postgres` user. */
function pgId(flag: "-u" | "-g"): number {
  return Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
}
