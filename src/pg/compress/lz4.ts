/**
 * Raw LZ4 block decoder (the block format of LZ4_compress_default / LZ4_decompress_safe; no
 * frame, no checksum), as PostgreSQL stores wal_compression = lz4 images and lz4-compressed
 * TOAST values. Hand-written; the caller knows the exact decompressed size.
 *
 *   block    = sequence* last-sequence
 *   sequence = token [literal-length bytes] literals offset [match-length bytes]
 *   token    : high nibble = literal length, low nibble = match length - 4 (MINMATCH)
 *              a nibble of 15 continues with bytes that add 0..255 each, until a byte < 255
 *   offset   : u16 little-endian, 1..65535, distance back from the output position; the
 *              match may overlap its own output (repeats the last `offset` bytes)
 *   last-sequence = token literals, and the input ends right after the literals
 *
 * Strictness: the output must be exactly `rawSizeBytes` and the input must end right after
 * the last literals; any truncation, zero or too-far offset, or overrun is DecompressError.
 * Every index is checked before use, so corrupt input never reads or writes out of bounds,
 * and every loop consumes input, so it cannot hang.
 */
import { DecompressError } from "./pglz.js";

/** Decompress the LZ4 block `src` into exactly `rawSizeBytes` new bytes. */
export function lz4DecompressBlock(src: Uint8Array, rawSizeBytes: number): Uint8Array {
  const out = new Uint8Array(rawSizeBytes);
  lz4DecompressBlockInto(src, out, 0, rawSizeBytes);
  return out;
}

/** Decompress the LZ4 block `src` into `dst[dstOff, dstOff + rawSizeBytes)`, filling it exactly. */
export function lz4DecompressBlockInto(src: Uint8Array, dst: Uint8Array, dstOff: number, rawSizeBytes: number): void {
  if (!(Number.isInteger(rawSizeBytes) && rawSizeBytes >= 0 && dstOff >= 0 && dstOff + rawSizeBytes <= dst.length)) {
    throw new RangeError(`lz4: bad destination range ${dstOff}+${rawSizeBytes} of ${dst.length}`);
  }
  const iend = src.length;
  const ostart = dstOff;
  const oend = dstOff + rawSizeBytes;
  let ip = 0;
  let op = dstOff;
  for (;;) {
    if (ip >= iend) throw new DecompressError("lz4", `input ends at offset ${ip} without final literals`);
    const token = src[ip++]!;

    let litLen = token >>> 4;
    if (litLen === 15) {
      let b: number;
      do {
        if (ip >= iend) throw new DecompressError("lz4", "literal length truncated");
        b = src[ip++]!;
        litLen += b;
      } while (b === 255);
    }
    if (litLen > iend - ip) throw new DecompressError("lz4", `literal run of ${litLen} bytes at input offset ${ip} exceeds the input`);
    if (litLen > oend - op)
      throw new DecompressError("lz4", `literal run of ${litLen} bytes at output offset ${op - ostart} exceeds ${rawSizeBytes} bytes`);
    if (litLen < 32) {
      for (let i = 0; i < litLen; i++) dst[op + i] = src[ip + i]!;
    } else {
      dst.set(src.subarray(ip, ip + litLen), op);
    }
    ip += litLen;
    op += litLen;

    if (ip === iend) break; // the last sequence: literals only

    if (iend - ip < 2) throw new DecompressError("lz4", `match offset truncated at input offset ${ip}`);
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op - ostart) {
      throw new DecompressError("lz4", `match offset ${offset} at output offset ${op - ostart} reaches before the start`);
    }
    let matchLen = token & 15;
    if (matchLen === 15) {
      let b: number;
      do {
        if (ip >= iend) throw new DecompressError("lz4", "match length truncated");
        b = src[ip++]!;
        matchLen += b;
      } while (b === 255);
    }
    matchLen += 4;
    if (matchLen > oend - op)
      throw new DecompressError("lz4", `match of ${matchLen} bytes at output offset ${op - ostart} exceeds ${rawSizeBytes} bytes`);
    op = copyMatch(dst, op, offset, matchLen);
  }
  if (op !== oend) throw new DecompressError("lz4", `produced ${op - ostart} bytes, expected ${rawSizeBytes}`);
}

/**
 * Copy `len` bytes from `offset` back to `op` (the source may overlap the destination, which
 * repeats the last `offset` bytes) and return the new output position. Short copies loop
 * (cheaper than a builtin call); long ones use copyWithin, doubling the copied span when it
 * overlaps so that a run of one repeated byte costs a few calls, not one per byte.
 */
function copyMatch(dst: Uint8Array, op: number, offset: number, len: number): number {
  const end = op + len;
  if (len <= 32) {
    for (; op < end; op++) dst[op] = dst[op - offset]!;
    return end;
  }
  if (offset >= len) {
    dst.copyWithin(op, op - offset, end - offset);
    return end;
  }
  let span = offset;
  while (op < end) {
    const n = Math.min(span, end - op);
    dst.copyWithin(op, op - span, op - span + n);
    op += n;
    span += n;
  }
  return end;
}
