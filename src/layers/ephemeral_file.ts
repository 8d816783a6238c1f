/**
 * EphemeralFile: the append-only spill file behind an in-memory layer. Not durable (a crash
 * re-ingests from disk_consistent_lsn), deleted when its layer is flushed or at startup.
 *
 * Every value is written as a self-describing record, so a flush job in a worker can rebuild
 * the layer's contents from the file alone without the main thread's index:
 *
 *   off  size  field
 *   0    4     value length (u32 LE)
 *   4    18    key
 *   22   4     lsn hi (u32 LE)
 *   26   4     lsn lo (u32 LE)
 *   30   n     value bytes
 *
 * Writes collect in a tail buffer of WRITE_BUFFER_BLOCKS blocks and go to disk in one
 * syscall when it fills; blocks on disk are full and immutable, so reads of them go through
 * the shared page cache as EphemeralBlock pages; the tail is read from memory.
 */
import { closeSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import { type BlockSource, PAGE_SIZE, type PageCacheApi, PageKind } from "../cache/api.js";
import { assert } from "../types/assert.js";
import { KEY_SIZE, type Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { type Value, type ValueTag, valueWillInit } from "../types/value.js";

export const EPHEMERAL_RECORD_HEADER_SIZE = 30;
/** 1 MiB: fewer, larger writes; ingest spent an eighth of its time in 128 kB writeSync calls. */
export const WRITE_BUFFER_BLOCKS = 128;
/** A single value larger than this is refused (PostgreSQL values are ≤ 1 GiB records; ours are pages). */
export const MAX_EPHEMERAL_VALUE_SIZE = 64 * 1024 * 1024;

const TWO_32 = 0x1_0000_0000;

export class EphemeralFile implements BlockSource {
  readonly path: string;
  readonly fileId: number;
  private fd: number;
  private readonly cache: PageCacheApi;
  /** Bytes appended in total (disk + tail). */
  private length_bytes = 0;
  /** Bytes on disk: always a multiple of PAGE_SIZE. */
  private written_bytes = 0;
  private readonly tail = new Uint8Array(WRITE_BUFFER_BLOCKS * PAGE_SIZE);
  private readonly tailView = new DataView(this.tail.buffer);
  private readonly scratch = new Uint8Array(PAGE_SIZE);
  private readonly header = new Uint8Array(EPHEMERAL_RECORD_HEADER_SIZE);
  private readonly headerView = new DataView(this.header.buffer);
  private closed = false;

  constructor(cache: PageCacheApi, path: string) {
    this.cache = cache;
    this.path = path;
    this.fileId = cache.allocFileId();
    this.fd = openSync(path, "w+", 0o600);
  }

  get sizeBytes(): number {
    return this.length_bytes;
  }

  /** Append one value record; returns the offset of the value bytes (header skipped). */
  append(key: Key, lsn: Lsn, value: Value): number {
    assert(value.length > 0 && value.length <= MAX_EPHEMERAL_VALUE_SIZE, "ephemeral value size out of range");
    const valueOffset = this.appendHeader(key, lsn, value.length);
    this.appendBytes(value);
    return valueOffset;
  }

  /**
   * Append the value `tag ‖ payload` without it being built first: a WAL record that one
   * record's several block references all store is copied only here, once per reference.
   * Returns the offset of the value bytes; the value is payload.length + 1 bytes.
   */
  appendTagged(key: Key, lsn: Lsn, tag: ValueTag, payload: Uint8Array): number {
    assert(payload.length < MAX_EPHEMERAL_VALUE_SIZE, "ephemeral value size out of range");
    const valueOffset = this.appendHeader(key, lsn, payload.length + 1);
    this.tail[this.length_bytes - this.written_bytes] = tag;
    this.length_bytes++;
    if (this.length_bytes - this.written_bytes === this.tail.length) this.writeTail();
    this.appendBytes(payload);
    return valueOffset;
  }

  /** The record header of a value of `len` bytes; returns the offset the value starts at. */
  private appendHeader(key: Key, lsn: Lsn, len: number): number {
    assert(!this.closed, "append to a closed ephemeral file");
    const tailPos = this.length_bytes - this.written_bytes;
    // Straight into the tail when it fits (all but one header per tail flush).
    const inTail = tailPos + EPHEMERAL_RECORD_HEADER_SIZE <= this.tail.length;
    const h = inTail ? this.tail : this.header;
    const hv = inTail ? this.tailView : this.headerView;
    const o = inTail ? tailPos : 0;
    hv.setUint32(o, len, true);
    for (let i = 0; i < KEY_SIZE; i++) h[o + 4 + i] = key.charCodeAt(i);
    hv.setUint32(o + 22, Math.floor(lsn / TWO_32), true);
    hv.setUint32(o + 26, lsn % TWO_32, true);
    if (inTail) {
      this.length_bytes += EPHEMERAL_RECORD_HEADER_SIZE;
      if (this.length_bytes - this.written_bytes === this.tail.length) this.writeTail();
    } else {
      this.appendBytes(h);
    }
    return this.length_bytes;
  }

  private appendBytes(src: Uint8Array): void {
    const tailPos = this.length_bytes - this.written_bytes;
    if (tailPos + src.length < this.tail.length) {
      // Fits without filling the tail: no subarray view to allocate.
      this.tail.set(src, tailPos);
      this.length_bytes += src.length;
      return;
    }
    let done = 0;
    while (done < src.length) {
      const pos = this.length_bytes - this.written_bytes;
      const n = Math.min(src.length - done, this.tail.length - pos);
      this.tail.set(src.subarray(done, done + n), pos);
      done += n;
      this.length_bytes += n;
      if (this.length_bytes - this.written_bytes === this.tail.length) this.writeTail();
    }
  }

  private writeTail(): void {
    const n = this.tail.length;
    let off = 0;
    while (off < n) off += writeSync(this.fd, this.tail, off, n - off, this.written_bytes + off);
    this.written_bytes += n;
  }

  /** Make every appended byte visible to other readers of the file (a flush job). Not durable. */
  flushToOs(): void {
    const pending = this.length_bytes - this.written_bytes;
    let off = 0;
    while (off < pending) off += writeSync(this.fd, this.tail, off, pending - off, this.written_bytes + off);
  }

  /** Copy `len` bytes at `offset` into a new Value. */
  read(offset: number, len: number): Value {
    assert(offset >= 0 && offset + len <= this.length_bytes, "ephemeral read out of range");
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const pos = offset + done;
      if (pos >= this.written_bytes) {
        const tailPos = pos - this.written_bytes;
        out.set(this.tail.subarray(tailPos, tailPos + (len - done)), done);
        break;
      }
      const blkno = Math.floor(pos / PAGE_SIZE);
      const inBlock = pos - blkno * PAGE_SIZE;
      const n = Math.min(len - done, PAGE_SIZE - inBlock);
      this.cache.readBlock(PageKind.EphemeralBlock, this.fileId, blkno, this, this.scratch);
      out.set(this.scratch.subarray(inBlock, inBlock + n), done);
      done += n;
    }
    return out;
  }

  /** BlockSource: only full, immutable blocks reach here. */
  readBlockInto(blkno: number, dst: Uint8Array): void {
    assert((blkno + 1) * PAGE_SIZE <= this.written_bytes, "ephemeral block not yet written");
    let off = 0;
    while (off < PAGE_SIZE) {
      const n = readSync(this.fd, dst, off, PAGE_SIZE - off, blkno * PAGE_SIZE + off);
      assert(n > 0, "short read of ephemeral file");
      off += n;
    }
  }

  close(remove: boolean): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
    if (remove) unlinkSync(this.path);
  }
}

/** One record of an ephemeral file, as a flush job reads it back. */
export interface EphemeralEntry {
  key: Key;
  lsn: Lsn;
  /** Offset of the value bytes in the file. */
  offset: number;
  length: number;
  willInit: boolean;
}

/**
 * Scan an ephemeral file's records (flush job, in a worker). Reads in large sequential chunks
 * straight from the file: this read happens once, so it would only churn the cache.
 */
export function* scanEphemeralFile(
  path: string,
  length_bytes: number,
  withValues = true,
): IterableIterator<{ entry: EphemeralEntry; value: Uint8Array | null }> {
  const fd = openSync(path, "r");
  try {
    const CHUNK = 1 << 20;
    let buf = new Uint8Array(CHUNK);
    let bufStart = 0; // file offset of buf[0]
    let bufLen = 0;
    let pos = 0;
    const ensure = (need: number): void => {
      if (pos + need <= bufStart + bufLen) return;
      // pos may have jumped past the buffer (values skipped): then nothing is kept.
      const keep = Math.max(0, bufStart + bufLen - pos);
      const size = Math.max(CHUNK, need);
      const nb = size > buf.length ? new Uint8Array(size) : buf;
      if (keep > 0) nb.set(buf.subarray(pos - bufStart, pos - bufStart + keep), 0);
      buf = nb;
      bufStart = pos;
      bufLen = keep;
      while (bufLen < need) {
        const want = Math.min(buf.length - bufLen, length_bytes - (bufStart + bufLen));
        assert(want > 0, `ephemeral file ${path} ends inside a record`);
        const n = readSync(fd, buf, bufLen, want, bufStart + bufLen);
        assert(n > 0, `short read of ephemeral file ${path}`);
        bufLen += n;
      }
    };
    while (pos < length_bytes) {
      ensure(EPHEMERAL_RECORD_HEADER_SIZE);
      const o = pos - bufStart;
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      const len = dv.getUint32(o, true);
      let key = "";
      for (let i = 0; i < KEY_SIZE; i++) key += String.fromCharCode(buf[o + 4 + i]!);
      const lsn = (dv.getUint32(o + 22, true) * TWO_32 + dv.getUint32(o + 26, true)) as Lsn;
      pos += EPHEMERAL_RECORD_HEADER_SIZE;
      if (!(len > 0 && pos + len <= length_bytes)) assert(false, `ephemeral file ${path}: record at ${pos} runs past the end`);
      // The tag byte (first value byte) tells will_init; the rest is read only when asked for.
      ensure(withValues ? len : 1);
      const vo = pos - bufStart;
      const willInit = valueWillInit(buf.subarray(vo, vo + 1));
      const value = withValues ? buf.slice(vo, vo + len) : null;
      yield { entry: { key: key as Key, lsn, offset: pos, length: len, willInit }, value };
      pos += len;
    }
  } finally {
    closeSync(fd);
  }
}
