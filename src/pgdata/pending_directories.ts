/**
 * PendingDirectories: the metadata of one DatadirWriter modification that later calls of the
 * same modification read back: the database directory (DbDir), each database's RelDir, the
 * SLRU directories, the two-phase and tablespace directories, and the sizes (relation forks,
 * SLRU segments). Kept decoded, encoded and put as images at commit (putDirty).
 *
 * Read-your-writes over a cross-modification cache: decoded metadata as of `cacheLsn` is
 * kept across modifications (ingest reads the same directories and sizes for every record,
 * and decoding them each time dominated its cost). RelDirs and SLRU directories are changed
 * in place in that cache, and dirty sets name the changed ones; the DbDir of a modification
 * is the cached object too (its dirty flag says whether it changed); sizes of a modification
 * are a map of their own, folded into the cache at commit.
 *
 * Invariants: the cache is valid only while its writer is the timeline's only writer
 * (dropCacheIfStale at begin: any other write moves last_record_lsn away from cacheLsn); it
 * is dropped on abort (clearCache), since pending changes mutate the cached objects in place.
 * State not cached or pending is read from the timeline at its last_record_lsn: modifications
 * commit in LSN order, so that is the state this one builds on.
 *
 * Lock order: none (synchronous; owned by one DatadirWriter).
 */
import type { Timeline } from "../tenant/timeline/index.js";
import { assert } from "../types/assert.js";
import type { Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { ValueTag } from "../types/value.js";
import {
  type DbDirectory,
  type DbEntry,
  dbDirKey,
  decodeDbDirectory,
  decodeRelDirectory,
  decodeSlruDirectory,
  decodeTablespaceDirectory,
  decodeTwoPhaseDirectory,
  encodeDbDirectory,
  encodeRelDirectory,
  encodeSlruDirectory,
  encodeTablespaceDirectory,
  encodeTwoPhaseDirectory,
  type RelDirectory,
  type SlruDirectory,
  type TablespaceDirectory,
  type TwoPhaseDirectory,
} from "./directories.js";
import {
  DBDIR_KEY,
  decodeNblocks,
  encodeNblocks,
  relDirKey,
  type SlruKind,
  slruDirKey,
  TABLESPACEDIR_KEY,
  TWOPHASEDIR_KEY,
} from "./keys.js";
import type { PendingValuesSink } from "./pending_values.js";

export class PendingDirectories {
  private readonly timeline: Timeline;

  // This modification's changes.
  private dbDir: DbDirectory | null = null;
  private dbDirDirty = false;
  /** RelDirs and SLRU directories are changed in place in the cache below; these name the changed ones. */
  private readonly relDirsDirty = new Set<string>();
  private readonly sizes = new Map<Key, number>();
  private readonly slruDirsDirty = new Set<SlruKind>();
  private twophaseDir: TwoPhaseDirectory | null = null;
  private twophaseDirty = false;
  private tablespaceDir: TablespaceDirectory | null = null;
  private tablespaceDirty = false;

  // Decoded metadata as of cacheLsn, kept across modifications (see the header).
  private cacheLsn = -1;
  private cachedDbDir: DbDirectory | null = null;
  private readonly cachedRelDirs = new Map<string, RelDirectory>();
  private readonly cachedSizes = new Map<Key, number | null>();
  private readonly cachedSlruDirs = new Map<SlruKind, SlruDirectory>();

  /** dbDirKey of the last database asked about: records touch one database after another. */
  private dbKeySpc = -1;
  private dbKeyDb = -1;
  private dbKeyStr = "";

  constructor(timeline: Timeline) {
    this.timeline = timeline;
  }

  private dbKey(spcnode: number, dbnode: number): string {
    if (spcnode !== this.dbKeySpc || dbnode !== this.dbKeyDb) {
      this.dbKeyStr = dbDirKey(spcnode, dbnode);
      this.dbKeySpc = spcnode;
      this.dbKeyDb = dbnode;
    }
    return this.dbKeyStr;
  }

  /** Stored state (before this modification). */
  private stored(key: Key): Uint8Array | null {
    const at = this.timeline.lastRecordLsn;
    return this.timeline.getNow(key, at);
  }

  // ---------------------------------------------------------------------------------------
  // Lifecycle

  /** Forget this modification's changes (the cache stays). */
  reset(): void {
    // Map.clear() allocates a new table even when empty; this runs twice per WAL record.
    this.dbDir = null;
    this.dbDirDirty = false;
    if (this.relDirsDirty.size > 0) this.relDirsDirty.clear();
    if (this.sizes.size > 0) this.sizes.clear();
    if (this.slruDirsDirty.size > 0) this.slruDirsDirty.clear();
    this.twophaseDir = null;
    this.twophaseDirty = false;
    this.tablespaceDir = null;
    this.tablespaceDirty = false;
  }

  /** Drop the cache if another writer moved last_record_lsn since this one's last commit. */
  dropCacheIfStale(): void {
    if (this.timeline.lastRecordLsn !== this.cacheLsn) this.clearCache();
  }

  clearCache(): void {
    this.cacheLsn = -1;
    this.cachedDbDir = null;
    this.cachedRelDirs.clear();
    this.cachedSizes.clear();
    this.cachedSlruDirs.clear();
  }

  // ---------------------------------------------------------------------------------------
  // Databases and relations

  private getDbDir(): DbDirectory {
    if (this.dbDir === null) {
      if (this.cachedDbDir === null) {
        const b = this.stored(DBDIR_KEY);
        this.cachedDbDir = b === null ? new Map() : decodeDbDirectory(b);
      }
      this.dbDir = this.cachedDbDir;
    }
    return this.dbDir;
  }

  hasDb(spcnode: number, dbnode: number): boolean {
    return this.getDbDir().has(this.dbKey(spcnode, dbnode));
  }

  /** The databases with a directory in tablespace `spcnode`. */
  dbsIn(spcnode: number): DbEntry[] {
    return [...this.getDbDir().values()].filter((e) => e.spcnode === spcnode);
  }

  /** Add a database's directory (DbDir entry, empty RelDir); false when it exists. */
  addDb(spcnode: number, dbnode: number): boolean {
    const dir = this.getDbDir();
    const k = this.dbKey(spcnode, dbnode);
    if (dir.has(k)) return false;
    dir.set(k, { spcnode, dbnode, relmapExists: false });
    this.dbDirDirty = true;
    this.cachedRelDirs.set(k, new Set());
    this.relDirsDirty.add(k);
    return true;
  }

  /** Note that an existing database has a relmap file. */
  setRelmapExists(spcnode: number, dbnode: number): void {
    const e = this.getDbDir().get(this.dbKey(spcnode, dbnode))!;
    if (!e.relmapExists) {
      e.relmapExists = true;
      this.dbDirDirty = true;
    }
  }

  /** Remove a database's directory and its RelDir; false when it does not exist. */
  deleteDb(spcnode: number, dbnode: number): boolean {
    const k = this.dbKey(spcnode, dbnode);
    if (!this.getDbDir().delete(k)) return false;
    this.dbDirDirty = true;
    this.cachedRelDirs.delete(k);
    this.relDirsDirty.delete(k);
    return true;
  }

  /** The RelDir of a database (entries: relDirEntry), or null when the database does not exist. */
  relDir(spcnode: number, dbnode: number): ReadonlySet<number> | null {
    return this.getRelDir(spcnode, dbnode);
  }

  private getRelDir(spcnode: number, dbnode: number): RelDirectory | null {
    const k = this.dbKey(spcnode, dbnode);
    if (!this.getDbDir().has(k)) return null;
    let d = this.cachedRelDirs.get(k);
    if (d === undefined) {
      const b = this.stored(relDirKey(spcnode, dbnode));
      d = b === null ? new Set<number>() : decodeRelDirectory(b);
      this.cachedRelDirs.set(k, d);
    }
    return d;
  }

  /** Add relDirEntry `entry` to an existing database's RelDir; false when it is there. */
  addRel(spcnode: number, dbnode: number, entry: number): boolean {
    const d = this.getRelDir(spcnode, dbnode)!;
    if (d.has(entry)) return false;
    d.add(entry);
    this.relDirsDirty.add(this.dbKey(spcnode, dbnode));
    return true;
  }

  /** Remove relDirEntry `entry` from a database's RelDir; false when it is not there. */
  deleteRel(spcnode: number, dbnode: number, entry: number): boolean {
    const d = this.getRelDir(spcnode, dbnode);
    if (d === null || !d.delete(entry)) return false;
    this.relDirsDirty.add(this.dbKey(spcnode, dbnode));
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // Sizes (relation forks and SLRU segments: nblocks under their size key)

  /** The size under `key`, null when none is stored. */
  size(key: Key): number | null {
    const p = this.sizes.get(key);
    if (p !== undefined) return p;
    const c = this.cachedSizes.get(key);
    if (c !== undefined) return c;
    const b = this.stored(key);
    const n = b === null ? null : decodeNblocks(b);
    this.cachedSizes.set(key, n);
    return n;
  }

  setSize(key: Key, nblocks: number): void {
    this.sizes.set(key, nblocks);
  }

  /** Forget pending sizes in [start, end) (a dropped relation, database or segment). */
  dropSizesIn(start: Key, end: Key): void {
    for (const key of this.sizes.keys()) if (key >= start && key < end) this.sizes.delete(key);
  }

  // ---------------------------------------------------------------------------------------
  // SLRU segments, two-phase files, tablespaces

  private getSlruDir(kind: SlruKind): SlruDirectory {
    let d = this.cachedSlruDirs.get(kind);
    if (d === undefined) {
      const b = this.stored(slruDirKey(kind));
      d = b === null ? new Set<number>() : decodeSlruDirectory(b);
      this.cachedSlruDirs.set(kind, d);
    }
    return d;
  }

  hasSlruSegment(kind: SlruKind, segno: number): boolean {
    return this.getSlruDir(kind).has(segno);
  }

  addSlruSegment(kind: SlruKind, segno: number): void {
    const d = this.getSlruDir(kind);
    if (!d.has(segno)) {
      d.add(segno);
      this.slruDirsDirty.add(kind);
    }
  }

  /** false when the segment does not exist. */
  deleteSlruSegment(kind: SlruKind, segno: number): boolean {
    if (!this.getSlruDir(kind).delete(segno)) return false;
    this.slruDirsDirty.add(kind);
    return true;
  }

  private getTwophaseDir(): TwoPhaseDirectory {
    if (this.twophaseDir === null) {
      const b = this.stored(TWOPHASEDIR_KEY);
      this.twophaseDir = b === null ? new Set() : decodeTwoPhaseDirectory(b);
    }
    return this.twophaseDir;
  }

  addTwophase(xid: number): void {
    const d = this.getTwophaseDir();
    if (!d.has(xid)) {
      d.add(xid);
      this.twophaseDirty = true;
    }
  }

  /** false when there is no two-phase file for `xid`. */
  deleteTwophase(xid: number): boolean {
    if (!this.getTwophaseDir().delete(xid)) return false;
    this.twophaseDirty = true;
    return true;
  }

  private getTablespaceDir(): TablespaceDirectory {
    if (this.tablespaceDir === null) {
      const b = this.stored(TABLESPACEDIR_KEY);
      this.tablespaceDir = b === null ? new Map() : decodeTablespaceDirectory(b);
    }
    return this.tablespaceDir;
  }

  /** User tablespaces (OID → LOCATION, "" in place). */
  tablespaces(): ReadonlyMap<number, string> {
    return this.getTablespaceDir();
  }

  setTablespace(spcnode: number, location: string): void {
    const d = this.getTablespaceDir();
    if (d.get(spcnode) === location) return;
    d.set(spcnode, location);
    this.tablespaceDirty = true;
  }

  deleteTablespace(spcnode: number): void {
    if (this.getTablespaceDir().delete(spcnode)) this.tablespaceDirty = true;
  }

  // ---------------------------------------------------------------------------------------
  // Commit

  /** Put every changed directory and every pending size at `lsn` (encoded fresh: images without a copy). Returns the number of values put. */
  putDirty(sink: PendingValuesSink, lsn: Lsn): number {
    const IMAGE = ValueTag.Image;
    let n = 0;
    if (this.dbDirDirty) {
      sink.putTagged(DBDIR_KEY, lsn, IMAGE, encodeDbDirectory(this.getDbDir()));
      n++;
    }
    for (const k of this.relDirsDirty) {
      const d = this.cachedRelDirs.get(k);
      assert(d !== undefined, "dirty RelDir not loaded");
      const [spc, db] = k.split("/").map(Number) as [number, number];
      sink.putTagged(relDirKey(spc, db), lsn, IMAGE, encodeRelDirectory(d));
      n++;
    }
    for (const kind of this.slruDirsDirty) {
      sink.putTagged(slruDirKey(kind), lsn, IMAGE, encodeSlruDirectory(this.cachedSlruDirs.get(kind)!));
      n++;
    }
    if (this.twophaseDirty) {
      sink.putTagged(TWOPHASEDIR_KEY, lsn, IMAGE, encodeTwoPhaseDirectory(this.getTwophaseDir()));
      n++;
    }
    if (this.tablespaceDirty) {
      sink.putTagged(TABLESPACEDIR_KEY, lsn, IMAGE, encodeTablespaceDirectory(this.getTablespaceDir()));
      n++;
    }
    for (const [key, nblocks] of this.sizes) {
      sink.putTagged(key, lsn, IMAGE, encodeNblocks(nblocks));
      n++;
    }
    return n;
  }

  /** The modification was written at `lsn`: what it changed is the stored state now (the cache's). */
  committed(lsn: Lsn): void {
    if (this.dbDirDirty) this.cachedDbDir = this.dbDir;
    for (const [key, nblocks] of this.sizes) this.cachedSizes.set(key, nblocks);
    this.cacheLsn = lsn;
  }
}
