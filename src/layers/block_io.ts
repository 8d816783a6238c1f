/**
 * Block I/O for layer files: sealed 8 kB blocks, durable writes, the value (blob) stream and
 * the header block shared by delta and image layers.
 *
 * Owns:
 *  - the block seal: every block of every layer file ends in a CRC32C trailer, so any block can
 *    be verified on its own before it enters the shared page cache (BlockSource contract);
 *  - BlockFile: an open layer file; reads block n with a synchronous pread (cheaper than async
 *    for 8 kB on the hot path) through the shared cache, verifying it on a miss;
 *  - durable writes: writeFileDurably (whole file) and DurableFileWriter (streaming bytes), both
 *    `write <final>.___temp → fsync → rename → fsync(dir)`; BlockFileWriter seals blocks on top;
 *  - blobs: BlobWriter appends values to the logical value stream, BlobReader reads them back;
 *  - the layer header (block 0): encodeLayerHeader / readLayerHeader.
 *
 * Block (every block of a layer file, PAGE_SIZE = 8192 bytes):
 *
 *   +-------------------------------+----------------------------------------------+
 *   | 0 .. 8187   payload           | 8188 .. 8191  u32 BE CRC32C(payload, seed =   |
 *   |             (BLOCK_PAYLOAD)   |               block number)                   |
 *   +-------------------------------+----------------------------------------------+
 *
 * Seeding the CRC with the block number also catches a block written or read at the wrong
 * position. Unused payload bytes are zero (and covered by the CRC, like everything else).
 *
 * Layer file:
 *
 *   block 0                 header (below)
 *   blocks 1 .. V-1         value stream: blobs back to back in the payloads, spanning blocks
 *   blocks V .. L-1         B-tree leaves, in key order (disk_btree.ts)
 *   blocks L .. R           B-tree internal nodes, level by level; R = root = last block
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
 * Header (block 0 payload, integers big-endian, u64 as hi/lo u32 halves, no BigInt):
 *
 *   off  size  field
 *   0    4     magic: 'PSDL' delta / 'PSIL' image
 *   4    2     format version (1)
 *   6    2     header bytes used (LAYER_HEADER_BYTES)
 *   8    18    key range start
 *   26   18    key range end (exclusive)
 *   44   8     delta: LSN range start   image: the image's LSN
 *   52   8     delta: LSN range end     image: 0
 *   60   8     entry count
 *   68   8     value stream length in bytes (logical)
 *   76   4     index start block (= first block after the values = first leaf)
 *   80   4     index leaf end block (one past the last leaf)
 *   84   4     index root block
 *   88   4     index depth (1 = the root is a leaf)
 *   92   4     total blocks in the file
 *   96   4     index key width in bytes (26 delta, 18 image)
 *   100  ..    zero
 *   8188 4     block seal = the header's CRC32C
 *
 * Invariants: files are immutable once renamed into place, so a verified block may be cached
 * and reused forever under its file id. Nothing read from disk is trusted before its seal is
 * checked; every number read from disk is range-checked before use; any failure is a
 * CorruptionError naming the file and the block.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { crc32c } from "@node-rs/crc32";
import { type BlockSource, PAGE_SIZE, type PageCacheApi, PageKind } from "../cache/api.js";
import { assert } from "../types/assert.js";
import { BadStateError, CorruptionError, InvalidArgumentError } from "../types/errors.js";
import { KEY_SIZE, type Key, keyFromBytes, keyToBytes } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import type { Value } from "../types/value.js";
import { TEMP_SUFFIX } from "./layer_name.js";

// ---------------------------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------------------------

export const BLOCK_SIZE = PAGE_SIZE;
/** Bytes of a block available to its content; the last 4 hold the seal. */
export const BLOCK_PAYLOAD = BLOCK_SIZE - 4;
/** Largest value one blob may hold. A bound against corrupt lengths, not a tuning knob. */
export const MAX_VALUE_BYTES = 64 * 1024 * 1024;
/** Block numbers are u32 on disk (2^32 × 8 kB = 32 TiB: far beyond any layer file). */
export const MAX_BLOCKS = 0xffff_ffff;

const TWO_32 = 0x1_0000_0000;
/** Largest hi half of a u64 whose value is still a safe JS integer. */
const MAX_SAFE_HI = 0x1f_ffff;

/** Write the seal of `block` (PAGE_SIZE bytes) in place, for block number `blkno`. */
export function sealBlock(block: Uint8Array, blkno: number): void {
  assert(block.length === BLOCK_SIZE, "sealBlock: not a block");
  const crc = crc32c(block.subarray(0, BLOCK_PAYLOAD), blkno >>> 0);
  writeU32(block, BLOCK_PAYLOAD, crc);
}

/** True when the seal of `block` matches its content and block number. */
export function blockSealOk(block: Uint8Array, blkno: number): boolean {
  return crc32c(block.subarray(0, BLOCK_PAYLOAD), blkno >>> 0) === readU32(block, BLOCK_PAYLOAD);
}

// Small big-endian helpers on plain Uint8Arrays (no DataView allocation per call).
export function readU16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}
export function readU32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}
export function writeU16(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 8;
  b[off + 1] = v & 0xff;
}
export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
/** Write a safe non-negative integer as a u64 (hi, lo u32 halves). */
export function writeU64(b: Uint8Array, off: number, v: number): void {
  assert(Number.isSafeInteger(v) && v >= 0, "writeU64: not a safe non-negative integer");
  writeU32(b, off, Math.floor(v / TWO_32));
  writeU32(b, off + 4, v % TWO_32);
}
/** Read a u64 (hi, lo); -1 when it does not fit a safe integer (the caller reports corruption). */
export function readU64OrNeg(b: Uint8Array, off: number): number {
  const hi = readU32(b, off);
  if (hi > MAX_SAFE_HI) return -1;
  return hi * TWO_32 + readU32(b, off + 4);
}

// ---------------------------------------------------------------------------------------------
// Durable writes
// ---------------------------------------------------------------------------------------------

/** fsync a directory so that a rename or create inside it is durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Write `data` to `finalPath` durably: temp file, fsync, rename, fsync of the directory. */
export function writeFileDurably(finalPath: string, data: Uint8Array): void {
  const w = DurableFileWriter.create(finalPath + TEMP_SUFFIX);
  try {
    w.append(data);
    w.finish(finalPath);
  } catch (e) {
    w.abort();
    throw e;
  }
}

/** Bytes gathered before one write syscall: big enough to amortize it, small enough to not matter. */
const WRITE_BATCH_BYTES = 32 * BLOCK_SIZE;

/**
 * A file written front to back under a temp name (which must end in TEMP_SUFFIX so startup
 * removes leftovers), then made durable and renamed into place by finish(), or deleted by
 * abort(). Appends are batched into WRITE_BATCH_BYTES writes. Synchronous: writers run in
 * worker threads (flush, compaction), never on the main event loop.
 */
export class DurableFileWriter {
  readonly tempPath: string;
  private fd: number;
  private readonly batch = new Uint8Array(WRITE_BATCH_BYTES);
  private batchLen = 0;
  /** Bytes in the file, including the unwritten batch. */
  private sizeBytes_ = 0;
  private state: "open" | "finished" | "aborted" = "open";

  private constructor(tempPath: string, fd: number) {
    this.tempPath = tempPath;
    this.fd = fd;
  }

  /** Create the temp file; fails if it exists (two writers must never share a temp name). */
  static create(tempPath: string): DurableFileWriter {
    assert(tempPath.endsWith(TEMP_SUFFIX), `temp file name must end in ${TEMP_SUFFIX}: ${tempPath}`);
    return new DurableFileWriter(tempPath, fs.openSync(tempPath, "wx"));
  }

  get bytesWritten(): number {
    return this.sizeBytes_;
  }

  append(data: Uint8Array): void {
    this.checkOpen();
    if (this.batchLen + data.length <= WRITE_BATCH_BYTES) {
      this.batch.set(data, this.batchLen);
      this.batchLen += data.length;
    } else {
      this.flushBatch();
      if (data.length >= WRITE_BATCH_BYTES) {
        this.writeFully(data, this.sizeBytes_);
      } else {
        this.batch.set(data, 0);
        this.batchLen = data.length;
      }
    }
    this.sizeBytes_ += data.length;
  }

  /** Overwrite bytes already appended (e.g. a header reserved at the start). */
  writeAt(position: number, data: Uint8Array): void {
    this.checkOpen();
    assert(position >= 0 && position + data.length <= this.sizeBytes_, "writeAt beyond the appended bytes");
    this.flushBatch();
    this.writeFully(data, position);
  }

  /** Flush, fsync, rename to `finalPath`, fsync its directory. Returns the file size in bytes. */
  finish(finalPath: string): number {
    this.checkOpen();
    try {
      this.flushBatch();
      fs.fsyncSync(this.fd);
      fs.closeSync(this.fd);
      this.fd = -1;
      fs.renameSync(this.tempPath, finalPath);
      fsyncDir(path.dirname(finalPath));
    } catch (e) {
      this.abort();
      throw e;
    }
    this.state = "finished";
    return this.sizeBytes_;
  }

  /** Close and delete the temp file. Idempotent; a no-op after finish(). */
  abort(): void {
    if (this.state !== "open") return;
    this.state = "aborted";
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // Already failed; the unlink below is what matters.
      }
      this.fd = -1;
    }
    try {
      fs.unlinkSync(this.tempPath);
    } catch {
      // Missing already (or renamed by a finish that failed after the rename): nothing to do.
    }
  }

  private checkOpen(): void {
    if (this.state !== "open") throw new BadStateError(`file writer for ${this.tempPath} is ${this.state}`);
  }

  private flushBatch(): void {
    if (this.batchLen === 0) return;
    this.writeFully(this.batch.subarray(0, this.batchLen), this.sizeBytes_ - this.batchLen);
    this.batchLen = 0;
  }

  private writeFully(data: Uint8Array, position: number): void {
    let done = 0;
    while (done < data.length) {
      done += fs.writeSync(this.fd, data, done, data.length - done, position + done);
    }
  }
}

/** Where a B-tree (or anything block-structured) appends its blocks. */
export interface BlockSink {
  /** Seal `block` in place with its block number, append it, return that block number. */
  appendBlock(block: Uint8Array): number;
}

/** A DurableFileWriter of sealed blocks. */
export class BlockFileWriter implements BlockSink {
  private readonly out: DurableFileWriter;
  private nextBlkno = 0;

  constructor(tempPath: string) {
    this.out = DurableFileWriter.create(tempPath);
  }

  get tempPath(): string {
    return this.out.tempPath;
  }

  /** Number of blocks appended so far (= the block number of the next one). */
  get blocksWritten(): number {
    return this.nextBlkno;
  }

  appendBlock(block: Uint8Array): number {
    const blkno = this.nextBlkno;
    assert(blkno < MAX_BLOCKS, "layer file too large");
    sealBlock(block, blkno);
    this.out.append(block);
    this.nextBlkno++;
    return blkno;
  }

  /** Rewrite a block appended earlier (the header, reserved as block 0). Seals it in place. */
  writeBlock(blkno: number, block: Uint8Array): void {
    assert(blkno >= 0 && blkno < this.nextBlkno, "writeBlock: block not appended yet");
    sealBlock(block, blkno);
    this.out.writeAt(blkno * BLOCK_SIZE, block);
  }

  finish(finalPath: string): number {
    return this.out.finish(finalPath);
  }

  abort(): void {
    this.out.abort();
  }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/**
 * An open, immutable layer file. Implements BlockSource for the shared cache: a miss reads the
 * block with pread and verifies its seal before it enters the cache.
 */
export class BlockFile implements BlockSource {
  readonly path: string;
  readonly fileId: number;
  readonly sizeBytes: number;
  /** Whole blocks in the file (a partial trailing block is not counted). */
  readonly numBlocks: number;
  private readonly cache: PageCacheApi;
  private fd: number;

  private constructor(cache: PageCacheApi, filePath: string, fd: number, sizeBytes: number) {
    this.cache = cache;
    this.path = filePath;
    this.fd = fd;
    this.sizeBytes = sizeBytes;
    this.numBlocks = Math.floor(sizeBytes / BLOCK_SIZE);
    this.fileId = cache.allocFileId();
  }

  static open(cache: PageCacheApi, filePath: string): BlockFile {
    const fd = fs.openSync(filePath, "r");
    try {
      return new BlockFile(cache, filePath, fd, fs.fstatSync(fd).size);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /** BlockSource: pread block `blkno` into `dst` and verify its seal. */
  readBlockInto(blkno: number, dst: Uint8Array): void {
    assert(Number.isInteger(blkno) && blkno >= 0, "readBlockInto: bad block number");
    assert(dst.length === BLOCK_SIZE, "readBlockInto: dst is not a block");
    if (this.fd < 0) throw new BadStateError(`layer file ${this.path} is closed`);
    if (blkno >= this.numBlocks) throw new CorruptionError(this.path, blkno, `block beyond the end of the file (${this.numBlocks} blocks)`);
    let done = 0;
    while (done < BLOCK_SIZE) {
      const n = fs.readSync(this.fd, dst, done, BLOCK_SIZE - done, blkno * BLOCK_SIZE + done);
      if (n === 0) throw new CorruptionError(this.path, blkno, `short read: ${done} of ${BLOCK_SIZE} bytes (file truncated?)`);
      done += n;
    }
    if (!blockSealOk(dst, blkno)) throw new CorruptionError(this.path, blkno, "block checksum mismatch");
  }

  /** Block `blkno` into `dst` through the shared cache. */
  read(blkno: number, dst: Uint8Array): void {
    if (this.fd < 0) throw new BadStateError(`layer file ${this.path} is closed`);
    if (blkno >= this.numBlocks) throw new CorruptionError(this.path, blkno, `block beyond the end of the file (${this.numBlocks} blocks)`);
    this.cache.readBlock(PageKind.FileBlock, this.fileId, blkno, this, dst);
  }

  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
  }
}

// ---------------------------------------------------------------------------------------------
// Blobs
// ---------------------------------------------------------------------------------------------

/** Bytes before a blob's data: u32 length + u32 CRC32C. */
export const BLOB_HEADER_BYTES = 8;
/** The value stream starts in block 1 (block 0 is the header). */
export const VALUES_START_BLK = 1;

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
    writeU32(this.head, 0, data.length);
    writeU32(this.head, 4, crc32c(data, blobSeed(offset, data.length)));
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
    const len = readU32(this.head, 0);
    if (len < 1 || len > MAX_VALUE_BYTES || offset + BLOB_HEADER_BYTES + len > streamBytes) {
      throw new CorruptionError(file.path, startBlk, `bad value length ${len} at offset ${offset}`);
    }
    const value = new Uint8Array(len);
    this.copy(file, offset + BLOB_HEADER_BYTES, value, len);
    if (crc32c(value, blobSeed(offset, len)) !== readU32(this.head, 4)) {
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

// ---------------------------------------------------------------------------------------------
// Layer header
// ---------------------------------------------------------------------------------------------

export const DELTA_MAGIC = 0x5053_444c; // 'PSDL'
export const IMAGE_MAGIC = 0x5053_494c; // 'PSIL'
export const LAYER_FORMAT_VERSION = 1;
export const LAYER_HEADER_BYTES = 100;
export const HEADER_BLK = 0;

export interface LayerHeader {
  kind: "delta" | "image";
  keyStart: Key;
  keyEnd: Key;
  /** Delta: LSN range start. Image: the image's LSN. */
  lsnStart: Lsn;
  /** Delta: LSN range end (exclusive). Image: 0. */
  lsnEnd: Lsn;
  entryCount: number;
  /** Logical length of the value stream. */
  valuesBytes: number;
  /** Index (B-tree) location; see disk_btree.ts BtreeMeta. */
  indexStartBlk: number;
  indexLeafEndBlk: number;
  indexRootBlk: number;
  indexDepth: number;
  totalBlocks: number;
  indexKeyWidth: number;
}

/** Fill `block` (PAGE_SIZE bytes) with the header; the caller seals it as block 0. */
export function encodeLayerHeader(h: LayerHeader, block: Uint8Array): void {
  block.fill(0);
  writeU32(block, 0, h.kind === "delta" ? DELTA_MAGIC : IMAGE_MAGIC);
  writeU16(block, 4, LAYER_FORMAT_VERSION);
  writeU16(block, 6, LAYER_HEADER_BYTES);
  keyToBytes(h.keyStart, block, 8);
  keyToBytes(h.keyEnd, block, 8 + KEY_SIZE);
  writeU64(block, 44, h.lsnStart);
  writeU64(block, 52, h.lsnEnd);
  writeU64(block, 60, h.entryCount);
  writeU64(block, 68, h.valuesBytes);
  writeU32(block, 76, h.indexStartBlk);
  writeU32(block, 80, h.indexLeafEndBlk);
  writeU32(block, 84, h.indexRootBlk);
  writeU32(block, 88, h.indexDepth);
  writeU32(block, 92, h.totalBlocks);
  writeU32(block, 96, h.indexKeyWidth);
}

/**
 * Read and check the header of `file`: seal, magic (must be `kind`), version, and that the
 * regions it names are consistent with each other and with the file's size. The B-tree's own
 * fields are checked further by the B-tree reader.
 */
export function readLayerHeader(file: BlockFile, kind: "delta" | "image", block: Uint8Array): LayerHeader {
  const p = file.path;
  const bad = (reason: string): CorruptionError => new CorruptionError(p, HEADER_BLK, reason);
  if (file.sizeBytes < BLOCK_SIZE) throw bad(`file of ${file.sizeBytes} bytes is shorter than its header block (truncated?)`);
  file.readBlockInto(HEADER_BLK, block); // direct: read once at open, no point caching it
  const magic = readU32(block, 0);
  const want = kind === "delta" ? DELTA_MAGIC : IMAGE_MAGIC;
  if (magic !== want) {
    const what = magic === DELTA_MAGIC ? "a delta layer" : magic === IMAGE_MAGIC ? "an image layer" : "not a layer file";
    throw bad(`bad magic 0x${magic.toString(16)} (${what}); expected ${kind} layer`);
  }
  const version = readU16(block, 4);
  if (version !== LAYER_FORMAT_VERSION) throw bad(`unsupported format version ${version}`);
  if (readU16(block, 6) !== LAYER_HEADER_BYTES) throw bad(`bad header size ${readU16(block, 6)}`);
  const h: LayerHeader = {
    kind,
    keyStart: keyFromBytes(block, 8),
    keyEnd: keyFromBytes(block, 8 + KEY_SIZE),
    lsnStart: readU64OrNeg(block, 44),
    lsnEnd: readU64OrNeg(block, 52),
    entryCount: readU64OrNeg(block, 60),
    valuesBytes: readU64OrNeg(block, 68),
    indexStartBlk: readU32(block, 76),
    indexLeafEndBlk: readU32(block, 80),
    indexRootBlk: readU32(block, 84),
    indexDepth: readU32(block, 88),
    totalBlocks: readU32(block, 92),
    indexKeyWidth: readU32(block, 96),
  };
  if (!(h.keyStart < h.keyEnd)) throw bad("empty key range");
  if (h.lsnStart < 0 || h.lsnEnd < 0) throw bad("LSN beyond 2^53");
  if (kind === "delta" ? !(h.lsnStart < h.lsnEnd) : h.lsnEnd !== 0) throw bad(`bad LSN range ${h.lsnStart}..${h.lsnEnd}`);
  if (h.entryCount < 0 || h.valuesBytes < 0) throw bad("count beyond 2^53");
  // Truncation first: it explains most of the inconsistencies below and names the missing block.
  if (h.totalBlocks * BLOCK_SIZE > file.sizeBytes) {
    throw new CorruptionError(p, file.numBlocks, `file truncated: ${file.sizeBytes} bytes, header says ${h.totalBlocks} blocks`);
  }
  if (h.totalBlocks * BLOCK_SIZE !== file.sizeBytes) throw new CorruptionError(p, h.totalBlocks, `${file.sizeBytes - h.totalBlocks * BLOCK_SIZE} bytes after the last block`);
  if (h.indexStartBlk !== VALUES_START_BLK + valueBlocksFor(h.valuesBytes)) {
    throw bad(`index start block ${h.indexStartBlk} does not follow a value stream of ${h.valuesBytes} bytes`);
  }
  if (h.entryCount > 0 && h.valuesBytes < h.entryCount * (BLOB_HEADER_BYTES + 1)) throw bad(`${h.entryCount} entries cannot fit ${h.valuesBytes} bytes of values`);
  if (h.entryCount === 0 && h.valuesBytes !== 0) throw bad("values without entries");
  if (!(h.indexRootBlk + 1 === h.totalBlocks)) throw bad(`index root block ${h.indexRootBlk} is not the last block`);
  return h;
}
