/**
 * Reads of the datadir key map at an LSN: relations, databases, SLRUs, two-phase files,
 * control file, checkpoint, relmaps; the logical size; and the live keyspace.
 *
 * `DatadirSnapshot` reads at one LSN that is already ingested (`datadirAt` waits for it
 * first) through timeline.readAt: synchronous per key when the data is on local disk, a
 * Promise when the timeline must fetch it first; so every read here is async and nothing in
 * this folder knows where the data is. `DatadirReader` is the face for request handlers:
 * each call waits for its LSN, then reads.
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

/**
 * A consistent view of the datadir at one ingested LSN. Its reads are async because a layer
 * they need may have to come back to local disk first (the timeline does that: readAt); when
 * everything is local, each key is read synchronously and the Promise is the only cost.
 */
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

  /** The value at this snapshot's LSN: at once when its layers are local, else a Promise. */
  private get(key: Key): Uint8Array | null | Promise<Uint8Array | null> {
    return this.timeline.readAt(key, this.lsn, this.fillCache);
  }

  // Decoded directories, cached: the state at an ingested LSN never changes, and a base
  // backup asks for the same RelDir once per page. Two reads that fill the same entry at
  // once store equal values.
  private dbDirCache: Map<string, DbEntry> | null = null;
  private readonly relDirCache = new Map<string, Set<number> | null>();
  private readonly sizeCache = new Map<Key, number>();

  private async dbDir(): Promise<Map<string, DbEntry>> {
    if (this.dbDirCache === null) {
      const b = await this.get(DBDIR_KEY);
      this.dbDirCache = b === null ? new Map() : decodeDbDirectory(b);
    }
    return this.dbDirCache;
  }

  // Tablespaces, databases and relations

  /** User tablespaces (not pg_default, pg_global), ascending by OID, with the LOCATION each was created with ("" in place). */
  async listTablespaces(): Promise<{ spcnode: number; location: string }[]> {
    const b = await this.get(TABLESPACEDIR_KEY);
    if (b === null) return [];
    return [...decodeTablespaceDirectory(b)].sort((x, y) => x[0] - y[0]).map(([spcnode, location]) => ({ spcnode, location }));
  }

  async listDbs(): Promise<DbEntry[]> {
    return [...(await this.dbDir()).values()].sort((x, y) => x.spcnode - y.spcnode || x.dbnode - y.dbnode).map((e) => ({ ...e }));
  }

  async dbExists(spcnode: number, dbnode: number): Promise<boolean> {
    return (await this.dbDir()).has(dbDirKey(spcnode, dbnode));
  }

  private async relDir(spcnode: number, dbnode: number): Promise<Set<number> | null> {
    const k = dbDirKey(spcnode, dbnode);
    let d = this.relDirCache.get(k);
    if (d === undefined) {
      if (!(await this.dbExists(spcnode, dbnode))) d = null;
      else {
        const b = await this.get(relDirKey(spcnode, dbnode));
        d = b === null ? new Set() : decodeRelDirectory(b);
      }
      this.relDirCache.set(k, d);
    }
    return d;
  }

  async listRels(spcnode: number, dbnode: number): Promise<RelTag[]> {
    const d = await this.relDir(spcnode, dbnode);
    if (d === null) return [];
    return [...d].sort((a, b) => a - b).map((e) => ({ spcnode, dbnode, relnode: relDirEntryRelnode(e), forknum: relDirEntryFork(e) }));
  }

  async relExists(rel: RelTag): Promise<boolean> {
    checkRelTag(rel);
    const d = await this.relDir(rel.spcnode, rel.dbnode);
    return d?.has(relDirEntry(rel.relnode, rel.forknum)) === true;
  }

  /** nblocks; 0 for a nonexistent FSM/VM fork; NotFoundError for any other nonexistent fork. */
  async relSize(rel: RelTag): Promise<number> {
    if (!(await this.relExists(rel))) {
      if (rel.forknum === FSM_FORKNUM || rel.forknum === VISIBILITYMAP_FORKNUM) return 0;
      throw new NotFoundError(
        `relation ${rel.spcnode}/${rel.dbnode}/${rel.relnode} fork ${rel.forknum} does not exist at ${lsnToString(this.lsn)}`,
      );
    }
    return this.storedRelSize(rel);
  }

  /**
   * relSize from the caches alone, synchronously (the per-page path: GetPage, base backup);
   * undefined when something is not cached yet (or the fork does not exist: relSize says how).
   */
  private cachedRelSize(rel: RelTag): number | undefined {
    checkRelTag(rel);
    const d = this.relDirCache.get(dbDirKey(rel.spcnode, rel.dbnode));
    if (d === undefined || d === null || !d.has(relDirEntry(rel.relnode, rel.forknum))) return undefined;
    return this.sizeCache.get(relSizeKey(rel));
  }

  private async storedRelSize(rel: RelTag): Promise<number> {
    const key = relSizeKey(rel);
    let n = this.sizeCache.get(key);
    if (n === undefined) {
      const b = await this.get(key);
      n = b === null ? 0 : decodeNblocks(b);
      this.sizeCache.set(key, n);
    }
    return n;
  }

  /** The page (8192 bytes); beyond EOF or never written: an all-zero page. Redone on this thread. */
  async getRelPage(rel: RelTag, blkno: number): Promise<Uint8Array> {
    const n = this.cachedRelSize(rel) ?? (await this.relSize(rel));
    if (blkno >= n) return ZERO_PAGE.slice();
    const p = await this.get(relBlockKey(rel, blkno));
    return p === null ? ZERO_PAGE.slice() : p;
  }

  /**
   * Pages [first, first + n) of `rel` in one buffer (base backups): the reads stay synchronous
   * while the layers are local, so a chunk costs one Promise, not one per page.
   */
  async getRelPages(rel: RelTag, first: number, n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n * BLCKSZ);
    const size = this.cachedRelSize(rel) ?? (await this.relSize(rel));
    for (let i = 0; i < n && first + i < size; i++) {
      let p = this.get(relBlockKey(rel, first + i));
      if (p instanceof Promise) p = await p;
      if (p !== null) out.set(p, i * BLCKSZ);
    }
    return out;
  }

  /**
   * getRelPage for request handlers: a page whose record chain is long is redone on the redo
   * pool (timeline.get) instead of on this thread, so one deep chain doesn't stall the others.
   */
  async readRelPage(rel: RelTag, blkno: number): Promise<Uint8Array> {
    const n = this.cachedRelSize(rel) ?? (await this.relSize(rel));
    if (blkno >= n) return ZERO_PAGE.slice();
    const p = await this.timeline.get(relBlockKey(rel, blkno), this.lsn);
    return p === null ? ZERO_PAGE.slice() : p;
  }

  /** Σ nblocks × 8192 over the relations of one database. */
  async dbSize(spcnode: number, dbnode: number): Promise<number> {
    let total = 0;
    for (const rel of await this.listRels(spcnode, dbnode)) total += (await this.storedRelSize(rel)) * BLCKSZ;
    return total;
  }

  async relmap(spcnode: number, dbnode: number): Promise<Uint8Array | null> {
    const e = (await this.dbDir()).get(dbDirKey(spcnode, dbnode));
    if (e === undefined || !e.relmapExists) return null;
    return this.get(relmapFileKey(spcnode, dbnode));
  }

  /** Σ over all relations of nblocks × 8192 (relation blocks only). */
  async logicalSize(): Promise<number> {
    let total = 0;
    for (const db of await this.listDbs()) total += await this.dbSize(db.spcnode, db.dbnode);
    return total;
  }

  // SLRUs

  async slruSegments(kind: SlruKind): Promise<number[]> {
    const b = await this.get(slruDirKey(kind));
    if (b === null) return [];
    return [...decodeSlruDirectory(b)].sort((x, y) => x - y);
  }

  async slruSegmentExists(kind: SlruKind, segno: number): Promise<boolean> {
    const b = await this.get(slruDirKey(kind));
    return b !== null && decodeSlruDirectory(b).has(segno);
  }

  async slruSegmentSize(kind: SlruKind, segno: number): Promise<number> {
    if (!(await this.slruSegmentExists(kind, segno)))
      throw new NotFoundError(`SLRU ${kind} segment ${segno} does not exist at ${lsnToString(this.lsn)}`);
    const b = await this.get(slruSegmentSizeKey(kind, segno));
    return b === null ? 0 : decodeNblocks(b);
  }

  async getSlruPage(kind: SlruKind, segno: number, blkno: number): Promise<Uint8Array> {
    const p = await this.get(slruBlockKey(kind, segno, blkno));
    return p === null ? ZERO_PAGE.slice() : p;
  }

  /** The whole segment file (nblocks × 8192 bytes). */
  async getSlruSegment(kind: SlruKind, segno: number): Promise<Uint8Array> {
    const n = await this.slruSegmentSize(kind, segno);
    const out = new Uint8Array(n * BLCKSZ);
    for (let b = 0; b < n; b++) out.set(await this.getSlruPage(kind, segno, b), b * BLCKSZ);
    return out;
  }

  // Two-phase, control, checkpoint

  async twophaseXids(): Promise<number[]> {
    const b = await this.get(TWOPHASEDIR_KEY);
    if (b === null) return [];
    return [...decodeTwoPhaseDirectory(b)].sort((x, y) => x - y);
  }

  async twophaseFile(xid: number): Promise<Uint8Array> {
    const p = await this.get(twophaseFileKey(xid));
    if (p === null) throw new NotFoundError(`two-phase file of xid ${xid} not found at ${lsnToString(this.lsn)}`);
    return p;
  }

  async controlFile(): Promise<Uint8Array | null> {
    return this.get(CONTROLFILE_KEY);
  }

  async checkpoint(): Promise<Uint8Array | null> {
    return this.get(CHECKPOINT_KEY);
  }

  // Keyspace

  /** The live keys as sorted, merged, half-open ranges. */
  async keyspace(): Promise<KeyRange[]> {
    const acc = new KeyspaceAccum();
    acc.addKey(DBDIR_KEY);
    if ((await this.get(TABLESPACEDIR_KEY)) !== null) acc.addKey(TABLESPACEDIR_KEY);
    for (const db of await this.listDbs()) {
      if (db.relmapExists) acc.addKey(relmapFileKey(db.spcnode, db.dbnode));
      acc.addKey(relDirKey(db.spcnode, db.dbnode));
      for (const rel of await this.listRels(db.spcnode, db.dbnode)) {
        const n = await this.storedRelSize(rel);
        if (n > 0) acc.add(relBlockRange(rel, 0, n));
        acc.addKey(relSizeKey(rel));
      }
    }
    for (const kind of SLRU_KINDS) {
      acc.addKey(slruDirKey(kind));
      for (const segno of await this.slruSegments(kind)) {
        const b = await this.get(slruSegmentSizeKey(kind, segno));
        const n = b === null ? 0 : decodeNblocks(b);
        if (n > 0) acc.add({ start: slruSegmentKeyRange(kind, segno).start, end: blockEnd(kind, segno, n) });
        acc.addKey(slruSegmentSizeKey(kind, segno));
      }
    }
    acc.addKey(TWOPHASEDIR_KEY);
    for (const xid of await this.twophaseXids()) acc.addKey(twophaseFileKey(xid));
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
  return (await datadirAt(timeline, lsn)).logicalSize();
}

/** Async reads for request handlers (page service): each waits for its LSN. */
export class DatadirReader {
  readonly timeline: Timeline;
  constructor(timeline: Timeline) {
    this.timeline = timeline;
  }
  async relExists(rel: RelTag, lsn: Lsn): Promise<boolean> {
    return (await datadirAt(this.timeline, lsn)).relExists(rel);
  }
  async relSize(rel: RelTag, lsn: Lsn): Promise<number> {
    return (await datadirAt(this.timeline, lsn)).relSize(rel);
  }
  async getRelPage(rel: RelTag, blkno: number, lsn: Lsn): Promise<Uint8Array> {
    return (await datadirAt(this.timeline, lsn)).getRelPage(rel, blkno);
  }
  async dbSize(spcnode: number, dbnode: number, lsn: Lsn): Promise<number> {
    return (await datadirAt(this.timeline, lsn)).dbSize(spcnode, dbnode);
  }
  async getSlruSegment(kind: SlruKind, segno: number, lsn: Lsn): Promise<Uint8Array> {
    return (await datadirAt(this.timeline, lsn)).getSlruSegment(kind, segno);
  }
  async listDbs(lsn: Lsn): Promise<DbEntry[]> {
    return (await datadirAt(this.timeline, lsn)).listDbs();
  }
  async listRels(spcnode: number, dbnode: number, lsn: Lsn): Promise<RelTag[]> {
    return (await datadirAt(this.timeline, lsn)).listRels(spcnode, dbnode);
  }
  async logicalSize(lsn: Lsn): Promise<number> {
    return (await datadirAt(this.timeline, lsn)).logicalSize();
  }
}
