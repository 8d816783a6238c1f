/**
 * `npm run bench -- redo`: native redo (src/pg/redo) of real PostgreSQL 15 WAL, per record, by
 * rmgr and by info code, beside PostgreSQL's own replay of the same workload; and pages/s of
 * PgRedo.apply reconstructing a heap page from 1 image + N records (N = 0, 1, 10, 100).
 *
 * Corpus ("source A"): PostgreSQL 15 with wal_consistency_checking = all (every block
 * reference carries PostgreSQL's image of the page after the change), full_page_writes on,
 * wal_compression = lz4. Setup (not in the corpus): `pgbench -i -s 2` and a table `bx` with
 * GIN (fastupdate on and off), hash, GiST (point, range), SP-GiST (text, point), BRIN and
 * bloom (generic WAL, when installable) indexes and REDO_BENCH_ROWS rows. CHECKPOINT; the
 * corpus is the WAL of the workload after it: bx inserts / non-HOT updates / deletes, VACUUM,
 * sequence calls, a COPY (heap2 MULTI_INSERT), `pgbench -t` (REDO_BENCH_TX transactions, 2
 * clients), VACUUM of the pgbench tables. The server is stopped with -m immediate (its data
 * directory then needs crash recovery from that checkpoint) and its pg_wal is read with
 * test/support/redo_verify.ts's verifyWal, which keeps our version of every page (APPLY
 * images restored, our own redo output otherwise) and redoes each block reference of every
 * rmgr the registry (src/pg/redo/redo_table.ts) has, comparing the result with the check image
 * after masking: any mismatch fails the bench. Records with verified native redo are sampled
 * uniformly (reservoir of REDO_BENCH_SAMPLE records, fixed seed), each with all its verified
 * (block id, base page, result); so the sample has the corpus's mix of kinds.
 *
 * Ours, per record = the redo of its natively redone blocks through its rmgr's RmgrRedo on a
 * decoded record (blocks restored from APPLY images are not redo and not counted):
 * - means: per kind, its records in LSN order in batches of BATCH_PAGES pages; the base pages
 *   are copied into preallocated pages (not timed), the batch is redone under one timer
 *   (wall: performance.now(); CPU: process.cpuUsage(), user + system), then every result is
 *   compared byte for byte with the verified result (not timed; a difference fails the
 *   bench). WARMUP_ROUNDS untimed rounds, then up to TIMED_ROUNDS; each batch counts with
 *   the median of its rounds (this drops the rounds in which a loaded machine descheduled
 *   us), summed per kind, per rmgr and over all. "decode + redo" also decodes each record
 *   from its bytes in the timed region (decodeRecord, as PgRedo.apply does for each record).
 * - p50 / p99: all records interleaved in LSN order as in the WAL, one performance.now()
 *   pair per record (its cost is logged and included), DIST_ROUNDS rounds.
 *
 * Peer ("source B"): a second PostgreSQL 15 on default WAL settings (no
 * wal_consistency_checking, wal_compression off) runs the same setup, CHECKPOINT and
 * workload, is stopped with -m immediate, and its crash recovery is timed: `pg_ctl start` on
 * a fresh copy of the crashed data directory, best of RECOVERY_RUNS (elapsed and CPU each),
 * from the "redo done … system usage" line PostgreSQL logs (10 ms resolution). That covers
 * the redo loop only: reading WAL from the OS page cache, decoding, FPI restore, rm_redo,
 * buffer lookups and reads from the OS page cache (shared_buffers 256MB: nothing is evicted;
 * fsync = off: nothing is synced); no process start, no end-of-recovery checkpoint. Divided
 * by the records it replayed (counted with our decoder from the checkpoint's redo pointer
 * through the record "redo done at" names). Those include commits and the cheap FPI-only
 * first touches that our per-record figure leaves out, so PostgreSQL's time per record that
 * redoes a page lies between that figure and its time divided by only those records (the
 * "upper bound" peer row). The CPU row compares our process CPU with the startup process's
 * ("CPU: user + system"): less disturbed by a loaded machine than wall time. The same
 * measurement on source A's own WAL is an extra row: PostgreSQL then also checks every block
 * against its check image (verifyBackupPageConsistency), so it is not the peer.
 *
 * Chains: heap pages of the corpus that got an APPLY image in a heap/heap2 record followed by
 * N verified records (no will_init in between; PRUNE / VISIBLE included): the first
 * MAX_CHAINS pages that reached the largest N reached, the same pages for every N, stored as
 * ingest stores them: the image as a PG_IMAGE value (lz4, hole removed), each record as a
 * PG_RECORD value (these records still carry their check images, which decoding skips).
 * Timed: PgRedo.apply(key, null, …) (image restore, decode and redo of every record,
 * checksum) round robin over the chains, one timer per call, up to CHAIN_CALLS calls per
 * chain; pages/s from each chain's median call. Each chain's result is first checked byte
 * for byte against the verified page (checksum set).
 *
 * Bounds: REDO_BENCH_TX / REDO_BENCH_ROWS size the workload; every wait has a deadline;
 * sample, chains and rounds are capped. Every server and directory is removed in finally.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { relBlockKey, relTag } from "../src/pgdata/keys.js";
import { BLCKSZ, setPageChecksum } from "../src/pg/page.js";
import { initNative, pgImage } from "../src/pg/redo/native.js";
import { PgRedo } from "../src/pg/redo/pg_redo.js";
import type { RmgrRedo } from "../src/pg/redo/rmgr_interface.js";
import { rmgrRedo } from "../src/pg/redo/redo_table.js";
import { WalStreamDecoder } from "../src/pg/wal/decoder.js";
import { walFileName } from "../src/pg/wal/page.js";
import { type DecodedBlock, type DecodedRecord, decodeRecord } from "../src/pg/wal/record.js";
import { describeRecordKind, RM_HEAP2_ID, RM_HEAP_ID, rmgrName } from "../src/pg/wal/rmgr_ids.js";
import type { Key } from "../src/types/key.js";
import { asLsn, type Lsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { pgRecordValue, type Value } from "../src/types/value.js";
import { PgInstance } from "../test/support/postgres.js";
import { formatReport, verifyWal } from "../test/support/redo_verify.js";
import { rng } from "../test/support/rng.js";
import { type BenchRow, percentile, row } from "./harness.js";

const TX = Number(process.env["REDO_BENCH_TX"] ?? 20_000);
const ROWS = Number(process.env["REDO_BENCH_ROWS"] ?? 3000);
const SAMPLE_RECORDS = Number(process.env["REDO_BENCH_SAMPLE"] ?? 20_000);
const SCALE = 2;
const CLIENTS = 2;
const BATCH_PAGES = 256;
const WARMUP_ROUNDS = 2;
const TIMED_ROUNDS = 11;
const DECODE_ROUNDS = 7;
const MIN_TIMED_ROUNDS = 3;
const DIST_ROUNDS = 3;
/** Per timing pass: stop adding rounds after this long. */
const TIMED_BUDGET_MS = 30_000;
/** Info-code rows: the most frequent kinds with at least MIN_KIND_SAMPLES kept records. */
const TOP_KINDS = 12;
const MIN_KIND_SAMPLES = 20;
const CHAIN_NS = [0, 1, 10, 100] as const;
const MAX_CHAINS = 16;
/** Heap pages followed at once while looking for chains (each holds its values). */
const MAX_ACTIVE_CHAINS = 1024;
const CHAIN_WARMUP_CALLS = 2000;
/** Timed calls per chain, at most, and the time allowed for them (per N). */
const CHAIN_CALLS = 1000;
const CHAIN_BUDGET_MS = 3000;
const RECOVERY_RUNS = 3;
const START_TIMEOUT_S = 600;
const FLUSH_WAIT_MS = 30_000;
/** Records counted for the peer: far above what the workload writes. */
const MAX_COUNTED_RECORDS = 50_000_000;
const NEON_WALREDO_US = 32;
const PEER = "PG15 crash recovery (same workload, default WAL settings)";
const PEER_CPU = "PG15 crash recovery CPU user+system (same)";
const PEER_UPPER = "PG15 crash recovery, per record with page redo (upper bound)";
const NEON_PEER = "Neon's published walredo round trip (not measured here)";

const BASE_CONF: Record<string, string | number | boolean> = {
  wal_level: "replica",
  full_page_writes: true,
  autovacuum: false,
  // Keep every segment of the run and no checkpoint inside it: crash recovery replays it all.
  wal_keep_size: "8GB",
  max_wal_size: "8GB",
  checkpoint_timeout: "1h",
  shared_buffers: "256MB",
  // Commits flush the WAL: nothing of the workload is lost at the immediate stop.
  synchronous_commit: true,
};
const CORPUS_CONF = { ...BASE_CONF, wal_consistency_checking: "all", wal_compression: "lz4" };

const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));
const log = (msg: string) => console.error(`[redo ${new Date().toISOString().slice(11, 23)}] ${msg}`);

// ---------------------------------------------------------------------------------------
// The workload (the same on both sources)

const BX_ROW = (g: string) =>
  `${g}, ARRAY[${g} % 97, ${g} % 7, ${g} % 1009], to_tsvector('simple', 'w' || (${g} % 53) || ' x' || (${g} % 301) || ' y' || ${g}), ` +
  `point(${g} % 1000, ${g} % 777), int4range(${g}, ${g} + 1 + ${g} % 10), md5(${g}::text), timestamptz '2024-01-01' + ${g} * interval '1 s', ${g} % 997`;

async function setup(pg: PgInstance, bloom: boolean): Promise<void> {
  const conn = ["-h", pg.host, "-p", String(pg.port), "-U", pg.user];
  await pg.runChecked("pgbench", ["-i", "-s", String(SCALE), "-q", ...conn, "postgres"]);
  await pg.psql(`
    CREATE TABLE bx (id int PRIMARY KEY, tags int[], doc tsvector, p point, r int4range, t text, ts timestamptz, n int);
    CREATE INDEX bx_tags ON bx USING gin (tags);
    CREATE INDEX bx_doc ON bx USING gin (doc) WITH (fastupdate = off);
    CREATE INDEX bx_n ON bx USING hash (n);
    CREATE INDEX bx_p ON bx USING gist (p);
    CREATE INDEX bx_r ON bx USING gist (r);
    CREATE INDEX bx_t ON bx USING spgist (t);
    CREATE INDEX bx_ps ON bx USING spgist (p);
    CREATE INDEX bx_ts ON bx USING brin (ts) WITH (pages_per_range = 2);
    ${bloom ? "CREATE EXTENSION bloom; CREATE INDEX bx_bl ON bx USING bloom (n, id);" : ""}
    CREATE SEQUENCE bseq;
    CREATE TABLE bcopy (k int, v text);
    INSERT INTO bx SELECT ${BX_ROW("g")} FROM generate_series(1, ${ROWS}) g;
    VACUUM bx;`);
}

async function workload(pg: PgInstance): Promise<void> {
  const conn = ["-h", pg.host, "-p", String(pg.port), "-U", pg.user];
  await pg.psql(`
    INSERT INTO bx SELECT ${BX_ROW("g")} FROM generate_series(${ROWS + 1}, ${2 * ROWS}) g;
    UPDATE bx SET n = n + 1, tags = tags || 5, ts = ts + interval '1 h' WHERE id % 7 = 0;
    DELETE FROM bx WHERE id % 11 = 0;
    VACUUM bx;
    SELECT count(nextval('bseq')) FROM generate_series(1, 500);
    COPY bcopy (k) FROM PROGRAM 'seq 1 ${5 * ROWS}';`);
  await pg.runChecked("pgbench", [
    "-t",
    String(Math.ceil(TX / CLIENTS)),
    "-c",
    String(CLIENTS),
    "-j",
    String(CLIENTS),
    "-n",
    ...conn,
    "postgres",
  ]);
  await pg.psql("VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;");
}

// ---------------------------------------------------------------------------------------
// A source: run, crash, time PostgreSQL's crash recovery

interface Source {
  pg: PgInstance;
  segSize: number;
  startLsn: Lsn;
  endLsn: Lsn;
  /** Copy of the data directory right after the immediate stop. */
  crashedDir: string;
}

async function runSource(conf: Record<string, string | number | boolean>, label: string): Promise<Source> {
  const pg = await PgInstance.start({ conf });
  try {
    return await crashAfterWorkload(pg, label);
  } catch (e) {
    await pg.destroy();
    throw e;
  }
}

async function crashAfterWorkload(pg: PgInstance, label: string): Promise<Source> {
  const bloom = (await pg.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'bloom'")) === "1";
  log(`${label}: setup (pgbench -i -s ${SCALE}, bx ${ROWS} rows${bloom ? ", bloom" : ", no bloom"})`);
  await setup(pg, bloom);
  await pg.psql("CHECKPOINT");
  const startLsn = parseLsn(await pg.psql("SELECT redo_lsn FROM pg_control_checkpoint()"));
  const segSize = Number(await pg.psql("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"));
  log(`${label}: workload (pgbench -t ${TX} total)`);
  await workload(pg);
  const endLsn = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
  // A synchronous commit after endLsn flushes everything before it.
  await pg.psql("CREATE TABLE bench_end_marker ()");
  const deadline = Date.now() + FLUSH_WAIT_MS;
  while (parseLsn(await pg.psql("SELECT pg_current_wal_flush_lsn()")) < endLsn) {
    if (Date.now() > deadline) throw new Error(`${label}: WAL not flushed to ${lsnToString(endLsn)} within ${FLUSH_WAIT_MS} ms`);
    await sleep(20);
  }
  await pg.runChecked("pg_ctl", ["-D", pg.dataDir, "-m", "immediate", "-w", "-t", "60", "stop"]);
  const crashedDir = join(pg.baseDir, "crashed");
  copyDir(pg.dataDir, crashedDir);
  log(`${label}: WAL ${lsnToString(startLsn)}..${lsnToString(endLsn)} (${((endLsn - startLsn) / 1e6).toFixed(1)} MB)`);
  return { pg, segSize, startLsn, endLsn, crashedDir };
}

/** cp -a: as root it keeps the postgres ownership PostgreSQL insists on. */
function copyDir(from: string, to: string): void {
  rmSync(to, { recursive: true, force: true });
  execFileSync("cp", ["-a", from, to]);
}

interface Recovery {
  /** Best "redo done … elapsed" of the runs, and best CPU user + system, seconds. */
  elapsedS: number;
  cpuS: number;
  /** Records from the redo start through the record "redo done at" names. */
  records: RecordCounts;
  lastLsn: Lsn;
}

const REDO_STARTS = /redo starts at ([0-9A-F]+\/[0-9A-F]+)/;
const REDO_DONE = /redo done at ([0-9A-F]+\/[0-9A-F]+) system usage: CPU: user: ([\d.]+) s, system: ([\d.]+) s, elapsed: ([\d.]+) s/;

async function timeRecovery(src: Source, label: string): Promise<Recovery> {
  const { pg } = src;
  let best = Number.POSITIVE_INFINITY;
  let cpu = Number.POSITIVE_INFINITY;
  let lastLsn = -1;
  for (let run = 0; run < RECOVERY_RUNS; run++) {
    copyDir(src.crashedDir, pg.dataDir);
    const logFile = join(pg.baseDir, `recovery-${run}.log`);
    try {
      await pg.runChecked("pg_ctl", ["-D", pg.dataDir, "-l", logFile, "-w", "-t", String(START_TIMEOUT_S), "start"]);
    } finally {
      await pg.run("pg_ctl", ["-D", pg.dataDir, "-m", "fast", "-w", "-t", "60", "stop"]);
    }
    const text = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
    const starts = REDO_STARTS.exec(text);
    const done = REDO_DONE.exec(text);
    if (starts === null || done === null) throw new Error(`${label}: no "redo starts/done" in the recovery log:\n${text.slice(-3000)}`);
    if (parseLsn(starts[1]!) !== src.startLsn)
      throw new Error(`${label}: redo started at ${starts[1]}, expected ${lsnToString(src.startLsn)}`);
    const done0 = parseLsn(done[1]!);
    if (lastLsn >= 0 && done0 !== lastLsn)
      throw new Error(`${label}: recovery runs ended at ${lsnToString(asLsn(lastLsn))} and ${done[1]}`);
    lastLsn = done0;
    const elapsed = Number(done[4]);
    log(
      `${label}: crash recovery run ${run + 1}: redo ${starts[1]}..${done[1]} elapsed ${elapsed} s (CPU user ${done[2]} s, system ${done[3]} s)`,
    );
    best = Math.min(best, elapsed);
    cpu = Math.min(cpu, Number(done[2]) + Number(done[3]));
  }
  const records = countRecords(join(src.crashedDir, "pg_wal"), src.segSize, src.startLsn, asLsn(lastLsn));
  return { elapsedS: best, cpuS: cpu, records, lastLsn: asLsn(lastLsn) };
}

interface RecordCounts {
  all: number;
  /** Records with a block reference replayed without a full-page image. */
  pageRedo: number;
  /** Records whose block references all carry APPLY images. */
  imageOnly: number;
  noBlocks: number;
}

/** Records from `start` through the record that starts at `last`, read from pg_wal. */
function countRecords(walDir: string, segSize: number, start: Lsn, last: Lsn): RecordCounts {
  const dec = new WalStreamDecoder(start, { segmentSizeBytes: segSize });
  const firstSeg = Math.floor(start / segSize);
  // The last record may continue into the next segment.
  const lastSeg = Math.floor(last / segSize) + 1;
  const c: RecordCounts = { all: 0, pageRedo: 0, imageOnly: 0, noBlocks: 0 };
  for (let seg = firstSeg; seg <= lastSeg; seg++) {
    const bytes = new Uint8Array(readFileSync(join(walDir, walFileName(1, seg, segSize))));
    dec.feed(seg === firstSeg ? bytes.subarray(start - seg * segSize) : bytes);
    for (let rec = dec.next(); rec !== null; rec = dec.next()) {
      c.all++;
      if (rec.blocks.length === 0) c.noBlocks++;
      else if (rec.blocks.some((b) => !b.applyImage)) c.pageRedo++;
      else c.imageOnly++;
      if (rec.lsn >= last) {
        if (rec.lsn !== last) throw new Error(`no record starts at ${lsnToString(last)} (passed it at ${lsnToString(rec.lsn)})`);
        return c;
      }
      if (c.all > MAX_COUNTED_RECORDS) throw new Error(`more than ${MAX_COUNTED_RECORDS} records: runaway WAL?`);
    }
  }
  throw new Error(`WAL ended before ${lsnToString(last)}`);
}

// ---------------------------------------------------------------------------------------
// Corpus: verified (record, block, base page, result), a uniform sample of records; heap
// page chains

interface Item {
  redo: RmgrRedo;
  blockId: number;
  /** null: will_init (a zeroed page). */
  base: Uint8Array | null;
  /** Our verified result (equal to PostgreSQL's check image after masking). */
  expected: Uint8Array;
}

interface Sample {
  kind: Kind;
  /** Decoded from a copy of the record's bytes (not the WAL read). */
  rec: DecodedRecord;
  items: Item[];
}

interface Kind {
  name: string;
  rmid: number;
  /** Records of this kind in the corpus with at least one verified native redo. */
  seen: number;
}

interface Chain {
  key: Key;
  blkno: number;
  values: Value[];
  lsns: Lsn[];
  /** End LSN of the record last appended. */
  lastEnd: Lsn;
  /** N → the verified page after the image and N records, checksum set (as PgRedo.apply returns it). */
  expected: Map<number, Uint8Array>;
}

interface ChainPrefix {
  key: Key;
  values: Value[];
  lsns: Lsn[];
  expected: Uint8Array;
}

class Corpus {
  readonly kinds = new Map<string, Kind>();
  /** Uniform reservoir sample (algorithm R) of the records with verified native redo. */
  readonly sample: Sample[] = [];
  /** Records with at least one verified native redo. */
  seen = 0;
  verifiedBlocks = 0;
  /** Heap page chains that stopped growing, by the longest N they reached. */
  private readonly finished = new Map<number, Chain[]>(CHAIN_NS.map((n) => [n, []]));
  private readonly rand = rng(0x5eed);
  private pendingRec: DecodedRecord | null = null;
  private pending: Item[] = [];
  private readonly chains = new Map<Key, Chain>();

  onVerifiedRedo(rec: DecodedRecord, b: DecodedBlock, base: Uint8Array | null, redone: Uint8Array): void {
    this.verifiedBlocks++;
    if (this.pendingRec !== rec) {
      this.pendingRec = rec;
      this.pending = [];
    }
    this.pending.push({ redo: rmgrRedo(rec.rmid)!, blockId: b.id, base, expected: redone });
    if (b.forkNum === 0) this.chainRecord(rec, b, redone);
  }

  onRecord(rec: DecodedRecord): void {
    if (this.pendingRec === rec && this.pending.length > 0) this.keep(rec, this.pending);
    this.pendingRec = null;
    this.pending = [];
    for (const b of rec.blocks) {
      if (b.forkNum !== 0) continue;
      const key = blockKey(b);
      if (b.applyImage) {
        // A new image of a followed page restarts its chain.
        if (this.chains.has(key) || ((rec.rmid === RM_HEAP_ID || rec.rmid === RM_HEAP2_ID) && this.wantChains()))
          this.startChain(key, rec, b);
        continue;
      }
      const c = this.chains.get(key);
      // Redone but not verified (or not redone): the chain can't be checked past it.
      if (c !== undefined && c.lastEnd !== rec.endLsn) this.endChain(c);
    }
  }

  private wantChains(): boolean {
    return this.chains.size < MAX_ACTIVE_CHAINS && this.finished.get(CHAIN_NS[CHAIN_NS.length - 1]!)!.length < MAX_CHAINS;
  }

  private startChain(key: Key, rec: DecodedRecord, b: DecodedBlock): void {
    const old = this.chains.get(key);
    if (old !== undefined) this.endChain(old);
    const image = pgImage(b.image!, rec.endLsn, false);
    const expected = initNative(image);
    setPageChecksum(expected, b.blkno);
    this.chains.set(key, {
      key,
      blkno: b.blkno,
      values: [image],
      lsns: [rec.endLsn],
      lastEnd: rec.endLsn,
      expected: new Map([[0, expected]]),
    });
  }

  private chainRecord(rec: DecodedRecord, b: DecodedBlock, redone: Uint8Array): void {
    const c = this.chains.get(blockKey(b));
    if (c === undefined) return;
    if (b.willInit) {
      this.endChain(c);
      return;
    }
    c.values.push(pgRecordValue(false, rec.record));
    c.lsns.push(rec.endLsn);
    c.lastEnd = rec.endLsn;
    const n = c.values.length - 1;
    if ((CHAIN_NS as readonly number[]).includes(n)) {
      const expected = redone.slice();
      setPageChecksum(expected, c.blkno);
      c.expected.set(n, expected);
    }
    if (n >= CHAIN_NS[CHAIN_NS.length - 1]!) this.endChain(c);
  }

  /** A chain stops growing: file it under the longest N it reached. */
  private endChain(c: Chain): void {
    this.chains.delete(c.key);
    let longest = 0;
    for (const n of CHAIN_NS) if (c.expected.has(n)) longest = n;
    const list = this.finished.get(longest)!;
    if (list.length < MAX_CHAINS) list.push(c);
  }

  /** After the corpus: the chains still growing end where they are. */
  finish(): void {
    for (const c of [...this.chains.values()]) this.endChain(c);
  }

  /**
   * N → the same heap pages for every N (so the rows compare): the chains that reached the
   * longest N any chain reached, cut after N records.
   */
  chainPrefixes(): Map<number, ChainPrefix[]> {
    let top = -1;
    for (const n of CHAIN_NS) if (this.finished.get(n)!.length > 0) top = n;
    const out = new Map<number, ChainPrefix[]>();
    if (top < 0) return out;
    const chains = this.finished.get(top)!;
    for (const n of CHAIN_NS) {
      if (n > top) break;
      out.set(
        n,
        chains.map((c) => ({ key: c.key, values: c.values.slice(0, n + 1), lsns: c.lsns.slice(0, n + 1), expected: c.expected.get(n)! })),
      );
    }
    return out;
  }

  private keep(rec: DecodedRecord, items: Item[]): void {
    const name = describeRecordKind(rec.rmid, rec.info);
    let kind = this.kinds.get(name);
    if (kind === undefined) {
      kind = { name, rmid: rec.rmid, seen: 0 };
      this.kinds.set(name, kind);
    }
    kind.seen++;
    this.seen++;
    let slot = this.sample.length;
    if (slot >= SAMPLE_RECORDS) {
      slot = Math.floor(this.rand() * this.seen);
      if (slot >= SAMPLE_RECORDS) return;
    }
    // The kept record gets its own bytes, so the WAL read can be released.
    this.sample[slot] = { kind, rec: decodeRecord(rec.record.slice(), rec.lsn, rec.endLsn), items };
  }
}

function blockKey(b: DecodedBlock): Key {
  return relBlockKey(relTag(b.rnode.spcNode, b.rnode.dbNode, b.rnode.relNode, b.forkNum), b.blkno);
}

// ---------------------------------------------------------------------------------------
// Timing our redo

/** Preallocated pages for one batch: redo works on these, never on the samples' pages. */
function batchPages(): Uint8Array[] {
  const buf = new Uint8Array(BATCH_PAGES * BLCKSZ);
  const pages: Uint8Array[] = [];
  for (let i = 0; i < BATCH_PAGES; i++) pages.push(buf.subarray(i * BLCKSZ, (i + 1) * BLCKSZ));
  return pages;
}

/** Copy the base pages of records from..end (as many as fit) into `pages`; returns end. */
function fillBatch(recs: Sample[], from: number, pages: Uint8Array[]): number {
  let end = from;
  let used = 0;
  while (end < recs.length && used + recs[end]!.items.length <= pages.length) {
    for (const it of recs[end]!.items) {
      const p = pages[used++]!;
      if (it.base === null) p.fill(0);
      else p.set(it.base);
    }
    end++;
  }
  return end;
}

/** Every page redone in the batch must equal the verified result, byte for byte. */
function checkBatch(recs: Sample[], from: number, end: number, pages: Uint8Array[]): void {
  let slot = 0;
  for (let r = from; r < end; r++) {
    for (const it of recs[r]!.items) {
      if (Buffer.compare(pages[slot]!, it.expected) !== 0) {
        const rec = recs[r]!.rec;
        throw new Error(
          `timed redo of ${describeRecordKind(rec.rmid, rec.info)} at ${lsnToString(rec.lsn)} block ${it.blockId} differs from its verified result`,
        );
      }
      slot++;
    }
  }
}

/** Where the batches of `recs` start (and the end): as many records as fill BATCH_PAGES pages. */
function batchBounds(recs: Sample[]): number[] {
  const bounds = [0];
  let used = 0;
  for (let r = 0; r < recs.length; r++) {
    const n = recs[r]!.items.length;
    if (used + n > BATCH_PAGES) {
      bounds.push(r);
      used = 0;
    }
    used += n;
  }
  if (recs.length > 0) bounds.push(recs.length);
  return bounds;
}

/**
 * Redo records from..end (one batch, its base pages already in `pages`) under one timer, no
 * timer per record: wall µs and CPU µs (process user + system) of the redo (and decode) alone.
 */
function timeBatch(
  recs: Sample[],
  from: number,
  end: number,
  pages: Uint8Array[],
  decode: boolean,
  out: { wallUs: number; cpuUs: number },
): void {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let slot = 0;
  for (let r = from; r < end; r++) {
    const s = recs[r]!;
    const items = s.items;
    const rec = decode ? decodeRecord(s.rec.record, s.rec.lsn, s.rec.endLsn) : s.rec;
    for (let k = 0; k < items.length; k++) {
      const it = items[k]!;
      it.redo.redo(rec, it.blockId, pages[slot + k]!);
    }
    slot += items.length;
  }
  out.wallUs = (performance.now() - t0) * 1000;
  const cpu = process.cpuUsage(cpu0);
  out.cpuUs = cpu.user + cpu.system;
}

/** One round over all records in LSN order (kinds interleaved), µs per record into `out`. */
function distributionRound(all: Sample[], pages: Uint8Array[], out: Float64Array): void {
  let i = 0;
  while (i < all.length) {
    const end = fillBatch(all, i, pages);
    let slot = 0;
    for (let r = i; r < end; r++) {
      const s = all[r]!;
      const items = s.items;
      const t0 = performance.now();
      for (let k = 0; k < items.length; k++) {
        const it = items[k]!;
        it.redo.redo(s.rec, it.blockId, pages[slot + k]!);
      }
      out[r] = (performance.now() - t0) * 1000;
      slot += items.length;
    }
    checkBatch(all, i, end, pages);
    i = end;
  }
}

interface Timing {
  /** Mean µs per record, per kind. */
  kindMeanUs: Map<Kind, number>;
  /** Mean µs per record, per rmgr. */
  rmgrMeanUs: Map<number, number>;
  /** Mean µs per record over all records, wall and CPU. */
  allMeanUs: number;
  allCpuUs: number;
  rounds: number;
}

function median(xs: Float64Array): number {
  const s = xs.slice().sort();
  const m = s.length >>> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Rounds over every kind's batches; each batch's time is the median of its rounds (a batch
 * lasts well under a millisecond, so the median drops the rounds in which the process was
 * descheduled or collected garbage), summed per kind, per rmgr and over all.
 */
function timeMeans(byKind: Map<Kind, Sample[]>, decode: boolean, rounds: number): Timing {
  const pages = batchPages();
  const groups = [...byKind].map(([kind, recs]) => ({ kind, recs, bounds: batchBounds(recs) }));
  const walls = groups.map((g) => new Float64Array((g.bounds.length - 1) * rounds));
  const cpus = groups.map((g) => new Float64Array((g.bounds.length - 1) * rounds));
  const out = { wallUs: 0, cpuUs: 0 };
  const t0 = performance.now();
  let done = 0;
  for (let round = -WARMUP_ROUNDS; round < rounds; round++) {
    for (let gi = 0; gi < groups.length; gi++) {
      const g = groups[gi]!;
      for (let b = 0; b + 1 < g.bounds.length; b++) {
        const from = g.bounds[b]!;
        const end = g.bounds[b + 1]!;
        if (fillBatch(g.recs, from, pages) !== end) throw new Error("batch bounds disagree with fillBatch");
        timeBatch(g.recs, from, end, pages, decode, out);
        checkBatch(g.recs, from, end, pages);
        if (round >= 0) {
          walls[gi]![b * rounds + round] = out.wallUs;
          cpus[gi]![b * rounds + round] = out.cpuUs;
        }
      }
    }
    if (round >= 0) done++;
    if (round >= 0 && done >= MIN_TIMED_ROUNDS && performance.now() - t0 > TIMED_BUDGET_MS) break;
  }
  const kindMeanUs = new Map<Kind, number>();
  const rmgrSum = new Map<number, { us: number; n: number }>();
  let allWall = 0;
  let allCpu = 0;
  let total = 0;
  for (let gi = 0; gi < groups.length; gi++) {
    const g = groups[gi]!;
    let wall = 0;
    for (let b = 0; b + 1 < g.bounds.length; b++) {
      wall += median(walls[gi]!.subarray(b * rounds, b * rounds + done));
      allCpu += median(cpus[gi]!.subarray(b * rounds, b * rounds + done));
    }
    kindMeanUs.set(g.kind, wall / g.recs.length);
    const r = rmgrSum.get(g.kind.rmid) ?? { us: 0, n: 0 };
    r.us += wall;
    r.n += g.recs.length;
    rmgrSum.set(g.kind.rmid, r);
    allWall += wall;
    total += g.recs.length;
  }
  const rmgrMeanUs = new Map<number, number>([...rmgrSum].map(([rmid, r]) => [rmid, r.us / r.n]));
  return { kindMeanUs, rmgrMeanUs, allMeanUs: allWall / total, allCpuUs: allCpu / total, rounds: done };
}

function timeDistribution(all: Sample[]): Map<Kind, { p50Us: number; p99Us: number }> {
  const pages = batchPages();
  const times: Float64Array[] = [];
  distributionRound(all, pages, new Float64Array(all.length)); // warm-up
  for (let r = 0; r < DIST_ROUNDS; r++) {
    const out = new Float64Array(all.length);
    distributionRound(all, pages, out);
    times.push(out);
  }
  const idx = new Map<Kind, number[]>();
  for (let i = 0; i < all.length; i++) {
    const l = idx.get(all[i]!.kind);
    if (l === undefined) idx.set(all[i]!.kind, [i]);
    else l.push(i);
  }
  const out = new Map<Kind, { p50Us: number; p99Us: number }>();
  for (const [kind, is] of idx) {
    const every = new Float64Array(is.length * times.length);
    let e = 0;
    for (const t of times) for (const i of is) every[e++] = t[i]!;
    every.sort();
    out.set(kind, { p50Us: percentile(every, 50), p99Us: percentile(every, 99) });
  }
  return out;
}

/** What one performance.now() pair (the per-record timer of the p50/p99 pass) costs, µs. */
function timerOverheadUs(): number {
  const n = 100_000;
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sink += performance.now() - performance.now();
  const us = ((performance.now() - t0) / n) * 1000;
  return sink > 1 ? Number.NaN : us;
}

// ---------------------------------------------------------------------------------------
// Chains through PgRedo.apply

/**
 * pages/s of PgRedo.apply over `prefixes`: round robin, one timer per call (a call lasts tens
 * of µs or more), each chain's median call time, pages/s = 1 / mean of the medians.
 */
function timeChains(prefixes: ChainPrefix[]): number {
  const redo = new PgRedo();
  for (const c of prefixes) {
    const page = redo.apply(c.key, null, asLsn(0), c.values, c.lsns);
    if (Buffer.compare(page, c.expected) !== 0) {
      throw new Error(
        `PgRedo.apply of a heap chain (${c.values.length - 1} records to ${lsnToString(c.lsns[c.lsns.length - 1]!)}) differs from the verified page`,
      );
    }
  }
  for (let w = 0; w < CHAIN_WARMUP_CALLS; w++) {
    const c = prefixes[w % prefixes.length]!;
    redo.apply(c.key, null, asLsn(0), c.values, c.lsns);
  }
  const times = prefixes.map(() => new Float64Array(CHAIN_CALLS));
  let calls = 0;
  const t0 = performance.now();
  while (calls < CHAIN_CALLS && performance.now() - t0 < CHAIN_BUDGET_MS) {
    for (let i = 0; i < prefixes.length; i++) {
      const c = prefixes[i]!;
      const t = performance.now();
      redo.apply(c.key, null, asLsn(0), c.values, c.lsns);
      times[i]![calls] = (performance.now() - t) * 1000;
    }
    calls++;
  }
  let sumUs = 0;
  for (const t of times) sumUs += median(t.subarray(0, calls));
  return prefixes.length / (sumUs / 1e6);
}

// ---------------------------------------------------------------------------------------

export default async function run(): Promise<BenchRow[]> {
  const corpus = new Corpus();
  let recA: Recovery | null = null;
  let recordsA = 0;
  let srcA: Source | null = null;
  try {
    srcA = await runSource(CORPUS_CONF, "source A (wal_consistency_checking = all)");
    log("source A: verifying native redo of every registered rmgr against the check images");
    const t0 = performance.now();
    const report = verifyWal(join(srcA.crashedDir, "pg_wal"), srcA.segSize, srcA.startLsn, srcA.endLsn, {
      onVerifiedRedo: (rec, b, base, redone) => corpus.onVerifiedRedo(rec, b, base, redone),
      onRecord: (rec) => corpus.onRecord(rec),
    });
    console.log(formatReport(report));
    corpus.finish();
    if (report.mismatches.length > 0)
      throw new Error(`native redo differs from PostgreSQL's check images in ${report.mismatches.length} blocks (see above)`);
    recordsA = report.records;
    log(
      `source A: ${report.records} records read in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${corpus.verifiedBlocks} block redos verified in ${corpus.seen} records`,
    );
    recA = await timeRecovery(srcA, "source A");
  } finally {
    await srcA?.pg.destroy();
  }
  let recB: Recovery | null = null;
  let srcB: Source | null = null;
  try {
    srcB = await runSource(BASE_CONF, "source B (default WAL settings)");
    recB = await timeRecovery(srcB, "source B");
  } finally {
    await srcB?.pg.destroy();
  }
  if (recA === null || recB === null) throw new Error("crash recovery was not timed");

  const all = corpus.sample.slice().sort((a, b) => a.rec.lsn - b.rec.lsn);
  const byKind = new Map<Kind, Sample[]>();
  for (const s of all) {
    const l = byKind.get(s.kind);
    if (l === undefined) byKind.set(s.kind, [s]);
    else l.push(s);
  }
  const blocks = all.reduce((a, s) => a + s.items.length, 0);
  log(`timing redo of ${all.length} of ${corpus.seen} records (${blocks} block redos, ${byKind.size} kinds)`);
  const redoOnly = timeMeans(byKind, false, TIMED_ROUNDS);
  const withDecode = timeMeans(byKind, true, DECODE_ROUNDS);
  const dist = timeDistribution(all);
  log(
    `redo: ${redoOnly.rounds} timed rounds, decode + redo: ${withDecode.rounds}; p50/p99 include one performance.now() pair per record: ${timerOverheadUs().toFixed(3)} µs`,
  );

  const peerUs = (recB.elapsedS * 1e6) / recB.records.all;
  const peerRate = 1e6 / peerUs;
  const peerCpuUs = (recB.cpuS * 1e6) / recB.records.all;
  // As if PostgreSQL spent all its replay time on the records that redo a page.
  const peerUpperUs = (recB.elapsedS * 1e6) / recB.records.pageRedo;
  const rows: BenchRow[] = [];
  rows.push(row("redo, all rmgrs", "records/s", 1e6 / redoOnly.allMeanUs, PEER, peerRate));
  rows.push(row("redo, all rmgrs: per record", "us", redoOnly.allMeanUs, PEER, peerUs));
  rows.push(row("redo, all rmgrs: per record", "us", redoOnly.allMeanUs, PEER_UPPER, peerUpperUs));
  rows.push(row("redo, all rmgrs: CPU per record", "us", redoOnly.allCpuUs, PEER_CPU, peerCpuUs));
  rows.push(row("decode + redo, all rmgrs: per record", "us", withDecode.allMeanUs, PEER, peerUs));
  rows.push(row("decode + redo, all rmgrs: per record", "us", withDecode.allMeanUs, NEON_PEER, NEON_WALREDO_US));

  for (const rmid of [...redoOnly.rmgrMeanUs.keys()].sort((a, b) => a - b)) {
    const us = redoOnly.rmgrMeanUs.get(rmid)!;
    rows.push(row(`redo ${rmgrName(rmid)}`, "records/s", 1e6 / us, PEER, peerRate));
    rows.push(row(`redo ${rmgrName(rmid)}: per record`, "us", us, PEER, peerUs));
  }
  const top = [...byKind.keys()]
    .filter((k) => byKind.get(k)!.length >= MIN_KIND_SAMPLES)
    .sort((a, b) => b.seen - a.seen)
    .slice(0, TOP_KINDS);
  for (const k of top) {
    rows.push(row(`redo ${k.name}: per record`, "us", redoOnly.kindMeanUs.get(k)!, PEER, peerUs));
    rows.push(row(`redo ${k.name}: p50`, "us", dist.get(k)!.p50Us));
    rows.push(row(`redo ${k.name}: p99`, "us", dist.get(k)!.p99Us));
  }

  const chainPrefixes = corpus.chainPrefixes();
  for (const n of CHAIN_NS) {
    const prefixes = chainPrefixes.get(n);
    if (prefixes === undefined) {
      log(`no heap page with an image and ${n} verified records after it: no chain row for N = ${n}`);
      continue;
    }
    rows.push(row(`PgRedo.apply heap page, 1 image + ${n} records (${prefixes.length} pages)`, "pages/s", timeChains(prefixes)));
  }

  rows.push(
    row("PG15 crash recovery of source A's WAL (incl. its consistency checks): per record", "us", (recA.elapsedS * 1e6) / recA.records.all),
  );
  rows.push(row("corpus records (source A)", "count", recordsA));
  rows.push(row("records with verified native redo (source A)", "count", corpus.seen));
  rows.push(row("records timed (uniform sample)", "count", all.length));
  rows.push(row("records replayed by the peer (source B)", "count", recB.records.all));
  rows.push(row("  of which redo a page without an image", "count", recB.records.pageRedo));
  const counts = (c: RecordCounts) =>
    `${c.all} records (${c.pageRedo} page redo, ${c.imageOnly} full-page images only, ${c.noBlocks} without blocks)`;
  log(`peer: ${counts(recB.records)}, ${recB.elapsedS} s elapsed (CPU ${recB.cpuS.toFixed(2)} s): ${peerUs.toFixed(2)} µs/record`);
  log(`source A replay: ${counts(recA.records)}, ${recA.elapsedS} s elapsed (CPU ${recA.cpuS.toFixed(2)} s)`);
  for (const k of [...byKind.keys()].sort((a, b) => b.seen - a.seen)) {
    const d = dist.get(k)!;
    log(
      `  ${k.name.padEnd(28)} corpus ${String(k.seen).padStart(7)}  timed ${String(byKind.get(k)!.length).padStart(6)}  ` +
        `mean ${redoOnly.kindMeanUs.get(k)!.toFixed(2)} µs  p50 ${d.p50Us.toFixed(2)}  p99 ${d.p99Us.toFixed(2)}`,
    );
  }
  return rows;
}
