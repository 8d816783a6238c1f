/**
 * PageCache in one thread: construction and attach, id allocation, hit/miss/evict counting,
 * clock eviction in a tiny cache, pins, inexact LSN lookup of materialized pages, failing
 * fills, and the structural invariant check.
 */
import { describe, expect, it } from "vitest";
import { type BlockSource, PAGE_SIZE, PageCache, PageKind } from "../src/cache/index.js";
import { AllSlotsPinnedError } from "../src/cache/index.js";
import { CorruptionError, InvalidArgumentError } from "../src/types/errors.js";
import { makeKey } from "../src/types/key.js";
import { fillMaterializedPattern, PatternSource, verifyBlockPage, verifyMaterializedPage } from "./support/cache_stress_worker.js";
import { asLsn, type Lsn } from "../src/types/lsn.js";

const FILE = PageKind.FileBlock;
const EPH = PageKind.EphemeralBlock;

function tiny(slots: number): PageCache {
  return PageCache.create({ size_bytes: slots * PAGE_SIZE, stripes: 4 });
}

function read(cache: PageCache, src: PatternSource, blkno: number): Uint8Array {
  const dst = new Uint8Array(PAGE_SIZE);
  cache.readBlock(src.kind as PageKind.FileBlock, src.fileId, blkno, src, dst);
  expect(verifyBlockPage(src.kind, src.fileId, blkno, dst)).toBeNull();
  return dst;
}

function matPage(ns: number, key: ReturnType<typeof makeKey>, lsn: number): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  fillMaterializedPattern(ns, key, lsn, page);
  return page;
}

describe("PageCache construction", () => {
  it("creates, attaches a second handle to the same buffer, and shares ids and pages", () => {
    const a = PageCache.create({ size_bytes: 16 * PAGE_SIZE });
    expect(a.slots).toBe(16);
    expect(a.shared).toBeInstanceOf(SharedArrayBuffer);
    const b = PageCache.attach(a.shared);
    expect(b.slots).toBe(16);
    expect(a.allocFileId()).toBe(1);
    expect(b.allocFileId()).toBe(2);
    expect(a.allocFileId()).toBe(3);
    expect(b.allocNamespaceId()).toBe(1);
    expect(a.allocNamespaceId()).toBe(2);
    const src = new PatternSource(FILE, 7);
    read(a, src, 3);
    read(b, src, 3);
    expect(src.fills).toBe(1);
    expect(a.stats().byKind.file).toEqual({ hits: 1, misses: 1, evictions: 0 });
    b.detach();
    a.detach();
  });

  it("handles of one thread share one stats row, so attaching per job does not use rows up", () => {
    const c = PageCache.create({ size_bytes: 4 * PAGE_SIZE });
    const src = new PatternSource(FILE, 1);
    for (let i = 0; i < 200; i++) {
      const h = PageCache.attach(c.shared);
      read(h, src, i % 2);
      h.detach();
      h.detach(); // idempotent
    }
    expect(c.stats().byKind.file).toEqual({ hits: 198, misses: 2, evictions: 0 });
    c.detach();
    // Counts of a released row are still summed.
    expect(PageCache.attach(c.shared).stats().byKind.file.hits).toBe(198);
  });

  it("defaults to 64 MiB", () => {
    const c = PageCache.create();
    expect(c.slots).toBe((64 * 1024 * 1024) / PAGE_SIZE);
    expect(c.checkInvariants()).toEqual({ valid: 0, free: c.slots });
  });

  it("refuses bad sizes and buffers that are not a page cache", () => {
    expect(() => PageCache.create({ size_bytes: 1000 })).toThrow(InvalidArgumentError);
    expect(() => PageCache.create({ size_bytes: 0 })).toThrow(InvalidArgumentError);
    expect(() => PageCache.create({ size_bytes: PAGE_SIZE, stripes: 3 })).toThrow(InvalidArgumentError);
    expect(() => PageCache.attach(new SharedArrayBuffer(1 << 16))).toThrow(InvalidArgumentError);
    const c = tiny(4);
    const truncated = new SharedArrayBuffer(c.shared.byteLength - PAGE_SIZE);
    new Uint8Array(truncated).set(new Uint8Array(c.shared, 0, truncated.byteLength));
    expect(() => PageCache.attach(truncated)).toThrow(/does not match its header/);
  });

  it("refuses a buffer whose header geometry is corrupt, as create refuses it", () => {
    const c = PageCache.create({ size_bytes: 4 * PAGE_SIZE, stripes: 4 });
    const header = new Int32Array(c.shared, 0, 8);
    header[4] = 3; // stripes: not a power of two (the buffer's size still matches: rounding)
    expect(() => PageCache.attach(c.shared)).toThrow(/header is corrupt: 4 slots, 3 stripes/);
    header[4] = 4;
    header[2] = 0; // slots
    expect(() => PageCache.attach(c.shared)).toThrow(InvalidArgumentError);
    header[2] = 4;
    expect(PageCache.attach(c.shared).slots).toBe(4);
  });

  it("refuses bad arguments", () => {
    const c = tiny(4);
    const src = new PatternSource(FILE, 1);
    const dst = new Uint8Array(PAGE_SIZE);
    expect(() => c.readBlock(FILE, 0, 0, src, dst)).toThrow(InvalidArgumentError);
    expect(() => c.readBlock(FILE, 1, -1, src, dst)).toThrow(InvalidArgumentError);
    expect(() => c.readBlock(FILE, 1, 2 ** 32, src, dst)).toThrow(InvalidArgumentError);
    expect(() => c.readBlock(FILE, 1, 0, src, new Uint8Array(100))).toThrow(InvalidArgumentError);
    expect(() => c.readBlock(PageKind.Materialized as PageKind.FileBlock, 1, 0, src, dst)).toThrow(InvalidArgumentError);
    const key = makeKey(0, 1, 2, 3, 0, 4);
    expect(() => c.lookupMaterialized(1, key, -1 as Lsn, dst)).toThrow(InvalidArgumentError);
    expect(() => c.lookupMaterialized(1, key, (2 ** 53) as Lsn, dst)).toThrow(InvalidArgumentError);
    expect(() => c.insertMaterialized(0, key, asLsn(5), dst)).toThrow(InvalidArgumentError);
    expect(() => c.insertMaterialized(1, key, asLsn(5), new Uint8Array(10))).toThrow(InvalidArgumentError);
  });
});

describe("PageCache blocks", () => {
  it("counts hits and misses per kind and keeps file and ephemeral blocks apart", () => {
    const c = tiny(16);
    const file = new PatternSource(FILE, 5);
    const eph = new PatternSource(EPH, 5); // same id and blkno, other kind: another page
    read(c, file, 0);
    read(c, file, 0);
    read(c, file, 1);
    read(c, eph, 0);
    read(c, eph, 0);
    read(c, eph, 0);
    expect(file.fills).toBe(2);
    expect(eph.fills).toBe(1);
    const s = c.stats();
    expect(s.slots).toBe(16);
    expect(s.byKind.file).toEqual({ hits: 1, misses: 2, evictions: 0 });
    expect(s.byKind.ephemeral).toEqual({ hits: 2, misses: 1, evictions: 0 });
    expect(s.byKind.materialized).toEqual({ hits: 0, misses: 0, evictions: 0 });
    expect(c.checkInvariants()).toEqual({ valid: 3, free: 13 });
  });

  it("evicts under pressure in an 8-slot cache and every page read stays correct", () => {
    const c = tiny(8);
    const src = new PatternSource(FILE, 9);
    for (let round = 0; round < 3; round++) for (let b = 0; b < 20; b++) read(c, src, b);
    const s = c.stats().byKind.file;
    expect(s.misses).toBe(src.fills);
    expect(s.hits + s.misses).toBe(60);
    expect(s.evictions).toBe(s.misses - 8);
    expect(s.evictions).toBeGreaterThan(0);
    expect(c.checkInvariants()).toEqual({ valid: 8, free: 0 });
  });

  it("the clock keeps a frequently used block over blocks used once", () => {
    const c = tiny(8);
    const src = new PatternSource(FILE, 2);
    for (let i = 0; i < 5; i++) read(c, src, 1000); // usage count reaches the cap
    for (let b = 0; b < 10; b++) read(c, src, b);
    const fills = src.fills;
    read(c, src, 1000);
    expect(src.fills).toBe(fills); // still cached: a hit
  });

  it("a failing fill throws and leaves nothing cached; the next read fills again", () => {
    const c = tiny(4);
    const bad: BlockSource = {
      readBlockInto(blkno: number, dst: Uint8Array): void {
        dst.fill(0xee); // half-written garbage must not survive
        throw new CorruptionError("layer-x", blkno, "checksum mismatch");
      },
    };
    const dst = new Uint8Array(PAGE_SIZE);
    expect(() => c.readBlock(FILE, 3, 7, bad, dst)).toThrow(CorruptionError);
    expect(c.checkInvariants()).toEqual({ valid: 0, free: 4 });
    const good = new PatternSource(FILE, 3);
    read(c, good, 7);
    expect(good.fills).toBe(1);
    expect(c.stats().byKind.file.misses).toBe(2);
    expect(c.checkInvariants()).toEqual({ valid: 1, free: 3 });
  });

  it("pinned slots are never evicted and their bytes stay put", () => {
    const c = tiny(8);
    const src = new PatternSource(FILE, 4);
    const pinned = [0, 1, 2].map((b) => c.pinBlock(FILE, src.fileId, b, src));
    for (let b = 100; b < 300; b++) read(c, src, b);
    for (const [i, slot] of pinned.entries()) expect(verifyBlockPage(FILE, src.fileId, i, c.pageView(slot))).toBeNull();
    const fills = src.fills;
    for (let b = 0; b < 3; b++) read(c, src, b);
    expect(src.fills).toBe(fills); // all three were still cached
    for (const slot of pinned) c.unpinSlot(slot);
    expect(() => c.unpinSlot(pinned[0]!)).toThrow(/not pinned/);
    expect(c.checkInvariants().valid).toBe(8);
  });

  it("throws AllSlotsPinnedError when every slot is pinned, and recovers after an unpin", () => {
    const c = tiny(4);
    const src = new PatternSource(FILE, 6);
    const slots = [0, 1, 2, 3].map((b) => c.pinBlock(FILE, src.fileId, b, src));
    expect(new Set(slots).size).toBe(4);
    const dst = new Uint8Array(PAGE_SIZE);
    expect(() => c.readBlock(FILE, src.fileId, 99, src, dst)).toThrow(AllSlotsPinnedError);
    expect(() => c.readBlock(FILE, src.fileId, 99, src, dst)).toThrow(/all page cache slots pinned/);
    read(c, src, 2); // a hit on a pinned slot is fine
    c.unpinSlot(slots[0]!);
    read(c, src, 99);
    for (const slot of slots.slice(1)) c.unpinSlot(slot);
    c.checkInvariants();
  });

  it("a fill may read other blocks through the cache (nested miss)", () => {
    const c = tiny(4);
    const inner = new PatternSource(FILE, 11);
    const outer: BlockSource = {
      readBlockInto(blkno: number, dst: Uint8Array): void {
        const tmp = new Uint8Array(PAGE_SIZE);
        c.readBlock(FILE, inner.fileId, blkno, inner, tmp);
        dst.set(tmp);
      },
    };
    const dst = new Uint8Array(PAGE_SIZE);
    c.readBlock(EPH, 12, 5, outer, dst);
    expect(verifyBlockPage(FILE, inner.fileId, 5, dst)).toBeNull();
    expect(c.checkInvariants()).toEqual({ valid: 2, free: 2 });
  });

  it("a corrupted cached page is caught by the page checks", () => {
    const c = tiny(4);
    const src = new PatternSource(FILE, 8);
    read(c, src, 1);
    const slot = c.pinBlock(FILE, src.fileId, 1, src);
    c.pageView(slot)[100]! ^= 0x01; // a bit flip in shared memory
    c.unpinSlot(slot);
    const dst = new Uint8Array(PAGE_SIZE);
    c.readBlock(FILE, src.fileId, 1, src, dst);
    expect(verifyBlockPage(FILE, src.fileId, 1, dst)).toMatch(/checksum mismatch/);
    // And a page of another block does not pass for this one.
    const other = new Uint8Array(PAGE_SIZE);
    c.readBlock(FILE, src.fileId, 2, src, other);
    expect(verifyBlockPage(FILE, src.fileId, 1, other)).toMatch(/expected block/);
  });
});

describe("PageCache materialized pages", () => {
  const key = makeKey(0, 1663, 5, 16384, 0, 42);
  const otherKey = makeKey(0, 1663, 5, 16384, 0, 43);

  it("finds the newest version at or below the requested LSN", () => {
    const c = tiny(16);
    const ns = c.allocNamespaceId();
    const lsns = [0x100, 0x200, 0x1_0000_0000 + 5, 2 ** 52 + 7]; // hi words in use
    for (const lsn of lsns) c.insertMaterialized(ns, key, asLsn(lsn), matPage(ns, key, lsn));
    const dst = new Uint8Array(PAGE_SIZE);
    const expectAt = (want: number, got: number): void => {
      expect(c.lookupMaterialized(ns, key, asLsn(want), dst)).toBe(got);
      if (got >= 0) expect(verifyMaterializedPage(ns, key, got, dst)).toBeNull();
    };
    expectAt(0, -1);
    expectAt(0xff, -1);
    expectAt(0x100, 0x100);
    expectAt(0x1ff, 0x100);
    expectAt(0x200, 0x200);
    expectAt(0xffff_ffff, 0x200);
    expectAt(0x1_0000_0004, 0x200);
    expectAt(0x1_0000_0005, 0x1_0000_0005);
    expectAt(2 ** 52 + 6, 0x1_0000_0005);
    expectAt(Number.MAX_SAFE_INTEGER, 2 ** 52 + 7);
    expect(c.lookupMaterialized(ns, otherKey, asLsn(Number.MAX_SAFE_INTEGER), dst)).toBe(-1);
    expect(c.lookupMaterialized(ns + 1, key, asLsn(Number.MAX_SAFE_INTEGER), dst)).toBe(-1);
    const s = c.stats().byKind.materialized;
    expect(s).toEqual({ hits: 8, misses: 4, evictions: 0 });
  });

  it("a duplicate insert is a no-op that keeps the first page", () => {
    const c = tiny(8);
    const ns = c.allocNamespaceId();
    c.insertMaterialized(ns, key, asLsn(500), matPage(ns, key, 500));
    c.insertMaterialized(ns, key, asLsn(500), new Uint8Array(PAGE_SIZE).fill(1));
    expect(c.checkInvariants()).toEqual({ valid: 1, free: 7 });
    const dst = new Uint8Array(PAGE_SIZE);
    expect(c.lookupMaterialized(ns, key, asLsn(600), dst)).toBe(500);
    expect(verifyMaterializedPage(ns, key, 500, dst)).toBeNull();
  });

  it("materialized pages compete with blocks for slots and are counted when evicted", () => {
    const c = tiny(8);
    const ns = c.allocNamespaceId();
    for (let v = 1; v <= 6; v++) c.insertMaterialized(ns, key, asLsn(v * 10), matPage(ns, key, v * 10));
    const src = new PatternSource(FILE, 1);
    for (let b = 0; b < 16; b++) read(c, src, b);
    const s = c.stats();
    expect(s.byKind.materialized.evictions).toBe(6);
    expect(s.byKind.file.evictions).toBe(16 - 2 - 6); // 2 free slots, 6 taken from materialized
    const dst = new Uint8Array(PAGE_SIZE);
    expect(c.lookupMaterialized(ns, key, asLsn(1000), dst)).toBe(-1);
    expect(c.checkInvariants()).toEqual({ valid: 8, free: 0 });
  });
});
