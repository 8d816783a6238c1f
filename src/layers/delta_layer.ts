/**
 * Delta layer files: every version of the keys of [keyStart, keyEnd) with LSN in
 * [lsnStart, lsnEnd). DeltaLayerWriter streams them to disk; DeltaLayer reads them.
 *
 * File layout (layer_header.ts has the header, block_seal.ts the block seal, blob_io.ts the blob
 * format, disk_btree.ts the index):
 *
 *   +---------+--------------------------------+--------------------------+-------------+
 *   | block 0 | blocks 1..                     | leaves (consecutive)     | upper nodes |
 *   | header  | value stream: blobs in (key,   | B-tree, key width 26     | root last   |
 *   | 'PSDL'  | lsn) order, spanning blocks    |                          |             |
 *   +---------+--------------------------------+--------------------------+-------------+
 *
 * Index entry:
 *   key   = 18-byte Key ‖ LSN as u64 big-endian (hi, lo)  → byte order = (key, lsn) order
 *   value = blob offset × 2 + will_init                      (offset < 2^48 in practice)
 * will_init in the index lets a reader know where a walk ends without reading the value; the
 * reader cross-checks it against the value's tag.
 *
 * Values are written as they come (only the current block is buffered); the index entries are
 * kept packed in memory and written as a B-tree at finish(), after the values. Blobs are
 * contiguous in index order, so an entry's value size is the distance to the next offset:
 * index() reports sizes without reading a value.
 *
 * Reader memory: an open layer keeps its header fields and its index root (8 kB, saving a cache
 * read per lookup); lookups share one cursor and one value-block buffer per thread (module
 * scope: lookups are synchronous and never nest), so a lookup allocates only the values it
 * returns. Iterators (entries(), index()/keys()) own their buffers and may interleave freely
 * with lookups and with each other.
 *
 * Invariants: entries strictly increase in (key, lsn); keyStart <= key < keyEnd;
 * lsnStart <= lsn < lsnEnd. The reader re-checks them on what it reads (order, ranges, tag vs
 * will_init) and reports a CorruptionError naming the block rather than a wrong value.
 */
import type { PageCacheApi } from "../cache/api.js";
import { assert } from "../types/assert.js";
import { readU64BEOrNeg, writeU64BE } from "../types/bytes.js";
import { BadStateError, CorruptionError, InvalidArgumentError } from "../types/errors.js";
import { KEY_SIZE, type Key, keyFromBytes, keyToBytes } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { isValueTag, type Value, valueWillInit } from "../types/value.js";
import { BLOB_HEADER_BYTES, BlobReader, MAX_VALUE_BYTES } from "./blob_io.js";
import type { BlockFile } from "./block_file.js";
import { BtreeCursor, type BtreeMeta } from "./disk_btree.js";
import { LayerFileWriter } from "./layer_file_writer.js";
import { HEADER_BLK } from "./layer_header.js";
import type { LayerDesc, LsnRange } from "./layer_name.js";
import { openLayerFile } from "./layer_open.js";
import type { ReconstructState } from "./reconstruct_state.js";

/** Index key width: Key + big-endian LSN. */
export const DELTA_KEY_WIDTH = KEY_SIZE + 8;

/** Streams a delta layer: entries in strictly increasing (key, lsn) order. */
export class DeltaLayerWriter extends LayerFileWriter {
  readonly lsnRange: LsnRange;
  private lastLsn: Lsn = -1 as Lsn;

  /** `_cache` is accepted for symmetry with the readers; writing does not go through it. */
  constructor(_cache: PageCacheApi, dir: string, keyStart: Key, lsnRange: LsnRange) {
    // Checked before the temp file is created.
    assert(Number.isSafeInteger(lsnRange.start) && Number.isSafeInteger(lsnRange.end), "LSN range not integral");
    assert(lsnRange.start >= 0 && lsnRange.start < lsnRange.end, `empty LSN range ${lsnRange.start}..${lsnRange.end}`);
    super("delta", dir, keyStart, lsnRange, DELTA_KEY_WIDTH);
    this.lsnRange = { start: lsnRange.start, end: lsnRange.end };
  }

  put(key: Key, lsn: Lsn, value: Value): void {
    this.checkPut(key);
    if (!(Number.isSafeInteger(lsn) && lsn >= this.lsnRange.start && lsn < this.lsnRange.end))
      assert(false, `put: LSN ${lsn} outside the layer's range`);
    assert(
      this.lastKey === null || key > this.lastKey || (key === this.lastKey && lsn > this.lastLsn),
      "put: (key, lsn) must strictly increase",
    );
    if (value.length === 0 || !isValueTag(value[0]!))
      throw new InvalidArgumentError(`put: value without a valid tag byte (${value.length} bytes)`);
    const offset = this.appendValue(key, value);
    writeU64BE(this.entryKey, KEY_SIZE, lsn);
    this.addEntry(key, offset * 2 + (valueWillInit(value) ? 1 : 0));
    this.lastLsn = lsn;
  }
}

/**
 * Lookup scratch shared by every DeltaLayer of this thread: a lookup is synchronous and never
 * nests (ReconstructState.add does not call back into layers), so one set serves them all and
 * an open layer costs no buffers. Iterators have their own.
 */
const lookup = {
  cursor: new BtreeCursor(),
  blobs: new BlobReader(),
  search: new Uint8Array(DELTA_KEY_WIDTH),
  entry: new Uint8Array(DELTA_KEY_WIDTH),
  busy: false,
};

export class DeltaLayer {
  readonly desc: LayerDesc;
  readonly path: string;
  private readonly file: BlockFile;
  private readonly meta: BtreeMeta;
  private readonly valuesBytes: number;
  /** The index root, kept: saves one cache read per lookup (8 kB per open layer). */
  private readonly rootNode: Uint8Array;

  private constructor(file: BlockFile, desc: LayerDesc, meta: BtreeMeta, valuesBytes: number, rootNode: Uint8Array) {
    this.file = file;
    this.path = file.path;
    this.desc = desc;
    this.meta = meta;
    this.valuesBytes = valuesBytes;
    this.rootNode = rootNode;
  }

  /** Open and verify the header; it must agree with the ranges in the file's name. */
  static open(cache: PageCacheApi, filePath: string): DeltaLayer {
    const o = openLayerFile(cache, filePath, "delta", DELTA_KEY_WIDTH);
    return new DeltaLayer(o.file, o.desc, o.meta, o.valuesBytes, o.rootNode);
  }

  get numEntries(): number {
    return this.meta.numEntries;
  }

  /** Levels of the index B-tree (1 = the root is a leaf); for diagnostics. */
  get indexDepth(): number {
    return this.meta.depth;
  }

  /**
   * Add the versions of `key` with lsnFloor <= lsn < lsnEnd to `state`, newest first, until
   * one completes it (will_init) or they run out. Returns state.complete.
   * Does not touch state.layersVisited (the caller counts the layers it visits).
   */
  getValues(key: Key, lsnFloor: Lsn, lsnEnd: Lsn, state: ReconstructState): boolean {
    this.checkOpen();
    const d = this.desc;
    if (key < d.keyRange.start || key >= d.keyRange.end) return state.complete;
    const lo = Math.max(lsnFloor, d.lsnRange.start);
    const hi = Math.min(lsnEnd, d.lsnRange.end);
    if (lo >= hi) return state.complete;
    const s = lookup;
    assert(!s.busy, "delta layer lookups must not nest");
    s.busy = true;
    try {
      keyToBytes(key, s.search, 0);
      writeU64BE(s.search, KEY_SIZE, hi);
      const c = s.cursor;
      c.reset(this.file, this.meta, DELTA_KEY_WIDTH, this.rootNode);
      c.seekGE(s.search);
      let newer = hi; // versions must arrive strictly below this
      // From the last entry < (key, hi) backwards, while the key matches and lsn >= lo.
      for (let ok = c.prev(); ok; ok = c.prev()) {
        const e = s.entry;
        c.copyKey(e, 0);
        let sameKey = true;
        for (let i = 0; i < KEY_SIZE; i++) {
          if (e[i] !== s.search[i]) {
            sameKey = false;
            break;
          }
        }
        if (!sameKey) break;
        const lsn = readU64BEOrNeg(e, KEY_SIZE) as Lsn;
        if (lsn < 0 || lsn >= newer) throw new CorruptionError(this.path, c.leafBlk, "index entries out of order");
        if (lsn < lo) break;
        newer = lsn;
        const v = c.value();
        const value = this.readValue(s.blobs, v, c.leafBlk);
        if (state.add(lsn, value)) break;
      }
    } finally {
      s.busy = false;
    }
    return state.complete;
  }

  /** Every entry in (key, lsn) order; values are read as the iteration reaches them. */
  *entries(): IterableIterator<{ key: Key; lsn: Lsn; value: Value }> {
    const blobs = new BlobReader();
    for (const e of this.walk()) {
      yield { key: e.key, lsn: e.lsn, value: this.readValue(blobs, e.ref, e.leafBlk) };
    }
  }

  /** Every entry's (key, lsn, value size in bytes) in order, from the index alone. */
  *index(): IterableIterator<{ key: Key; lsn: Lsn; sizeBytes: number }> {
    let pending: { key: Key; lsn: Lsn; offset: number; leafBlk: number } | null = null;
    for (const e of this.walk()) {
      const offset = Math.floor(e.ref / 2);
      if (pending !== null) yield { key: pending.key, lsn: pending.lsn, sizeBytes: this.blobSize(pending.offset, offset, pending.leafBlk) };
      pending = { key: e.key, lsn: e.lsn, offset, leafBlk: e.leafBlk };
    }
    if (pending !== null)
      yield { key: pending.key, lsn: pending.lsn, sizeBytes: this.blobSize(pending.offset, this.valuesBytes, pending.leafBlk) };
  }

  close(): void {
    this.file.close();
  }

  get closed(): boolean {
    return this.file.closed;
  }

  // -------------------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.file.closed) throw new BadStateError(`delta layer ${this.path} is closed`);
  }

  /** Read the value an index entry refers to and cross-check its will_init bit. */
  private readValue(blobs: BlobReader, ref: number, leafBlk: number): Value {
    const willInit = ref % 2 === 1;
    const value = blobs.read(this.file, this.valuesBytes, Math.floor(ref / 2), leafBlk);
    if (!isValueTag(value[0]!) || valueWillInit(value) !== willInit) {
      throw new CorruptionError(this.path, leafBlk, `value tag ${value[0]} disagrees with the index (will_init ${willInit})`);
    }
    return value;
  }

  /** Size of the value in the blob at `offset`, from the offset of the next blob. */
  private blobSize(offset: number, nextOffset: number, leafBlk: number): number {
    const size = nextOffset - offset - BLOB_HEADER_BYTES;
    if (!(size >= 1 && size <= MAX_VALUE_BYTES))
      throw new CorruptionError(this.path, leafBlk, `index offsets ${offset}, ${nextOffset} imply a value of ${size} bytes`);
    return size;
  }

  /**
   * Walk the index in order with its own cursor, checking order and ranges; yields decoded
   * entries. Re-uses the key string while consecutive entries share the key.
   */
  private *walk(): Generator<{ key: Key; lsn: Lsn; ref: number; leafBlk: number }> {
    this.checkOpen();
    const c = new BtreeCursor();
    c.reset(this.file, this.meta, DELTA_KEY_WIDTH, this.rootNode);
    let cur = new Uint8Array(DELTA_KEY_WIDTH);
    let prev = new Uint8Array(DELTA_KEY_WIDTH);
    let key: Key | null = null;
    let seen = 0;
    const d = this.desc;
    for (let ok = c.seekFirst(); ok; ok = c.next()) {
      c.copyKey(cur, 0);
      let cmp = key === null ? 1 : 0;
      let keyDiffers = key === null;
      for (let i = 0; i < DELTA_KEY_WIDTH && cmp === 0; i++) {
        cmp = cur[i]! - prev[i]!;
        if (cmp !== 0 && i < KEY_SIZE) keyDiffers = true;
      }
      if (cmp <= 0) throw new CorruptionError(this.path, c.leafBlk, "index entries out of order");
      if (keyDiffers) {
        key = keyFromBytes(cur, 0);
        if (key < d.keyRange.start || key >= d.keyRange.end)
          throw new CorruptionError(this.path, c.leafBlk, "index key outside the layer's key range");
      }
      const lsn = readU64BEOrNeg(cur, KEY_SIZE) as Lsn;
      if (lsn < d.lsnRange.start || lsn >= d.lsnRange.end)
        throw new CorruptionError(this.path, c.leafBlk, `index LSN ${lsn} outside the layer's range`);
      seen++;
      const ref = c.value();
      const leafBlk = c.leafBlk;
      const t = cur;
      cur = prev;
      prev = t;
      yield { key: key!, lsn, ref, leafBlk };
    }
    if (seen !== this.meta.numEntries)
      throw new CorruptionError(this.path, HEADER_BLK, `header says ${this.meta.numEntries} entries, index has ${seen}`);
  }
}
