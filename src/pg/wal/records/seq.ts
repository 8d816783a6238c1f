/**
 * Typed Sequence WAL record (src/include/commands/sequence.h of PostgreSQL 15). The one info
 * code, LOG (0x00), carries in its main data an xl_seq_rec (the sequence's RelFileNode:
 * spcNode, dbNode, relNode, u32 each, 12 bytes) followed by the sequence's heap tuple
 * (HeapTupleHeader and data), which redo puts on a freshly initialized page. Block 0 is the
 * sequence page (will init). A record without a tuple is a CorruptionError naming LSN, rmgr
 * and info.
 */
import type { DecodedRecord } from "../record.js";
import { recordCorruption } from "./record_access.js";
import { readU32LE } from "../../../types/bytes.js";

export const XLOG_SEQ_LOG = 0x00;
export const XLOG_SEQ_OPMASK = 0xf0;

const SIZE_OF_SEQ_REC = 12;

export interface SeqLog {
  spcNode: number;
  dbNode: number;
  relNode: number;
  /** The sequence tuple, a subarray of the record. */
  tuple: Uint8Array;
}

export function decodeSeqLog(rec: DecodedRecord): SeqLog {
  const d = rec.mainData;
  if (d.length <= SIZE_OF_SEQ_REC)
    throw recordCorruption(rec, `main data of ${d.length} bytes holds no sequence tuple after the ${SIZE_OF_SEQ_REC}-byte xl_seq_rec`);
  return { spcNode: readU32LE(d, 0), dbNode: readU32LE(d, 4), relNode: readU32LE(d, 8), tuple: d.subarray(SIZE_OF_SEQ_REC) };
}
