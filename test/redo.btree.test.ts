/**
 * Native redo of the Btree rmgr.
 *  - Decoders on malformed input: every short or inconsistent record is a CorruptionError
 *    naming the LSN, "Btree/<info>" and the info byte.
 *  - Redo on hand-built pages: posting list split (INSERT_POST), VACUUM's posting list
 *    update, DEDUP along logged intervals, and a record that contradicts its page.
 *  - The corpus: real PostgreSQL 15 workloads through verifyRedo (PostgreSQL's own
 *    wal_consistency_checking images are the oracle); zero mismatches and a floor of checked
 *    blocks per info code.
 */
import { describe, expect, it } from "vitest";
import { BLCKSZ, pageAddItemExtended, pageGetItem, pageGetMaxOffsetNumber, pageLsn, pdLower, pdUpper } from "../src/pg/redo/bufpage.js";
import { btreeRmgrRedo } from "../src/pg/redo/btree.js";
import {
  BTP_DELETED,
  BTP_HALF_DEAD,
  BTP_HAS_FULLXID,
  BTP_HAS_GARBAGE,
  BTP_LEAF,
  BTP_META,
  BTREE_MAGIC,
  btPageInit,
  btpoFlags,
  btpoLevel,
  btpoNext,
  btpoPrev,
  btreeTupleGetNPosting,
  btreeTupleIsPosting,
  itupSize,
  itupTidBlock,
  setBtOpaque,
} from "../src/pg/redo/btree_page.js";
import { rmgrRedo } from "../src/pg/redo/redo_table.js";
import type { DecodedBlock, DecodedRecord } from "../src/pg/wal/record.js";
import {
  decodeBtreeDedup,
  decodeBtreeDedupIntervals,
  decodeBtreeDelete,
  decodeBtreeDeleteData,
  decodeBtreeInsert,
  decodeBtreeInsertData,
  decodeBtreeMarkPageHalfdead,
  decodeBtreeMetadata,
  decodeBtreeNewroot,
  decodeBtreeRecord,
  decodeBtreeReusePage,
  decodeBtreeSplit,
  decodeBtreeSplitLeftData,
  decodeBtreeUnlinkPage,
  decodeBtreeVacuum,
  decodeRestoreTuples,
  XLOG_BTREE_DEDUP,
  XLOG_BTREE_DELETE,
  XLOG_BTREE_INSERT_LEAF,
  XLOG_BTREE_INSERT_POST,
  XLOG_BTREE_MARK_PAGE_HALFDEAD,
  XLOG_BTREE_META_CLEANUP,
  XLOG_BTREE_NEWROOT,
  XLOG_BTREE_REUSE_PAGE,
  XLOG_BTREE_SPLIT_L,
  XLOG_BTREE_SPLIT_R,
  XLOG_BTREE_UNLINK_PAGE,
  XLOG_BTREE_UNLINK_PAGE_META,
  XLOG_BTREE_VACUUM,
} from "../src/pg/wal/records/btree.js";
import { describeRecordKind, RM_BTREE_ID } from "../src/pg/wal/rmgr_ids.js";
import { havePg15, type PgInstance } from "./support/postgres.js";
import { corruptionOf } from "./support/redo_malformed.js";
import { formatReport, type VerifyReport, verifyRedo } from "./support/redo_verify.js";
import { asLsn } from "../src/types/lsn.js";

const REC_LSN = 0x1_0000_2000;
const REC_END_LSN = 0x1_0000_2040;

interface BlockSpec {
  id: number;
  blkno: number;
  data?: Uint8Array;
}

function mkRec(info: number, main: Uint8Array, blocks: BlockSpec[] = []): DecodedRecord {
  const rnode = { spcNode: 1663, dbNode: 5, relNode: 16384 };
  const decoded: DecodedBlock[] = blocks.map((b) => ({
    id: b.id,
    rnode,
    forkNum: 0,
    blkno: b.blkno,
    flags: 0,
    hasImage: false,
    applyImage: false,
    willInit: false,
    hasData: (b.data?.length ?? 0) > 0,
    data: b.data ?? new Uint8Array(0),
  }));
  return {
    lsn: asLsn(REC_LSN),
    endLsn: asLsn(REC_END_LSN),
    xid: 0,
    prev: asLsn(0),
    info,
    rmid: RM_BTREE_ID,
    totLen: 0,
    blocks: decoded,
    mainData: main,
    record: new Uint8Array(0),
  };
}

/** Little-endian bytes from a list of [value, width] pairs. */
function le(...fields: [number, 1 | 2 | 4][]): Uint8Array {
  const out: number[] = [];
  for (const [v, w] of fields) for (let i = 0; i < w; i++) out.push((v >>> (8 * i)) & 0xff);
  return Uint8Array.from(out);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** An int4-keyed leaf tuple (IndexTupleData + int4 + pad = 16 bytes) pointing at heap (blk, off). */
function plainTuple(key: number, blk: number, off: number): Uint8Array {
  return concat(le([blk >>> 16, 2], [blk & 0xffff, 2], [off, 2], [16, 2], [key, 4], [0, 4]));
}

/** A posting tuple with `key` and heap TIDs (1, offs[i]): key part 16 bytes, then the TID array. */
function postingTuple(key: number, offs: number[]): Uint8Array {
  const size = (16 + 6 * offs.length + 7) & ~7;
  const t = new Uint8Array(size);
  t.set(le([0, 2], [16, 2], [offs.length | 0x2000, 2], [size | 0x2000, 2], [key, 4]), 0);
  for (let i = 0; i < offs.length; i++) t.set(le([0, 2], [1, 2], [offs[i]!, 2]), 16 + 6 * i);
  return t;
}

/** A rightmost leaf holding `tuples` at offsets 1.. (no high key). */
function leafPage(tuples: Uint8Array[]): Uint8Array {
  const page = new Uint8Array(BLCKSZ);
  btPageInit(page);
  setBtOpaque(page, 0, 0, 0, BTP_LEAF, 0);
  for (let i = 0; i < tuples.length; i++) expect(pageAddItemExtended(page, tuples[i]!, i + 1, 0)).toBe(i + 1);
  return page;
}

/** Heap TID offsets of the tuple at `off` (plain or posting), heap block 1 assumed for postings. */
function tidOffsets(page: Uint8Array, off: number): number[] {
  const t = pageGetItem(page, off);
  if (!btreeTupleIsPosting(t, 0)) return [t[4]! | (t[5]! << 8)];
  const n = btreeTupleGetNPosting(t, 0);
  const start = itupTidBlock(t, 0);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(t[start + 6 * i + 4]! | (t[start + 6 * i + 5]! << 8));
  return out;
}

function expectCorrupt(fn: () => unknown, info: string): void {
  const msg = corruptionOf(fn).message;
  expect(msg).toContain("1/2000");
  expect(msg).toContain(`Btree/${info}`);
}

describe("btree record decoders on malformed input", () => {
  it("main data of every info code must have its exact size", () => {
    expectCorrupt(() => decodeBtreeInsert(mkRec(XLOG_BTREE_INSERT_LEAF, new Uint8Array(1))), "INSERT_LEAF");
    expectCorrupt(() => decodeBtreeSplit(mkRec(XLOG_BTREE_SPLIT_L, new Uint8Array(8))), "SPLIT_L");
    expectCorrupt(() => decodeBtreeDedup(mkRec(XLOG_BTREE_DEDUP, new Uint8Array(0))), "DEDUP");
    expectCorrupt(() => decodeBtreeVacuum(mkRec(XLOG_BTREE_VACUUM, new Uint8Array(3))), "VACUUM");
    expectCorrupt(() => decodeBtreeDelete(mkRec(XLOG_BTREE_DELETE, new Uint8Array(4))), "DELETE");
    expectCorrupt(() => decodeBtreeMarkPageHalfdead(mkRec(XLOG_BTREE_MARK_PAGE_HALFDEAD, new Uint8Array(16))), "MARK_PAGE_HALFDEAD");
    expectCorrupt(() => decodeBtreeUnlinkPage(mkRec(XLOG_BTREE_UNLINK_PAGE, new Uint8Array(32))), "UNLINK_PAGE");
    expectCorrupt(() => decodeBtreeNewroot(mkRec(XLOG_BTREE_NEWROOT, new Uint8Array(4))), "NEWROOT");
    expectCorrupt(() => decodeBtreeReusePage(mkRec(XLOG_BTREE_REUSE_PAGE, new Uint8Array(16))), "REUSE_PAGE");
    expectCorrupt(() => decodeBtreeRecord(mkRec(XLOG_BTREE_META_CLEANUP, new Uint8Array(2))), "META_CLEANUP");
    expectCorrupt(() => decodeBtreeRecord(mkRec(0xf0, new Uint8Array(0))), "UNKNOWN (0xf0)");
  });

  it("decodes well-formed main data field by field", () => {
    const unlink = decodeBtreeUnlinkPage(
      mkRec(XLOG_BTREE_UNLINK_PAGE_META, le([3, 4], [5, 4], [1, 4], [0, 4], [1234, 4], [2, 4], [7, 4], [8, 4], [9, 4])),
    );
    expect(unlink).toEqual({
      leftsib: 3,
      rightsib: 5,
      level: 1,
      safexidXid: 1234,
      safexidEpoch: 2,
      leafleftsib: 7,
      leafrightsib: 8,
      leaftopparent: 9,
    });
    const reuse = decodeBtreeReusePage(mkRec(XLOG_BTREE_REUSE_PAGE, le([1663, 4], [5, 4], [16384, 4], [42, 4], [999, 4], [1, 4])));
    expect(reuse).toEqual({
      spcNode: 1663,
      dbNode: 5,
      relNode: 16384,
      block: 42,
      latestRemovedFullXidXid: 999,
      latestRemovedFullXidEpoch: 1,
    });
    const half = decodeBtreeMarkPageHalfdead(
      mkRec(XLOG_BTREE_MARK_PAGE_HALFDEAD, le([4, 2], [0, 2], [10, 4], [9, 4], [11, 4], [0xffffffff, 4])),
    );
    expect(half).toEqual({ poffset: 4, leafblk: 10, leftblk: 9, rightblk: 11, topparent: 0xffffffff });
    const split = decodeBtreeSplit(mkRec(XLOG_BTREE_SPLIT_R, le([1, 4], [100, 2], [150, 2], [0, 2])));
    expect(split).toEqual({ level: 1, firstrightoff: 100, newitemoff: 150, postingoff: 0 });
    const del = decodeBtreeDelete(mkRec(XLOG_BTREE_DELETE, le([777, 4], [2, 2], [1, 2])));
    expect(del).toEqual({ latestRemovedXid: 777, ndeleted: 2, nupdated: 1 });
  });

  it("block data lengths are checked", () => {
    const meta = mkRec(XLOG_BTREE_META_CLEANUP, new Uint8Array(0), [{ id: 0, blkno: 0, data: new Uint8Array(25) }]);
    expectCorrupt(() => decodeBtreeMetadata(meta, 0), "META_CLEANUP");
    expectCorrupt(() => decodeBtreeMetadata(mkRec(XLOG_BTREE_META_CLEANUP, new Uint8Array(0)), 0), "META_CLEANUP");

    // Insert: the tuple's IndexTupleSize must be the data length; INSERT_POST needs postingoff > 0.
    const tuple = plainTuple(1, 0, 1);
    const longer = mkRec(XLOG_BTREE_INSERT_LEAF, le([1, 2]), [{ id: 0, blkno: 1, data: concat(tuple, new Uint8Array(8)) }]);
    expectCorrupt(() => decodeBtreeInsertData(longer, false), "INSERT_LEAF");
    const short = mkRec(XLOG_BTREE_INSERT_LEAF, le([1, 2]), [{ id: 0, blkno: 1, data: tuple.subarray(0, 7) }]);
    expectCorrupt(() => decodeBtreeInsertData(short, false), "INSERT_LEAF");
    const post0 = mkRec(XLOG_BTREE_INSERT_POST, le([1, 2]), [{ id: 0, blkno: 1, data: concat(le([0, 2]), tuple) }]);
    expectCorrupt(() => decodeBtreeInsertData(post0, true), "INSERT_POST");

    // Split left data: new item then high key, nothing more, nothing less.
    const splitMain = le([0, 4], [3, 2], [2, 2], [0, 2]);
    const extra = mkRec(XLOG_BTREE_SPLIT_L, splitMain, [{ id: 0, blkno: 1, data: concat(tuple, tuple, new Uint8Array(8)) }]);
    expectCorrupt(() => decodeBtreeSplitLeftData(extra, decodeBtreeSplit(extra), true), "SPLIT_L");
    const missing = mkRec(XLOG_BTREE_SPLIT_L, splitMain, [{ id: 0, blkno: 1, data: tuple }]);
    expectCorrupt(() => decodeBtreeSplitLeftData(missing, decodeBtreeSplit(missing), true), "SPLIT_L");
    const ok = mkRec(XLOG_BTREE_SPLIT_L, splitMain, [{ id: 0, blkno: 1, data: concat(tuple, plainTuple(2, 0, 2)) }]);
    const left = decodeBtreeSplitLeftData(ok, decodeBtreeSplit(ok), true);
    expect(left.newitem?.length).toBe(16);
    expect(left.leftHikey.length).toBe(16);

    // Right page tuples: a zero-size tuple or one passing the data end.
    const starts = new Uint16Array(680);
    const zero = mkRec(XLOG_BTREE_SPLIT_R, splitMain, [{ id: 1, blkno: 2, data: new Uint8Array(16) }]);
    expectCorrupt(() => decodeRestoreTuples(zero, 1, starts), "SPLIT_R");
    const cut = mkRec(XLOG_BTREE_SPLIT_R, splitMain, [{ id: 1, blkno: 2, data: concat(tuple, tuple.subarray(0, 12)) }]);
    expectCorrupt(() => decodeRestoreTuples(cut, 1, starts), "SPLIT_R");
    const two = mkRec(XLOG_BTREE_SPLIT_R, splitMain, [{ id: 1, blkno: 2, data: concat(tuple, tuple) }]);
    expect(decodeRestoreTuples(two, 1, starts).count).toBe(2);

    // Dedup intervals: exactly nintervals × 4 bytes.
    const dedup = mkRec(XLOG_BTREE_DEDUP, le([2, 2]), [{ id: 0, blkno: 1, data: le([1, 2], [3, 2]) }]);
    expectCorrupt(() => decodeBtreeDedupIntervals(dedup, decodeBtreeDedup(dedup)), "DEDUP");

    // Vacuum: offsets, then xl_btree_update entries that exactly fill the data.
    const vac = (data: Uint8Array, nd: number, nu: number) => mkRec(XLOG_BTREE_VACUUM, le([nd, 2], [nu, 2]), [{ id: 0, blkno: 1, data }]);
    expectCorrupt(() => decodeBtreeDeleteData(vac(le([1, 2]), 2, 0), { ndeleted: 2, nupdated: 0 }), "VACUUM");
    expectCorrupt(() => decodeBtreeDeleteData(vac(le([1, 2], [0, 2]), 0, 1), { ndeleted: 0, nupdated: 1 }), "VACUUM");
    expectCorrupt(() => decodeBtreeDeleteData(vac(le([1, 2], [2, 2], [0, 2]), 0, 1), { ndeleted: 0, nupdated: 1 }), "VACUUM");
    expectCorrupt(() => decodeBtreeDeleteData(vac(le([1, 2], [1, 2], [0, 2], [9, 2]), 0, 1), { ndeleted: 0, nupdated: 1 }), "VACUUM");
    const good = decodeBtreeDeleteData(vac(le([3, 2], [1, 2], [2, 2], [0, 2], [2, 2]), 1, 1), { ndeleted: 1, nupdated: 1 });
    expect([good.deleted.length, good.updatedOffsets.length, good.updates.length]).toEqual([2, 2, 6]);
  });
});

describe("btree redo on hand-built pages", () => {
  it("is the registered RmgrRedo for rmgr 11, named btree", () => {
    expect(rmgrRedo(RM_BTREE_ID)).toBe(btreeRmgrRedo);
    expect(btreeRmgrRedo.name).toBe("btree");
  });

  it("INSERT_POST splits the posting list and inserts the final new item after it", () => {
    const page = leafPage([postingTuple(7, [1, 3, 5]), plainTuple(9, 1, 9)]);
    const orignewitem = plainTuple(7, 1, 2);
    const rec = mkRec(XLOG_BTREE_INSERT_POST, le([2, 2]), [{ id: 0, blkno: 1, data: concat(le([1, 2]), orignewitem) }]);
    btreeRmgrRedo.redo(rec, 0, page);
    expect(pageGetMaxOffsetNumber(page)).toBe(3);
    expect(tidOffsets(page, 1)).toEqual([1, 2, 3]);
    expect(tidOffsets(page, 2)).toEqual([5]);
    expect(tidOffsets(page, 3)).toEqual([9]);
    expect(pageLsn(page)).toBe(REC_END_LSN);
    // A postingoff at the list's end can't be a split point (PostgreSQL errors out).
    const page2 = leafPage([postingTuple(7, [1, 3, 5])]);
    const bad = mkRec(XLOG_BTREE_INSERT_POST, le([2, 2]), [{ id: 0, blkno: 1, data: concat(le([3, 2]), orignewitem) }]);
    expect(() => btreeRmgrRedo.redo(bad, 0, page2)).toThrow(/cannot be split at offset 3/);
  });

  it("VACUUM updates posting lists before deleting, and clears BTP_HAS_GARBAGE", () => {
    const page = leafPage([postingTuple(7, [1, 2, 3]), plainTuple(8, 1, 8), postingTuple(9, [4, 5, 6, 7])]);
    setBtOpaque(page, 0, 0, 0, BTP_LEAF | BTP_HAS_GARBAGE, 0);
    // delete offset 2; update offset 1 (drop indexes 0 and 2) and offset 3 (drop index 1)
    const data = concat(le([2, 2]), le([1, 2], [3, 2]), le([2, 2], [0, 2], [2, 2]), le([1, 2], [1, 2]));
    const rec = mkRec(XLOG_BTREE_VACUUM, le([1, 2], [2, 2]), [{ id: 0, blkno: 1, data }]);
    btreeRmgrRedo.redo(rec, 0, page);
    expect(pageGetMaxOffsetNumber(page)).toBe(2);
    const first = pageGetItem(page, 1);
    expect(btreeTupleIsPosting(first, 0)).toBe(false);
    expect(itupSize(first, 0)).toBe(16);
    expect(tidOffsets(page, 1)).toEqual([2]);
    expect(tidOffsets(page, 2)).toEqual([4, 6, 7]);
    expect(btpoFlags(page) & BTP_HAS_GARBAGE).toBe(0);
  });

  it("DEDUP merges exactly the logged intervals, and refuses a record that disagrees with the page", () => {
    const tuples = [plainTuple(7, 1, 1), plainTuple(7, 1, 2), plainTuple(7, 1, 3), plainTuple(8, 1, 4), plainTuple(8, 1, 5)];
    const page = leafPage(tuples);
    const rec = mkRec(XLOG_BTREE_DEDUP, le([2, 2]), [{ id: 0, blkno: 1, data: le([1, 2], [3, 2], [4, 2], [2, 2]) }]);
    btreeRmgrRedo.redo(rec, 0, page);
    expect(pageGetMaxOffsetNumber(page)).toBe(2);
    expect(tidOffsets(page, 1)).toEqual([1, 2, 3]);
    expect(tidOffsets(page, 2)).toEqual([4, 5]);
    // Logged: one interval of 9 items at offset 1, more than the page has.
    const page2 = leafPage(tuples);
    const bad = mkRec(XLOG_BTREE_DEDUP, le([1, 2]), [{ id: 0, blkno: 1, data: le([1, 2], [9, 2]) }]);
    expectCorrupt(() => btreeRmgrRedo.redo(bad, 0, page2), "DEDUP");
  });

  it("UNLINK_PAGE_META rebuilds the target deleted, the leaf half-dead and the metapage", () => {
    const main = le([3, 4], [5, 4], [1, 4], [0, 4], [1234, 4], [2, 4], [7, 4], [8, 4], [9, 4]);
    const md = concat(le([4, 4], [5, 4], [1, 4], [5, 4], [1, 4], [3, 4]), le([1, 1], [0, 1], [0, 2]));
    const rec = mkRec(XLOG_BTREE_UNLINK_PAGE_META, main, [
      { id: 0, blkno: 4 },
      { id: 1, blkno: 3 },
      { id: 2, blkno: 5 },
      { id: 3, blkno: 10 },
      { id: 4, blkno: 0, data: md },
    ]);
    const target = new Uint8Array(BLCKSZ);
    btreeRmgrRedo.redo(rec, 0, target);
    expect(btpoFlags(target)).toBe(BTP_DELETED | BTP_HAS_FULLXID);
    expect([btpoPrev(target), btpoNext(target), btpoLevel(target), pdLower(target), pdUpper(target)]).toEqual([3, 5, 1, 32, BLCKSZ - 16]);
    expect([...target.subarray(24, 32)]).toEqual([0xd2, 0x04, 0, 0, 2, 0, 0, 0]);
    const leaf = new Uint8Array(BLCKSZ);
    btreeRmgrRedo.redo(rec, 3, leaf);
    expect(btpoFlags(leaf)).toBe(BTP_HALF_DEAD | BTP_LEAF);
    expect([btpoPrev(leaf), btpoNext(leaf)]).toEqual([7, 8]);
    expect(itupTidBlock(pageGetItem(leaf, 1), 0)).toBe(9);
    const meta = new Uint8Array(BLCKSZ);
    btreeRmgrRedo.redo(rec, 4, meta);
    expect(btpoFlags(meta)).toBe(BTP_META);
    expect(pdLower(meta)).toBe(72);
    expect(meta[24]! | (meta[25]! << 8) | (meta[26]! << 16)).toBe(BTREE_MAGIC);
    expect(pageLsn(meta)).toBe(REC_END_LSN);
    // A block id UNLINK_PAGE doesn't use, and any block of REUSE_PAGE (it has none).
    expectCorrupt(() => btreeRmgrRedo.redo(rec, 5, new Uint8Array(BLCKSZ)), "UNLINK_PAGE_META");
    const reuse = mkRec(XLOG_BTREE_REUSE_PAGE, new Uint8Array(24));
    expectCorrupt(() => btreeRmgrRedo.redo(reuse, 0, new Uint8Array(BLCKSZ)), "REUSE_PAGE");
  });

  it("leaves a block untouched when its LSN is already past the record (BLK_DONE)", () => {
    const page = leafPage([plainTuple(1, 1, 1)]);
    page.set(le([1, 4], [0x3000, 4]), 0); // pd_lsn 1/3000 > end LSN 1/2040
    const before = page.slice();
    const rec = mkRec(XLOG_BTREE_INSERT_LEAF, le([2, 2]), [{ id: 0, blkno: 1, data: plainTuple(2, 1, 2) }]);
    btreeRmgrRedo.redo(rec, 0, page);
    expect(page).toEqual(before);
  });
});

// ---- the corpus: real PostgreSQL 15, its own images as the oracle ----------------------

/** Whether block `id` of `rec` was redone and compared (a check image, no image to apply). */
function checkedBlock(rec: DecodedRecord, id: number): boolean {
  const b = rec.blocks.find((x) => x.id === id);
  return b?.hasImage === true && !b.applyImage;
}

/**
 * Every btree record in the WAL goes through decodeBtreeRecord; the cases that only some
 * records of an info code exercise are counted when their block was actually checked.
 */
function btreeFeatureCounter(): { counts: Map<string, number>; onRecord: (rec: DecodedRecord) => void } {
  const counts = new Map<string, number>();
  const bump = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  const onRecord = (rec: DecodedRecord): void => {
    if (rec.rmid !== RM_BTREE_ID) return;
    const r = decodeBtreeRecord(rec);
    bump(describeRecordKind(rec.rmid, rec.info));
    switch (r.info) {
      case XLOG_BTREE_SPLIT_L:
      case XLOG_BTREE_SPLIT_R:
        if (r.split.level > 0 && checkedBlock(rec, 0) && checkedBlock(rec, 3)) bump("internal split");
        if (r.split.postingoff !== 0 && checkedBlock(rec, 0)) bump("split with posting list split");
        break;
      case XLOG_BTREE_INSERT_POST:
        if (checkedBlock(rec, 0)) bump("posting list split");
        break;
      case XLOG_BTREE_NEWROOT:
        if (r.newroot.level > 0 && checkedBlock(rec, 0)) bump("new root above an old root");
        break;
      case XLOG_BTREE_UNLINK_PAGE:
      case XLOG_BTREE_UNLINK_PAGE_META:
        if (r.unlink.level > 0 && checkedBlock(rec, 3)) bump("internal page unlinked");
        break;
      case XLOG_BTREE_VACUUM:
        if (r.vacuum.nupdated > 0 && checkedBlock(rec, 0)) bump("vacuum updates posting lists");
        break;
      case XLOG_BTREE_DELETE:
        if (r.delete.nupdated > 0 && checkedBlock(rec, 0)) bump("delete updates posting lists");
        break;
      default:
        break;
    }
  };
  return { counts, onRecord };
}

function expectFeatures(counts: Map<string, number>, features: string[]): void {
  if (process.env.REDO_REPORT) console.log(JSON.stringify([...counts].sort()));
  for (const f of features) expect(counts.get(f) ?? 0, `${f}: ${JSON.stringify([...counts])}`).toBeGreaterThan(0);
}

/** Zero mismatches, nothing without a base, and at least `floors[kind]` blocks checked per info code. */
function expectVerified(report: VerifyReport, floors: Record<string, number>): void {
  const msg = formatReport(report);
  if (process.env.REDO_REPORT) console.log(msg);
  expect(report.mismatches, msg).toEqual([]);
  expect(report.noBase, msg).toBe(0);
  for (const [kind, floor] of Object.entries(floors)) {
    expect(report.checked.get(`Btree/${kind}`) ?? 0, `${kind}\n${msg}`).toBeGreaterThanOrEqual(floor);
  }
}

// Only btree records carry consistency-check images: the WAL stays small (heap records keep
// their ordinary full-page writes, which seed heap pages we don't check).
const BTREE_ONLY = { wal_consistency_checking: "btree" };

async function pgbench(pg: PgInstance, args: string[]): Promise<void> {
  await pg.runChecked("pgbench", ["-h", pg.host, "-p", String(pg.port), "-U", pg.user, ...args, "postgres"]);
}

/** Keys of ~400 bytes (below TOAST_INDEX_TARGET, so never compressed): ~19 per page, three levels from ~300 rows. */
const WIDE_KEY_FN = `CREATE FUNCTION wkey(i int) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lpad(i::text, 8, '0') || repeat('w', 392) $$;`;

describe.skipIf(!havePg15())("btree redo against PostgreSQL 15's own images", () => {
  it("pgbench -i and a bounded pgbench run", async () => {
    const seen = btreeFeatureCounter();
    const report = await verifyRedo({
      conf: BTREE_ONLY,
      rmgrs: [RM_BTREE_ID],
      onRecord: seen.onRecord,
      workload: async (pg) => {
        await pgbench(pg, ["-i", "-s", "1", "-q"]);
        await pgbench(pg, ["-n", "-t", "400", "-c", "2", "-j", "1"]);
      },
    });
    expectVerified(report, { INSERT_LEAF: 300 });
  });

  it("CREATE INDEX, ascending/descending/random inserts (splits, new roots, three levels), page deletion and reuse, meta cleanup", async () => {
    const levels: number[] = [];
    const seen = btreeFeatureCounter();
    const report = await verifyRedo({
      conf: BTREE_ONLY,
      rmgrs: [RM_BTREE_ID],
      onRecord: seen.onRecord,
      setup: async (pg) => {
        await pg.psql(`${WIDE_KEY_FN}
          CREATE TABLE wide_asc (k text); CREATE TABLE wide_desc (k text); CREATE TABLE wide_rand (k text);
          CREATE TABLE narrow (k int, v int); CREATE TABLE built (k int, w text);
          INSERT INTO built SELECT i, wkey(i) FROM generate_series(1, 2000) i;`);
      },
      workload: async (pg) => {
        await pg.psql(`
          CREATE INDEX ON wide_asc (k); CREATE INDEX ON wide_desc (k); CREATE INDEX ON wide_rand (k);
          CREATE INDEX ON narrow (k);
          CREATE INDEX built_k ON built (k); CREATE INDEX built_w ON built (w);
          INSERT INTO wide_asc SELECT wkey(i) FROM generate_series(1, 1200) i;
          INSERT INTO wide_desc SELECT wkey(i) FROM generate_series(1200, 1, -1) i;
          SELECT setseed(0.25);
          INSERT INTO wide_rand SELECT wkey(i) FROM (SELECT i FROM generate_series(1, 1500) i ORDER BY random()) s;
          INSERT INTO narrow SELECT i, i FROM (SELECT i FROM generate_series(1, 4000) i ORDER BY random()) s;
          INSERT INTO built SELECT i, wkey(i) FROM generate_series(2001, 2600) i;
          CREATE EXTENSION pageinspect;
        `);
        for (const idx of ["wide_asc_k_idx", "wide_desc_k_idx", "wide_rand_k_idx"]) {
          levels.push(Number(await pg.psql(`SELECT level FROM bt_metap('${idx}')`)));
        }
        // Page deletion: empty most of the ascending wide tree (whole subtrees: internal
        // pages go too) and most of the narrow one (its fast root moves down to the last leaf).
        await pg.psql(`
          DELETE FROM wide_asc WHERE k < wkey(1000);
          DELETE FROM narrow WHERE k <= 3950;
          VACUUM wide_asc; VACUUM narrow;
        `);
        // Let the deleted pages' safexid fall behind every snapshot, then recycle them.
        for (let i = 0; i < 3; i++) await pg.psql("CREATE TEMP TABLE xid_burn (x int); DROP TABLE xid_burn;");
        await pg.psql(`
          VACUUM wide_asc; VACUUM narrow;
          INSERT INTO narrow SELECT i, i FROM generate_series(4001, 6000) i;
          INSERT INTO wide_asc SELECT wkey(i) FROM generate_series(1, 600) i;
        `);
      },
    });
    const floors = {
      INSERT_LEAF: 5000,
      INSERT_UPPER: 100,
      SPLIT_L: 50,
      SPLIT_R: 50,
      NEWROOT: 5,
      VACUUM: 10,
      MARK_PAGE_HALFDEAD: 10,
      UNLINK_PAGE: 10,
      UNLINK_PAGE_META: 1,
      INSERT_META: 1,
      META_CLEANUP: 2,
    };
    expectVerified(report, floors);
    expect(
      levels.every((l) => l >= 2),
      `root levels ${levels}`,
    ).toBe(true);
    expectFeatures(seen.counts, ["Btree/REUSE_PAGE", "internal split", "new root above an old root", "internal page unlinked"]);
  });

  it("duplicates (deduplication, posting list splits), DELETE + VACUUM of posting lists, UPDATE storms without HOT (bottom-up and simple deletion)", async () => {
    const seen = btreeFeatureCounter();
    const report = await verifyRedo({
      conf: BTREE_ONLY,
      rmgrs: [RM_BTREE_ID],
      onRecord: seen.onRecord,
      setup: async (pg) => {
        await pg.psql(`
          CREATE TABLE dup (k int, pad text);
          CREATE TABLE dup_wide (k text);
          SELECT setseed(0.75);
          INSERT INTO dup_wide SELECT lpad((random() * 300)::int::text, 96, '#') FROM generate_series(1, 6000) i;
          DELETE FROM dup_wide WHERE random() < 0.4;
          VACUUM dup_wide;
          CREATE TABLE upd (id int PRIMARY KEY, v int, w text) WITH (fillfactor = 100);
          INSERT INTO upd SELECT i, i, repeat('u', 80) FROM generate_series(1, 150) i;`);
      },
      workload: async (pg) => {
        // Few distinct keys: leaves fill with duplicates and get deduplicated instead of split.
        await pg.psql(`
          CREATE INDEX dup_k ON dup (k);
          SELECT setseed(0.5);
          INSERT INTO dup SELECT (random() * 300)::int, repeat('d', 40) FROM generate_series(1, 4000) i;
          DELETE FROM dup WHERE random() < 0.3;
          VACUUM dup;
          INSERT INTO dup SELECT (random() * 300)::int, repeat('d', 40) FROM generate_series(1, 3000) i;
          DELETE FROM dup WHERE random() < 0.3;
          VACUUM dup;
          INSERT INTO dup SELECT (random() * 300)::int, repeat('d', 40) FROM generate_series(1, 2000) i;
        `);
        // Posting lists from a sorted build, then no more deduplication: new TIDs landing in
        // the heap's freed slots fall inside posting lists (posting list splits) and pages
        // fill with plain tuples until they split, often right after the posting list.
        await pg.psql(`
          CREATE INDEX dup_wide_k ON dup_wide (k);
          ALTER INDEX dup_wide_k SET (deduplicate_items = off);
          SELECT setseed(0.125);
          INSERT INTO dup_wide SELECT lpad((random() * 300)::int::text, 96, '#') FROM generate_series(1, 2000) i;
        `);
        // Dead tuples found by index scans are marked LP_DEAD; inserts then delete them
        // (simple deletion) before considering a split.
        await pg.psql(`
          DELETE FROM dup WHERE k IN (3, 4) AND random() < 0.5;
          SET enable_seqscan = off; SET enable_bitmapscan = off;
          SELECT count(*) FROM dup WHERE k = 3; SELECT count(*) FROM dup WHERE k = 4;
          RESET enable_seqscan; RESET enable_bitmapscan;
          INSERT INTO dup SELECT 3 + (i % 2), repeat('d', 40) FROM generate_series(1, 1000) i;
        `);
        // Non-HOT updates (the indexed column changes, and pages are full): the unchanged
        // primary key gets a new version per update, which bottom-up deletion cleans up.
        await pg.psql(`
          CREATE INDEX upd_v ON upd (v);
          ${"UPDATE upd SET v = v + 1;\n".repeat(20)}
          DELETE FROM upd WHERE id % 4 = 0;
          VACUUM upd;
        `);
      },
    });
    expectVerified(report, {
      INSERT_LEAF: 7000,
      DEDUP: 100,
      INSERT_POST: 1500,
      DELETE: 10,
      VACUUM: 8,
      INSERT_UPPER: 50,
      SPLIT_L: 40,
      SPLIT_R: 30,
      NEWROOT: 3,
    });
    expectFeatures(seen.counts, ["posting list split", "split with posting list split", "vacuum updates posting lists"]);
    expect(seen.counts.get("split with posting list split") ?? 0).toBeGreaterThanOrEqual(5);
  });
});
