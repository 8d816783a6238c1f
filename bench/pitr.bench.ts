/**
 * `npm run bench -- pitr`: seconds to get a running PostgreSQL 15 at a past LSN X, at three
 * volumes of WAL between the peer's base backup and X (≈100 MB, ≈500 MB, ≈1 GB; scaled with
 * PITR_VOLUMES_MB, e.g. PITR_VOLUMES_MB=20,60,120 for a quick check). For each X:
 * - ours: GET .../basebackup?lsn=X → untar → start → first successful query;
 * - peer: the classic PITR, a pg_basebackup (-Ft -X none) taken before the load plus the WAL
 *   archive (archive_mode = on, archive_command = cp): untar → recovery.signal,
 *   restore_command = cp, recovery_target_lsn = X (inclusive off: every record that ends by X),
 *   recovery_target_action = promote, hot_standby off → start → first successful query
 *   (pg_is_in_recovery() = false).
 * Ours should stay flat (it reads the pages at X from its layers) while the peer grows with
 * the WAL it replays: both curves are printed, one row per volume with both sides and their
 * ratio, and beside it the WAL volume measured at X, the peer's replay (its log's "redo done …
 * elapsed") and the rest of its time (untar, start, promote, first query).
 *
 * Source: PostgreSQL 15 on default WAL settings (wal_level = replica, full_page_writes on,
 * wal_compression off, no wal_consistency_checking): plain WAL, which the pageserver redoes
 * natively and the peer replays as any PITR does. Autovacuum stays on, as by default.
 * checkpoint_timeout = 30s (PITR_CHECKPOINT_TIMEOUT): a busy database checkpoints often, and
 * the full-page images each checkpoint brings on (the first change to each page after it) let
 * a bounded run write ≈1 GB. `pgbench -i -s PITR_SCALE` (20), the pageserver timeline
 * bootstrapped and the peer's base backup taken (its START WAL LOCATION is where the volumes
 * count from), then `pgbench -c 4` in runs of CHUNK_S seconds until the largest volume is
 * passed; each X is the insert LSN read while a run is going, the first past its volume.
 * Once the archive and the pageserver have all of it, the pageserver flushes and runs one
 * compaction round (what its background loop does every compaction_period), so that no
 * measurement shares the machine with its background work. Both restored servers run with
 * shared_buffers = 128MB (PostgreSQL's default) and autovacuum off.
 * Both servers must show the same pgbench_accounts / pgbench_history at each X (the bench
 * fails otherwise). Bounded: every wait has a deadline inside PITR_TOTAL_S; everything started
 * is stopped and every dir removed in finally.
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, createReadStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { pino } from "pino";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { type Lsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { BackupServer } from "../test/support/backup_server.js";
import { PgInstance } from "../test/support/postgres.js";
import { type BenchRow, row } from "./harness.js";

const SCALE = Number(process.env["PITR_SCALE"] ?? 20);
const CLIENTS = 4;
const VOLUMES_MB = parseVolumes(process.env["PITR_VOLUMES_MB"] ?? "100,500,1000");
const CHECKPOINT_TIMEOUT = process.env["PITR_CHECKPOINT_TIMEOUT"] ?? "30s";
/** pgbench runs this long each time; X is read while one is going. */
const CHUNK_S = 5;
/** How often the insert LSN is read during the load. */
const LSN_POLL_MS = 100;
const TOTAL_MS = Number(process.env["PITR_TOTAL_S"] ?? 900) * 1000;
/** The load stops after this many runs even when the volumes are not reached (then the bench fails). */
const MAX_CHUNKS = Math.ceil(TOTAL_MS / 1000 / CHUNK_S);
const PEER = "PG15 base backup + WAL archive replay";
/** Appended to the name of every row compared with the peer: what the peer does. */
const NOTE = " [plain WAL: peer replays it, no image checks]";
const STATE_SQL =
  "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history), (SELECT sum(delta) FROM pgbench_history)";
/** Settings for both restored servers (-c; no spaces in values). */
const RESTORED_CONF = { archive_mode: "off", autovacuum: "off", shared_buffers: "128MB" };

const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));
const log = (msg: string) => console.error(`[pitr ${new Date().toISOString().slice(11, 23)}] ${msg}`);

function parseVolumes(text: string): number[] {
  const v = text.split(",").map((x) => Number(x.trim()));
  if (v.length !== 3 || v.some((x) => !Number.isFinite(x) || x <= 0) || !(v[0]! < v[1]! && v[1]! < v[2]!)) {
    throw new Error(`PITR_VOLUMES_MB must be three increasing sizes in MB, e.g. 100,500,1000 (got '${text}')`);
  }
  return v;
}

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

/** One point of the curves: X, and what each side took to get a server running at X. */
interface Point {
  volumeMB: number;
  x: Lsn;
  walMB: number;
  oursS: number;
  oursFetchS: number;
  peerS: number;
  peerReplayS: number;
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
  let lsnClient: pg.Client | null = null;
  const restored: BackupServer[] = [];
  try {
    // Archive and the peer's base backup live in a dir owned by postgres.
    peerDir = mkdtempSync(join(tmpdir(), "pitr-peer-"));
    const archive = join(peerDir, "archive");
    const bbDir = join(peerDir, "basebackup");
    mkdirSync(archive);
    chownPg(peerDir);
    chownPg(archive);

    log(
      `source: initdb, start (plain WAL: default settings, archive_mode on, checkpoint_timeout ${CHECKPOINT_TIMEOUT}), pgbench -i -s ${SCALE}`,
    );
    src = await PgInstance.start({
      conf: {
        wal_level: "replica",
        full_page_writes: true,
        wal_compression: "off",
        checkpoint_timeout: CHECKPOINT_TIMEOUT,
        shared_buffers: "128MB",
        max_wal_senders: 10,
        max_replication_slots: 10,
        max_connections: 30,
        archive_mode: true,
        archive_command: `test ! -f ${archive}/%f && cp %p ${archive}/%f`,
      },
    });
    const s = src;
    const pgbench = (args: string[]) => s.runChecked("pgbench", ["-h", s.host, "-p", String(s.port), "-U", s.user, ...args, "postgres"]);
    await pgbench(["-i", "-s", String(SCALE), "-q"]);
    const dbMB = Number(await s.psql("SELECT pg_database_size('postgres')")) / 1e6;

    log("pageserver: bootstrap a timeline from the source");
    workdir = mkdtempSync(join(tmpdir(), "ps-bench-pitr-"));
    server = new Server(
      loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }),
      pino({ level: process.env["BENCH_LOG_LEVEL"] ?? "silent" }),
    );
    const base = `http://127.0.0.1:${await server.start()}`;
    const api = async (method: string, path: string, timeoutMs: number, body?: unknown): Promise<Record<string, unknown>> => {
      const r = await fetch(`${base}${path}`, {
        method,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await r.text();
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text}`);
      return JSON.parse(text) as Record<string, unknown>;
    };
    const tenant = String((await api("POST", "/v1/tenant", budget(10_000), {}))["id"]);
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, budget(300_000), {
      wal_source: { connstr: src.connectionString() },
    });
    const tlPath = `/v1/tenant/${tenant}/timeline/${String(created["timeline_id"])}`;

    log("peer: pg_basebackup -Ft -X none (before the load)");
    await src.runChecked("pg_basebackup", [
      "-h",
      src.host,
      "-p",
      String(src.port),
      "-U",
      src.user,
      "-D",
      bbDir,
      "-Ft",
      "-X",
      "none",
      "--checkpoint=fast",
      "--no-sync",
    ]);
    const baseTar = join(bbDir, "base.tar");
    const label = execFileSync("tar", ["-xOf", baseTar, "backup_label"], { encoding: "utf8" });
    const startMatch = /^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/m.exec(label);
    if (startMatch === null) throw new Error(`pitr bench: no START WAL LOCATION in the peer's backup_label:\n${label}`);
    const lsnBase = parseLsn(startMatch[1]!);
    log(
      `peer: base.tar ${(statSync(baseTar).size / 1e6).toFixed(1)} MB (database ${dbMB.toFixed(1)} MB), replay starts at ${lsnToString(lsnBase)}`,
    );

    // --- the load: pgbench runs until the largest volume is passed; each X read mid-run.
    lsnClient = new pg.Client({ host: s.host, port: s.port, user: s.user, database: "postgres", connectionTimeoutMillis: 5000 });
    await lsnClient.connect();
    const lc = lsnClient;
    const insertLsn = async (): Promise<Lsn> =>
      parseLsn(String((await lc.query("SELECT pg_current_wal_insert_lsn()::text AS l")).rows[0].l));
    const xs: Lsn[] = [];
    log(`load: pgbench -c ${CLIENTS} in runs of ${CHUNK_S} s until ${VOLUMES_MB.join(", ")} MB after ${lsnToString(lsnBase)} are passed`);
    const loadT0 = performance.now();
    for (let chunk = 0; xs.length < VOLUMES_MB.length; chunk++) {
      if (chunk >= MAX_CHUNKS) throw new Error(`pitr bench: ${MAX_CHUNKS} pgbench runs did not reach ${VOLUMES_MB[xs.length]} MB of WAL`);
      budget(CHUNK_S * 1000 + 60_000);
      let running = true;
      const load = pgbench(["-n", "-c", String(CLIENTS), "-j", "2", "-T", String(CHUNK_S)]).finally(() => {
        running = false;
      });
      // Handled here too, so a failing LSN read below leaves no unhandled rejection behind; awaited after the loop.
      load.catch(() => undefined);
      while (running) {
        await Promise.race([sleep(LSN_POLL_MS), load]);
        const lsn = await insertLsn();
        // Only a reading taken while pgbench still runs: X is in the middle of the load.
        if (running && xs.length < VOLUMES_MB.length && lsn - lsnBase >= VOLUMES_MB[xs.length]! * 1e6) {
          xs.push(lsn);
          log(
            `  X${xs.length} = ${lsnToString(lsn)}: ${((lsn - lsnBase) / 1e6).toFixed(1)} MB after the peer's backup, ${((performance.now() - loadT0) / 1000).toFixed(1)} s into the load`,
          );
        }
      }
      await load;
    }
    const lsnEnd = await insertLsn();
    const loadS = (performance.now() - loadT0) / 1000;
    await lc.end();
    lsnClient = null;
    log(`load: ${((lsnEnd - lsnBase) / 1e6).toFixed(1)} MB in ${loadS.toFixed(1)} s`);

    // Archive everything up to the end of the load; the pageserver ingests it all.
    const lastSeg = (await s.psql("SELECT pg_walfile_name(pg_switch_wal())")).trim();
    await until(
      `archiving of ${lastSeg}`,
      async () => {
        const a = (await s.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")).trim();
        return a.length === 24 && a.slice(8) >= lastSeg.slice(8);
      },
      budget(120_000),
      200,
    );
    await until(
      `pageserver at ${lsnToString(lsnEnd)}`,
      async () => parseLsn(String((await api("GET", tlPath, 10_000))["last_record_lsn"])) >= lsnEnd,
      budget(600_000),
      100,
    );
    log("pageserver: all ingested; checkpoint + one compaction round");
    let t0 = performance.now();
    await api("PUT", `${tlPath}/checkpoint`, budget(300_000));
    const compacted = await api("PUT", `${tlPath}/compact`, budget(600_000));
    const settleS = (performance.now() - t0) / 1000;
    const layers = (await api("GET", tlPath, 10_000))["layers"];
    log(`pageserver: settled in ${settleS.toFixed(1)} s (${JSON.stringify(compacted)}); layers ${JSON.stringify(layers)}`);

    const points: Point[] = [];
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]!;
      const volumeMB = VOLUMES_MB[i]!;
      const walMB = (x - lsnBase) / 1e6;
      log(`X${i + 1} = ${lsnToString(x)} (${walMB.toFixed(1)} MB of WAL after the peer's backup)`);

      // --- ours: base backup at X from the pageserver.
      t0 = performance.now();
      const r = await fetch(`${base}${tlPath}/basebackup?lsn=${lsnToString(x)}`, { signal: AbortSignal.timeout(budget(600_000)) });
      if (r.status !== 200 || r.body === null) throw new Error(`basebackup at ${lsnToString(x)}: ${r.status} ${await r.text()}`);
      const ours = new BackupServer();
      restored.push(ours);
      await ours.untar(r.body as unknown as AsyncIterable<Uint8Array>);
      const oursFetchS = (performance.now() - t0) / 1000;
      await ours.start(RESTORED_CONF, Math.ceil(budget(600_000) / 1000));
      await ours.psql("SELECT 1");
      const oursS = (performance.now() - t0) / 1000;
      log(`  ours: ${oursS.toFixed(2)} s (fetch + untar ${oursFetchS.toFixed(2)} s)`);
      const oursState = await ours.psql(STATE_SQL);
      await ours.destroy();

      // --- peer: base backup + archive replayed to X.
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
      const peerUntarS = (performance.now() - t0) / 1000;
      // With hot_standby off, pg_ctl -w returns once recovery is over (or the wait ends).
      await peer.start(RESTORED_CONF, Math.ceil(budget(600_000) / 1000));
      const promoted = async (): Promise<boolean> => {
        try {
          return (await peer.psql("SELECT pg_is_in_recovery()")) === "f";
        } catch {
          return false;
        }
      };
      await until("peer promotion", promoted, budget(120_000), 20);
      const peerS = (performance.now() - t0) / 1000;
      const peerState = await peer.psql(STATE_SQL);
      const stopLine = /recovery stopping [^\n]*/.exec(peer.logText())?.[0] ?? "(no 'recovery stopping' line in the log)";
      const redoDone = /redo done at [0-9A-F]+\/[0-9A-F]+ system usage: .*elapsed: ([\d.]+) s/.exec(peer.logText());
      if (redoDone === null)
        throw new Error(`pitr bench: no "redo done … elapsed" line in the peer's log:\n${peer.logText().slice(-2000)}`);
      const peerReplayS = Number(redoDone[1]);
      log(`  peer: ${peerS.toFixed(2)} s (untar ${peerUntarS.toFixed(2)} s, WAL replay ${peerReplayS.toFixed(2)} s); ${stopLine}`);
      await peer.destroy();

      log(`  state at X${i + 1}: ours ${oursState}, peer ${peerState}`);
      if (oursState !== peerState) throw new Error(`state at ${lsnToString(x)} differs: ours ${oursState}, peer ${peerState}`);
      points.push({ volumeMB, x, walMB, oursS, oursFetchS, peerS, peerReplayS });
    }

    log(
      `curves (s to a running PostgreSQL at X): ours ${points.map((p) => p.oursS.toFixed(2)).join(", ")}; peer ${points.map((p) => p.peerS.toFixed(2)).join(", ")}`,
    );
    const rows: BenchRow[] = [
      row(`database size after pgbench -i -s ${SCALE}`, "MB", dbMB),
      row(`load: WAL written by pgbench -c ${CLIENTS} (checkpoint_timeout ${CHECKPOINT_TIMEOUT})`, "MB", (lsnEnd - lsnBase) / 1e6),
      row("load: seconds", "s", loadS),
      row("ours: checkpoint + one compaction round before the measurements", "s", settleS),
    ];
    for (const p of points) {
      const at = `X at ≈${p.volumeMB} MB`;
      rows.push(row(`${at}: WAL between the peer's base backup and X`, "MB", p.walMB));
      rows.push(row(`${at}: s to a running PostgreSQL at X${NOTE}`, "s", p.oursS, PEER, p.peerS));
      rows.push(row(`${at}: ours, basebackup fetch + untar (of the above)`, "s", p.oursFetchS));
      rows.push(row(`${at}: peer, WAL restore + replay to X (its log's redo elapsed)${NOTE}`, "s", p.peerReplayS));
      rows.push(row(`${at}: peer, untar + start + promote + first query (without its replay)`, "s", Math.max(p.peerS - p.peerReplayS, 0)));
    }
    return rows;
  } finally {
    await lsnClient?.end().catch(() => undefined);
    for (const b of restored) await b.destroy().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await src?.destroy().catch(() => undefined);
    if (workdir !== null) rmSync(workdir, { recursive: true, force: true });
    if (peerDir !== null) rmSync(peerDir, { recursive: true, force: true });
  }
}
