/**
 * zstd decompression for wal_compression = zstd images: PostgreSQL stores one complete zstd
 * frame (ZSTD_compress, level 3) and reads it back with ZSTD_decompress. The decoding itself
 * is libzstd's through node:zlib (Node ≥ 22.15); this module only guards it:
 *
 *   frame = magic 28 B5 2F FD | FHD | [window descriptor] | [dictionary id] | [content size]
 *           | blocks … | [checksum]
 *   FHD bits: 7-6 content-size flag, 5 single segment, 4 unused, 3 reserved (must be 0),
 *             2 checksum flag, 1-0 dictionary-id flag
 *
 * Before libzstd runs, the header is checked so that a corrupt header cannot make it allocate a
 * huge window: no dictionary, a content size (when present) equal to the expected size, and a
 * window of at most 8 MiB otherwise (also passed to libzstd as windowLogMax). The output is
 * capped at the expected size plus one byte, so a frame that decodes to more is told apart
 * from one that decodes exactly. Any failure is DecompressError.
 */
import { constants, zstdDecompressSync } from "node:zlib";
import { DecompressError } from "./pglz.js";

const ZSTD_MAGIC = 0xfd2fb528;
const MAX_WINDOW_LOG = 23;
const MAX_WINDOW_BYTES = 2 ** MAX_WINDOW_LOG;

/** Decompress one zstd frame `src` into exactly `rawSizeBytes` new bytes. */
export function zstdDecompress(src: Uint8Array, rawSizeBytes: number): Uint8Array {
  const out = new Uint8Array(rawSizeBytes);
  zstdDecompressInto(src, out, 0, rawSizeBytes);
  return out;
}

/** Decompress one zstd frame into `dst[dstOff, dstOff + rawSizeBytes)`, filling it exactly. */
export function zstdDecompressInto(src: Uint8Array, dst: Uint8Array, dstOff: number, rawSizeBytes: number): void {
  if (!(Number.isInteger(rawSizeBytes) && rawSizeBytes >= 0 && dstOff >= 0 && dstOff + rawSizeBytes <= dst.length)) {
    throw new RangeError(`zstd: bad destination range ${dstOff}+${rawSizeBytes} of ${dst.length}`);
  }
  checkFrameHeader(src, rawSizeBytes);
  let out: Buffer;
  try {
    out = zstdDecompressSync(src, {
      maxOutputLength: rawSizeBytes + 1,
      params: { [constants.ZSTD_d_windowLogMax]: MAX_WINDOW_LOG },
    });
  } catch (e) {
    if (e instanceof RangeError) throw new DecompressError("zstd", `frame decodes to more than ${rawSizeBytes} bytes`);
    throw new DecompressError("zstd", `corrupt frame (${e instanceof Error ? e.message : String(e)})`);
  }
  if (out.length > rawSizeBytes) throw new DecompressError("zstd", `frame decodes to more than ${rawSizeBytes} bytes`);
  if (out.length !== rawSizeBytes) throw new DecompressError("zstd", `produced ${out.length} bytes, expected ${rawSizeBytes}`);
  dst.set(out, dstOff);
}

function checkFrameHeader(src: Uint8Array, rawSizeBytes: number): void {
  if (src.length < 6) throw new DecompressError("zstd", `frame of ${src.length} bytes is too short`);
  const magic = (src[0]! | (src[1]! << 8) | (src[2]! << 16) | (src[3]! << 24)) >>> 0;
  if (magic !== ZSTD_MAGIC) throw new DecompressError("zstd", `bad frame magic 0x${magic.toString(16)}`);
  const fhd = src[4]!;
  if ((fhd & 0x08) !== 0) throw new DecompressError("zstd", "reserved bit set in frame header");
  if ((fhd & 0x03) !== 0) throw new DecompressError("zstd", "frame needs a dictionary");
  const singleSegment = (fhd & 0x20) !== 0;
  const fcsFlag = fhd >>> 6;
  let pos = 5;
  let windowBytes = 0;
  if (!singleSegment) {
    const wd = src[pos++]!;
    const base = 2 ** (10 + (wd >>> 3));
    windowBytes = base + (base / 8) * (wd & 7);
  }
  const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : 1 << fcsFlag;
  if (pos + fcsBytes > src.length) throw new DecompressError("zstd", "frame header truncated");
  if (fcsBytes > 0) {
    let fcs = 0;
    for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + src[pos + i]!;
    if (fcsBytes === 2) fcs += 256;
    if (fcs !== rawSizeBytes) throw new DecompressError("zstd", `frame content size ${fcs}, expected ${rawSizeBytes}`);
  } else if (windowBytes > MAX_WINDOW_BYTES) {
    throw new DecompressError("zstd", `window of ${windowBytes} bytes exceeds ${MAX_WINDOW_BYTES}`);
  }
  checkFrameLength(src, pos + fcsBytes, (fhd & 0x04) !== 0);
}

/**
 * Walks the block headers to the frame's end: PostgreSQL's ZSTD_decompress refuses bytes after
 * the one frame, while libzstd's stream (what node:zlib runs) would read them as the start of a
 * next frame and stop quietly. Each block header is 3 bytes LE: bit 0 last block, bits 1-2
 * type (raw, RLE, compressed, reserved), bits 3-23 size; an RLE block carries 1 byte.
 */
function checkFrameLength(src: Uint8Array, firstBlock: number, hasChecksum: boolean): void {
  let pos = firstBlock;
  // A frame of n blocks needs at least 3n bytes: the walk ends within src.length / 3 steps.
  for (let blocks = 0; blocks <= src.length / 3; blocks++) {
    if (pos + 3 > src.length) throw new DecompressError("zstd", "frame truncated in a block header");
    const header = src[pos]! | (src[pos + 1]! << 8) | (src[pos + 2]! << 16);
    pos += 3;
    const type = (header >>> 1) & 3;
    if (type === 3) throw new DecompressError("zstd", "reserved block type");
    pos += type === 1 ? 1 : header >>> 3;
    if ((header & 1) === 1) {
      const end = pos + (hasChecksum ? 4 : 0);
      if (end > src.length) throw new DecompressError("zstd", "frame truncated");
      if (end < src.length) throw new DecompressError("zstd", `${src.length - end} bytes after the frame`);
      return;
    }
  }
  throw new DecompressError("zstd", "frame truncated: no last block");
}
