/**
 * The open end of a timeline: EphemeralFile (src/layers/ephemeral_file.ts) — appends and
 * reads across the write-buffer boundary and 8 kB block boundaries, reads of blocks on disk
 * through the real shared PageCache (hits and misses counted as ephemeral pages), the
 * record format as scanEphemeralFile reads it back (with and without values, across its
 * 1 MiB chunks), and truncated files — and InMemoryLayer (src/layers/inmemory_layer.ts):
 * versions newest first within LSN windows, a rewritten (key, lsn) replacing the old
 * version, will_init ending a read, the freeze rules and puts into a frozen layer.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { PAGE_SIZE, PageCache } from "../src/cache/index.js";
import {
  EPHEMERAL_RECORD_HEADER_SIZE,
  EphemeralFile,
  MAX_EPHEMERAL_VALUE_SIZE,
  scanEphemeralFile,
  WRITE_BUFFER_BLOCKS,
} from "../src/layers/ephemeral_file.js";
import { InMemoryLayer } from "../src/layers/inmemory_layer.js";
import { ReconstructState } from "../src/layers/reconstruct_state.js";
import { AssertionError } from "../src/types/assert.js";
import { BadStateError } from "../src/types/errors.js";
import { type Key, makeKey } from "../src/types/key.js";
import { asLsn, type Lsn } from "../src/types/lsn.js";
import { imageValue, pgRecordValue, type Value, type ValueTag } from "../src/types/value.js";

const TAIL_BYTES = WRITE_BUFFER_BLOCKS * PAGE_SIZE;

let dir: string;
let cache: PageCache;
const open: Array<{ close(remove: boolean): void }> = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "ps-inmem-"));
  cache = PageCache.create({ size_bytes: 64 * PAGE_SIZE });
});
afterEach(() => {
  for (const f of open.splice(0)) f.close(false);
});
afterAll(() => {
  cache.detach();
  rmSync(dir, { recursive: true, force: true });
});

function k(n: number): Key {
  return makeKey(0, 1663, 5, 16384, 0, n);
}

/** A value of `len` bytes whose content is a function of (seed, position). */
function pattern(seed: number, len: number, willInit = false): Value {
  const payload = new Uint8Array(len - 1);
  for (let i = 0; i < payload.length; i++) payload[i] = (seed * 31 + i * 7 + (i >>> 8)) & 0xff;
  return willInit ? imageValue(payload) : pgRecordValue(false, payload);
}

let fileNo = 0;
function newFile(): EphemeralFile {
  const f = new EphemeralFile(cache, join(dir, `eph-${fileNo++}`));
  open.push(f);
  return f;
}

function record(seed: number): Value {
  return imageValue(new Uint8Array([seed & 0xff, (seed >>> 8) & 0xff]));
}

describe("EphemeralFile", () => {
  it("lays out each record as a 30-byte header (len LE, key, lsn hi/lo LE) and the value", () => {
    const f = newFile();
    const v = pgRecordValue(true, new Uint8Array([9, 8, 7]));
    const lsn = 0x0000_0012 * 0x1_0000_0000 + 0x3456_789a;
    expect(f.append(k(5), asLsn(lsn), v)).toBe(EPHEMERAL_RECORD_HEADER_SIZE);
    expect(f.sizeBytes).toBe(EPHEMERAL_RECORD_HEADER_SIZE + 4);
    expect(f.append(k(6), asLsn(1), v)).toBe(2 * EPHEMERAL_RECORD_HEADER_SIZE + 4);
    f.flushToOs();
    const bytes = readFileSync(f.path);
    expect(bytes.length).toBe(2 * (EPHEMERAL_RECORD_HEADER_SIZE + 4));
    expect(bytes.readUInt32LE(0)).toBe(4);
    expect(bytes.subarray(4, 22).toString("latin1")).toBe(k(5));
    expect(bytes.readUInt32LE(22)).toBe(0x12);
    expect(bytes.readUInt32LE(26)).toBe(0x3456_789a);
    expect([...bytes.subarray(30, 34)]).toEqual([2, 9, 8, 7]);
    expect([...f.read(30, 4)]).toEqual([2, 9, 8, 7]);
  });

  it("reads back every value across block and write-buffer boundaries, before and after they reach disk", () => {
    const f = newFile();
    const written: Array<{ off: number; v: Value }> = [];
    // Sizes chosen to straddle 8 kB blocks and the 128 kB tail: odd, block-sized, larger than a block.
    const sizes = [1, 8191, 8192, 8193, 30_000, 3, TAIL_BYTES - 100, 5, TAIL_BYTES + 3 * PAGE_SIZE + 17, 77, 16_384, 2];
    let lsn = 100;
    for (let i = 0; i < 60; i++) {
      const v = pattern(i, sizes[i % sizes.length]!, i % 3 === 0);
      const off = f.append(k(i % 7), asLsn(lsn++), v);
      written.push({ off, v });
      // Reading the value just written: often part on disk, part still in the tail.
      expect(Buffer.compare(f.read(off, v.length), v)).toBe(0);
    }
    expect(f.sizeBytes).toBeGreaterThan(8 * TAIL_BYTES);
    for (const { off, v } of written) expect(Buffer.compare(f.read(off, v.length), v)).toBe(0);
    // Sub-ranges that start and end inside blocks.
    const big = written.find((w) => w.v.length > TAIL_BYTES)!;
    expect(Buffer.compare(f.read(big.off + PAGE_SIZE - 1, 2 * PAGE_SIZE + 2), big.v.subarray(PAGE_SIZE - 1, 3 * PAGE_SIZE + 1))).toBe(0);
    expect(f.read(big.off, 0).length).toBe(0);
    expect(() => f.read(f.sizeBytes - 1, 2)).toThrow("ephemeral read out of range");
    expect(() => f.read(-1, 1)).toThrow(AssertionError);
  });

  it("a write-buffer-sized value lands exactly on the buffer boundary and reads back", () => {
    const f = newFile();
    const first = pattern(1, TAIL_BYTES - EPHEMERAL_RECORD_HEADER_SIZE);
    const off1 = f.append(k(1), asLsn(1), first);
    expect(f.sizeBytes).toBe(TAIL_BYTES); // the tail was written out, empty now
    expect(statSize(f.path)).toBe(TAIL_BYTES);
    const second = pattern(2, 10);
    const off2 = f.append(k(1), asLsn(2), second);
    expect(off2).toBe(TAIL_BYTES + EPHEMERAL_RECORD_HEADER_SIZE);
    expect(Buffer.compare(f.read(off1, first.length), first)).toBe(0);
    expect(Buffer.compare(f.read(off2, second.length), second)).toBe(0);
    // The last block of the written part and the first bytes of the tail in one read.
    const across = f.read(TAIL_BYTES - 4, 4 + EPHEMERAL_RECORD_HEADER_SIZE + 2);
    expect(Buffer.compare(across.subarray(0, 4), first.subarray(first.length - 4))).toBe(0);
    expect(Buffer.compare(across.subarray(4 + EPHEMERAL_RECORD_HEADER_SIZE), second.subarray(0, 2))).toBe(0);
  });

  it("blocks on disk are read through the shared page cache: a miss, then hits", () => {
    const f = newFile();
    const v = pattern(3, 3 * TAIL_BYTES);
    const off = f.append(k(1), asLsn(1), v);
    const before = cache.stats().byKind.ephemeral;
    expect(Buffer.compare(f.read(off, PAGE_SIZE - off), v.subarray(0, PAGE_SIZE - off))).toBe(0); // block 0 only
    const mid = cache.stats().byKind.ephemeral;
    expect(mid.misses - before.misses).toBe(1);
    expect(mid.hits - before.hits).toBe(0);
    f.read(off + 10, 100); // block 0 again
    f.read(PAGE_SIZE - 1, 2); // the end of block 0 (a hit) and the start of block 1 (a miss)
    const after = cache.stats().byKind.ephemeral;
    expect(after.hits - mid.hits).toBe(2);
    expect(after.misses - mid.misses).toBe(1);
    // Reading the whole value touches every block on disk once more; the tail costs nothing.
    const onDisk = Math.floor(f.sizeBytes / TAIL_BYTES) * WRITE_BUFFER_BLOCKS;
    expect(Buffer.compare(f.read(off, v.length), v)).toBe(0);
    const whole = cache.stats().byKind.ephemeral;
    expect(whole.hits + whole.misses - (after.hits + after.misses)).toBe(onDisk);
    // The cache is smaller than the file: everything still reads back right after evictions.
    expect(Buffer.compare(f.read(off, v.length), v)).toBe(0);
    expect(cache.checkInvariants().valid).toBeLessThanOrEqual(64);
  });

  it("two files never see each other's blocks in the cache", () => {
    const a = newFile();
    const b = newFile();
    expect(a.fileId).not.toBe(b.fileId);
    const va = pattern(10, TAIL_BYTES + 5);
    const vb = pattern(11, TAIL_BYTES + 5);
    const oa = a.append(k(1), asLsn(1), va);
    const ob = b.append(k(1), asLsn(1), vb);
    expect(Buffer.compare(a.read(oa, PAGE_SIZE), va.subarray(0, PAGE_SIZE))).toBe(0);
    expect(Buffer.compare(b.read(ob, PAGE_SIZE), vb.subarray(0, PAGE_SIZE))).toBe(0);
  });

  it("refuses empty and oversized values and appends after close; close(true) removes the file", () => {
    const f = newFile();
    expect(() => f.append(k(1), asLsn(1), new Uint8Array(0))).toThrow("ephemeral value size out of range");
    expect(() => f.append(k(1), asLsn(1), new Uint8Array(MAX_EPHEMERAL_VALUE_SIZE + 1))).toThrow(AssertionError);
    expect(f.sizeBytes).toBe(0);
    f.close(true);
    expect(existsSync(f.path)).toBe(false);
    f.close(true); // idempotent
    expect(() => f.append(k(1), asLsn(1), record(1))).toThrow("append to a closed ephemeral file");
  });

  it("random appends read back (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 3 * PAGE_SIZE }), { minLength: 1, maxLength: 40 }), (sizes) => {
        const f = newFile();
        const written = sizes.map((len, i) => ({ v: pattern(i + len, len), off: f.append(k(i), asLsn(i), pattern(i + len, len)) }));
        for (const { off, v } of written) expect(Buffer.compare(f.read(off, v.length), v)).toBe(0);
        f.close(true);
      }),
      { numRuns: 30 },
    );
  });

  it("appendTagged writes the same bytes and offsets as append of the built value, at every tail position (property)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ len: fc.integer({ min: 0, max: 3 * PAGE_SIZE }), tagged: fc.boolean(), tag: fc.integer({ min: 0, max: 4 }) }),
          { minLength: 1, maxLength: 40 },
        ),
        fc.integer({ min: 0, max: EPHEMERAL_RECORD_HEADER_SIZE + 2 }),
        (ops, shift) => {
          const a = newFile();
          const b = newFile();
          // Start near the end of the tail so headers and tag bytes straddle the boundary.
          const pad = pattern(99, TAIL_BYTES - EPHEMERAL_RECORD_HEADER_SIZE - 60 - shift);
          a.append(k(0), asLsn(0), pad);
          b.append(k(0), asLsn(0), pad);
          ops.forEach((op, i) => {
            const payload = pattern(i + op.len, op.len + 1).subarray(1);
            const whole = new Uint8Array(op.len + 1);
            whole[0] = op.tag;
            whole.set(payload, 1);
            const offA = a.append(k(i), asLsn(i + 1), whole);
            const offB = op.tagged ? b.appendTagged(k(i), asLsn(i + 1), op.tag as ValueTag, payload) : b.append(k(i), asLsn(i + 1), whole);
            expect(offB).toBe(offA);
            expect(Buffer.compare(b.read(offB, whole.length), whole)).toBe(0);
          });
          expect(b.sizeBytes).toBe(a.sizeBytes);
          a.flushToOs();
          b.flushToOs();
          expect(Buffer.compare(readFileSync(a.path), readFileSync(b.path))).toBe(0);
          a.close(true);
          b.close(true);
        },
      ),
      { numRuns: 30 },
    );
  });
});

function statSize(path: string): number {
  return readFileSync(path).length;
}

describe("scanEphemeralFile", () => {
  function fill(f: EphemeralFile): Array<{ key: Key; lsn: Lsn; v: Value; off: number }> {
    const out: Array<{ key: Key; lsn: Lsn; v: Value; off: number }> = [];
    // ~3 MiB: several 1 MiB scan chunks, one value larger than a chunk, tiny values in between.
    const sizes = [2, 9000, 1, 70_000, (1 << 20) + 12_345, 3, 200_000, 8192, 5];
    for (let i = 0; i < 40; i++) {
      const key = k(i % 5);
      const lsn = 0x1_0000_0000 * (i % 2) + 1000 + i; // LSNs with a high half too
      const v = pattern(i, sizes[i % sizes.length]!, i % 4 === 0);
      out.push({ key, lsn: asLsn(lsn), v, off: f.append(key, asLsn(lsn), v) });
    }
    f.flushToOs();
    return out;
  }

  it("yields every record in order with its value, key, LSN, offset and will_init", () => {
    const f = newFile();
    const want = fill(f);
    const got = [...scanEphemeralFile(f.path, f.sizeBytes)];
    expect(got.length).toBe(want.length);
    got.forEach(({ entry, value }, i) => {
      const w = want[i]!;
      expect(entry.key).toBe(w.key);
      expect(entry.lsn).toBe(w.lsn);
      expect(entry.offset).toBe(w.off);
      expect(entry.length).toBe(w.v.length);
      expect(entry.willInit).toBe(i % 4 === 0);
      expect(value).not.toBeNull();
      expect(Buffer.compare(value!, w.v)).toBe(0);
    });
  });

  it("without values yields the same entries and null values", () => {
    const f = newFile();
    const want = fill(f);
    const withV = [...scanEphemeralFile(f.path, f.sizeBytes, true)].map((x) => x.entry);
    const without = [...scanEphemeralFile(f.path, f.sizeBytes, false)];
    expect(without.map((x) => x.entry)).toEqual(withV);
    expect(without.every((x) => x.value === null)).toBe(true);
    expect(without.length).toBe(want.length);
  });

  it("a prefix length that ends on a record boundary scans that prefix; an empty file has no records", () => {
    const f = newFile();
    const want = fill(f);
    const cut = want[10]!.off - EPHEMERAL_RECORD_HEADER_SIZE;
    expect([...scanEphemeralFile(f.path, cut)].length).toBe(10);
    expect([...scanEphemeralFile(f.path, 0)]).toEqual([]);
  });

  it("a length that ends inside a record, or a file shorter than the length, is an error naming the file", () => {
    const f = newFile();
    const want = fill(f);
    const inHeader = want[7]!.off - 10;
    expect(() => [...scanEphemeralFile(f.path, inHeader)]).toThrow(`ephemeral file ${f.path} ends inside a record`);
    const inValue = want[7]!.off + 1;
    expect(() => [...scanEphemeralFile(f.path, inValue)]).toThrow(`ephemeral file ${f.path}: record at ${want[7]!.off} runs past the end`);
    // The file lost its end (the length still says more).
    const copy = join(dir, "truncated");
    writeFileSync(copy, readFileSync(f.path));
    truncateSync(copy, want[20]!.off + 5);
    expect(() => [...scanEphemeralFile(copy, f.sizeBytes, false)]).toThrow(`short read of ephemeral file ${copy}`);
    expect(() => [...scanEphemeralFile(copy, f.sizeBytes, true)]).toThrow(AssertionError);
    // A length header of zero is refused, not looped on.
    const zero = join(dir, "zero");
    writeFileSync(zero, new Uint8Array(EPHEMERAL_RECORD_HEADER_SIZE + 4));
    expect(() => [...scanEphemeralFile(zero, EPHEMERAL_RECORD_HEADER_SIZE + 4)]).toThrow("runs past the end");
    expect(() => [...scanEphemeralFile(join(dir, "missing"), 10)]).toThrow(/ENOENT/);
  });
});

function collect(layer: InMemoryLayer, key: Key, floor: Lsn, end: Lsn): { lsns: Lsn[]; firstBytes: number[]; complete: boolean } {
  const st = new ReconstructState();
  const complete = layer.getValues(key, floor, end, st);
  expect(st.layersVisited).toBe(1);
  return { lsns: [...st.lsns], firstBytes: st.values.map((v) => v[1]!), complete };
}

describe("InMemoryLayer", () => {
  function newLayer(start: Lsn): InMemoryLayer {
    const l = new InMemoryLayer(cache, dir, fileNo++, start);
    open.push(l);
    return l;
  }
  const rec = (b: number): Value => pgRecordValue(false, new Uint8Array([b]));
  const img = (b: number): Value => imageValue(new Uint8Array([b]));

  it("returns versions newest first within [floor, end)", () => {
    const l = newLayer(asLsn(100));
    for (const lsn of [100, 110, 120, 130, 140]) l.put(k(1), asLsn(lsn), rec(lsn & 0xff));
    l.put(k(2), asLsn(125), rec(1));
    expect(collect(l, k(1), asLsn(0), asLsn(1000))).toEqual({
      lsns: [140, 130, 120, 110, 100],
      firstBytes: [140, 130, 120, 110, 100],
      complete: false,
    });
    expect(collect(l, k(1), asLsn(110), asLsn(140)).lsns).toEqual([130, 120, 110]);
    expect(collect(l, k(1), asLsn(111), asLsn(130)).lsns).toEqual([120]);
    expect(collect(l, k(1), asLsn(141), asLsn(1000)).lsns).toEqual([]);
    expect(collect(l, k(1), asLsn(0), asLsn(100)).lsns).toEqual([]);
    expect(collect(l, k(3), asLsn(0), asLsn(1000)).lsns).toEqual([]);
    expect(l.valueCount).toBe(6);
    expect(l.keyCount).toBe(2);
    expect(l.maxLsn).toBe(140);
    expect([...l.keys()].sort()).toEqual([k(1), k(2)]);
    expect(l.hasKey(k(2))).toBe(true);
    expect(l.hasKey(k(3))).toBe(false);
  });

  it("stops at the first will_init version going down", () => {
    const l = newLayer(asLsn(0));
    l.put(k(1), asLsn(10), rec(1));
    l.put(k(1), asLsn(20), img(2));
    l.put(k(1), asLsn(30), rec(3));
    l.put(k(1), asLsn(40), rec(4));
    expect(collect(l, k(1), asLsn(0), asLsn(100))).toEqual({ lsns: [40, 30, 20], firstBytes: [4, 3, 2], complete: true });
    expect(collect(l, k(1), asLsn(0), asLsn(20))).toEqual({ lsns: [10], firstBytes: [1], complete: false });
    expect(l.newestWillInit(k(1), asLsn(100))).toBe(false);
    expect(l.newestWillInit(k(1), asLsn(29))).toBe(true);
    expect(l.newestWillInit(k(1), asLsn(9))).toBeNull();
    expect(l.newestWillInit(k(9), asLsn(100))).toBeNull();
  });

  it("writing the same (key, lsn) again replaces the version", () => {
    const l = newLayer(asLsn(0));
    l.put(k(1), asLsn(10), rec(1));
    l.put(k(1), asLsn(20), rec(2));
    const size = l.sizeBytes;
    l.put(k(1), asLsn(20), img(7));
    expect(l.sizeBytes).toBeGreaterThan(size); // the file only grows
    expect(l.valueCount).toBe(2);
    expect(collect(l, k(1), asLsn(0), asLsn(100))).toEqual({ lsns: [20], firstBytes: [7], complete: true });
    // Going backwards for one key is a bug, not input.
    expect(() => l.put(k(1), asLsn(15), rec(3))).toThrow("per-key LSNs must ascend");
    // Other keys may use lower LSNs.
    l.put(k(2), asLsn(15), rec(3));
    expect(collect(l, k(2), asLsn(0), asLsn(100)).lsns).toEqual([15]);
  });

  it("refuses puts below its start LSN", () => {
    const l = newLayer(asLsn(100));
    expect(() => l.put(k(1), asLsn(99), rec(1))).toThrow("put below the layer's start LSN");
  });

  it("freeze sets end to at + 1 once, never below a written LSN; puts into a frozen layer are refused", () => {
    const l = newLayer(asLsn(0x100));
    expect(l.frozen).toBe(false);
    expect(l.end).toBe(Number.POSITIVE_INFINITY);
    l.put(k(1), asLsn(0x150), rec(1));
    expect(() => l.freeze(asLsn(0x14f))).toThrow("freeze below written LSNs");
    expect(() => l.freeze(asLsn(0xff))).toThrow(AssertionError);
    expect(l.frozen).toBe(false);
    l.freeze(asLsn(0x1ff));
    expect(l.frozen).toBe(true);
    expect(l.end).toBe(0x200);
    expect(() => l.freeze(asLsn(0x300))).toThrow("freeze twice");
    let err: unknown;
    try {
      l.put(k(1), asLsn(0x160), rec(2));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BadStateError);
    expect((err as BadStateError).code).toBe("bad_state");
    expect((err as Error).message).toBe("put into frozen in-memory layer 0/100-0/200");
    // Still readable, and the whole file is visible to a flush job.
    expect(collect(l, k(1), asLsn(0), asLsn(0x1000)).lsns).toEqual([0x150]);
    const scanned = [...scanEphemeralFile(l.file.path, l.sizeBytes)];
    expect(scanned.map((s) => [s.entry.key, s.entry.lsn])).toEqual([[k(1), 0x150]]);
  });

  it("an empty layer freezes at its start; freezing at the max written LSN is allowed", () => {
    const a = newLayer(asLsn(50));
    a.freeze(asLsn(50));
    expect(a.end).toBe(51);
    const b = newLayer(asLsn(50));
    b.put(k(1), asLsn(60), rec(1));
    b.freeze(asLsn(60));
    expect(b.end).toBe(61);
  });

  it("holds values larger than the write buffer and many keys (reads go through the cache)", () => {
    const l = newLayer(asLsn(0));
    const big = pattern(5, TAIL_BYTES * 2 + 123, true);
    for (let i = 0; i < 200; i++) l.put(k(i), asLsn(10 + i), pattern(i, 1000 + i));
    l.put(k(7), asLsn(1000), big);
    for (let i = 0; i < 200; i++) {
      const st = new ReconstructState();
      l.getValues(k(i), asLsn(0), asLsn(10 + i + 1), st);
      expect(st.lsns).toEqual([10 + i]);
      expect(Buffer.compare(st.values[0]!, pattern(i, 1000 + i))).toBe(0);
    }
    const st = new ReconstructState();
    expect(l.getValues(k(7), asLsn(0), asLsn(2000), st)).toBe(true);
    expect(Buffer.compare(st.values[0]!, big)).toBe(0);
    expect(st.lsns).toEqual([1000]);
  });
});
