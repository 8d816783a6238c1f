/**
 * What every typed decoder and rmgr redo needs from a decoded record: its block references
 * by id, its main data checked against the struct it must hold, its name for messages, and
 * the error for a malformed record — a CorruptionError whose message names the record's LSN,
 * its rmgr and info ("Gist/PAGE_SPLIT") and what was wrong, so that all rmgrs say it the
 * same way.
 */
import { CorruptionError } from "../../../types/errors.js";
import { lsnToString } from "../../../types/lsn.js";
import type { DecodedBlock, DecodedRecord } from "../record.js";
import { describeRecordKind, XLR_RMGR_INFO_MASK } from "../rmgr_ids.js";

/** "Heap/INSERT (rmgr 10, info 0x00) at 0/16B3748": a record for messages. */
export function describeRecord(rec: DecodedRecord): string {
  return `${describeRecordKind(rec.rmid, rec.info)} (rmgr ${rec.rmid}, info 0x${rec.info.toString(16).padStart(2, "0")}) at ${lsnToString(rec.lsn)}`;
}

/**
 * A malformed record: a CorruptionError whose "file" is the WAL record (rmgr, info, LSN);
 * the block number is that of block reference `blockId` when the fault is in its data, else -1.
 */
export function recordCorruption(rec: DecodedRecord, why: string, blockId = -1): CorruptionError {
  const blk = blockId >= 0 ? blockById(rec, blockId) : undefined;
  return new CorruptionError(`WAL record ${describeRecord(rec)}`, blk === undefined ? -1 : blk.blkno, why);
}

/** The block reference with id `id`, or undefined (block ids need not be dense). */
export function blockById(rec: DecodedRecord, id: number): DecodedBlock | undefined {
  const blocks = rec.blocks;
  for (let i = 0; i < blocks.length; i++) if (blocks[i]!.id === id) return blocks[i];
  return undefined;
}

/** Block `id`, which the record must reference. */
export function requireBlock(rec: DecodedRecord, id: number): DecodedBlock {
  const b = blockById(rec, id);
  if (b === undefined) throw recordCorruption(rec, `needs block ${id}, but the record has no block reference ${id}`);
  return b;
}

/** The main data, which must hold at least the `size`-byte struct `what`. */
export function needMain(rec: DecodedRecord, size: number, what: string): Uint8Array {
  const d = rec.mainData;
  if (d.length < size) throw recordCorruption(rec, `main data is ${d.length} bytes, ${what} needs ${size}`);
  return d;
}

/** The main data, which must be exactly the `size`-byte struct `what`. */
export function exactMain(rec: DecodedRecord, size: number, what: string): Uint8Array {
  const d = rec.mainData;
  if (d.length !== size) throw recordCorruption(rec, `main data is ${d.length} bytes, ${what} is ${size}`);
  return d;
}

/** A typed decoder called on a record of another kind (`info`: the rmgr's op, XLR_RMGR_INFO_MASK bits). */
export function expectInfo(rec: DecodedRecord, info: number): void {
  if ((rec.info & XLR_RMGR_INFO_MASK) !== info) throw recordCorruption(rec, `decoded as info 0x${info.toString(16)}`);
}
