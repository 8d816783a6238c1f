/**
 * WAL pages and segments of PostgreSQL 15: geometry constants, page headers, their
 * validation (XLogReaderValidatePageHeader), WAL file names, and WalDecodeError, the typed
 * error of everything under src/pg/wal.
 *
 * The WAL is one byte stream addressed by LSN, cut into 8192-byte pages and into segments
 * (16 MiB by default; any power of two from 1 MiB to 1 GiB). Every page starts with a header:
 *
 *   short header (SizeOfXLogShortPHD = 24), every page but a segment's first
 *   off size field
 *    0   2   xlp_magic     0xD110 for PostgreSQL 15
 *    2   2   xlp_info      XLP_* flags below; any other bit makes the page invalid
 *    4   4   xlp_tli       timeline of the first record on the page
 *    8   8   xlp_pageaddr  LSN of the page's first byte
 *   16   4   xlp_rem_len   bytes of a record continued from earlier pages that remain
 *   20   4   (padding)
 *
 *   long header (SizeOfXLogLongPHD = 40), a segment's first page, XLP_LONG_HEADER set
 *    0  24   the short header
 *   24   8   xlp_sysid        pg_control's system identifier
 *   32   4   xlp_seg_size     WAL segment size in bytes
 *   36   4   xlp_xlog_blcksz  8192
 *
 * All integers are little-endian. Invariants enforced here: the magic, no unknown flag bits,
 * pageaddr = the page's LSN, a long header exactly on segment starts and never elsewhere,
 * the long header's seg size / block size / system id, and a timeline that never decreases.
 */
import { PageserverError } from "../../types/errors.js";
import { type Lsn, lsnAdd, lsnFromParts, lsnToString } from "../../types/lsn.js";

export const XLOG_PAGE_MAGIC = 0xd110;
/** Defined in src/pg/consts.ts; re-exported for the WAL modules that take them from here. */
import { MAXIMUM_ALIGNOF, XLOG_BLCKSZ } from "../consts.js";
import { readU16LE, readU32LE } from "../../types/bytes.js";

export { BLCKSZ, XLOG_BLCKSZ } from "../consts.js";
export const SIZE_OF_XLOG_SHORT_PHD = 24;
export const SIZE_OF_XLOG_LONG_PHD = 40;
export const SIZE_OF_XLOG_RECORD = 24;

export const XLP_FIRST_IS_CONTRECORD = 0x0001;
export const XLP_LONG_HEADER = 0x0002;
export const XLP_BKP_REMOVABLE = 0x0004;
export const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008;
export const XLP_ALL_FLAGS = 0x000f;

export const DEFAULT_WAL_SEGMENT_SIZE = 16 * 1024 * 1024;
export const MIN_WAL_SEGMENT_SIZE = 1024 * 1024;
export const MAX_WAL_SEGMENT_SIZE = 1024 * 1024 * 1024;

/**
 * The WAL decoder's error: a record or page at `lsn` is not valid PostgreSQL 15 WAL.
 * Code "corrupt"; the message names the LSN (as PostgreSQL prints it) and the reason.
 * `lsn` is null only where no position is known (an image restored outside a stream).
 */
export class WalDecodeError extends PageserverError {
  readonly lsn: Lsn | null;
  readonly reason: string;
  constructor(lsn: Lsn | null, reason: string) {
    super("corrupt", lsn === null ? `invalid WAL: ${reason}` : `invalid WAL at ${lsnToString(lsn)}: ${reason}`);
    this.lsn = lsn;
    this.reason = reason;
  }
}

export function isValidWalSegmentSize(bytes: number): boolean {
  return Number.isInteger(bytes) && bytes >= MIN_WAL_SEGMENT_SIZE && bytes <= MAX_WAL_SEGMENT_SIZE && (bytes & (bytes - 1)) === 0;
}

/** MAXALIGN: records start and end on 8-byte boundaries. */
export function maxAlign(x: number): number {
  // Not `(x + 7) & ~7`: LSNs exceed 32 bits.
  const r = x % MAXIMUM_ALIGNOF;
  return r === 0 ? x : x + MAXIMUM_ALIGNOF - r;
}

/** Size of the header of the page that starts at `pageLsn` (which must be page-aligned). */
export function pageHeaderSizeAt(pageLsn: Lsn, segSizeBytes: number): number {
  return pageLsn % segSizeBytes === 0 ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD;
}

/**
 * Whether `lsn` may be where a record starts (XRecOffIsValid plus alignment): 8-aligned and
 * not inside a page header. A page-aligned LSN counts: it means "right after the header".
 */
export function isValidRecordStart(lsn: Lsn, segSizeBytes: number): boolean {
  if (lsn % 8 !== 0) return false;
  const pageOff = lsn % XLOG_BLCKSZ;
  if (pageOff === 0) return true;
  return pageOff >= pageHeaderSizeAt(lsnAdd(lsn, -pageOff), segSizeBytes);
}

/** A decoded page header. `sysidHi/Lo`, `segSize`, `blcksz` are 0 on short headers. */
export interface XLogPageHeader {
  magic: number;
  info: number;
  tli: number;
  pageAddr: Lsn;
  remLen: number;
  isLong: boolean;
  sysidHi: number;
  sysidLo: number;
  segSize: number;
  blcksz: number;
}

/**
 * Decode the header at `buf[off..]`: 24 bytes, or 40 when XLP_LONG_HEADER is set (the caller
 * must supply 40 bytes wherever a long header may be, i.e. at segment starts).
 * A pageaddr beyond 2^53 becomes -1 so that validation fails on it with a clear message.
 */
export function readPageHeader(buf: Uint8Array, off: number): XLogPageHeader {
  const info = readU16LE(buf, off + 2);
  const addrHi = readU32LE(buf, off + 12);
  const addrLo = readU32LE(buf, off + 8);
  const pageAddr = addrHi >= 0x20_0000 ? (-1 as Lsn) : lsnFromParts(addrHi, addrLo);
  const isLong = (info & XLP_LONG_HEADER) !== 0;
  return {
    magic: readU16LE(buf, off),
    info,
    tli: readU32LE(buf, off + 4),
    pageAddr,
    remLen: readU32LE(buf, off + 16),
    isLong,
    sysidLo: isLong ? readU32LE(buf, off + 24) : 0,
    sysidHi: isLong ? readU32LE(buf, off + 28) : 0,
    segSize: isLong ? readU32LE(buf, off + 32) : 0,
    blcksz: isLong ? readU32LE(buf, off + 36) : 0,
  };
}

/** The 64-bit system identifier in decimal, as pg_controldata prints it. */
export function systemIdToString(hi: number, lo: number): string {
  return ((BigInt(hi) << 32n) | BigInt(lo)).toString();
}

/** Parse a decimal system identifier into u32 halves (no BigInt arithmetic on any hot path). */
export function parseSystemId(text: string): { hi: number; lo: number } {
  if (!/^[0-9]{1,20}$/.test(text)) throw new RangeError(`invalid system identifier '${text}'`);
  const v = BigInt(text);
  if (v >= 1n << 64n) throw new RangeError(`system identifier '${text}' exceeds 64 bits`);
  return { hi: Number(v >> 32n), lo: Number(v & 0xffff_ffffn) };
}

/** What a page header is checked against. `sysid` null: not checked (nothing known yet). */
export interface PageCheckContext {
  segSizeBytes: number;
  sysid: { hi: number; lo: number } | null;
  /** Timeline of the previous page read, 0 before the first. */
  prevTli: number;
}

/**
 * XLogReaderValidatePageHeader for the page that starts at `pageLsn`. Throws WalDecodeError
 * naming `pageLsn`. Stricter than PostgreSQL in one way: a long header anywhere but a
 * segment start is refused (PostgreSQL never writes one there).
 */
export function validatePageHeader(hdr: XLogPageHeader, pageLsn: Lsn, ctx: PageCheckContext): void {
  if (hdr.magic !== XLOG_PAGE_MAGIC) {
    throw new WalDecodeError(pageLsn, `invalid magic number ${hex4(hdr.magic)} in page header (expected ${hex4(XLOG_PAGE_MAGIC)})`);
  }
  if ((hdr.info & ~XLP_ALL_FLAGS) !== 0) {
    throw new WalDecodeError(pageLsn, `invalid info bits ${hex4(hdr.info)} in page header`);
  }
  const segStart = pageLsn % ctx.segSizeBytes === 0;
  if (hdr.isLong) {
    if (!segStart) throw new WalDecodeError(pageLsn, "long page header on a page that does not start a segment");
    if (ctx.sysid !== null && (hdr.sysidHi !== ctx.sysid.hi || hdr.sysidLo !== ctx.sysid.lo)) {
      throw new WalDecodeError(
        pageLsn,
        `WAL file is from a different database system: WAL file database system identifier is ${systemIdToString(hdr.sysidHi, hdr.sysidLo)}, expected ${systemIdToString(ctx.sysid.hi, ctx.sysid.lo)}`,
      );
    }
    if (hdr.segSize !== ctx.segSizeBytes) {
      throw new WalDecodeError(pageLsn, `incorrect segment size in page header: ${hdr.segSize}, expected ${ctx.segSizeBytes}`);
    }
    if (hdr.blcksz !== XLOG_BLCKSZ) {
      throw new WalDecodeError(pageLsn, `incorrect XLOG_BLCKSZ in page header: ${hdr.blcksz}, expected ${XLOG_BLCKSZ}`);
    }
  } else if (segStart) {
    throw new WalDecodeError(pageLsn, "first page of a segment has no long header");
  }
  if (hdr.pageAddr !== pageLsn) {
    const got = hdr.pageAddr < 0 ? "beyond 2^53" : lsnToString(hdr.pageAddr);
    throw new WalDecodeError(pageLsn, `unexpected pageaddr ${got} in page header`);
  }
  if (hdr.tli < ctx.prevTli) {
    throw new WalDecodeError(pageLsn, `out-of-sequence timeline ID ${hdr.tli} (after ${ctx.prevTli}) in page header`);
  }
}

function hex4(x: number): string {
  return x.toString(16).toUpperCase().padStart(4, "0");
}

/** Segment number of the segment that holds `lsn`. */
export function walSegmentNumber(lsn: Lsn, segSizeBytes: number): number {
  return Math.floor(lsn / segSizeBytes);
}

/** First LSN of segment `segNo`. */
export function walSegmentStart(segNo: number, segSizeBytes: number): Lsn {
  return (segNo * segSizeBytes) as Lsn;
}

/**
 * WAL file name of segment `segNo` on timeline `tli`: `%08X%08X%08X` of (tli,
 * segNo / segmentsPerXLogId, segNo % segmentsPerXLogId), where segmentsPerXLogId = 2^32 / segSize.
 */
export function walFileName(tli: number, segNo: number, segSizeBytes: number): string {
  const perId = 0x1_0000_0000 / segSizeBytes;
  const h = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");
  return h(tli) + h(Math.floor(segNo / perId)) + h(segNo % perId);
}

/** Inverse of walFileName; null when `name` is not a plain WAL segment name. */
export function parseWalFileName(name: string, segSizeBytes: number): { tli: number; segNo: number } | null {
  if (!/^[0-9A-F]{24}$/.test(name)) return null;
  const perId = 0x1_0000_0000 / segSizeBytes;
  const tli = Number.parseInt(name.slice(0, 8), 16);
  const log = Number.parseInt(name.slice(8, 16), 16);
  const seg = Number.parseInt(name.slice(16, 24), 16);
  if (seg >= perId) return null;
  return { tli, segNo: log * perId + seg };
}
