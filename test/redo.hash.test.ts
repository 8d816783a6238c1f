/**
 * Hash native redo against PostgreSQL 15's own page images (wal_consistency_checking = all):
 * hash indexes built on an empty and on filled tables (one sized past the one-phase splitpoints), inserts that split buckets many times
 * and chain overflow pages (many duplicates of few keys), DELETE + VACUUM (bucket cleanup,
 * squeeze, page moves, split cleanup, metapage update) and single-page vacuum of LP_DEAD
 * tuples during inserts. Every checked block must match; each info code has a floor of
 * checked blocks. Plus the typed decoders on malformed records.
 */
import { describe, expect, it } from "vitest";
import { pageInit, pageLsn } from "../src/pg/redo/bufpage.js";
import { hashRedo } from "../src/pg/redo/hash.js";
import { BKPIMAGE_APPLY } from "../src/pg/wal/record.js";
import type { DecodedBlock, DecodedRecord } from "../src/pg/wal/record.js";
import {
  decodeHashInsert,
  decodeHashSplitMetaUpdate,
  decodeHashTupleList,
  decodeHashVacuumOnePage,
  hashBlockOffsets,
  hashBlockU32,
  XLH_SPLIT_META_UPDATE_MASKS,
  XLOG_HASH_INSERT,
  XLOG_HASH_MOVE_PAGE_CONTENTS,
  XLOG_HASH_SPLIT_ALLOCATE_PAGE,
  XLOG_HASH_SPLIT_COMPLETE,
  XLOG_HASH_SPLIT_PAGE,
  XLOG_HASH_VACUUM_ONE_PAGE,
} from "../src/pg/wal/records/hash.js";
import { describeRecordKind, RM_HASH_ID } from "../src/pg/wal/rmgr_ids.js";
import { corruptionOf } from "./support/redo_malformed.js";
import { formatReport, verifyRedo } from "./support/redo_verify.js";
import { asLsn } from "../src/types/lsn.js";

const EMPTY = new Uint8Array(0);

function block(id: number, data: Uint8Array = EMPTY, extra: Partial<DecodedBlock> = {}): DecodedBlock {
  return {
    id,
    rnode: { spcNode: 1663, dbNode: 5, relNode: 16384 },
    forkNum: 0,
    blkno: 7,
    flags: 0,
    hasImage: false,
    applyImage: false,
    willInit: false,
    hasData: data.length > 0,
    data,
    ...extra,
  };
}

function record(info: number, mainData: Uint8Array, blocks: DecodedBlock[]): DecodedRecord {
  return {
    lsn: asLsn(0x1_0000_2000),
    endLsn: asLsn(0x1_0000_2040),
    xid: 0,
    prev: asLsn(0),
    info,
    rmid: RM_HASH_ID,
    totLen: 0,
    blocks,
    mainData,
    record: EMPTY,
  };
}

/** An index tuple of `size` bytes (t_info carries the size). */
function indexTuple(size: number): Uint8Array {
  const t = new Uint8Array(size);
  t[6] = size & 0xff;
  t[7] = (size >>> 8) & 0x1f;
  return t;
}

describe("hash record decoders", () => {
  it("name LSN, rmgr and info on short main data", () => {
    const e = corruptionOf(() => decodeHashInsert(record(XLOG_HASH_INSERT, new Uint8Array(1), [])));
    expect(e.message).toContain("1/2000");
    expect(e.message).toContain("Hash/INSERT");
    expect(e.message).toContain("info 0x20");
  });

  it("check block data lengths", () => {
    const rec = record(XLOG_HASH_SPLIT_ALLOCATE_PAGE, new Uint8Array(9), [block(2, new Uint8Array(4))]);
    expect(corruptionOf(() => decodeHashSplitMetaUpdate(rec, XLH_SPLIT_META_UPDATE_MASKS)).message).toContain("block 2 data is 4 bytes");
    expect(
      corruptionOf(() => hashBlockU32(record(XLOG_HASH_INSERT, new Uint8Array(2), [block(2, new Uint8Array(3))]), 2)).message,
    ).toContain("u32");
    expect(
      corruptionOf(() => hashBlockOffsets(record(XLOG_HASH_INSERT, new Uint8Array(2), [block(1, new Uint8Array(3))]), 1)).message,
    ).toContain("odd length");
    expect(corruptionOf(() => hashBlockU32(record(XLOG_HASH_INSERT, new Uint8Array(2), []), 4)).message).toContain("no block reference 4");
  });

  it("check tuple lists: offsets, tuple sizes, trailing bytes", () => {
    const ok = new Uint8Array(4 + 16 + 24);
    ok.set([1, 0, 2, 0]);
    ok.set(indexTuple(16), 4);
    ok.set(indexTuple(20), 20); // MAXALIGNed to 24
    const list = decodeHashTupleList(record(XLOG_HASH_MOVE_PAGE_CONTENTS, new Uint8Array(3), [block(1, ok)]), 1, 2);
    expect([...list.offsets]).toEqual([1, 2]);
    expect([...list.sizes]).toEqual([16, 24]);
    // One tuple fewer than announced, a tuple running past the data, a byte left over.
    const rec = (d: Uint8Array) => record(XLOG_HASH_MOVE_PAGE_CONTENTS, new Uint8Array(3), [block(1, d)]);
    expect(corruptionOf(() => decodeHashTupleList(rec(ok.subarray(0, 20)), 1, 2)).message).toContain("tuple 1");
    const long = ok.slice();
    long.set(indexTuple(40).subarray(0, 8), 20);
    expect(corruptionOf(() => decodeHashTupleList(rec(long), 1, 2)).message).toContain("tuple 1");
    const extra = new Uint8Array(ok.length + 8);
    extra.set(ok);
    expect(corruptionOf(() => decodeHashTupleList(rec(extra), 1, 2)).message).toContain("after 2 tuples");
    expect(corruptionOf(() => decodeHashTupleList(rec(ok), 1, 30)).message).toContain("offsets");
  });

  it("check VACUUM_ONE_PAGE's offset array against ntuples", () => {
    const d = new Uint8Array(8 + 4);
    d[4] = 3; // ntuples 3, only 2 offsets logged
    expect(corruptionOf(() => decodeHashVacuumOnePage(record(XLOG_HASH_VACUUM_ONE_PAGE, d, []))).message).toContain("3 offsets");
    // Without offsets PostgreSQL deletes nothing.
    const bare = new Uint8Array(8);
    bare[4] = 3;
    expect(decodeHashVacuumOnePage(record(XLOG_HASH_VACUUM_ONE_PAGE, bare, [])).offsets.length).toBe(0);
  });

  it("restore APPLY images, then replay what PostgreSQL replays over them", () => {
    // A bucket page image whose special space says LH_BUCKET_PAGE | LH_BUCKET_BEING_SPLIT.
    const image = new Uint8Array(8192);
    pageInit(image, 16);
    image[8176 + 12] = 0x22;
    const applied = (id: number) =>
      block(id, EMPTY, {
        hasImage: true,
        applyImage: true,
        image: { bytes: image, holeOffset: 0, holeLength: 0, bimgInfo: BKPIMAGE_APPLY },
      });
    // SPLIT_COMPLETE sets the bucket flags even on a restored page.
    const complete = record(XLOG_HASH_SPLIT_COMPLETE, new Uint8Array([0x42, 0, 0x02, 0]), [applied(0), applied(1)]);
    const page = new Uint8Array(8192).fill(0x77);
    hashRedo.redo(complete, 0, page);
    expect(pageLsn(page)).toBe(complete.endLsn);
    expect(page[8176 + 12]).toBe(0x42);
    expect(page.subarray(24, 8176)).toEqual(image.subarray(24, 8176));
    // SPLIT_PAGE is nothing but its image.
    const split = record(XLOG_HASH_SPLIT_PAGE, EMPTY, [applied(0)]);
    hashRedo.redo(split, 0, page);
    expect(page[8176 + 12]).toBe(0x22);
    expect(pageLsn(page)).toBe(split.endLsn);
  });

  it("refuse a SPLIT_PAGE block without its full-page image", () => {
    const rec = record(XLOG_HASH_SPLIT_PAGE, EMPTY, [block(0)]);
    expect(corruptionOf(() => hashRedo.redo(rec, 0, new Uint8Array(8192))).message).toContain("did not contain a full-page image");
  });
});

describe("hash redo against PostgreSQL 15", () => {
  // A real server and ~300k records: allow for a busy machine.
  it("matches every checked block", { timeout: 600_000 }, async () => {
    const seen = new Map<string, number>();
    const report = await verifyRedo({
      rmgrs: [RM_HASH_ID],
      onRecord: (rec) => {
        if (rec.rmid !== RM_HASH_ID) return;
        const kind = describeRecordKind(rec.rmid, rec.info);
        seen.set(kind, (seen.get(kind) ?? 0) + 1);
      },
      setup: async (pg) => {
        await pg.psql(`
          CREATE TABLE h (k int, v int);
          CREATE TABLE hfilled (k int);
          INSERT INTO hfilled SELECT g FROM generate_series(1, 30000) g;
          CREATE TABLE hv (k int);
          -- A planner estimate of 200000 rows: the build sizes the index past the
          -- single-phase splitpoint groups (768 buckets, splitpoint phase 11).
          CREATE TABLE hbig (k int);
          INSERT INTO hbig SELECT g FROM generate_series(1, 100) g;
          UPDATE pg_class SET reltuples = 200000, relpages = 1 WHERE oid = 'hbig'::regclass;
        `);
      },
      workload: async (pg) => {
        // Built on an empty table, then split over and over; 100 keys with 600 rows each
        // (a page holds 407) chain overflow pages and make splits move more than a page
        // (SPLIT_PAGE).
        await pg.psql(`
          CREATE INDEX h_k ON h USING hash (k);
          INSERT INTO h SELECT g % 100, g FROM generate_series(1, 60000) g;
          INSERT INTO h SELECT g, g FROM generate_series(1, 10000) g;
        `);
        // Built on a filled table (sized from the row estimate).
        await pg.psql("ANALYZE hfilled; CREATE INDEX hfilled_k ON hfilled USING hash (k); CREATE INDEX hbig_k ON hbig USING hash (k);");
        // Bucket cleanup, squeeze of overflow chains, split cleanup, metapage update.
        await pg.psql(`
          DELETE FROM h WHERE k % 4 <> 0;
          VACUUM h;
          DELETE FROM hfilled WHERE k % 3 = 0;
          VACUUM hfilled;
        `);
        // LP_DEAD marks from an index scan over deleted rows, then inserts into those full
        // pages vacuum them one page at a time.
        await pg.psql(`
          CREATE INDEX hv_k ON hv USING hash (k);
          INSERT INTO hv SELECT 1 FROM generate_series(1, 3000);
          INSERT INTO hv SELECT 2 FROM generate_series(1, 3000);
          DELETE FROM hv;
          SET enable_seqscan = off; SET enable_bitmapscan = off;
          SELECT count(*) FROM hv WHERE k = 1;
          SELECT count(*) FROM hv WHERE k = 2;
          INSERT INTO hv SELECT 1 FROM generate_series(1, 500);
          INSERT INTO hv SELECT 2 FROM generate_series(1, 500);
        `);
      },
    });
    const msg = `${formatReport(report)}\n  records seen: ${[...seen].map(([k, n]) => `${k} ${n}`).join(", ")}`;
    if (process.env.REDO_REPORT) console.log(msg);
    expect(report.mismatches.length, msg).toBe(0);
    expect(report.noBase, msg).toBe(0);
    // Floors at about half of what this workload produces (counts depend a little on timing).
    const floors: [string, number][] = [
      ["INIT_META_PAGE", 4],
      ["INIT_BITMAP_PAGE", 8],
      ["INSERT", 100_000],
      ["ADD_OVFL_PAGE", 400],
      ["SPLIT_ALLOCATE_PAGE", 350],
      ["SPLIT_COMPLETE", 230],
      ["MOVE_PAGE_CONTENTS", 30],
      ["SQUEEZE_PAGE", 250],
      ["DELETE", 500],
      ["SPLIT_CLEANUP", 100],
      ["UPDATE_META_PAGE", 2],
      ["VACUUM_ONE_PAGE", 2],
    ];
    for (const [info, floor] of floors) expect(report.checked.get(`Hash/${info}`) ?? 0, `${info}\n${msg}`).toBeGreaterThanOrEqual(floor);
    // SPLIT_PAGE blocks always carry a full-page image to restore: nothing to check, but the
    // workload must produce them.
    expect(seen.get("Hash/SPLIT_PAGE") ?? 0, msg).toBeGreaterThanOrEqual(10);
  });
});
