/**
 * A small WAL writer for tests: lays hand-made records out into PostgreSQL 15 WAL pages
 * exactly as XLogInsert would (8-aligned starts, page headers, XLP_FIRST_IS_CONTRECORD with
 * xlp_rem_len on continuation pages, long headers at segment starts, xl_prev chain, CRC), so
 * the decoder's edge cases (headers split across pages, torn records, bad flags) can be
 * produced on purpose. Records are built from fragments by `buildRecord`.
 *
 *   const w = new WalWriter(0x1000000, 1 << 20);
 *   const lsn = w.add(mainDataRecord(100));
 *   const bytes = w.bytes();
 */
import {
  SIZE_OF_XLOG_LONG_PHD,
  SIZE_OF_XLOG_SHORT_PHD,
  XLOG_BLCKSZ,
  XLOG_PAGE_MAGIC,
  XLP_FIRST_IS_CONTRECORD,
  XLP_LONG_HEADER,
} from "../../src/pg/wal/page.js";
import { computeRecordCrc } from "../../src/pg/wal/record.js";
import { asLsn, type Lsn } from "../../src/types/lsn.js";

export const TEST_SYSID = { hi: 0x7300_1234, lo: 0x89ab_cdef };

export interface RecordSpec {
  rmid?: number;
  info?: number;
  xid?: number;
  /** Fragment headers + payloads, i.e. the record after its 24-byte header. */
  body: Uint8Array;
}

function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

function putU64(b: Uint8Array, o: number, v: number): void {
  putU32(b, o, v % 0x1_0000_0000);
  putU32(b, o + 4, Math.floor(v / 0x1_0000_0000));
}

/** A whole record: header (tot_len, xid, prev, info, rmid, CRC) + body. */
export function buildRecord(spec: RecordSpec, prev: Lsn): Uint8Array {
  const rec = new Uint8Array(24 + spec.body.length);
  putU32(rec, 0, rec.length);
  putU32(rec, 4, spec.xid ?? 0);
  putU64(rec, 8, prev);
  rec[16] = spec.info ?? 0;
  rec[17] = spec.rmid ?? 0;
  rec.set(spec.body, 24);
  putU32(rec, 20, computeRecordCrc(rec));
  return rec;
}

/** Concatenate byte fragments given as arrays or Uint8Arrays. */
export function bytesOf(...parts: (Uint8Array | number[])[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function u16le(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff];
}
export function u32le(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** Body of a record with only main data of `len` bytes (pattern-filled). */
export function mainDataBody(len: number, seed = 1): Uint8Array {
  const data = new Uint8Array(len);
  for (let i = 0; i < len; i++) data[i] = (i * 31 + seed * 7) & 0xff;
  if (len === 0) return new Uint8Array(0);
  return len <= 255 ? bytesOf([255, len], data) : bytesOf([254, ...u32le(len)], data);
}

export class WalWriter {
  private buf: Uint8Array;
  private used = 0;
  readonly base: Lsn;
  readonly segSize: number;
  prev: Lsn = asLsn(0);
  /** xlp_info bits ORed into the next page header written (then cleared). */
  nextPageExtraFlags = 0;
  /** xlp_tli of the pages written from now on. */
  tli = 1;

  constructor(base: Lsn, segSize: number, prevOfFirst = 0) {
    if (base % XLOG_BLCKSZ !== 0) throw new Error("WalWriter base must be page-aligned");
    this.base = base;
    this.segSize = segSize;
    this.prev = asLsn(prevOfFirst);
    this.buf = new Uint8Array(1 << 16);
  }

  get pos(): Lsn {
    return asLsn(this.base + this.used);
  }

  private ensure(n: number): void {
    if (this.used + n <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < this.used + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.used));
    this.buf = nb;
  }

  private put(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.used);
    this.used += bytes.length;
  }

  private zeros(n: number): void {
    this.ensure(n);
    this.buf.fill(0, this.used, this.used + n);
    this.used += n;
  }

  private pageHeader(remLen: number): void {
    const pageLsn = this.pos;
    const long = pageLsn % this.segSize === 0;
    const h = new Uint8Array(long ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD);
    const info = (remLen > 0 ? XLP_FIRST_IS_CONTRECORD : 0) | (long ? XLP_LONG_HEADER : 0) | this.nextPageExtraFlags;
    this.nextPageExtraFlags = 0;
    h[0] = XLOG_PAGE_MAGIC & 0xff;
    h[1] = XLOG_PAGE_MAGIC >>> 8;
    h[2] = info & 0xff;
    h[3] = info >>> 8;
    putU32(h, 4, this.tli);
    putU64(h, 8, pageLsn);
    putU32(h, 16, remLen);
    if (long) {
      putU32(h, 24, TEST_SYSID.lo);
      putU32(h, 28, TEST_SYSID.hi);
      putU32(h, 32, this.segSize);
      putU32(h, 36, XLOG_BLCKSZ);
    }
    this.put(h);
  }

  /** Write raw record bytes at the next aligned position; returns the start LSN. */
  addRaw(rec: Uint8Array, opts: { stopAfterBytes?: number } = {}): Lsn {
    this.zeros((8 - (this.used % 8)) % 8);
    if (this.pos % XLOG_BLCKSZ === 0) this.pageHeader(0);
    const start = this.pos;
    const limit = opts.stopAfterBytes ?? rec.length;
    let off = 0;
    while (off < limit) {
      if (this.pos % XLOG_BLCKSZ === 0) this.pageHeader(rec.length - off);
      const n = Math.min(limit - off, XLOG_BLCKSZ - (this.pos % XLOG_BLCKSZ));
      this.put(rec.subarray(off, off + n));
      off += n;
    }
    return start;
  }

  /** Build a record chained to the previous one and write it; returns its start LSN. */
  add(spec: RecordSpec): Lsn {
    this.zeros((8 - (this.used % 8)) % 8);
    if (this.pos % XLOG_BLCKSZ === 0) this.pageHeader(0);
    const rec = buildRecord(spec, this.prev);
    const start = this.addRaw(rec);
    this.prev = start;
    return start;
  }

  /**
   * Write the first `bytesWritten` bytes of a record and stop, as a crash would leave it; the
   * rest of the page is zero. The next page header carries XLP_FIRST_IS_OVERWRITE_CONTRECORD
   * when `overwrite` is set. xl_prev of the next record stays the record before the torn one.
   */
  addTorn(spec: RecordSpec, bytesWritten: number, overwriteFlag: number): Lsn {
    this.zeros((8 - (this.used % 8)) % 8);
    if (this.pos % XLOG_BLCKSZ === 0) this.pageHeader(0);
    const rec = buildRecord(spec, this.prev);
    const start = this.addRaw(rec, { stopAfterBytes: bytesWritten });
    this.zeros((XLOG_BLCKSZ - (this.pos % XLOG_BLCKSZ)) % XLOG_BLCKSZ);
    this.nextPageExtraFlags = overwriteFlag;
    return start;
  }

  /** Zero-fill up to `lsn` (as XLOG_SWITCH leaves a segment: no page headers). */
  zeroFillTo(lsn: Lsn): void {
    if (lsn < this.pos) throw new Error("zeroFillTo backwards");
    this.zeros(lsn - this.pos);
  }

  /** Pad with zeros to 8-alignment (where the next record would start). */
  align(): void {
    this.zeros((8 - (this.used % 8)) % 8);
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.used);
  }
}
