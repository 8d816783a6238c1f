/**
 * Durable writes, the one implementation every folder uses: a file appears under its final
 * name whole or not at all, and after a crash a path holds its old or its new content, never
 * a mix. Every write is `write <temp> → fsync → rename → fsync(dir)`.
 *
 * Owns:
 *  - the temp naming (uniqueTempPath) and the directory fsync (fsyncDir / fsyncDirSync);
 *  - the async entries for the main thread, off its event loop (fs/promises runs in libuv's
 *    pool): writeFileDurable and removeFileDurable, with one write chain per path;
 *  - the sync entries for worker threads (flush, compaction) and for a caller that must not
 *    yield between the write and what follows: writeFileDurableSync (a whole file) and
 *    DurableFileWriter (a file streamed front to back, e.g. a layer file).
 *
 * Invariants:
 * - Every whole-file write has its own temp name (`<target>.<pid>.<n>.___temp`), created
 *   exclusively ("wx"): two writers never share a temp file, so neither renames the other's
 *   half-written bytes into place. Every temp name ends in TEMP_SUFFIX, so startup removes
 *   what a crash left (layer_name.ts). `<n>` counts per module instance, i.e. per thread: a
 *   clash between threads writing one path fails the exclusive create instead of sharing.
 * - One writer per file for the async entries: writes (and removals) of one path run one
 *   after another, in call order, so the last call's content (or absence) is what stays on
 *   disk. The chain of a path is dropped once idle, so the map holds only paths being
 *   written. The sync entries do not join the chain (they cannot wait): their callers own
 *   the path while they write it.
 * - After a write resolves (or returns, or DurableFileWriter.finish returns) the rename is
 *   durable: the directory was fsynced.
 */
import * as fs from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import * as path from "node:path";
import { assert } from "../types/assert.js";
import { BadStateError } from "../types/errors.js";
import { BLOCK_SIZE } from "./block_seal.js";
import { TEMP_SUFFIX } from "./layer_name.js";

// ─── temp names and directories ──────────────────────────────────────────────────────────

/** Temp names of this thread: `<pid>.<n>` is unique across processes and writes. */
let tempCounter = 0;

/** A temp name beside `target`, unique to this write, ending in TEMP_SUFFIX. */
export function uniqueTempPath(target: string): string {
  tempCounter = (tempCounter + 1) % Number.MAX_SAFE_INTEGER;
  const tmp = `${target}.${process.pid}.${tempCounter}${TEMP_SUFFIX}`;
  assert(tmp.endsWith(TEMP_SUFFIX), "temp names end in TEMP_SUFFIX");
  return tmp;
}

/** fsync a directory so that a rename or create inside it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncDir for worker threads and synchronous callers. */
export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// ─── async: whole files, one chain per path ──────────────────────────────────────────────

/** Per path, the tail of its write chain (only while some write of it is queued or running). */
const chains = new Map<string, Promise<void>>();

/** Write `data` to `target` durably; writes of one path are serialized in call order. */
export function writeFileDurable(target: string, data: Uint8Array): Promise<void> {
  return enqueue(target, () => writeOnce(target, data));
}

/**
 * Remove `target` (if there) durably, after every write of it queued before: a write still in
 * flight never brings the file back after its removal.
 */
export function removeFileDurable(target: string): Promise<void> {
  return enqueue(target, async () => {
    await rm(target, { force: true });
    await fsyncDir(path.dirname(target));
  });
}

function enqueue(target: string, op: () => Promise<void>): Promise<void> {
  const prev = chains.get(target) ?? Promise.resolve();
  const p = prev.then(op);
  const tail = p.catch(() => undefined);
  chains.set(target, tail);
  void tail.then(() => {
    if (chains.get(target) === tail) chains.delete(target);
  });
  return p;
}

async function writeOnce(target: string, data: Uint8Array): Promise<void> {
  const tmp = uniqueTempPath(target);
  try {
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(target));
}

// ─── sync: whole files and streamed files ────────────────────────────────────────────────

/** Write `data` to `target` durably, synchronously (outside the per-path chain). */
export function writeFileDurableSync(target: string, data: Uint8Array): void {
  const w = DurableFileWriter.create(uniqueTempPath(target));
  try {
    w.append(data);
    w.finish(target);
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
      fsyncDirSync(path.dirname(finalPath));
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
