/**
 * Database and tablespace records, for WalIngest: DBASE create (WAL_LOG: the directory only;
 * FILE_COPY: every relation and the relmap of the source database as last_record_lsn has
 * them), DBASE drop (in each tablespace it names), TBLSPC create/drop (the tablespace
 * directory a base backup needs). Free functions: the writer and the timeline are passed in.
 *
 * Invariants: a FILE_COPY of a source database that does not exist is an UnsupportedError
 * naming the record (nothing is skipped silently); the copy reads through StoredState, so a
 * page not on local disk aborts the record and the timeline retries it (see stored_state.ts).
 *
 * Lock order: none (synchronous, inside one record's ingest).
 */
import type { DecodedRecord } from "../pg/wal/record.js";
import {
  type DbaseRecord,
  tablespaceIdAt,
  XLOG_DBASE_CREATE_FILE_COPY,
  XLOG_DBASE_CREATE_WAL_LOG,
  XLOG_DBASE_DROP,
} from "../pg/wal/records/dbase.js";
import { type TblspcRecord, XLOG_TBLSPC_CREATE } from "../pg/wal/records/tblspc.js";
import { describeRecordKind } from "../pg/wal/rmgr_ids.js";
import type { Timeline } from "../tenant/timeline/index.js";
import { UnsupportedError } from "../types/errors.js";
import { lsnToString } from "../types/lsn.js";
import { type RelTag, relTag } from "./keys.js";
import { StoredState } from "./stored_state.js";
import type { DatadirWriter } from "./writer.js";

function unsupported(rec: DecodedRecord, why: string): never {
  throw new UnsupportedError(
    `cannot ingest ${describeRecordKind(rec.rmid, rec.info)} (rmgr ${rec.rmid}, info 0x${rec.info.toString(16)}) at ${lsnToString(rec.lsn)}: ${why}`,
  );
}

/** A DBASE record: CREATE DATABASE (either strategy) or DROP DATABASE. */
export function ingestDbase(w: DatadirWriter, timeline: Timeline, rec: DecodedRecord, r: DbaseRecord): void {
  switch (r.op) {
    case XLOG_DBASE_CREATE_WAL_LOG:
      // The directory and PG_VERSION; relations follow as SMGR_CREATE + FPIs.
      w.createDb(r.tablespaceId, r.dbId);
      return;
    case XLOG_DBASE_CREATE_FILE_COPY: {
      // Copy every relation of the source database as of now.
      const { dbId: db, tablespaceId: spc, srcDbId: srcDb, srcTablespaceId: srcSpc } = r;
      const snap = new StoredState(timeline);
      if (!snap.dbExists(srcSpc, srcDb)) unsupported(rec, `source database ${srcSpc}/${srcDb} does not exist`);
      w.createDb(spc, db);
      const relmap = snap.relmap(srcSpc, srcDb);
      if (relmap !== null) w.putRelmap(spc, db, relmap);
      for (const src of snap.listRels(srcSpc, srcDb)) {
        const dst: RelTag = relTag(spc, db, src.relnode, src.forknum);
        const n = snap.relSize(src);
        if (w.relSize(dst) === null) w.createRel(dst);
        for (let b = 0; b < n; b++) w.putRelPageImage(dst, b, snap.getRelPage(src, b));
      }
      return;
    }
    case XLOG_DBASE_DROP:
      for (let i = 0; i < r.ntablespaces; i++) w.dropDb(tablespaceIdAt(r, i), r.dbId);
      return;
  }
}

/**
 * A TBLSPC record. CREATE makes pg_tblspc/<oid>/PG_15_…; the databases' directories in it
 * come with their first relation (SMGR_CREATE) or a CREATE DATABASE. DROP is of an empty one.
 */
export function ingestTblspc(w: DatadirWriter, r: TblspcRecord): void {
  if (r.op === XLOG_TBLSPC_CREATE) w.createTablespace(r.tsId, r.path);
  else w.dropTablespace(r.tsId);
}
