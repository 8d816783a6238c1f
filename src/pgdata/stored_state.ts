/**
 * StoredState: the datadir as last_record_lsn has it, read synchronously, for the few WAL
 * records whose ingest reads more than the writer's caches hold (CREATE DATABASE by file
 * copy, SLRU truncation). Owns nothing: each call reads through timeline.getNow.
 *
 * Invariants: it runs only inside a record's ingest, which the timeline runs under
 * applyRecord: a read that needs data not on local disk aborts the record, the timeline
 * fetches the data and ingests the record again, so no read here ever sees a partial state.
 * Semantics as DatadirSnapshot's (reader.ts): existence from the directories; a block never
 * written reads as an all-zero page.
 *
 * Lock order: none (synchronous).
 */
import type { Timeline } from "../tenant/timeline/index.js";
import type { Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import {
  type DbEntry,
  dbDirKey,
  decodeDbDirectory,
  decodeRelDirectory,
  decodeSlruDirectory,
  relDirEntryFork,
  relDirEntryRelnode,
} from "./directories.js";
import {
  BLCKSZ,
  DBDIR_KEY,
  decodeNblocks,
  type RelTag,
  relBlockKey,
  relDirKey,
  relmapFileKey,
  relSizeKey,
  type SlruKind,
  slruDirKey,
} from "./keys.js";

const ZERO_PAGE = new Uint8Array(BLCKSZ);

export class StoredState {
  private readonly timeline: Timeline;
  private readonly lsn: Lsn;

  constructor(timeline: Timeline) {
    this.timeline = timeline;
    this.lsn = timeline.lastRecordLsn;
  }

  private get(key: Key): Uint8Array | null {
    return this.timeline.getNow(key, this.lsn);
  }

  private dbEntry(spcnode: number, dbnode: number): DbEntry | undefined {
    const b = this.get(DBDIR_KEY);
    return b === null ? undefined : decodeDbDirectory(b).get(dbDirKey(spcnode, dbnode));
  }

  dbExists(spcnode: number, dbnode: number): boolean {
    return this.dbEntry(spcnode, dbnode) !== undefined;
  }

  relmap(spcnode: number, dbnode: number): Uint8Array | null {
    const e = this.dbEntry(spcnode, dbnode);
    if (e === undefined || !e.relmapExists) return null;
    return this.get(relmapFileKey(spcnode, dbnode));
  }

  listRels(spcnode: number, dbnode: number): RelTag[] {
    if (!this.dbExists(spcnode, dbnode)) return [];
    const b = this.get(relDirKey(spcnode, dbnode));
    const d = b === null ? new Set<number>() : decodeRelDirectory(b);
    return [...d].sort((x, y) => x - y).map((e) => ({ spcnode, dbnode, relnode: relDirEntryRelnode(e), forknum: relDirEntryFork(e) }));
  }

  /** nblocks of a relation fork listRels named. */
  relSize(rel: RelTag): number {
    const b = this.get(relSizeKey(rel));
    return b === null ? 0 : decodeNblocks(b);
  }

  /** Block `blkno` (below relSize) of `rel`; never written: an all-zero page. */
  getRelPage(rel: RelTag, blkno: number): Uint8Array {
    const p = this.get(relBlockKey(rel, blkno));
    return p === null ? ZERO_PAGE.slice() : p;
  }

  slruSegments(kind: SlruKind): number[] {
    const b = this.get(slruDirKey(kind));
    if (b === null) return [];
    return [...decodeSlruDirectory(b)].sort((x, y) => x - y);
  }
}
