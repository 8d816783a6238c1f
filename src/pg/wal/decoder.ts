/**
 * WalStreamDecoder: raw WAL bytes in (page headers included, any chunking), complete,
 * validated, decoded records out. The streaming counterpart of xlogreader.c's
 * XLogDecodeNextRecord + ValidXLogRecordHeader + ValidXLogRecord + DecodeXLogRecord.
 *
 *   feed(chunk) ─► chunk queue ─► next(): page headers checked and dropped,
 *                                         record bytes gathered, header/CRC/structure checked
 *
 *   LSN space   |hdr|rec A ......|pad|rec B ...........│hdr|...rec B cont.|pad|rec C  ...
 *               ^ page start (24-byte header; 40 at a segment start)  ^ next page: XLP_FIRST_IS_CONTRECORD,
 *                                                                       xlp_rem_len = bytes of B left
 *
 * Where records are:
 * - A record starts 8-aligned; a start exactly on a page boundary means "after the header".
 * - Its bytes are contiguous except for the page headers it crosses; the 24-byte header itself
 *   may be split across pages (only xl_tot_len is guaranteed on the first page).
 * - Its end (EndRecPtr, `endLsn`) is the MAXALIGNed position after its last byte; on a page
 *   boundary it is that boundary itself.
 * - XLOG_SWITCH ends the segment: the rest of it is zeros, page headers included, and is
 *   skipped unread; its endLsn is the next segment's start (as xlogreader reports it).
 * - A continuation page flagged XLP_FIRST_IS_OVERWRITE_CONTRECORD means the record being
 *   gathered was torn by a crash: it is dropped (never returned) and decoding restarts after
 *   that page's header, where recovery wrote an XLOG_OVERWRITE_CONTRECORD record.
 *
 * Start: `startLsn` is the LSN of the first byte fed. A page-aligned start begins at a page
 * header, and a continuation (XLP_FIRST_IS_CONTRECORD) there is skipped, over as many pages as
 * it spans (XLogFindNextRecord). Any other start must be a record start. The first record's
 * xl_prev can only be checked to lie before it; every later one must equal the previous start.
 *
 * Copies: a record that lies within one fed chunk and one page is returned as a subarray of
 * that chunk, so a fed buffer must never be reused or modified by the caller afterwards;
 * other records are gathered into one new buffer of xl_tot_len bytes. Consumed chunks are released at once: the decoder holds only
 * unconsumed input plus at most one partial record (<= MAX_RECORD_BYTES, 1 GiB - 1).
 *
 * Errors: anything invalid is a WalDecodeError (code "corrupt") naming the LSN of the page or
 * record and the reason. After one, the decoder is dead: feed() and next() rethrow it, so
 * nothing is ever skipped silently.
 */
import { InvalidArgumentError } from "../../types/errors.js";
import { INVALID_LSN, isValidLsn, type Lsn, lsnAdd, lsnToString } from "../../types/lsn.js";
import {
  DEFAULT_WAL_SEGMENT_SIZE,
  isValidRecordStart,
  isValidWalSegmentSize,
  maxAlign,
  type PageCheckContext,
  parseSystemId,
  readPageHeader,
  SIZE_OF_XLOG_LONG_PHD,
  SIZE_OF_XLOG_RECORD,
  SIZE_OF_XLOG_SHORT_PHD,
  validatePageHeader,
  WalDecodeError,
  XLOG_BLCKSZ,
  XLP_FIRST_IS_CONTRECORD,
  XLP_FIRST_IS_OVERWRITE_CONTRECORD,
} from "./page.js";
import { type DecodedRecord, decodeRecord, MAX_RECORD_BYTES, readTotLen, validateRecordHeader, verifyRecordCrc } from "./record.js";
import { RM_XLOG_ID, XLOG_SWITCH, XLR_RMGR_INFO_MASK } from "./rmgr_ids.js";

export interface WalStreamDecoderOptions {
  /** WAL segment size of the cluster (pg_control / initdb --wal-segsize); default 16 MiB. */
  segmentSizeBytes?: number;
  /**
   * pg_control's system identifier in decimal. Every long page header must carry it. When
   * omitted, the first long header seen sets it and later ones must agree.
   */
  systemId?: string;
}

const EMPTY = new Uint8Array(0);
/** Fully consumed queue slots are compacted away once this many have piled up. */
const COMPACT_AFTER_CHUNKS = 256;

export class WalStreamDecoder {
  readonly segmentSizeBytes: number;

  // Input queue: chunks[head] is read from chunkOff; `pos` is the LSN of that byte.
  private chunks: Uint8Array[] = [];
  private head = 0;
  private chunkOff = 0;
  private availBytes = 0;
  private pos: Lsn;
  /** Bytes to drop before anything else: alignment padding, or a segment's tail after XLOG_SWITCH. */
  private skipBytes = 0;
  /** Still looking for the first record: a continuation at a page start is skipped. */
  private seekingFirst: boolean;
  /** Start of the previous record; null until one is returned (random access: xl_prev < lsn). */
  private prevLsn: Lsn | null = null;
  private endOfLast: Lsn;
  private readonly pageCtx: PageCheckContext;

  // The record being gathered across pages or chunks (recBuf null when none).
  private recBuf: Uint8Array | null = null;
  private recStart: Lsn = INVALID_LSN;
  private recTotLen = 0;
  private recGot = 0;
  private recHeaderChecked = false;

  /** peek() result: `n` bytes at the read position are peekBuf[peekOff, peekOff + n). */
  private peekBuf: Uint8Array = EMPTY;
  private peekOff = 0;
  private readonly scratch = new Uint8Array(SIZE_OF_XLOG_LONG_PHD);

  private failure: Error | null = null;

  constructor(startLsn: Lsn, opts: WalStreamDecoderOptions = {}) {
    const segSize = opts.segmentSizeBytes ?? DEFAULT_WAL_SEGMENT_SIZE;
    if (!isValidWalSegmentSize(segSize)) {
      throw new InvalidArgumentError(`invalid WAL segment size ${segSize}: must be a power of 2 from 1 MiB to 1 GiB`);
    }
    if (!isValidLsn(startLsn)) throw new InvalidArgumentError(`invalid start LSN ${startLsn}`);
    if (!isValidRecordStart(startLsn, segSize)) {
      throw new InvalidArgumentError(`start LSN ${lsnToString(startLsn)} is neither a page start nor a valid record start`);
    }
    let sysid: { hi: number; lo: number } | null = null;
    if (opts.systemId !== undefined) {
      try {
        sysid = parseSystemId(opts.systemId);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    }
    this.segmentSizeBytes = segSize;
    this.pos = startLsn;
    this.endOfLast = startLsn;
    this.seekingFirst = startLsn % XLOG_BLCKSZ === 0;
    this.pageCtx = { segSizeBytes: segSize, sysid, prevTli: 0 };
  }

  /** End LSN of the last returned record (before any: the start LSN). */
  get lsn(): Lsn {
    return this.endOfLast;
  }

  /** Bytes fed but not yet consumed (for backpressure; excludes a partial record's buffer). */
  get bufferedBytes(): number {
    return this.availBytes;
  }

  /** Append raw WAL bytes that directly follow the previously fed ones. Not copied. */
  feed(bytes: Uint8Array): void {
    if (this.failure !== null) throw this.failure;
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.availBytes += bytes.length;
  }

  /** The next complete record, or null when more bytes are needed. */
  next(): DecodedRecord | null {
    if (this.failure !== null) throw this.failure;
    try {
      return this.step();
    } catch (e) {
      this.failure = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
  }

  private step(): DecodedRecord | null {
    for (;;) {
      if (this.skipBytes > 0) {
        const n = Math.min(this.skipBytes, this.availBytes);
        if (n > 0) this.consume(n);
        this.skipBytes -= n;
        if (this.skipBytes > 0) return null;
      }
      const pageOff = this.pos % XLOG_BLCKSZ;
      if (pageOff === 0) {
        if (!this.pageHeader()) return null;
        continue;
      }

      if (this.recBuf === null) {
        // At a record start. Wait for the whole header when it lies on this page (as
        // xlogreader does) so it is checked before xl_tot_len bytes are waited for or allocated.
        const pageLeft = XLOG_BLCKSZ - pageOff;
        const headerHere = pageLeft >= SIZE_OF_XLOG_RECORD ? SIZE_OF_XLOG_RECORD : 4;
        if (this.availBytes < headerHere) return null;
        this.peek(headerHere);
        const totLen = readTotLen(this.peekBuf, this.peekOff);
        const start = this.pos;
        if (headerHere === SIZE_OF_XLOG_RECORD) {
          validateRecordHeader(this.peekBuf, this.peekOff, start, this.prevLsn);
        } else if (totLen < SIZE_OF_XLOG_RECORD || totLen > MAX_RECORD_BYTES) {
          throw new WalDecodeError(start, `invalid record length: wanted ${SIZE_OF_XLOG_RECORD} to ${MAX_RECORD_BYTES}, got ${totLen}`);
        }
        const chunk = this.chunks[this.head]!;
        const off = this.chunkOff;
        if (totLen <= pageLeft && chunk.length - off >= totLen) {
          // Fast path: the record is contiguous in the current chunk; no copy.
          const rec = chunk.subarray(off, off + totLen);
          this.consume(totLen);
          return this.finish(rec, start);
        }
        // Not zero-filled (every byte is overwritten before the record is returned), and
        // viewed as a plain Uint8Array: Buffer's own subarray() is several times slower.
        const mem = Buffer.allocUnsafe(totLen);
        this.recBuf = new Uint8Array(mem.buffer, mem.byteOffset, totLen);
        this.recStart = start;
        this.recTotLen = totLen;
        this.recGot = 0;
        this.recHeaderChecked = headerHere === SIZE_OF_XLOG_RECORD;
      }

      // Gather the record up to the end of this page or of the input.
      const pageLeft = XLOG_BLCKSZ - (this.pos % XLOG_BLCKSZ);
      const n = Math.min(this.recTotLen - this.recGot, pageLeft, this.availBytes);
      if (n === 0) return null;
      this.copyOut(this.recBuf, this.recGot, n);
      this.recGot += n;
      if (!this.recHeaderChecked && this.recGot >= SIZE_OF_XLOG_RECORD) {
        validateRecordHeader(this.recBuf, 0, this.recStart, this.prevLsn);
        this.recHeaderChecked = true;
      }
      if (this.recGot === this.recTotLen) {
        const rec = this.recBuf;
        this.recBuf = null;
        return this.finish(rec, this.recStart);
      }
    }
  }

  /** Check the CRC, decode, and position the stream after the record (pos = its last byte + 1). */
  private finish(rec: Uint8Array, start: Lsn): DecodedRecord {
    verifyRecordCrc(rec, start);
    const endPos = this.pos;
    let endLsn = maxAlign(endPos) as Lsn;
    if (rec[17] === RM_XLOG_ID && (rec[16]! & XLR_RMGR_INFO_MASK) === XLOG_SWITCH) {
      // The rest of the segment is zeros, page headers included: read nothing of it.
      endLsn = (Math.ceil(endPos / this.segmentSizeBytes) * this.segmentSizeBytes) as Lsn;
    }
    const decoded = decodeRecord(rec, start, endLsn);
    this.skipBytes = endLsn - endPos;
    this.prevLsn = start;
    this.endOfLast = endLsn;
    return decoded;
  }

  /** Read and check the page header at `pos` (a page start). False when more bytes are needed. */
  private pageHeader(): boolean {
    const pageLsn = this.pos;
    const hdrSize = pageLsn % this.segmentSizeBytes === 0 ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD;
    if (this.availBytes < hdrSize) return false;
    this.peek(hdrSize);
    const hdr = readPageHeader(this.peekBuf, this.peekOff);
    validatePageHeader(hdr, pageLsn, this.pageCtx);
    if (hdr.isLong && this.pageCtx.sysid === null) this.pageCtx.sysid = { hi: hdr.sysidHi, lo: hdr.sysidLo };
    this.pageCtx.prevTli = hdr.tli;
    this.consume(hdrSize);
    const usable = XLOG_BLCKSZ - hdrSize;
    const isCont = (hdr.info & XLP_FIRST_IS_CONTRECORD) !== 0;

    if (this.recBuf !== null) {
      if ((hdr.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD) !== 0) {
        // The record being gathered was torn by a crash and recovery wrote an
        // OVERWRITE_CONTRECORD record here instead: drop it and read on from this page,
        // where a record must start (xlogreader restarts there the same way).
        this.recBuf = null;
        if (isCont) throw new WalDecodeError(pageLsn, `contrecord is requested by ${lsnToString(this.pos)}`);
        return true;
      }
      if (!isCont) {
        throw new WalDecodeError(pageLsn, `there is no contrecord flag, but the record at ${lsnToString(this.recStart)} continues`);
      }
      const left = this.recTotLen - this.recGot;
      if (hdr.remLen === 0 || hdr.remLen !== left) {
        throw new WalDecodeError(
          pageLsn,
          `invalid contrecord length ${hdr.remLen} (expected ${left}) for the record at ${lsnToString(this.recStart)}`,
        );
      }
    } else if (this.seekingFirst) {
      if (isCont) {
        // The tail of a record that started before our first byte: skip it (it may fill
        // this whole page and go on, in which case the next page says so again).
        this.seekingFirst = hdr.remLen >= usable;
        this.skipBytes = hdr.remLen >= usable ? usable : maxAlign(hdr.remLen);
      } else {
        this.seekingFirst = false;
      }
    } else if (isCont) {
      throw new WalDecodeError(pageLsn, `contrecord is requested by ${lsnToString(this.pos)}`);
    }
    return true;
  }

  /** Make `n` (<= 40, <= availBytes) bytes at the read position addressable via peekBuf/peekOff. */
  private peek(n: number): void {
    const c = this.chunks[this.head]!;
    if (c.length - this.chunkOff >= n) {
      this.peekBuf = c;
      this.peekOff = this.chunkOff;
      return;
    }
    let got = 0;
    let i = this.head;
    let off = this.chunkOff;
    while (got < n) {
      const ch = this.chunks[i]!;
      const take = Math.min(ch.length - off, n - got);
      for (let k = 0; k < take; k++) this.scratch[got + k] = ch[off + k]!;
      got += take;
      i++;
      off = 0;
    }
    this.peekBuf = this.scratch;
    this.peekOff = 0;
  }

  /** Drop `n` (<= availBytes) bytes from the front of the queue. */
  private consume(n: number): void {
    this.availBytes -= n;
    this.pos = lsnAdd(this.pos, n);
    while (n > 0) {
      const c = this.chunks[this.head]!;
      const left = c.length - this.chunkOff;
      if (n < left) {
        this.chunkOff += n;
        return;
      }
      n -= left;
      this.releaseHead();
    }
  }

  /** Copy `n` (<= availBytes) bytes from the front of the queue to dst[dstOff..] and drop them. */
  private copyOut(dst: Uint8Array, dstOff: number, n: number): void {
    this.availBytes -= n;
    this.pos = lsnAdd(this.pos, n);
    while (n > 0) {
      const c = this.chunks[this.head]!;
      const left = c.length - this.chunkOff;
      const take = Math.min(n, left);
      dst.set(c.subarray(this.chunkOff, this.chunkOff + take), dstOff);
      dstOff += take;
      n -= take;
      if (take < left) {
        this.chunkOff += take;
        return;
      }
      this.releaseHead();
    }
  }

  private releaseHead(): void {
    this.chunks[this.head] = EMPTY; // let the consumed chunk go
    this.head++;
    this.chunkOff = 0;
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
    } else if (this.head >= COMPACT_AFTER_CHUNKS) {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }
}
