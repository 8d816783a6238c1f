/**
 * DatadirWriter: one batch of changes to the datadir key map at one LSN (Neon's
 * DatadirModification). `begin(lsn)`, any number of puts, then `commit()`, which hands every
 * value to timeline.put(key, lsn, …) and finishes the write at `lsn`.
 *
 * Two kinds of pending state:
 * - data (relation and SLRU blocks): kept as values (PendingValues; a WAL record for a block,
 *   putRelRecord, as the record itself and its tag: referenced until commit, not copied), not
 *   readable through this writer; a batch above MAX_PENDING_DATA_BYTES is put into the
 *   timeline early (only allowed because nothing reads at `lsn` before finishWrite(lsn)
 *   except in a bootstrap import).
 * - metadata (directories, sizes, relmap, control, checkpoint, two-phase files): kept
 *   decoded, visible to later calls of the same modification, encoded at commit. RelDirs
 *   and SLRU directories are changed in place in the cross-modification cache (below).
 *
 * Semantics (as Neon's):
 * - existence comes from the directories (DbDir → RelDir), never from a size key: dropped
 *   keys are not tombstoned (nothing is deleted in storage) but become unreachable once the
 *   directory forgets them; collectKeyspace then leaves them out of new image layers.
 * - writing a block at or beyond EOF creates the relation if needed and extends it; blocks in
 *   the gap are written as zero pages, so every block below nblocks has a value and a
 *   re-extension after a truncation never resurrects old contents.
 * - createDb writes an empty RelDir; createRel writes nblocks = 0 (a dropped and re-created
 *   relnode starts empty).
 *
 * Reads of state not yet pending go to the timeline at its last_record_lsn: modifications
 * commit in LSN order, so that is the state this one builds on.
 *
 * Values go to the timeline, or to a `sink` given to the constructor (a bulk import, whose
 * values become image layers once it finishes; its reads still go to the empty timeline).
 */
import type { Timeline } from "../tenant/timeline/index.js";
import { assert } from "../types/assert.js";
import { BadStateError, InvalidArgumentError } from "../types/errors.js";
import type { Key } from "../types/key.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import { imageValue, isValueTag, type Value, ValueTag } from "../types/value.js";
import {
  type DbDirectory,
  dbDirKey,
  decodeDbDirectory,
  decodeRelDirectory,
  decodeSlruDirectory,
  decodeTablespaceDirectory,
  decodeTwoPhaseDirectory,
  encodeDbDirectory,
  encodeTablespaceDirectory,
  encodeRelDirectory,
  encodeSlruDirectory,
  encodeTwoPhaseDirectory,
  type RelDirectory,
  relDirEntry,
  relDirEntryFork,
  relDirEntryRelnode,
  type SlruDirectory,
  type TablespaceDirectory,
  type TwoPhaseDirectory,
} from "./directories.js";
import {
  BLCKSZ,
  CHECKPOINT_KEY,
  CONTROLFILE_KEY,
  checkRelTag,
  DBDIR_KEY,
  DEFAULTTABLESPACE_OID,
  GLOBALTABLESPACE_OID,
  decodeNblocks,
  dbdirKeyRange,
  encodeNblocks,
  MAX_BLKNO,
  type RelTag,
  relBlockKey,
  relDirKey,
  relKeyRange,
  relmapFileKey,
  relSizeKey,
  relTagToString,
  SLRU_PAGES_PER_SEGMENT,
  type SlruKind,
  slruBlockKey,
  TABLESPACEDIR_KEY,
  slruDirKey,
  slruSegmentKeyRange,
  slruSegmentSizeKey,
  TWOPHASEDIR_KEY,
  twophaseFileKey,
} from "./keys.js";
import { RELMAPPER_FILESIZE } from "../pg/consts.js";
import { PendingValues, type PendingValuesSink } from "./pending_values.js";
import { PG_CONTROL_FILE_SIZE, SIZEOF_CHECKPOINT } from "../pg/control.js";

/** Data values held before they are put early (bounded memory per modification). */
export const MAX_PENDING_DATA_BYTES = 8 * 1024 * 1024;

const ZERO_PAGE = new Uint8Array(BLCKSZ);
const ZERO_PAGE_VALUE = imageValue(ZERO_PAGE);

/** Where a writer's values go: the timeline itself, or a bulk import of it. */
export interface DatadirSink extends PendingValuesSink {
  finishWrite(lsn: Lsn, prevRecordLsn: Lsn | null): void;
}

export class DatadirWriter {
  readonly timeline: Timeline;
  private readonly sink: DatadirSink;
  private lsn_ = -1 as Lsn;
  private active = false;

  private readonly data = new PendingValues();
  private flushedEarly = 0;

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
  /** Raw metadata files (relmap, control, checkpoint, two-phase state): copies, put as images. */
  private readonly files = new PendingValues();
  /** putCheckpoint's copy (one per record that moves nextXid: a new buffer each time showed up in profiles). */
  private readonly checkpointCopy = new Uint8Array(SIZEOF_CHECKPOINT);

  /**
   * Decoded metadata as of `cacheLsn`, kept across modifications: ingest reads the same
   * directories and sizes for every record, and decoding them each time dominated its cost.
   * Valid only while this writer is the timeline's only writer (checked at begin(): any
   * other write moves last_record_lsn away from cacheLsn); dropped on abort, since pending
   * changes mutate the cached objects in place.
   */
  private cacheLsn = -1;
  private cachedDbDir: DbDirectory | null = null;
  private readonly cachedRelDirs = new Map<string, RelDirectory>();
  private readonly cachedSizes = new Map<Key, number | null>();
  private readonly cachedSlruDirs = new Map<SlruKind, SlruDirectory>();

  constructor(timeline: Timeline, sink: DatadirSink = timeline) {
    this.timeline = timeline;
    this.sink = sink;
  }

  /** dbDirKey of the last database asked about: records touch one database after another. */
  private dbKeySpc = -1;
  private dbKeyDb = -1;
  private dbKeyStr = "";

  private dbKey(spcnode: number, dbnode: number): string {
    if (spcnode !== this.dbKeySpc || dbnode !== this.dbKeyDb) {
      this.dbKeyStr = dbDirKey(spcnode, dbnode);
      this.dbKeySpc = spcnode;
      this.dbKeyDb = dbnode;
    }
    return this.dbKeyStr;
  }

  private clearCache(): void {
    this.cacheLsn = -1;
    this.cachedDbDir = null;
    this.cachedRelDirs.clear();
    this.cachedSizes.clear();
    this.cachedSlruDirs.clear();
  }

  get lsn(): Lsn {
    return this.lsn_;
  }

  get pending(): boolean {
    return this.active;
  }

  begin(lsn: Lsn): void {
    if (this.active) throw new BadStateError(`modification at ${lsnToString(this.lsn_)} still open`);
    if (lsn < this.timeline.lastRecordLsn) {
      throw new InvalidArgumentError(`modification at ${lsnToString(lsn)} below last_record_lsn ${lsnToString(this.timeline.lastRecordLsn)}`);
    }
    this.reset();
    if (this.timeline.lastRecordLsn !== this.cacheLsn) this.clearCache();
    this.lsn_ = lsn;
    this.active = true;
  }

  private reset(): void {
    // Map.clear() allocates a new table even when empty; this runs twice per WAL record.
    this.data.clear();
    this.flushedEarly = 0;
    this.dbDir = null;
    this.dbDirDirty = false;
    if (this.relDirsDirty.size > 0) this.relDirsDirty.clear();
    if (this.sizes.size > 0) this.sizes.clear();
    if (this.slruDirsDirty.size > 0) this.slruDirsDirty.clear();
    this.twophaseDir = null;
    this.twophaseDirty = false;
    this.tablespaceDir = null;
    this.tablespaceDirty = false;
    this.files.clear();
  }

  private check(): void {
    if (!this.active) throw new BadStateError("no modification begun");
  }

  /** Stored state (before this modification). */
  private stored(key: Key): Uint8Array | null {
    const at = this.timeline.lastRecordLsn;
    return this.timeline.getNow(key, at);
  }

  // ---------------------------------------------------------------------------------------
  // Metadata reads (see pending updates)

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

  /** The RelDir of a database, or null when the database does not exist. */
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

  private getSize(key: Key): number | null {
    const p = this.sizes.get(key);
    if (p !== undefined) return p;
    const c = this.cachedSizes.get(key);
    if (c !== undefined) return c;
    const b = this.stored(key);
    const n = b === null ? null : decodeNblocks(b);
    this.cachedSizes.set(key, n);
    return n;
  }

  dbExists(spcnode: number, dbnode: number): boolean {
    this.check();
    return this.getDbDir().has(this.dbKey(spcnode, dbnode));
  }

  relExists(rel: RelTag): boolean {
    this.check();
    checkRelTag(rel);
    const d = this.getRelDir(rel.spcnode, rel.dbnode);
    return d?.has(relDirEntry(rel.relnode, rel.forknum)) === true;
  }

  /** nblocks of an existing relation fork; null when it does not exist. */
  relSize(rel: RelTag): number | null {
    if (!this.relExists(rel)) return null;
    const n = this.getSize(relSizeKey(rel));
    return n ?? 0;
  }

  // ---------------------------------------------------------------------------------------
  // Databases

  /**
   * Create a database's directory in a tablespace (idempotent): DbDir entry and an empty
   * RelDir. A database has one in each tablespace that holds relations of it.
   */
  createDb(spcnode: number, dbnode: number): void {
    this.check();
    if (spcnode === 0) throw new InvalidArgumentError(`database ${dbnode} in tablespace 0`);
    const dir = this.getDbDir();
    const k = this.dbKey(spcnode, dbnode);
    if (dir.has(k)) return;
    dir.set(k, { spcnode, dbnode, relmapExists: false });
    this.dbDirDirty = true;
    this.cachedRelDirs.set(k, new Set());
    this.relDirsDirty.add(k);
  }

  /** Store a database's pg_filenode.map (creating the database entry if needed). */
  putRelmap(spcnode: number, dbnode: number, file: Uint8Array): void {
    this.check();
    if (file.length !== RELMAPPER_FILESIZE) throw new InvalidArgumentError(`relmap file of ${file.length} bytes (expected ${RELMAPPER_FILESIZE})`);
    this.createDb(spcnode, dbnode);
    const e = this.getDbDir().get(this.dbKey(spcnode, dbnode))!;
    if (!e.relmapExists) {
      e.relmapExists = true;
      this.dbDirDirty = true;
    }
    this.files.setTagged(relmapFileKey(spcnode, dbnode), ValueTag.Image, file.slice());
  }

  /** Drop a database and (logically) everything in it. */
  dropDb(spcnode: number, dbnode: number): void {
    this.check();
    const dir = this.getDbDir();
    const k = this.dbKey(spcnode, dbnode);
    if (!dir.delete(k)) return;
    this.dbDirDirty = true;
    this.cachedRelDirs.delete(k);
    this.relDirsDirty.delete(k);
    this.dropPendingIn(dbdirKeyRange(spcnode, dbnode));
  }

  // ---------------------------------------------------------------------------------------
  // Tablespaces

  private getTablespaceDir(): TablespaceDirectory {
    if (this.tablespaceDir === null) {
      const b = this.stored(TABLESPACEDIR_KEY);
      this.tablespaceDir = b === null ? new Map() : decodeTablespaceDirectory(b);
    }
    return this.tablespaceDir;
  }

  /** User tablespaces (OID → LOCATION, "" in place) as this modification sees them. */
  tablespaces(): ReadonlyMap<number, string> {
    this.check();
    return this.getTablespaceDir();
  }

  /** Record a user tablespace (a second CREATE of the same OID replaces its location: redo of a replayed record). */
  createTablespace(spcnode: number, location: string): void {
    this.check();
    if (!(Number.isInteger(spcnode) && spcnode > 0 && spcnode <= 0xffff_ffff) || spcnode === DEFAULTTABLESPACE_OID || spcnode === GLOBALTABLESPACE_OID) {
      throw new InvalidArgumentError(`invalid tablespace OID ${spcnode}`);
    }
    const d = this.getTablespaceDir();
    if (d.get(spcnode) === location) return;
    d.set(spcnode, location);
    this.tablespaceDirty = true;
  }

  /**
   * Forget a user tablespace and every database directory left in it (PostgreSQL drops only
   * an empty tablespace and removes the empty database directories with it).
   */
  dropTablespace(spcnode: number): void {
    this.check();
    const d = this.getTablespaceDir();
    if (d.delete(spcnode)) this.tablespaceDirty = true;
    for (const e of [...this.getDbDir().values()]) if (e.spcnode === spcnode) this.dropDb(e.spcnode, e.dbnode);
  }

  private dropPendingIn(r: { start: Key; end: Key }): void {
    this.data.deleteRange(r.start, r.end);
    this.files.deleteRange(r.start, r.end);
    for (const key of this.sizes.keys()) if (key >= r.start && key < r.end) this.sizes.delete(key);
  }

  // ---------------------------------------------------------------------------------------
  // Relations

  /** Create a relation fork with `nblocks` zero pages (default empty). Creating its database if needed. */
  createRel(rel: RelTag, nblocks = 0): void {
    this.check();
    checkRelTag(rel);
    this.createDb(rel.spcnode, rel.dbnode);
    const k = this.dbKey(rel.spcnode, rel.dbnode);
    const d = this.getRelDir(rel.spcnode, rel.dbnode)!;
    const e = relDirEntry(rel.relnode, rel.forknum);
    if (d.has(e)) throw new InvalidArgumentError(`relation ${relTagToString(rel)} already exists`);
    d.add(e);
    this.relDirsDirty.add(k);
    this.sizes.set(relSizeKey(rel), 0);
    if (nblocks > 0) this.extendRel(rel, nblocks);
  }

  /** Grow to `nblocks` (zero pages); a smaller or equal size is a no-op (smgrextend races). */
  extendRel(rel: RelTag, nblocks: number): void {
    const cur = this.relSize(rel);
    if (cur === null) throw new InvalidArgumentError(`extend of nonexistent relation ${relTagToString(rel)}`);
    if (!(Number.isInteger(nblocks) && nblocks >= 0 && nblocks <= MAX_BLKNO + 1)) throw new InvalidArgumentError(`invalid size ${nblocks}`);
    if (nblocks <= cur) return;
    for (let b = cur; b < nblocks; b++) this.putData(relBlockKey(rel, b), ZERO_PAGE_VALUE);
    this.sizes.set(relSizeKey(rel), nblocks);
  }

  /** Shrink to `nblocks` (blocks beyond read as zero pages until written again). */
  truncateRel(rel: RelTag, nblocks: number): void {
    const cur = this.relSize(rel);
    if (cur === null) throw new InvalidArgumentError(`truncate of nonexistent relation ${relTagToString(rel)}`);
    if (!(Number.isInteger(nblocks) && nblocks >= 0)) throw new InvalidArgumentError(`invalid size ${nblocks}`);
    if (nblocks >= cur) return;
    this.sizes.set(relSizeKey(rel), nblocks);
    // Blocks from nblocks on: the fork's keys below its size key (the last of them).
    this.data.deleteRange(relBlockKey(rel, nblocks), relSizeKey(rel));
  }

  /** Drop a relation fork (no-op if it does not exist). */
  dropRel(rel: RelTag): void {
    this.check();
    checkRelTag(rel);
    const d = this.getRelDir(rel.spcnode, rel.dbnode);
    if (d === null || !d.delete(relDirEntry(rel.relnode, rel.forknum))) return;
    this.relDirsDirty.add(this.dbKey(rel.spcnode, rel.dbnode));
    this.dropPendingIn(relKeyRange(rel));
  }

  /** Relation forks of a database as this modification sees them. */
  listRels(spcnode: number, dbnode: number): RelTag[] {
    this.check();
    const d = this.getRelDir(spcnode, dbnode);
    if (d === null) return [];
    return [...d].sort((a, b) => a - b).map((e) => ({ spcnode, dbnode, relnode: relDirEntryRelnode(e), forknum: relDirEntryFork(e) }));
  }

  /** A full page image of block `blkno` (extending the relation as needed). */
  putRelPageImage(rel: RelTag, blkno: number, page: Uint8Array): void {
    if (page.length !== BLCKSZ) throw new InvalidArgumentError(`page image of ${page.length} bytes`);
    this.putRelValue(rel, blkno, imageValue(page));
  }

  /** Any value (image or WAL record) for block `blkno`; extends the relation (zero-filling the gap). */
  putRelValue(rel: RelTag, blkno: number, value: Value): void {
    this.check();
    if (value.length === 0 || !isValueTag(value[0]!)) throw new InvalidArgumentError("invalid value");
    this.putData(this.relBlockForPut(rel, blkno), value);
  }

  /**
   * A PostgreSQL WAL record for block `blkno` (tag PG_RECORD, or PG_RECORD_INIT when it
   * initializes the page), as putRelValue(rel, blkno, pgRecordValue(willInit, record)) but
   * without building that value: `record` is referenced, not copied, so it must stay
   * unchanged until commit (a decoded WAL record does).
   */
  putRelRecord(rel: RelTag, blkno: number, willInit: boolean, record: Uint8Array): void {
    this.check();
    const key = this.relBlockForPut(rel, blkno);
    this.data.setTagged(key, willInit ? ValueTag.PgRecordInit : ValueTag.PgRecord, record);
    if (this.data.bytes > MAX_PENDING_DATA_BYTES) this.flushData();
  }

  /** The key of block `blkno`, the relation created or extended (zero-filling the gap) to hold it. */
  private relBlockForPut(rel: RelTag, blkno: number): Key {
    const key = relBlockKey(rel, blkno);
    let size = this.relSize(rel);
    if (size === null) {
      this.createRel(rel);
      size = 0;
    }
    if (blkno >= size) {
      for (let b = size; b < blkno; b++) this.putData(relBlockKey(rel, b), ZERO_PAGE_VALUE);
      this.sizes.set(relSizeKey(rel), blkno + 1);
    }
    return key;
  }

  private putData(key: Key, value: Value): void {
    this.data.setValue(key, value);
    if (this.data.bytes > MAX_PENDING_DATA_BYTES) this.flushData();
  }

  /** Put pending data values into the timeline now (bounded memory for big modifications). */
  private flushData(): void {
    this.data.putAll(this.sink, this.lsn_);
    this.flushedEarly += this.data.size;
    this.data.clear();
  }

  // ---------------------------------------------------------------------------------------
  // SLRUs

  private getSlruDir(kind: SlruKind): SlruDirectory {
    let d = this.cachedSlruDirs.get(kind);
    if (d === undefined) {
      const b = this.stored(slruDirKey(kind));
      d = b === null ? new Set<number>() : decodeSlruDirectory(b);
      this.cachedSlruDirs.set(kind, d);
    }
    return d;
  }

  slruSegmentExists(kind: SlruKind, segno: number): boolean {
    this.check();
    return this.getSlruDir(kind).has(segno);
  }

  /** nblocks of an SLRU segment, or null when it does not exist. */
  slruSegmentSize(kind: SlruKind, segno: number): number | null {
    if (!this.slruSegmentExists(kind, segno)) return null;
    return this.getSize(slruSegmentSizeKey(kind, segno)) ?? 0;
  }

  /** A whole SLRU segment file (a multiple of 8192 bytes, at most 32 pages). */
  putSlruSegment(kind: SlruKind, segno: number, file: Uint8Array): void {
    this.check();
    if (file.length % BLCKSZ !== 0 || file.length > SLRU_PAGES_PER_SEGMENT * BLCKSZ) {
      throw new InvalidArgumentError(`SLRU segment of ${file.length} bytes`);
    }
    const nblocks = file.length / BLCKSZ;
    this.createSlruSegment(kind, segno);
    for (let b = 0; b < nblocks; b++) this.putData(slruBlockKey(kind, segno, b), imageValue(file.subarray(b * BLCKSZ, (b + 1) * BLCKSZ)));
    this.sizes.set(slruSegmentSizeKey(kind, segno), nblocks);
  }

  /** Create an empty segment (idempotent: an existing one is truncated to 0 pages). */
  createSlruSegment(kind: SlruKind, segno: number): void {
    this.check();
    const d = this.getSlruDir(kind);
    if (!d.has(segno)) {
      d.add(segno);
      this.slruDirsDirty.add(kind);
    }
    this.dropPendingIn(slruSegmentKeyRange(kind, segno));
    this.sizes.set(slruSegmentSizeKey(kind, segno), 0);
  }

  /** One SLRU page (value: image or record); creates/extends the segment, zero-filling gaps. */
  putSlruValue(kind: SlruKind, segno: number, blkno: number, value: Value): void {
    this.check();
    const key = slruBlockKey(kind, segno, blkno);
    let size = this.slruSegmentSize(kind, segno);
    if (size === null) {
      this.createSlruSegment(kind, segno);
      size = 0;
    }
    if (blkno >= size) {
      for (let b = size; b < blkno; b++) this.putData(slruBlockKey(kind, segno, b), ZERO_PAGE_VALUE);
      this.sizes.set(slruSegmentSizeKey(kind, segno), blkno + 1);
    }
    this.putData(key, value);
  }

  putSlruPageImage(kind: SlruKind, segno: number, blkno: number, page: Uint8Array): void {
    if (page.length !== BLCKSZ) throw new InvalidArgumentError(`SLRU page of ${page.length} bytes`);
    this.putSlruValue(kind, segno, blkno, imageValue(page));
  }

  dropSlruSegment(kind: SlruKind, segno: number): void {
    this.check();
    const d = this.getSlruDir(kind);
    if (!d.delete(segno)) return;
    this.slruDirsDirty.add(kind);
    this.dropPendingIn(slruSegmentKeyRange(kind, segno));
  }

  // ---------------------------------------------------------------------------------------
  // Two-phase, control file, checkpoint

  private getTwophaseDir(): TwoPhaseDirectory {
    if (this.twophaseDir === null) {
      const b = this.stored(TWOPHASEDIR_KEY);
      this.twophaseDir = b === null ? new Set() : decodeTwoPhaseDirectory(b);
    }
    return this.twophaseDir;
  }

  putTwophase(xid: number, file: Uint8Array): void {
    this.check();
    const key = twophaseFileKey(xid);
    const d = this.getTwophaseDir();
    if (!d.has(xid)) {
      d.add(xid);
      this.twophaseDirty = true;
    }
    this.files.setTagged(key, ValueTag.Image, file.slice());
  }

  dropTwophase(xid: number): void {
    this.check();
    const key = twophaseFileKey(xid);
    if (!this.getTwophaseDir().delete(xid)) return;
    this.twophaseDirty = true;
    this.files.delete(key);
  }

  putControlFile(file: Uint8Array): void {
    this.check();
    if (file.length !== PG_CONTROL_FILE_SIZE) throw new InvalidArgumentError(`pg_control of ${file.length} bytes`);
    this.files.setTagged(CONTROLFILE_KEY, ValueTag.Image, file.slice());
  }

  putCheckpoint(checkpoint: Uint8Array): void {
    this.check();
    if (checkpoint.length !== SIZEOF_CHECKPOINT) throw new InvalidArgumentError(`checkpoint of ${checkpoint.length} bytes`);
    // The copy goes to a buffer of this writer: a pending value lives only until commit or abort.
    this.checkpointCopy.set(checkpoint);
    this.files.setTagged(CHECKPOINT_KEY, ValueTag.Image, this.checkpointCopy);
  }

  // ---------------------------------------------------------------------------------------
  // Commit

  /** Put everything at `lsn` and finish the write there. Returns the number of values put. */
  commit(prevRecordLsn: Lsn | null = null): number {
    this.check();
    const tl = this.sink;
    const lsn = this.lsn_;
    let n = this.flushedEarly + this.data.size;
    this.flushData();
    // Metadata is encoded fresh (files were copied when set): put as images without a copy.
    const IMAGE = ValueTag.Image;
    if (this.dbDirDirty) {
      tl.putTagged(DBDIR_KEY, lsn, IMAGE, encodeDbDirectory(this.getDbDir()));
      n++;
    }
    for (const k of this.relDirsDirty) {
      const d = this.cachedRelDirs.get(k);
      assert(d !== undefined, "dirty RelDir not loaded");
      const [spc, db] = k.split("/").map(Number) as [number, number];
      tl.putTagged(relDirKey(spc, db), lsn, IMAGE, encodeRelDirectory(d));
      n++;
    }
    for (const kind of this.slruDirsDirty) {
      tl.putTagged(slruDirKey(kind), lsn, IMAGE, encodeSlruDirectory(this.cachedSlruDirs.get(kind)!));
      n++;
    }
    if (this.twophaseDirty) {
      tl.putTagged(TWOPHASEDIR_KEY, lsn, IMAGE, encodeTwoPhaseDirectory(this.getTwophaseDir()));
      n++;
    }
    if (this.tablespaceDirty) {
      tl.putTagged(TABLESPACEDIR_KEY, lsn, IMAGE, encodeTablespaceDirectory(this.getTablespaceDir()));
      n++;
    }
    for (const [key, nblocks] of this.sizes) {
      tl.putTagged(key, lsn, IMAGE, encodeNblocks(nblocks));
      n++;
    }
    this.files.putAll(tl, lsn);
    n += this.files.size;
    tl.finishWrite(lsn, prevRecordLsn);
    // What this modification wrote is the stored state now.
    if (this.dbDirDirty) this.cachedDbDir = this.dbDir;
    for (const [key, nblocks] of this.sizes) this.cachedSizes.set(key, nblocks);
    this.cacheLsn = lsn;
    this.active = false;
    this.reset();
    return n;
  }

  /** Forget pending metadata. Data already put early stays in the timeline (unreferenced). */
  abort(): void {
    this.active = false;
    this.reset();
    this.clearCache();
  }
}

export { ZERO_PAGE };
