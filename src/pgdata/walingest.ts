/**
 * WalIngest: one decoded PostgreSQL 15 WAL record → the keys and values it changes, written
 * through a DatadirWriter at the record's end LSN (every value of a record carries that LSN;
 * the modification commits with finishWrite(endLsn)).
 *
 * Block references: an image (APPLY or a wal_consistency_checking image: the page after the
 * change) is kept as the WAL carried it, an initializing pageserver record that becomes the
 * page with pd_lsn = end LSN when a read needs it (the checksum is set on the way out); the
 * GiST left
 * child of a split gets the NSN and F_FOLLOW_RIGHT redo would give it. A block without an
 * image is stored as the PostgreSQL record (redo refuses it with a clear error until native
 * heap/btree redo lands). Main data, rmgr by rmgr: SMGR create/truncate, DBASE create/drop
 * (in any tablespace), TBLSPC create/drop (the tablespace directory a base backup needs),
 * XACT commit/abort/prepare (CLOG bits, dropped relations, two-phase files), CLOG and
 * MULTIXACT pages, RELMAP files, commit timestamps (the timeline's LSN ↔ time index), XLOG checkpoints and counters (kept in the CHECKPOINT key so
 * a base backup's pg_control is right at any LSN), and the visibility-map bits that heap
 * records clear without referencing the VM page.
 *
 * Main data is read only through the typed decoders of src/pg/wal/records (one module per
 * rmgr; a malformed record is their CorruptionError naming LSN, rmgr and info): this layer
 * switches on their opcodes and fields and reads no bytes of a record itself.
 *
 * Records arrive in WAL order (asserted: each starts at or after the end of the one before;
 * a record that failed may come again, a record that was ingested never does).
 *
 * A record that can't be handled is an UnsupportedError naming rmgr and info; the caller
 * (the WAL source) shows it as its error and retries from last_record_lsn with a backoff.
 * Nothing is skipped silently.
 */
import { XLOG_GIST_PAGE_SPLIT, XLOG_GIST_PAGE_UPDATE } from "../pg/wal/records/gist.js";
import { crc32c } from "@node-rs/crc32";
import type { Timeline } from "../tenant/timeline/index.js";
import { assert } from "../types/assert.js";
import { UnsupportedError } from "../types/errors.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import type { Value } from "../types/value.js";
import {
  BLCKSZ,
  CLOG_XACTS_PER_PAGE,
  FIRST_MULTIXACT_ID,
  FIRST_NORMAL_TRANSACTION_ID,
  FSM_FORKNUM,
  FSM_SLOTS_PER_PAGE,
  FSM_TREE_DEPTH,
  HEAPBLOCKS_PER_VM_PAGE,
  MAIN_FORKNUM,
  MAX_FORKNUM,
  MULTIXACT_MEMBERS_PER_PAGE,
  MULTIXACT_OFFSETS_PER_PAGE,
  SLRU_PAGES_PER_SEGMENT,
  VISIBILITYMAP_FORKNUM,
} from "../pg/consts.js";
import { type CheckPoint, decodeCheckPoint, encodeCheckPoint, SIZEOF_CHECKPOINT } from "../pg/control.js";
import {
  applyNative,
  CLOG_STATUS_ABORTED,
  CLOG_STATUS_COMMITTED,
  clogSet,
  multiMembers,
  multiOffsets,
  pgImage,
  vmClear,
  vmTruncate,
} from "../pg/redo/native.js";
import type { DecodedBlock, DecodedRecord } from "../pg/wal/record.js";
import { CLOG_ZEROPAGE, type ClogRecord, decodeClogRecord } from "../pg/wal/records/clog.js";
import {
  type DbaseRecord,
  decodeDbaseRecord,
  tablespaceIdAt,
  XLOG_DBASE_CREATE_FILE_COPY,
  XLOG_DBASE_CREATE_WAL_LOG,
  XLOG_DBASE_DROP,
} from "../pg/wal/records/dbase.js";
import {
  decodeHeapDelete,
  decodeHeapInsert,
  decodeHeapLock,
  decodeHeapUpdate,
  XLH_DELETE_ALL_VISIBLE_CLEARED,
  XLH_INSERT_ALL_VISIBLE_CLEARED,
  XLH_LOCK_ALL_FROZEN_CLEARED,
  XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED,
  XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED,
  XLOG_HEAP_DELETE,
  XLOG_HEAP_HOT_UPDATE,
  XLOG_HEAP_INSERT,
  XLOG_HEAP_LOCK,
  XLOG_HEAP_OPMASK,
  XLOG_HEAP_UPDATE,
} from "../pg/wal/records/heap.js";
import { blockById as findBlock, requireBlock } from "../pg/wal/records/record_access.js";
import {
  decodeHeap2LockUpdated,
  decodeHeap2MultiInsert,
  VISIBILITYMAP_ALL_FROZEN,
  VISIBILITYMAP_VALID_BITS,
  XLOG_HEAP2_LOCK_UPDATED,
  XLOG_HEAP2_MULTI_INSERT,
} from "../pg/wal/records/heap2.js";
import {
  decodeMultiXactRecord,
  memberStatusAt,
  memberXidAt,
  type MultiXactRecord,
  XLOG_MULTIXACT_CREATE_ID,
  XLOG_MULTIXACT_TRUNCATE_ID,
  XLOG_MULTIXACT_ZERO_MEM_PAGE,
  XLOG_MULTIXACT_ZERO_OFF_PAGE,
} from "../pg/wal/records/multixact.js";
import { decodeRelmapRecord } from "../pg/wal/records/relmap.js";
import { decodeTblspcRecord, XLOG_TBLSPC_CREATE } from "../pg/wal/records/tblspc.js";
import {
  decodeSmgrRecord,
  SMGR_TRUNCATE_FSM,
  SMGR_TRUNCATE_HEAP,
  SMGR_TRUNCATE_VM,
  type SmgrRecord,
  XLOG_SMGR_CREATE,
} from "../pg/wal/records/smgr.js";
import {
  decodeXactRecord,
  relFileNodeAt,
  subxactAt,
  type XactRecord,
  XLOG_XACT_ABORT_PREPARED,
  XLOG_XACT_ASSIGNMENT,
  XLOG_XACT_COMMIT,
  XLOG_XACT_COMMIT_PREPARED,
  XLOG_XACT_INVALIDATIONS,
  XLOG_XACT_PREPARE,
} from "../pg/wal/records/xact.js";
import {
  decodeXlogRecord,
  XLOG_CHECKPOINT_ONLINE,
  XLOG_CHECKPOINT_SHUTDOWN,
  XLOG_NEXTOID,
  type XlogRecord,
} from "../pg/wal/records/xlog.js";
import {
  describeRecordKind,
  RM_CLOG_ID,
  RM_DBASE_ID,
  RM_GIST_ID,
  RM_HEAP2_ID,
  RM_HEAP_ID,
  RM_MULTIXACT_ID,
  RM_RELMAP_ID,
  RM_SMGR_ID,
  RM_TBLSPC_ID,
  RM_XACT_ID,
  RM_XLOG_ID,
  XLR_RMGR_INFO_MASK,
} from "../pg/wal/rmgr_ids.js";
import { CHECKPOINT_KEY, GLOBALTABLESPACE_OID, type RelTag, relTag, SlruKind } from "./keys.js";
import { StoredState } from "./stored_state.js";
import { DatadirWriter } from "./writer.js";

const ZERO_PAGE = new Uint8Array(BLCKSZ);

/** xid a "follows or equals" xid b in PostgreSQL's modulo-2^32 order (normal xids). */
function xidFollowsOrEquals(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** Physical FSM block of the bottom-level page holding heap block `heapBlk` (fsm_logical_to_physical). */
function fsmPhysicalPage(logicalPage: number): number {
  let leafno = logicalPage;
  let pages = 0;
  for (let l = 0; l < FSM_TREE_DEPTH; l++) {
    pages += leafno + 1;
    leafno = Math.floor(leafno / FSM_SLOTS_PER_PAGE);
  }
  return pages - 1;
}

export class WalIngest {
  private readonly timeline: Timeline;
  private readonly w: DatadirWriter;
  private checkpoint: CheckPoint;
  private checkpointDirty = false;
  private readonly checkpointScratch = new Uint8Array(SIZEOF_CHECKPOINT);
  /** Records ingested and values written, for metrics. */
  records = 0;
  /**
   * The end LSN of the last record ingested (null before the first): WAL order means the next
   * record starts at or after it. A record replayed twice or out of order would otherwise pass
   * the writer's check (it refuses only an end LSN below last_record_lsn).
   */
  private prevEndLsn: Lsn | null = null;
  /** The xact_time (µs since 2000) of the commit or abort record being ingested, NaN for other records: noted once the record is written. */
  private commitTime_us = Number.NaN;

  /** An ingest of `timeline` from its last_record_lsn; `cp`: its stored checkpoint (read now when not given: see open). */
  constructor(timeline: Timeline, cp: Uint8Array | null = timeline.getNow(CHECKPOINT_KEY, timeline.lastRecordLsn)) {
    this.timeline = timeline;
    this.w = new DatadirWriter(timeline);
    if (cp === null) throw new UnsupportedError(`timeline ${timeline.timelineId} has no checkpoint: import a base backup first`);
    this.checkpoint = decodeCheckPoint(cp);
  }

  /** An ingest of `timeline`, its checkpoint read through readAt (fetched first if it is not on local disk). */
  static async open(timeline: Timeline): Promise<WalIngest> {
    return new WalIngest(timeline, await timeline.readAt(CHECKPOINT_KEY, timeline.lastRecordLsn));
  }

  ingest(rec: DecodedRecord): void {
    // Messages built only on failure: this runs per record.
    if (!(rec.endLsn > rec.lsn)) assert(false, `record at ${lsnToString(rec.lsn)} ends at ${lsnToString(rec.endLsn)}`);
    if (this.prevEndLsn !== null && rec.lsn < this.prevEndLsn) {
      assert(false, `records out of LSN order: one at ${lsnToString(rec.lsn)} after one that ended at ${lsnToString(this.prevEndLsn)}`);
    }
    const w = this.w;
    w.begin(rec.endLsn);
    try {
      this.ingestBlocks(rec);
      this.ingestMainData(rec);
      this.trackXid(rec.xid);
      if (this.checkpointDirty) {
        // Encoded into scratch space: putCheckpoint keeps a copy.
        w.putCheckpoint(encodeCheckPoint(this.checkpoint, this.checkpointScratch));
        this.checkpointDirty = false;
      }
      w.commit(rec.lsn);
      this.prevEndLsn = rec.endLsn;
      this.records++;
      if (!Number.isNaN(this.commitTime_us)) this.timeline.noteCommit(rec.endLsn, this.commitTime_us);
    } catch (e) {
      w.abort();
      throw e;
    } finally {
      this.commitTime_us = Number.NaN;
    }
  }

  private ingestBlocks(rec: DecodedRecord): void {
    for (const b of rec.blocks) {
      const rel = relTag(b.rnode.spcNode, b.rnode.dbNode, b.rnode.relNode, b.forkNum);
      if (b.hasImage) {
        // Kept as the WAL carried it (compressed, hole removed): decompressing, pd_lsn and the
        // GiST fix-up happen when a read needs this version, which most never do.
        this.w.putRelValue(rel, b.blkno, pgImage(b.image!, rec.endLsn, this.isGistLeftChild(rec, b)));
      } else {
        // The record itself, not copied: every block reference of it stores the same bytes.
        this.w.putRelRecord(rel, b.blkno, b.willInit, rec.record);
      }
    }
  }

  /**
   * The left child of a GiST split gets NSN = the record's LSN and F_FOLLOW_RIGHT cleared
   * after XLogInsert, so its image (a full-page write as much as a consistency image) still
   * shows the old state; redo (gistRedoClearFollowRight) sets them even on a restored image.
   * Block 0 in PAGE_SPLIT, block 1 in PAGE_UPDATE.
   */
  private isGistLeftChild(rec: DecodedRecord, b: DecodedBlock): boolean {
    if (rec.rmid !== RM_GIST_ID) return false;
    const op = rec.info & XLR_RMGR_INFO_MASK;
    const leftChildId = op === XLOG_GIST_PAGE_SPLIT ? 0 : op === XLOG_GIST_PAGE_UPDATE ? 1 : -1;
    return b.id === leftChildId;
  }

  private unsupported(rec: DecodedRecord, why: string): never {
    throw new UnsupportedError(
      `cannot ingest ${describeRecordKind(rec.rmid, rec.info)} (rmgr ${rec.rmid}, info 0x${rec.info.toString(16)}) at ${lsnToString(rec.lsn)}: ${why}`,
    );
  }

  private ingestMainData(rec: DecodedRecord): void {
    switch (rec.rmid) {
      case RM_XLOG_ID:
        this.ingestXlog(decodeXlogRecord(rec));
        return;
      case RM_XACT_ID:
        this.ingestXact(rec, decodeXactRecord(rec));
        return;
      case RM_SMGR_ID:
        this.ingestSmgr(decodeSmgrRecord(rec));
        return;
      case RM_CLOG_ID:
        this.ingestClog(decodeClogRecord(rec));
        return;
      case RM_DBASE_ID:
        this.ingestDbase(rec, decodeDbaseRecord(rec));
        return;
      case RM_TBLSPC_ID: {
        // CREATE makes pg_tblspc/<oid>/PG_15_…; the databases' directories in it come with
        // their first relation (SMGR_CREATE) or a CREATE DATABASE. DROP is of an empty one.
        const r = decodeTblspcRecord(rec);
        if (r.op === XLOG_TBLSPC_CREATE) this.w.createTablespace(r.tsId, r.path);
        else this.w.dropTablespace(r.tsId);
        return;
      }
      case RM_MULTIXACT_ID:
        this.ingestMultixact(decodeMultiXactRecord(rec));
        return;
      case RM_RELMAP_ID: {
        const r = decodeRelmapRecord(rec);
        this.w.putRelmap(r.tsId, r.dbId, r.data);
        return;
      }
      case RM_HEAP_ID:
      case RM_HEAP2_ID:
        this.ingestHeapVm(rec);
        return;
      default:
        // Standby, Btree, Hash, Gin, Gist, Sequence, SPGist, BRIN, CommitTs, ReplicationOrigin,
        // Generic, LogicalMessage: their storage effects are all in block references.
        return;
    }
  }

  // -------------------------------------------------------------------------------------
  // XLOG: checkpoint and counters

  private ingestXlog(r: XlogRecord): void {
    switch (r.op) {
      case XLOG_CHECKPOINT_SHUTDOWN:
      case XLOG_CHECKPOINT_ONLINE: {
        const cp = this.checkpoint;
        const next: CheckPoint = { ...r.checkpoint };
        if (r.op === XLOG_CHECKPOINT_ONLINE) {
          // An online checkpoint's counters were read before it started: treat them as minimums.
          next.nextOid = cp.nextOid;
          if (!xidFollowsOrEquals(next.nextXid, cp.nextXid)) {
            next.nextXid = cp.nextXid;
            next.nextXidEpoch = cp.nextXidEpoch;
          }
          if (!xidFollowsOrEquals(next.nextMulti, cp.nextMulti)) next.nextMulti = cp.nextMulti;
          if (!xidFollowsOrEquals(next.nextMultiOffset, cp.nextMultiOffset)) next.nextMultiOffset = cp.nextMultiOffset;
        }
        this.checkpoint = next;
        this.checkpointDirty = true;
        return;
      }
      case XLOG_NEXTOID:
        this.checkpoint.nextOid = r.nextOid;
        this.checkpointDirty = true;
        return;
      default:
        // SWITCH, NOOP, BACKUP_END, PARAMETER_CHANGE, RESTORE_POINT, FPW_CHANGE,
        // END_OF_RECOVERY, OVERWRITE_CONTRECORD change no stored state; FPI and FPI_FOR_HINT
        // are their block references.
        return;
    }
  }

  /** nextXid must pass every xid seen: xids are assigned between checkpoints. */
  private trackXid(xid: number): void {
    if (xid < FIRST_NORMAL_TRANSACTION_ID) return;
    const cp = this.checkpoint;
    if (xidFollowsOrEquals(xid, cp.nextXid)) {
      let next = (xid + 1) >>> 0;
      if (next < FIRST_NORMAL_TRANSACTION_ID) {
        next = FIRST_NORMAL_TRANSACTION_ID;
        cp.nextXidEpoch++;
      }
      cp.nextXid = next;
      this.checkpointDirty = true;
    }
  }

  // -------------------------------------------------------------------------------------
  // XACT

  private ingestXact(rec: DecodedRecord, r: XactRecord): void {
    switch (r.op) {
      case XLOG_XACT_ASSIGNMENT:
      case XLOG_XACT_INVALIDATIONS:
        return;
      case XLOG_XACT_PREPARE: {
        // The main data is the two-phase state file; pg_twophase adds a CRC32C.
        const d = r.stateFile;
        const file = new Uint8Array(d.length + 4);
        file.set(d, 0);
        new DataView(file.buffer).setUint32(d.length, crc32c(d), true);
        this.w.putTwophase(rec.xid, file);
        return;
      }
      default: {
        const commit = r.op === XLOG_XACT_COMMIT || r.op === XLOG_XACT_COMMIT_PREPARED;
        const prepared = r.op === XLOG_XACT_COMMIT_PREPARED || r.op === XLOG_XACT_ABORT_PREPARED;
        // get_lsn_by_timestamp's source of truth (Timeline.lsnForTime): all four records, as
        // PostgreSQL's recovery checks each against recovery_target_time.
        this.commitTime_us = r.xactTime;
        // The decoder guarantees a prepared transaction's record carries its xid.
        const xid = prepared ? r.twophaseXid : rec.xid;
        const xids = [xid];
        for (let i = 0; i < r.nsubxacts; i++) xids.push(subxactAt(r.subxacts, i));
        this.setClog(xids, commit ? CLOG_STATUS_COMMITTED : CLOG_STATUS_ABORTED);
        for (let i = 0; i < r.nrels; i++) {
          const n = relFileNodeAt(r.rels, i);
          for (let fork = MAIN_FORKNUM; fork <= MAX_FORKNUM; fork++) this.w.dropRel(relTag(n.spcNode, n.dbNode, n.relNode, fork));
        }
        if (prepared) this.w.dropTwophase(xid);
        return;
      }
    }
  }

  /** Set CLOG status bits: one pageserver record per CLOG page touched. */
  private setClog(xids: number[], status: number): void {
    // Almost always one page (a transaction without subtransactions): no grouping needed.
    const first = Math.floor(xids[0]! / CLOG_XACTS_PER_PAGE);
    let onePage = true;
    for (let i = 1; i < xids.length && onePage; i++) onePage = Math.floor(xids[i]! / CLOG_XACTS_PER_PAGE) === first;
    if (onePage) {
      this.putSlruNative(SlruKind.Clog, first, clogSet(status, xids));
      return;
    }
    const byPage = new Map<number, number[]>();
    for (const x of xids) {
      const p = Math.floor(x / CLOG_XACTS_PER_PAGE);
      let l = byPage.get(p);
      if (l === undefined) {
        l = [];
        byPage.set(p, l);
      }
      l.push(x);
    }
    for (const [pageno, list] of byPage) this.putSlruNative(SlruKind.Clog, pageno, clogSet(status, list));
  }

  /**
   * A pageserver record on an SLRU page. If the page does not exist yet, the record is applied
   * to a zero page here and stored as an image: one (key, lsn) holds one value.
   */
  private putSlruNative(kind: SlruKind, pageno: number, v: Value): void {
    const segno = Math.floor(pageno / SLRU_PAGES_PER_SEGMENT);
    const blkno = pageno % SLRU_PAGES_PER_SEGMENT;
    const size = this.w.slruSegmentSize(kind, segno);
    if (size === null || blkno >= size) {
      const page = new Uint8Array(BLCKSZ);
      applyNative(v, page, segno, blkno);
      this.w.putSlruPageImage(kind, segno, blkno, page);
    } else {
      this.w.putSlruValue(kind, segno, blkno, v);
    }
  }

  /** A new SLRU page, all zeros. */
  private zeroSlruPage(kind: SlruKind, pageno: number): void {
    this.w.putSlruPageImage(kind, Math.floor(pageno / SLRU_PAGES_PER_SEGMENT), pageno % SLRU_PAGES_PER_SEGMENT, ZERO_PAGE);
  }

  // -------------------------------------------------------------------------------------
  // SMGR

  private ingestSmgr(r: SmgrRecord): void {
    const { spcNode, dbNode, relNode } = r.rnode;
    if (r.op === XLOG_SMGR_CREATE) {
      const rel = relTag(spcNode, dbNode, relNode, r.forkNum);
      if (this.w.relSize(rel) === null) this.w.createRel(rel);
      return;
    }
    const blkno = r.blkno;
    if (r.flags & SMGR_TRUNCATE_HEAP) {
      const main = relTag(spcNode, dbNode, relNode, MAIN_FORKNUM);
      if (this.w.relSize(main) !== null) this.w.truncateRel(main, blkno);
    }
    if (r.flags & SMGR_TRUNCATE_FSM) {
      const fsm = relTag(spcNode, dbNode, relNode, FSM_FORKNUM);
      const size = this.w.relSize(fsm);
      if (size !== null) {
        // FreeSpaceMapPrepareTruncateRel: the bottom page holding the cut is cleared (whole,
        // not slot by slot: the FSM is only a hint) and the fork is cut after it.
        let phys = fsmPhysicalPage(Math.floor(blkno / FSM_SLOTS_PER_PAGE));
        if (blkno % FSM_SLOTS_PER_PAGE !== 0) {
          if (phys < size) this.w.putRelPageImage(fsm, phys, ZERO_PAGE);
          phys++;
        }
        if (phys < size) this.w.truncateRel(fsm, phys);
      }
    }
    if (r.flags & SMGR_TRUNCATE_VM) {
      const vm = relTag(spcNode, dbNode, relNode, VISIBILITYMAP_FORKNUM);
      const size = this.w.relSize(vm);
      if (size !== null) {
        let vmBlocks = Math.floor(blkno / HEAPBLOCKS_PER_VM_PAGE);
        if (blkno % HEAPBLOCKS_PER_VM_PAGE !== 0) {
          if (vmBlocks < size) this.w.putRelValue(vm, vmBlocks, vmTruncate(blkno));
          vmBlocks++;
        }
        if (vmBlocks < size) this.w.truncateRel(vm, vmBlocks);
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // DBASE

  private ingestDbase(rec: DecodedRecord, r: DbaseRecord): void {
    switch (r.op) {
      case XLOG_DBASE_CREATE_WAL_LOG:
        // The directory and PG_VERSION; relations follow as SMGR_CREATE + FPIs.
        this.w.createDb(r.tablespaceId, r.dbId);
        return;
      case XLOG_DBASE_CREATE_FILE_COPY: {
        // Copy every relation of the source database as of now.
        const { dbId: db, tablespaceId: spc, srcDbId: srcDb, srcTablespaceId: srcSpc } = r;
        const snap = new StoredState(this.timeline);
        if (!snap.dbExists(srcSpc, srcDb)) this.unsupported(rec, `source database ${srcSpc}/${srcDb} does not exist`);
        this.w.createDb(spc, db);
        const relmap = snap.relmap(srcSpc, srcDb);
        if (relmap !== null) this.w.putRelmap(spc, db, relmap);
        for (const src of snap.listRels(srcSpc, srcDb)) {
          const dst: RelTag = relTag(spc, db, src.relnode, src.forknum);
          const n = snap.relSize(src);
          if (this.w.relSize(dst) === null) this.w.createRel(dst);
          for (let b = 0; b < n; b++) this.w.putRelPageImage(dst, b, snap.getRelPage(src, b));
        }
        return;
      }
      case XLOG_DBASE_DROP:
        for (let i = 0; i < r.ntablespaces; i++) this.w.dropDb(tablespaceIdAt(r, i), r.dbId);
        return;
    }
  }

  // -------------------------------------------------------------------------------------
  // CLOG and MULTIXACT pages

  private ingestClog(r: ClogRecord): void {
    if (r.op === CLOG_ZEROPAGE) this.zeroSlruPage(SlruKind.Clog, r.pageno);
    else this.truncateSlru(SlruKind.Clog, Math.floor(r.pageno / SLRU_PAGES_PER_SEGMENT));
  }

  /** Drop the segments before `keepFrom` (wraparound of segment numbers is not handled yet). */
  private truncateSlru(kind: SlruKind, keepFrom: number): void {
    const snap = new StoredState(this.timeline);
    for (const seg of snap.slruSegments(kind)) if (seg < keepFrom) this.w.dropSlruSegment(kind, seg);
  }

  private ingestMultixact(r: MultiXactRecord): void {
    switch (r.op) {
      case XLOG_MULTIXACT_ZERO_OFF_PAGE:
        this.zeroSlruPage(SlruKind.MultiXactOffsets, r.pageno);
        return;
      case XLOG_MULTIXACT_ZERO_MEM_PAGE:
        this.zeroSlruPage(SlruKind.MultiXactMembers, r.pageno);
        return;
      case XLOG_MULTIXACT_CREATE_ID: {
        const { mid, moff, nmembers: n } = r;
        // offsets[mid] = moff; 15.18 also writes offsets[mid+1] = moff + n (1 if that wraps to 0)
        // when mid+1 is on the same page; startup writes it otherwise (TrimMultiXact).
        const entries = [{ mxid: mid, offset: moff }];
        const nextMid = (mid + 1) >>> 0;
        let nextOff = (moff + n) >>> 0;
        if (nextOff === 0) nextOff = 1;
        const page = Math.floor(mid / MULTIXACT_OFFSETS_PER_PAGE);
        if (Math.floor(nextMid / MULTIXACT_OFFSETS_PER_PAGE) === page) entries.push({ mxid: nextMid, offset: nextOff });
        this.putSlruNative(SlruKind.MultiXactOffsets, page, multiOffsets(entries));
        const byPage = new Map<number, { offset: number; xid: number; status: number }[]>();
        for (let i = 0; i < n; i++) {
          const o = (moff + i) >>> 0;
          const p = Math.floor(o / MULTIXACT_MEMBERS_PER_PAGE);
          let l = byPage.get(p);
          if (l === undefined) {
            l = [];
            byPage.set(p, l);
          }
          const xid = memberXidAt(r, i);
          l.push({ offset: o, xid, status: memberStatusAt(r, i) });
          this.trackXid(xid);
        }
        for (const [p, l] of byPage) this.putSlruNative(SlruKind.MultiXactMembers, p, multiMembers(l));
        const cp = this.checkpoint;
        if (xidFollowsOrEquals(nextMid, cp.nextMulti)) {
          cp.nextMulti = nextMid === 0 ? FIRST_MULTIXACT_ID : nextMid;
          this.checkpointDirty = true;
        }
        if (xidFollowsOrEquals((moff + n) >>> 0, cp.nextMultiOffset)) {
          cp.nextMultiOffset = (moff + n) >>> 0;
          this.checkpointDirty = true;
        }
        return;
      }
      case XLOG_MULTIXACT_TRUNCATE_ID:
        this.truncateSlru(SlruKind.MultiXactOffsets, Math.floor(r.endTruncOff / MULTIXACT_OFFSETS_PER_PAGE / SLRU_PAGES_PER_SEGMENT));
        this.truncateSlru(SlruKind.MultiXactMembers, Math.floor(r.endTruncMemb / MULTIXACT_MEMBERS_PER_PAGE / SLRU_PAGES_PER_SEGMENT));
        this.checkpoint.oldestMulti = r.endTruncOff;
        this.checkpoint.oldestMultiDb = r.oldestMultiDb;
        this.checkpointDirty = true;
        return;
    }
  }

  // -------------------------------------------------------------------------------------
  // Visibility-map bits heap records clear without referencing the VM page

  private ingestHeapVm(rec: DecodedRecord): void {
    const op = rec.info & XLOG_HEAP_OPMASK;
    if (rec.rmid === RM_HEAP_ID) {
      switch (op) {
        case XLOG_HEAP_INSERT: {
          const x = decodeHeapInsert(rec);
          const b0 = requireBlock(rec, 0);
          if (x.flags & XLH_INSERT_ALL_VISIBLE_CLEARED) this.clearVm(b0, b0.blkno, null, VISIBILITYMAP_VALID_BITS);
          return;
        }
        case XLOG_HEAP_DELETE: {
          const x = decodeHeapDelete(rec);
          const b0 = requireBlock(rec, 0);
          if (x.flags & XLH_DELETE_ALL_VISIBLE_CLEARED) this.clearVm(b0, b0.blkno, null, VISIBILITYMAP_VALID_BITS);
          return;
        }
        case XLOG_HEAP_UPDATE:
        case XLOG_HEAP_HOT_UPDATE: {
          const x = decodeHeapUpdate(rec);
          const b0 = requireBlock(rec, 0);
          const b1 = findBlock(rec, 1);
          const oldBlk = b1 !== undefined ? b1.blkno : b0.blkno;
          const oldClr = (x.flags & XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED) !== 0;
          const newClr = (x.flags & XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED) !== 0;
          if (oldClr && newClr && Math.floor(oldBlk / HEAPBLOCKS_PER_VM_PAGE) === Math.floor(b0.blkno / HEAPBLOCKS_PER_VM_PAGE)) {
            this.clearVm(b0, oldBlk, b0.blkno, VISIBILITYMAP_VALID_BITS);
          } else {
            if (oldClr) this.clearVm(b0, oldBlk, null, VISIBILITYMAP_VALID_BITS);
            if (newClr) this.clearVm(b0, b0.blkno, null, VISIBILITYMAP_VALID_BITS);
          }
          return;
        }
        case XLOG_HEAP_LOCK: {
          // A lock clears only ALL_FROZEN.
          const x = decodeHeapLock(rec);
          const b0 = requireBlock(rec, 0);
          if (x.flags & XLH_LOCK_ALL_FROZEN_CLEARED) this.clearVm(b0, b0.blkno, null, VISIBILITYMAP_ALL_FROZEN);
          return;
        }
        default:
          // TRUNCATE, CONFIRM, INPLACE leave the visibility map alone.
          return;
      }
    }
    if (op === XLOG_HEAP2_MULTI_INSERT) {
      const x = decodeHeap2MultiInsert(rec);
      const b0 = requireBlock(rec, 0);
      if (x.flags & XLH_INSERT_ALL_VISIBLE_CLEARED) this.clearVm(b0, b0.blkno, null, VISIBILITYMAP_VALID_BITS);
    } else if (op === XLOG_HEAP2_LOCK_UPDATED) {
      const x = decodeHeap2LockUpdated(rec);
      const b0 = requireBlock(rec, 0);
      if (x.flags & XLH_LOCK_ALL_FROZEN_CLEARED) this.clearVm(b0, b0.blkno, null, VISIBILITYMAP_ALL_FROZEN);
    }
    // PRUNE, VACUUM, FREEZE_PAGE: no VM change; VISIBLE: its VM block is a block reference.
  }

  private clearVm(heap: DecodedBlock, blkA: number, blkB: number | null, flags: number): void {
    const vm = relTag(heap.rnode.spcNode, heap.rnode.dbNode, heap.rnode.relNode, VISIBILITYMAP_FORKNUM);
    const size = this.w.relSize(vm);
    const vmBlk = Math.floor(blkA / HEAPBLOCKS_PER_VM_PAGE);
    // No VM fork or page yet: no bits are set, nothing to clear.
    if (size === null || vmBlk >= size) return;
    this.w.putRelValue(vm, vmBlk, vmClear(blkA, blkB, flags));
  }

  /** The checkpoint as ingest keeps it (tests, basebackup checks). */
  currentCheckpoint(): Readonly<CheckPoint> {
    return this.checkpoint;
  }
}

export { GLOBALTABLESPACE_OID };
export type { Lsn };
