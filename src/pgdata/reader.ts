/**
 * Reads of the datadir key map at an LSN: relations, databases, SLRUs, two-phase files,
 * control file, checkpoint, relmaps; the logical size; and the live keyspace.
 *
 * `DatadirSnapshot` is the synchronous core: it reads with timeline.getNow, so the LSN must
 * already be ingested (`datadirAt` waits for it first), and a layer it needs must be on local
 * disk (else LayerEvictedError: run it under timeline.withResidentLayers, which downloads and
 * reruns). `DatadirReader` is the async face for request handlers: each call waits for its
 * LSN, then reads, downloading evicted layers as needed.
 *
 * Semantics (as Neon's): existence comes from the directories; the FSM/VM fork of a
 * relation that does not exist has size 0 (PostgreSQL asks after smgrcreate); a block at or
 * beyond EOF reads as an all-zero page.
 *
 * `collectKeyspace` is the timeline's KeyspaceProvider: only live keys, sorted and merged:
 *   DbDir; TablespaceDir (when any user tablespace was ever created); per database its relmap (when it exists), RelDir, and per relation fork blocks
 *   [0, nblocks) and the size key; per SLRU its dir, and per segment blocks and size key;
 *   the two-phase dir and files; control file; checkpoint.
 * Keys of dropped relations and databases are not in it, so new image layers leave them out.
 */
import type { KeyspaceProvider, Timeline } from "../tenant/timeline/index.js";
import { GcCutoffError, InvalidArgumentError, NotFoundError } from "../types/errors.js";
import { type Key, type KeyRange, keyNext } from "../types/key.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import {
  type DbEntry,
  dbDirKey,
  decodeDbDirectory,
  decodeRelDirectory,
  decodeSlruDirectory,
  decodeTablespaceDirectory,
  decodeTwoPhaseDirectory,
  relDirEntry,
  relDirEntryFork,
  relDirEntryRelnode,
} from "./directories.js";
import {
  BLCKSZ,
  CHECKPOINT_KEY,
  CONTROLFILE_KEY,
  checkRelTag,
  DBDIR_KEY,
  decodeNblocks,
  FSM_FORKNUM,
  type RelTag,
  relBlockKey,
  relBlockRange,
  relDirKey,
  relmapFileKey,
  relSizeKey,
  SLRU_KINDS,
  type SlruKind,
  slruBlockKey,
  slruDirKey,
  slruSegmentKeyRange,
  slruSegmentSizeKey,
  TABLESPACEDIR_KEY,
  TWOPHASEDIR_KEY,
  twophaseFileKey,
  VISIBILITYMAP_FORKNUM,
} from "./keys.js";

const ZERO_PAGE = new Uint8Array(BLCKSZ);

/** A consistent view of the datadir at one ingested LSN (synchronous reads). */
export class DatadirSnapshot {
  readonly timeline: Timeline;
  readonly lsn: Lsn;
  /** Whether reconstructed pages go into the materialized page cache (not for bulk reads). */
  private readonly fillCache: boolean;

  constructor(timeline: Timeline, lsn: Lsn, opts: { fillCache?: boolean } = {}) {
    if (lsn > timeline.lastRecordLsn) {
      throw new InvalidArgumentError(`snapshot at ${lsnToString(lsn)} beyond last_record_lsn ${lsnToString(timeline.lastRecordLsn)}`);
    }
    this.timeline = timeline;
    this.lsn = lsn;
    this.fillCache = opts.fillCache ?? true;
  }

  private get(key: Key): Uint8Array | null {
    return this.timeline.getNow(key, this.lsn, this.fillCache);
  }

  // Decoded directories, cached: the state at an ingested LSN never changes, and a base
  // backup asks for the same RelDir once per page.
  private dbDirCache: Map<string, DbEntry> | null = null;
  private readonly relDirCache = new Map<string, Set<number> | null>();
  private readonly sizeCache = new Map<Key, number>();

  private dbDir(): Map<string, DbEntry> {
    if (this.dbDirCache === null) {
      const b = this.get(DBDIR_KEY);
      this.dbDirCache = b === null ? new Map() : decodeDbDirectory(b);
    }
    return this.dbDirCache;
  }

  // Tablespaces, databases and relations

  /** User tablespaces (not pg_default, pg_global), ascending by OID, with the LOCATION each was created with ("" in place). */
  listTablespaces(): { spcnode: number; location: string }[] {
    const b = this.get(TABLESPACEDIR_KEY);
    if (b === null) return [];
    return [...decodeTablespaceDirectory(b)].sort((x, y) => x[0] - y[0]).map(([spcnode, location]) => ({ spcnode, location }));
  }

  listDbs(): DbEntry[] {
    return [...this.dbDir().values()].sort((x, y) => x.spcnode - y.spcnode || x.dbnode - y.dbnode).map((e) => ({ ...e }));
  }

  dbExists(spcnode: number, dbnode: number): boolean {
    return this.dbDir().has(dbDirKey(spcnode, dbnode));
  }

  private relDir(spcnode: number, dbnode: number): Set<number> | null {
    const k = dbDirKey(spcnode, dbnode);
    let d = this.relDirCache.get(k);
    if (d === undefined) {
      if (!this.dbExists(spcnode, dbnode)) d = null;
      else {
        const b = this.get(relDirKey(spcnode, dbnode));
        d = b === null ? new Set() : decodeRelDirectory(b);
      }
      this.relDirCache.set(k, d);
    }
    return d;
  }

  listRels(spcnode: number, dbnode: number): RelTag[] {
    const d = this.relDir(spcnode, dbnode);
    if (d === null) return [];
    return [...d].sort((a, b) => a - b).map((e) => ({ spcnode, dbnode, relnode: relDirEntryRelnode(e), forknum: relDirEntryFork(e) }));
  }

  relExists(rel: RelTag): boolean {
    checkRelTag(rel);
    const d = this.relDir(rel.spcnode, rel.dbnode);
    return d?.has(relDirEntry(rel.relnode, rel.forknum)) === true;
  }

  /** nblocks; 0 for a nonexistent FSM/VM fork; NotFoundError for any other nonexistent fork. */
  relSize(rel: RelTag): number {
    if (!this.relExists(rel)) {
      if (rel.forknum === FSM_FORKNUM || rel.forknum === VISIBILITYMAP_FORKNUM) return 0;
      throw new NotFoundError(`relation ${rel.spcnode}/${rel.dbnode}/${rel.relnode} fork ${rel.forknum} does not exist at ${lsnToString(this.lsn)}`);
    }
    return this.storedRelSize(rel);
  }

  private storedRelSize(rel: RelTag): number {
    const key = relSizeKey(rel);
    let n = this.sizeCache.get(key);
    if (n === undefined) {
      const b = this.get(key);
      n = b === null ? 0 : decodeNblocks(b);
      this.sizeCache.set(key, n);
    }
    return n;
  }

  /** The page (8192 bytes); beyond EOF or never written: an all-zero page. */
  getRelPage(rel: RelTag, blkno: number): Uint8Array {
    const key = relBlockKey(rel, blkno);
    if (blkno >= this.relSize(rel)) return ZERO_PAGE.slice();
    const p = this.get(key);
    return p === null ? ZERO_PAGE.slice() : p;
  }

  /**
   * getRelPage for request handlers: a page whose record chain is long is redone on the redo
   * pool (timeline.get) instead of on this thread, so one deep chain doesn't stall the others.
   */
  async readRelPage(rel: RelTag, blkno: number): Promise<Uint8Array> {
    const n = await this.timeline.withResidentLayers(() => this.relSize(rel));
    if (blkno >= n) return ZERO_PAGE.slice();
    const p = await this.timeline.get(relBlockKey(rel, blkno), this.lsn);
    return p === null ? ZERO_PAGE.slice() : p;
  }

  /** Σ nblocks × 8192 over the relations of one database. */
  dbSize(spcnode: number, dbnode: number): number {
    let total = 0;
    for (const rel of this.listRels(spcnode, dbnode)) total += this.storedRelSize(rel) * BLCKSZ;
    return total;
  }

  relmap(spcnode: number, dbnode: number): Uint8Array | null {
    const e = this.dbDir().get(dbDirKey(spcnode, dbnode));
    if (e === undefined || !e.relmapExists) return null;
    return this.get(relmapFileKey(spcnode, dbnode));
  }

  /** Σ over all relations of nblocks × 8192 (relation blocks only). */
  logicalSize(): number {
    let total = 0;
    for (const db of this.listDbs()) total += this.dbSize(db.spcnode, db.dbnode);
    return total;
  }

  // SLRUs

  slruSegments(kind: SlruKind): number[] {
    const b = this.get(slruDirKey(kind));
    if (b === null) return [];
    return [...decodeSlruDirectory(b)].sort((x, y) => x - y);
  }

  slruSegmentExists(kind: SlruKind, segno: number): boolean {
    const b = this.get(slruDirKey(kind));
    return b !== null && decodeSlruDirectory(b).has(segno);
  }

  slruSegmentSize(kind: SlruKind, segno: number): number {
    if (!this.slruSegmentExists(kind, segno)) throw new NotFoundError(`SLRU ${kind} segment ${segno} does not exist at ${lsnToString(this.lsn)}`);
    const b = this.get(slruSegmentSizeKey(kind, segno));
    return b === null ? 0 : decodeNblocks(b);
  }

  getSlruPage(kind: SlruKind, segno: number, blkno: number): Uint8Array {
    const p = this.get(slruBlockKey(kind, segno, blkno));
    return p === null ? ZERO_PAGE.slice() : p;
  }

  /** The whole segment file (nblocks × 8192 bytes). */
  getSlruSegment(kind: SlruKind, segno: number): Uint8Array {
    const n = this.slruSegmentSize(kind, segno);
    const out = new Uint8Array(n * BLCKSZ);
    for (let b = 0; b < n; b++) out.set(this.getSlruPage(kind, segno, b), b * BLCKSZ);
    return out;
  }

  // Two-phase, control, checkpoint

  twophaseXids(): number[] {
    const b = this.get(TWOPHASEDIR_KEY);
    if (b === null) return [];
    return [...decodeTwoPhaseDirectory(b)].sort((x, y) => x - y);
  }

  twophaseFile(xid: number): Uint8Array {
    const p = this.get(twophaseFileKey(xid));
    if (p === null) throw new NotFoundError(`two-phase file of xid ${xid} not found at ${lsnToString(this.lsn)}`);
    return p;
  }

  controlFile(): Uint8Array | null {
    return this.get(CONTROLFILE_KEY);
  }

  checkpoint(): Uint8Array | null {
    return this.get(CHECKPOINT_KEY);
  }

  // Keyspace

  /** The live keys as sorted, merged, half-open ranges. */
  keyspace(): KeyRange[] {
    const acc = new KeyspaceAccum();
    acc.addKey(DBDIR_KEY);
    if (this.get(TABLESPACEDIR_KEY) !== null) acc.addKey(TABLESPACEDIR_KEY);
    for (const db of this.listDbs()) {
      if (db.relmapExists) acc.addKey(relmapFileKey(db.spcnode, db.dbnode));
      acc.addKey(relDirKey(db.spcnode, db.dbnode));
      for (const rel of this.listRels(db.spcnode, db.dbnode)) {
        const n = this.storedRelSize(rel);
        if (n > 0) acc.add(relBlockRange(rel, 0, n));
        acc.addKey(relSizeKey(rel));
      }
    }
    for (const kind of SLRU_KINDS) {
      acc.addKey(slruDirKey(kind));
      for (const segno of this.slruSegments(kind)) {
        const b = this.get(slruSegmentSizeKey(kind, segno));
        const n = b === null ? 0 : decodeNblocks(b);
        if (n > 0) acc.add({ start: slruSegmentKeyRange(kind, segno).start, end: blockEnd(kind, segno, n) });
        acc.addKey(slruSegmentSizeKey(kind, segno));
      }
    }
    acc.addKey(TWOPHASEDIR_KEY);
    for (const xid of this.twophaseXids()) acc.addKey(twophaseFileKey(xid));
    acc.addKey(CONTROLFILE_KEY);
    acc.addKey(CHECKPOINT_KEY);
    return acc.toRanges();
  }
}

function blockEnd(kind: SlruKind, segno: number, n: number): Key {
  // Blocks [0, n) of the segment: block n's key (n ≤ 32; 32 is not a valid block, so step from 31).
  return keyNext(slruBlockKey(kind, segno, n - 1));
}

/** Ranges in any order → sorted, merged (adjacent or overlapping). */
export class KeyspaceAccum {
  private readonly ranges: KeyRange[] = [];

  add(r: KeyRange): void {
    if (r.start < r.end) this.ranges.push(r);
  }

  addKey(k: Key): void {
    this.ranges.push({ start: k, end: keyNext(k) });
  }

  toRanges(): KeyRange[] {
    const sorted = this.ranges.slice().sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const out: KeyRange[] = [];
    for (const r of sorted) {
      const last = out[out.length - 1];
      if (last !== undefined && r.start <= last.end) {
        if (r.end > last.end) last.end = r.end;
      } else {
        out.push({ start: r.start, end: r.end });
      }
    }
    return out;
  }
}

/**
 * A snapshot at `lsn`, after waiting for ingest to reach it. Below the timeline's GC cutoff
 * (or its start) → GcCutoffError; not reached within wait_lsn_timeout → LsnTimeoutError.
 */
export async function datadirAt(timeline: Timeline, lsn: Lsn, opts: { fillCache?: boolean } = {}): Promise<DatadirSnapshot> {
  if (lsn < timeline.latestGcCutoffLsn) {
    throw new GcCutoffError(`requested LSN ${lsnToString(lsn)} is below the GC cutoff ${lsnToString(timeline.latestGcCutoffLsn)}`);
  }
  if (lsn > timeline.lastRecordLsn) await timeline.waitLsn(lsn);
  return new DatadirSnapshot(timeline, lsn, opts);
}

/** The KeyspaceProvider of timelines that hold a PostgreSQL datadir. */
export const collectKeyspace: KeyspaceProvider = (timeline, lsn) => new DatadirSnapshot(timeline, lsn).keyspace();

/** Logical size at `lsn`: Σ relation nblocks × 8192. */
export async function logicalSize(timeline: Timeline, lsn: Lsn): Promise<number> {
  const snap = await datadirAt(timeline, lsn);
  return timeline.withResidentLayers(() => snap.logicalSize());
}

/** Async reads for request handlers (page service): each waits for its LSN. */
export class DatadirReader {
  readonly timeline: Timeline;
  constructor(timeline: Timeline) {
    this.timeline = timeline;
  }
  async relExists(rel: RelTag, lsn: Lsn): Promise<boolean> {
    const snap = await datadirAt(this.timeline, lsn);
    return this.timeline.withResidentLayers(() => snap.relExists(rel));
  }
  async relSize(rel: RelTag, lsn: Lsn): Promise<number> {
    const snap = await datadirAt(this.timeline, lsn);
    return this.timeline.withResidentLayers(() => snap.relSize(rel));
  }
  async getRelPage(rel: RelTag, blkno: number, lsn: Lsn): Promise<Uint8Array> {
    const snap = await datadirAt(this.timeline, lsn);
    return this.timeline.withResidentLayers(() => snap.getRelPage(rel, blkno));
  }
  async dbSize(spcnode: number, dbnode: number, lsn: Lsn): Promise<number> {
    const snap = await datadirAt(this.timeline, lsn);
    return this.timeline.withResidentLayers(() => snap.dbSize(spcnode, dbnode));
  }
  async getSlruSegment(kind: SlruKind, segno: number, lsn: Lsn): Promise<Uint8Array> {
    const snap = await datadirAt(this.timeline, lsn);
    return this.timeline.withResidentLayers(() => snap.getSlruSegment(kind, segno));
  }
  async listDbs(lsn: Lsn): Promise<DbEntry[]> {
    const snap = await datadirAt(this.timeline, lsn);
    return this.timeline.withResidentLayers(() => snap.listDbs());
  }
  async listRels(spcnode: number, dbnode: number, lsn: Lsn): Promise<RelTag[]> {
    const snap = await datadirAt(this.timeline, lsn);
    return this.timeline.withResidentLayers(() => snap.listRels(spcnode, dbnode));
  }
  async logicalSize(lsn: Lsn): Promise<number> {
    const snap = await datadirAt(this.timeline, lsn);
    return this.timeline.withResidentLayers(() => snap.logicalSize());
  }
}
