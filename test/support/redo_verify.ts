/**
 * The verification harness of native redo: PostgreSQL's own page images are the oracle.
 *
 * A real PostgreSQL 15 runs with `wal_consistency_checking = all` and `full_page_writes = on`,
 * so every block reference of every record carries an image: an APPLY image (a full-page
 * write: the page to restore) or a consistency-check image (the page as the primary had it
 * right after the change). After `setup` (not verified) and a CHECKPOINT, `workload` runs;
 * the server is then stopped and its WAL, from the checkpoint's redo pointer to the end of the
 * workload, is read straight from pg_wal with our WalStreamDecoder. A map page → our current
 * version is kept, per block reference:
 *   - APPLY image: our page := the image, as PostgreSQL's redo leaves it (pd_lsn := end LSN
 *     unless new; the GiST left child's NSN / F_FOLLOW_RIGHT fix-up, see isGistLeftChild);
 *   - otherwise, when the rmgr has an RmgrRedo (and is one of `rmgrs`): base = our page, or a
 *     zeroed page if the block is will_init; no base → counted in `noBase`. Redo a copy; if
 *     the block has a check image, both pages go through the rmgr's mask (rm_mask only, as
 *     PostgreSQL's verifyBackupPageConsistency does: the rm masks call the bufmask functions
 *     they need) and are compared byte for byte; our page := our redone page, so errors are
 *     never papered over by the oracle;
 *   - otherwise (no RmgrRedo, filtered out, or redo failed): our page := the check image as
 *     ingest would store it (GiST left-child fix-up included), or forgotten without one.
 * Redo that throws is reported as a mismatch with the error (offset -1).
 *
 * `verifyWal` checks WAL already on disk (bench/redo.bench.ts runs its own server and takes
 * every verified (record, block, base page, result) through `onVerifiedRedo`).
 *
 * Test-only: `overrides` substitutes RmgrRedo entries (e.g. a deliberately wrong redo to prove
 * the harness can fail) without touching the registry in src.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import type { RmgrRedo } from "../../src/pg/redo/rmgr_interface.js";
import { rmgrRedo } from "../../src/pg/redo/redo_table.js";
import { initNative, pgImage } from "../../src/pg/redo/native.js";
import { BLCKSZ } from "../../src/pg/page.js";
import { WalStreamDecoder } from "../../src/pg/wal/decoder.js";
import { SIZE_OF_XLOG_LONG_PHD, walFileName } from "../../src/pg/wal/page.js";
import { restorePageImage } from "../../src/pg/wal/image.js";
import type { DecodedBlock, DecodedRecord } from "../../src/pg/wal/record.js";
import { describeRecordKind, infoName, RM_GIST_ID, rmgrName } from "../../src/pg/wal/rmgr_ids.js";
import { asLsn, type Lsn, lsnToString, parseLsn } from "../../src/types/lsn.js";
import { PgInstance } from "./postgres.js";

/** What checking a stretch of WAL (verifyWal) takes. */
export interface CheckOptions {
  /** Only check these rmgrs (default: all with RmgrRedo). */
  rmgrs?: number[];
  /** Test-only RmgrRedo substitutes, by their rmid, taking precedence over the registry. */
  overrides?: readonly RmgrRedo[];
  /** Called with every record read (after its blocks are processed), e.g. to check decoding. */
  onRecord?: (rec: DecodedRecord) => void;
  /**
   * Called for every block reference redone natively whose result matched PostgreSQL's check
   * image after masking: `base` is the page redo started from (null for will_init: a zeroed
   * page), `redone` the result. The harness never changes either page afterwards (it redoes
   * a copy), so they may be kept; `rec` points into the WAL read (copy what you keep).
   */
  onVerifiedRedo?: (rec: DecodedRecord, block: DecodedBlock, base: Uint8Array | null, redone: Uint8Array) => void;
}

export interface VerifyOptions extends CheckOptions {
  conf?: Record<string, string | number | boolean>;
  initdbArgs?: string[];
  /** Runs before the CHECKPOINT (not verified). */
  setup?: (pg: PgInstance) => Promise<void>;
  /** Verified. */
  workload: (pg: PgInstance) => Promise<void>;
}

export interface Mismatch {
  /** Start LSN of the record. */
  lsn: Lsn;
  endLsn: Lsn;
  /** pg_waldump's rmgr name: "Heap", "Btree", … */
  rmgr: string;
  /** pg_waldump's info name: "INSERT+INIT", … */
  info: string;
  infoCode: number;
  blockId: number;
  /** spcNode/dbNode/relNode */
  rel: string;
  fork: number;
  blkno: number;
  /** First differing byte of the masked pages; -1 when redo threw. */
  offset: number;
  /** Which part of the page the offset falls in (header field, line pointer n, tuple area, special). */
  where: string;
  /** Hex of both masked pages around `offset` (empty when redo threw). */
  ours: string;
  theirs: string;
  /** The error redo threw, if it threw. */
  error?: string;
}

export interface VerifyReport {
  /** "Heap/INSERT" → number of blocks compared with a check image. */
  checked: Map<string, number>;
  mismatches: Mismatch[];
  /** Block references that needed a previous version we did not have. */
  noBase: number;
  /** pg_waldump rmgr name → block references (without APPLY image) whose rmgr has no RmgrRedo. */
  unsupported: Map<string, number>;
  /** Records read from the start LSN to the end of the workload. */
  records: number;
  /** Where the verified WAL starts and ends, and its size. */
  startLsn: Lsn;
  endLsn: Lsn;
}

/** Only the first mismatches get a hex context (all are listed). */
const MAX_HEX_CONTEXTS = 50;
/** Bound on records read: far above any test corpus (~50 MB of WAL is ~1 M records). */
const MAX_RECORDS = 20_000_000;
const HEX_CONTEXT_BYTES = 16;
const XLOG_GIST_PAGE_UPDATE = 0x00;
const XLOG_GIST_PAGE_SPLIT = 0x30;

const DEFAULT_CONF: Record<string, string | number | boolean> = {
  wal_level: "replica",
  full_page_writes: true,
  wal_consistency_checking: "all",
  autovacuum: false,
  // Keep every segment of the run: nothing may be recycled before we read it.
  wal_keep_size: "8GB",
  max_wal_size: "8GB",
  checkpoint_timeout: "1h",
};

export async function verifyRedo(opts: VerifyOptions): Promise<VerifyReport> {
  const pg = await PgInstance.start({ conf: { ...DEFAULT_CONF, ...(opts.conf ?? {}) }, initdbArgs: opts.initdbArgs });
  try {
    if (opts.setup !== undefined) await opts.setup(pg);
    await pg.psql("CHECKPOINT");
    const startLsn = parseLsn(await pg.psql("SELECT redo_lsn FROM pg_control_checkpoint()"));
    const segSize = Number(await pg.psql("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"));
    await opts.workload(pg);
    const endLsn = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
    await pg.stop();
    return verifyWal(pg.walDir, segSize, startLsn, endLsn, opts);
  } finally {
    await pg.destroy();
  }
}

/** Read pg_wal from `startLsn` (a record start) up to `endLsn` and verify every block reference. */
export function verifyWal(walDir: string, segSize: number, startLsn: Lsn, endLsn: Lsn, opts: CheckOptions): VerifyReport {
  const v = new Verifier(opts);
  const dec = new WalStreamDecoder(startLsn, { segmentSizeBytes: segSize });
  const lastSeg = Math.floor((endLsn - 1) / segSize);
  let seg = Math.floor(startLsn / segSize);
  let done = false;
  for (; seg <= lastSeg && !done; seg++) {
    const segStart = seg * segSize;
    const from = Math.max(startLsn, segStart) - segStart;
    // Bytes past endLsn belong to the shutdown checkpoint and later: not ours.
    const to = Math.min(endLsn, segStart + segSize) - segStart;
    dec.feed(readSegment(join(walDir, walFileName(1, seg, segSize)), from, Math.max(to, from), segSize));
    for (let rec = dec.next(); rec !== null; rec = dec.next()) {
      if (rec.lsn >= endLsn) {
        done = true;
        break;
      }
      v.record(rec);
      if (v.report.records > MAX_RECORDS) throw new Error(`more than ${MAX_RECORDS} records: runaway WAL?`);
    }
  }
  // endLsn may point just past a page header that the last record's end stops before.
  if (dec.lsn + SIZE_OF_XLOG_LONG_PHD < endLsn)
    throw new Error(`WAL ends at ${lsnToString(dec.lsn)}, before the workload's end ${lsnToString(endLsn)}`);
  v.report.startLsn = startLsn;
  v.report.endLsn = endLsn;
  return v.report;
}

function readSegment(path: string, from: number, to: number, segSize: number): Uint8Array {
  const st = statSync(path, { throwIfNoEntry: false });
  if (st === undefined) throw new Error(`WAL segment ${path} is missing (recycled before it was read?)`);
  if (st.size !== segSize) throw new Error(`WAL segment ${path} has ${st.size} bytes, expected ${segSize}`);
  const buf = new Uint8Array(to - from);
  const fd = openSync(path, "r");
  try {
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, from + got);
      if (n === 0) throw new Error(`short read of ${path}`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

class Verifier {
  readonly report: VerifyReport = {
    checked: new Map(),
    mismatches: [],
    noBase: 0,
    unsupported: new Map(),
    records: 0,
    startLsn: asLsn(0),
    endLsn: asLsn(0),
  };
  private readonly pages = new Map<string, Uint8Array>();
  private readonly overrides = new Map<number, RmgrRedo>();
  private readonly only: Set<number> | null;
  private readonly onRecord: ((rec: DecodedRecord) => void) | undefined;
  private readonly onVerifiedRedo: CheckOptions["onVerifiedRedo"];
  // Masking scratch: compare copies, never our pages.
  private readonly oursMasked = new Uint8Array(BLCKSZ);
  private readonly theirsMasked = new Uint8Array(BLCKSZ);
  private readonly theirs = new Uint8Array(BLCKSZ);

  constructor(opts: CheckOptions) {
    for (const r of opts.overrides ?? []) this.overrides.set(r.rmid, r);
    this.only = opts.rmgrs === undefined ? null : new Set(opts.rmgrs);
    this.onRecord = opts.onRecord;
    this.onVerifiedRedo = opts.onVerifiedRedo;
  }

  private redoFor(rmid: number): RmgrRedo | undefined {
    return this.overrides.get(rmid) ?? rmgrRedo(rmid);
  }

  record(rec: DecodedRecord): void {
    this.report.records++;
    for (const b of rec.blocks) this.block(rec, b);
    this.onRecord?.(rec);
  }

  private block(rec: DecodedRecord, b: DecodedBlock): void {
    const key = `${b.rnode.spcNode}/${b.rnode.dbNode}/${b.rnode.relNode}/${b.forkNum}/${b.blkno}`;
    if (b.applyImage) {
      this.pages.set(key, initNative(pgImage(b.image!, rec.endLsn, isGistLeftChild(rec, b))));
      return;
    }
    const redo = this.redoFor(rec.rmid);
    if (redo === undefined) {
      const name = rmgrName(rec.rmid);
      this.report.unsupported.set(name, (this.report.unsupported.get(name) ?? 0) + 1);
      this.seedFromCheckImage(key, rec, b);
      return;
    }
    if (this.only !== null && !this.only.has(rec.rmid)) {
      this.seedFromCheckImage(key, rec, b);
      return;
    }
    let page: Uint8Array;
    let base: Uint8Array | null = null;
    if (b.willInit) {
      page = new Uint8Array(BLCKSZ);
    } else {
      const prev = this.pages.get(key);
      if (prev === undefined) {
        this.report.noBase++;
        this.seedFromCheckImage(key, rec, b);
        return;
      }
      base = prev;
      page = prev.slice();
    }
    try {
      redo.redo(rec, b.id, page);
    } catch (e) {
      this.fail(rec, b, -1, null, (e as Error).message ?? String(e));
      this.seedFromCheckImage(key, rec, b);
      return;
    }
    this.pages.set(key, page);
    if (!b.hasImage) return;
    const kind = describeRecordKind(rec.rmid, rec.info);
    this.report.checked.set(kind, (this.report.checked.get(kind) ?? 0) + 1);
    restorePageImage(b, this.theirs, rec.lsn);
    this.theirsMasked.set(this.theirs);
    this.oursMasked.set(page);
    redo.mask(this.theirsMasked, b.blkno);
    redo.mask(this.oursMasked, b.blkno);
    if (Buffer.compare(this.theirsMasked, this.oursMasked) !== 0) {
      let off = 0;
      while (this.theirsMasked[off] === this.oursMasked[off]) off++;
      this.fail(rec, b, off, page, undefined);
      return;
    }
    this.onVerifiedRedo?.(rec, b, base, page);
  }

  /** Our page := the check image as ingest stores it, or unknown without one. */
  private seedFromCheckImage(key: string, rec: DecodedRecord, b: DecodedBlock): void {
    if (!b.hasImage) {
      this.pages.delete(key);
      return;
    }
    this.pages.set(key, initNative(pgImage(b.image!, rec.endLsn, isGistLeftChild(rec, b))));
  }

  private fail(rec: DecodedRecord, b: DecodedBlock, off: number, ours: Uint8Array | null, error: string | undefined): void {
    const withHex = off >= 0 && ours !== null && this.report.mismatches.length < MAX_HEX_CONTEXTS;
    const m: Mismatch = {
      lsn: rec.lsn,
      endLsn: rec.endLsn,
      rmgr: rmgrName(rec.rmid),
      info: infoName(rec.rmid, rec.info),
      infoCode: rec.info,
      blockId: b.id,
      rel: `${b.rnode.spcNode}/${b.rnode.dbNode}/${b.rnode.relNode}`,
      fork: b.forkNum,
      blkno: b.blkno,
      offset: off,
      where: off < 0 ? "" : whereOnPage(this.oursMasked, off),
      ours: withHex ? hexContext(this.oursMasked, off) : "",
      theirs: withHex ? hexContext(this.theirsMasked, off) : "",
    };
    if (error !== undefined) m.error = error;
    this.report.mismatches.push(m);
  }
}

/**
 * The left child of a GiST split (block 0 of PAGE_SPLIT, block 1 of PAGE_UPDATE) gets NSN :=
 * the record's LSN and F_FOLLOW_RIGHT cleared after XLogInsert, so neither its APPLY image nor
 * its check image shows that; PostgreSQL's redo (gistRedoClearFollowRight) applies it even to a
 * restored image. (gist_mask hides both fields, so comparisons never depend on this.)
 */
function isGistLeftChild(rec: DecodedRecord, b: DecodedBlock): boolean {
  if (rec.rmid !== RM_GIST_ID) return false;
  const op = rec.info & 0xf0;
  return (op === XLOG_GIST_PAGE_SPLIT && b.id === 0) || (op === XLOG_GIST_PAGE_UPDATE && b.id === 1);
}

function hexContext(page: Uint8Array, off: number): string {
  const from = Math.max(0, (off & ~15) - HEX_CONTEXT_BYTES);
  const to = Math.min(BLCKSZ, (off & ~15) + 2 * HEX_CONTEXT_BYTES);
  const parts: string[] = [];
  for (let o = from; o < to; o += 16) {
    const row: string[] = [];
    for (let i = o; i < Math.min(o + 16, to); i++) {
      const h = page[i]!.toString(16).padStart(2, "0");
      row.push(i === off ? `[${h}]` : h);
    }
    parts.push(`${o.toString().padStart(4)}: ${row.join(" ")}`);
  }
  return parts.join("\n");
}

const HEADER_FIELDS: readonly [number, string][] = [
  [0, "pd_lsn"],
  [8, "pd_checksum"],
  [10, "pd_flags"],
  [12, "pd_lower"],
  [14, "pd_upper"],
  [16, "pd_special"],
  [18, "pd_pagesize_version"],
  [20, "pd_prune_xid"],
];

function whereOnPage(page: Uint8Array, off: number): string {
  if (off < 24) {
    let name = "header";
    for (const [at, n] of HEADER_FIELDS) if (off >= at) name = n;
    return name;
  }
  const lower = page[12]! | (page[13]! << 8);
  const upper = page[14]! | (page[15]! << 8);
  const special = page[16]! | (page[17]! << 8);
  if (off < lower) return `line pointer ${((off - 24) >>> 2) + 1}`;
  if (off < upper) return "hole (pd_lower..pd_upper)";
  if (off >= special) return `special space +${off - special}`;
  // The line pointer whose tuple covers the offset, if any.
  for (let n = 1; 24 + 4 * n <= lower; n++) {
    const at = 24 + 4 * (n - 1);
    const w = (page[at]! | (page[at + 1]! << 8) | (page[at + 2]! << 16) | (page[at + 3]! << 24)) >>> 0;
    const lpOff = w & 0x7fff;
    const lpLen = w >>> 17;
    if (lpLen > 0 && off >= lpOff && off < lpOff + lpLen) return `tuple of line pointer ${n} +${off - lpOff}`;
  }
  return "tuple area";
}

/** A multi-line summary for assertion messages. */
export function formatReport(r: VerifyReport): string {
  const lines: string[] = [];
  const total = [...r.checked.values()].reduce((a, b) => a + b, 0);
  lines.push(
    `redo verification ${lsnToString(r.startLsn)}..${lsnToString(r.endLsn)}: ${r.records} records, ${total} blocks checked, ${r.mismatches.length} mismatches, ${r.noBase} without base`,
  );
  for (const [k, n] of [...r.checked].sort()) lines.push(`  checked ${k}: ${n}`);
  for (const [k, n] of [...r.unsupported].sort()) lines.push(`  no native redo for ${k}: ${n} block references`);
  for (const m of r.mismatches) {
    lines.push(
      `  MISMATCH at ${lsnToString(m.lsn)} ${m.rmgr}/${m.info} (info 0x${m.infoCode.toString(16).padStart(2, "0")}) block ${m.blockId} rel ${m.rel} fork ${m.fork} blk ${m.blkno}` +
        (m.error !== undefined ? `: redo threw: ${m.error}` : `: first difference at offset ${m.offset} (${m.where})`),
    );
    if (m.error === undefined && m.ours !== "") {
      lines.push(`    ours:\n${indent(m.ours)}`);
      lines.push(`    theirs (PostgreSQL):\n${indent(m.theirs)}`);
    }
  }
  return lines.join("\n");
}

function indent(s: string): string {
  return s
    .split("\n")
    .map((l) => `      ${l}`)
    .join("\n");
}
