/**
 * Integer reads and writes on a Uint8Array, the byte order in every name: `LE` for
 * PostgreSQL's on-disk and WAL integers (little-endian on the platforms PostgreSQL 15 runs
 * on here), `BE` for network order (the PostgreSQL wire protocol, pagestream) and our own
 * layer-file formats. The one place decoders, redo, codecs and layer files take them from.
 *
 * Invariants: plain functions on the byte array (no DataView, no allocation, no BigInt), so
 * they are fit for the decoding, redo and GetPage hot paths. They do not check bounds: the
 * caller has checked that `o .. o + size` lies inside `b` (an out-of-range read would be a
 * silent 0 via `undefined | 0`, which the callers' length checks rule out). Unaligned offsets
 * are fine. 64-bit values are numbers: exact below 2^53, which the callers check or assert.
 */
import { assert } from "./assert.js";

const TWO_32 = 0x1_0000_0000;
/** The largest high word of a u64 that still gives a safe integer (2^53 - 1 >> 32). */
const MAX_SAFE_HI = 0x1f_ffff;

// ─── little-endian ───────────────────────────────────────────────────────────────────────

/** uint16 at `o`, little-endian. */
export function readU16LE(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

/** uint32 at `o`, little-endian. */
export function readU32LE(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/**
 * int64 at `o` (e.g. TimestampTz), little-endian, as a number: the high word signed, exact
 * while |value| < 2^53, which holds for every timestamp PostgreSQL writes.
 */
export function readI64LE(b: Uint8Array, o: number): number {
  return (b[o + 4]! | (b[o + 5]! << 8) | (b[o + 6]! << 16) | (b[o + 7]! << 24)) * TWO_32 + readU32LE(b, o);
}

/** Stores the low 16 bits of `v` at `o`, little-endian. */
export function writeU16LE(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

/** Stores the low 32 bits of `v` at `o`, little-endian. */
export function writeU32LE(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

// ─── big-endian ──────────────────────────────────────────────────────────────────────────

/** uint16 at `o`, big-endian. */
export function readU16BE(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

/** uint32 at `o`, big-endian. */
export function readU32BE(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** Stores the low 16 bits of `v` at `o`, big-endian. */
export function writeU16BE(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

/** Stores the low 32 bits of `v` at `o`, big-endian. */
export function writeU32BE(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** Stores a safe non-negative integer as a big-endian u64 (high word, then low word). */
export function writeU64BE(b: Uint8Array, o: number, v: number): void {
  assert(Number.isSafeInteger(v) && v >= 0, "writeU64BE: not a safe non-negative integer");
  writeU32BE(b, o, Math.floor(v / TWO_32));
  writeU32BE(b, o + 4, v % TWO_32);
}

/** A big-endian u64 at `o`; -1 when it does not fit a safe integer (the caller reports corruption). */
export function readU64BEOrNeg(b: Uint8Array, o: number): number {
  const hi = readU32BE(b, o);
  if (hi > MAX_SAFE_HI) return -1;
  return hi * TWO_32 + readU32BE(b, o + 4);
}
