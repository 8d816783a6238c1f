/**
 * WalIngest: one decoded PostgreSQL 15 WAL record → the keys and values it changes, written
 * through a DatadirWriter at the record's end LSN (every value of a record carries that LSN;
 * the modification commits with finishWrite(endLsn)). This file owns the per-record entry
 * (order check, begin/commit/abort of the modification) and the dispatch by resource
 * manager; what each record does lives with its concern:
 * - ingest_relations: block references (images kept as the WAL carried them, other blocks as
 *   the PostgreSQL record), SMGR create/truncate, the VM bits heap records clear;
 * - ingest_databases: DBASE create/drop (in any tablespace), TBLSPC create/drop;
 * - ingest_transactions: XACT commit/abort/prepare (CLOG bits, dropped relations, two-phase
 *   files), CLOG and MULTIXACT pages;
 * - ingest_checkpoint: XLOG checkpoints and counters (kept in the CHECKPOINT key so a base
 *   backup's pg_control is right at any LSN);
 * and here: RELMAP files, and commit timestamps (the timeline's LSN ↔ time index).
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
 *
 * Lock order: none (synchronous; the timeline runs a record's ingest under applyRecord).
 */
import type { Timeline } from "../tenant/timeline/index.js";
import { assert } from "../types/assert.js";
import { UnsupportedError } from "../types/errors.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import { type CheckPoint, decodeCheckPoint } from "../pg/control.js";
import type { DecodedRecord } from "../pg/wal/record.js";
import { decodeClogRecord } from "../pg/wal/records/clog.js";
import { decodeDbaseRecord } from "../pg/wal/records/dbase.js";
import { decodeMultiXactRecord } from "../pg/wal/records/multixact.js";
import { decodeRelmapRecord } from "../pg/wal/records/relmap.js";
import { decodeSmgrRecord } from "../pg/wal/records/smgr.js";
import { decodeTblspcRecord } from "../pg/wal/records/tblspc.js";
import { decodeXactRecord } from "../pg/wal/records/xact.js";
import { decodeXlogRecord } from "../pg/wal/records/xlog.js";
import {
  RM_CLOG_ID,
  RM_DBASE_ID,
  RM_HEAP2_ID,
  RM_HEAP_ID,
  RM_MULTIXACT_ID,
  RM_RELMAP_ID,
  RM_SMGR_ID,
  RM_TBLSPC_ID,
  RM_XACT_ID,
  RM_XLOG_ID,
} from "../pg/wal/rmgr_ids.js";
import { IngestCheckpoint } from "./ingest_checkpoint.js";
import { ingestDbase, ingestTblspc } from "./ingest_databases.js";
import { ingestBlocks, ingestHeapVm, ingestSmgr } from "./ingest_relations.js";
import { ingestClog, ingestMultixact, ingestXact } from "./ingest_transactions.js";
import { CHECKPOINT_KEY } from "./keys.js";
import { DatadirWriter } from "./writer.js";

export class WalIngest {
  private readonly timeline: Timeline;
  private readonly w: DatadirWriter;
  private readonly checkpoint: IngestCheckpoint;
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
    this.checkpoint = new IngestCheckpoint(decodeCheckPoint(cp));
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
      ingestBlocks(w, rec);
      this.ingestMainData(rec);
      this.checkpoint.trackXid(rec.xid);
      this.checkpoint.flush(w);
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

  private ingestMainData(rec: DecodedRecord): void {
    const w = this.w;
    switch (rec.rmid) {
      case RM_XLOG_ID:
        this.checkpoint.ingestXlog(decodeXlogRecord(rec));
        return;
      case RM_XACT_ID:
        this.commitTime_us = ingestXact(w, rec, decodeXactRecord(rec));
        return;
      case RM_SMGR_ID:
        ingestSmgr(w, decodeSmgrRecord(rec));
        return;
      case RM_CLOG_ID:
        ingestClog(w, this.timeline, decodeClogRecord(rec));
        return;
      case RM_DBASE_ID:
        ingestDbase(w, this.timeline, rec, decodeDbaseRecord(rec));
        return;
      case RM_TBLSPC_ID:
        ingestTblspc(w, decodeTblspcRecord(rec));
        return;
      case RM_MULTIXACT_ID:
        ingestMultixact(w, this.timeline, this.checkpoint, decodeMultiXactRecord(rec));
        return;
      case RM_RELMAP_ID: {
        const r = decodeRelmapRecord(rec);
        w.putRelmap(r.tsId, r.dbId, r.data);
        return;
      }
      case RM_HEAP_ID:
      case RM_HEAP2_ID:
        ingestHeapVm(w, rec);
        return;
      default:
        // Standby, Btree, Hash, Gin, Gist, Sequence, SPGist, BRIN, CommitTs, ReplicationOrigin,
        // Generic, LogicalMessage: their storage effects are all in block references.
        return;
    }
  }

  /** The checkpoint as ingest keeps it (tests, basebackup checks). */
  currentCheckpoint(): Readonly<CheckPoint> {
    return this.checkpoint.current;
  }
}
