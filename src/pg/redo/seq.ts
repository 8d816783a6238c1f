/**
 * Sequence redo and mask: PostgreSQL 15's seq_redo and seq_mask (src/backend/commands/
 * sequence.c). The one info code, LOG, re-initializes the sequence page from scratch: an
 * empty page with a 4-byte special space holding SEQ_MAGIC (0x1717, MAXALIGNed to 8), the
 * record's tuple as item 1, pd_lsn := the record's end. Block 0 is will-init, so the prior
 * page never matters (PostgreSQL builds the page aside and copies it over the buffer).
 */
import { assert } from "../../types/assert.js";
import type { DecodedRecord } from "../wal/record.js";
import { decodeSeqLog, XLOG_SEQ_LOG, XLOG_SEQ_OPMASK } from "../wal/records/seq.js";
import { RM_SEQ_ID } from "../wal/rmgr_ids.js";
import { maskPageLsnAndChecksum, maskUnusedSpace } from "./bufmask.js";
import { BLCKSZ, FirstOffsetNumber, InvalidOffsetNumber, pageAddItemExtended, pageInit, pdSpecial, setPageLsn } from "./bufpage.js";
import { redoBlock, redoCorruption, redoUnsupported, type RmgrRedo } from "./rmgr_interface.js";

export const SEQ_MAGIC = 0x1717;
/** sizeof(sequence_magic). */
const SIZE_OF_SEQUENCE_MAGIC = 4;

function redo(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const op = rec.info & XLOG_SEQ_OPMASK;
  if (op !== XLOG_SEQ_LOG) throw redoUnsupported(rec, `unknown sequence op code 0x${op.toString(16)}`);
  redoBlock(rec, blockId);
  if (blockId !== 0) throw redoCorruption(rec, blockId, `block reference ${blockId} has no meaning for this record`);
  assert(page.length === BLCKSZ, `redo needs an 8192-byte page, got ${page.length} bytes`);
  const xl = decodeSeqLog(rec);
  pageInit(page, SIZE_OF_SEQUENCE_MAGIC);
  const special = pdSpecial(page);
  page[special] = SEQ_MAGIC & 0xff;
  page[special + 1] = SEQ_MAGIC >>> 8;
  if (pageAddItemExtended(page, xl.tuple, FirstOffsetNumber, 0) === InvalidOffsetNumber) {
    throw redoCorruption(rec, blockId, `failed to add a sequence tuple of ${xl.tuple.length} bytes to the page`);
  }
  setPageLsn(page, rec.endLsn);
}

/** seq_mask. */
function mask(page: Uint8Array, _blkno: number): void {
  maskPageLsnAndChecksum(page);
  maskUnusedSpace(page);
}

export const seqRedo: RmgrRedo = { rmid: RM_SEQ_ID, name: "sequence", redo, mask };
