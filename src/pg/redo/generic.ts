/**
 * Generic WAL redo and mask: PostgreSQL 15's generic_redo and generic_mask
 * (src/backend/access/transam/generic_xlog.c), used by extensions such as bloom.
 *
 * Each block reference is redone on its own: a block restored from an APPLY image
 * (GENERIC_XLOG_FULL_IMAGE, or a full-page write) gets nothing more; otherwise its delta
 * fragments (offset u16, length u16, bytes) are copied onto the page, the hole between
 * pd_lower and pd_upper is zeroed (the delta says nothing about it and GenericXLogFinish
 * zeroed it on the primary), and pd_lsn := the record's end.
 */
import { assert } from "../../types/assert.js";
import type { DecodedRecord } from "../wal/record.js";
import { checkGenericDelta, GENERIC_FRAGMENT_HEADER_SIZE, MAX_GENERIC_XLOG_PAGES, XLOG_GENERIC } from "../wal/records/generic.js";
import { RM_GENERIC_ID, XLR_RMGR_INFO_MASK } from "../wal/rmgr_ids.js";
import { maskPageLsnAndChecksum, maskUnusedSpace } from "./bufmask.js";
import { BLCKSZ, pdLower, pdUpper, setPageLsn } from "./bufpage.js";
import { redoBlock, redoCorruption, redoUnsupported, type RmgrRedo } from "./rmgr_interface.js";
import { readU16LE } from "../../types/bytes.js";

/** applyPageRedo on a delta that checkGenericDelta accepted. */
function applyDelta(page: Uint8Array, delta: Uint8Array): void {
  let p = 0;
  while (p < delta.length) {
    const offset = readU16LE(delta, p);
    const length = readU16LE(delta, p + 2);
    p += GENERIC_FRAGMENT_HEADER_SIZE;
    page.set(delta.subarray(p, p + length), offset);
    p += length;
  }
}

function redo(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const op = rec.info & XLR_RMGR_INFO_MASK;
  if (op !== XLOG_GENERIC) throw redoUnsupported(rec, `unknown generic op code 0x${op.toString(16)}`);
  const block = redoBlock(rec, blockId);
  if (blockId >= MAX_GENERIC_XLOG_PAGES)
    throw redoCorruption(rec, blockId, `block reference ${blockId} beyond the ${MAX_GENERIC_XLOG_PAGES} pages of a generic record`);
  assert(page.length === BLCKSZ, `redo needs an 8192-byte page, got ${page.length} bytes`);
  if (block.applyImage) return;
  checkGenericDelta(rec, blockId, block.data);
  applyDelta(page, block.data);
  const lower = pdLower(page);
  const upper = pdUpper(page);
  if (lower > upper || upper > BLCKSZ)
    throw redoCorruption(rec, blockId, `block ${blockId}: after the delta pd_lower ${lower} and pd_upper ${upper} make no hole`);
  page.fill(0, lower, upper);
  setPageLsn(page, rec.endLsn);
}

/** generic_mask. */
function mask(page: Uint8Array, _blkno: number): void {
  maskPageLsnAndChecksum(page);
  maskUnusedSpace(page);
}

export const genericRedo: RmgrRedo = { rmid: RM_GENERIC_ID, name: "generic", redo, mask };
