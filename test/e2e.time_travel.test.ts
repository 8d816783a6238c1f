/**
 * Time travel against PostgreSQL itself (issue 21): a source PostgreSQL 15 on default WAL
 * settings (autovacuum on) streams into a pageserver timeline and archives its WAL; after
 * `pgbench -i -s 1` a base backup of it is taken (pg_basebackup -Ft -X none). Then 52,000
 * pgbench transactions in three runs; times T are read from the source's clock between runs
 * and during them. For each T (ascending):
 * - ours: `pagectl endpoint start --at T` (a branch at ancestor_start_time T, its base backup
 *   started as a stock PostgreSQL);
 * - PostgreSQL's own: the base backup + the archive with recovery_target_time = T (inclusive,
 *   the default), recovery_target_action = pause, read while paused (hot standby); one
 *   restored server, moved to each next T by a restart with the new target;
 * both show the same count(*) of pgbench_history and sum(abalance) of pgbench_accounts, and a T
 * read during a run lies strictly between the figures of the runs' ends (the runs really were
 * going). An ABORT is indexed too (PostgreSQL's recovery stops before an abort later than T as
 * before a commit). Every wait is bounded; everything started is stopped in afterAll.
 */
import { execFileSync, spawn } from "node:child_process";
import { appendFileSync, chownSync, createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import type { TenantId, TimelineId } from "../src/types/ids.js";
import { BackupServer, freePort, runPg } from "./support/backup_server.js";
import { lsnNum, pgbench } from "./support/e2e_fixture.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";
import { asLsn } from "../src/types/lsn.js";

const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));
const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
const RUN_TIMEOUT_MS = 120_000;
const FIGURES_SQL = "SELECT (SELECT count(*) FROM pgbench_history) || ',' || (SELECT sum(abalance) FROM pgbench_accounts)";
/** pgbench runs: transactions per client (4 clients), and whether a time is read during the run. */
const RUNS = [
  { perClient: 5_000, during: false },
  { perClient: 5_000, during: true },
  { perClient: 3_000, during: true },
];

const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
let src: PgInstance;
let server: Server | null = null;
let url = "";
let pgAddr = "";
let dir = "";
let archive = "";
let baseTar = "";
const endpointDirs: string[] = [];
const cleanup: (() => Promise<unknown>)[] = [];

function chownPg(path: string): void {
  if (IS_ROOT) execFileSync("chown", ["-R", "postgres:postgres", path]);
}

async function pagectl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", PAGECTL, "--server", url, "--pg-server", pgAddr, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  const code = await new Promise<number>((r) => child.once("close", (c) => r(c ?? -1)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

async function okJson<T>(args: string[]): Promise<T> {
  const r = await pagectl(["--json", ...args]);
  expect(r.code, `pagectl ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

async function psqlAt(port: number, sql: string): Promise<string> {
  const r = await runPg(
    "psql",
    ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-f", "-"],
    sql,
  );
  if (r.code !== 0) throw new Error(`psql: ${r.stderr}`);
  return r.stdout.trim();
}

/** Poll `check` every 100 ms until true, failing after `timeout_ms`. */
async function waitFor(what: string, check: () => Promise<boolean>, timeout_ms = 120_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The source's clock, RFC 3339 in UTC with microseconds. */
async function sourceNow(): Promise<string> {
  return src.psql(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ps-time-travel-"));
  archive = join(dir, "archive");
  mkdirSync(archive);
  if (IS_ROOT) chownPg(dir);
  src = await PgInstance.start({
    conf: {
      max_wal_senders: 10,
      max_replication_slots: 10,
      archive_mode: true,
      archive_command: `test ! -f ${archive}/%f && cp %p ${archive}/%f`,
    },
  });
  env.add("source.log", src.logFile);
  server = new Server(loadNodeConfig({ workdir: join(dir, "workdir"), listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), logs.logger);
  url = `http://127.0.0.1:${await server.start()}`;
  pgAddr = `127.0.0.1:${server.pgPort}`;
}, 120_000);

afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  for (const d of endpointDirs) {
    if (existsSync(join(d, "postmaster.pid"))) await runPg("pg_ctl", ["-D", d, "-m", "immediate", "-w", "stop"]);
  }
  await server?.stop();
  await src?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // A stopped endpoint's slot can't be dropped (the server is down): the WARN says so.
  logs.expectClean([/could not drop the source's replication slot/, /WAL stream lost/, /could not compute the logical size/]);
});

describe("a branch at a time T holds what PostgreSQL's recovery_target_time = T holds", { timeout: 600_000 }, () => {
  let tenant = "";
  let main = "";
  const times: string[] = [];

  it("52,000 pgbench transactions streamed and archived, times read between and during runs", async () => {
    tenant = (await okJson<{ id: string }>(["tenant", "create"])).id;
    main = (await okJson<{ timeline_id: string }>(["timeline", "create", tenant, "--source", src.connectionString()])).timeline_id;
    const init = await pgbench(["-i", "-s", "1", "-q"], src.port);
    expect(init.code, init.stderr).toBe(0);
    // PostgreSQL's side starts from a base backup taken now; its WAL comes from the archive.
    const bb = join(dir, "basebackup");
    await src.runChecked("pg_basebackup", [
      "-h",
      src.host,
      "-p",
      String(src.port),
      "-U",
      src.user,
      "-D",
      bb,
      "-Ft",
      "-X",
      "none",
      "--checkpoint=fast",
      "--no-sync",
    ]);
    baseTar = join(bb, "base.tar");
    expect(statSync(baseTar).size).toBeGreaterThan(0);

    for (const run of RUNS) {
      const going = pgbench(["-c", "4", "-j", "2", "-t", String(run.perClient), "-n"], src.port);
      if (run.during) {
        // Read the clock once transactions of this run are committing (bounded poll).
        const before = Number(await src.psql("SELECT count(*) FROM pgbench_history"));
        await waitFor("the run to commit", async () => Number(await src.psql("SELECT count(*) FROM pgbench_history")) > before + 2_000);
        times.push(await sourceNow());
      }
      const r = await going;
      expect(r.code, r.stderr).toBe(0);
      times.push(await sourceNow()); // between runs
      await new Promise((res) => setTimeout(res, 20));
    }
    // One transaction after the last time: every T has a commit after it (`present`).
    await src.psql("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now())");
    expect(times).toHaveLength(5);
    expect(Number(await src.psql("SELECT count(*) FROM pgbench_history"))).toBe(52_001);

    // Everything ingested and archived.
    const end = await src.psql("SELECT pg_current_wal_insert_lsn()");
    await waitFor(
      "ingest",
      async () => {
        const info = (await (await fetch(`${url}/v1/tenant/${tenant}/timeline/${main}`)).json()) as { last_record_lsn: string };
        return lsnNum(info.last_record_lsn) >= lsnNum(end);
      },
      240_000,
    );
    const seg = await src.psql("SELECT pg_walfile_name(pg_switch_wal())");
    await waitFor(
      "the archive",
      async () => (await src.psql(`SELECT coalesce(last_archived_wal, '') >= '${seg}' FROM pg_stat_archiver`)) === "t",
    );
  });

  it("for each T: an endpoint at T and PostgreSQL's PITR to T show the same figures", async () => {
    expect(times).toHaveLength(5);
    // PostgreSQL's side: the base backup restored once, paused at each target in turn.
    const peer = new BackupServer();
    env.add("peer.log", peer.log);
    cleanup.push(() => peer.destroy());
    await peer.untar(createReadStream(baseTar));
    writeFileSync(join(peer.data, "recovery.signal"), "");
    const autoConf = join(peer.data, "postgresql.auto.conf");
    appendFileSync(
      autoConf,
      `\nrestore_command = 'cp ${archive}/%f %p'\narchive_mode = off\nrecovery_target_action = 'pause'\nhot_standby = on\n`,
    );
    chownPg(peer.base);

    const ours: string[] = [];
    const theirs: string[] = [];
    for (const [i, t] of times.entries()) {
      // Ours: an endpoint at T.
      const pgdata = join(dir, `ep${i}`);
      mkdirSync(pgdata);
      if (IS_ROOT) chownSync(pgdata, statSync(src.baseDir).uid, statSync(src.baseDir).gid);
      endpointDirs.push(pgdata);
      const port = await freePort();
      const ep = await okJson<{ timeline_id: string; lsn: string; branch_created: boolean }>([
        "endpoint",
        "start",
        "--tenant",
        tenant,
        "--timeline",
        main,
        "--at",
        t,
        "--pgdata",
        pgdata,
        "--port",
        String(port),
        "--conf",
        "fsync=off",
        "--conf",
        "shared_buffers=16MB",
        "--conf",
        "autovacuum=off",
      ]);
      expect(ep.branch_created).toBe(true);
      ours.push(await psqlAt(port, FIGURES_SQL));
      const stopped = await pagectl(["endpoint", "stop", "--pgdata", pgdata]);
      expect(stopped.code, stopped.stderr).toBe(0);

      // PostgreSQL's: recovery_target_time = T, paused there.
      // Its parser takes "YYYY-MM-DD HH:MM:SS.US+00", not RFC 3339's T and Z: the same instant.
      appendFileSync(autoConf, `recovery_target_time = '${t.replace("T", " ").replace("Z", "+00")}'\n`);
      await peer.start({}, 300);
      await waitFor(
        "PostgreSQL's recovery to pause at its target",
        async () => (await psqlAt(peer.port, "SELECT pg_get_wal_replay_pause_state()")) === "paused",
        300_000,
      );
      theirs.push(await psqlAt(peer.port, FIGURES_SQL));
      await peer.stop();
      expect(ours[i], `T${i} = ${t} (branch at ${ep.lsn})`).toBe(theirs[i]);
    }
    // The times are in order and those read during a run fall inside it.
    const counts = theirs.map((f) => Number(f.split(",")[0]));
    expect(counts[0]).toBe(20_000);
    expect(counts[1]).toBeGreaterThan(20_000);
    expect(counts[1]).toBeLessThan(40_000);
    expect(counts[2]).toBe(40_000);
    expect(counts[3]).toBeGreaterThan(40_000);
    expect(counts[3]).toBeLessThan(52_000);
    expect(counts[4]).toBe(52_000);
  });

  it("an ABORT is a transaction end too: the index holds its time", async () => {
    const before = await sourceNow();
    await new Promise((res) => setTimeout(res, 5));
    // A transaction with an xid that rolls back: an ABORT record carrying xact_time.
    await src.psql("BEGIN; INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now()); ROLLBACK;");
    const end = await src.psql("SELECT pg_current_wal_insert_lsn()");
    await new Promise((res) => setTimeout(res, 5));
    const after = await sourceNow();
    await waitFor("ingest", async () => {
      const info = (await (await fetch(`${url}/v1/tenant/${tenant}/timeline/${main}`)).json()) as { last_record_lsn: string };
      return lsnNum(info.last_record_lsn) >= lsnNum(end);
    });
    const tl = server!.tenants.get(tenant as TenantId).getTimeline(main as TimelineId);
    const at = tl.timeForLsn(asLsn(lsnNum(end)));
    expect(at).not.toBeNull();
    expect(at!).toBeGreaterThan(Date.parse(before));
    expect(at!).toBeLessThanOrEqual(Date.parse(after) + 1);
  });
});
