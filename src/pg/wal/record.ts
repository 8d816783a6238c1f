/**
 * One PostgreSQL 15 WAL record, reassembled (page headers removed), decoded the way
 * DecodeXLogRecord (src/backend/access/transam/xlogreader.c) decodes it, with the same
 * validation. The decoded form points into the record bytes (subarrays): nothing is copied.
 *
 *   XLogRecord header (24 bytes, little-endian)
 *   off size field
 *    0   4   xl_tot_len   whole record, header included, page headers excluded
 *    4   4   xl_xid
 *    8   8   xl_prev      start LSN of the previous record
 *   16   1   xl_info      high nibble rmgr-specific, low nibble XLR_INFO_MASK
 *   17   1   xl_rmid
 *   18   2   (padding)
 *   20   4   xl_crc       CRC-32C over bytes [24, tot_len), then over bytes [0, 20)
 *
 *   then fragment headers, each starting with an id byte:
 *     0..32  block reference: u8 id | u8 fork_flags | u16 data_length
 *            [HAS_IMAGE: u16 bimg_len | u16 hole_offset | u8 bimg_info
 *              [compressed && HAS_HOLE: u16 hole_length]]
 *            [!SAME_REL: u32 spcNode | u32 dbNode | u32 relNode]
 *            u32 blkno
 *     252    u32 top-level xid           253  u16 replication origin
 *     254    u32 main data length (last) 255  u8 main data length (last)
 *   then the payloads in fragment order: per block its image (bimg_len bytes) then its data
 *   (data_length), then the main data.
 *
 * Invariants (each violation is a WalDecodeError naming the record's LSN): block ids strictly
 * increase; HAS_DATA iff data_length > 0; the hole/compression combinations PostgreSQL
 * rejects are rejected; SAME_REL needs an earlier block; headers plus payloads consume the
 * record exactly. Stricter than PostgreSQL (which would fail later, at redo): a fork number
 * above 3, an image longer than BLCKSZ, a hole reaching past BLCKSZ.
 */
import { type Lsn, lsnToString } from "../../types/lsn.js";
import { BLCKSZ, MAX_FORKNUM } from "../consts.js";
import { crc32cRange } from "./crc32c.js";
import { SIZE_OF_XLOG_RECORD, WalDecodeError } from "./page.js";
import { isValidRmgrId } from "./rmgr_ids.js";
import { readU16LE, readU32LE } from "../../types/bytes.js";

/** PostgreSQL's record size limit (MaxAllocSize, 1 GiB - 1): anything larger is corrupt. */
export const MAX_RECORD_BYTES = 0x3fff_ffff;

export const XLR_MAX_BLOCK_ID = 32;
export const XLR_BLOCK_ID_DATA_SHORT = 255;
export const XLR_BLOCK_ID_DATA_LONG = 254;
export const XLR_BLOCK_ID_ORIGIN = 253;
export const XLR_BLOCK_ID_TOPLEVEL_XID = 252;

export const BKPBLOCK_FORK_MASK = 0x0f;
export const BKPBLOCK_HAS_IMAGE = 0x10;
export const BKPBLOCK_HAS_DATA = 0x20;
export const BKPBLOCK_WILL_INIT = 0x40;
export const BKPBLOCK_SAME_REL = 0x80;

/** bimg_info bits of PostgreSQL 15 (PG14 used other values for APPLY and compression). */
export const BKPIMAGE_HAS_HOLE = 0x01;
export const BKPIMAGE_APPLY = 0x02;
export const BKPIMAGE_COMPRESS_PGLZ = 0x04;
export const BKPIMAGE_COMPRESS_LZ4 = 0x08;
export const BKPIMAGE_COMPRESS_ZSTD = 0x10;
export const BKPIMAGE_COMPRESS_MASK = 0x1c;

export { MAX_FORKNUM };

export interface RelFileNode {
  spcNode: number;
  dbNode: number;
  relNode: number;
}

/** The 12-byte RelFileNode (spcNode, dbNode, relNode: u32 each) at `b[o]`; the caller checked the length. */
export function readRelFileNode(b: Uint8Array, o: number): RelFileNode {
  return { spcNode: readU32LE(b, o), dbNode: readU32LE(b, o + 4), relNode: readU32LE(b, o + 8) };
}

/** A full-page image as stored: maybe compressed, with its hole removed. */
export interface BlockImage {
  /** The stored bytes (bimg_len of them), a subarray of the record. */
  bytes: Uint8Array;
  holeOffset: number;
  holeLength: number;
  bimgInfo: number;
}

export interface DecodedBlock {
  /** Block reference id, 0..32. */
  id: number;
  /** Shared between the blocks of one record that use SAME_REL: treat as read-only. */
  rnode: RelFileNode;
  forkNum: number;
  blkno: number;
  /** fork_flags as stored. */
  flags: number;
  hasImage: boolean;
  /** BKPIMAGE_APPLY: redo restores this image instead of replaying. */
  applyImage: boolean;
  willInit: boolean;
  hasData: boolean;
  /** The block's redo data (empty when !hasData), a subarray of the record. */
  data: Uint8Array;
  image?: BlockImage;
}

export interface DecodedRecord {
  /** Start LSN (ReadRecPtr). */
  lsn: Lsn;
  /** MAXALIGNed end (EndRecPtr): the page LSN redo sets; the next record starts here. */
  endLsn: Lsn;
  xid: number;
  prev: Lsn;
  info: number;
  rmid: number;
  totLen: number;
  blocks: DecodedBlock[];
  /** The main data, a subarray of the record. */
  mainData: Uint8Array;
  topLevelXid?: number;
  origin?: number;
  /** The whole record, header included, page headers removed. */
  record: Uint8Array;
}

const EMPTY = new Uint8Array(0);

// data_length and bimg_len of each block, by block id, from pass 1 to pass 2 of one
// decodeRecord call (kept out of DecodedBlock's public shape). Decoding is synchronous, so
// two calls never interleave.
const passDataLen = new Int32Array(XLR_MAX_BLOCK_ID + 1);
const passImageLen = new Int32Array(XLR_MAX_BLOCK_ID + 1);

function shortData(lsn: Lsn, dataTotal: number, remaining: number): WalDecodeError {
  return new WalDecodeError(lsn, `record with invalid length (headers announce ${dataTotal} payload bytes, ${remaining} remain)`);
}

/** xl_tot_len of the record whose header starts at `buf[off]` (4 bytes needed). */
export function readTotLen(buf: Uint8Array, off: number): number {
  return readU32LE(buf, off);
}

/** xl_prev of a record header at `buf[off]`; -1 if beyond 2^53 (never valid). */
export function readPrev(buf: Uint8Array, off: number): Lsn {
  const hi = readU32LE(buf, off + 12);
  if (hi >= 0x20_0000) return -1 as Lsn;
  return (hi * 0x1_0000_0000 + readU32LE(buf, off + 8)) as Lsn;
}

/** The CRC stored in a record (xl_crc). */
export function storedRecordCrc(record: Uint8Array): number {
  return readU32LE(record, 20);
}

/** The CRC a record should carry: over [24, tot_len), then over header bytes [0, 20). */
export function computeRecordCrc(record: Uint8Array): number {
  return crc32cRange(record, 0, 20, crc32cRange(record, SIZE_OF_XLOG_RECORD, record.length));
}

/** ValidXLogRecord: throws WalDecodeError naming `lsn` when the CRC does not match. */
export function verifyRecordCrc(record: Uint8Array, lsn: Lsn): void {
  const want = storedRecordCrc(record);
  const got = computeRecordCrc(record);
  if (got !== want) {
    throw new WalDecodeError(lsn, `incorrect resource manager data checksum in record: stored ${hex8(want)}, computed ${hex8(got)}`);
  }
}

function hex8(x: number): string {
  return `0x${x.toString(16).toUpperCase().padStart(8, "0")}`;
}

/**
 * ValidXLogRecordHeader on a header at `buf[off]` (24 bytes): length, rmgr id and prev link.
 * `expectedPrev` is the previous record's start when reading sequentially; null means random
 * access, where only xl_prev < lsn can be checked.
 */
export function validateRecordHeader(buf: Uint8Array, off: number, lsn: Lsn, expectedPrev: Lsn | null): void {
  const totLen = readU32LE(buf, off);
  if (totLen < SIZE_OF_XLOG_RECORD) {
    throw new WalDecodeError(lsn, `invalid record length: wanted ${SIZE_OF_XLOG_RECORD}, got ${totLen}`);
  }
  if (totLen > MAX_RECORD_BYTES) {
    throw new WalDecodeError(lsn, `record length ${totLen} exceeds the maximum of ${MAX_RECORD_BYTES}`);
  }
  const rmid = buf[off + 17]!;
  if (!isValidRmgrId(rmid)) throw new WalDecodeError(lsn, `invalid resource manager ID ${rmid}`);
  const prev = readPrev(buf, off);
  if (expectedPrev === null) {
    if (!(prev >= 0 && prev < lsn)) {
      throw new WalDecodeError(lsn, `record with incorrect prev-link ${prev < 0 ? "beyond 2^53" : lsnToString(prev)}`);
    }
  } else if (prev !== expectedPrev) {
    throw new WalDecodeError(
      lsn,
      `record with incorrect prev-link ${prev < 0 ? "beyond 2^53" : lsnToString(prev)}, expected ${lsnToString(expectedPrev)}`,
    );
  }
}

/**
 * Decode a complete record (header included) that starts at `lsn` and ends at `endLsn`.
 * Checks what DecodeXLogRecord checks plus tot_len = record.length and a valid rmgr id; not
 * the CRC (verifyRecordCrc) nor xl_prev (validateRecordHeader): the stream decoder does those,
 * and records re-read from our own storage were checked on the way in.
 */
export function decodeRecord(record: Uint8Array, lsn: Lsn, endLsn: Lsn): DecodedRecord {
  const len = record.length;
  if (len < SIZE_OF_XLOG_RECORD) throw new WalDecodeError(lsn, `record of ${len} bytes is shorter than its header`);
  const totLen = readU32LE(record, 0);
  if (totLen !== len) throw new WalDecodeError(lsn, `xl_tot_len ${totLen} does not match the ${len} record bytes`);
  const rmid = record[17]!;
  if (!isValidRmgrId(rmid)) throw new WalDecodeError(lsn, `invalid resource manager ID ${rmid}`);

  const blocks: DecodedBlock[] = [];
  let topLevelXid: number | undefined;
  let origin: number | undefined;
  let mainDataLen = 0;
  let maxBlockId = -1;
  let lastRnode: RelFileNode | null = null;

  // Pass 1: fragment headers. `remaining` counts undecoded bytes after `ptr`; `dataTotal`
  // the payload bytes the headers announce so far. Reads are bounds-checked by `need`.
  let ptr = SIZE_OF_XLOG_RECORD;
  let remaining = len - SIZE_OF_XLOG_RECORD;
  let dataTotal = 0;
  while (remaining > dataTotal) {
    const id = record[ptr]!;
    ptr += 1;
    remaining -= 1;
    if (id === XLR_BLOCK_ID_DATA_SHORT) {
      if (remaining < 1) throw shortData(lsn, dataTotal, remaining);
      mainDataLen = record[ptr]!;
      ptr += 1;
      remaining -= 1;
      dataTotal += mainDataLen;
      break; // the main data header is always the last fragment header
    }
    if (id === XLR_BLOCK_ID_DATA_LONG) {
      if (remaining < 4) throw shortData(lsn, dataTotal, remaining);
      mainDataLen = readU32LE(record, ptr);
      ptr += 4;
      remaining -= 4;
      dataTotal += mainDataLen;
      break;
    }
    if (id === XLR_BLOCK_ID_ORIGIN) {
      if (remaining < 2) throw shortData(lsn, dataTotal, remaining);
      origin = readU16LE(record, ptr);
      ptr += 2;
      remaining -= 2;
      continue;
    }
    if (id === XLR_BLOCK_ID_TOPLEVEL_XID) {
      if (remaining < 4) throw shortData(lsn, dataTotal, remaining);
      topLevelXid = readU32LE(record, ptr);
      ptr += 4;
      remaining -= 4;
      continue;
    }
    if (id > XLR_MAX_BLOCK_ID) throw new WalDecodeError(lsn, `invalid block_id ${id}`);
    if (id <= maxBlockId) throw new WalDecodeError(lsn, `out-of-order block_id ${id}`);
    maxBlockId = id;

    if (remaining < 3) throw shortData(lsn, dataTotal, remaining);
    const forkFlags = record[ptr]!;
    const dataLen = readU16LE(record, ptr + 1);
    ptr += 3;
    remaining -= 3;
    const hasImage = (forkFlags & BKPBLOCK_HAS_IMAGE) !== 0;
    const hasData = (forkFlags & BKPBLOCK_HAS_DATA) !== 0;
    if (hasData && dataLen === 0) throw new WalDecodeError(lsn, "BKPBLOCK_HAS_DATA set, but no data included");
    if (!hasData && dataLen !== 0) throw new WalDecodeError(lsn, `BKPBLOCK_HAS_DATA not set, but data length is ${dataLen}`);
    const forkNum = forkFlags & BKPBLOCK_FORK_MASK;
    if (forkNum > MAX_FORKNUM) throw new WalDecodeError(lsn, `invalid fork number ${forkNum} in block ${id}`);
    dataTotal += dataLen;
    passDataLen[id] = dataLen;
    passImageLen[id] = 0;

    let image: BlockImage | undefined;
    let applyImage = false;
    if (hasImage) {
      if (remaining < 5) throw shortData(lsn, dataTotal, remaining);
      const bimgLen = readU16LE(record, ptr);
      const holeOffset = readU16LE(record, ptr + 2);
      const bimgInfo = record[ptr + 4]!;
      ptr += 5;
      remaining -= 5;
      applyImage = (bimgInfo & BKPIMAGE_APPLY) !== 0;
      const compressed = (bimgInfo & BKPIMAGE_COMPRESS_MASK) !== 0;
      const hasHole = (bimgInfo & BKPIMAGE_HAS_HOLE) !== 0;
      let holeLength: number;
      if (compressed) {
        if (hasHole) {
          if (remaining < 2) throw shortData(lsn, dataTotal, remaining);
          holeLength = readU16LE(record, ptr);
          ptr += 2;
          remaining -= 2;
        } else {
          holeLength = 0;
        }
      } else {
        holeLength = BLCKSZ - bimgLen;
      }
      dataTotal += bimgLen;
      passImageLen[id] = bimgLen;
      if (bimgLen > BLCKSZ) throw new WalDecodeError(lsn, `block image length ${bimgLen} exceeds BLCKSZ in block ${id}`);
      if (hasHole && (holeOffset === 0 || holeLength === 0 || bimgLen === BLCKSZ)) {
        throw new WalDecodeError(
          lsn,
          `BKPIMAGE_HAS_HOLE set, but hole offset ${holeOffset} length ${holeLength} block image length ${bimgLen}`,
        );
      }
      if (!hasHole && (holeOffset !== 0 || holeLength !== 0)) {
        throw new WalDecodeError(lsn, `BKPIMAGE_HAS_HOLE not set, but hole offset ${holeOffset} length ${holeLength}`);
      }
      if (compressed && bimgLen === BLCKSZ) {
        throw new WalDecodeError(lsn, `BKPIMAGE_COMPRESSED set, but block image length ${bimgLen}`);
      }
      if (!hasHole && !compressed && bimgLen !== BLCKSZ) {
        throw new WalDecodeError(lsn, `neither BKPIMAGE_HAS_HOLE nor BKPIMAGE_COMPRESSED set, but block image length is ${bimgLen}`);
      }
      if (holeOffset + holeLength > BLCKSZ) {
        throw new WalDecodeError(lsn, `hole offset ${holeOffset} length ${holeLength} reaches past BLCKSZ in block ${id}`);
      }
      image = { bytes: EMPTY, holeOffset, holeLength, bimgInfo };
    }

    let rnode: RelFileNode;
    if ((forkFlags & BKPBLOCK_SAME_REL) === 0) {
      if (remaining < 12) throw shortData(lsn, dataTotal, remaining);
      rnode = readRelFileNode(record, ptr);
      ptr += 12;
      remaining -= 12;
      lastRnode = rnode;
    } else {
      if (lastRnode === null) throw new WalDecodeError(lsn, "BKPBLOCK_SAME_REL set but no previous rel");
      rnode = lastRnode;
    }
    if (remaining < 4) throw shortData(lsn, dataTotal, remaining);
    const blkno = readU32LE(record, ptr);
    ptr += 4;
    remaining -= 4;

    blocks.push({
      id,
      rnode,
      forkNum,
      blkno,
      flags: forkFlags,
      hasImage,
      applyImage,
      willInit: (forkFlags & BKPBLOCK_WILL_INIT) !== 0,
      hasData,
      data: EMPTY,
      image,
    });
  }
  if (remaining !== dataTotal) throw shortData(lsn, dataTotal, remaining);

  // Pass 2: payloads, in the order of the headers.
  for (let i = 0; i < blocks.length; i++) {
    const blk = blocks[i]!;
    const img = blk.image;
    if (img !== undefined) {
      const bimgLen = passImageLen[blk.id]!;
      img.bytes = record.subarray(ptr, ptr + bimgLen);
      ptr += bimgLen;
    }
    if (blk.hasData) {
      const dataLen = passDataLen[blk.id]!;
      blk.data = record.subarray(ptr, ptr + dataLen);
      ptr += dataLen;
    }
  }
  const mainData = mainDataLen > 0 ? record.subarray(ptr, ptr + mainDataLen) : EMPTY;
  ptr += mainDataLen;
  if (ptr !== len) throw new WalDecodeError(lsn, `decoded ${ptr} of ${len} record bytes`);

  return {
    lsn,
    endLsn,
    xid: readU32LE(record, 4),
    prev: readPrev(record, 0),
    info: record[16]!,
    rmid,
    totLen,
    blocks,
    mainData,
    topLevelXid,
    origin,
    record,
  };
}
