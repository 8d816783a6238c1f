/**
 * Sequence native redo against PostgreSQL 15's own images (wal_consistency_checking =
 * sequence): CREATE SEQUENCE, nextval many times (a LOG record every 32 values), descending
 * and cached sequences, setval, ALTER SEQUENCE (RESTART rewrites the sequence), serial and
 * identity columns, TRUNCATE ... RESTART IDENTITY, rolled-back nextval, an unlogged sequence
 * (its init fork is logged) made logged. Every checked block must match after seq_mask. Then
 * the decoder and redo on malformed input: real records cut short.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { seqRedo } from "../src/pg/redo/seq.js";
import { BLCKSZ, pageLsn } from "../src/pg/page.js";
import { PgRedo } from "../src/pg/redo/pg_redo.js";
import { restorePageImage } from "../src/pg/wal/image.js";
import { decodeSeqLog } from "../src/pg/wal/records/seq.js";
import { RM_SEQ_ID } from "../src/pg/wal/rmgr_ids.js";
import { CorruptionError, UnsupportedError } from "../src/types/errors.js";
import { makeKey } from "../src/types/key.js";
import { pgRecordValue } from "../src/types/value.js";
import { checkTruncations, fakeRecord, RecordSampler } from "./support/redo_malformed.js";
import { formatReport, type VerifyReport, verifyRedo } from "./support/redo_verify.js";
import { asLsn } from "../src/types/lsn.js";

describe("Sequence redo against PostgreSQL 15", () => {
  const sampler = new RecordSampler([RM_SEQ_ID], 8);
  let report: VerifyReport;
  let initForkLogs = 0;

  beforeAll(async () => {
    report = await verifyRedo({
      conf: { wal_consistency_checking: "sequence" },
      workload: async (pg) => {
        await pg.psql(`CREATE SEQUENCE s1;
          SELECT nextval('s1') FROM generate_series(1, 500);
          CREATE SEQUENCE s2 INCREMENT -3 MINVALUE -1000000 MAXVALUE 0 START 0 CACHE 10;
          SELECT nextval('s2') FROM generate_series(1, 300);
          SELECT setval('s1', 5000); SELECT setval('s1', 42, false); SELECT nextval('s1');
          ALTER SEQUENCE s1 INCREMENT 5 RESTART 100; SELECT nextval('s1') FROM generate_series(1, 100);
          ALTER SEQUENCE s2 MAXVALUE 10 CYCLE;`);
        await pg.psql(`CREATE TABLE ts (id serial, j int GENERATED ALWAYS AS IDENTITY, v text);
          INSERT INTO ts (v) SELECT 'v' || g FROM generate_series(1, 200) g;
          BEGIN; SELECT nextval('ts_id_seq') FROM generate_series(1, 70); ROLLBACK;
          TRUNCATE ts RESTART IDENTITY; INSERT INTO ts (v) VALUES ('again');`);
        await pg.psql(`CREATE UNLOGGED SEQUENCE su; SELECT nextval('su') FROM generate_series(1, 50);
          ALTER SEQUENCE su SET LOGGED; SELECT nextval('su') FROM generate_series(1, 50);
          DROP SEQUENCE s2;`);
      },
      rmgrs: [RM_SEQ_ID],
      onRecord: (rec) => {
        sampler.onRecord(rec);
        if (rec.rmid === RM_SEQ_ID && rec.blocks.some((b) => b.forkNum === 3)) initForkLogs++;
      },
    });
  }, 300_000);

  it("matches PostgreSQL's images on every checked block", () => {
    const msg = formatReport(report);
    expect(report.mismatches, msg).toEqual([]);
    expect(report.noBase, msg).toBe(0);
    expect(report.checked.get("Sequence/LOG") ?? 0, msg).toBeGreaterThanOrEqual(40);
    expect(initForkLogs, msg).toBeGreaterThanOrEqual(1);
  });

  it("PgRedo rebuilds each sequence page from the stored record alone", () => {
    const redo = new PgRedo();
    let n = 0;
    for (const rec of sampler.samples.get("Sequence/LOG") ?? []) {
      const b = rec.blocks[0]!;
      const key = makeKey(0, b.rnode.spcNode, b.rnode.dbNode, b.rnode.relNode, b.forkNum, b.blkno);
      const page = redo.apply(key, null, asLsn(0), [pgRecordValue(true, rec.record)], [rec.endLsn]);
      expect(pageLsn(page)).toBe(rec.endLsn);
      const theirs = new Uint8Array(BLCKSZ);
      restorePageImage(b, theirs, rec.lsn);
      seqRedo.mask(theirs, b.blkno);
      seqRedo.mask(page, b.blkno);
      expect(Buffer.compare(page, theirs)).toBe(0);
      n++;
    }
    expect(n).toBeGreaterThanOrEqual(4);
  });

  it("decoder and redo fail only with corruption errors on real records cut short", () => {
    const problems: string[] = [];
    for (const list of sampler.samples.values()) for (const rec of list) problems.push(...checkTruncations(rec, decodeSeqLog, seqRedo));
    expect(problems.slice(0, 20)).toEqual([]);
    const rec = sampler.samples.get("Sequence/LOG")![0]!;
    // An xl_seq_rec without its tuple, or shorter, is refused.
    for (const n of [0, 5, 12]) expect(() => decodeSeqLog({ ...rec, mainData: rec.mainData.subarray(0, n) })).toThrow(CorruptionError);
  });
});

describe("Sequence redo on hand-made records", () => {
  it("rebuilds the page from the tuple whatever was there, and refuses unknown info codes", () => {
    const tuple = new Array(40).fill(0).map((_, i) => i);
    const page = new Uint8Array(BLCKSZ).fill(0xee);
    seqRedo.redo(fakeRecord(RM_SEQ_ID, 0x00, [...new Array(12).fill(1), ...tuple], [{ id: 0, willInit: true }]), 0, page);
    // pd_lower 28 (one item), pd_upper = pd_special - 40, pd_special = 8192 - 8, magic 0x1717.
    expect([page[12], page[13], page[14]! | (page[15]! << 8), page[16]! | (page[17]! << 8)]).toEqual([28, 0, 8184 - 40, 8184]);
    expect([page[8184], page[8185], page[8186], page[8187]]).toEqual([0x17, 0x17, 0, 0]);
    expect([...page.subarray(8144, 8184)]).toEqual(tuple);
    expect(page[100]).toBe(0);
    expect(() => seqRedo.redo(fakeRecord(RM_SEQ_ID, 0x10, tuple, [{ id: 0 }]), 0, page)).toThrow(UnsupportedError);
    expect(() => seqRedo.redo(fakeRecord(RM_SEQ_ID, 0x00, tuple, [{ id: 0 }, { id: 1 }]), 1, page)).toThrow(CorruptionError);
  });
});
