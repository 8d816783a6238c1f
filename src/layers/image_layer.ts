/**
 * Image layer files: the value of every key of [keyStart, keyEnd) that exists at one LSN.
 * A key of the range that is absent does not exist at that LSN. ImageLayerWriter streams the
 * file; ImageLayer reads it.
 *
 * File layout (layer_header.ts has the header, block_seal.ts the block seal, blob_io.ts the blob
 * format, disk_btree.ts the index):
 *
 *   +---------+--------------------------------+--------------------------+-------------+
 *   | block 0 | blocks 1..                     | leaves (consecutive)     | upper nodes |
 *   | header  | value stream: blobs in key     | B-tree, key width 18     | root last   |
 *   | 'PSIL'  | order, spanning blocks         |                          |             |
 *   +---------+--------------------------------+--------------------------+-------------+
 *
 * Index entry: key = the 18-byte Key; value = blob offset.
 * Values are whole Values (tag byte ValueTag.Image + payload), so readers hand out Values
 * everywhere; the reader checks the tag.
 *
 * Reader memory: an open layer keeps its header fields and its index root (8 kB, saving a cache
 * read per lookup); lookups share one cursor and one value-block buffer per thread (module
 * scope: lookups are synchronous and never nest), so a lookup allocates only the values it
 * returns. Iterators (entries(), index()/keys()) own their buffers and may interleave freely
 * with lookups and with each other.
 *
 * Invariants: keys strictly increase; keyStart <= key < keyEnd; every value is an image.
 * The reader re-checks order and ranges on what it reads and reports a CorruptionError naming
 * the block rather than a wrong value.
 */
import type { PageCacheApi } from "../cache/api.js";
import { assert } from "../types/assert.js";
import { BadStateError, CorruptionError, InvalidArgumentError } from "../types/errors.js";
import { KEY_SIZE, type Key, keyFromBytes, keyToBytes } from "../types/key.js";
import { type Lsn, lsnAdd } from "../types/lsn.js";
import { type Value, ValueTag } from "../types/value.js";
import { BlobReader } from "./blob_io.js";
import type { BlockFile } from "./block_file.js";
import { BtreeCursor, type BtreeMeta } from "./disk_btree.js";
import { LayerFileWriter } from "./layer_file_writer.js";
import { HEADER_BLK } from "./layer_header.js";
import type { LayerDesc } from "./layer_name.js";
import { openLayerFile } from "./layer_open.js";
import type { ReconstructState } from "./reconstruct_state.js";

export const IMAGE_KEY_WIDTH = KEY_SIZE;

/** Streams an image layer: images in strictly increasing key order. */
export class ImageLayerWriter extends LayerFileWriter {
  readonly lsn: Lsn;

  /** `_cache` is accepted for symmetry with the readers; writing does not go through it. */
  constructor(_cache: PageCacheApi, dir: string, keyStart: Key, lsn: Lsn) {
    // lsn + 1 (the end of the image's LSN range) must stay exact. Checked before the temp
    // file is created.
    assert(Number.isSafeInteger(lsn + 1) && lsn >= 0, `bad image LSN ${lsn}`);
    super("image", dir, keyStart, { start: lsn, end: lsnAdd(lsn, 1) }, IMAGE_KEY_WIDTH);
    this.lsn = lsn;
  }

  put(key: Key, value: Value): void {
    this.checkPut(key);
    assert(this.lastKey === null || key > this.lastKey, "put: keys must strictly increase");
    if (value.length === 0 || value[0] !== ValueTag.Image)
      throw new InvalidArgumentError(`put: an image layer holds images only (tag ${value[0]})`);
    this.addEntry(key, this.appendValue(key, value));
  }
}

/**
 * Lookup scratch shared by every ImageLayer of this thread: a lookup is synchronous and never
 * nests, so one set serves them all and an open layer costs no buffers. Iterators have their own.
 */
const lookup = {
  cursor: new BtreeCursor(),
  blobs: new BlobReader(),
  search: new Uint8Array(IMAGE_KEY_WIDTH),
  busy: false,
};

export class ImageLayer {
  readonly desc: LayerDesc;
  readonly path: string;
  /** The LSN of the image (= desc.lsnRange.start). */
  readonly lsn: Lsn;
  private readonly file: BlockFile;
  private readonly meta: BtreeMeta;
  private readonly valuesBytes: number;
  /** The index root, kept: saves one cache read per lookup (8 kB per open layer). */
  private readonly rootNode: Uint8Array;

  private constructor(file: BlockFile, desc: LayerDesc, meta: BtreeMeta, valuesBytes: number, rootNode: Uint8Array) {
    this.file = file;
    this.path = file.path;
    this.desc = desc;
    this.lsn = desc.lsnRange.start;
    this.meta = meta;
    this.valuesBytes = valuesBytes;
    this.rootNode = rootNode;
  }

  /** Open and verify the header; it must agree with the ranges in the file's name. */
  static open(cache: PageCacheApi, filePath: string): ImageLayer {
    const o = openLayerFile(cache, filePath, "image", IMAGE_KEY_WIDTH);
    return new ImageLayer(o.file, o.desc, o.meta, o.valuesBytes, o.rootNode);
  }

  get numEntries(): number {
    return this.meta.numEntries;
  }

  /** Levels of the index B-tree (1 = the root is a leaf); for diagnostics. */
  get indexDepth(): number {
    return this.meta.depth;
  }

  /** The image of `key`, or null when this layer has none (inside keyRange: it does not exist). */
  get(key: Key): Value | null {
    this.checkOpen();
    if (key < this.desc.keyRange.start || key >= this.desc.keyRange.end) return null;
    const s = lookup;
    assert(!s.busy, "image layer lookups must not nest");
    s.busy = true;
    try {
      keyToBytes(key, s.search, 0);
      const c = s.cursor;
      c.reset(this.file, this.meta, IMAGE_KEY_WIDTH, this.rootNode);
      if (!c.seekGE(s.search) || c.compareKey(s.search, IMAGE_KEY_WIDTH) !== 0) return null;
      return this.readValue(s.blobs, c.value(), c.leafBlk);
    } finally {
      s.busy = false;
    }
  }

  /**
   * Add the image of `key` to `state` if this layer has one and its LSN is in
   * [lsnFloor, lsnEnd). Returns state.complete. Does not touch state.layersVisited.
   */
  getValues(key: Key, lsnFloor: Lsn, lsnEnd: Lsn, state: ReconstructState): boolean {
    if (this.lsn < lsnFloor || this.lsn >= lsnEnd) return state.complete;
    const value = this.get(key);
    if (value !== null) state.add(this.lsn, value);
    return state.complete;
  }

  /** Every entry in key order; values are read as the iteration reaches them. */
  *entries(): IterableIterator<{ key: Key; lsn: Lsn; value: Value }> {
    const blobs = new BlobReader();
    for (const e of this.walk()) {
      yield { key: e.key, lsn: this.lsn, value: this.readValue(blobs, e.offset, e.leafBlk) };
    }
  }

  /** Every key in order, from the index alone. */
  *keys(): IterableIterator<Key> {
    for (const e of this.walk()) yield e.key;
  }

  close(): void {
    this.file.close();
  }

  get closed(): boolean {
    return this.file.closed;
  }

  // -------------------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.file.closed) throw new BadStateError(`image layer ${this.path} is closed`);
  }

  private readValue(blobs: BlobReader, offset: number, leafBlk: number): Value {
    const value = blobs.read(this.file, this.valuesBytes, offset, leafBlk);
    if (value[0] !== ValueTag.Image) throw new CorruptionError(this.path, leafBlk, `value tag ${value[0]} in an image layer`);
    return value;
  }

  /** Walk the index in order with its own cursor, checking order and range. */
  private *walk(): Generator<{ key: Key; offset: number; leafBlk: number }> {
    this.checkOpen();
    const c = new BtreeCursor();
    c.reset(this.file, this.meta, IMAGE_KEY_WIDTH, this.rootNode);
    const buf = new Uint8Array(IMAGE_KEY_WIDTH);
    let prev: Key | null = null;
    let seen = 0;
    const d = this.desc;
    for (let ok = c.seekFirst(); ok; ok = c.next()) {
      c.copyKey(buf, 0);
      const key = keyFromBytes(buf, 0);
      if (prev !== null && !(key > prev)) throw new CorruptionError(this.path, c.leafBlk, "index keys out of order");
      if (key < d.keyRange.start || key >= d.keyRange.end)
        throw new CorruptionError(this.path, c.leafBlk, "index key outside the layer's key range");
      prev = key;
      seen++;
      yield { key, offset: c.value(), leafBlk: c.leafBlk };
    }
    if (seen !== this.meta.numEntries)
      throw new CorruptionError(this.path, HEADER_BLK, `header says ${this.meta.numEntries} entries, index has ${seen}`);
  }
}
