/**
 * pglz decompression (src/common/pg_lzcompress.c: pglz_decompress with check_complete = true),
 * the method behind wal_compression = pglz and default_toast_compression = pglz. Also
 * DecompressError, the typed error of every decompressor under src/pg/compress.
 *
 * The stream is raw (no header, no length): the caller knows the decompressed size.
 *
 *   repeat: one control byte, then up to 8 items, bit 0 (LSB) first
 *     bit = 0: a literal byte                              [b]
 *     bit = 1: a match tag, 2 or 3 bytes                  [b0 b1] or [b0 b1 b2]
 *              len = (b0 & 0x0F) + 3; if len == 18 then len += b2   (3..273)
 *              off = ((b0 & 0xF0) << 4) | b1                        (1..4095)
 *              copy len bytes from off back in the output; the regions may overlap,
 *              which repeats the last `off` bytes (run-length encoding falls out of it)
 *
 * Termination, exactly as PostgreSQL: decoding stops when the input or the output is used
 * up; a match running past the output end is clamped; then both must be exhausted at once.
 * Every read and write is bounds-checked first, so corrupt input ends in DecompressError,
 * never in an out-of-bounds access or a loop that does not advance (off = 0 is refused).
 */
import { PageserverError } from "../../types/errors.js";

/** Compressed data that does not decode to exactly the expected bytes. Code "corrupt". */
export class DecompressError extends PageserverError {
  readonly method: string;
  constructor(method: string, reason: string) {
    super("corrupt", `${method} decompression failed: ${reason}`);
    this.method = method;
  }
}

/** Decompress `src` into exactly `rawSizeBytes` new bytes. */
export function pglzDecompress(src: Uint8Array, rawSizeBytes: number): Uint8Array {
  const out = new Uint8Array(rawSizeBytes);
  pglzDecompressInto(src, out, 0, rawSizeBytes);
  return out;
}

/** Decompress `src` into `dst[dstOff, dstOff + rawSizeBytes)`, which it must fill exactly. */
export function pglzDecompressInto(src: Uint8Array, dst: Uint8Array, dstOff: number, rawSizeBytes: number): void {
  if (!(Number.isInteger(rawSizeBytes) && rawSizeBytes >= 0 && dstOff >= 0 && dstOff + rawSizeBytes <= dst.length)) {
    throw new RangeError(`pglz: bad destination range ${dstOff}+${rawSizeBytes} of ${dst.length}`);
  }
  const srcEnd = src.length;
  const dstStart = dstOff;
  const dstEnd = dstOff + rawSizeBytes;
  let sp = 0;
  let dp = dstOff;
  while (sp < srcEnd && dp < dstEnd) {
    let ctrl = src[sp++]!;
    for (let bit = 0; bit < 8 && sp < srcEnd && dp < dstEnd; bit++) {
      if ((ctrl & 1) !== 0) {
        if (sp + 2 > srcEnd) throw new DecompressError("pglz", `match tag truncated at input offset ${sp}`);
        const b0 = src[sp]!;
        let len = (b0 & 0x0f) + 3;
        const off = ((b0 & 0xf0) << 4) | src[sp + 1]!;
        sp += 2;
        if (len === 18) {
          if (sp >= srcEnd) throw new DecompressError("pglz", `match length byte missing at input offset ${sp}`);
          len += src[sp++]!;
        }
        if (off === 0 || off > dp - dstStart) {
          throw new DecompressError("pglz", `match offset ${off} at output offset ${dp - dstStart} reaches before the start`);
        }
        if (len > dstEnd - dp) len = dstEnd - dp;
        if (off >= len) {
          dst.copyWithin(dp, dp - off, dp - off + len);
          dp += len;
        } else {
          // Overlapping copy: byte by byte repeats the last `off` bytes, as memcpy-in-steps does in C.
          const end = dp + len;
          for (; dp < end; dp++) dst[dp] = dst[dp - off]!;
        }
      } else {
        dst[dp++] = src[sp++]!;
      }
      ctrl >>= 1;
    }
  }
  if (dp !== dstEnd) {
    throw new DecompressError("pglz", `produced ${dp - dstStart} bytes, expected ${rawSizeBytes}`);
  }
  if (sp !== srcEnd) {
    throw new DecompressError("pglz", `${srcEnd - sp} trailing input bytes after ${rawSizeBytes} output bytes`);
  }
}
