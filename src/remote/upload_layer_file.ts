/**
 * The local side of a layer upload: the hard link that holds a scheduled layer's file, and the
 * read of that file into remote storage.
 *
 * - A scheduled layer upload holds a hard link to its local file (beside it, named
 *   `<file>.upload-<random>.___temp`, which timeline load removes after a crash) until it
 *   ends, so the timeline may unlink a layer (compaction, GC) right away without losing a
 *   pending upload. A queued upload holds no file descriptor: the file is opened only while
 *   its upload runs (the queue runs at most max_concurrent_uploads at once).
 * - Each attempt reads the file from byte 0 by position through one fd (FdReader), taking its
 *   CRC32C on the way: the file is read once per attempt, and checked against the size and
 *   CRC it was scheduled with. A mismatch is a LocalLayerError: retrying won't help.
 *
 * Invariants: no read uses the fd after an attempt ends (FdReader.idle() before close); the
 * stream reads at most READ_CHUNK_BYTES at a time, one read in flight.
 */
import { randomBytes } from "node:crypto";
import { linkSync, read, unlinkSync } from "node:fs";
import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import { crc32c } from "@node-rs/crc32";
import { TEMP_SUFFIX } from "../layers/layer_name.js";
import { NotFoundError } from "../types/errors.js";
import { failpoint } from "../types/failpoints.js";
import type { RemoteStorage } from "./remote_storage.js";
import type { LayerOp } from "./upload_ops.js";

/** The local side of a layer upload is wrong (the file changed): retrying won't help. */
class LocalLayerError extends Error {}

/**
 * Puts the layer of `op` as object `op.key`, read from its hard link. Throws LocalLayerError
 * when the local file is gone or differs from what was scheduled (size, CRC32C); on success
 * fills in the projected entry's crc32c.
 */
export async function uploadLayerFile(
  op: LayerOp,
  storage: RemoteStorage,
  call: { signal: AbortSignal; timeout_ms: number | undefined },
): Promise<void> {
  const { local_path, file_size, crc32c: expected_crc } = op.layer;
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(op.link, "r");
  } catch (e) {
    throw new LocalLayerError(`local file ${local_path} (held as ${op.link}) can't be opened: ${(e as Error).message}`);
  }
  try {
    const size = (await fh.stat()).size;
    if (size !== file_size) throw new LocalLayerError(`local file ${local_path} is ${size} bytes, scheduled as ${file_size}`);
    await failpoint("remote-upload-layer");
    const reader = new FdReader(fh.fd, file_size, local_path);
    try {
      await storage.put(op.key, reader.stream, { ...call, size_bytes: file_size });
    } finally {
      reader.stream.destroy();
      // No read may still use the fd when the attempt ends and the fd is closed.
      await reader.idle();
    }
    if (expected_crc !== null && reader.crc !== expected_crc) {
      throw new LocalLayerError(
        `local file ${local_path} has CRC32C ${reader.crc.toString(16)}, scheduled as ${expected_crc.toString(16)}`,
      );
    }
    op.entry.crc32c = reader.crc;
  } finally {
    await fh.close();
  }
}

const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * A stream over the first `size_bytes` of an open file, read by position (so each attempt
 * reads from byte 0 of the same fd, and destroying the stream never closes the fd), with the
 * CRC32C of what it read.
 */
class FdReader {
  readonly stream: Readable;
  crc = 0;
  private pos = 0;
  private reading: Promise<void> = Promise.resolve();

  constructor(fd: number, size_bytes: number, path: string) {
    this.stream = new Readable({
      highWaterMark: READ_CHUNK_BYTES,
      read: () => {
        if (this.pos >= size_bytes) {
          this.stream.push(null);
          return;
        }
        const len = Math.min(READ_CHUNK_BYTES, size_bytes - this.pos);
        const buf = Buffer.allocUnsafe(len);
        this.reading = new Promise<void>((done) => {
          read(fd, buf, 0, len, this.pos, (err, n) => {
            done();
            if (this.stream.destroyed) return;
            if (err !== null) return void this.stream.destroy(err);
            if (n === 0)
              return void this.stream.destroy(new LocalLayerError(`local file ${path} shrank below ${size_bytes} bytes during its upload`));
            const chunk = n === len ? buf : buf.subarray(0, n);
            this.crc = crc32c(chunk, this.crc) >>> 0;
            this.pos += n;
            this.stream.push(chunk);
          });
        });
      },
    });
  }

  idle(): Promise<void> {
    return this.reading;
  }
}

/** A hard link to `path` beside it (see the header); a missing file is a NotFoundError. */
export function linkLocal(path: string): string {
  const link = `${path}.upload-${randomBytes(6).toString("hex")}${TEMP_SUFFIX}`;
  try {
    linkSync(path, link);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new NotFoundError(`local layer file ${path} does not exist`);
    throw e;
  }
  return link;
}

/** Removes an upload's link; a failure leaves a `.___temp` file that timeline load removes. */
export function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already, or removed at the next load.
  }
}
