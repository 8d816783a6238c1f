/**
 * Transaction records and the SLRUs they change, for WalIngest: XACT commit/abort (CLOG bits,
 * dropped relations, the end of a prepared transaction), XACT PREPARE (the pg_twophase file),
 * CLOG zero-page and truncate records, and MULTIXACT records (offsets and members pages, the
 * counters in the checkpoint, truncation). Free functions: the writer, the timeline and the
 * checkpoint are passed in; nothing here keeps state between records.
 *
 * Invariants: an SLRU page change is stored as a pageserver record (src/pg/redo/native.ts)
 * on a page that exists, and as an image (the record applied to a zero page) on one that
 * does not: one (key, lsn) holds one value. Truncation drops whole segments below the cut
 * (wraparound of segment numbers is not handled yet).
 *
 * Lock order: none (synchronous, inside one record's ingest).
 */
import { crc32c } from "@node-rs/crc32";
import {
  BLCKSZ,
  CLOG_XACTS_PER_PAGE,
  MAIN_FORKNUM,
  MAX_FORKNUM,
  MULTIXACT_MEMBERS_PER_PAGE,
  MULTIXACT_OFFSETS_PER_PAGE,
  SLRU_PAGES_PER_SEGMENT,
} from "../pg/consts.js";
import { applyNative, CLOG_STATUS_ABORTED, CLOG_STATUS_COMMITTED, clogSet, multiMembers, multiOffsets } from "../pg/redo/native.js";
import type { DecodedRecord } from "../pg/wal/record.js";
import { CLOG_ZEROPAGE, type ClogRecord } from "../pg/wal/records/clog.js";
import {
  memberStatusAt,
  memberXidAt,
  type MultiXactRecord,
  XLOG_MULTIXACT_CREATE_ID,
  XLOG_MULTIXACT_TRUNCATE_ID,
  XLOG_MULTIXACT_ZERO_MEM_PAGE,
  XLOG_MULTIXACT_ZERO_OFF_PAGE,
} from "../pg/wal/records/multixact.js";
import {
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
import type { Timeline } from "../tenant/timeline/index.js";
import type { Value } from "../types/value.js";
import type { IngestCheckpoint } from "./ingest_checkpoint.js";
import { relTag, SlruKind } from "./keys.js";
import { StoredState } from "./stored_state.js";
import { type DatadirWriter, ZERO_PAGE } from "./writer.js";

/**
 * An XACT record. Returns the xact_time (µs since 2000) of a commit or abort (the timeline's
 * LSN ↔ time index notes it once the record is written), NaN for the other records.
 */
export function ingestXact(w: DatadirWriter, rec: DecodedRecord, r: XactRecord): number {
  switch (r.op) {
    case XLOG_XACT_ASSIGNMENT:
    case XLOG_XACT_INVALIDATIONS:
      return Number.NaN;
    case XLOG_XACT_PREPARE: {
      // The main data is the two-phase state file; pg_twophase adds a CRC32C.
      const d = r.stateFile;
      const file = new Uint8Array(d.length + 4);
      file.set(d, 0);
      new DataView(file.buffer).setUint32(d.length, crc32c(d), true);
      w.putTwophase(rec.xid, file);
      return Number.NaN;
    }
    default: {
      const commit = r.op === XLOG_XACT_COMMIT || r.op === XLOG_XACT_COMMIT_PREPARED;
      const prepared = r.op === XLOG_XACT_COMMIT_PREPARED || r.op === XLOG_XACT_ABORT_PREPARED;
      // The decoder guarantees a prepared transaction's record carries its xid.
      const xid = prepared ? r.twophaseXid : rec.xid;
      const xids = [xid];
      for (let i = 0; i < r.nsubxacts; i++) xids.push(subxactAt(r.subxacts, i));
      setClog(w, xids, commit ? CLOG_STATUS_COMMITTED : CLOG_STATUS_ABORTED);
      for (let i = 0; i < r.nrels; i++) {
        const n = relFileNodeAt(r.rels, i);
        for (let fork = MAIN_FORKNUM; fork <= MAX_FORKNUM; fork++) w.dropRel(relTag(n.spcNode, n.dbNode, n.relNode, fork));
      }
      if (prepared) w.dropTwophase(xid);
      // get_lsn_by_timestamp's source of truth (Timeline.lsnForTime): all four records, as
      // PostgreSQL's recovery checks each against recovery_target_time.
      return r.xactTime;
    }
  }
}

/** Set CLOG status bits: one pageserver record per CLOG page touched. */
function setClog(w: DatadirWriter, xids: number[], status: number): void {
  // Almost always one page (a transaction without subtransactions): no grouping needed.
  const first = Math.floor(xids[0]! / CLOG_XACTS_PER_PAGE);
  let onePage = true;
  for (let i = 1; i < xids.length && onePage; i++) onePage = Math.floor(xids[i]! / CLOG_XACTS_PER_PAGE) === first;
  if (onePage) {
    putSlruNative(w, SlruKind.Clog, first, clogSet(status, xids));
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
  for (const [pageno, list] of byPage) putSlruNative(w, SlruKind.Clog, pageno, clogSet(status, list));
}

/**
 * A pageserver record on an SLRU page. If the page does not exist yet, the record is applied
 * to a zero page here and stored as an image: one (key, lsn) holds one value.
 */
function putSlruNative(w: DatadirWriter, kind: SlruKind, pageno: number, v: Value): void {
  const segno = Math.floor(pageno / SLRU_PAGES_PER_SEGMENT);
  const blkno = pageno % SLRU_PAGES_PER_SEGMENT;
  const size = w.slruSegmentSize(kind, segno);
  if (size === null || blkno >= size) {
    const page = new Uint8Array(BLCKSZ);
    applyNative(v, page, segno, blkno);
    w.putSlruPageImage(kind, segno, blkno, page);
  } else {
    w.putSlruValue(kind, segno, blkno, v);
  }
}

/** A new SLRU page, all zeros. */
function zeroSlruPage(w: DatadirWriter, kind: SlruKind, pageno: number): void {
  w.putSlruPageImage(kind, Math.floor(pageno / SLRU_PAGES_PER_SEGMENT), pageno % SLRU_PAGES_PER_SEGMENT, ZERO_PAGE);
}

/** Drop the segments before `keepFrom` (wraparound of segment numbers is not handled yet). */
function truncateSlru(w: DatadirWriter, timeline: Timeline, kind: SlruKind, keepFrom: number): void {
  const snap = new StoredState(timeline);
  for (const seg of snap.slruSegments(kind)) if (seg < keepFrom) w.dropSlruSegment(kind, seg);
}

/** A CLOG record: a new zero page, or a truncation below the page's segment. */
export function ingestClog(w: DatadirWriter, timeline: Timeline, r: ClogRecord): void {
  if (r.op === CLOG_ZEROPAGE) zeroSlruPage(w, SlruKind.Clog, r.pageno);
  else truncateSlru(w, timeline, SlruKind.Clog, Math.floor(r.pageno / SLRU_PAGES_PER_SEGMENT));
}

/** A MULTIXACT record: zero pages, a new multixact (offsets, members, counters), truncation. */
export function ingestMultixact(w: DatadirWriter, timeline: Timeline, cp: IngestCheckpoint, r: MultiXactRecord): void {
  switch (r.op) {
    case XLOG_MULTIXACT_ZERO_OFF_PAGE:
      zeroSlruPage(w, SlruKind.MultiXactOffsets, r.pageno);
      return;
    case XLOG_MULTIXACT_ZERO_MEM_PAGE:
      zeroSlruPage(w, SlruKind.MultiXactMembers, r.pageno);
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
      putSlruNative(w, SlruKind.MultiXactOffsets, page, multiOffsets(entries));
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
        cp.trackXid(xid);
      }
      for (const [p, l] of byPage) putSlruNative(w, SlruKind.MultiXactMembers, p, multiMembers(l));
      cp.trackMulti(nextMid, (moff + n) >>> 0);
      return;
    }
    case XLOG_MULTIXACT_TRUNCATE_ID:
      truncateSlru(w, timeline, SlruKind.MultiXactOffsets, Math.floor(r.endTruncOff / MULTIXACT_OFFSETS_PER_PAGE / SLRU_PAGES_PER_SEGMENT));
      truncateSlru(
        w,
        timeline,
        SlruKind.MultiXactMembers,
        Math.floor(r.endTruncMemb / MULTIXACT_MEMBERS_PER_PAGE / SLRU_PAGES_PER_SEGMENT),
      );
      cp.truncatedMulti(r.endTruncOff, r.oldestMultiDb);
      return;
  }
}
