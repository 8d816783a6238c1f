/**
 * GIN native redo against PostgreSQL 15's own page images (wal_consistency_checking = all):
 * int[] and tsvector columns, fastupdate on (pending list: INSERT_LISTPAGE, UPDATE_META_PAGE,
 * DELETE_LISTPAGE, gin_clean_pending_list) and off (entry-tree inserts and splits, a posting
 * tree grown by thousands of rows sharing a key: CREATE_PTREE, leaf recompression, posting
 * tree splits and downlinks), DELETE + VACUUM (data-leaf vacuum, page deletion, entry vacuum,
 * metapage stats). Every checked block must match; each info code has a floor of checked
 * blocks. Plus the posting-list codec and the typed decoders on malformed input.
 */
import { describe, expect, it } from "vitest";
import { PageLayoutError, pageInit, pageLsn, pdLower } from "../src/pg/redo/bufpage.js";
import { ginRedo } from "../src/pg/redo/gin.js";
import { decodePostingList, encodePostingList, mergeItemPointers, postingListSize } from "../src/pg/redo/gin_posting_list.js";
import { BKPIMAGE_APPLY, type DecodedBlock, type DecodedRecord } from "../src/pg/wal/record.js";
import {
  decodeGinCreatePostingTree,
  decodeGinDeleteListPages,
  decodeGinInsert,
  decodeGinInsertEntry,
  decodeGinRecompress,
  decodeGinTupleRun,
  decodeGinUpdateMeta,
  GIN_INSERT_ISLEAF,
  XLOG_GIN_CREATE_PTREE,
  XLOG_GIN_DELETE_LISTPAGE,
  XLOG_GIN_INSERT,
  XLOG_GIN_SPLIT,
  XLOG_GIN_UPDATE_META_PAGE,
  XLOG_GIN_VACUUM_DATA_LEAF_PAGE,
  XLOG_GIN_VACUUM_PAGE,
} from "../src/pg/wal/records/gin.js";
import { describeRecordKind, RM_GIN_ID } from "../src/pg/wal/rmgr_ids.js";
import { corruptionOf } from "./support/redo_malformed.js";
import { formatReport, verifyRedo } from "./support/redo_verify.js";
import { u16le } from "./support/walgen.js";
import { asLsn } from "../src/types/lsn.js";

const EMPTY = new Uint8Array(0);

function block(id: number, data: Uint8Array = EMPTY): DecodedBlock {
  return {
    id,
    rnode: { spcNode: 1663, dbNode: 5, relNode: 16384 },
    forkNum: 0,
    blkno: id + 1,
    flags: 0,
    hasImage: false,
    applyImage: false,
    willInit: false,
    hasData: data.length > 0,
    data,
  };
}

function record(info: number, mainData: Uint8Array, blocks: DecodedBlock[]): DecodedRecord {
  return {
    lsn: asLsn(0x2_0000_0100),
    endLsn: asLsn(0x2_0000_0140),
    xid: 0,
    prev: asLsn(0),
    info,
    rmid: RM_GIN_ID,
    totLen: 0,
    blocks,
    mainData,
    record: EMPTY,
  };
}

/** Item pointer (blk, off) as the 43-bit value. */
function ip(blk: number, off: number): number {
  return blk * 2048 + off;
}

describe("GIN posting lists", () => {
  it("encode exactly as ginCompressPostingList does", () => {
    const items = new Float64Array([ip(0, 1), ip(0, 2), ip(1, 1)]);
    const out = new Uint8Array(64).fill(0xee);
    expect(encodePostingList(items, 3, out, 0, 64)).toBe(3);
    // first (0,1) | nbytes 3 | deltas 1, 2047 (0xff 0x0f) | zero pad
    expect([...out.subarray(0, 12)]).toEqual([0, 0, 0, 0, 1, 0, 3, 0, 0x01, 0xff, 0x0f, 0]);
    expect(postingListSize(out, 0)).toBe(12);
    const back = new Float64Array(8);
    expect(decodePostingList(out, 0, 12, back, 0)).toBe(3);
    expect([...back.subarray(0, 3)]).toEqual([...items]);
  });

  it("round-trip the widest deltas (7 bytes) and large block numbers", () => {
    const items = new Float64Array([ip(0, 1), ip(0xffff_fffe, 7), ip(0xffff_ffff, 2047)]);
    const out = new Uint8Array(64);
    expect(encodePostingList(items, 3, out, 0, 64)).toBe(3);
    expect(out[6]).toBe(7 + 2); // 7-byte delta, then a 2-byte one
    const back = new Float64Array(8);
    expect(decodePostingList(out, 0, postingListSize(out, 0), back, 0)).toBe(3);
    expect([...back.subarray(0, 3)]).toEqual([...items]);
  });

  it("stop packing when the segment is full", () => {
    const items = new Float64Array(100);
    for (let i = 0; i < 100; i++) items[i] = ip(i * 1000, 1);
    const out = new Uint8Array(64);
    const packed = encodePostingList(items, 100, out, 0, 20);
    expect(packed).toBeLessThan(100);
    expect(postingListSize(out, 0)).toBeLessThanOrEqual(20);
  });

  it("refuse segments that run past their end or do not increase", () => {
    const out = new Uint8Array(16);
    encodePostingList(new Float64Array([ip(0, 1), ip(5, 1)]), 2, out, 0, 16);
    const back = new Float64Array(8);
    expect(() => decodePostingList(out, 0, 9, back, 0)).toThrow(PageLayoutError);
    const cont = out.slice();
    cont[6] = 1; // nbytes 1, but the byte has its continuation bit set
    cont[8] = 0x80;
    expect(() => decodePostingList(cont, 0, 16, back, 0)).toThrow(/runs past the segment/);
    const zero = out.slice();
    zero[6] = 1;
    zero[8] = 0; // delta 0
    expect(() => decodePostingList(zero, 0, 16, back, 0)).toThrow(/do not increase/);
  });

  it("merge like ginMergeItemPointers: disjoint, interleaved, duplicates kept once", () => {
    const dst = new Float64Array(16);
    const a = new Float64Array([1, 5, 9]);
    const b = new Float64Array([2, 5, 10]);
    expect(mergeItemPointers(a, 3, b, 3, dst)).toBe(5);
    expect([...dst.subarray(0, 5)]).toEqual([1, 2, 5, 9, 10]);
    expect(mergeItemPointers(new Float64Array([7, 8]), 2, new Float64Array([1, 2]), 2, dst)).toBe(4);
    expect([...dst.subarray(0, 4)]).toEqual([1, 2, 7, 8]);
  });
});

describe("GIN record decoders", () => {
  it("name LSN, rmgr and info on short main data", () => {
    const e = corruptionOf(() => decodeGinUpdateMeta(record(XLOG_GIN_UPDATE_META_PAGE, new Uint8Array(80), [])));
    expect(e.message).toContain("2/100");
    expect(e.message).toContain("Gin/UPDATE_META_PAGE");
    expect(e.message).toContain("info 0x60");
  });

  it("check CREATE_PTREE's posting list size and INSERT's child block ids", () => {
    expect(
      corruptionOf(() => decodeGinCreatePostingTree(record(XLOG_GIN_CREATE_PTREE, new Uint8Array([20, 0, 0, 0, 1, 2]), []))).message,
    ).toContain("posting list of 20 bytes");
    // Non-leaf insert without its two BlockIdData.
    expect(corruptionOf(() => decodeGinInsert(record(XLOG_GIN_INSERT, new Uint8Array([0, 0]), []))).message).toContain("need 10");
    const leaf = decodeGinInsert(record(XLOG_GIN_INSERT, new Uint8Array([GIN_INSERT_ISLEAF, 0]), []));
    expect(leaf.rightChildBlkno).toBe(0xffff_ffff);
    // BlockIdData is bi_hi then bi_lo.
    const inner = decodeGinInsert(record(XLOG_GIN_INSERT, new Uint8Array([0, 0, 1, 0, 2, 0, 0, 0, 3, 0]), []));
    expect(inner.leftChildBlkno).toBe(0x1_0002);
    expect(inner.rightChildBlkno).toBe(3);
  });

  it("check entry tuples against their t_info size", () => {
    const d = new Uint8Array(4 + 16);
    d[4 + 6] = 24; // the tuple claims 24 bytes, 16 are logged
    expect(corruptionOf(() => decodeGinInsertEntry(record(XLOG_GIN_INSERT, new Uint8Array(2), [block(0, d)]))).message).toContain(
      "entry tuple size 24",
    );
  });

  it("check recompress actions: types, lengths, order, trailing bytes", () => {
    const rec = (bytes: number[]) => record(XLOG_GIN_VACUUM_DATA_LEAF_PAGE, EMPTY, [block(0, new Uint8Array(bytes))]);
    // ADDITEMS of 2 items with only one logged.
    expect(corruptionOf(() => decodeGinRecompress(rec([...u16le(1), 0, 4, ...u16le(2), 0, 0, 0, 0, 1, 0]), 0)).message).toContain(
      "2 items need 12 bytes",
    );
    // Unknown action type.
    expect(corruptionOf(() => decodeGinRecompress(rec([...u16le(1), 0, 9]), 0)).message).toContain("unexpected GIN leaf action: 9");
    // Segments going backwards.
    expect(corruptionOf(() => decodeGinRecompress(rec([...u16le(2), 3, 1, 2, 1]), 0)).message).toContain("after segment 3");
    // A REPLACE whose posting list runs past the data.
    expect(corruptionOf(() => decodeGinRecompress(rec([...u16le(1), 0, 3, 0, 0, 0, 0, 1, 0, ...u16le(10), 1]), 0)).message).toContain(
      "posting list",
    );
    // Bytes after the announced actions.
    expect(corruptionOf(() => decodeGinRecompress(rec([...u16le(1), 0, 1, 0xaa]), 0)).message).toContain("1 bytes after 1 segment actions");
    const ok = decodeGinRecompress(rec([...u16le(2), 0, 1, 2, 4, ...u16le(1), 0, 0, 0, 9, 1, 0]), 0);
    expect([...ok.types]).toEqual([1, 4]);
    expect([...ok.lens]).toEqual([0, 6]);
  });

  it("check tuple runs and DELETE_LISTPAGE's block references", () => {
    const tup = new Uint8Array(16);
    tup[6] = 16;
    expect(corruptionOf(() => decodeGinTupleRun(record(XLOG_GIN_UPDATE_META_PAGE, EMPTY, [block(1, tup)]), 1, 3)).message).toContain(
      "cannot fit",
    );
    const two = new Uint8Array(32);
    two.set(tup);
    two[16 + 6] = 20;
    expect(corruptionOf(() => decodeGinTupleRun(record(XLOG_GIN_UPDATE_META_PAGE, EMPTY, [block(1, two)]), 1, 2)).message).toContain(
      "tuple 1",
    );
    const main = new Uint8Array(64);
    main[56] = 3;
    expect(
      corruptionOf(() => decodeGinDeleteListPages(record(XLOG_GIN_DELETE_LISTPAGE, main, [block(0), block(1), block(2)]))).message,
    ).toContain("no block reference 3");
    main[56] = 17;
    expect(corruptionOf(() => decodeGinDeleteListPages(record(XLOG_GIN_DELETE_LISTPAGE, main, [block(0)]))).message).toContain(
      "ndeleted 17",
    );
  });

  it("restore APPLY images; UPDATE_META_PAGE rebuilds the metapage over its image anyway", () => {
    const image = new Uint8Array(8192);
    pageInit(image, 8);
    image.fill(0x5a, 24, 200);
    const applied = (id: number): DecodedBlock => ({
      ...block(id),
      hasImage: true,
      applyImage: true,
      image: { bytes: image, holeOffset: 0, holeLength: 0, bimgInfo: BKPIMAGE_APPLY },
    });
    const split = new Uint8Array(28);
    split[24] = GIN_INSERT_ISLEAF;
    const splitRec = record(XLOG_GIN_SPLIT, split, [applied(0), applied(1)]);
    const page = new Uint8Array(8192);
    ginRedo.redo(splitRec, 1, page);
    expect(page.subarray(8)).toEqual(image.subarray(8));
    expect(pageLsn(page)).toBe(splitRec.endLsn);

    const meta = new Uint8Array(88);
    meta.fill(0x11, 16, 16 + 56);
    meta.set([0xff, 0xff, 0xff, 0xff], 72); // prevTail invalid, ntuples 0: block 0 only
    const metaRec = record(XLOG_GIN_UPDATE_META_PAGE, meta, [applied(0)]);
    ginRedo.redo(metaRec, 0, page);
    expect(pdLower(page)).toBe(24 + 56);
    expect(page.subarray(24, 80).every((b) => b === 0x11)).toBe(true);
    expect(page.subarray(80, 8184).every((b) => b === 0)).toBe(true);
    expect([...page.subarray(8184)]).toEqual([0xff, 0xff, 0xff, 0xff, 0, 0, 8, 0]);
  });

  it("convert a pre-9.4 uncompressed posting-tree leaf before recompressing it", () => {
    const page = new Uint8Array(8192);
    pageInit(page, 8);
    page.set([0, 0, 3, 0, 0x03, 0], 8184 + 2); // maxoff 3 (rightlink 0), flags GIN_DATA | GIN_LEAF
    page.set([0xff, 0xff, 0xff, 0xff], 8184);
    // (0,1), (0,2), (1,1) as raw ItemPointerData; pd_lower left at the header, as before 9.4.
    page.set([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 1, 0], 32);
    // One action: ADDITEMS (2,1) to segment 0, which the conversion just produced.
    const rec = record(XLOG_GIN_VACUUM_DATA_LEAF_PAGE, EMPTY, [
      block(0, new Uint8Array([...u16le(1), 0, 4, ...u16le(1), 0, 0, 2, 0, 1, 0])),
    ]);
    ginRedo.redo(rec, 0, page);
    // (0,1) | nbytes 5 | deltas 1, 2047, 2048 | pad
    expect([...page.subarray(32, 46)]).toEqual([0, 0, 0, 0, 1, 0, 5, 0, 0x01, 0xff, 0x0f, 0x80, 0x10, 0]);
    expect(pdLower(page)).toBe(46);
    expect([...page.subarray(8184)]).toEqual([0xff, 0xff, 0xff, 0xff, 0, 0, 0x83, 0]);
    expect(pageLsn(page)).toBe(rec.endLsn);
  });

  it("refuse SPLIT and VACUUM_PAGE blocks without their full-page images", () => {
    const split = new Uint8Array(28);
    split[24] = GIN_INSERT_ISLEAF;
    const page = new Uint8Array(8192);
    expect(corruptionOf(() => ginRedo.redo(record(XLOG_GIN_SPLIT, split, [block(0), block(1)]), 1, page)).message).toContain("right page");
    expect(corruptionOf(() => ginRedo.redo(record(XLOG_GIN_VACUUM_PAGE, EMPTY, [block(0)]), 0, page)).message).toContain("did not restore");
  });
});

const ACTION_NAMES = ["UNMODIFIED", "DELETE", "INSERT", "REPLACE", "ADDITEMS"];

/** The record kind plus the variants the redo code branches on (for coverage floors). */
function recordVariants(rec: DecodedRecord): string[] {
  const out = [describeRecordKind(rec.rmid, rec.info)];
  const info = rec.info & 0xf0;
  if (info === XLOG_GIN_INSERT) {
    const xl = decodeGinInsert(rec);
    out.push(`INSERT ${xl.isData ? "data" : "entry"} ${xl.isLeaf ? "leaf" : "internal"}`);
    if (xl.isData && xl.isLeaf) for (const t of decodeGinRecompress(rec, 0).types) out.push(`leaf action ${ACTION_NAMES[t]}`);
  } else if (info === XLOG_GIN_VACUUM_DATA_LEAF_PAGE) {
    for (const t of decodeGinRecompress(rec, 0).types) out.push(`leaf action ${ACTION_NAMES[t]}`);
  } else if (info === XLOG_GIN_SPLIT && rec.blocks.some((b) => b.id === 3)) {
    out.push("SPLIT finishing a child split");
  }
  return out;
}

describe("GIN redo against PostgreSQL 15", () => {
  // A real server and ~350k records: allow for a busy machine.
  it("matches every checked block", { timeout: 600_000 }, async () => {
    const seen = new Map<string, number>();
    const report = await verifyRedo({
      rmgrs: [RM_GIN_ID],
      onRecord: (rec) => {
        if (rec.rmid !== RM_GIN_ID) return;
        for (const kind of recordVariants(rec)) seen.set(kind, (seen.get(kind) ?? 0) + 1);
      },
      setup: async (pg) => {
        await pg.psql(`
          CREATE TABLE g (id int, a int[], t tsvector);
          CREATE TABLE gfilled (id int, a int[]);
          CREATE TABLE glong (id int, tags text[]);
          INSERT INTO gfilled SELECT g, ARRAY[g % 7, g % 100, g] FROM generate_series(1, 20000) g;
        `);
      },
      workload: async (pg) => {
        // fastupdate off on the array (every row has key 1: a posting tree of thousands of
        // items, recompressed and split), on with a small pending list on the tsvector.
        await pg.psql(`
          CREATE INDEX g_a ON g USING gin (a) WITH (fastupdate = off);
          CREATE INDEX g_t ON g USING gin (t) WITH (fastupdate = on, gin_pending_list_limit = 128);
          CREATE INDEX gfilled_a ON gfilled USING gin (a);
          CREATE INDEX glong_tags ON glong USING gin (tags) WITH (fastupdate = off);
        `);
        // 192-byte keys in random order: few per page, so the entry tree's internal pages
        // fill and split too (downlink inserts that finish a child's split).
        await pg.psql(`
          INSERT INTO glong SELECT g, ARRAY[repeat(md5(g::text), 6), 'shared']
          FROM generate_series(1, 8000) g ORDER BY md5(g::text);
        `);
        for (let batch = 0; batch < 6; batch++) {
          const from = batch * 5000 + 1;
          await pg.psql(`
            INSERT INTO g SELECT g, ARRAY[1, g % 10, g % 1000, g],
              to_tsvector('simple', 'w' || (g % 100) || ' common ' || substr(md5(g::text), 1, 6) || ' ' || substr(md5((g * 7)::text), 1, 5))
            FROM generate_series(${from}, ${from + 4999}) g;
          `);
        }
        await pg.psql(`
          INSERT INTO gfilled SELECT g, ARRAY[g % 7, g % 100, g] FROM generate_series(20001, 30000) g;
          SELECT gin_clean_pending_list('g_t'::regclass);
        `);
        // Whole leaf pages of the posting tree emptied (page deletion), others thinned.
        await pg.psql(`
          DELETE FROM g WHERE id BETWEEN 3000 AND 20000 OR id % 3 = 0;
          VACUUM g;
          DELETE FROM gfilled WHERE id % 2 = 0;
          VACUUM gfilled;
        `);
        // Fresh inserts into the vacuumed index, then one more pending-list flush.
        await pg.psql(`
          INSERT INTO g SELECT g, ARRAY[1, g % 10], to_tsvector('simple', 'late' || (g % 50))
          FROM generate_series(40001, 44000) g;
          SELECT gin_clean_pending_list('g_t'::regclass);
        `);
      },
    });
    const msg = `${formatReport(report)}\n  records seen: ${[...seen]
      .sort()
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}`;
    if (process.env.REDO_REPORT) console.log(msg);
    expect(report.mismatches.length, msg).toBe(0);
    expect(report.noBase, msg).toBe(0);
    // Floors at about half of what this workload produces.
    const floors: [string, number][] = [
      ["CREATE_PTREE", 5],
      ["INSERT", 100_000],
      ["INSERT_LISTPAGE", 200],
      ["UPDATE_META_PAGE", 40_000],
      ["DELETE_LISTPAGE", 200],
      ["VACUUM_DATA_LEAF_PAGE", 10],
      ["DELETE_PAGE", 6],
      ["SPLIT", 20],
    ];
    for (const [info, floor] of floors) expect(report.checked.get(`Gin/${info}`) ?? 0, `${info}\n${msg}`).toBeGreaterThanOrEqual(floor);
    // Every variant of the records, with the recompression actions redo replays. SPLIT's
    // pages and VACUUM_PAGE's page are full-page images (restored, not checked).
    for (const variant of [
      "INSERT entry leaf",
      "INSERT entry internal",
      "INSERT data leaf",
      "INSERT data internal",
      "leaf action INSERT",
      "leaf action REPLACE",
      "leaf action ADDITEMS",
      "leaf action DELETE",
      "SPLIT finishing a child split",
      "Gin/VACUUM_PAGE",
    ]) {
      expect(seen.get(variant) ?? 0, `${variant}\n${msg}`).toBeGreaterThanOrEqual(1);
    }
  });
});
