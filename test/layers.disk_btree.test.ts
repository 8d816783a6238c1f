/**
 * Disk B-tree: bottom-up build, seek/next/prev against a sorted reference, ≥ 3 levels,
 * prefix compression, empty and one-entry trees, 56-bit values, and corrupt nodes (sealed
 * and resealed) reported as CorruptionError naming the block. Also the block I/O underneath:
 * durable writes, block seals, short reads.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PAGE_SIZE, PageCache } from "../src/cache/index.js";
import { BlockFile, BlockFileWriter } from "../src/layers/block_file.js";
import { BLOCK_SIZE, blockSealOk, sealBlock } from "../src/layers/block_seal.js";
import { DurableFileWriter, writeFileDurableSync } from "../src/layers/durable_file.js";
import { BtreeCursor, type BtreeMeta, DiskBtreeBuilder, validateBtreeMeta } from "../src/layers/disk_btree.js";
import { TEMP_SUFFIX } from "../src/layers/layer_name.js";
import { AssertionError } from "../src/types/assert.js";
import { BadStateError, CorruptionError } from "../src/types/errors.js";
import { rng } from "./support/rng.js";

let dir: string;
let cache: PageCache;
let seq = 0;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "btree-test-"));
  cache = PageCache.create({ size_bytes: 512 * PAGE_SIZE });
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Tree {
  file: BlockFile;
  meta: BtreeMeta;
  path: string;
}

/** Write a tree after one filler block (as in a layer file, the tree does not start at 0). */
function buildTree(keyWidth: number, keys: Uint8Array[], values: number[]): Tree {
  const final = path.join(dir, `tree-${seq++}`);
  const w = new BlockFileWriter(final + TEMP_SUFFIX);
  w.appendBlock(new Uint8Array(BLOCK_SIZE));
  const b = new DiskBtreeBuilder(keyWidth);
  for (let i = 0; i < keys.length; i++) b.add(keys[i]!, 0, values[i]!);
  const meta = b.finish(w);
  w.finish(final);
  const file = BlockFile.open(cache, final);
  validateBtreeMeta(file, 0, meta, keyWidth, keyWidth);
  return { file, meta, path: final };
}

function cmp(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** Sorted, distinct keys. */
function sortedUnique(keys: Uint8Array[]): Uint8Array[] {
  keys.sort(cmp);
  return keys.filter((k, i) => i === 0 || cmp(keys[i - 1]!, k) !== 0);
}

function lowerBound(keys: Uint8Array[], probe: Uint8Array): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmp(keys[mid]!, probe) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function randomKey(r: () => number, width: number): Uint8Array {
  const k = new Uint8Array(width);
  for (let i = 0; i < width; i++) k[i] = Math.floor(r() * 256);
  return k;
}

function currentKey(c: BtreeCursor, width: number): Uint8Array {
  const k = new Uint8Array(width);
  c.copyKey(k, 0);
  return k;
}

/** Check seekGE/prev/next for `probe` against the reference. */
function checkProbe(t: Tree, c: BtreeCursor, width: number, keys: Uint8Array[], values: number[], probe: Uint8Array): void {
  const want = lowerBound(keys, probe);
  const ok = c.seekGE(probe);
  expect(ok).toBe(want < keys.length);
  if (ok) {
    expect(cmp(currentKey(c, width), keys[want]!)).toBe(0);
    expect(c.value()).toBe(values[want]);
    expect(c.compareKey(probe, width) >= 0).toBe(true);
  }
  // prev from here = the last key < probe.
  const okPrev = c.prev();
  expect(okPrev).toBe(want > 0);
  if (okPrev) {
    expect(cmp(currentKey(c, width), keys[want - 1]!)).toBe(0);
    expect(c.value()).toBe(values[want - 1]);
    // and next brings us back.
    expect(c.next()).toBe(want < keys.length);
    if (want < keys.length) expect(cmp(currentKey(c, width), keys[want]!)).toBe(0);
  }
  void t;
}

describe("disk B-tree", () => {
  it("builds ≥ 3 levels and finds every key, every gap, both ends", () => {
    const width = 200;
    const r = rng(1);
    const keys = sortedUnique(Array.from({ length: 6000 }, () => randomKey(r, width)));
    const values = keys.map((_, i) => (i % 7 === 0 ? Number.MAX_SAFE_INTEGER - i : Math.floor(r() * 2 ** 48)));
    const t = buildTree(width, keys, values);
    expect(t.meta.depth).toBeGreaterThanOrEqual(3);
    expect(t.meta.numEntries).toBe(keys.length);
    expect(t.meta.startBlk).toBe(1);
    expect(t.meta.rootBlk).toBe(t.file.numBlocks - 1);
    const c = new BtreeCursor();
    c.reset(t.file, t.meta, width);
    for (let i = 0; i < keys.length; i++) checkProbe(t, c, width, keys, values, keys[i]!);
    for (let i = 0; i < 2000; i++) checkProbe(t, c, width, keys, values, randomKey(r, width));
    checkProbe(t, c, width, keys, values, new Uint8Array(width)); // below all
    checkProbe(t, c, width, keys, values, new Uint8Array(width).fill(0xff)); // above all
    t.file.close();
  });

  it("iterates forward and backward across every leaf", () => {
    const width = 120;
    const r = rng(2);
    const keys = sortedUnique(Array.from({ length: 3000 }, () => randomKey(r, width)));
    const values = keys.map((_, i) => i * 3);
    const t = buildTree(width, keys, values);
    expect(t.meta.leafEndBlk - t.meta.startBlk).toBeGreaterThan(10);
    const c = new BtreeCursor();
    c.reset(t.file, t.meta, width);
    let i = 0;
    for (let ok = c.seekFirst(); ok; ok = c.next()) {
      expect(cmp(currentKey(c, width), keys[i]!)).toBe(0);
      expect(c.value()).toBe(values[i]);
      i++;
    }
    expect(i).toBe(keys.length);
    expect(c.valid).toBe(false);
    expect(c.next()).toBe(false);
    for (let ok = c.seekLast(); ok; ok = c.prev()) {
      i--;
      expect(cmp(currentKey(c, width), keys[i]!)).toBe(0);
    }
    expect(i).toBe(0);
    expect(c.prev()).toBe(false);
    expect(c.next()).toBe(true); // from before-first back to the first entry
    expect(c.value()).toBe(values[0]);
    t.file.close();
  });

  it("compresses shared prefixes (delta-like keys)", () => {
    // 26-byte keys: 13 constant bytes (a relation), a block number, an LSN.
    const width = 26;
    const keys: Uint8Array[] = [];
    for (let blk = 0; blk < 4000; blk++) {
      for (let v = 0; v < 5; v++) {
        const k = new Uint8Array(width);
        k.fill(0x11, 0, 13);
        k[16] = blk >>> 8;
        k[17] = blk & 0xff;
        k[25] = v * 8;
        keys.push(k);
      }
    }
    const values = keys.map((_, i) => i);
    const t = buildTree(width, keys, values);
    const uncompressedLeaves = Math.ceil(keys.length / Math.floor((BLOCK_SIZE - 4 - 10) / (width + 7)));
    const leaves = t.meta.leafEndBlk - t.meta.startBlk;
    expect(leaves).toBeLessThan(uncompressedLeaves * 0.7);
    const c = new BtreeCursor();
    c.reset(t.file, t.meta, width);
    const r = rng(3);
    for (let n = 0; n < 3000; n++) {
      const i = Math.floor(r() * keys.length);
      checkProbe(t, c, width, keys, values, keys[i]!);
    }
    t.file.close();
  });

  it("handles an empty tree and a one-entry tree", () => {
    const e = buildTree(18, [], []);
    expect(e.meta).toMatchObject({ depth: 1, numEntries: 0 });
    const c = new BtreeCursor();
    c.reset(e.file, e.meta, 18);
    expect(c.seekFirst()).toBe(false);
    expect(c.seekLast()).toBe(false);
    expect(c.seekGE(new Uint8Array(18))).toBe(false);
    expect(c.prev()).toBe(false);
    e.file.close();

    const k = new Uint8Array(18).fill(7);
    const one = buildTree(18, [k], [42]);
    c.reset(one.file, one.meta, 18);
    expect(c.seekGE(new Uint8Array(18))).toBe(true);
    expect(c.value()).toBe(42);
    expect(c.seekGE(k)).toBe(true);
    expect(c.seekGE(new Uint8Array(18).fill(8))).toBe(false);
    expect(c.prev()).toBe(true);
    expect(c.value()).toBe(42);
    one.file.close();
  });

  it("matches a sorted reference on random sets (property)", () => {
    // Wide keys whose information is in the first 3 bytes: short shared prefixes, low fan-out,
    // so small sets still make multi-level trees.
    const width = 300;
    const mk = (a: number, b: number, d: number): Uint8Array => {
      const k = new Uint8Array(width);
      k[0] = a;
      k[1] = b;
      k[2] = d;
      return k;
    };
    const triple = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }));
    fc.assert(
      fc.property(fc.array(triple, { maxLength: 1500 }), fc.array(triple, { minLength: 1, maxLength: 50 }), (ts, probes) => {
        const keys = sortedUnique(ts.map(([a, b, d]) => mk(a, b, d)));
        const values = keys.map((_, i) => i * 1_000_003);
        const t = buildTree(width, keys, values);
        try {
          const c = new BtreeCursor();
          c.reset(t.file, t.meta, width);
          for (const [a, b, d] of probes) {
            checkProbe(t, c, width, keys, values, mk(a, b, d));
            const between = mk(a, b, d);
            between[width - 1] = 1; // strictly between (a,b,d) and its successor
            checkProbe(t, c, width, keys, values, between);
          }
        } finally {
          t.file.close();
          fs.rmSync(t.path);
        }
      }),
      { numRuns: 25, seed: 4 },
    );
  });

  it("reports a damaged node as corrupt, naming its block", () => {
    const width = 64;
    const r = rng(5);
    const keys = sortedUnique(Array.from({ length: 2000 }, () => randomKey(r, width)));
    const values = keys.map((_, i) => i);
    const t = buildTree(width, keys, values);
    const bytes = fs.readFileSync(t.path);
    t.file.close();
    const leaf = t.meta.startBlk + 3;
    const damaged = path.join(dir, `damaged-${seq++}`);
    const copy = Buffer.from(bytes);
    copy[leaf * BLOCK_SIZE + 100]! ^= 0x40;
    fs.writeFileSync(damaged, copy);
    const file = BlockFile.open(cache, damaged);
    const c = new BtreeCursor();
    c.reset(file, t.meta, width);
    let err: unknown = null;
    try {
      for (let ok = c.seekFirst(); ok; ok = c.next());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CorruptionError);
    expect((err as CorruptionError).blkno).toBe(leaf);
    expect((err as CorruptionError).path).toBe(damaged);
    file.close();
  });

  it("never fails with anything but CorruptionError on resealed garbage", () => {
    const width = 40;
    const r = rng(6);
    const keys = sortedUnique(Array.from({ length: 3000 }, () => randomKey(r, width)));
    const values = keys.map((_, i) => i);
    const t = buildTree(width, keys, values);
    const bytes = fs.readFileSync(t.path);
    t.file.close();
    const probes = Array.from({ length: 50 }, () => randomKey(r, width));
    let corrupt = 0;
    for (let trial = 0; trial < 300; trial++) {
      const copy = new Uint8Array(bytes);
      const blk = t.meta.startBlk + Math.floor(r() * (t.meta.rootBlk - t.meta.startBlk + 1));
      // Damage the node's header or entries, then reseal so the block checksum passes.
      const pos = r() < 0.3 ? Math.floor(r() * 12) : Math.floor(r() * 400);
      copy[blk * BLOCK_SIZE + pos]! ^= 1 << Math.floor(r() * 8);
      if (r() < 0.2) copy[blk * BLOCK_SIZE + pos] = 0xff;
      sealBlock(copy.subarray(blk * BLOCK_SIZE, (blk + 1) * BLOCK_SIZE), blk);
      const p = path.join(dir, `fuzz-${seq++}`);
      fs.writeFileSync(p, copy);
      const file = BlockFile.open(cache, p);
      const c = new BtreeCursor();
      c.reset(file, t.meta, width);
      try {
        for (const probe of probes) {
          c.seekGE(probe);
          if (c.valid) c.value();
          c.prev();
        }
        let n = 0;
        for (let ok = c.seekFirst(); ok && n < 10_000; ok = c.next()) n++;
        for (let ok = c.seekLast(); ok && n < 20_000; ok = c.prev()) n++;
      } catch (e) {
        if (!(e instanceof CorruptionError)) throw e;
        expect(e.path).toBe(p);
        corrupt++;
      } finally {
        file.close();
        fs.rmSync(p);
      }
    }
    expect(corrupt).toBeGreaterThan(0);
  });

  it("refuses tree metadata that does not fit the file", () => {
    const t = buildTree(18, [new Uint8Array(18)], [1]);
    expect(() => validateBtreeMeta(t.file, 0, { ...t.meta, rootBlk: 99 }, 18, 18)).toThrow(CorruptionError);
    expect(() => validateBtreeMeta(t.file, 0, { ...t.meta, depth: 0 }, 18, 18)).toThrow(CorruptionError);
    expect(() => validateBtreeMeta(t.file, 0, t.meta, 18, 26)).toThrow(CorruptionError);
    const c = new BtreeCursor();
    // A depth that disagrees with the nodes: the root is a leaf, not a level-1 node.
    c.reset(t.file, { ...t.meta, depth: 2 }, 18);
    expect(() => c.seekGE(new Uint8Array(18))).toThrow(CorruptionError);
    t.file.close();
  });
});

describe("block I/O", () => {
  it("writeFileDurableSync writes the whole file and leaves no temp file", () => {
    const d = fs.mkdtempSync(path.join(dir, "durable-"));
    const data = new Uint8Array(300_000).map((_, i) => i * 7);
    writeFileDurableSync(path.join(d, "f"), data);
    writeFileDurableSync(path.join(d, "f"), data.subarray(0, 10)); // replaces
    expect(fs.readdirSync(d)).toEqual(["f"]);
    expect(Buffer.compare(fs.readFileSync(path.join(d, "f")), data.subarray(0, 10))).toBe(0);
  });

  it("writeFileDurableSync takes a unique temp name: a leftover temp file of another write does not stop it", () => {
    const d = fs.mkdtempSync(path.join(dir, "durable-"));
    // What a crashed writer of the old fixed-name scheme (or another thread) left beside the target.
    fs.writeFileSync(path.join(d, `f${TEMP_SUFFIX}`), "half");
    writeFileDurableSync(path.join(d, "f"), new Uint8Array([1, 2, 3]));
    expect(fs.readdirSync(d).sort()).toEqual(["f", `f${TEMP_SUFFIX}`]);
    expect([...fs.readFileSync(path.join(d, "f"))]).toEqual([1, 2, 3]);
  });

  it("DurableFileWriter batches, rewrites, finishes, aborts", () => {
    const d = fs.mkdtempSync(path.join(dir, "durable-"));
    const w = DurableFileWriter.create(path.join(d, `x${TEMP_SUFFIX}`));
    expect(() => DurableFileWriter.create(path.join(d, `x${TEMP_SUFFIX}`))).toThrow(); // exists
    expect(() => DurableFileWriter.create(path.join(d, "no-suffix"))).toThrow(AssertionError);
    const parts = [new Uint8Array(10).fill(1), new Uint8Array(600_000).fill(2), new Uint8Array(200_000).fill(3), new Uint8Array(5).fill(4)];
    for (const p of parts) w.append(p);
    w.writeAt(3, new Uint8Array([9, 9]));
    expect(w.bytesWritten).toBe(800_015);
    expect(w.finish(path.join(d, "x"))).toBe(800_015);
    const got = fs.readFileSync(path.join(d, "x"));
    expect([got[2], got[3], got[4], got[5], got[10], got[600_009], got[600_010], got[800_010]]).toEqual([1, 9, 9, 1, 2, 2, 3, 4]);
    expect(() => w.append(new Uint8Array(1))).toThrow(BadStateError);
    const a = DurableFileWriter.create(path.join(d, `y${TEMP_SUFFIX}`));
    a.append(new Uint8Array(100));
    a.abort();
    a.abort();
    expect(fs.readdirSync(d)).toEqual(["x"]);
  });

  it("a block's seal covers its content and its position", () => {
    const b = new Uint8Array(BLOCK_SIZE).map((_, i) => i);
    sealBlock(b, 5);
    expect(blockSealOk(b, 5)).toBe(true);
    expect(blockSealOk(b, 6)).toBe(false); // the right block at the wrong place
    b[100]! ^= 1;
    expect(blockSealOk(b, 5)).toBe(false);
  });

  it("BlockFile reports blocks beyond the end and short reads as corrupt", () => {
    const p = path.join(dir, `short-${seq++}`);
    const w = new BlockFileWriter(p + TEMP_SUFFIX);
    for (let i = 0; i < 3; i++) w.appendBlock(new Uint8Array(BLOCK_SIZE).fill(i));
    w.finish(p);
    const f = BlockFile.open(cache, p);
    expect(f.numBlocks).toBe(3);
    const dst = new Uint8Array(BLOCK_SIZE);
    f.read(2, dst);
    expect(dst[0]).toBe(2);
    expect(() => f.read(3, dst)).toThrow(CorruptionError);
    fs.truncateSync(p, BLOCK_SIZE + 100);
    try {
      f.readBlockInto(1, dst);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CorruptionError);
      expect((e as CorruptionError).blkno).toBe(1);
      expect((e as CorruptionError).message).toMatch(/short read/);
    }
    f.close();
    expect(() => f.read(0, dst)).toThrow(BadStateError);
  });
});
