/**
 * Layer files as sequences of sealed blocks: BlockFileWriter appends them (through a
 * DurableFileWriter), BlockFile reads them.
 *
 * Owns:
 *  - BlockFileWriter (a BlockSink): numbers and seals each block as it is appended, and
 *    rewrites a reserved block (the header, block 0) before finish;
 *  - BlockFile: an open layer file; reads block n with a synchronous pread (cheaper than async
 *    for 8 kB on the hot path) through the shared cache, verifying it on a miss.
 *
 * Invariants: files are immutable once renamed into place, so a verified block may be cached
 * and reused forever under its file id. A block enters the cache only after its seal was
 * checked against its block number; a block beyond the end, a short read or a bad seal is a
 * CorruptionError naming the file and the block.
 */
import * as fs from "node:fs";
import { type BlockSource, type PageCacheApi, PageKind } from "../cache/api.js";
import { assert } from "../types/assert.js";
import { BadStateError, CorruptionError } from "../types/errors.js";
import { BLOCK_SIZE, blockSealOk, MAX_BLOCKS, sealBlock } from "./block_seal.js";
import { DurableFileWriter } from "./durable_file.js";

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
