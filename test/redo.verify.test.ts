/**
 * The verification harness can fail: against real PostgreSQL 15 WAL (wal_consistency_checking
 * = all), a deliberately wrong Heap redo is reported at exactly the records it spoiled, at the
 * byte it spoiled, while a correct (copy-the-image) Btree redo passes. Plus PgRedo on stored
 * record values: the start LSN it derives for messages, the XLOG rmgr, and the errors for
 * rmgrs without native redo.
 */
import { afterAll, describe, expect, it } from "vitest";
import { maskPageLsnAndChecksum } from "../src/pg/redo/bufmask.js";
import { PgRedo, recordStartLsn } from "../src/pg/redo/pg_redo.js";
import { findBlock, type RmgrRedo } from "../src/pg/redo/rmgr_interface.js";
import { PAGE_RMGRS, rmgrsWithoutNativeRedo } from "../src/pg/redo/redo_table.js";
import { pageLsn, setPageLsn } from "../src/pg/page.js";
import { restorePageImage } from "../src/pg/wal/image.js";
import type { DecodedRecord } from "../src/pg/wal/record.js";
import { RM_BTREE_ID, RM_HEAP_ID, RM_XLOG_ID, XLOG_FPI, XLOG_FPI_FOR_HINT } from "../src/pg/wal/rmgr_ids.js";
import { CorruptionError, UnsupportedError } from "../src/types/errors.js";
import { makeKey } from "../src/types/key.js";
import { asLsn, lsnToString } from "../src/types/lsn.js";
import { pgRecordValue } from "../src/types/value.js";
import { formatReport, type VerifyReport, verifyRedo } from "./support/redo_verify.js";
import { buildRecord, bytesOf, u16le, u32le } from "./support/walgen.js";

const SPOILED_OFFSET = 100;
const XLOG_HEAP_INSERT = 0x00;
const XLOG_HEAP_OPMASK = 0x70;

/** Redo that copies PostgreSQL's check image: right by construction. */
function copyImage(rec: DecodedRecord, blockId: number, page: Uint8Array): void {
  const b = findBlock(rec, blockId)!;
  if (!b.hasImage) throw new Error(`no image on ${lsnToString(rec.lsn)} block ${blockId}`);
  restorePageImage(b, page, rec.lsn);
  setPageLsn(page, rec.endLsn);
}

const spoiledLsns: number[] = [];
const wrongHeap: RmgrRedo = {
  rmid: RM_HEAP_ID,
  name: "heap",
  redo(rec, blockId, page) {
    copyImage(rec, blockId, page);
    if ((rec.info & XLOG_HEAP_OPMASK) === XLOG_HEAP_INSERT) {
      page[SPOILED_OFFSET] = page[SPOILED_OFFSET]! ^ 0x5a;
      spoiledLsns.push(rec.lsn);
    }
  },
  mask: (page) => maskPageLsnAndChecksum(page),
};
const rightBtree: RmgrRedo = {
  rmid: RM_BTREE_ID,
  name: "btree",
  redo: copyImage,
  mask: (page) => maskPageLsnAndChecksum(page),
};

describe("verifyRedo", () => {
  let report: VerifyReport;
  let startLsnErrors = 0;
  let recordsSeen = 0;

  afterAll(() => {
    spoiledLsns.length = 0;
  });

  it("reports a wrong redo at the right LSN and offset, and passes a right one", async () => {
    report = await verifyRedo({
      setup: async (pg) => {
        await pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g;");
      },
      workload: async (pg) => {
        await pg.psql(`
          INSERT INTO t SELECT g, md5(g::text) FROM generate_series(501, 1500) g;
          UPDATE t SET v = v || 'x' WHERE id % 3 = 0;
          DELETE FROM t WHERE id % 5 = 0;
        `);
      },
      rmgrs: [RM_HEAP_ID, RM_BTREE_ID],
      overrides: [wrongHeap, rightBtree],
      onRecord: (rec) => {
        recordsSeen++;
        if (recordStartLsn(rec.endLsn, rec.totLen) !== rec.lsn) startLsnErrors++;
      },
    });
    const text = formatReport(report);
    expect(report.records).toBe(recordsSeen);
    expect(startLsnErrors, "recordStartLsn disagrees with the decoder").toBe(0);
    expect(report.noBase, text).toBe(0);
    expect(report.checked.get("Heap/INSERT") ?? 0, text).toBeGreaterThan(500);
    expect(report.checked.get("Btree/INSERT_LEAF") ?? 0, text).toBeGreaterThan(500);
    expect(report.checked.get("Heap/UPDATE") ?? 0, text).toBeGreaterThan(100);

    // Every spoiled block, and nothing else, is a mismatch: Heap/INSERT, offset 100.
    expect(report.mismatches.length, text).toBe(spoiledLsns.length);
    // INSERT+INIT (a new heap page, will_init) is spoiled too: the opcode is the same.
    expect(report.checked.get("Heap/INSERT+INIT") ?? 0, text).toBeGreaterThan(0);
    expect(spoiledLsns.length).toBe(report.checked.get("Heap/INSERT")! + report.checked.get("Heap/INSERT+INIT")!);
    expect(report.mismatches.map((m) => m.lsn)).toEqual(spoiledLsns);
    for (const m of report.mismatches) {
      expect(["INSERT", "INSERT+INIT"]).toContain(m.info);
      expect([m.rmgr, m.offset, m.blockId, m.fork]).toEqual(["Heap", SPOILED_OFFSET, 0, 0]);
      expect(m.rel).toMatch(/^1663\/5\/\d+$/);
    }
    const first = report.mismatches[0]!;
    expect(text).toContain(
      `MISMATCH at ${lsnToString(first.lsn)} Heap/${first.info} (info 0x${first.infoCode.toString(16).padStart(2, "0")}) block 0 rel ${first.rel} fork 0 blk ${first.blkno}`,
    );
    expect(text).toContain("first difference at offset 100");
    expect(first.ours).toMatch(/ {2}96: .*\[[0-9a-f]{2}\]/);
    expect(first.ours).not.toBe(first.theirs);
    expect(report.mismatches.some((m) => m.rmgr === "Btree")).toBe(false);
  });
});

describe("PgRedo on stored records", () => {
  const REL = { spc: 1663, db: 5, rel: 16384 };
  const key = makeKey(0, REL.spc, REL.db, REL.rel, 0, 7);

  /** A record with one block reference to REL block 7 (no image, no data), plus main data. */
  function recordFor(rmid: number, info: number, willInit = false): Uint8Array {
    const forkFlags = willInit ? 0x40 : 0;
    const body = bytesOf([0, forkFlags, ...u16le(0)], u32le(REL.spc), u32le(REL.db), u32le(REL.rel), u32le(7), [255, 4], [1, 2, 3, 4]);
    return buildRecord({ rmid, info, body }, asLsn(0x100_0000));
  }

  it("XLOG_FPI_FOR_HINT without an image leaves the page as it was; XLOG_FPI without one is corrupt", () => {
    const base = new Uint8Array(8192);
    base[14] = 0x00;
    base[15] = 0x20; // pd_upper = 8192: not a new page
    base[12] = 24;
    setPageLsn(base, asLsn(0x0100_0000));
    const redo = new PgRedo();
    const out = redo.apply(
      key,
      base,
      asLsn(0x0100_0000),
      [pgRecordValue(false, recordFor(RM_XLOG_ID, XLOG_FPI_FOR_HINT))],
      [asLsn(0x0200_0000)],
    );
    expect(pageLsn(out)).toBe(0x0100_0000);
    expect(out.subarray(10)).toEqual(base.subarray(10));
    expect(() =>
      redo.apply(key, base, asLsn(0x0100_0000), [pgRecordValue(false, recordFor(RM_XLOG_ID, XLOG_FPI))], [asLsn(0x0200_0000)]),
    ).toThrow(CorruptionError);
  });

  it("a record whose rmgr has no native redo names the rmgr, the info and the wal_consistency_checking setting", () => {
    const base = new Uint8Array(8192);
    for (const name of rmgrsWithoutNativeRedo()) {
      const rmid = PAGE_RMGRS.find((p) => p.name === name)!.rmid;
      const run = () => new PgRedo().apply(key, base, asLsn(0), [pgRecordValue(false, recordFor(rmid, 0))], [asLsn(0x0200_0000)]);
      expect(run).toThrow(UnsupportedError);
      expect(run).toThrow(new RegExp(`wal_consistency_checking including '${name}'`));
    }
    // A custom rmgr never has native redo, nor a wal_consistency_checking name.
    const custom = recordFor(130, 0x10);
    const start = lsnToString(recordStartLsn(asLsn(0x0200_0000), custom.length));
    expect(start).toBe("0/1FFFFC8");
    expect(() => new PgRedo().apply(key, base, asLsn(0), [pgRecordValue(false, custom)], [asLsn(0x0200_0000)])).toThrow(
      `cannot redo custom130/UNKNOWN (0x10) (rmgr 130, info 0x10) at ${start} for base/5/16384 block 7: no native redo for this rmgr yet. This rmgr has no wal_consistency_checking setting`,
    );
  });

  it("refuses a record that does not reference the key's block, or disagrees with its will_init tag", () => {
    const other = makeKey(0, REL.spc, REL.db, REL.rel, 0, 8);
    const base = new Uint8Array(8192);
    expect(() =>
      new PgRedo().apply(other, base, asLsn(0), [pgRecordValue(false, recordFor(RM_XLOG_ID, XLOG_FPI_FOR_HINT))], [asLsn(0x0200_0000)]),
    ).toThrow(/has no reference to it/);
    expect(() =>
      new PgRedo().apply(key, null, asLsn(0), [pgRecordValue(true, recordFor(RM_XLOG_ID, XLOG_FPI_FOR_HINT))], [asLsn(0x0200_0000)]),
    ).toThrow(/BKPBLOCK_WILL_INIT/);
  });

  it("recordStartLsn counts the page headers a record crosses", () => {
    // 100 bytes on one page.
    expect(recordStartLsn(asLsn(0x1000 + 104), 100)).toBe(0x1000);
    // Starts 8 bytes before a page boundary, 100 bytes: 8 + 24 (header) + 92 → end 0x2000 + 24 + 96.
    expect(recordStartLsn(asLsn(0x2000 + 24 + 96), 100)).toBe(0x2000 - 8);
    // Crossing a 16 MiB segment start: a 40-byte long header.
    expect(recordStartLsn(asLsn(0x100_0000 + 40 + 96), 100)).toBe(0x100_0000 - 8);
    // A 20000-byte record starting at 0x3018 crosses two page boundaries: 0x4000 and 0x6000.
    expect(recordStartLsn(asLsn(0x3018 + 20000 + 2 * 24), 20000)).toBe(0x3018);
  });
});
