/**
 * DatadirWriter: one batch of changes to the datadir key map at one LSN (Neon's
 * DatadirModification). `begin(lsn)`, any number of puts, then `commit()`, which hands every
 * value to timeline.put(key, lsn, …) and finishes the write at `lsn`.
 *
 * Three kinds of pending state:
 * - data (relation and SLRU blocks): kept as values (PendingValues; a WAL record for a block,
 *   putRelRecord, as the record itself and its tag: referenced until commit, not copied), not
 *   readable through this writer; a batch above MAX_PENDING_DATA_BYTES is put into the
 *   timeline early (only allowed because nothing reads at `lsn` before finishWrite(lsn)
 *   except in a bootstrap import).
 * - directories and sizes: PendingDirectories (pending_directories.ts), decoded, visible to
 *   later calls of the same modification, over a cache kept across modifications; encoded
 *   at commit.
 * - raw metadata files (relmap, control, checkpoint, two-phase state): copies, put as images.
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
import { BadStateError, InvalidArgumentError } from "../types/errors.js";
import type { Key } from "../types/key.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import { imageValue, isValueTag, type Value, ValueTag } from "../types/value.js";
import { relDirEntry, relDirEntryFork, relDirEntryRelnode } from "./directories.js";
import {
  BLCKSZ,
  CHECKPOINT_KEY,
  CONTROLFILE_KEY,
  checkRelTag,
  DEFAULTTABLESPACE_OID,
  GLOBALTABLESPACE_OID,
  dbdirKeyRange,
  MAX_BLKNO,
  type RelTag,
  relBlockKey,
  relKeyRange,
  relmapFileKey,
  relSizeKey,
  relTagToString,
  SLRU_PAGES_PER_SEGMENT,
  type SlruKind,
  slruBlockKey,
  slruSegmentKeyRange,
  slruSegmentSizeKey,
  twophaseFileKey,
} from "./keys.js";
import { RELMAPPER_FILESIZE } from "../pg/consts.js";
import { PendingDirectories } from "./pending_directories.js";
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
  private readonly dirs: PendingDirectories;
  /** Raw metadata files (relmap, control, checkpoint, two-phase state): copies, put as images. */
  private readonly files = new PendingValues();
  /** putCheckpoint's copy (one per record that moves nextXid: a new buffer each time showed up in profiles). */
  private readonly checkpointCopy = new Uint8Array(SIZEOF_CHECKPOINT);

  constructor(timeline: Timeline, sink: DatadirSink = timeline) {
    this.timeline = timeline;
    this.sink = sink;
    this.dirs = new PendingDirectories(timeline);
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
      throw new InvalidArgumentError(
        `modification at ${lsnToString(lsn)} below last_record_lsn ${lsnToString(this.timeline.lastRecordLsn)}`,
      );
    }
    this.reset();
    this.dirs.dropCacheIfStale();
    this.lsn_ = lsn;
    this.active = true;
  }

  private reset(): void {
    this.data.clear();
    this.flushedEarly = 0;
    this.dirs.reset();
    this.files.clear();
  }

  private check(): void {
    if (!this.active) throw new BadStateError("no modification begun");
  }

  private dropPendingIn(r: { start: Key; end: Key }): void {
    this.data.deleteRange(r.start, r.end);
    this.files.deleteRange(r.start, r.end);
    this.dirs.dropSizesIn(r.start, r.end);
  }

  // ---------------------------------------------------------------------------------------
  // Databases and tablespaces

  dbExists(spcnode: number, dbnode: number): boolean {
    this.check();
    return this.dirs.hasDb(spcnode, dbnode);
  }

  /**
   * Create a database's directory in a tablespace (idempotent): DbDir entry and an empty
   * RelDir. A database has one in each tablespace that holds relations of it.
   */
  createDb(spcnode: number, dbnode: number): void {
    this.check();
    if (spcnode === 0) throw new InvalidArgumentError(`database ${dbnode} in tablespace 0`);
    this.dirs.addDb(spcnode, dbnode);
  }

  /** Store a database's pg_filenode.map (creating the database entry if needed). */
  putRelmap(spcnode: number, dbnode: number, file: Uint8Array): void {
    this.check();
    if (file.length !== RELMAPPER_FILESIZE)
      throw new InvalidArgumentError(`relmap file of ${file.length} bytes (expected ${RELMAPPER_FILESIZE})`);
    this.createDb(spcnode, dbnode);
    this.dirs.setRelmapExists(spcnode, dbnode);
    this.files.setTagged(relmapFileKey(spcnode, dbnode), ValueTag.Image, file.slice());
  }

  /** Drop a database and (logically) everything in it. */
  dropDb(spcnode: number, dbnode: number): void {
    this.check();
    if (!this.dirs.deleteDb(spcnode, dbnode)) return;
    this.dropPendingIn(dbdirKeyRange(spcnode, dbnode));
  }

  /** User tablespaces (OID → LOCATION, "" in place) as this modification sees them. */
  tablespaces(): ReadonlyMap<number, string> {
    this.check();
    return this.dirs.tablespaces();
  }

  /** Record a user tablespace (a second CREATE of the same OID replaces its location: redo of a replayed record). */
  createTablespace(spcnode: number, location: string): void {
    this.check();
    if (
      !(Number.isInteger(spcnode) && spcnode > 0 && spcnode <= 0xffff_ffff) ||
      spcnode === DEFAULTTABLESPACE_OID ||
      spcnode === GLOBALTABLESPACE_OID
    ) {
      throw new InvalidArgumentError(`invalid tablespace OID ${spcnode}`);
    }
    this.dirs.setTablespace(spcnode, location);
  }

  /**
   * Forget a user tablespace and every database directory left in it (PostgreSQL drops only
   * an empty tablespace and removes the empty database directories with it).
   */
  dropTablespace(spcnode: number): void {
    this.check();
    this.dirs.deleteTablespace(spcnode);
    for (const e of this.dirs.dbsIn(spcnode)) this.dropDb(e.spcnode, e.dbnode);
  }

  // ---------------------------------------------------------------------------------------
  // Relations

  relExists(rel: RelTag): boolean {
    this.check();
    checkRelTag(rel);
    const d = this.dirs.relDir(rel.spcnode, rel.dbnode);
    return d?.has(relDirEntry(rel.relnode, rel.forknum)) === true;
  }

  /** nblocks of an existing relation fork; null when it does not exist. */
  relSize(rel: RelTag): number | null {
    if (!this.relExists(rel)) return null;
    const n = this.dirs.size(relSizeKey(rel));
    return n ?? 0;
  }

  /** Create a relation fork with `nblocks` zero pages (default empty). Creating its database if needed. */
  createRel(rel: RelTag, nblocks = 0): void {
    this.check();
    checkRelTag(rel);
    this.createDb(rel.spcnode, rel.dbnode);
    if (!this.dirs.addRel(rel.spcnode, rel.dbnode, relDirEntry(rel.relnode, rel.forknum))) {
      throw new InvalidArgumentError(`relation ${relTagToString(rel)} already exists`);
    }
    this.dirs.setSize(relSizeKey(rel), 0);
    if (nblocks > 0) this.extendRel(rel, nblocks);
  }

  /** Grow to `nblocks` (zero pages); a smaller or equal size is a no-op (smgrextend races). */
  extendRel(rel: RelTag, nblocks: number): void {
    const cur = this.relSize(rel);
    if (cur === null) throw new InvalidArgumentError(`extend of nonexistent relation ${relTagToString(rel)}`);
    if (!(Number.isInteger(nblocks) && nblocks >= 0 && nblocks <= MAX_BLKNO + 1)) throw new InvalidArgumentError(`invalid size ${nblocks}`);
    if (nblocks <= cur) return;
    for (let b = cur; b < nblocks; b++) this.putData(relBlockKey(rel, b), ZERO_PAGE_VALUE);
    this.dirs.setSize(relSizeKey(rel), nblocks);
  }

  /** Shrink to `nblocks` (blocks beyond read as zero pages until written again). */
  truncateRel(rel: RelTag, nblocks: number): void {
    const cur = this.relSize(rel);
    if (cur === null) throw new InvalidArgumentError(`truncate of nonexistent relation ${relTagToString(rel)}`);
    if (!(Number.isInteger(nblocks) && nblocks >= 0)) throw new InvalidArgumentError(`invalid size ${nblocks}`);
    if (nblocks >= cur) return;
    this.dirs.setSize(relSizeKey(rel), nblocks);
    // Blocks from nblocks on: the fork's keys below its size key (the last of them).
    this.data.deleteRange(relBlockKey(rel, nblocks), relSizeKey(rel));
  }

  /** Drop a relation fork (no-op if it does not exist). */
  dropRel(rel: RelTag): void {
    this.check();
    checkRelTag(rel);
    if (!this.dirs.deleteRel(rel.spcnode, rel.dbnode, relDirEntry(rel.relnode, rel.forknum))) return;
    this.dropPendingIn(relKeyRange(rel));
  }

  /** Relation forks of a database as this modification sees them. */
  listRels(spcnode: number, dbnode: number): RelTag[] {
    this.check();
    const d = this.dirs.relDir(spcnode, dbnode);
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
      this.dirs.setSize(relSizeKey(rel), blkno + 1);
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

  slruSegmentExists(kind: SlruKind, segno: number): boolean {
    this.check();
    return this.dirs.hasSlruSegment(kind, segno);
  }

  /** nblocks of an SLRU segment, or null when it does not exist. */
  slruSegmentSize(kind: SlruKind, segno: number): number | null {
    if (!this.slruSegmentExists(kind, segno)) return null;
    return this.dirs.size(slruSegmentSizeKey(kind, segno)) ?? 0;
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
    this.dirs.setSize(slruSegmentSizeKey(kind, segno), nblocks);
  }

  /** Create an empty segment (idempotent: an existing one is truncated to 0 pages). */
  createSlruSegment(kind: SlruKind, segno: number): void {
    this.check();
    this.dirs.addSlruSegment(kind, segno);
    this.dropPendingIn(slruSegmentKeyRange(kind, segno));
    this.dirs.setSize(slruSegmentSizeKey(kind, segno), 0);
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
      this.dirs.setSize(slruSegmentSizeKey(kind, segno), blkno + 1);
    }
    this.putData(key, value);
  }

  putSlruPageImage(kind: SlruKind, segno: number, blkno: number, page: Uint8Array): void {
    if (page.length !== BLCKSZ) throw new InvalidArgumentError(`SLRU page of ${page.length} bytes`);
    this.putSlruValue(kind, segno, blkno, imageValue(page));
  }

  dropSlruSegment(kind: SlruKind, segno: number): void {
    this.check();
    if (!this.dirs.deleteSlruSegment(kind, segno)) return;
    this.dropPendingIn(slruSegmentKeyRange(kind, segno));
  }

  // ---------------------------------------------------------------------------------------
  // Two-phase, control file, checkpoint

  putTwophase(xid: number, file: Uint8Array): void {
    this.check();
    this.dirs.addTwophase(xid);
    this.files.setTagged(twophaseFileKey(xid), ValueTag.Image, file.slice());
  }

  dropTwophase(xid: number): void {
    this.check();
    if (!this.dirs.deleteTwophase(xid)) return;
    this.files.delete(twophaseFileKey(xid));
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
    n += this.dirs.putDirty(tl, lsn);
    this.files.putAll(tl, lsn);
    n += this.files.size;
    tl.finishWrite(lsn, prevRecordLsn);
    // What this modification wrote is the stored state now.
    this.dirs.committed(lsn);
    this.active = false;
    this.reset();
    return n;
  }

  /** Forget pending metadata. Data already put early stays in the timeline (unreferenced). */
  abort(): void {
    this.active = false;
    this.reset();
    this.dirs.clearCache();
  }
}

export { ZERO_PAGE };
