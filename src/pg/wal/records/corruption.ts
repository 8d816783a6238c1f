/**
 * The error a typed record decoder or an rmgr's redo throws for a malformed record: a
 * CorruptionError (code "corrupt") whose message names the record's LSN, rmgr and info
 * (pg_waldump's names), so a report points at the exact record to inspect with pg_waldump.
 */
import { CorruptionError } from "../../../types/errors.js";
import { type Lsn, lsnToString } from "../../../types/lsn.js";
import type { DecodedRecord } from "../record.js";
import { describeRecordKind } from "../rmgr.js";

export class WalRecordCorruptionError extends CorruptionError {
  readonly lsn: Lsn;
  readonly rmid: number;
  readonly info: number;
  constructor(lsn: Lsn, rmid: number, info: number, reason: string) {
    const where = `WAL record ${describeRecordKind(rmid, info)} (rmgr ${rmid}, info 0x${info.toString(16).padStart(2, "0")}) at ${lsnToString(lsn)}`;
    super(where, 0, reason);
    // CorruptionError's "file … at block …" wording fits layer files, not WAL records.
    this.message = `corrupt ${where}: ${reason}`;
    this.lsn = lsn;
    this.rmid = rmid;
    this.info = info;
  }
}

export function walRecordCorruption(rec: Pick<DecodedRecord, "lsn" | "rmid" | "info">, reason: string): WalRecordCorruptionError {
  return new WalRecordCorruptionError(rec.lsn, rec.rmid, rec.info, reason);
}
