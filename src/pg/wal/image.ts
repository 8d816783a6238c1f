/**
 * Full-page images: from the stored form in a block reference back to the 8192-byte page
 * (RestoreBlockImage in xlogreader.c).
 *
 *   stored  = compress?( page[0, hole_offset) ‖ page[hole_offset + hole_length, 8192) )
 *   page    = [0, hole_offset)  stored prefix
 *             [hole_offset, hole_offset + hole_length)  zeros (the hole: pd_lower..pd_upper)
 *             [hole_offset + hole_length, 8192)  stored suffix
 *
 * bimg_info picks the method: 0x04 pglz, 0x08 LZ4 (raw block), 0x10 zstd (one frame); none
 * means stored raw. Decompression must yield exactly 8192 - hole_length bytes; anything else
 * (a short or long result, two method bits at once, a hole beyond the page) is a
 * WalDecodeError, never a wrong page. Stricter than PostgreSQL, which for LZ4 and zstd only
 * checks for failure, not for the exact size.
 *
 * Nothing here touches pd_lsn: whether and how to set it is redo's business (an APPLY image
 * gets the record's EndRecPtr unless the page is new; a consistency-check image keeps the
 * previous LSN).
 */
import { DecompressError, pglzDecompressInto } from "../compress/pglz.js";
import { lz4DecompressBlockInto } from "../compress/lz4.js";
import { zstdDecompressInto } from "../compress/zstd.js";
import { assert } from "../../types/assert.js";
import type { Lsn } from "../../types/lsn.js";
import { BLCKSZ } from "../consts.js";
import { WalDecodeError } from "./page.js";
import {
  BKPIMAGE_COMPRESS_LZ4,
  BKPIMAGE_COMPRESS_MASK,
  BKPIMAGE_COMPRESS_PGLZ,
  BKPIMAGE_COMPRESS_ZSTD,
  type BlockImage,
} from "./record.js";

/** The compression method named by bimg_info: "none", "pglz", "lz4", "zstd" or "invalid". */
export function imageCompression(bimgInfo: number): "none" | "pglz" | "lz4" | "zstd" | "invalid" {
  switch (bimgInfo & BKPIMAGE_COMPRESS_MASK) {
    case 0:
      return "none";
    case BKPIMAGE_COMPRESS_PGLZ:
      return "pglz";
    case BKPIMAGE_COMPRESS_LZ4:
      return "lz4";
    case BKPIMAGE_COMPRESS_ZSTD:
      return "zstd";
    default:
      return "invalid";
  }
}

/**
 * Rebuild the 8192-byte page of a block reference's image. Writes into `out` when given
 * (it must be exactly 8192 bytes, e.g. a cache slot) and returns it. `recordLsn` only names
 * the record in error messages.
 */
export function restorePageImage(
  block: { image?: BlockImage | undefined; id?: number },
  out?: Uint8Array,
  recordLsn: Lsn | null = null,
): Uint8Array {
  const img = block.image;
  const what = block.id === undefined ? "image" : `image of block ${block.id}`;
  if (img === undefined) throw new WalDecodeError(recordLsn, `block ${block.id ?? "?"} has no image`);
  const page = out ?? new Uint8Array(BLCKSZ);
  assert(page.length === BLCKSZ, "restorePageImage: output must be one page");
  const { bytes, holeOffset, holeLength } = img;
  if (holeOffset < 0 || holeLength < 0 || holeOffset + holeLength > BLCKSZ) {
    throw new WalDecodeError(recordLsn, `${what}: hole offset ${holeOffset} length ${holeLength} is outside the page`);
  }
  const storedPageBytes = BLCKSZ - holeLength;
  const method = imageCompression(img.bimgInfo);
  try {
    switch (method) {
      case "none":
        if (bytes.length !== storedPageBytes) {
          throw new WalDecodeError(recordLsn, `${what}: ${bytes.length} stored bytes, expected ${storedPageBytes}`);
        }
        page.set(bytes);
        break;
      case "pglz":
        pglzDecompressInto(bytes, page, 0, storedPageBytes);
        break;
      case "lz4":
        lz4DecompressBlockInto(bytes, page, 0, storedPageBytes);
        break;
      case "zstd":
        zstdDecompressInto(bytes, page, 0, storedPageBytes);
        break;
      default:
        throw new WalDecodeError(
          recordLsn,
          `${what}: compressed with unknown or several methods (bimg_info 0x${img.bimgInfo.toString(16)})`,
        );
    }
  } catch (e) {
    if (e instanceof DecompressError) throw new WalDecodeError(recordLsn, `${what}: ${e.message}`);
    throw e;
  }
  if (holeLength > 0) {
    // Open the hole: move the suffix up (copyWithin is a memmove), then zero the hole.
    page.copyWithin(holeOffset + holeLength, holeOffset, storedPageBytes);
    page.fill(0, holeOffset, holeOffset + holeLength);
  }
  return page;
}
