/**
 * IngestCheckpoint: the CheckPoint WalIngest keeps in the CHECKPOINT key, so a base backup's
 * pg_control is right at any LSN. It owns the decoded checkpoint, whether a record changed it,
 * and the scratch buffer it is encoded into; XLOG records (checkpoints, NEXTOID) replace or
 * move it, every record's xid and every new multixact advance its counters.
 *
 * Invariants: counters only move forward in PostgreSQL's modulo-2^32 order (an online
 * checkpoint's counters were read before it started, so they are minimums); a record that
 * changed the checkpoint puts it once, at the record's end LSN (flush), and clears the flag.
 * `current` is replaced (not changed) by a checkpoint record: a reader holding the old one
 * keeps a consistent copy.
 *
 * Lock order: none (synchronous, inside one record's ingest).
 */
import { FIRST_MULTIXACT_ID, FIRST_NORMAL_TRANSACTION_ID } from "../pg/consts.js";
import { type CheckPoint, encodeCheckPoint, SIZEOF_CHECKPOINT } from "../pg/control.js";
import { XLOG_CHECKPOINT_ONLINE, XLOG_CHECKPOINT_SHUTDOWN, XLOG_NEXTOID, type XlogRecord } from "../pg/wal/records/xlog.js";
import type { DatadirWriter } from "./writer.js";

/** xid a "follows or equals" xid b in PostgreSQL's modulo-2^32 order (normal xids). */
function xidFollowsOrEquals(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

export class IngestCheckpoint {
  /** The checkpoint as ingest keeps it. */
  current: CheckPoint;
  private dirty = false;
  private readonly scratch = new Uint8Array(SIZEOF_CHECKPOINT);

  constructor(checkpoint: CheckPoint) {
    this.current = checkpoint;
  }

  /** XLOG records: a checkpoint replaces the counters, NEXTOID moves nextOid. */
  ingestXlog(r: XlogRecord): void {
    switch (r.op) {
      case XLOG_CHECKPOINT_SHUTDOWN:
      case XLOG_CHECKPOINT_ONLINE: {
        const cp = this.current;
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
        this.current = next;
        this.dirty = true;
        return;
      }
      case XLOG_NEXTOID:
        this.current.nextOid = r.nextOid;
        this.dirty = true;
        return;
      default:
        // SWITCH, NOOP, BACKUP_END, PARAMETER_CHANGE, RESTORE_POINT, FPW_CHANGE,
        // END_OF_RECOVERY, OVERWRITE_CONTRECORD change no stored state; FPI and FPI_FOR_HINT
        // are their block references.
        return;
    }
  }

  /** nextXid must pass every xid seen: xids are assigned between checkpoints. */
  trackXid(xid: number): void {
    if (xid < FIRST_NORMAL_TRANSACTION_ID) return;
    const cp = this.current;
    if (xidFollowsOrEquals(xid, cp.nextXid)) {
      let next = (xid + 1) >>> 0;
      if (next < FIRST_NORMAL_TRANSACTION_ID) {
        next = FIRST_NORMAL_TRANSACTION_ID;
        cp.nextXidEpoch++;
      }
      cp.nextXid = next;
      this.dirty = true;
    }
  }

  /** A multixact was created: nextMulti and nextMultiOffset pass it (`nextMid` 0 wraps to the first one). */
  trackMulti(nextMid: number, nextOffset: number): void {
    const cp = this.current;
    if (xidFollowsOrEquals(nextMid, cp.nextMulti)) {
      cp.nextMulti = nextMid === 0 ? FIRST_MULTIXACT_ID : nextMid;
      this.dirty = true;
    }
    if (xidFollowsOrEquals(nextOffset, cp.nextMultiOffset)) {
      cp.nextMultiOffset = nextOffset;
      this.dirty = true;
    }
  }

  /** The multixact SLRUs were truncated: the oldest multixact left and its database. */
  truncatedMulti(oldestMulti: number, oldestMultiDb: number): void {
    this.current.oldestMulti = oldestMulti;
    this.current.oldestMultiDb = oldestMultiDb;
    this.dirty = true;
  }

  /** Put the checkpoint through `w` if the record changed it (encoded into scratch space: putCheckpoint keeps a copy). */
  flush(w: DatadirWriter): void {
    if (!this.dirty) return;
    w.putCheckpoint(encodeCheckPoint(this.current, this.scratch));
    this.dirty = false;
  }
}
