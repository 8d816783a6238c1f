/**
 * Durable writes: a file appears under its final name whole or not at all.
 *
 * Owns: fsyncDir, writeFileDurably (a whole file) and DurableFileWriter (a file streamed front
 * to back), all `write <temp> → fsync → rename → fsync(dir)`.
 *
 * Invariants: a temp name ends in TEMP_SUFFIX, so startup removes what a crash left
 * (layer_name.ts); a temp file is created exclusively ("wx"), so two writers never share one;
 * after finish() returns, the rename is durable (the directory was fsynced).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { assert } from "../types/assert.js";
import { BadStateError } from "../types/errors.js";
import { BLOCK_SIZE } from "./block_seal.js";
import { TEMP_SUFFIX } from "./layer_name.js";

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
// Whole blocks per batch: a block writer's appends then never straddle two write syscalls.
assert(WRITE_BATCH_BYTES % BLOCK_SIZE === 0, "the write batch holds whole blocks");

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
