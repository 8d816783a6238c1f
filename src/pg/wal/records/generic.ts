/**
 * Typed Generic WAL records (src/backend/access/transam/generic_xlog.c of PostgreSQL 15),
 * written by extensions such as bloom through the GenericXLog API. The record has no main
 * data and one info code (0x00); each of its up to MAX_GENERIC_XLOG_PAGES block references
 * carries either a full-page image (GENERIC_XLOG_FULL_IMAGE, an APPLY image, no data) or a
 * delta as its block data: fragments of
 *
 *   offset u16 | length u16 | length bytes to copy to page[offset, offset + length)
 *
 * back to back. Every fragment must fit in the data and in the page; anything else is a
 * CorruptionError naming LSN, rmgr and info.
 */
import { BLCKSZ } from "../page.js";
import type { DecodedRecord } from "../record.js";
import { recordCorruption } from "./record_access.js";
import { readU16LE } from "../../../types/bytes.js";

export const XLOG_GENERIC = 0x00;
export const MAX_GENERIC_XLOG_PAGES = 4;
export const GENERIC_FRAGMENT_HEADER_SIZE = 4;

/**
 * Check a block's delta: every fragment header and payload inside `delta`, every target range
 * inside the page. Returns the number of fragments. Reading them again needs no checks.
 */
export function checkGenericDelta(rec: DecodedRecord, blockId: number, delta: Uint8Array): number {
  let p = 0;
  let n = 0;
  // Each fragment consumes at least its header, so the loop runs at most len/4 times.
  while (p < delta.length) {
    if (delta.length - p < GENERIC_FRAGMENT_HEADER_SIZE)
      throw recordCorruption(rec, `block ${blockId} delta: ${delta.length - p} bytes left at ${p}, shorter than a fragment header`);
    const offset = readU16LE(delta, p);
    const length = readU16LE(delta, p + 2);
    p += GENERIC_FRAGMENT_HEADER_SIZE;
    if (length > delta.length - p)
      throw recordCorruption(rec, `block ${blockId} delta: fragment ${n} of ${length} bytes overruns the ${delta.length}-byte delta`);
    if (offset + length > BLCKSZ)
      throw recordCorruption(
        rec,
        `block ${blockId} delta: fragment ${n} at page offset ${offset} of ${length} bytes reaches past the page`,
      );
    p += length;
    n++;
  }
  return n;
}
