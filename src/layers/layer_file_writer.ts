/**
 * What the delta and image layer writers share: LayerFileWriter streams one layer file under
 * a temp name and, at finish(), writes its index and header and renames it durably into
 * place under its layer name.
 *
 * Owns: the temp file (a BlockFileWriter named `<kind>-<random>.___temp` in the layer's
 * directory), block 0 reserved for the header, the value stream (BlobWriter), the index
 * builder, the open → finished | aborted state, and sealing a finished file (the header
 * block written last, then fsync + rename + fsync of the directory). A subclass owns only what
 * differs: what an index entry holds besides the key, and which entries may follow which.
 *
 * Invariants: an entry's key is inside [keyStart, keyEnd) and keys never decrease (a
 * subclass checks its own strict order before putEntry); nothing is written after
 * finish() or abort(); a failed finish() deletes the temp file; the write path allocates
 * nothing per value (entryKey is one scratch buffer, values go straight into the block).
 */
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { assert } from "../types/assert.js";
import { BadStateError } from "../types/errors.js";
import { KEY_SIZE, type Key, keyToBytes } from "../types/key.js";
import type { Value } from "../types/value.js";
import { INVALID_LSN } from "../types/lsn.js";
import { BlobWriter, VALUES_START_BLK, valueBlocksFor } from "./blob_io.js";
import { BlockFileWriter } from "./block_file.js";
import { BLOCK_SIZE } from "./block_seal.js";
import { DiskBtreeBuilder } from "./disk_btree.js";
import { encodeLayerHeader, HEADER_BLK } from "./layer_header.js";
import { type LayerDesc, type LayerKind, layerName, type LsnRange, TEMP_SUFFIX } from "./layer_name.js";

export abstract class LayerFileWriter {
  readonly dir: string;
  readonly keyStart: Key;
  private readonly kind: LayerKind;
  /** The LSN range of the finished layer's descriptor (an image at L: [L, L+1)). */
  private readonly descLsnRange: LsnRange;
  private readonly keyWidth: number;
  private readonly out: BlockFileWriter;
  private readonly blobs: BlobWriter;
  private readonly index: DiskBtreeBuilder;
  /**
   * The index key of the entry being put: the Key in bytes 0..KEY_SIZE, the rest the
   * subclass's (a delta's LSN). One buffer per writer, reused for every entry.
   */
  protected readonly entryKey: Uint8Array;
  /** The key of the last entry put; null before the first. */
  protected lastKey: Key | null = null;
  private state: "open" | "finished" | "aborted" = "open";

  protected constructor(kind: LayerKind, dir: string, keyStart: Key, descLsnRange: LsnRange, keyWidth: number) {
    assert(keyStart.length === KEY_SIZE, "keyStart is not a Key");
    assert(keyWidth >= KEY_SIZE, "an index key starts with the Key");
    this.kind = kind;
    this.dir = dir;
    this.keyStart = keyStart;
    this.descLsnRange = { start: descLsnRange.start, end: descLsnRange.end };
    this.keyWidth = keyWidth;
    this.index = new DiskBtreeBuilder(keyWidth);
    this.entryKey = new Uint8Array(keyWidth);
    this.out = new BlockFileWriter(path.join(dir, `${kind}-${randomBytes(8).toString("hex")}${TEMP_SUFFIX}`));
    try {
      // Block 0 is reserved for the header, rewritten by finish() once the counts are known.
      this.out.appendBlock(new Uint8Array(BLOCK_SIZE));
      this.blobs = new BlobWriter(this.out);
    } catch (e) {
      this.out.abort();
      throw e;
    }
  }

  /** Bytes the file would have if finished now (values + header + an upper bound of the index). */
  get sizeBytes(): number {
    return (VALUES_START_BLK + valueBlocksFor(this.blobs.lengthBytes)) * BLOCK_SIZE + this.index.estimatedBytes;
  }

  get numEntries(): number {
    return this.index.numEntries;
  }

  /** Throws unless the writer is open; then checks that `key` is a Key at or above keyStart. */
  protected checkPut(key: Key): void {
    this.checkOpen();
    assert(key.length === KEY_SIZE && key >= this.keyStart, "put: key below the layer's key start");
  }

  /**
   * Append `value` to the value stream and write `key` into entryKey; returns the value's
   * offset. The subclass then fills the rest of entryKey and calls addEntry.
   */
  protected appendValue(key: Key, value: Value): number {
    const offset = this.blobs.append(value);
    keyToBytes(key, this.entryKey, 0);
    return offset;
  }

  /** Add the index entry in entryKey with value `ref`; `key` becomes lastKey. */
  protected addEntry(key: Key, ref: number): void {
    this.index.add(this.entryKey, 0, ref);
    this.lastKey = key;
  }

  /** Write the index and the header, make the file durable under its layer name. */
  finish(keyEnd: Key): LayerDesc {
    this.checkOpen();
    assert(keyEnd.length === KEY_SIZE && keyEnd > this.keyStart, "finish: empty key range");
    assert(this.lastKey === null || this.lastKey < keyEnd, "finish: keyEnd must be above every key put");
    const keyRange = { start: this.keyStart, end: keyEnd };
    const lsnRange = { ...this.descLsnRange };
    const fileName = layerName(this.kind, keyRange, lsnRange);
    try {
      const valuesBytes = this.blobs.finish();
      const meta = this.index.finish(this.out);
      const header = new Uint8Array(BLOCK_SIZE);
      encodeLayerHeader(
        {
          kind: this.kind,
          keyStart: this.keyStart,
          keyEnd,
          // An image's header holds its one LSN and 0; a delta's, its range.
          lsnStart: lsnRange.start,
          lsnEnd: this.kind === "delta" ? lsnRange.end : INVALID_LSN,
          entryCount: meta.numEntries,
          valuesBytes,
          indexStartBlk: meta.startBlk,
          indexLeafEndBlk: meta.leafEndBlk,
          indexRootBlk: meta.rootBlk,
          indexDepth: meta.depth,
          totalBlocks: this.out.blocksWritten,
          indexKeyWidth: this.keyWidth,
        },
        header,
      );
      this.out.writeBlock(HEADER_BLK, header);
      const fileSize = this.out.finish(path.join(this.dir, fileName));
      this.state = "finished";
      return { kind: this.kind, keyRange, lsnRange, fileName, fileSize };
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Delete the temp file. Idempotent; a no-op after finish(). */
  abort(): void {
    if (this.state !== "open") return;
    this.state = "aborted";
    this.out.abort();
  }

  private checkOpen(): void {
    if (this.state !== "open") throw new BadStateError(`${this.kind} layer writer is ${this.state}`);
  }
}
