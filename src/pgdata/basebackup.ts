/**
 * Base backup: a tar of a data directory at LSN X, from which a stock PostgreSQL 15 starts
 * WITHOUT recovery (reference: postgres15-formats.md §5.1 and §7, the synthetic shutdown
 * checkpoint).
 *
 * Archive contents, in this order (ustar, 512-byte blocks, two zero blocks at the end):
 *   directories PostgreSQL needs (global, base, base/<db>, pg_wal, pg_wal/archive_status,
 *     pg_xact, pg_multixact/{offsets,members}, pg_twophase, pg_tblspc, pg_stat, pg_stat_tmp,
 *     pg_logical/{snapshots,mappings}, pg_notify, pg_serial, pg_snapshots, pg_subtrans,
 *     pg_commit_ts, pg_dynshmem, pg_replslot)
 *   PG_VERSION, postgresql.conf, postgresql.auto.conf, pg_hba.conf, pg_ident.conf
 *   user tablespaces in place: pg_tblspc/<oid>/PG_15_202209061/ directories, and
 *     pageserver_tablespaces.json (their original locations, for an endpoint's mapping)
 *   per database directory (base/<db>, or pg_tblspc/<oid>/PG_15_202209061/<db> for each
 *     other tablespace holding its relations): PG_VERSION (only where the database was
 *     created: its relmap is there), pg_filenode.map, every relation fork at its size, split in
 *     1 GiB segments (<relfilenode>[_fork][.seg]); data pages get a fresh checksum when the
 *     cluster has data checksums (redo does not maintain pd_checksum)
 *   unlogged relations (those with an init fork): the init fork, and the main fork as a
 *     copy of it (state SHUTDOWNED means no ResetUnloggedRelations at startup); their
 *     FSM/VM are left out
 *   SLRU segments (pg_xact/%04X, pg_multixact/…/%04X), pg_twophase/%08X
 *   pg_wal/<segment of C>: a long header, and at C the 114-byte XLOG_CHECKPOINT_SHUTDOWN
 *     record whose CheckPoint has redo = C; everything else zero
 *   global/pg_control last: state SHUTDOWNED, checkPoint = C, checkPointCopy = the
 *     record's CheckPoint, recovery/backup fields zeroed, fresh CRC
 *
 * C (the checkpoint location) is X when X is a valid place for a record to start and the
 * record fits on X's page; otherwise the start of the next page's usable space. Every page
 * in the backup has pd_lsn ≤ X ≤ C, so moving C forward is safe. The new server writes its
 * first record at C + 120 (`checkpointRecordEnd`).
 *
 * Errors: X below the timeline's start → InvalidArgumentError; below its GC cutoff →
 * GcCutoffError; beyond last_record_lsn → waits (wait_lsn_timeout), then LsnTimeoutError.
 */
import type { Timeline } from "../tenant/timeline/index.js";
import { assert } from "../types/assert.js";
import { InvalidArgumentError, NotFoundError } from "../types/errors.js";
import { failpoint } from "../types/failpoints.js";
import { encodeTablespacesFile, TABLESPACES_FILE } from "../types/tablespaces_file.js";
import { secondsSince } from "../types/metrics_sink.js";
import { INVALID_LSN, type Lsn, lsnAdd, lsnToString, writeLsnLE } from "../types/lsn.js";
import {
  type CheckPoint,
  type ControlFileData,
  DbState,
  decodeCheckPoint,
  decodeControlFile,
  encodeCheckPoint,
  encodeControlFile,
  SIZEOF_CHECKPOINT,
} from "../pg/control.js";
import { type DatadirSnapshot, datadirAt } from "./reader.js";
import {
  BLCKSZ,
  DEFAULTTABLESPACE_OID,
  dbDirPath,
  FSM_FORKNUM,
  GLOBALTABLESPACE_OID,
  INIT_FORKNUM,
  MAIN_FORKNUM,
  RELSEG_SIZE,
  type RelTag,
  relSegmentPath,
  SLRU_KINDS,
  slruDirName,
  TABLESPACE_VERSION_DIR,
  tablespaceLinkPath,
  VISIBILITYMAP_FORKNUM,
} from "./keys.js";
import { crc32c } from "../pg/wal/crc32c.js";
import {
  maxAlign,
  SIZE_OF_XLOG_LONG_PHD,
  SIZE_OF_XLOG_SHORT_PHD,
  walFileName,
  XLOG_BLCKSZ,
  XLOG_PAGE_MAGIC,
  XLP_FIRST_IS_CONTRECORD,
  XLP_LONG_HEADER,
} from "../pg/wal/page.js";
import { setPageChecksum } from "../pg/page.js";
import { XLR_BLOCK_ID_DATA_SHORT } from "../pg/wal/record.js";
import { RM_XLOG_ID, XLOG_CHECKPOINT_SHUTDOWN } from "../pg/wal/rmgr_ids.js";

/** Page checksums live in src/pg/page.ts; re-exported for callers of this module. */
export { pageChecksum, setPageChecksum } from "../pg/page.js";

/** xl_tot_len of a checkpoint record: header 24 + short data header 2 + CheckPoint 88. */
export const CHECKPOINT_RECORD_BYTES = 24 + 2 + SIZEOF_CHECKPOINT;
/** Pages per yielded chunk of a relation file (bounds memory of one chunk to 1 MiB). */
const PAGES_PER_CHUNK = 128;
const TAR_BLOCK = 512;
/** A stream not started this long after it was handed out gives its read lease back (StreamLease). */
const UNSTARTED_LEASE_MS = 60_000;

export interface BasebackupOptions {
  /** xl_prev of the checkpoint record (must be below it); default: the timeline's prev record LSN when X is its last record LSN, else 0. */
  prevLsn?: Lsn;
  postgresqlConf?: string;
  hbaConf?: string;
  /** Seconds since the epoch for pg_control/checkpoint time and tar mtimes (default now). */
  nowSeconds?: number;
}

const DEFAULT_POSTGRESQL_CONF = "# written by the pageserver base backup\nlisten_addresses = 'localhost'\n";
const DEFAULT_HBA_CONF = [
  "# written by the pageserver base backup: local connections only",
  "local   all             all                                     trust",
  "host    all             all             127.0.0.1/32            trust",
  "host    all             all             ::1/128                 trust",
  "local   replication     all                                     trust",
  "host    replication     all             127.0.0.1/32            trust",
  "host    replication     all             ::1/128                 trust",
  "",
].join("\n");
const AUTO_CONF = "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n";

const EMPTY_DIRS = [
  "global",
  "base",
  "pg_wal",
  "pg_wal/archive_status",
  "pg_xact",
  "pg_multixact",
  "pg_multixact/offsets",
  "pg_multixact/members",
  "pg_twophase",
  "pg_tblspc",
  "pg_stat",
  "pg_stat_tmp",
  "pg_logical",
  "pg_logical/snapshots",
  "pg_logical/mappings",
  "pg_notify",
  "pg_serial",
  "pg_snapshots",
  "pg_subtrans",
  "pg_commit_ts",
  "pg_dynshmem",
  "pg_replslot",
];

// ---------------------------------------------------------------------------------------
// Tar

function octal(buf: Uint8Array, off: number, width: number, value: number): void {
  // width includes the terminating NUL/space; numbers beyond octal range use base-256.
  const digits = width - 1;
  if (value < 8 ** digits) {
    const s = value.toString(8).padStart(digits, "0");
    for (let i = 0; i < digits; i++) buf[off + i] = s.charCodeAt(i);
    buf[off + digits] = 0;
    return;
  }
  buf[off] = 0x80;
  let v = value;
  for (let i = width - 1; i >= 1; i--) {
    buf[off + i] = v % 256;
    v = Math.floor(v / 256);
  }
}

function ascii(buf: Uint8Array, off: number, s: string, max: number): void {
  assert(s.length <= max, `tar field too long: ${s}`);
  for (let i = 0; i < s.length; i++) buf[off + i] = s.charCodeAt(i);
}

/** A ustar header. `type`: '0' file, '5' directory. */
export function tarHeader(name: string, sizeBytes: number, type: "0" | "5", mtimeSeconds: number): Uint8Array {
  const h = new Uint8Array(TAR_BLOCK);
  let n = type === "5" && !name.endsWith("/") ? `${name}/` : name;
  let prefix = "";
  if (n.length > 99) {
    const cut = n.lastIndexOf("/", n.length - 2);
    if (cut <= 0 || cut > 155 || n.length - cut - 1 > 99) throw new InvalidArgumentError(`path too long for a tar header: ${n}`);
    prefix = n.slice(0, cut);
    n = n.slice(cut + 1);
  }
  ascii(h, 0, n, 99);
  octal(h, 100, 8, type === "5" ? 0o700 : 0o600);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, sizeBytes);
  octal(h, 136, 12, mtimeSeconds);
  h[156] = type.charCodeAt(0);
  ascii(h, 257, "ustar", 6);
  h[263] = 0x30;
  h[264] = 0x30;
  ascii(h, 265, "postgres", 31);
  ascii(h, 297, "postgres", 31);
  ascii(h, 345, prefix, 155);
  // Checksum: sum of all bytes with the checksum field as spaces; 6 octal digits, NUL, space.
  for (let i = 148; i < 156; i++) h[i] = 0x20;
  let sum = 0;
  for (const byte of h) sum += byte;
  const s = sum.toString(8).padStart(6, "0");
  ascii(h, 148, s, 6);
  h[154] = 0;
  h[155] = 0x20;
  return h;
}

function tarPadding(sizeBytes: number): Uint8Array | null {
  const r = sizeBytes % TAR_BLOCK;
  return r === 0 ? null : new Uint8Array(TAR_BLOCK - r);
}

// ---------------------------------------------------------------------------------------
// Checkpoint record and WAL segment

/** Where the checkpoint record of a backup at `lsn` goes (see the module comment). */
export function checkpointLocation(lsn: Lsn, segSizeBytes: number): Lsn {
  let c = maxAlign(lsn);
  const pageOff = c % XLOG_BLCKSZ;
  const pageStart = c - pageOff;
  const hdr = pageStart % segSizeBytes === 0 ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD;
  if (pageOff < hdr) c = pageStart + hdr;
  else if (pageOff + CHECKPOINT_RECORD_BYTES > XLOG_BLCKSZ) {
    const next = pageStart + XLOG_BLCKSZ;
    c = next + (next % segSizeBytes === 0 ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD);
  }
  return c as Lsn;
}

/** Where the started server writes its first record. */
export function checkpointRecordEnd(checkpointLsn: Lsn): Lsn {
  return lsnAdd(checkpointLsn, maxAlign(CHECKPOINT_RECORD_BYTES));
}

/** The XLOG_CHECKPOINT_SHUTDOWN record (114 bytes) with its CRC. */
export function checkpointRecord(cp: CheckPoint, prevLsn: Lsn): Uint8Array {
  const rec = new Uint8Array(CHECKPOINT_RECORD_BYTES);
  const dv = new DataView(rec.buffer);
  dv.setUint32(0, CHECKPOINT_RECORD_BYTES, true);
  dv.setUint32(4, 0, true);
  writeLsnLE(rec, 8, prevLsn);
  rec[16] = XLOG_CHECKPOINT_SHUTDOWN;
  rec[17] = RM_XLOG_ID;
  rec[24] = XLR_BLOCK_ID_DATA_SHORT;
  rec[25] = SIZEOF_CHECKPOINT;
  encodeCheckPoint(cp, rec, 26);
  dv.setUint32(20, crc32c(rec.subarray(0, 20), crc32c(rec.subarray(24))), true);
  return rec;
}

function writePageHeader(seg: Uint8Array, off: number, info: number, tli: number, pageAddr: Lsn, remLen: number): void {
  const dv = new DataView(seg.buffer, seg.byteOffset, seg.byteLength);
  dv.setUint16(off, XLOG_PAGE_MAGIC, true);
  dv.setUint16(off + 2, info, true);
  dv.setUint32(off + 4, tli, true);
  writeLsnLE(seg, off + 8, pageAddr);
  dv.setUint32(off + 16, remLen, true);
}

/**
 * The WAL segment holding the checkpoint record at `c`: page 0's long header, the record's
 * page header (with XLP_FIRST_IS_CONTRECORD over the zero bytes before `c`, so page scanners
 * find the record), the record; zeros elsewhere.
 */
export function checkpointWalSegment(control: ControlFileData, c: Lsn, record: Uint8Array): Uint8Array {
  const segSize = control.xlogSegSize;
  const tli = control.checkPointCopy.thisTimeLineId;
  const segStart = lsnAdd(c, -(c % segSize));
  const seg = new Uint8Array(segSize);
  const pageOff = (c - segStart) % XLOG_BLCKSZ;
  const pageStart = lsnAdd(c, -pageOff);
  assert(pageOff + record.length <= XLOG_BLCKSZ, "checkpoint record must fit on its page");
  const dv = new DataView(seg.buffer);
  const firstRem = pageStart === segStart ? c - segStart - SIZE_OF_XLOG_LONG_PHD : 0;
  writePageHeader(seg, 0, XLP_LONG_HEADER | (firstRem > 0 ? XLP_FIRST_IS_CONTRECORD : 0), tli, segStart, firstRem);
  dv.setUint32(24, control.systemIdLo, true);
  dv.setUint32(28, control.systemIdHi, true);
  dv.setUint32(32, segSize, true);
  dv.setUint32(36, XLOG_BLCKSZ, true);
  if (pageStart !== segStart) {
    const rem = pageOff - SIZE_OF_XLOG_SHORT_PHD;
    writePageHeader(seg, pageStart - segStart, rem > 0 ? XLP_FIRST_IS_CONTRECORD : 0, tli, pageStart, rem);
  }
  seg.set(record, c - segStart);
  return seg;
}

// ---------------------------------------------------------------------------------------
// The archive

function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function hex(n: number, width: number): string {
  return n.toString(16).toUpperCase().padStart(width, "0");
}

/**
 * The base backup at `lsn` as a stream of tar bytes (chunks of at most ~1 MiB).
 * Throws before the first chunk on a bad LSN or missing control data.
 */
export async function basebackupTar(timeline: Timeline, lsn: Lsn, opts: BasebackupOptions = {}): Promise<AsyncIterable<Uint8Array>> {
  const start_ms = performance.now();
  await failpoint("basebackup-start");
  const start = timeline.ancestor === null ? timeline.initdbLsn : timeline.ancestorLsn;
  if (lsn < start)
    throw new InvalidArgumentError(`base backup LSN ${lsnToString(lsn)} is below the timeline's start ${lsnToString(start)}`);
  // A base backup reads every page once: keep it out of the materialized page cache.
  const snap = await datadirAt(timeline, lsn, { fillCache: false });
  // The backup reads chunk by chunk, for as long as the client takes: the timeline holds what
  // a read at its LSN needs (Timeline.holdReadsAt) until the stream ends.
  const lease = new StreamLease(timeline, lsn, await timeline.holdReadsAt(lsn));
  try {
    return timed(timeline, start_ms, lease, await prepare(timeline, snap, lsn, now0(opts), opts));
  } catch (e) {
    lease.release();
    throw e;
  }
}

function now0(opts: BasebackupOptions): number {
  return opts.nowSeconds ?? Math.floor(Date.now() / 1000);
}

async function prepare(
  timeline: Timeline,
  snap: DatadirSnapshot,
  lsn: Lsn,
  now: number,
  opts: BasebackupOptions,
): Promise<AsyncGenerator<Uint8Array>> {
  const controlBytes = await snap.controlFile();
  const cpBytes = await snap.checkpoint();
  if (controlBytes === null || cpBytes === null)
    throw new NotFoundError(`timeline ${timeline.timelineId} has no control file / checkpoint at ${lsnToString(lsn)}`);
  const control = decodeControlFile(controlBytes);
  const c = checkpointLocation(lsn, control.xlogSegSize);
  let prev = opts.prevLsn ?? (lsn === timeline.lastRecordLsn ? (timeline.prevRecordLsn ?? INVALID_LSN) : INVALID_LSN);
  if (!(prev < c)) prev = INVALID_LSN;
  const cp: CheckPoint = {
    ...decodeCheckPoint(cpBytes),
    redo: c,
    prevTimeLineId: control.checkPointCopy.thisTimeLineId,
    thisTimeLineId: control.checkPointCopy.thisTimeLineId,
    fullPageWrites: true,
    time: now,
    oldestActiveXid: 0,
  };
  if (cp.nextXidEpoch === 0 && cp.nextXid < 3) cp.nextXid = 3; // FirstNormalTransactionId: startup PANICs below it
  const newControl = encodeControlFile({
    ...control,
    state: DbState.Shutdowned,
    time: now,
    checkPoint: c,
    checkPointCopy: cp,
    minRecoveryPoint: INVALID_LSN,
    minRecoveryPointTli: 0,
    backupStartPoint: INVALID_LSN,
    backupEndPoint: INVALID_LSN,
    backupEndRequired: false,
  });
  const wal = checkpointWalSegment(control, c, checkpointRecord(cp, prev));
  const walName = walFileName(cp.thisTimeLineId, Math.floor(c / control.xlogSegSize), control.xlogSegSize);
  return generate(snap, control, newControl, wal, walName, now, opts);
}

/**
 * The read hold of a stream (Timeline.holdReadsAt), taken before the stream is handed out
 * and released in the stream's finally. A stream that is never started never runs its
 * finally (an HTTP client that left before the reply was produced),
 * so a lease not taken over by the stream within UNSTARTED_LEASE_MS is given back; a stream
 * that starts later leases again.
 */
class StreamLease {
  private readonly timeline: Timeline;
  private readonly lsn: Lsn;
  private held: (() => void) | null;
  private readonly timer: NodeJS.Timeout;

  constructor(timeline: Timeline, lsn: Lsn, release: () => void) {
    this.timeline = timeline;
    this.lsn = lsn;
    this.held = release;
    this.timer = setTimeout(() => this.release(), UNSTARTED_LEASE_MS);
    this.timer.unref();
  }

  /** The stream starts: it owns the lease now (leased again if the timer gave it back). */
  async start(): Promise<void> {
    clearTimeout(this.timer);
    if (this.held === null) this.held = await this.timeline.holdReadsAt(this.lsn);
  }

  release(): void {
    clearTimeout(this.timer);
    const r = this.held;
    this.held = null;
    r?.();
  }
}

/** The stream, timed from the request to its last chunk (or to the consumer stopping early); releases its lease at the end. */
async function* timed(
  timeline: Timeline,
  start_ms: number,
  lease: StreamLease,
  inner: AsyncGenerator<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  try {
    await lease.start();
    yield* inner;
  } finally {
    lease.release();
    timeline.metrics.storageOperation("basebackup", secondsSince(start_ms));
  }
}

async function* generate(
  snap: DatadirSnapshot,
  control: ControlFileData,
  newControl: Uint8Array,
  wal: Uint8Array,
  walName: string,
  now: number,
  opts: BasebackupOptions,
): AsyncGenerator<Uint8Array> {
  const checksums = control.dataChecksumVersion !== 0;
  const file = function* (name: string, data: Uint8Array): Generator<Uint8Array> {
    yield tarHeader(name, data.length, "0", now);
    if (data.length > 0) yield data;
    const pad = tarPadding(data.length);
    if (pad !== null) yield pad;
  };
  const dir = (name: string): Uint8Array => tarHeader(name, 0, "5", now);

  for (const d of EMPTY_DIRS) yield dir(d);
  yield* file("PG_VERSION", text("15\n"));
  yield* file("postgresql.conf", text(opts.postgresqlConf ?? DEFAULT_POSTGRESQL_CONF));
  yield* file("postgresql.auto.conf", text(AUTO_CONF));
  yield* file("pg_hba.conf", text(opts.hbaConf ?? DEFAULT_HBA_CONF));
  yield* file("pg_ident.conf", text("# MAPNAME       SYSTEM-USERNAME         PG-USERNAME\n"));

  // User tablespaces, always in place: pg_tblspc/<oid>/PG_15_202209061/ as directories
  // (PostgreSQL 15 runs on in-place tablespace directories as on symlinked ones; an endpoint
  // moves one elsewhere with --tablespace-mapping, leaving a symlink, as pg_basebackup does).
  const tablespaces = await snap.listTablespaces();
  const tblspcDirs = new Set<string>();
  const tblspcDir = function* (path: string): Generator<Uint8Array> {
    // A database directory of a tablespace with no record of its own (a timeline ingested
    // before tablespaces were recorded) still gets its parents.
    const parts = path.split("/");
    for (let i = 2; i <= parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      if (!tblspcDirs.has(p)) {
        tblspcDirs.add(p);
        yield dir(p);
      }
    }
  };
  for (const t of tablespaces) yield* tblspcDir(`${tablespaceLinkPath(t.spcnode)}/${TABLESPACE_VERSION_DIR}`);
  if (tablespaces.length > 0)
    yield* file(TABLESPACES_FILE, text(encodeTablespacesFile(tablespaces.map((t) => ({ oid: t.spcnode, location: t.location })))));
  for (const db of await snap.listDbs()) {
    const path = dbDirPath(db.spcnode, db.dbnode);
    if (db.spcnode !== GLOBALTABLESPACE_OID) {
      if (path.startsWith("pg_tblspc/")) yield* tblspcDir(path);
      else yield dir(path);
      // A database's directory in its default tablespace has PG_VERSION (and the relmap);
      // its directory in another tablespace, made for a relation, has neither.
      if (db.relmapExists || db.spcnode === DEFAULTTABLESPACE_OID) yield* file(`${path}/PG_VERSION`, text("15\n"));
    }
    const relmap = await snap.relmap(db.spcnode, db.dbnode);
    if (relmap !== null) yield* file(`${path}/pg_filenode.map`, relmap);
    const rels = await snap.listRels(db.spcnode, db.dbnode);
    const unlogged = new Set(rels.filter((r) => r.forknum === INIT_FORKNUM).map((r) => r.relnode));
    for (const rel of rels) {
      if (unlogged.has(rel.relnode)) {
        if (rel.forknum === FSM_FORKNUM || rel.forknum === VISIBILITYMAP_FORKNUM) continue;
        if (rel.forknum === MAIN_FORKNUM) continue; // written below as a copy of the init fork
        if (rel.forknum === INIT_FORKNUM) {
          yield* relFile(snap, rel, rel, now, checksums);
          yield* relFile(snap, rel, { ...rel, forknum: MAIN_FORKNUM }, now, checksums);
          continue;
        }
      }
      yield* relFile(snap, rel, rel, now, checksums);
    }
  }

  for (const kind of SLRU_KINDS) {
    for (const segno of await snap.slruSegments(kind)) {
      yield* file(`${slruDirName(kind)}/${hex(segno, 4)}`, await snap.getSlruSegment(kind, segno));
    }
  }
  for (const xid of await snap.twophaseXids()) yield* file(`pg_twophase/${hex(xid, 8)}`, await snap.twophaseFile(xid));
  yield* file(`pg_wal/${walName}`, wal);
  yield* file("global/pg_control", newControl);
  yield new Uint8Array(2 * TAR_BLOCK);
}

/** Pages [first, first + n) of fork `src`, checksummed when the cluster has checksums. */
async function relChunk(snap: DatadirSnapshot, src: RelTag, first: number, n: number, checksums: boolean): Promise<Uint8Array> {
  const chunk = await snap.getRelPages(src, first, n);
  if (checksums) for (let i = 0; i < n; i++) setPageChecksum(chunk.subarray(i * BLCKSZ, (i + 1) * BLCKSZ), first + i);
  return chunk;
}

/** Files of fork `src` written under the name of fork `dst` (the same, or main for unlogged). */
async function* relFile(snap: DatadirSnapshot, src: RelTag, dst: RelTag, now: number, checksums: boolean): AsyncGenerator<Uint8Array> {
  const nblocks = await snap.relSize(src);
  const segments = Math.max(1, Math.ceil(nblocks / RELSEG_SIZE));
  for (let seg = 0; seg < segments; seg++) {
    const first = seg * RELSEG_SIZE;
    const count = Math.min(RELSEG_SIZE, nblocks - first);
    yield tarHeader(relSegmentPath(dst, seg), count * BLCKSZ, "0", now);
    for (let b = 0; b < count; b += PAGES_PER_CHUNK) {
      yield await relChunk(snap, src, first + b, Math.min(PAGES_PER_CHUNK, count - b), checksums);
    }
  }
}
