/**
 * Little-endian reads and writes of PostgreSQL's on-disk and WAL integers in a Uint8Array:
 * the one place every WAL decoder, record decoder, page helper and rmgr redo takes them from.
 *
 * Invariants: plain functions on the byte array (no DataView, no allocation, no BigInt), so
 * they are fit for the redo and decoding hot paths. They do not check bounds: the caller has
 * checked that `o .. o + size` lies inside `b` (an out-of-range read would be a silent 0 via
 * `undefined | 0`, which the callers' length checks rule out). Unaligned offsets are fine.
 */

/** uint16 at `o`. */
export function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

/** uint32 at `o`. */
export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/**
 * int64 at `o` (e.g. TimestampTz) as a number: the high word signed, exact while |value| < 2^53,
 * which holds for every timestamp PostgreSQL writes.
 */
export function i64(b: Uint8Array, o: number): number {
  return (b[o + 4]! | (b[o + 5]! << 8) | (b[o + 6]! << 16) | (b[o + 7]! << 24)) * 0x1_0000_0000 + u32(b, o);
}

/** Stores the low 16 bits of `v` at `o`. */
export function setU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

/** Stores the low 32 bits of `v` at `o`. */
export function setU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}
