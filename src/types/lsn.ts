/**
 * Lsn: a PostgreSQL WAL position held in a plain JS number, exact up to 2^53 bytes of WAL.
 * Anything above Number.MAX_SAFE_INTEGER is refused at the boundary (parse, wire decode),
 * so arithmetic inside the process never loses precision and never needs BigInt.
 *
 * Text form as PostgreSQL prints it: upper-case hex halves without padding, `0/16B3748`.
 *
 * Lsn is branded like Key and the ids: a block number, a byte count or a relation size can't be
 * passed where an LSN goes. A number becomes an Lsn where it comes from outside through a checked
 * parse (`parseLsn`, `asLsn`, the readers below), by WAL arithmetic (`lsnAdd`, `lsnMax`, `lsnMin`),
 * or by a plain `as Lsn` cast where a decoder on a hot path (per record, per value, per GetPage)
 * already knows the value is in range, or for the sentinels -1 and +Infinity.
 */
import { InvalidArgumentError } from "./errors.js";

export type Lsn = number & { readonly __brand: "Lsn" };

export const INVALID_LSN = 0 as Lsn;
/** The largest LSN we can represent; also used as "latest" in requests. */
export const MAX_LSN = Number.MAX_SAFE_INTEGER as Lsn;

const TWO_32 = 0x1_0000_0000;

export function isValidLsn(x: unknown): x is Lsn {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

/** A number from outside (config, JSON, a test) as an Lsn: refuses anything but a safe non-negative integer. */
export function asLsn(n: number): Lsn {
  if (!isValidLsn(n)) throw new InvalidArgumentError(`invalid LSN ${n}: expected a non-negative integer below 2^53`);
  return n;
}

/** The LSN `bytes` of WAL after `lsn` (bytes may be negative to step back). */
export function lsnAdd(lsn: Lsn, bytes: number): Lsn {
  return (lsn + bytes) as Lsn;
}

export function lsnMax(a: Lsn, b: Lsn): Lsn {
  return a >= b ? a : b;
}

export function lsnMin(a: Lsn, b: Lsn): Lsn {
  return a <= b ? a : b;
}

export function lsnToString(lsn: Lsn): string {
  const hi = Math.floor(lsn / TWO_32);
  const lo = lsn - hi * TWO_32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

const LSN_RE = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): Lsn {
  const m = LSN_RE.exec(text);
  if (m === null) throw new InvalidArgumentError(`invalid LSN '${text}': expected X/Y in hex`);
  const lsn = Number.parseInt(m[1]!, 16) * TWO_32 + Number.parseInt(m[2]!, 16);
  if (!Number.isSafeInteger(lsn)) throw new InvalidArgumentError(`LSN '${text}' is beyond 2^53`);
  return lsn as Lsn;
}

/** From a u64 stored as two u32 halves (as pd_lsn is, and as our file formats store it). */
export function lsnFromParts(hi: number, lo: number): Lsn {
  const lsn = hi * TWO_32 + lo;
  if (!Number.isSafeInteger(lsn)) throw new InvalidArgumentError(`LSN ${hi.toString(16)}/${lo.toString(16)} is beyond 2^53`);
  return lsn as Lsn;
}

export function lsnHi(lsn: Lsn): number {
  return Math.floor(lsn / TWO_32);
}

export function lsnLo(lsn: Lsn): number {
  return lsn % TWO_32;
}

/** Read a little-endian u64 LSN (PostgreSQL's byte order) without BigInt. */
export function readLsnLE(buf: Uint8Array, off: number): Lsn {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return lsnFromParts(dv.getUint32(off + 4, true), dv.getUint32(off, true));
}

/** Read a big-endian u64 LSN (our file formats and the replication protocol) without BigInt. */
export function readLsnBE(buf: Uint8Array, off: number): Lsn {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return lsnFromParts(dv.getUint32(off, false), dv.getUint32(off + 4, false));
}

export function writeLsnBE(buf: Uint8Array, off: number, lsn: Lsn): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  dv.setUint32(off, Math.floor(lsn / TWO_32), false);
  dv.setUint32(off + 4, lsn % TWO_32, false);
}

export function writeLsnLE(buf: Uint8Array, off: number, lsn: Lsn): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  dv.setUint32(off, lsn % TWO_32, true);
  dv.setUint32(off + 4, Math.floor(lsn / TWO_32), true);
}

/** Fixed-width form for file names: 16 upper-case hex digits, sorts like the number. */
export function lsnToHex16(lsn: Lsn): string {
  return lsnHi(lsn).toString(16).toUpperCase().padStart(8, "0") + lsnLo(lsn).toString(16).toUpperCase().padStart(8, "0");
}

export function lsnFromHex16(text: string): Lsn {
  if (!/^[0-9A-F]{16}$/.test(text)) throw new InvalidArgumentError(`invalid LSN '${text}' in a file name`);
  return lsnFromParts(Number.parseInt(text.slice(0, 8), 16), Number.parseInt(text.slice(8), 16));
}
