/**
 * Damaged layer files: a flipped byte in the header, an index node or a value; truncation
 * (before and after open); trailing garbage; and damage that keeps block checksums valid
 * (resealed), which must still end in a CorruptionError naming the file and the block —
 * never a wrong value from the value stream, never another kind of error (RangeError…).
 *
 * Resealed damage to an index node can relabel entries (another key or LSN for a blob) in a
 * way no reader check can see: the block seal is what catches that on disk. For those the
 * random-damage case decodes the damaged index itself (the node format of disk_btree.ts) and
 * holds the reader to it: every version returned is one the damaged index names for that key,
 * with exactly the bytes written at the offset it names; damage that changes no decoded field
 * must not change any answer.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { PAGE_SIZE, PageCache } from "../src/cache/index.js";
import { MAX_VALUE_BYTES } from "../src/layers/blob_io.js";
import { BlockFile } from "../src/layers/block_file.js";
import { BLOCK_PAYLOAD, BLOCK_SIZE, sealBlock } from "../src/layers/block_seal.js";
import { DELTA_MAGIC, LAYER_HEADER_BYTES, type LayerHeader, readLayerHeader } from "../src/layers/layer_header.js";
import { readU16BE, readU32BE, writeU32BE } from "../src/types/bytes.js";
import { DeltaLayer, DeltaLayerWriter } from "../src/layers/delta_layer.js";
import { ImageLayer, ImageLayerWriter } from "../src/layers/image_layer.js";
import type { LayerDesc } from "../src/layers/layer_name.js";
import { ReconstructState } from "../src/layers/reconstruct_state.js";
import { CorruptionError } from "../src/types/errors.js";
import { KEY_MAX, KEY_MIN, KEY_SIZE, type Key, keyFromBytes, makeKey } from "../src/types/key.js";
import { asLsn, MAX_LSN } from "../src/types/lsn.js";
import { imageValue, pgRecordValue, type Value } from "../src/types/value.js";
import { payload, tempDirs } from "./support/layer_fixture.js";
import { rng } from "./support/rng.js";

const { freshDir } = tempDirs("corrupt-test-");

/** A fresh cache per check: damage must be seen on disk, not hidden by a cached good block. */
function newCache(): PageCache {
  return PageCache.create({ size_bytes: 256 * PAGE_SIZE });
}

type Kind = "delta" | "image";

interface Fixture {
  kind: Kind;
  dir: string;
  desc: LayerDesc;
  path: string;
  header: LayerHeader;
  keys: Key[];
  /** Expected values by key (delta: newest first, as getValues with no window returns them). */
  expect: Map<Key, { lsns: number[]; values: Value[] }>;
}

/** ~2500 entries, sizes 1 B .. 20 kB, index of a few leaves. */
function makeFixture(kind: Kind): Fixture {
  const dir = freshDir();
  const r = rng(kind === "delta" ? 1 : 2);
  const keys: Key[] = [];
  for (let i = 0; i < 1200; i++) keys.push(makeKey(0, 1663, 5, 16384, 0, i * 2));
  const expect = new Map<Key, { lsns: number[]; values: Value[] }>();
  const size = (): number => {
    const x = r();
    return x < 0.4 ? PAGE_SIZE : x < 0.9 ? Math.floor(r() * 200) : Math.floor(r() * 20_000);
  };
  let desc: LayerDesc;
  if (kind === "delta") {
    const w = new DeltaLayerWriter(newCache(), dir, KEY_MIN, { start: asLsn(100), end: asLsn(1000) });
    keys.forEach((k, i) => {
      const img = imageValue(payload(size(), i));
      const rec = pgRecordValue(false, payload(1 + Math.floor(r() * 100), i + 7));
      w.put(k, asLsn(200), img);
      w.put(k, asLsn(300), rec);
      expect.set(k, { lsns: [300, 200], values: [rec, img] });
    });
    desc = w.finish(KEY_MAX);
  } else {
    const w = new ImageLayerWriter(newCache(), dir, KEY_MIN, asLsn(500));
    keys.forEach((k, i) => {
      const img = imageValue(payload(size(), i));
      w.put(k, img);
      expect.set(k, { lsns: [500], values: [img] });
    });
    desc = w.finish(KEY_MAX);
  }
  const p = path.join(dir, desc.fileName);
  const f = BlockFile.open(newCache(), p);
  const header = readLayerHeader(f, kind, new Uint8Array(BLOCK_SIZE));
  f.close();
  return { kind, dir, desc, path: p, header, keys, expect };
}

/** A damaged copy of the fixture's file under the same name (so the name still matches). */
function damaged(fx: Fixture, mutate: (bytes: Uint8Array) => unknown): string {
  const dir = freshDir();
  const bytes = new Uint8Array(fs.readFileSync(fx.path));
  const out = mutate(bytes); // in place, or a new array (truncation)
  const p = path.join(dir, fx.desc.fileName);
  fs.writeFileSync(p, out instanceof Uint8Array ? out : bytes);
  return p;
}

function flip(bytes: Uint8Array, blk: number, off: number, reseal = false): void {
  bytes[blk * BLOCK_SIZE + off]! ^= 0x20;
  if (reseal) sealBlock(bytes.subarray(blk * BLOCK_SIZE, (blk + 1) * BLOCK_SIZE), blk);
}

function open(kind: Kind, p: string): DeltaLayer | ImageLayer {
  return kind === "delta" ? DeltaLayer.open(newCache(), p) : ImageLayer.open(newCache(), p);
}

function catchErr(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return null;
}

function expectCorrupt(e: unknown, p: string, blkno?: number): void {
  expect(e).toBeInstanceOf(CorruptionError);
  const c = e as CorruptionError;
  expect(c.path).toBe(p);
  if (blkno !== undefined) expect(c.blkno).toBe(blkno);
  expect(c.message).toContain(p);
  expect(c.message).toContain(`block ${c.blkno}`);
}

/** A lookup returned something other than what was written. */
class WrongValueError extends Error {
  override readonly name = "WrongValueError";
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Look keys up (all by default); returns the errors. A wrong answer throws WrongValueError. */
function lookupAll(fx: Fixture, layer: DeltaLayer | ImageLayer, keys: Key[] = fx.keys): unknown[] {
  const errors: unknown[] = [];
  const state = new ReconstructState();
  for (const k of keys) {
    state.reset();
    try {
      layer.getValues(k, asLsn(0), MAX_LSN, state);
    } catch (e) {
      errors.push(e);
      continue;
    }
    // The delta's newest version is a record: the walk goes on to the image.
    const want = fx.expect.get(k)!;
    const ok =
      state.lsns.length === want.lsns.length &&
      state.lsns.every((l, i) => l === want.lsns[i] && sameBytes(state.values[i]!, want.values[i]!));
    if (!ok) throw new WrongValueError(`wrong versions for a key: lsns ${state.lsns.join(",")}`);
  }
  return errors;
}

function iterateAll(layer: DeltaLayer | ImageLayer): void {
  for (const _ of layer.entries());
  if (layer instanceof DeltaLayer) for (const _ of layer.index());
  else for (const _ of layer.keys());
}

/** One entry of a B-tree node as disk_btree.ts lays it out: full key bytes (hex) and value. */
interface NodeEntry {
  key: string;
  value: number;
}

/** Decodes one index node (test-side, from the documented format); null if it does not parse. */
function decodeNode(block: Uint8Array): { level: number; entries: NodeEntry[] } | null {
  if (readU16BE(block, 0) !== 0x4254) return null;
  const level = block[2]!;
  const count = readU16BE(block, 4);
  const width = readU16BE(block, 6);
  const prefixLen = readU16BE(block, 8);
  if (prefixLen > width || 10 + prefixLen + count * (width - prefixLen + 7) > BLOCK_PAYLOAD) return null;
  const prefix = Buffer.from(block.subarray(10, 10 + prefixLen));
  const entries: NodeEntry[] = [];
  for (let i = 0; i < count; i++) {
    const off = 10 + prefixLen + i * (width - prefixLen + 7);
    const suffix = Buffer.from(block.subarray(off, off + width - prefixLen));
    const v = off + width - prefixLen;
    const value = ((block[v]! << 16) | (block[v + 1]! << 8) | block[v + 2]!) * 2 ** 32 + readU32BE(block, v + 3);
    entries.push({ key: Buffer.concat([prefix, suffix]).toString("hex"), value });
  }
  return { level, entries };
}

/** What a decoded node or header means; equal strings = the damage changed no field. */
function meaning(blk: number, block: Uint8Array): string {
  if (blk === 0) return Buffer.from(block.subarray(0, LAYER_HEADER_BYTES)).toString("hex");
  return JSON.stringify(decodeNode(block));
}

/** A version the index names: its LSN and where its blob starts. */
interface Named {
  lsn: number;
  offset: number;
}

/** Every (key → versions) the leaves of `bytes` name (unparseable leaves name nothing). */
function namedVersions(fx: Fixture, bytes: Uint8Array): Map<Key, Named[]> {
  const out = new Map<Key, Named[]>();
  const imageLsn = readU32BE(bytes, 44) * 2 ** 32 + readU32BE(bytes, 48);
  for (let blk = fx.header.indexStartBlk; blk < fx.header.indexLeafEndBlk; blk++) {
    const node = decodeNode(bytes.subarray(blk * BLOCK_SIZE, (blk + 1) * BLOCK_SIZE));
    if (node === null) continue;
    for (const e of node.entries) {
      const kb = Buffer.from(e.key, "hex");
      if (kb.length < KEY_SIZE) continue;
      const key = keyFromBytes(kb, 0);
      const named: Named =
        fx.kind === "delta"
          ? {
              lsn: kb.length >= KEY_SIZE + 8 ? readU32BE(kb, KEY_SIZE) * 2 ** 32 + readU32BE(kb, KEY_SIZE + 4) : -1,
              offset: Math.floor(e.value / 2),
            }
          : { lsn: imageLsn, offset: e.value };
      const list = out.get(key);
      if (list === undefined) out.set(key, [named]);
      else list.push(named);
    }
  }
  return out;
}

/** The bytes written at each blob offset of the undamaged file. */
function blobsByOffset(fx: Fixture, original: Uint8Array): Map<number, Value> {
  const out = new Map<number, Value>();
  for (const [key, named] of namedVersions(fx, original)) {
    const want = fx.expect.get(key)!;
    for (const n of named) out.set(n.offset, want.values[want.lsns.indexOf(n.lsn)]!);
  }
  expect(out.size).toBe(fx.kind === "delta" ? 2 * fx.keys.length : fx.keys.length);
  return out;
}

for (const kind of ["delta", "image"] as const) {
  describe(`corrupt ${kind} layer`, () => {
    let fx: Fixture;
    beforeAll(() => {
      fx = makeFixture(kind);
      expect(fx.header.indexLeafEndBlk - fx.header.indexStartBlk).toBeGreaterThanOrEqual(2);
    });

    it("the undamaged file reads back", () => {
      const l = open(kind, fx.path);
      expect(lookupAll(fx, l)).toEqual([]);
      iterateAll(l);
      l.close();
    });

    it("a flipped byte in the header: block 0", () => {
      for (const off of [0, 10, 50, 70, 90, 5000, BLOCK_SIZE - 1]) {
        const p = damaged(fx, (b) => flip(b, 0, off));
        expectCorrupt(
          catchErr(() => open(kind, p)),
          p,
          0,
        );
      }
    });

    it("a flipped byte in the root: the root's block, at open", () => {
      const p = damaged(fx, (b) => flip(b, fx.header.indexRootBlk, 30));
      expectCorrupt(
        catchErr(() => open(kind, p)),
        p,
        fx.header.indexRootBlk,
      );
    });

    it("a flipped byte in a leaf: that leaf, for the keys it holds only", () => {
      const leaf = fx.header.indexStartBlk + 1;
      const p = damaged(fx, (b) => flip(b, leaf, 200));
      const l = open(kind, p);
      const errors = lookupAll(fx, l);
      expect(errors.length).toBeGreaterThan(0);
      expect(errors.length).toBeLessThan(fx.keys.length);
      for (const e of errors) expectCorrupt(e, p, leaf);
      expectCorrupt(
        catchErr(() => iterateAll(l)),
        p,
        leaf,
      );
      l.close();
    });

    it("a flipped byte in a value block: that block", () => {
      for (const blk of [1, 7, fx.header.indexStartBlk - 1]) {
        const p = damaged(fx, (b) => flip(b, blk, 4000));
        const l = open(kind, p);
        const errors = lookupAll(fx, l);
        expect(errors.length).toBeGreaterThan(0);
        for (const e of errors) expectCorrupt(e, p, blk);
        expectCorrupt(
          catchErr(() => iterateAll(l)),
          p,
          blk,
        );
        l.close();
      }
    });

    it("a truncated file: the first missing block", () => {
      const total = fx.header.totalBlocks;
      for (const [size, blk] of [
        [(total - 1) * BLOCK_SIZE, total - 1],
        [total * BLOCK_SIZE - 100, total - 1],
        [(total - 5) * BLOCK_SIZE + 3, total - 5],
        [5000, 0],
        [0, 0],
      ] as const) {
        const p = damaged(fx, (b) => b.subarray(0, size));
        expectCorrupt(
          catchErr(() => open(kind, p)),
          p,
          blk,
        );
      }
      const extra = damaged(fx, (b) => {
        const x = new Uint8Array(b.length + 10);
        x.set(b);
        return x;
      });
      expectCorrupt(
        catchErr(() => open(kind, extra)),
        extra,
        total,
      );
    });

    it("a file truncated while open: the block that can no longer be read", () => {
      const p = damaged(fx, () => undefined);
      const l = open(kind, p);
      const cut = Math.floor(fx.header.indexStartBlk / 2);
      fs.truncateSync(p, cut * BLOCK_SIZE);
      const errors = lookupAll(fx, l);
      expect(errors.length).toBeGreaterThan(0);
      for (const e of errors) {
        expectCorrupt(e, p);
        expect((e as CorruptionError).blkno).toBeGreaterThanOrEqual(cut);
      }
      l.close();
    });

    it("a sealed but wrong header: block 0, never a RangeError", () => {
      const cases: [number, number][] = [
        [0, DELTA_MAGIC + 1], // magic
        [4, 0x0002_0064], // version 2
        [68, 0x7fff_ffff], // value stream length (hi half)
        [72, 0xffff_fff0], // value stream length (lo half)
        [76, 3], // index start
        [80, 0xffff_ffff], // leaf end
        [84, 1], // root
        [88, 99], // depth
        [88, 0], // depth
        [92, 0xffff], // total blocks
        [96, 17], // key width
        [60, 0x0100_0000], // entry count beyond 2^53
        [64, 0xffff_ffff], // entry count
      ];
      for (const [off, v] of cases) {
        const p = damaged(fx, (b) => {
          writeU32BE(b, off, v);
          sealBlock(b.subarray(0, BLOCK_SIZE), 0);
        });
        const e = catchErr(() => {
          const l = open(kind, p);
          try {
            lookupAll(fx, l);
            iterateAll(l);
          } finally {
            l.close();
          }
        });
        expect(e, `header field at ${off} = ${v}`).not.toBeNull();
        expectCorrupt(e, p);
      }
    });

    it("a sealed leaf pointing outside the values: the leaf", () => {
      const leaf = fx.header.indexStartBlk;
      const width = fx.header.indexKeyWidth;
      for (const bad of [
        [0xff, 0xff, 0xff],
        [0x00, 0x10, 0x00],
        [0x1f, 0xff, 0xff],
      ]) {
        const p = damaged(fx, (b) => {
          const base = leaf * BLOCK_SIZE;
          const prefixLen = (b[base + 8]! << 8) | b[base + 9]!;
          const valueOff = base + 10 + prefixLen + (width - prefixLen); // entry 0's value
          b[valueOff] = bad[0]!;
          b[valueOff + 1] = bad[1]!;
          b[valueOff + 2] = bad[2]!;
          sealBlock(b.subarray(base, base + BLOCK_SIZE), leaf);
        });
        const l = open(kind, p);
        const state = new ReconstructState();
        expectCorrupt(
          catchErr(() => l.getValues(fx.keys[0]!, asLsn(0), MAX_LSN, state)),
          p,
          leaf,
        );
        expectCorrupt(
          catchErr(() => iterateAll(l)),
          p,
          leaf,
        );
        l.close();
      }
    });

    it("a sealed blob with a bad length or content: the blob's block", () => {
      // The first blob starts at offset 0 of block 1: its length, then its CRC, then data.
      for (const [off, v] of [
        [0, MAX_VALUE_BYTES + 1],
        [0, 0],
        [0, 0xffff_ffff],
        [4, 12345],
        [8, 0x0102_0304],
      ] as const) {
        const p = damaged(fx, (b) => {
          writeU32BE(b, BLOCK_SIZE + off, v);
          sealBlock(b.subarray(BLOCK_SIZE, 2 * BLOCK_SIZE), 1);
        });
        const l = open(kind, p);
        const state = new ReconstructState();
        // The first key's oldest version is the first blob.
        expectCorrupt(
          catchErr(() => l.getValues(fx.keys[0]!, asLsn(0), MAX_LSN, state)),
          p,
          1,
        );
        l.close();
      }
    });

    it("resealed random damage anywhere: a CorruptionError, or exactly what the damaged index names; blob bytes never wrong", () => {
      const r = rng(kind === "delta" ? 11 : 12);
      const total = fx.header.totalBlocks;
      // One working copy; each trial damages one block in place and puts it back afterwards.
      const p = damaged(fx, () => undefined);
      const original = new Uint8Array(fs.readFileSync(p));
      const blobAt = blobsByOffset(fx, original);
      const fd = fs.openSync(p, "r+");
      const outcome = { corrupt: 0, relabeled: 0, unchanged: 0 };
      try {
        for (let trial = 0; trial < 150; trial++) {
          // Favour the header and the index: they are few blocks but the most intricate.
          const x = r();
          const blk =
            x < 0.15
              ? 0
              : x < 0.6
                ? fx.header.indexStartBlk + Math.floor(r() * (total - fx.header.indexStartBlk))
                : 1 + Math.floor(r() * (total - 1));
          const inValues = blk >= 1 && blk < fx.header.indexStartBlk;
          const block = original.slice(blk * BLOCK_SIZE, (blk + 1) * BLOCK_SIZE);
          const flips = 1 + Math.floor(r() * 3);
          for (let i = 0; i < flips; i++) {
            const off = r() < 0.5 ? Math.floor(r() * 128) : Math.floor(r() * (BLOCK_SIZE - 4));
            block[off]! ^= 1 << Math.floor(r() * 8);
          }
          sealBlock(block, blk);
          fs.writeSync(fd, block, 0, BLOCK_SIZE, blk * BLOCK_SIZE);
          // Did the damage change what the index or header says? (Value blocks: never allowed to matter.)
          const relabels = !inValues && meaning(blk, block) !== meaning(blk, original.subarray(blk * BLOCK_SIZE, (blk + 1) * BLOCK_SIZE));
          const damagedBytes = original.slice();
          damagedBytes.set(block, blk * BLOCK_SIZE);
          const named = relabels ? namedVersions(fx, damagedBytes) : null;
          const sample = Array.from({ length: 150 }, () => fx.keys[Math.floor(r() * fx.keys.length)]!);
          let sawError = false;
          let sawRelabel = false;
          try {
            const l = open(kind, p);
            try {
              const state = new ReconstructState();
              for (const k of sample) {
                state.reset();
                try {
                  l.getValues(k, asLsn(0), MAX_LSN, state);
                } catch (e) {
                  expectCorrupt(e, p);
                  // Value damage is reported at the damaged block or at the start of the blob over it.
                  if (inValues) expect((e as CorruptionError).blkno).toBeLessThanOrEqual(blk);
                  sawError = true;
                  continue;
                }
                const want = fx.expect.get(k)!;
                const exact =
                  state.lsns.length === want.lsns.length &&
                  state.lsns.every((lsn, i) => lsn === want.lsns[i] && sameBytes(state.values[i]!, want.values[i]!));
                if (exact) continue;
                const what = `trial ${trial}, block ${blk} (${inValues ? "values" : "index/header"}), key ${Buffer.from(k, "latin1").toString("hex")}: lsns ${state.lsns.join(",")}`;
                // A changed answer needs a changed index: the damage must have relabeled something.
                if (named === null) throw new WrongValueError(`${what}, though the damage changed no decoded field`);
                // …and every version returned is one the damaged index names for this key, with
                // the bytes written at the offset it names.
                const versions = named.get(k) ?? [];
                state.lsns.forEach((lsn, i) => {
                  const ok = versions.some(
                    (n) => n.lsn === lsn && blobAt.has(n.offset) && sameBytes(blobAt.get(n.offset)!, state.values[i]!),
                  );
                  if (!ok) throw new WrongValueError(`${what}: version ${i} is not what the damaged index names`);
                });
                sawRelabel = true;
              }
              iterateAll(l);
            } finally {
              l.close();
            }
          } catch (e) {
            if (!(e instanceof CorruptionError)) throw e;
            expectCorrupt(e, p);
            sawError = true;
          } finally {
            fs.writeSync(fd, original, blk * BLOCK_SIZE, BLOCK_SIZE, blk * BLOCK_SIZE);
          }
          if (sawError) outcome.corrupt++;
          else if (sawRelabel) outcome.relabeled++;
          else outcome.unchanged++;
        }
      } finally {
        fs.closeSync(fd);
      }
      console.log(`${kind}: 150 resealed damages: ${JSON.stringify(outcome)}`);
      expect(outcome.corrupt).toBeGreaterThan(30);
      // The seeded damage does relabel index entries undetectably: the rules above were exercised.
      expect(outcome.relabeled).toBeGreaterThan(0);
    });
  });
}
