/**
 * `npm run bench -- pitr`: seconds to get a running PostgreSQL 15 at an arbitrary past LSN X.
 * - ours: GET .../basebackup?lsn=X → untar → start → first successful query;
 * - peer: the classic PITR, a pg_basebackup (-Ft -X none) taken before the load plus the WAL
 *   archive (archive_mode = on, archive_command = cp): untar → recovery.signal,
 *   restore_command = cp, recovery_target_lsn = X (inclusive off: every record that ends by X),
 *   recovery_target_action = promote, hot_standby off → start → first successful query
 *   (pg_is_in_recovery() = false).
 * Source: PostgreSQL 15 with the settings the pageserver needs (wal_level = replica,
 * wal_consistency_checking = all, wal_compression = lz4): so every record the peer replays
 * carries an image, which its redo checks against the page it produced (more work than a
 * plain PITR; the row name says so). The peer's WAL replay (its log's "redo done … elapsed")
 * is reported on its own, and so is the rest of its time (untar, start, promote, first query). `pgbench -i -s 5`, the pageserver
 * timeline bootstrapped and the peer's base backup taken, then `pgbench -c 4 -T LOAD_S` with X
 * recorded halfway. Both servers must show the same pgbench_accounts / pgbench_history at X
 * (the bench fails otherwise). Bounded (every wait has a deadline); everything started is
 * stopped and every dir removed in finally.
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, createReadStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { type Lsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { BackupServer } from "../test/support/backup_server.js";
import { PgInstance } from "../test/support/postgres.js";
import { type BenchRow, row } from "./harness.js";

const SCALE = 5;
const CLIENTS = 4;
const LOAD_S = Number(process.env["PITR_LOAD_S"] ?? 10);
const TOTAL_MS = 175_000;
const PEER = "PG15 base backup + WAL archive replay";
const STATE_SQL = "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history), (SELECT sum(delta) FROM pgbench_history)";
/** Settings for both restored servers (-c; no spaces in values). */
const RESTORED_CONF = { archive_mode: "off", autovacuum: "off" };

const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));
const log = (msg: string) => console.error(`[pitr ${new Date().toISOString().slice(11, 23)}] ${msg}`);

function chownPg(path: string, recursive = false): void {
  if (IS_ROOT) execFileSync("chown", [...(recursive ? ["-R"] : []), "postgres:postgres", path]);
}

/** Runs `check` until it returns true, at most every `everyMs`, failing after `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`pitr bench: timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

export default async function run(): Promise<BenchRow[]> {
  const deadline = Date.now() + TOTAL_MS;
  const budget = (capMs: number): number => {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("pitr bench: over its time budget");
    return Math.min(left, capMs);
  };
  let src: PgInstance | null = null;
  let server: Server | null = null;
  let workdir: string | null = null;
  let peerDir: string | null = null;
  const restored: BackupServer[] = [];
  try {
    // Archive and the peer's base backup live in a dir owned by postgres.
    peerDir = mkdtempSync(join(tmpdir(), "pitr-peer-"));
    const archive = join(peerDir, "archive");
    const bbDir = join(peerDir, "basebackup");
    mkdirSync(archive);
    chownPg(peerDir);
    chownPg(archive);

    log("source: initdb, start (archive_mode on), pgbench -i");
    src = await PgInstance.start({
      conf: {
        wal_level: "replica",
        wal_consistency_checking: "all",
        wal_compression: "lz4",
        max_wal_senders: 10,
        max_replication_slots: 10,
        max_connections: 30,
        max_wal_size: "4GB",
        autovacuum: false,
        archive_mode: true,
        archive_command: `test ! -f ${archive}/%f && cp %p ${archive}/%f`,
      },
    });
    const s = src;
    const pgbench = (args: string[]) => s.runChecked("pgbench", ["-h", s.host, "-p", String(s.port), "-U", s.user, ...args, "postgres"]);
    const insertLsn = async (): Promise<Lsn> => parseLsn(await s.psql("SELECT pg_current_wal_insert_lsn()"));
    await pgbench(["-i", "-s", String(SCALE), "-q"]);

    log("pageserver: bootstrap a timeline from the source");
    workdir = mkdtempSync(join(tmpdir(), "ps-bench-pitr-"));
    server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0" }), pino({ level: process.env["BENCH_LOG_LEVEL"] ?? "silent" }));
    const base = `http://127.0.0.1:${await server.start()}`;
    const api = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
      const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text}`);
      return JSON.parse(text) as Record<string, unknown>;
    };
    const tenant = String((await api("POST", "/v1/tenant", {}))["id"]);
    const timeline = String((await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } }))["timeline_id"]);
    const tlPath = `/v1/tenant/${tenant}/timeline/${timeline}`;

    log("peer: pg_basebackup -Ft -X none (before the load)");
    await src.runChecked("pg_basebackup", ["-h", src.host, "-p", String(src.port), "-U", src.user, "-D", bbDir, "-Ft", "-X", "none", "--checkpoint=fast", "--no-sync"]);
    const baseTar = join(bbDir, "base.tar");
    log(`peer: base.tar ${(statSync(baseTar).size / 1e6).toFixed(1)} MB`);

    log(`load: pgbench -c ${CLIENTS} -T ${LOAD_S}, X recorded halfway`);
    const lsnBefore = await insertLsn();
    const load = pgbench(["-n", "-c", String(CLIENTS), "-j", "2", "-T", String(LOAD_S)]);
    await sleep((LOAD_S * 1000) / 2);
    const x = await insertLsn();
    await load;
    const lsnEnd = await insertLsn();
    // Archive everything up to the end of the load; the pageserver ingests it all.
    const lastSeg = (await src.psql("SELECT pg_walfile_name(pg_switch_wal())")).trim();
    await until(
      `archiving of ${lastSeg}`,
      async () => {
        const a = (await s.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")).trim();
        return a.length === 24 && a.slice(8) >= lastSeg.slice(8);
      },
      budget(60_000),
    );
    await until(
      `pageserver at ${lsnToString(lsnEnd)}`,
      async () => parseLsn(String((await api("GET", tlPath))["last_record_lsn"])) >= lsnEnd,
      budget(120_000),
      20,
    );
    log(`X = ${lsnToString(x)}: ${((x - lsnBefore) / 1e6).toFixed(1)} MB of WAL after the peer's backup (load total ${((lsnEnd - lsnBefore) / 1e6).toFixed(1)} MB)`);

    // --- ours: base backup at X from the pageserver.
    log("ours: GET basebackup?lsn=X, untar, start, first query");
    let t0 = performance.now();
    const r = await fetch(`${base}${tlPath}/basebackup?lsn=${lsnToString(x)}`);
    if (r.status !== 200 || r.body === null) throw new Error(`basebackup at ${lsnToString(x)}: ${r.status} ${await r.text()}`);
    const ours = new BackupServer();
    restored.push(ours);
    await ours.untar(r.body as unknown as AsyncIterable<Uint8Array>);
    const oursUntarred = performance.now();
    await ours.start(RESTORED_CONF);
    await ours.psql("SELECT 1");
    const oursS = (performance.now() - t0) / 1000;
    log(`ours: ${oursS.toFixed(2)} s (fetch + untar ${((oursUntarred - t0) / 1000).toFixed(2)} s)`);
    const oursState = await ours.psql(STATE_SQL);
    await ours.destroy();

    // --- peer: base backup + archive replayed to X.
    log("peer: untar, recovery.signal + restore_command + recovery_target_lsn, start, first query");
    t0 = performance.now();
    const peer = new BackupServer();
    restored.push(peer);
    await peer.untar(createReadStream(baseTar));
    writeFileSync(join(peer.data, "recovery.signal"), "");
    appendFileSync(
      join(peer.data, "postgresql.auto.conf"),
      [
        "# written by bench/pitr.bench.ts",
        `restore_command = 'cp ${archive}/%f %p'`,
        `recovery_target_lsn = '${lsnToString(x)}'`,
        "recovery_target_inclusive = off",
        "recovery_target_action = 'promote'",
        "hot_standby = off",
        "",
      ].join("\n"),
    );
    chownPg(peer.data, true);
    const peerUntarred = performance.now();
    await peer.start(RESTORED_CONF);
    // pg_ctl -w may return while recovery still refuses connections (hot_standby off).
    const promoted = async (): Promise<boolean> => {
      try {
        return (await peer.psql("SELECT pg_is_in_recovery()")) === "f";
      } catch {
        return false;
      }
    };
    await until("peer promotion", promoted, budget(120_000), 20);
    const peerS = (performance.now() - t0) / 1000;
    log(`peer: ${peerS.toFixed(2)} s (untar ${((peerUntarred - t0) / 1000).toFixed(2)} s)`);
    const peerState = await peer.psql(STATE_SQL);
    const stopLine = /recovery stopping [^\n]*/.exec(peer.logText())?.[0] ?? "(no 'recovery stopping' line in the log)";
    log(`peer log: ${stopLine}`);
    const redoDone = /redo done at [0-9A-F]+\/[0-9A-F]+ system usage: .*elapsed: ([\d.]+) s/.exec(peer.logText());
    if (redoDone === null) throw new Error(`pitr bench: no "redo done … elapsed" line in the peer's log:\n${peer.logText().slice(-2000)}`);
    const peerReplayS = Number(redoDone[1]);
    log(`peer: WAL replay ${peerReplayS.toFixed(2)} s of ${peerS.toFixed(2)} s`);
    await peer.destroy();

    log(`state at X: ours ${oursState}, peer ${peerState}`);
    if (oursState !== peerState) throw new Error(`state at ${lsnToString(x)} differs: ours ${oursState}, peer ${peerState}`);
    const note = " [peer replays + checks an image on every record]";
    return [
      row(`s to a running PostgreSQL at a past LSN (mid pgbench -T ${LOAD_S})${note}`, "s", oursS, PEER, peerS),
      row(`peer: WAL restore + replay to X (its log's redo elapsed)${note}`, "s", peerReplayS),
      row("peer: untar + start + promote + first query (without its replay)", "s", Math.max(peerS - peerReplayS, 0)),
    ];
  } finally {
    for (const b of restored) await b.destroy().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await src?.destroy().catch(() => undefined);
    if (workdir !== null) rmSync(workdir, { recursive: true, force: true });
    if (peerDir !== null) rmSync(peerDir, { recursive: true, force: true });
  }
}
