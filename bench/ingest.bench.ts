/**
 * `npm run bench -- ingest`: WAL ingest from a pgbench load, the pageserver (in-process
 * Server, timeline bootstrapped from the source over the HTTP API) side by side with a stock
 * PostgreSQL 15 streaming standby (the peer) replaying the same WAL.
 *
 * Source: PostgreSQL 15 on default WAL settings (wal_level = replica, full_page_writes on,
 * wal_compression off, no wal_consistency_checking): plain WAL, as a production database
 * writes it; the pageserver redoes every record natively and the standby is a plain one.
 * `pgbench -i -s 5`. Both consumers are attached before any load.
 * INGEST_WAL=images runs the former variant instead: wal_consistency_checking = all and
 * wal_compression = lz4, so every record carries the page after it (≈16× the WAL) and the
 * standby also compares that image with the page its redo produced (checkXLogConsistency).
 * Every row against the peer names the variant (see PEER_NOTE).
 * - live: lsn0, `pgbench -c 4 -T LIVE_S`, lsn1; seconds from the load's start until each
 *   consumer has applied lsn1 (pageserver last_record_lsn, standby pg_last_wal_replay_lsn(),
 *   polled every 20 ms): catch-up time including the load. MB/s and records/s over
 *   [lsn0, lsn1] divided by that time.
 * - catch-up: both consumers stop streaming (pageserver: DELETE wal_source; standby: stopped
 *   after replaying a fresh checkpoint), `pgbench -c 4 -T CATCHUP_S`, lsn1; both resume at the
 *   same moment (PUT wal_source; pg_ctl start); MB/s = (lsn1 − the consumer's resume LSN) /
 *   seconds to reach lsn1, records/s = records in that range (pg_waldump --stats) / seconds.
 *   The standby's seconds include its startup (it re-replays from the checkpoint).
 * - backpressure (live run, pageserver only): the flush lag (last_record_lsn −
 *   disk_consistent_lsn) and frozen layers sampled every LAG_SAMPLE_MS from the load's start
 *   until lsn1 is ingested, and the share of that time ingest was delayed / stalled.
 * Sanity: sum(pgbench_accounts.abalance) on a base backup at the final lsn1 equals the
 * source's (idle by then) and the standby's; records_ingested of the resumed stream equals
 * pg_waldump's count over the same range (resume LSN .. last_record_lsn, read together);
 * the bench fails otherwise.
 * The standby's catch-up startup (pg_ctl start until it answers a query) is also reported on
 * its own, and the catch-up again with the standby timed from then (replay only).
 * Everything is bounded (each wait has a deadline); every process and dir is removed in finally.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import pg from "pg";
import { pino } from "pino";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { asLsn, type Lsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { BackupServer } from "../test/support/backup_server.js";
import { PgInstance } from "../test/support/postgres.js";
import { Standby } from "../test/support/standby.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import type { TenantId, TimelineId } from "../src/types/ids.js";
import { type BenchRow, percentile, row } from "./harness.js";

/** INGEST_WAL=images: the former image-carrying source (see the header). */
const IMAGES = (process.env["INGEST_WAL"] ?? "plain") === "images";
if (!IMAGES && (process.env["INGEST_WAL"] ?? "plain") !== "plain") throw new Error("INGEST_WAL must be plain (default) or images");
const SOURCE_CONF = {
  wal_level: "replica",
  full_page_writes: true,
  ...(IMAGES ? { wal_consistency_checking: "all", wal_compression: "lz4", max_wal_size: "4GB" } : { wal_compression: "off" }),
  max_wal_senders: 10,
  max_replication_slots: 10,
  max_connections: 30,
  // The pageserver's slot is dropped by DELETE wal_source: keep the WAL it resumes from.
  wal_keep_size: "4GB",
  // No autovacuum: the WAL in each measured range is pgbench's alone, and records_ingested
  // can be checked against pg_waldump's count.
  autovacuum: false,
};
const SCALE = 5;
const CLIENTS = 4;
const LIVE_S = Number(process.env["INGEST_LIVE_S"] ?? 10);
const CATCHUP_S = Number(process.env["INGEST_CATCHUP_S"] ?? 10);
const POLL_MS = 20;
const WAL_PAGE_SIZE = 8192;
const WAL_SEG_SIZE = 16 * 1024 * 1024;
const SHORT_PAGE_HEADER = 24;
const LONG_PAGE_HEADER = 40;
/** The pageserver's poll period (GET timeline info costs it ~10 ms of main thread each). */
const PS_POLL_MS = Number(process.env["INGEST_PS_POLL_MS"] ?? POLL_MS);
/** Hard bound on the whole bench. */
const TOTAL_MS = 175_000;
const PEER = "PG15 streaming standby";
/** Appended to the name of every row compared with the standby: what the peer does. */
const PEER_NOTE = IMAGES
  ? " [image WAL: peer replays + checks an image on every record]"
  : " [plain WAL: peer is a plain standby replaying it]";

const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));
const log = (msg: string) => console.error(`[ingest ${new Date().toISOString().slice(11, 23)}] ${msg}`);

class Ctx {
  readonly deadline = Date.now() + TOTAL_MS;
  base = "";
  tenant = "";
  timeline = "";

  remaining(capMs: number): number {
    const left = this.deadline - Date.now();
    if (left <= 0) throw new Error("ingest bench: over its time budget");
    return Math.min(left, capMs);
  }

  async api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    const r = await fetch(`${this.base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return text.length > 0 && r.headers.get("content-type")?.includes("json") ? (JSON.parse(text) as Record<string, unknown>) : {};
  }

  timelinePath(): string {
    return `/v1/tenant/${this.tenant}/timeline/${this.timeline}`;
  }

  async info(): Promise<Record<string, unknown>> {
    return await this.api("GET", this.timelinePath());
  }
}

/**
 * Watches the standby's replay LSN from a worker thread: the in-process pageserver can hold
 * the main event loop for hundreds of ms while it ingests, which must not delay (and so
 * inflate) the peer's measurement. Reconnects while the standby (re)starts.
 */
const WATCHER_JS = `
const { parentPort, workerData } = require("node:worker_threads");
const pg = require(workerData.pgPath);
const lsn = (s) => { const [h, l] = s.split("/"); return parseInt(h, 16) * 4294967296 + parseInt(l, 16); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let client = null;
async function replay() {
  try {
    if (client === null) {
      const c = new pg.Client(workerData.conn);
      c.on("error", () => {});
      await c.connect();
      client = c;
    }
    const r = await client.query("SELECT pg_last_wal_replay_lsn()::text AS lsn");
    return r.rows[0].lsn === null ? null : lsn(r.rows[0].lsn);
  } catch {
    const c = client; client = null;
    if (c !== null) await c.end().catch(() => {});
    return null;
  }
}
parentPort.on("message", async (m) => {
  if (m.cmd === "close") { if (client !== null) await client.end().catch(() => {}); client = null; parentPort.postMessage({ closed: true }); return; }
  const end = Date.now() + m.timeoutMs;
  let polls = 0, pollMs = 0, last = null, firstAt = null;
  for (;;) {
    const a = performance.now();
    last = await replay();
    pollMs += performance.now() - a; polls++;
    if (last !== null && firstAt === null) firstAt = performance.timeOrigin + performance.now();
    if (last !== null && last >= m.target) { parentPort.postMessage({ at: performance.timeOrigin + performance.now(), firstAt, last, polls, pollMs }); return; }
    if (Date.now() > end) { parentPort.postMessage({ at: null, firstAt, last, polls, pollMs }); return; }
    await sleep(m.pollMs);
  }
});
`;

interface WatchReply {
  at: number | null;
  /** When the first poll of this wait was answered (the standby accepted a connection). */
  firstAt: number | null;
  last: number | null;
  polls: number;
  pollMs: number;
}

class StandbyWatcher {
  private readonly worker: Worker;
  /** Seconds from t0 of the last timeToReach until the standby first answered. */
  lastFirstAnswerS = 0;
  constructor(sb: Standby) {
    const pgPath = createRequire(import.meta.url).resolve("pg");
    this.worker = new Worker(WATCHER_JS, { eval: true, workerData: { pgPath, conn: sb.connectionConfig() } });
    this.worker.unref();
  }

  private request<T>(msg: Record<string, unknown>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.worker.once("error", onError);
      this.worker.once("message", (m: T) => {
        this.worker.off("error", onError);
        resolve(m);
      });
      this.worker.postMessage(msg);
    });
  }

  /** Seconds from `t0` (epoch ms, performance.timeOrigin + performance.now()) until replay ≥ target. */
  async timeToReach(target: Lsn, t0: number, timeoutMs: number): Promise<number> {
    const r = await this.request<WatchReply>({ cmd: "wait", target, timeoutMs, pollMs: POLL_MS });
    if (r.at === null)
      throw new Error(
        `standby did not reach ${lsnToString(target)} in ${timeoutMs} ms (at ${r.last === null ? "-" : lsnToString(asLsn(r.last))})`,
      );
    const s = (r.at - t0) / 1000;
    this.lastFirstAnswerS = ((r.firstAt ?? r.at) - t0) / 1000;
    log(`  standby reached ${lsnToString(target)} after ${s.toFixed(2)} s (${r.polls} polls, ${(r.pollMs / r.polls).toFixed(1)} ms each)`);
    return s;
  }

  /** The current replay LSN (target 0 is reached at the first successful poll). */
  async replayLsn(timeoutMs: number): Promise<Lsn> {
    const r = await this.request<WatchReply>({ cmd: "wait", target: 0, timeoutMs, pollMs: POLL_MS });
    if (r.last === null) throw new Error("standby did not answer");
    return asLsn(r.last);
  }

  /** Drop the connection (before stopping the standby). */
  async disconnect(): Promise<void> {
    await this.request<unknown>({ cmd: "close" });
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

const epochNow = () => performance.timeOrigin + performance.now();

/** Polls `get` every POLL_MS until it reaches `target`; seconds since `t0` (epochNow() ms). */
async function timeToReach(what: string, get: () => Promise<Lsn | null>, target: Lsn, t0: number, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  let last: Lsn | null = null;
  let polls = 0;
  let pollMs = 0;
  for (;;) {
    const a = performance.now();
    last = await get();
    pollMs += performance.now() - a;
    polls++;
    if (last !== null && last >= target) {
      const s = (epochNow() - t0) / 1000;
      log(`  ${what} reached ${lsnToString(target)} after ${s.toFixed(2)} s (${polls} polls, ${(pollMs / polls).toFixed(1)} ms each)`);
      return s;
    }
    if (Date.now() > end)
      throw new Error(`${what} did not reach ${lsnToString(target)} in ${timeoutMs} ms (at ${last === null ? "-" : lsnToString(last)})`);
    await sleep(PS_POLL_MS);
  }
}

async function pgbench(src: PgInstance, args: string[]): Promise<string> {
  return await src.runChecked("pgbench", ["-h", src.host, "-p", String(src.port), "-U", src.user, ...args, "postgres"]);
}

/**
 * The end of the last WAL record, as consumers report it (pg_last_wal_replay_lsn(),
 * last_record_lsn): pg_current_wal_insert_lsn() counts the page header of a fresh page
 * (e.g. 0/8000028 right after a segment switch), which no record ends at; take it off.
 */
async function insertLsn(src: PgInstance): Promise<Lsn> {
  const lsn = parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
  if (lsn % WAL_SEG_SIZE === LONG_PAGE_HEADER) return asLsn(lsn - LONG_PAGE_HEADER);
  if (lsn % WAL_PAGE_SIZE === SHORT_PAGE_HEADER) return asLsn(lsn - SHORT_PAGE_HEADER);
  return lsn;
}

/** Number of WAL records in [from, to) by pg_waldump --stats on the source's pg_wal. */
async function countRecords(src: PgInstance, from: Lsn, to: Lsn): Promise<number> {
  const r = await src.waldump(["-s", lsnToString(from), "-e", lsnToString(to), "--stats"]);
  const m = /^Total\s+(\d+)/m.exec(r.stdout);
  if (r.code !== 0 || m === null) throw new Error(`pg_waldump --stats gave no total: ${r.stderr || r.stdout.slice(0, 400)}`);
  return Number(m[1]);
}

const ACCOUNTS_SUM = "SELECT count(*), sum(abalance) FROM pgbench_accounts";

export default async function run(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const ctx = new Ctx();
  let src: PgInstance | null = null;
  let server: Server | null = null;
  let workdir: string | null = null;
  let sb: Standby | null = null;
  let watcher: StandbyWatcher | null = null;
  let bb: BackupServer | null = null;
  try {
    log(`source: initdb, start (${IMAGES ? "image WAL: wal_consistency_checking = all, lz4" : "plain WAL: default settings"}), pgbench -i`);
    src = await PgInstance.start({ conf: SOURCE_CONF });
    await pgbench(src, ["-i", "-s", String(SCALE), "-q"]);
    await src.psql("CHECKPOINT");

    log("pageserver: bootstrap a timeline from the source");
    workdir = mkdtempSync(join(tmpdir(), "ps-bench-ingest-"));
    server = new Server(
      loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }),
      pino({ level: process.env["BENCH_LOG_LEVEL"] ?? "silent" }),
    );
    ctx.base = `http://127.0.0.1:${await server.start()}`;
    ctx.tenant = String((await ctx.api("POST", "/v1/tenant", {}))["id"]);
    const connstr = src.connectionString();
    ctx.timeline = String((await ctx.api("POST", `/v1/tenant/${ctx.tenant}/timeline`, { wal_source: { connstr } }))["timeline_id"]);
    const psLsn = async (): Promise<Lsn | null> => parseLsn(String((await ctx.info())["last_record_lsn"]));

    log("standby: pg_basebackup -R -X stream -C -S standby_slot, start");
    sb = await Standby.create(src, { slot: "standby_slot" });
    await sb.start();
    log("standby started; both consumers catch up to the current LSN");
    watcher = new StandbyWatcher(sb);
    const w = watcher;

    let target = await insertLsn(src);
    await Promise.all([
      timeToReach("pageserver", psLsn, target, epochNow(), ctx.remaining(60_000)),
      w.timeToReach(target, epochNow(), ctx.remaining(60_000)),
    ]);

    // --- live: both consumers streaming while the load runs.
    log(`live: pgbench -c ${CLIENTS} -T ${LIVE_S}`);
    const lsn0 = await insertLsn(src);
    const lag = new LagSampler(server.tenants.get(ctx.tenant as TenantId).getTimeline(ctx.timeline as TimelineId));
    let t0 = epochNow();
    const liveOut = await pgbench(src, ["-n", "-c", String(CLIENTS), "-j", "2", "-T", String(LIVE_S)]);
    const loadS = (epochNow() - t0) / 1000;
    const lsn1 = await insertLsn(src);
    const [psLive, sbLive] = await Promise.all([
      timeToReach("pageserver", psLsn, lsn1, t0, ctx.remaining(120_000)),
      w.timeToReach(lsn1, t0, ctx.remaining(120_000)),
    ]);
    const liveRecords = await countRecords(src, lsn0, lsn1);
    const liveMB = (lsn1 - lsn0) / 1e6;
    const tps = /tps = ([\d.]+)/.exec(liveOut)?.[1] ?? "?";
    log(
      `live: ${liveMB.toFixed(1)} MB, ${liveRecords} records, load ${loadS.toFixed(1)} s (${tps} tps); pageserver ${psLive.toFixed(2)} s, standby ${sbLive.toFixed(2)} s`,
    );
    rows.push(row(`live: s from load start to lsn1 (pgbench -T ${LIVE_S})`, "s", psLive, PEER, sbLive));
    rows.push(row("live: WAL MB/s (incl. load)", "MB/s", liveMB / psLive, PEER, liveMB / sbLive));
    rows.push(row("live: records/s (incl. load)", "records/s", liveRecords / psLive, PEER, liveRecords / sbLive));
    const bp = lag.stop();
    log(
      `live: flush lag p50 ${bp.lagP50MB.toFixed(1)} MB, max ${bp.lagMaxMB.toFixed(1)} MB, frozen max ${bp.frozenMax}, ${bp.samples} samples`,
    );
    rows.push(row("live: flush lag p50 (MB)", "MB", bp.lagP50MB));
    rows.push(row("live: flush lag max (MB)", "MB", bp.lagMaxMB));
    rows.push(row("live: frozen layers max", "layers", bp.frozenMax));
    rows.push(row("live: ingest delayed (% of time)", "%", bp.delayedPct));
    rows.push(row("live: ingest stalled (% of time)", "%", bp.stalledPct));

    // --- catch-up: both stopped during the load, resumed together.
    log("catch-up: checkpoint, both consumers reach it, stop both");
    await src.psql("CHECKPOINT");
    target = await insertLsn(src);
    await Promise.all([
      timeToReach("pageserver", psLsn, target, epochNow(), ctx.remaining(60_000)),
      w.timeToReach(target, epochNow(), ctx.remaining(60_000)),
    ]);
    const sbResume = await w.replayLsn(ctx.remaining(10_000));
    await w.disconnect();
    await ctx.api("DELETE", `${ctx.timelinePath()}/wal_source`);
    await sb.stop();
    const psResume = (await psLsn()) ?? target;

    log(`catch-up: pgbench -c ${CLIENTS} -T ${CATCHUP_S} with both consumers stopped`);
    await pgbench(src, ["-n", "-c", String(CLIENTS), "-j", "2", "-T", String(CATCHUP_S)]);
    const lsn2 = await insertLsn(src);

    log(`catch-up: resume both (pageserver at ${lsnToString(psResume)}, standby at ${lsnToString(sbResume)}, target ${lsnToString(lsn2)})`);
    t0 = epochNow();
    const standbyStarted = sb.startNoWait();
    await ctx.api("PUT", `${ctx.timelinePath()}/wal_source`, { connstr });
    await standbyStarted;
    const [psCatch, sbCatch] = await Promise.all([
      timeToReach("pageserver", psLsn, lsn2, t0, ctx.remaining(120_000)),
      w.timeToReach(lsn2, t0, ctx.remaining(120_000)),
    ]);
    // Counted once both have it: by then the source has written all of it to pg_wal.
    const sbStartup = w.lastFirstAnswerS;
    const psRecords = await countRecords(src, psResume, lsn2);
    const sbRecords = sbResume === psResume ? psRecords : await countRecords(src, sbResume, lsn2);
    // records_ingested counts from the resume; last_record_lsn from the same reply bounds it.
    const after = await ctx.info();
    const ingested = Number(((after["wal_source"] ?? {}) as Record<string, unknown>)["records_ingested"]);
    const ingestedTo = parseLsn(String(after["last_record_lsn"]));
    const dumped = await countRecords(src, psResume, ingestedTo);
    if (ingested !== dumped) {
      throw new Error(
        `records_ingested ${ingested} != pg_waldump's ${dumped} records in ${lsnToString(psResume)}..${lsnToString(ingestedTo)}`,
      );
    }
    const psMB = (lsn2 - psResume) / 1e6;
    const sbMB = (lsn2 - sbResume) / 1e6;
    log(
      `catch-up: pageserver ${psMB.toFixed(1)} MB / ${psRecords} records (records_ingested ${ingested}) in ${psCatch.toFixed(2)} s; ` +
        `standby ${sbMB.toFixed(1)} MB / ${sbRecords} records in ${sbCatch.toFixed(2)} s (startup ${sbStartup.toFixed(2)} s)`,
    );
    rows.push(row(`catch-up: s from resume to lsn1 (pgbench -T ${CATCHUP_S})`, "s", psCatch, PEER, sbCatch));
    rows.push(row("catch-up: WAL MB/s", "MB/s", psMB / psCatch, PEER, sbMB / sbCatch));
    rows.push(row("catch-up: records/s", "records/s", psRecords / psCatch, PEER, sbRecords / sbCatch));
    rows.push(row("catch-up: standby startup (pg_ctl start until it answers)", "s", sbStartup));
    const sbReplay = Math.max(sbCatch - sbStartup, Number.EPSILON);
    rows.push(
      row(`catch-up: s from resume to lsn1, standby from its startup's end (pgbench -T ${CATCHUP_S})`, "s", psCatch, PEER, sbReplay),
    );
    rows.push(row("catch-up: WAL MB/s, standby from its startup's end", "MB/s", psMB / psCatch, PEER, sbMB / sbReplay));

    // --- sanity: a base backup at lsn2 has the source's pgbench_accounts.
    log("sanity: base backup at lsn1, sum(abalance)");
    const want = await src.psql(ACCOUNTS_SUM);
    const r = await fetch(`${ctx.base}${ctx.timelinePath()}/basebackup?lsn=${lsnToString(lsn2)}`);
    if (r.status !== 200 || r.body === null) throw new Error(`basebackup at ${lsnToString(lsn2)}: ${r.status} ${await r.text()}`);
    bb = new BackupServer();
    await bb.untar(r.body as unknown as AsyncIterable<Uint8Array>);
    await bb.start();
    const got = await bb.psql(ACCOUNTS_SUM);
    const sbSum = await standbySql(sb, ACCOUNTS_SUM);
    log(`sanity: source ${want}, base backup ${got}, standby ${sbSum}`);
    let getMs = performance.now();
    for (let i = 0; i < 10; i++) await ctx.info();
    getMs = (performance.now() - getMs) / 10;
    log(`note: GET timeline info takes ${getMs.toFixed(1)} ms when idle`);
    if (got !== want || sbSum !== want)
      throw new Error(`pgbench_accounts differ at ${lsnToString(lsn2)}: source ${want}, base backup ${got}, standby ${sbSum}`);
    return rows.map((r) => (r.peer === PEER ? { ...r, name: r.name + PEER_NOTE } : r));
  } finally {
    await watcher?.terminate().catch(() => undefined);
    await bb?.destroy().catch(() => undefined);
    await sb?.destroy().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await src?.destroy().catch(() => undefined);
    if (workdir !== null) rmSync(workdir, { recursive: true, force: true });
  }
}

async function standbySql(sb: Standby, sql: string): Promise<string> {
  const c = new pg.Client(sb.connectionConfig());
  try {
    await c.connect();
    const r = await c.query({ text: sql, rowMode: "array" });
    return r.rows.map((x: unknown[]) => x.map(String).join("|")).join("\n");
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Flush-lag samples during the live run: at most this many (LIVE_S is bounded by TOTAL_MS anyway). */
const LAG_SAMPLE_MS = 100;
const MAX_LAG_SAMPLES = 100_000;

/**
 * Samples the live run's flush lag and frozen layers straight from the in-process timeline
 * (no HTTP round trip, so sampling costs the pageserver nothing measurable), and takes the
 * ingest gate's delayed / stalled time over the same span.
 */
class LagSampler {
  private readonly tl: Timeline;
  private readonly lags: number[] = [];
  private frozenMax = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly t0 = performance.now();
  private readonly bp0: { delayed_ms: number; stalled_ms: number };

  constructor(tl: Timeline) {
    this.tl = tl;
    this.bp0 = tl.backpressureStats;
    this.timer = setInterval(() => this.sample(), LAG_SAMPLE_MS);
    this.timer.unref();
    this.sample();
  }

  private sample(): void {
    if (this.lags.length >= MAX_LAG_SAMPLES) return;
    this.lags.push(this.tl.lastRecordLsn - this.tl.diskConsistentLsn);
    this.frozenMax = Math.max(this.frozenMax, this.tl.frozenCount);
  }

  stop(): { lagP50MB: number; lagMaxMB: number; frozenMax: number; delayedPct: number; stalledPct: number; samples: number } {
    clearInterval(this.timer);
    this.sample();
    const span_ms = performance.now() - this.t0;
    const bp = this.tl.backpressureStats;
    const sorted = this.lags.slice().sort((a, b) => a - b);
    return {
      lagP50MB: percentile(sorted, 50) / 1e6,
      lagMaxMB: sorted[sorted.length - 1]! / 1e6,
      frozenMax: this.frozenMax,
      delayedPct: (100 * (bp.delayed_ms - this.bp0.delayed_ms)) / span_ms,
      stalledPct: (100 * (bp.stalled_ms - this.bp0.stalled_ms)) / span_ms,
      samples: sorted.length,
    };
  }
}
