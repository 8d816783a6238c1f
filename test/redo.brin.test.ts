/**
 * BRIN native redo against PostgreSQL 15's own images (wal_consistency_checking = brin): a
 * large append-only table (fillfactor 10: many heap pages per row) indexed with one range per
 * page, so the build extends the revmap past its first page (REVMAP_EXTEND) and evacuates the
 * regular page in its way (UPDATE); a multi-column minmax index whose tuples grow when rows
 * are updated (SAMEPAGE_UPDATE, UPDATE to another page, +INIT on new pages);
 * brin_summarize_new_values and VACUUM summarizing new ranges (INSERT);
 * brin_desummarize_range (DESUMMARIZE). Every checked block must match after brin_mask;
 * floors per info code prove the corpus reached them. Then the decoders and redo on malformed
 * input: real records cut short.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { brinRedo } from "../src/pg/redo/brin.js";
import { BLCKSZ } from "../src/pg/page.js";
import type { DecodedRecord } from "../src/pg/wal/record.js";
import {
  decodeBrinCreateIdx,
  decodeBrinDesummarize,
  decodeBrinInsert,
  decodeBrinRevmapExtend,
  decodeBrinSamepageUpdate,
  decodeBrinUpdate,
  XLOG_BRIN_CREATE_INDEX,
  XLOG_BRIN_DESUMMARIZE,
  XLOG_BRIN_INSERT,
  XLOG_BRIN_OPMASK,
  XLOG_BRIN_REVMAP_EXTEND,
  XLOG_BRIN_SAMEPAGE_UPDATE,
  XLOG_BRIN_UPDATE,
} from "../src/pg/wal/records/brin.js";
import { RM_BRIN_ID } from "../src/pg/wal/rmgr_ids.js";
import { CorruptionError, UnsupportedError } from "../src/types/errors.js";
import { checkTruncations, fakeRecord, RecordSampler } from "./support/redo_malformed.js";
import { formatReport, type VerifyReport, verifyRedo } from "./support/redo_verify.js";
import { u32le } from "./support/walgen.js";

function decodeAll(rec: DecodedRecord): unknown {
  switch (rec.info & XLOG_BRIN_OPMASK) {
    case XLOG_BRIN_CREATE_INDEX:
      return decodeBrinCreateIdx(rec);
    case XLOG_BRIN_INSERT:
      return decodeBrinInsert(rec);
    case XLOG_BRIN_UPDATE:
      return decodeBrinUpdate(rec);
    case XLOG_BRIN_SAMEPAGE_UPDATE:
      return decodeBrinSamepageUpdate(rec);
    case XLOG_BRIN_REVMAP_EXTEND:
      return decodeBrinRevmapExtend(rec);
    case XLOG_BRIN_DESUMMARIZE:
      return decodeBrinDesummarize(rec);
  }
  return undefined;
}

describe("BRIN redo against PostgreSQL 15", () => {
  const sampler = new RecordSampler([RM_BRIN_ID]);
  let report: VerifyReport;

  beforeAll(async () => {
    report = await verifyRedo({
      conf: { wal_consistency_checking: "brin", wal_compression: "lz4" },
      setup: async (pg) => {
        // ~13 rows per heap page: ~2300 pages, more ranges than one revmap page maps (1360).
        await pg.psql(`CREATE TABLE br (id int, v int, t text, ts timestamptz) WITH (fillfactor = 10);
          INSERT INTO br SELECT g, g % 1000, 'r' || (g % 97), '2024-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, 30000) g;`);
      },
      workload: async (pg) => {
        await pg.psql(`CREATE INDEX br_id ON br USING brin (id) WITH (pages_per_range = 1);
          CREATE INDEX br_multi ON br USING brin (v, t, ts) WITH (pages_per_range = 2);`);
        // Wider text bounds: multi-column tuples grow, in place or onto another page.
        await pg.psql(`UPDATE br SET t = repeat(chr(65 + id % 26), 20 + id % 300) WHERE id % 40 = 0;`);
        // Appended rows land in unsummarized ranges; summarizing them inserts tuples.
        await pg.psql(`INSERT INTO br SELECT g, g % 1000, 's' || g, now() FROM generate_series(30001, 36000) g;
          SELECT brin_summarize_new_values('br_id'); SELECT brin_summarize_new_values('br_multi');`);
        await pg.psql(`SELECT brin_desummarize_range('br_id', b) FROM generate_series(0, 2000, 7) b;
          SELECT brin_desummarize_range('br_multi', b) FROM generate_series(0, 2000, 11) b;`);
        // VACUUM summarizes the desummarized ranges again.
        await pg.psql(`INSERT INTO br SELECT g, g % 1000, 'u' || g, now() FROM generate_series(36001, 38000) g; VACUUM br;`);
      },
      rmgrs: [RM_BRIN_ID],
      onRecord: sampler.onRecord,
    });
  }, 600_000);

  it("matches PostgreSQL's images on every checked block", () => {
    const msg = formatReport(report);
    expect(report.mismatches, msg).toEqual([]);
    expect(report.noBase, msg).toBe(0);
    const floors: [string, number][] = [
      ["BRIN/CREATE_INDEX", 2],
      ["BRIN/INSERT", 4_000],
      ["BRIN/INSERT+INIT", 10],
      ["BRIN/UPDATE", 500],
      ["BRIN/UPDATE+INIT", 10],
      ["BRIN/SAMEPAGE_UPDATE", 500],
      // Two blocks per record: the metapage and the new revmap page.
      ["BRIN/REVMAP_EXTEND", 4],
      ["BRIN/DESUMMARIZE", 400],
    ];
    for (const [kind, floor] of floors) expect(report.checked.get(kind) ?? 0, `${kind}\n${msg}`).toBeGreaterThanOrEqual(floor);
  });

  it("decoders and redo fail only with corruption errors on real records cut short", () => {
    const problems: string[] = [];
    for (const list of sampler.samples.values()) for (const rec of list) problems.push(...checkTruncations(rec, decodeAll, brinRedo));
    expect(problems.slice(0, 20)).toEqual([]);
    for (const [kind, list] of sampler.samples) {
      const rec = list[0]!;
      expect(() => decodeAll({ ...rec, mainData: rec.mainData.subarray(0, 1) }), kind).toThrow(CorruptionError);
    }
  });
});

describe("BRIN redo on hand-made malformed records", () => {
  /** xl_brin_insert: heapBlk, pagesPerRange, offnum. */
  const insert = (heapBlk: number, ppr: number, off: number): number[] => [...u32le(heapBlk), ...u32le(ppr), off, 0];
  const tuple = [0, 0, 0, 0, 8, 0, 0, 0];

  it("inserts onto a new page and points the revmap at it", () => {
    const rec = fakeRecord(RM_BRIN_ID, XLOG_BRIN_INSERT | 0x80, insert(10, 1, 1), [
      { id: 0, blkno: 2, data: tuple, willInit: true },
      { id: 1, blkno: 1 },
    ]);
    const regular = new Uint8Array(BLCKSZ);
    brinRedo.redo(rec, 0, regular);
    expect(regular[12]! | (regular[13]! << 8)).toBe(28);
    const revmap = new Uint8Array(BLCKSZ);
    brinRedo.redo(
      fakeRecord(RM_BRIN_ID, XLOG_BRIN_REVMAP_EXTEND, u32le(1), [
        { id: 0, blkno: 0 },
        { id: 1, blkno: 1, willInit: true },
      ]),
      1,
      revmap,
    );
    brinRedo.redo(rec, 1, revmap);
    // Entry 10: (block 2, offset 1) at 24 + 6 * 10.
    expect([...revmap.subarray(84, 90)]).toEqual([0, 0, 2, 0, 1, 0]);
  });

  it("refuses pagesPerRange 0, offsets past the page, and unknown info codes, naming the record", () => {
    expect(() => decodeBrinInsert(fakeRecord(RM_BRIN_ID, XLOG_BRIN_INSERT, insert(10, 0, 1)))).toThrow(
      /BRIN\/INSERT.*0\/1000028.*pagesPerRange is 0/,
    );
    const rec = fakeRecord(RM_BRIN_ID, XLOG_BRIN_INSERT | 0x80, insert(10, 1, 3), [{ id: 0, data: tuple, willInit: true }, { id: 1 }]);
    expect(() => brinRedo.redo(rec, 0, new Uint8Array(BLCKSZ))).toThrow(/invalid max offset number/);
    const empty = fakeRecord(RM_BRIN_ID, XLOG_BRIN_INSERT | 0x80, insert(10, 1, 1), [{ id: 0, willInit: true }, { id: 1 }]);
    expect(() => brinRedo.redo(empty, 0, new Uint8Array(BLCKSZ))).toThrow(/no BRIN tuple/);
    expect(() => brinRedo.redo(fakeRecord(RM_BRIN_ID, 0x60, [], [{ id: 0 }]), 0, new Uint8Array(BLCKSZ))).toThrow(UnsupportedError);
  });
});
