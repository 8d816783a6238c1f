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
 * heap/btree redo lands). Main data, rmgr by rmgr: SMGR create/truncate, DBASE create/drop,
 * XACT commit/abort/prepare (CLOG bits, dropped relations, two-phase files), CLOG and
 * MULTIXACT pages, RELMAP files, XLOG checkpoints and counters (kept in the CHECKPOINT key so
 * a base backup's pg_control is right at any LSN), and the visibility-map bits that heap
 * records clear without referencing the VM page.
 *
 * A record that can't be handled is an UnsupportedError naming rmgr and info; the caller
 * stops ingest on that timeline. Nothing is skipped silently.
 */
import { crc32c } from "@node-rs/crc32";
import type { Timeline } from "../tenant/timeline.js";
import { UnsupportedError } from "../types/errors.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import { pgRecordValue, type Value } from "../types/value.js";
import { type CheckPoint, decodeCheckPoint, encodeCheckPoint } from "../pg/control.js";
import { CHECKPOINT_KEY, GLOBALTABLESPACE_OID, relTag, SlruKind, VISIBILITYMAP_FORKNUM, type RelTag } from "./keys.js";
import { DatadirSnapshot } from "./reader.js";
import { DatadirWriter } from "./writer.js";
import { BLCKSZ } from "../pg/page.js";
import {
  applyNative,
  CLOG_STATUS_ABORTED,
  CLOG_STATUS_COMMITTED,
  CLOG_XACTS_PER_PAGE,
  clogSet,
  HEAPBLOCKS_PER_VM_PAGE,
  MULTIXACT_MEMBERS_PER_PAGE,
  MULTIXACT_OFFSETS_PER_PAGE,
  multiMembers,
  multiOffsets,
  pgImage,
  vmClear,
  vmTruncate,
} from "../pg/redo/native.js";
import type { DecodedBlock, DecodedRecord } from "../pg/wal/record.js";
import {
  decodeHeapDelete,
  decodeHeapInsert,
  decodeHeapLock,
  decodeHeapUpdate,
  findBlock,
  requireBlock,
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
import {
  decodeHeap2LockUpdated,
  decodeHeap2MultiInsert,
  VISIBILITYMAP_ALL_FROZEN,
  VISIBILITYMAP_VALID_BITS,
  XLOG_HEAP2_LOCK_UPDATED,
  XLOG_HEAP2_MULTI_INSERT,
} from "../pg/wal/records/heap2.js";
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
  XLOG_CHECKPOINT_ONLINE,
  XLOG_CHECKPOINT_SHUTDOWN,
  XLOG_NEXTOID,
} from "../pg/wal/rmgr.js";

const SLRU_PAGES_PER_SEGMENT = 32;
const ZERO_PAGE = new Uint8Array(BLCKSZ);
const FSM_SLOTS_PER_PAGE = 4069;
const FSM_TREE_DEPTH = 3;
const FIRST_NORMAL_XID = 3;

// GiST (gistxlog.h) and its page opaque (gist.h).
const XLOG_GIST_PAGE_UPDATE = 0x00;
const XLOG_GIST_PAGE_SPLIT = 0x30;

function u32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}
function i32(b: Uint8Array, off: number): number {
  return b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24);
}

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
  /** Records ingested and values written, for metrics. */
  records = 0;

  constructor(timeline: Timeline) {
    this.timeline = timeline;
    this.w = new DatadirWriter(timeline);
    const cp = timeline.getNow(CHECKPOINT_KEY, timeline.lastRecordLsn);
    if (cp === null) throw new UnsupportedError(`timeline ${timeline.timelineId} has no checkpoint: import a base backup first`);
    this.checkpoint = decodeCheckPoint(cp);
  }

  ingest(rec: DecodedRecord): void {
    const w = this.w;
    w.begin(rec.endLsn);
    try {
      this.ingestBlocks(rec);
      this.ingestMainData(rec);
      this.trackXid(rec.xid);
      if (this.checkpointDirty) {
        w.putCheckpoint(encodeCheckPoint(this.checkpoint));
        this.checkpointDirty = false;
      }
      w.commit(rec.lsn);
      this.records++;
    } catch (e) {
      w.abort();
      throw e;
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
        this.w.putRelValue(rel, b.blkno, pgRecordValue(b.willInit, rec.record));
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
    const op = rec.info & 0xf0;
    const leftChildId = op === XLOG_GIST_PAGE_SPLIT ? 0 : op === XLOG_GIST_PAGE_UPDATE ? 1 : -1;
    return b.id === leftChildId;
  }

  private unsupported(rec: DecodedRecord, why: string): never {
    throw new UnsupportedError(
      `cannot ingest ${describeRecordKind(rec.rmid, rec.info)} (rmgr ${rec.rmid}, info 0x${rec.info.toString(16)}) at ${lsnToString(rec.lsn)}: ${why}`,
    );
  }

  private ingestMainData(rec: DecodedRecord): void {
    const d = rec.mainData;
    switch (rec.rmid) {
      case RM_XLOG_ID:
        this.ingestXlog(rec, d);
        return;
      case RM_XACT_ID:
        this.ingestXact(rec, d);
        return;
      case RM_SMGR_ID:
        this.ingestSmgr(rec, d);
        return;
      case RM_CLOG_ID:
        this.ingestClog(rec, d);
        return;
      case RM_DBASE_ID:
        this.ingestDbase(rec, d);
        return;
      case RM_TBLSPC_ID:
        this.unsupported(rec, "tablespaces other than pg_default and pg_global are not supported");
        return;
      case RM_MULTIXACT_ID:
        this.ingestMultixact(rec, d);
        return;
      case RM_RELMAP_ID: {
        const dbid = u32(d, 0);
        const tsid = u32(d, 4);
        const nbytes = i32(d, 8);
        if (nbytes !== 512 || d.length < 12 + 512) this.unsupported(rec, `relmap update of ${nbytes} bytes`);
        this.w.putRelmap(tsid, dbid, d.subarray(12, 12 + 512));
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

  private ingestXlog(rec: DecodedRecord, d: Uint8Array): void {
    const op = rec.info & 0xf0;
    if (op === XLOG_CHECKPOINT_SHUTDOWN || op === XLOG_CHECKPOINT_ONLINE) {
      const r = decodeCheckPoint(d);
      const cp = this.checkpoint;
      const next: CheckPoint = { ...r };
      if (op === XLOG_CHECKPOINT_ONLINE) {
        // An online checkpoint's counters were read before it started: treat them as minimums.
        next.nextOid = cp.nextOid;
        if (!xidFollowsOrEquals(r.nextXid, cp.nextXid)) {
          next.nextXid = cp.nextXid;
          next.nextXidEpoch = cp.nextXidEpoch;
        }
        if (!xidFollowsOrEquals(r.nextMulti, cp.nextMulti)) next.nextMulti = cp.nextMulti;
        if (!xidFollowsOrEquals(r.nextMultiOffset, cp.nextMultiOffset)) next.nextMultiOffset = cp.nextMultiOffset;
      }
      this.checkpoint = next;
      this.checkpointDirty = true;
    } else if (op === XLOG_NEXTOID) {
      this.checkpoint.nextOid = u32(d, 0);
      this.checkpointDirty = true;
    }
  }

  /** nextXid must pass every xid seen: xids are assigned between checkpoints. */
  private trackXid(xid: number): void {
    if (xid < FIRST_NORMAL_XID) return;
    const cp = this.checkpoint;
    if (xidFollowsOrEquals(xid, cp.nextXid)) {
      let next = (xid + 1) >>> 0;
      if (next < FIRST_NORMAL_XID) {
        next = FIRST_NORMAL_XID;
        cp.nextXidEpoch++;
      }
      cp.nextXid = next;
      this.checkpointDirty = true;
    }
  }

  // -------------------------------------------------------------------------------------
  // XACT

  private ingestXact(rec: DecodedRecord, d: Uint8Array): void {
    const op = rec.info & 0x70;
    if (op === 0x50 || op === 0x60) return; // ASSIGNMENT, INVALIDATIONS
    if (op === 0x10) {
      // PREPARE: the main data is the two-phase state file; pg_twophase adds a CRC32C.
      const file = new Uint8Array(d.length + 4);
      file.set(d, 0);
      new DataView(file.buffer).setUint32(d.length, crc32c(d), true);
      this.w.putTwophase(rec.xid, file);
      return;
    }
    if (op !== 0x00 && op !== 0x20 && op !== 0x30 && op !== 0x40) this.unsupported(rec, "unknown transaction op");
    const commit = op === 0x00 || op === 0x30;
    let off = 8; // xact_time
    let xinfo = 0;
    if (rec.info & 0x80) {
      xinfo = u32(d, off);
      off += 4;
    }
    if (xinfo & 0x01) off += 8; // dbinfo
    const subxacts: number[] = [];
    if (xinfo & 0x02) {
      const n = i32(d, off);
      off += 4;
      for (let i = 0; i < n; i++) subxacts.push(u32(d, off + 4 * i));
      off += 4 * n;
    }
    const dropped: { spc: number; db: number; rel: number }[] = [];
    if (xinfo & 0x04) {
      const n = i32(d, off);
      off += 4;
      for (let i = 0; i < n; i++) dropped.push({ spc: u32(d, off + 12 * i), db: u32(d, off + 12 * i + 4), rel: u32(d, off + 12 * i + 8) });
      off += 12 * n;
    }
    if (xinfo & 0x100) off += 4 + 12 * i32(d, off); // dropped stats
    if (xinfo & 0x08) off += 4 + 16 * i32(d, off); // invalidations
    let twophaseXid = -1;
    if (xinfo & 0x10) {
      twophaseXid = u32(d, off);
      off += 4;
    }
    if (off > d.length) this.unsupported(rec, "truncated transaction record");
    const prepared = op === 0x30 || op === 0x40;
    const xid = prepared ? twophaseXid : rec.xid;
    if (prepared && twophaseXid < 0) this.unsupported(rec, "prepared transaction record without its xid");
    this.setClog([xid, ...subxacts], commit ? CLOG_STATUS_COMMITTED : CLOG_STATUS_ABORTED);
    for (const r of dropped) for (let fork = 0; fork <= 3; fork++) this.w.dropRel(relTag(r.spc, r.db, r.rel, fork));
    if (prepared) this.w.dropTwophase(xid);
  }

  /** Set CLOG status bits: one pageserver record per CLOG page touched. */
  private setClog(xids: number[], status: number): void {
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

  // -------------------------------------------------------------------------------------
  // SMGR

  private ingestSmgr(rec: DecodedRecord, d: Uint8Array): void {
    const op = rec.info & 0xf0;
    if (op === 0x10) {
      const rel = relTag(u32(d, 0), u32(d, 4), u32(d, 8), i32(d, 12));
      if (this.w.relSize(rel) === null) this.w.createRel(rel);
      return;
    }
    if (op !== 0x20) this.unsupported(rec, "unknown SMGR op");
    const blkno = u32(d, 0);
    const spc = u32(d, 4);
    const db = u32(d, 8);
    const relnode = u32(d, 12);
    const flags = i32(d, 16);
    if (flags & 0x1) {
      const main = relTag(spc, db, relnode, 0);
      if (this.w.relSize(main) !== null) this.w.truncateRel(main, blkno);
    }
    if (flags & 0x4) {
      const fsm = relTag(spc, db, relnode, 1);
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
    if (flags & 0x2) {
      const vm = relTag(spc, db, relnode, VISIBILITYMAP_FORKNUM);
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

  private ingestDbase(rec: DecodedRecord, d: Uint8Array): void {
    const op = rec.info & 0xf0;
    if (op === 0x10) {
      // CREATE_WAL_LOG: the directory and PG_VERSION; relations follow as SMGR_CREATE + FPIs.
      this.w.createDb(u32(d, 4), u32(d, 0));
      return;
    }
    if (op === 0x00) {
      // CREATE_FILE_COPY: copy every relation of the source database as of now.
      const db = u32(d, 0);
      const spc = u32(d, 4);
      const srcDb = u32(d, 8);
      const srcSpc = u32(d, 12);
      const snap = new DatadirSnapshot(this.timeline, this.timeline.lastRecordLsn);
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
    if (op === 0x20) {
      const db = u32(d, 0);
      const n = i32(d, 4);
      for (let i = 0; i < n; i++) this.w.dropDb(u32(d, 8 + 4 * i), db);
      return;
    }
    this.unsupported(rec, "unknown database op");
  }

  // -------------------------------------------------------------------------------------
  // CLOG and MULTIXACT pages

  private ingestClog(rec: DecodedRecord, d: Uint8Array): void {
    const op = rec.info & 0xf0;
    const pageno = i32(d, 0);
    if (op === 0x00) {
      this.w.putSlruPageImage(SlruKind.Clog, Math.floor(pageno / 32), pageno % 32, ZERO_PAGE);
      return;
    }
    if (op === 0x10) {
      this.truncateSlru(SlruKind.Clog, Math.floor(pageno / 32));
      return;
    }
    this.unsupported(rec, "unknown CLOG op");
  }

  /** Drop the segments before `keepFrom` (wraparound of segment numbers is not handled yet). */
  private truncateSlru(kind: SlruKind, keepFrom: number): void {
    const snap = new DatadirSnapshot(this.timeline, this.timeline.lastRecordLsn);
    for (const seg of snap.slruSegments(kind)) if (seg < keepFrom) this.w.dropSlruSegment(kind, seg);
  }

  private ingestMultixact(rec: DecodedRecord, d: Uint8Array): void {
    const op = rec.info & 0xf0;
    if (op === 0x00 || op === 0x10) {
      const pageno = i32(d, 0);
      const kind = op === 0x00 ? SlruKind.MultiXactOffsets : SlruKind.MultiXactMembers;
      this.w.putSlruPageImage(kind, Math.floor(pageno / 32), pageno % 32, ZERO_PAGE);
      return;
    }
    if (op === 0x20) {
      const mid = u32(d, 0);
      const moff = u32(d, 4);
      const n = i32(d, 8);
      if (d.length < 12 + 8 * n) this.unsupported(rec, "truncated multixact record");
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
        l.push({ offset: o, xid: u32(d, 12 + 8 * i), status: u32(d, 16 + 8 * i) });
        this.trackXid(u32(d, 12 + 8 * i));
      }
      for (const [p, l] of byPage) this.putSlruNative(SlruKind.MultiXactMembers, p, multiMembers(l));
      const cp = this.checkpoint;
      if (xidFollowsOrEquals(nextMid, cp.nextMulti)) {
        cp.nextMulti = nextMid === 0 ? 1 : nextMid;
        this.checkpointDirty = true;
      }
      if (xidFollowsOrEquals((moff + n) >>> 0, cp.nextMultiOffset)) {
        cp.nextMultiOffset = (moff + n) >>> 0;
        this.checkpointDirty = true;
      }
      return;
    }
    if (op === 0x30) {
      const oldestMultiDb = u32(d, 0);
      const endTruncOff = u32(d, 8);
      const endTruncMemb = u32(d, 16);
      this.truncateSlru(SlruKind.MultiXactOffsets, Math.floor(endTruncOff / MULTIXACT_OFFSETS_PER_PAGE / SLRU_PAGES_PER_SEGMENT));
      this.truncateSlru(SlruKind.MultiXactMembers, Math.floor(endTruncMemb / MULTIXACT_MEMBERS_PER_PAGE / SLRU_PAGES_PER_SEGMENT));
      this.checkpoint.oldestMulti = endTruncOff;
      this.checkpoint.oldestMultiDb = oldestMultiDb;
      this.checkpointDirty = true;
      return;
    }
    this.unsupported(rec, "unknown multixact op");
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
