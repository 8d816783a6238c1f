/**
 * Redo of the XLOG rmgr's block references (xlog_redo in xlog.c). Only XLOG_FPI and
 * XLOG_FPI_FOR_HINT carry block references (PostgreSQL asserts it), and they carry nothing
 * but full-page images:
 *   - with an image (always APPLY): the page is the image, pd_lsn = the record's end unless
 *     the page is new. Ingest stores such blocks as images, so this path only runs when a
 *     caller hands us the record anyway;
 *   - XLOG_FPI_FOR_HINT without an image (written while full_page_writes was off): nothing
 *     to do, the page and its LSN stay as they are;
 *   - XLOG_FPI without an image, or any other XLOG info with a block reference: a corrupt
 *     record (PostgreSQL errors out / asserts).
 * XLOG has no rm_mask and wal_consistency_checking cannot name it: it never gets a
 * consistency-check image, so mask() has nothing to do.
 */
import { restorePageImage } from "../wal/image.js";
import type { DecodedRecord } from "../wal/record.js";
import { RM_XLOG_ID, XLOG_FPI, XLOG_FPI_FOR_HINT, XLR_RMGR_INFO_MASK } from "../wal/rmgr_ids.js";
import { pageIsNew, setPageLsn } from "./bufpage.js";
import { redoBlock, redoCorruption, type RmgrRedo } from "./rmgr_interface.js";

export const xlogRedo: RmgrRedo = {
  rmid: RM_XLOG_ID,
  name: "xlog",
  redo(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
    const info = rec.info & XLR_RMGR_INFO_MASK;
    if (info !== XLOG_FPI && info !== XLOG_FPI_FOR_HINT)
      throw redoCorruption(rec, blockId, "only FPI records have block references in the XLOG rmgr");
    const blk = redoBlock(rec, blockId);
    if (blk.hasImage) {
      if (!blk.applyImage) throw redoCorruption(rec, blockId, "full-page image without BKPIMAGE_APPLY");
      restorePageImage(blk, page, rec.lsn);
      if (!pageIsNew(page)) setPageLsn(page, rec.endLsn);
      return;
    }
    if (info === XLOG_FPI) throw redoCorruption(rec, blockId, "XLOG_FPI record did not contain a full-page image");
  },
  mask(_page: Uint8Array, _blkno: number): void {},
};
