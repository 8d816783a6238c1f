/**
 * What every typed decoder and rmgr redo needs from a decoded record: its block references
 * by id, its name for messages, and the error for a malformed record — a CorruptionError
 * whose message names the record's LSN, its rmgr and info ("Gist/PAGE_SPLIT") and what was
 * wrong, so that all rmgrs say it the same way.
 */
import { CorruptionError } from "../../../types/errors.js";
import { lsnToString } from "../../../types/lsn.js";
import type { DecodedBlock, DecodedRecord } from "../record.js";
import { describeRecordKind } from "../rmgr.js";

/** "Heap/INSERT (rmgr 10, info 0x00) at 0/16B3748": a record for messages. */
export function describeRecord(rec: DecodedRecord): string {
  return `${describeRecordKind(rec.rmid, rec.info)} (rmgr ${rec.rmid}, info 0x${rec.info.toString(16).padStart(2, "0")}) at ${lsnToString(rec.lsn)}`;
}

export function recordCorrupt(rec: DecodedRecord, why: string): CorruptionError {
  return new CorruptionError(`WAL record ${describeRecord(rec)}`, -1, why);
}

/** The block reference with id `id`, or undefined (block ids need not be dense). */
export function blockById(rec: DecodedRecord, id: number): DecodedBlock | undefined {
  const blocks = rec.blocks;
  for (let i = 0; i < blocks.length; i++) if (blocks[i]!.id === id) return blocks[i];
  return undefined;
}
