/**
 * Blobs: the values of a layer file, back to back in its value stream.
 *
 * Owns: the blob format, BlobWriter (appends to the stream of a file being written) and
 * BlobReader (reads a blob back through the cache).
 *
 * Value stream: a logical byte stream laid over the payloads of blocks 1.. (logical offset o
 * lives in block 1 + ⌊o / 8188⌋ at byte o mod 8188). A blob is
 *
 *   +-------------+------------------------------------------+-----------------+
 *   | u32 BE len  | u32 BE CRC32C(data, seed = blobSeed(o, len)) | data (len bytes) |
 *   +-------------+------------------------------------------+-----------------+
 *
 * Seeding the blob CRC with its own offset means an index entry pointing at the wrong blob
 * fails the check instead of returning another key's value. 1 <= len <= MAX_VALUE_BYTES.
 *
 * Invariants: the writer holds only the current block in memory and allocates nothing per
 * value; the reader range-checks every offset and length it reads before using it, and a
 * bad one is a CorruptionError naming the block.
 */
import { crc32c } from "@node-rs/crc32";
import { assert } from "../types/assert.js";
import { readU32BE, writeU32BE } from "../types/bytes.js";
import { CorruptionError, InvalidArgumentError } from "../types/errors.js";
import type { Value } from "../types/value.js";
import type { BlockFile, BlockFileWriter } from "./block_file.js";
import { BLOCK_PAYLOAD, BLOCK_SIZE } from "./block_seal.js";

/** Largest value one blob may hold. A bound against corrupt lengths, not a tuning knob. */
export const MAX_VALUE_BYTES = 64 * 1024 * 1024;

const TWO_32 = 0x1_0000_0000;

/** Bytes before a blob's data: u32 length + u32 CRC32C. */
export const BLOB_HEADER_BYTES = 8;
/** The value stream starts in block 1 (block 0 is the header). */
export const VALUES_START_BLK = 1;

// A blob's header fits one block's payload, and a length fits its u32.
assert(BLOB_HEADER_BYTES < BLOCK_PAYLOAD, "a blob header fits one block");
assert(MAX_VALUE_BYTES <= 0xffff_ffff, "a blob length fits a u32");

/** Seed of a blob's CRC: mixes its logical offset and length, so a misdirected read fails. */
function blobSeed(offset: number, len: number): number {
  const hi = Math.floor(offset / TWO_32);
  return (Math.imul(hi, 0x9e37_79b1) ^ (offset >>> 0) ^ Math.imul(len, 0x85eb_ca6b)) >>> 0;
}

/** Number of blocks a value stream of `lengthBytes` occupies. */
export function valueBlocksFor(lengthBytes: number): number {
  return Math.ceil(lengthBytes / BLOCK_PAYLOAD);
}

/**
 * Appends blobs to the value stream of a layer file being written, block by block (only the
 * current block is in memory).
 */
export class BlobWriter {
  private readonly out: BlockFileWriter;
  private readonly block = new Uint8Array(BLOCK_SIZE);
  private readonly head = new Uint8Array(BLOB_HEADER_BYTES);
  private pos = 0;
  private lengthBytes_ = 0;
  private finished = false;

  /** `out` must be positioned at VALUES_START_BLK. */
  constructor(out: BlockFileWriter) {
    assert(out.blocksWritten === VALUES_START_BLK, "value stream must start at block 1");
    this.out = out;
  }

  /** Logical length of the stream so far (= offset of the next blob). */
  get lengthBytes(): number {
    return this.lengthBytes_;
  }

  /** Append one blob; returns its logical offset. */
  append(data: Uint8Array): number {
    assert(!this.finished, "BlobWriter: append after finish");
    if (data.length < 1 || data.length > MAX_VALUE_BYTES) {
      throw new InvalidArgumentError(`value of ${data.length} bytes: must be 1..${MAX_VALUE_BYTES} bytes`);
    }
    const offset = this.lengthBytes_;
    writeU32BE(this.head, 0, data.length);
    writeU32BE(this.head, 4, crc32c(data, blobSeed(offset, data.length)));
    this.write(this.head);
    this.write(data);
    return offset;
  }

  /** Pad and write the last partial block. Returns the stream length in bytes. */
  finish(): number {
    assert(!this.finished, "BlobWriter: finish twice");
    this.finished = true;
    if (this.pos > 0) {
      this.block.fill(0, this.pos);
      this.out.appendBlock(this.block);
      this.pos = 0;
    }
    assert(this.out.blocksWritten === VALUES_START_BLK + valueBlocksFor(this.lengthBytes_), "value blocks miscounted");
    return this.lengthBytes_;
  }

  private write(src: Uint8Array): void {
    let done = 0;
    while (done < src.length) {
      const n = Math.min(src.length - done, BLOCK_PAYLOAD - this.pos);
      this.block.set(src.subarray(done, done + n), this.pos);
      this.pos += n;
      done += n;
      if (this.pos === BLOCK_PAYLOAD) {
        this.out.appendBlock(this.block);
        this.pos = 0;
      }
    }
    this.lengthBytes_ += src.length;
  }
}

/**
 * Reads blobs of a layer file through the cache. Holds one block buffer and remembers which
 * (open file, block) it holds, so consecutive reads of small values in one block copy it once.
 * One reader per concurrent walk (lookups share one; each iterator has its own).
 */
export class BlobReader {
  private readonly block = new Uint8Array(BLOCK_SIZE);
  private readonly head = new Uint8Array(BLOB_HEADER_BYTES);
  /** The block in `block` and its open file (by object: file ids are unique per cache only). */
  private file: BlockFile | null = null;
  private blkno = -1;

  /**
   * Read the blob at logical `offset` of `file`, whose value stream is `streamBytes` long.
   * `refBlk` is the index block that pointed here (named if the offset itself is bad).
   */
  read(file: BlockFile, streamBytes: number, offset: number, refBlk: number): Value {
    if (!(offset >= 0 && offset + BLOB_HEADER_BYTES <= streamBytes)) {
      throw new CorruptionError(file.path, refBlk, `value offset ${offset} outside the value stream (${streamBytes} bytes)`);
    }
    const startBlk = VALUES_START_BLK + Math.floor(offset / BLOCK_PAYLOAD);
    this.copy(file, offset, this.head, BLOB_HEADER_BYTES);
    const len = readU32BE(this.head, 0);
    if (len < 1 || len > MAX_VALUE_BYTES || offset + BLOB_HEADER_BYTES + len > streamBytes) {
      throw new CorruptionError(file.path, startBlk, `bad value length ${len} at offset ${offset}`);
    }
    const value = new Uint8Array(len);
    this.copy(file, offset + BLOB_HEADER_BYTES, value, len);
    if (crc32c(value, blobSeed(offset, len)) !== readU32BE(this.head, 4)) {
      throw new CorruptionError(file.path, startBlk, `value checksum mismatch at offset ${offset}`);
    }
    return value;
  }

  /** Forget the buffered block (e.g. the file was closed). */
  invalidate(): void {
    this.file = null;
    this.blkno = -1;
  }

  private copy(file: BlockFile, offset: number, dst: Uint8Array, n: number): void {
    let done = 0;
    let blk = VALUES_START_BLK + Math.floor(offset / BLOCK_PAYLOAD);
    let pos = offset % BLOCK_PAYLOAD;
    // Walks go newest first, i.e. backwards through the stream: a blob spanning blocks often
    // ends in the block already buffered. Take that part first so it is not read twice.
    const lastBlk = VALUES_START_BLK + Math.floor((offset + n - 1) / BLOCK_PAYLOAD);
    let skipBlk = -1;
    if (lastBlk > blk && file === this.file && this.blkno > blk && this.blkno <= lastBlk) {
      skipBlk = this.blkno;
      const from = (skipBlk - VALUES_START_BLK) * BLOCK_PAYLOAD; // logical offset of its payload
      const k = Math.min(offset + n, from + BLOCK_PAYLOAD) - from;
      dst.set(this.block.subarray(0, k), from - offset);
    }
    while (done < n) {
      if (blk === skipBlk) {
        done += BLOCK_PAYLOAD; // pos is 0 here: skipBlk > the first block
        blk++;
        continue;
      }
      if (blk !== this.blkno || file !== this.file) {
        // Mark the buffer empty first: if the read throws, it must not look valid.
        this.blkno = -1;
        file.read(blk, this.block);
        this.blkno = blk;
        this.file = file;
      }
      const k = Math.min(n - done, BLOCK_PAYLOAD - pos);
      if (k <= 16) {
        // Blob headers and tiny values: a loop beats creating a subarray view.
        for (let i = 0; i < k; i++) dst[done + i] = this.block[pos + i]!;
      } else {
        dst.set(this.block.subarray(pos, pos + k), done);
      }
      done += k;
      blk++;
      pos = 0;
    }
  }
}
