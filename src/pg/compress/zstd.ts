/**
 * zstd decompression for wal_compression = zstd images: PostgreSQL stores one complete zstd
 * frame (ZSTD_compress, level 3) and reads it back with ZSTD_decompress. The decoding itself
 * is fzstd's (pure JS); this module only guards it:
 *
 *   frame = magic 28 B5 2F FD | FHD | [window descriptor] | [dictionary id] | [content size]
 *           | blocks … | [checksum]
 *   FHD bits: 7-6 content-size flag, 5 single segment, 4 unused, 3 reserved (must be 0),
 *             2 checksum flag, 1-0 dictionary-id flag
 *
 * Before fzstd runs, the header is checked so that a corrupt header cannot make it allocate a
 * huge window: no dictionary, a content size (when present) equal to the expected size, and a
 * window of at most 8 MiB otherwise. fzstd's streaming decoder reports each block it
 * produces, so the output is counted exactly (its one-shot form fills a preallocated buffer
 * and cannot tell a short frame from a complete one). Any failure is DecompressError.
 */
import { Decompress } from "fzstd";
import { DecompressError } from "./pglz.js";

const ZSTD_MAGIC = 0xfd2fb528;
const MAX_WINDOW_BYTES = 8 * 1024 * 1024;

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
  let produced = 0;
  let overflow = false;
  const sink = (chunk: Uint8Array): void => {
    if (overflow || chunk.length > rawSizeBytes - produced) {
      overflow = true;
      return;
    }
    dst.set(chunk, dstOff + produced);
    produced += chunk.length;
  };
  try {
    new Decompress(sink).push(src, true);
  } catch (e) {
    throw new DecompressError("zstd", `corrupt frame (${e instanceof Error ? e.message : String(e)})`);
  }
  if (overflow) throw new DecompressError("zstd", `frame decodes to more than ${rawSizeBytes} bytes`);
  if (produced !== rawSizeBytes) throw new DecompressError("zstd", `produced ${produced} bytes, expected ${rawSizeBytes}`);
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
}
