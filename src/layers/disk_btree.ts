/**
 * Disk B-tree: the sorted index of a layer file. Fixed-width byte keys (26 bytes for deltas:
 * key + LSN big-endian; 18 for images), non-negative integer values below 2^53 (a blob
 * reference in leaves, a child block number in internal nodes).
 *
 * Owns the node format, the bottom-up build and the cursor (seek, next, prev).
 *
 * Build: DiskBtreeBuilder keeps the entries in memory, packed (keys in one growable byte
 * array, values in a Float64Array; no object per entry), in strictly increasing key order.
 * finish() writes the tree after the values: all leaves first (so leaves are consecutive
 * blocks in key order and a cursor moves to a sibling leaf by ±1), then each upper level from
 * the first keys of the level below, until one node (the root, the last block written) remains.
 *
 * Node (one sealed block, see block_seal.ts; integers big-endian):
 *
 *   off        size                  field
 *   0          2                     magic 0x4254 ('BT')
 *   2          1                     level (0 = leaf)
 *   3          1                     zero
 *   4          2                     entry count
 *   6          2                     key width W
 *   8          2                     prefix length P (bytes shared by every key of the node)
 *   10         P                     prefix
 *   10+P       count × (W−P+7)       entries: key suffix (W−P bytes), value (u56: u24 hi, u32 lo)
 *   ..         ..                    zero
 *   8188       4                     block seal
 *
 * Prefix compression: a node takes entries greedily while they fit with P = the common prefix
 * of its first and last key (keys are sorted, so that is every key's common prefix). Delta
 * keys of one relation share 13+ bytes, which roughly doubles the fan-out.
 * An internal node's entry i is (first key of child i, child block number); a search takes the
 * last child whose first key is <= the searched key.
 *
 * Invariants the reader checks (a failure is a CorruptionError naming the block): magic, key
 * width, level as expected for the depth, prefix and entries within the payload, leaves inside
 * [startBlk, leafEndBlk), internal nodes inside [leafEndBlk, rootBlk], every child block below
 * its parent's (so no walk can loop), values below 2^53, depth <= MAX_BTREE_DEPTH.
 */
import { assert } from "../types/assert.js";
import { readU16BE, readU32BE, writeU16BE, writeU32BE } from "../types/bytes.js";
import { CorruptionError } from "../types/errors.js";
import type { BlockFile, BlockSink } from "./block_file.js";
import { BLOCK_PAYLOAD, BLOCK_SIZE } from "./block_seal.js";

export const NODE_MAGIC = 0x4254;
export const NODE_HEADER_BYTES = 10;
/** Bytes of a value in a node: a u56, of which we use up to 2^53 − 1. */
export const BTREE_VALUE_BYTES = 7;
/** Deepest tree we build or read. Fan-out >= 7 at MAX_KEY_WIDTH, far more for layer keys. */
export const MAX_BTREE_DEPTH = 8;
export const MAX_KEY_WIDTH = 1024;

const TWO_32 = 0x1_0000_0000;
const MAX_SAFE_HI = 0x1f_ffff;

/** Where a tree lives in its file and what it holds; stored in the layer header. */
export interface BtreeMeta {
  /** First leaf = first block of the index. */
  startBlk: number;
  /** One past the last leaf; internal nodes follow. */
  leafEndBlk: number;
  /** The root: the last block of the index. */
  rootBlk: number;
  /** Levels; 1 = the root is a leaf. */
  depth: number;
  numEntries: number;
}

function nodeBytes(count: number, keyWidth: number, prefixLen: number): number {
  return NODE_HEADER_BYTES + prefixLen + count * (keyWidth - prefixLen + BTREE_VALUE_BYTES);
}

function writeValue(b: Uint8Array, off: number, v: number): void {
  const hi = Math.floor(v / TWO_32);
  b[off] = hi >>> 16;
  b[off + 1] = (hi >>> 8) & 0xff;
  b[off + 2] = hi & 0xff;
  writeU32BE(b, off + 3, v % TWO_32);
}

// ---------------------------------------------------------------------------------------------
// Build
// ---------------------------------------------------------------------------------------------

/** Packed, growable (key, value) list: the in-memory form of one level. */
class PackedEntries {
  keys: Uint8Array;
  values: Float64Array;
  count = 0;
  constructor(
    readonly keyWidth: number,
    initialCapacity: number,
  ) {
    this.keys = new Uint8Array(initialCapacity * keyWidth);
    this.values = new Float64Array(initialCapacity);
  }

  push(key: Uint8Array, keyOff: number, value: number): void {
    if (this.count === this.values.length) {
      const cap = this.values.length * 2;
      const keys = new Uint8Array(cap * this.keyWidth);
      keys.set(this.keys);
      this.keys = keys;
      const values = new Float64Array(cap);
      values.set(this.values);
      this.values = values;
    }
    this.keys.set(key.subarray(keyOff, keyOff + this.keyWidth), this.count * this.keyWidth);
    this.values[this.count] = value;
    this.count++;
  }
}

/**
 * Collects entries in strictly increasing key order, then writes the tree with finish().
 */
export class DiskBtreeBuilder {
  readonly keyWidth: number;
  private readonly entries: PackedEntries;
  private finished = false;

  constructor(keyWidth: number) {
    assert(Number.isInteger(keyWidth) && keyWidth >= 1 && keyWidth <= MAX_KEY_WIDTH, `B-tree key width ${keyWidth} out of range`);
    this.keyWidth = keyWidth;
    this.entries = new PackedEntries(keyWidth, 1024);
  }

  get numEntries(): number {
    return this.entries.count;
  }

  /**
   * Upper bound of the bytes finish() will write (no prefix compression assumed); used to
   * decide when a layer file is big enough to cut.
   */
  get estimatedBytes(): number {
    const perLeaf = Math.floor((BLOCK_PAYLOAD - NODE_HEADER_BYTES) / (this.keyWidth + BTREE_VALUE_BYTES));
    const leaves = Math.max(1, Math.ceil(this.entries.count / perLeaf));
    // Upper levels add ~1/fan-out; one extra block covers them for any realistic size.
    return (leaves + Math.ceil(leaves / perLeaf) + 1) * BLOCK_SIZE;
  }

  /** Add (key[keyOff .. keyOff+keyWidth), value). Keys must strictly increase. */
  add(key: Uint8Array, keyOff: number, value: number): void {
    assert(!this.finished, "DiskBtreeBuilder: add after finish");
    assert(Number.isSafeInteger(value) && value >= 0, "B-tree value must be a safe non-negative integer");
    const e = this.entries;
    const w = this.keyWidth;
    if (e.count > 0) {
      const prev = (e.count - 1) * w;
      let c = 0;
      for (let i = 0; i < w && c === 0; i++) c = key[keyOff + i]! - e.keys[prev + i]!;
      assert(c > 0, "B-tree keys must be strictly increasing");
    }
    e.push(key, keyOff, value);
  }

  /** Write every node to `sink` (leaves first, root last). */
  finish(sink: BlockSink): BtreeMeta {
    assert(!this.finished, "DiskBtreeBuilder: finish twice");
    this.finished = true;
    const block = new Uint8Array(BLOCK_SIZE);
    const numEntries = this.entries.count;
    if (numEntries === 0) {
      // An empty tree: one empty leaf, which is the root.
      block.fill(0);
      writeNodeHeader(block, 0, 0, this.keyWidth, 0);
      const blk = sink.appendBlock(block);
      return { startBlk: blk, leafEndBlk: blk + 1, rootBlk: blk, depth: 1, numEntries: 0 };
    }
    let level = 0;
    let input = this.entries;
    let startBlk = -1;
    let leafEndBlk = -1;
    for (;;) {
      assert(level < MAX_BTREE_DEPTH, "B-tree too deep");
      const { next, firstBlk, lastBlk } = this.writeLevel(sink, block, level, input);
      if (level === 0) {
        startBlk = firstBlk;
        leafEndBlk = lastBlk + 1;
      }
      if (next.count === 1) {
        return { startBlk, leafEndBlk, rootBlk: lastBlk, depth: level + 1, numEntries };
      }
      input = next;
      level++;
    }
  }

  /** Pack `input` into nodes of `level`; returns the separators for the level above. */
  private writeLevel(
    sink: BlockSink,
    block: Uint8Array,
    level: number,
    input: PackedEntries,
  ): { next: PackedEntries; firstBlk: number; lastBlk: number } {
    const w = this.keyWidth;
    const keys = input.keys;
    const n = input.count;
    const next = new PackedEntries(w, Math.max(16, Math.ceil(n / 64)));
    let firstBlk = -1;
    let lastBlk = -1;
    let i0 = 0;
    while (i0 < n) {
      // Greedy: extend the node while the entries fit with their common prefix.
      let prefixLen = w;
      let end = i0 + 1;
      while (end < n) {
        let l = 0;
        const a = i0 * w;
        const b = end * w;
        while (l < prefixLen && keys[a + l] === keys[b + l]) l++;
        if (nodeBytes(end - i0 + 1, w, l) > BLOCK_PAYLOAD) break;
        prefixLen = l;
        end++;
      }
      const blk = this.writeNode(sink, block, level, input, i0, end, prefixLen);
      if (firstBlk < 0) firstBlk = blk;
      // Consecutive nodes of a level are consecutive blocks: leaves rely on it for sibling moves.
      assert(lastBlk < 0 || blk === lastBlk + 1, "B-tree level not contiguous");
      lastBlk = blk;
      next.push(keys, i0 * w, blk);
      i0 = end;
    }
    return { next, firstBlk, lastBlk };
  }

  private writeNode(
    sink: BlockSink,
    block: Uint8Array,
    level: number,
    input: PackedEntries,
    from: number,
    to: number,
    prefixLen: number,
  ): number {
    const w = this.keyWidth;
    const count = to - from;
    assert(nodeBytes(count, w, prefixLen) <= BLOCK_PAYLOAD, "B-tree node overflow");
    block.fill(0);
    writeNodeHeader(block, level, count, w, prefixLen);
    block.set(input.keys.subarray(from * w, from * w + prefixLen), NODE_HEADER_BYTES);
    const sw = w - prefixLen;
    let off = NODE_HEADER_BYTES + prefixLen;
    for (let i = from; i < to; i++) {
      block.set(input.keys.subarray(i * w + prefixLen, (i + 1) * w), off);
      writeValue(block, off + sw, input.values[i]!);
      off += sw + BTREE_VALUE_BYTES;
    }
    return sink.appendBlock(block);
  }
}

function nodeCorruption(path: string, blk: number, reason: string): CorruptionError {
  return new CorruptionError(path, blk, `index node: ${reason}`);
}

function writeNodeHeader(block: Uint8Array, level: number, count: number, keyWidth: number, prefixLen: number): void {
  writeU16BE(block, 0, NODE_MAGIC);
  block[2] = level;
  block[3] = 0;
  writeU16BE(block, 4, count);
  writeU16BE(block, 6, keyWidth);
  writeU16BE(block, 8, prefixLen);
}

// ---------------------------------------------------------------------------------------------
// Read
// ---------------------------------------------------------------------------------------------

/**
 * Check a tree's location against its file before any node is read. `refBlk` is the block
 * that holds the meta (the layer header), named in the error.
 */
export function validateBtreeMeta(file: BlockFile, refBlk: number, meta: BtreeMeta, keyWidth: number, storedKeyWidth: number): void {
  const bad = (reason: string): CorruptionError => new CorruptionError(file.path, refBlk, `index: ${reason}`);
  if (storedKeyWidth !== keyWidth) throw bad(`key width ${storedKeyWidth}, expected ${keyWidth}`);
  const { startBlk, leafEndBlk, rootBlk, depth, numEntries } = meta;
  if (!(depth >= 1 && depth <= MAX_BTREE_DEPTH)) throw bad(`depth ${depth} out of range`);
  if (!(startBlk < leafEndBlk && leafEndBlk <= rootBlk + 1 && rootBlk < file.numBlocks)) {
    throw bad(`bad block ranges: leaves ${startBlk}..${leafEndBlk}, root ${rootBlk}, file of ${file.numBlocks} blocks`);
  }
  if ((depth === 1) !== (rootBlk === startBlk)) throw bad(`depth ${depth} with root ${rootBlk} and first leaf ${startBlk}`);
  if (depth === 1 && leafEndBlk !== startBlk + 1) throw bad("a one-level tree with several leaves");
  if (depth > 1 && rootBlk < leafEndBlk) throw bad("root among the leaves");
  if (numEntries < leafEndBlk - startBlk && numEntries !== 0) throw bad(`${numEntries} entries in ${leafEndBlk - startBlk} leaves`);
}

/**
 * A position in a tree: seek, then next/prev. Holds one node buffer; reading moves through the
 * shared cache. A cursor can be re-targeted with reset(), so one instance serves every lookup of
 * a thread (no allocation per lookup). Positions: an entry of a leaf (valid), before the first
 * entry, or after the last.
 *
 * A caller may hand reset() a copy of the root node it keeps (an open layer keeps its root:
 * 8 kB that save a cache read, one of the two index reads of a lookup in a two-level tree).
 */
export class BtreeCursor {
  /** This cursor's own node buffer, filled from the cache. */
  private readonly own = new Uint8Array(BLOCK_SIZE);
  /**
   * Block in `own` and the open file it came from (-1/null: none). Files are immutable, so it
   * stays valid. By object, not file id: ids are unique per cache, and tests use several.
   */
  private ownBlk = -1;
  private ownFile: BlockFile | null = null;
  /** The caller's copy of the root node, or null. Only read. */
  private rootNode: Uint8Array | null = null;
  /** The current node: `own` or `rootNode`. */
  private buf: Uint8Array = this.own;
  private file: BlockFile | null = null;
  private meta: BtreeMeta = { startBlk: 0, leafEndBlk: 0, rootBlk: 0, depth: 0, numEntries: 0 };
  private keyWidth = 0;
  /** Block of the current node (-1: none). */
  private blk = -1;
  // Parsed header of the current node.
  private count = 0;
  private prefixLen = 0;
  private suffixWidth = 0;
  private stride = 0;
  private entriesOff = 0;
  /** Entry index in the current leaf; -1 = before the first entry, count = after the last. */
  private idx = -1;

  /**
   * Target `file`'s tree. `rootNode`: the root block's bytes, read through the cache by the
   * caller (so verified), or null to read it like any node.
   */
  reset(file: BlockFile, meta: BtreeMeta, keyWidth: number, rootNode: Uint8Array | null = null): void {
    this.file = file;
    this.meta = meta;
    this.keyWidth = keyWidth;
    this.rootNode = rootNode;
    this.blk = -1;
    this.idx = -1;
    this.count = 0;
  }

  get valid(): boolean {
    return this.idx >= 0 && this.idx < this.count;
  }

  /** The leaf the cursor is in (for error messages about its entries). */
  get leafBlk(): number {
    return this.blk;
  }

  seekFirst(): boolean {
    this.load(this.meta.startBlk, 0);
    this.idx = -1;
    return this.next();
  }

  seekLast(): boolean {
    this.load(this.meta.leafEndBlk - 1, 0);
    this.idx = this.count;
    return this.prev();
  }

  /** Position at the first entry >= key (key: keyWidth bytes). Returns `valid`. */
  seekGE(key: Uint8Array): boolean {
    let blk = this.meta.rootBlk;
    for (let level = this.meta.depth - 1; ; level--) {
      this.load(blk, level);
      if (level === 0) break;
      // Last child whose first key <= key; the leftmost if key is smaller than all.
      const i = Math.max(0, this.search(key, true) - 1);
      const child = this.valueAt(i);
      const lo = level === 1 ? this.meta.startBlk : this.meta.leafEndBlk;
      const hi = level === 1 ? this.meta.leafEndBlk : blk;
      if (!(child >= lo && child < hi)) {
        throw new CorruptionError(this.file!.path, blk, `index: child block ${child} of a level-${level} node outside ${lo}..${hi}`);
      }
      blk = child;
    }
    this.idx = this.search(key, false);
    // Everything in the following leaves is > key, so if this leaf has nothing >= key the
    // answer is the first entry of the next leaf.
    if (this.idx === this.count) {
      this.idx = this.count - 1;
      return this.next();
    }
    return true;
  }

  next(): boolean {
    if (this.idx + 1 < this.count) {
      this.idx++;
      return true;
    }
    if (this.blk + 1 < this.meta.leafEndBlk) {
      this.load(this.blk + 1, 0);
      this.idx = 0;
      return this.count > 0;
    }
    this.idx = this.count;
    return false;
  }

  prev(): boolean {
    if (this.idx > 0) {
      this.idx--;
      return true;
    }
    if (this.blk > this.meta.startBlk) {
      this.load(this.blk - 1, 0);
      this.idx = this.count - 1;
      return this.count > 0;
    }
    this.idx = -1;
    return false;
  }

  /** Copy the current entry's key (keyWidth bytes) to dst[off..]. */
  copyKey(dst: Uint8Array, off: number): void {
    assert(this.valid, "copyKey: cursor not on an entry");
    const b = this.buf;
    const p = this.prefixLen;
    for (let i = 0; i < p; i++) dst[off + i] = b[NODE_HEADER_BYTES + i]!;
    const e = this.entriesOff + this.idx * this.stride - p;
    const w = this.keyWidth;
    for (let i = p; i < w; i++) dst[off + i] = b[e + i]!;
  }

  /** Compare the first `n` bytes of the current entry's key with key[0..n): <0, 0, >0. */
  compareKey(key: Uint8Array, n: number): number {
    assert(this.valid, "compareKey: cursor not on an entry");
    const b = this.buf;
    const p = this.prefixLen;
    const e = this.entriesOff + this.idx * this.stride - p;
    for (let i = 0; i < n; i++) {
      const d = (i < p ? b[NODE_HEADER_BYTES + i]! : b[e + i]!) - key[i]!;
      if (d !== 0) return d;
    }
    return 0;
  }

  /** The current entry's value. */
  value(): number {
    assert(this.valid, "value: cursor not on an entry");
    return this.valueAt(this.idx);
  }

  private valueAt(i: number): number {
    const b = this.buf;
    const off = this.entriesOff + i * this.stride + this.suffixWidth;
    const hi = (b[off]! << 16) | (b[off + 1]! << 8) | b[off + 2]!;
    if (hi > MAX_SAFE_HI) throw new CorruptionError(this.file!.path, this.blk, `index: value beyond 2^53 in entry ${i}`);
    return hi * TWO_32 + readU32BE(b, off + 3);
  }

  /** First index whose key is > key (upper) or >= key (!upper), in the node in `buf`. */
  private search(key: Uint8Array, upper: boolean): number {
    const b = this.buf;
    const p = this.prefixLen;
    for (let i = 0; i < p; i++) {
      const d = b[NODE_HEADER_BYTES + i]! - key[i]!;
      if (d > 0) return 0; // every key of the node is > key
      if (d < 0) return this.count; // every key of the node is < key
    }
    const sw = this.suffixWidth;
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.entriesOff + mid * this.stride;
      let c = 0;
      for (let i = 0; i < sw && c === 0; i++) c = b[e + i]! - key[p + i]!;
      if (c < 0 || (upper && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Make node `blk`, expected at `level`, the current node and parse its header. */
  private load(blk: number, level: number): void {
    const file = this.file;
    assert(file !== null, "BtreeCursor used before reset()");
    this.blk = -1; // until parsed, nothing is current
    this.count = 0;
    this.idx = -1;
    if (blk === this.meta.rootBlk && this.rootNode !== null) {
      this.buf = this.rootNode;
    } else {
      if (!(blk === this.ownBlk && file === this.ownFile)) {
        this.ownBlk = -1; // if the read throws, the buffer holds nothing valid
        file.read(blk, this.own);
        this.ownBlk = blk;
        this.ownFile = file;
      }
      this.buf = this.own;
    }
    this.parse(file, blk, level);
    this.blk = blk;
  }

  private parse(file: BlockFile, blk: number, level: number): void {
    const b = this.buf;
    const w = this.keyWidth;
    // No closure here: this runs for every node a lookup visits.
    const bad = nodeCorruption;
    if (readU16BE(b, 0) !== NODE_MAGIC) throw bad(file.path, blk, `bad magic 0x${readU16BE(b, 0).toString(16)}`);
    if (b[2] !== level) throw bad(file.path, blk, `level ${b[2]}, expected ${level}`);
    const inLeaves = blk >= this.meta.startBlk && blk < this.meta.leafEndBlk;
    if (inLeaves !== (level === 0)) throw bad(file.path, blk, `a level-${level} node at a ${inLeaves ? "leaf" : "internal"} position`);
    if (readU16BE(b, 6) !== w) throw bad(file.path, blk, `key width ${readU16BE(b, 6)}, expected ${w}`);
    const count = readU16BE(b, 4);
    const prefixLen = readU16BE(b, 8);
    if (prefixLen > w) throw bad(file.path, blk, `prefix length ${prefixLen} > key width ${w}`);
    if (nodeBytes(count, w, prefixLen) > BLOCK_PAYLOAD) throw bad(file.path, blk, `${count} entries overflow the block`);
    if (count === 0 && !(this.meta.numEntries === 0 && blk === this.meta.rootBlk)) throw bad(file.path, blk, "empty node");
    if (count > 1 && prefixLen === w) throw bad(file.path, blk, "several entries with one full-width key");
    this.count = count;
    this.prefixLen = prefixLen;
    this.suffixWidth = w - prefixLen;
    this.stride = this.suffixWidth + BTREE_VALUE_BYTES;
    this.entriesOff = NODE_HEADER_BYTES + prefixLen;
  }
}
