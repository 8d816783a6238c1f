/**
 * Page masking for consistency checks: PostgreSQL 15's bufmask.c. Before our redone page is
 * compared with PostgreSQL's own image of the same block, both go through the same masks:
 * these generic ones plus the rmgr's rm_mask (which calls some of these). Masking overwrites
 * in place with MASK_MARKER (0); it only ever hides bytes, never moves them.
 *
 * Used by the verification harness and the rmgrs' mask functions, not on the read path.
 */
import { readU16LE } from "../../types/bytes.js";
import { BLCKSZ } from "../consts.js";
import {
  LP_UNUSED,
  pageGetMaxOffsetNumber,
  PageLayoutError,
  PD_ALL_VISIBLE,
  PD_HAS_FREE_LINES,
  PD_PAGE_FULL,
  SIZE_OF_PAGE_HEADER,
} from "./bufpage.js";

export const MASK_MARKER = 0;

/** pd_lsn and pd_checksum: they differ between primary and replay for reasons unrelated to redo. */
export function maskPageLsnAndChecksum(page: Uint8Array): void {
  page.fill(MASK_MARKER, 0, 10);
}

/** pd_prune_xid and the hint flags PD_PAGE_FULL, PD_HAS_FREE_LINES, PD_ALL_VISIBLE. */
export function maskPageHintBits(page: Uint8Array): void {
  page.fill(MASK_MARKER, 20, 24);
  // All three flags sit in the low byte of pd_flags (offset 10).
  page[10] = page[10]! & ~(PD_PAGE_FULL | PD_HAS_FREE_LINES | PD_ALL_VISIBLE);
}

/** The hole [pd_lower, pd_upper). Throws PageLayoutError on impossible pointers, as PostgreSQL errors out. */
export function maskUnusedSpace(page: Uint8Array): void {
  const lower = readU16LE(page, 12);
  const upper = readU16LE(page, 14);
  const special = readU16LE(page, 16);
  if (lower > upper || special < upper || lower < SIZE_OF_PAGE_HEADER || special > BLCKSZ) {
    throw new PageLayoutError(`invalid page pd_lower ${lower} pd_upper ${upper} pd_special ${special}`);
  }
  page.fill(MASK_MARKER, lower, upper);
}

/** Every used line pointer's lp_flags becomes LP_UNUSED (offset and length are kept). */
export function maskLpFlags(page: Uint8Array): void {
  // A pd_lower past the page would make PostgreSQL read beyond it; we stop at the page end.
  const maxoff = Math.min(pageGetMaxOffsetNumber(page), (BLCKSZ - SIZE_OF_PAGE_HEADER) / 4);
  for (let off = 1; off <= maxoff; off++) {
    const at = SIZE_OF_PAGE_HEADER + (off - 1) * 4;
    // lp_flags are bits 15..16 of the little-endian word: bit 7 of byte 1, bit 0 of byte 2.
    const flags = ((page[at + 1]! >>> 7) & 1) | ((page[at + 2]! & 1) << 1);
    if (flags !== LP_UNUSED) {
      page[at + 1] = page[at + 1]! & 0x7f;
      page[at + 2] = page[at + 2]! & 0xfe;
    }
  }
}

/** Everything after the header, and pd_lower / pd_upper (deleted index pages). */
export function maskPageContent(page: Uint8Array): void {
  page.fill(MASK_MARKER, SIZE_OF_PAGE_HEADER, BLCKSZ);
  page.fill(MASK_MARKER, 12, 16);
}
