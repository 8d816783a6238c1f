/**
 * bufpage.ts and bufmask.ts against hand-computed layouts (bufpage.c's arithmetic done by
 * hand) and against invariants on seeded random pages: after every compaction each item keeps
 * its bytes (MAXALIGN padding included) and tuples are packed from pd_special downward in
 * line-pointer order. Plus the registry's view of which rmgrs still lack native redo.
 */
import { describe, expect, it } from "vitest";
import { maskLpFlags, maskPageContent, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "../src/pg/redo/bufmask.js";
import {
  BLCKSZ,
  itemIdFlags,
  itemIdLen,
  itemIdOff,
  LP_DEAD,
  LP_NORMAL,
  LP_REDIRECT,
  LP_UNUSED,
  MAX_HEAP_TUPLES_PER_PAGE,
  MAX_INDEX_TUPLES_PER_PAGE,
  maxAlign,
  PAI_IS_HEAP,
  PAI_OVERWRITE,
  PageLayoutError,
  PD_ALL_VISIBLE,
  PD_HAS_FREE_LINES,
  PD_PAGE_FULL,
  pageAddItemExtended,
  pageGetExactFreeSpace,
  pageGetFreeSpace,
  pageGetHeapFreeSpace,
  pageGetItem,
  pageGetMaxOffsetNumber,
  pageGetSpecial,
  pageIndexMultiDelete,
  pageIndexTupleDelete,
  pageIndexTupleDeleteNoCompact,
  pageIndexTupleOverwrite,
  pageInit,
  pageRepairFragmentation,
  pageSetPrunable,
  pageTruncateLinePointerArray,
  pdFlags,
  pdLower,
  pdPagesizeVersion,
  pdPruneXid,
  pdSpecial,
  pdUpper,
  setItemId,
  setItemIdDead,
  setItemIdRedirect,
  setItemIdUnused,
  setPageLsn,
  setPdFlags,
  setPdLower,
  setPdPruneXid,
  setPdUpper,
} from "../src/pg/redo/bufpage.js";
import { rmgrRedo, rmgrsWithoutNativeRedo } from "../src/pg/redo/redo_table.js";
import { RM_XLOG_ID } from "../src/pg/wal/rmgr_ids.js";
import { rng } from "./support/rng.js";
import { asLsn } from "../src/types/lsn.js";

/** An item of `len` bytes whose content names it: byte k = (seed * 31 + k) & 0xff. */
function item(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let k = 0; k < len; k++) b[k] = (seed * 31 + k) & 0xff;
  return b;
}

function newPage(special = 0): Uint8Array {
  const p = new Uint8Array(BLCKSZ);
  pageInit(p, special);
  return p;
}

/** The aligned bytes [lp_off, lp_off + MAXALIGN(lp_len)) of every item with storage, by offset number. */
function alignedItems(p: Uint8Array): Map<number, Uint8Array> {
  const m = new Map<number, Uint8Array>();
  for (let i = 1; i <= pageGetMaxOffsetNumber(p); i++) {
    const len = itemIdLen(p, i);
    if (len === 0) continue;
    const off = itemIdOff(p, i);
    m.set(i, p.slice(off, off + maxAlign(len)));
  }
  return m;
}

/** Tuples with storage are packed from pd_special downward in line-pointer order. */
function expectPackedInLpOrder(p: Uint8Array): void {
  let end = pdSpecial(p);
  for (let i = 1; i <= pageGetMaxOffsetNumber(p); i++) {
    const len = itemIdLen(p, i);
    if (len === 0) continue;
    end -= maxAlign(len);
    expect(itemIdOff(p, i), `line pointer ${i}`).toBe(end);
  }
  expect(pdUpper(p)).toBe(end);
}

describe("page header and line pointers", () => {
  it("pageInit lays out an empty page with MAXALIGNed special space", () => {
    const p = new Uint8Array(BLCKSZ).fill(0xaa);
    pageInit(p, 13);
    expect(pdLower(p)).toBe(24);
    expect(pdUpper(p)).toBe(8192 - 16);
    expect(pdSpecial(p)).toBe(8192 - 16);
    expect(pdPagesizeVersion(p)).toBe(0x2004);
    expect(pdFlags(p)).toBe(0);
    expect(pdPruneXid(p)).toBe(0);
    expect(pageGetMaxOffsetNumber(p)).toBe(0);
    expect(pageGetSpecial(p).length).toBe(16);
    expect(p.subarray(24).every((b) => b === 0)).toBe(true);
    expect(Array.from(p.subarray(12, 20))).toEqual([24, 0, 0xf0, 0x1f, 0xf0, 0x1f, 0x04, 0x20]);
  });

  it("line pointers pack lp_off:15, lp_flags:2, lp_len:15 little-endian", () => {
    const p = newPage();
    setItemId(p, 1, 8160, LP_NORMAL, 10);
    // 8160 | 1 << 15 | 10 << 17 = 0x0014 9FE0
    expect(Array.from(p.subarray(24, 28))).toEqual([0xe0, 0x9f, 0x14, 0x00]);
    expect([itemIdOff(p, 1), itemIdFlags(p, 1), itemIdLen(p, 1)]).toEqual([8160, LP_NORMAL, 10]);
    setItemId(p, 2, 0x7fff, LP_DEAD, 0x7fff);
    expect(Array.from(p.subarray(28, 32))).toEqual([0xff, 0xff, 0xff, 0xff]);
    setItemIdRedirect(p, 3, 7);
    expect([itemIdOff(p, 3), itemIdFlags(p, 3), itemIdLen(p, 3)]).toEqual([7, LP_REDIRECT, 0]);
    setItemIdDead(p, 2);
    expect([itemIdOff(p, 2), itemIdFlags(p, 2), itemIdLen(p, 2)]).toEqual([0, LP_DEAD, 0]);
    setItemIdUnused(p, 1);
    expect(Array.from(p.subarray(24, 28))).toEqual([0, 0, 0, 0]);
  });

  it("pageSetPrunable keeps the oldest xid, modulo 2^32", () => {
    const p = newPage();
    pageSetPrunable(p, 1000);
    expect(pdPruneXid(p)).toBe(1000);
    pageSetPrunable(p, 2000);
    expect(pdPruneXid(p)).toBe(1000);
    pageSetPrunable(p, 900);
    expect(pdPruneXid(p)).toBe(900);
    setPdPruneXid(p, 5);
    pageSetPrunable(p, 0xffff_fff0); // wrapped around: older than 5
    expect(pdPruneXid(p)).toBe(0xffff_fff0);
  });

  it("constants match PostgreSQL's macros", () => {
    expect(MAX_HEAP_TUPLES_PER_PAGE).toBe(291);
    expect(MAX_INDEX_TUPLES_PER_PAGE).toBe(408);
    expect([maxAlign(0), maxAlign(1), maxAlign(8), maxAlign(23)]).toEqual([0, 8, 8, 24]);
  });
});

describe("pageAddItemExtended", () => {
  it("appends from pd_upper downward, MAXALIGNed", () => {
    const p = newPage(16);
    expect(pageAddItemExtended(p, item(10, 1), 0, 0)).toBe(1);
    expect(pageAddItemExtended(p, item(16, 2), 0, 0)).toBe(2);
    expect(pageAddItemExtended(p, item(5, 3), 0, 0)).toBe(3);
    expect([itemIdOff(p, 1), itemIdLen(p, 1)]).toEqual([8160, 10]);
    expect([itemIdOff(p, 2), itemIdLen(p, 2)]).toEqual([8144, 16]);
    expect([itemIdOff(p, 3), itemIdLen(p, 3)]).toEqual([8136, 5]);
    expect(pdLower(p)).toBe(36);
    expect(pdUpper(p)).toBe(8136);
    expect(pageGetItem(p, 2)).toEqual(item(16, 2));
    expect(pageGetFreeSpace(p)).toBe(8136 - 36 - 4);
    expect(pageGetExactFreeSpace(p)).toBe(8136 - 36);
  });

  it("inserting at an existing offset shifts later line pointers; PAI_OVERWRITE refuses a used one", () => {
    const p = newPage();
    pageAddItemExtended(p, item(8, 1), 0, 0);
    pageAddItemExtended(p, item(8, 2), 0, 0);
    expect(pageAddItemExtended(p, item(8, 9), 2, 0)).toBe(2);
    expect(pageGetItem(p, 1)).toEqual(item(8, 1));
    expect(pageGetItem(p, 2)).toEqual(item(8, 9));
    expect(pageGetItem(p, 3)).toEqual(item(8, 2));
    expect(itemIdOff(p, 2)).toBe(8192 - 24);
    expect(pageAddItemExtended(p, item(8, 5), 2, PAI_OVERWRITE)).toBe(0);
    expect(pageAddItemExtended(p, item(8, 5), 5, 0)).toBe(0); // beyond maxoff + 1
    setItemIdUnused(p, 2);
    expect(pageAddItemExtended(p, item(8, 5), 2, PAI_OVERWRITE)).toBe(2);
    expect(pdLower(p)).toBe(36); // overwriting an existing slot adds no line pointer
  });

  it("reuses the first unused line pointer only when PD_HAS_FREE_LINES says so, and clears a wrong hint", () => {
    const p = newPage();
    for (let i = 1; i <= 3; i++) pageAddItemExtended(p, item(8, i), 0, 0);
    setItemIdUnused(p, 2);
    expect(pageAddItemExtended(p, item(8, 7), 0, 0)).toBe(4);
    setPdFlags(p, PD_HAS_FREE_LINES);
    expect(pageAddItemExtended(p, item(8, 8), 0, 0)).toBe(2);
    expect(pageAddItemExtended(p, item(8, 9), 0, 0)).toBe(5);
    expect(pdFlags(p) & PD_HAS_FREE_LINES).toBe(0);
  });

  it("refuses what does not fit, and heap offsets past MaxHeapTuplesPerPage", () => {
    const p = newPage();
    // 8192 - 24 - 4 = 8164 bytes are free after one line pointer; MAXALIGN(8161) = 8168 is too many.
    expect(pageAddItemExtended(p, item(8161, 1), 0, 0)).toBe(0);
    expect(pageAddItemExtended(p, item(8160, 1), 0, 0)).toBe(1);
    expect([pdLower(p), pdUpper(p)]).toEqual([28, 32]);
    const h = newPage();
    for (let i = 1; i <= 291; i++) expect(pageAddItemExtended(h, item(1, i), 0, PAI_IS_HEAP)).toBe(i);
    expect(pageAddItemExtended(h, item(1, 0), 0, PAI_IS_HEAP)).toBe(0);
    expect(pageAddItemExtended(h, item(1, 0), 0, 0)).toBe(292);
    expect(pageGetHeapFreeSpace(h)).toBe(0);
    expect(pageGetFreeSpace(h)).toBeGreaterThan(0);
  });

  it("refuses corrupted page pointers", () => {
    const p = newPage();
    setPdLower(p, 8000);
    setPdUpper(p, 7000);
    expect(() => pageAddItemExtended(p, item(8, 1), 0, 0)).toThrow(PageLayoutError);
  });
});

describe("index tuple deletion and overwrite", () => {
  it("pageIndexTupleDelete closes the line pointer gap and moves the data below up", () => {
    const p = newPage(16);
    pageAddItemExtended(p, item(10, 1), 0, 0); // 8160
    pageAddItemExtended(p, item(16, 2), 0, 0); // 8144
    pageAddItemExtended(p, item(5, 3), 0, 0); // 8136
    pageIndexTupleDelete(p, 1);
    expect(pageGetMaxOffsetNumber(p)).toBe(2);
    expect(pdUpper(p)).toBe(8152);
    expect([itemIdOff(p, 1), itemIdLen(p, 1)]).toEqual([8160, 16]);
    expect([itemIdOff(p, 2), itemIdLen(p, 2)]).toEqual([8152, 5]);
    expect(pageGetItem(p, 1)).toEqual(item(16, 2));
    expect(pageGetItem(p, 2)).toEqual(item(5, 3));
    pageIndexTupleDelete(p, 2);
    pageIndexTupleDelete(p, 1);
    expect([pdLower(p), pdUpper(p)]).toEqual([24, 8176]);
    expect(() => pageIndexTupleDelete(p, 1)).toThrow(PageLayoutError);
  });

  it("pageIndexTupleDeleteNoCompact leaves an unused line pointer unless it is the last", () => {
    const p = newPage();
    for (let i = 1; i <= 3; i++) pageAddItemExtended(p, item(8 * i, i), 0, 0); // 8184, 8168, 8144
    pageIndexTupleDeleteNoCompact(p, 2);
    expect(pageGetMaxOffsetNumber(p)).toBe(3);
    expect(itemIdFlags(p, 2)).toBe(LP_UNUSED);
    expect([itemIdOff(p, 1), itemIdOff(p, 3), pdUpper(p)]).toEqual([8184, 8160, 8160]);
    expect(pageGetItem(p, 3)).toEqual(item(24, 3));
    pageIndexTupleDeleteNoCompact(p, 3);
    expect(pageGetMaxOffsetNumber(p)).toBe(2);
    expect(pdUpper(p)).toBe(8184);
    expect(pageGetItem(p, 1)).toEqual(item(8, 1));
  });

  it("pageIndexTupleOverwrite keeps lp_flags and shifts the data below by the size change", () => {
    const p = newPage();
    for (let i = 1; i <= 3; i++) pageAddItemExtended(p, item(8, i), 0, 0); // 8184, 8176, 8168
    setItemId(p, 2, itemIdOff(p, 2), LP_DEAD, itemIdLen(p, 2));
    expect(pageIndexTupleOverwrite(p, 2, item(20, 9))).toBe(true); // grows by 16
    expect([itemIdOff(p, 1), itemIdOff(p, 2), itemIdOff(p, 3), pdUpper(p)]).toEqual([8184, 8160, 8152, 8152]);
    expect([itemIdFlags(p, 2), itemIdLen(p, 2)]).toEqual([LP_DEAD, 20]);
    expect(pageGetItem(p, 2)).toEqual(item(20, 9));
    expect(pageGetItem(p, 3)).toEqual(item(8, 3));
    expect(pageIndexTupleOverwrite(p, 2, item(3, 4))).toBe(true); // shrinks by 16
    expect([itemIdOff(p, 2), itemIdOff(p, 3), pdUpper(p)]).toEqual([8176, 8168, 8168]);
    expect(pageGetItem(p, 3)).toEqual(item(8, 3));
    expect(pageIndexTupleOverwrite(p, 1, item(8192, 1))).toBe(false);
    expect(pageGetItem(p, 1)).toEqual(item(8, 1));
  });

  it("pageIndexMultiDelete with two items is two retail deletes, with more it compacts in line-pointer order", () => {
    for (const dels of [
      [2, 4],
      [1, 3, 5],
      [2, 3, 4, 6],
    ]) {
      const p = newPage(8);
      for (let i = 1; i <= 6; i++) pageAddItemExtended(p, item(3 + 5 * i, i), 0, 0);
      const before = alignedItems(p);
      pageIndexMultiDelete(p, dels);
      const kept = [1, 2, 3, 4, 5, 6].filter((i) => !dels.includes(i));
      expect(pageGetMaxOffsetNumber(p)).toBe(kept.length);
      for (let j = 0; j < kept.length; j++) {
        const len = itemIdLen(p, j + 1);
        const off = itemIdOff(p, j + 1);
        expect(p.slice(off, off + maxAlign(len))).toEqual(before.get(kept[j]!));
      }
      expectPackedInLpOrder(p);
    }
  });

  it("pageIndexMultiDelete rejects offsets out of order", () => {
    const p = newPage();
    for (let i = 1; i <= 5; i++) pageAddItemExtended(p, item(8, i), 0, 0);
    expect(() => pageIndexMultiDelete(p, [3, 1, 2])).toThrow(PageLayoutError);
  });
});

describe("heap page compaction", () => {
  it("pageRepairFragmentation: hand-computed layout", () => {
    const p = newPage();
    pageAddItemExtended(p, item(30, 1), 0, PAI_IS_HEAP); // 8160 (32)
    pageAddItemExtended(p, item(40, 2), 0, PAI_IS_HEAP); // 8120 (40)
    pageAddItemExtended(p, item(12, 3), 0, PAI_IS_HEAP); // 8104 (16)
    pageAddItemExtended(p, item(50, 4), 0, PAI_IS_HEAP); // 8048 (56)
    setItemIdRedirect(p, 1, 3); // no storage
    setItemIdUnused(p, 4); // trailing unused
    pageRepairFragmentation(p);
    expect(pageGetMaxOffsetNumber(p)).toBe(3);
    expect([itemIdOff(p, 2), itemIdOff(p, 3), pdUpper(p)]).toEqual([8152, 8136, 8136]);
    expect(pageGetItem(p, 2)).toEqual(item(40, 2));
    expect(pageGetItem(p, 3)).toEqual(item(12, 3));
    expect([itemIdFlags(p, 1), itemIdOff(p, 1)]).toEqual([LP_REDIRECT, 3]);
    expect(pdFlags(p) & PD_HAS_FREE_LINES).toBe(0);
  });

  it("pageRepairFragmentation: random pages keep every item's bytes and come out packed in line-pointer order", () => {
    const r = rng(42);
    for (let round = 0; round < 150; round++) {
      const p = newPage(round % 3 === 0 ? 16 : 0);
      // Fill with items, then shuffle their positions via delete/insert so they are not presorted.
      const n = 1 + Math.floor(r() * 120);
      for (let i = 0; i < n; i++) {
        if (pageAddItemExtended(p, item(1 + Math.floor(r() * 90), round * 1000 + i), 0, PAI_IS_HEAP) === 0) break;
      }
      const nline = pageGetMaxOffsetNumber(p);
      // Reorder storage so line-pointer order is not descending offset: swap some line pointers.
      for (let s = 0; s < nline / 3; s++) {
        const a = 1 + Math.floor(r() * nline);
        const b = 1 + Math.floor(r() * nline);
        const wa = p.slice(24 + 4 * (a - 1), 28 + 4 * (a - 1));
        p.copyWithin(24 + 4 * (a - 1), 24 + 4 * (b - 1), 28 + 4 * (b - 1));
        p.set(wa, 24 + 4 * (b - 1));
      }
      let unusedKept = false;
      let lastUsed = 0;
      for (let i = 1; i <= nline; i++) {
        const x = r();
        if (x < 0.25) setItemIdUnused(p, i);
        else if (x < 0.35) setItemIdDead(p, i);
        else if (x < 0.4) setItemIdRedirect(p, i, 1);
        else if (x < 0.45) setItemId(p, i, itemIdOff(p, i), LP_DEAD, itemIdLen(p, i)); // dead with storage
      }
      for (let i = 1; i <= nline; i++) if (itemIdFlags(p, i) !== LP_UNUSED) lastUsed = i;
      for (let i = 1; i < lastUsed; i++) if (itemIdFlags(p, i) === LP_UNUSED) unusedKept = true;
      const before = alignedItems(p);
      const flagsBefore = Array.from({ length: lastUsed }, (_, i) => itemIdFlags(p, i + 1));
      pageRepairFragmentation(p);
      expect(pageGetMaxOffsetNumber(p)).toBe(lastUsed);
      for (const [off, bytes] of before) {
        const at = itemIdOff(p, off);
        expect(p.slice(at, at + bytes.length), `round ${round} item ${off}`).toEqual(bytes);
      }
      expect(Array.from({ length: lastUsed }, (_, i) => itemIdFlags(p, i + 1))).toEqual(flagsBefore);
      expectPackedInLpOrder(p);
      expect((pdFlags(p) & PD_HAS_FREE_LINES) !== 0).toBe(unusedKept);
    }
  });

  it("pageIndexMultiDelete: random deletions keep the survivors' bytes, packed in their new line-pointer order", () => {
    const r = rng(7);
    for (let round = 0; round < 100; round++) {
      const p = newPage(16);
      const n = 3 + Math.floor(r() * 200);
      for (let i = 0; i < n; i++) if (pageAddItemExtended(p, item(8 + 8 * Math.floor(r() * 6), round * 997 + i), 0, 0) === 0) break;
      const nline = pageGetMaxOffsetNumber(p);
      // Scramble physical order with overwrites of different sizes.
      for (let s = 0; s < nline / 4; s++) pageIndexTupleOverwrite(p, 1 + Math.floor(r() * nline), item(8 + 8 * Math.floor(r() * 6), s));
      const before = alignedItems(p);
      const dels: number[] = [];
      for (let i = 1; i <= nline; i++) if (r() < 0.4) dels.push(i);
      pageIndexMultiDelete(p, dels);
      const kept = Array.from({ length: nline }, (_, i) => i + 1).filter((i) => !dels.includes(i));
      expect(pageGetMaxOffsetNumber(p)).toBe(kept.length);
      kept.forEach((old, j) => {
        const at = itemIdOff(p, j + 1);
        expect(p.slice(at, at + maxAlign(itemIdLen(p, j + 1)))).toEqual(before.get(old));
      });
      if (dels.length > 2) expectPackedInLpOrder(p);
    }
  });

  it("word and byte code paths give the same bytes: random operations on a 4-aligned page and on an unaligned one", () => {
    const r = rng(99);
    const backing = new Uint8Array(2 * BLCKSZ + 8);
    for (let round = 0; round < 60; round++) {
      const heap = round % 2 === 0;
      const a = new Uint8Array(BLCKSZ);
      const u = backing.subarray(1 + (round % 3), 1 + (round % 3) + BLCKSZ); // byteOffset 1..3: no word view
      pageInit(a, heap ? 0 : 16);
      for (let op = 0; op < 400; op++) {
        const nline = pageGetMaxOffsetNumber(a);
        const x = r();
        const off = 1 + Math.floor(r() * Math.max(nline, 1));
        const len = heap ? 1 + Math.floor(r() * 120) : 8 + 8 * Math.floor(r() * 6);
        const seed = round * 10_000 + op;
        if (op === 0) u.set(a);
        const apply = (p: Uint8Array): void => {
          if (x < 0.55 || nline < 3) {
            pageAddItemExtended(p, item(len, seed), heap ? 0 : off, heap ? PAI_IS_HEAP : 0);
          } else if (heap) {
            if (x < 0.8) setItemIdUnused(p, off);
            else if (x < 0.9) setItemIdDead(p, off);
            pageRepairFragmentation(p);
          } else if (x < 0.7) {
            pageIndexTupleDelete(p, off);
          } else if (x < 0.8) {
            pageIndexTupleOverwrite(p, off, item(len, seed));
          } else if (x < 0.9) {
            pageIndexTupleDeleteNoCompact(p, off);
          } else {
            const dels: number[] = [];
            for (let i = 1; i <= nline; i++) if ((i * 7 + seed) % 3 === 0 && itemIdLen(p, i) !== 0) dels.push(i);
            if (dels.every((d) => itemIdLen(p, d) !== 0)) pageIndexMultiDelete(p, dels);
          }
        };
        // NoCompact leaves unused pointers, which the index deletions refuse: only on pages without them.
        const hasUnused = Array.from({ length: nline }, (_, i) => itemIdLen(a, i + 1) === 0).some(Boolean);
        if (!heap && hasUnused && x >= 0.55 && nline >= 3) continue;
        apply(a);
        apply(u);
        // Buffer.compare: toEqual on 8 KiB arrays is far too slow for 24 000 comparisons.
        expect(Buffer.compare(u, a), `round ${round} op ${op}`).toBe(0);
      }
    }
  });

  it("pageTruncateLinePointerArray cuts trailing unused line pointers but keeps the first", () => {
    const p = newPage();
    for (let i = 1; i <= 5; i++) pageAddItemExtended(p, item(8, i), 0, PAI_IS_HEAP);
    setItemIdUnused(p, 2);
    setItemIdUnused(p, 4);
    setItemIdUnused(p, 5);
    pageTruncateLinePointerArray(p);
    expect(pageGetMaxOffsetNumber(p)).toBe(3);
    expect(pdFlags(p) & PD_HAS_FREE_LINES).toBe(PD_HAS_FREE_LINES);
    setItemIdUnused(p, 1);
    setItemIdUnused(p, 3);
    pageTruncateLinePointerArray(p);
    expect(pageGetMaxOffsetNumber(p)).toBe(1);
    expect(pdFlags(p) & PD_HAS_FREE_LINES).toBe(PD_HAS_FREE_LINES);
    const q = newPage();
    for (let i = 1; i <= 3; i++) pageAddItemExtended(q, item(8, i), 0, PAI_IS_HEAP);
    setPdFlags(q, PD_HAS_FREE_LINES);
    setItemIdUnused(q, 3);
    pageTruncateLinePointerArray(q);
    expect(pageGetMaxOffsetNumber(q)).toBe(2);
    expect(pdFlags(q) & PD_HAS_FREE_LINES).toBe(0);
  });
});

describe("bufmask", () => {
  it("masks LSN/checksum, hint bits, the hole, lp_flags and content exactly where bufmask.c does", () => {
    const p = newPage(8);
    pageAddItemExtended(p, item(8, 1), 0, 0);
    pageAddItemExtended(p, item(8, 2), 0, 0);
    setItemId(p, 2, itemIdOff(p, 2), LP_DEAD, 8);
    setPageLsn(p, asLsn(0x1_2345_6789));
    p[8] = 0x12;
    p[9] = 0x34;
    setPdFlags(p, PD_HAS_FREE_LINES | PD_PAGE_FULL | PD_ALL_VISIBLE);
    setPdPruneXid(p, 777);
    p.fill(0xee, pdLower(p), pdUpper(p));
    const q = p.slice();
    maskPageLsnAndChecksum(q);
    expect(q.subarray(0, 10).every((b) => b === 0)).toBe(true);
    expect(q.subarray(10)).toEqual(p.subarray(10));
    maskPageHintBits(q);
    expect(pdFlags(q)).toBe(0);
    expect(pdPruneXid(q)).toBe(0);
    maskUnusedSpace(q);
    expect(q.subarray(pdLower(q), pdUpper(q)).every((b) => b === 0)).toBe(true);
    expect(q.subarray(pdUpper(q))).toEqual(p.subarray(pdUpper(p)));
    maskLpFlags(q);
    expect([itemIdFlags(q, 1), itemIdOff(q, 1), itemIdLen(q, 1)]).toEqual([LP_UNUSED, itemIdOff(p, 1), 8]);
    expect([itemIdFlags(q, 2), itemIdOff(q, 2), itemIdLen(q, 2)]).toEqual([LP_UNUSED, itemIdOff(p, 2), 8]);
    maskPageContent(q);
    expect(q.subarray(12).every((b, i) => b === 0 || i >= 4)).toBe(true);
    expect(q.subarray(24).every((b) => b === 0)).toBe(true);
    expect(pdSpecial(q)).toBe(pdSpecial(p));
  });

  it("maskUnusedSpace refuses impossible pointers", () => {
    const p = newPage();
    setPdUpper(p, 10);
    expect(() => maskUnusedSpace(p)).toThrow(PageLayoutError);
  });
});

describe("registry", () => {
  it("lists the page-touching rmgrs without native redo; XLOG is redone natively", () => {
    const missing = rmgrsWithoutNativeRedo();
    for (const name of missing) {
      expect(["heap", "heap2", "btree", "hash", "gin", "gist", "sequence", "spgist", "brin", "generic"]).toContain(name);
    }
    expect(rmgrRedo(RM_XLOG_ID)?.name).toBe("xlog");
  });
});
