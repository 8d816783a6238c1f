/**
 * Generic WAL native redo against PostgreSQL 15's own images (wal_consistency_checking =
 * generic), through the bloom extension: index builds and new pages (GENERIC_XLOG_FULL_IMAGE:
 * APPLY images), inserts into existing pages and metapage updates (deltas), DELETE + VACUUM
 * (bulk-delete deltas). Every checked block must match after generic_mask. Then the delta
 * checker and redo on malformed input: real records cut short, and hand-made deltas.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { genericRedo } from "../src/pg/redo/generic.js";
import { BLCKSZ } from "../src/pg/page.js";
import type { DecodedRecord } from "../src/pg/wal/record.js";
import { checkGenericDelta } from "../src/pg/wal/records/generic.js";
import { RM_GENERIC_ID } from "../src/pg/wal/rmgr_ids.js";
import { CorruptionError } from "../src/types/errors.js";
import { findPgBinDir } from "./support/postgres.js";
import { checkTruncations, fakeRecord, RecordSampler } from "./support/redo_malformed.js";
import { formatReport, type VerifyReport, verifyRedo } from "./support/redo_verify.js";
import { asLsn } from "../src/types/lsn.js";

function checkAll(rec: DecodedRecord): void {
  for (const b of rec.blocks) checkGenericDelta(rec, b.id, b.data);
}

/** The bloom extension ships with PostgreSQL's contrib; this machine has it (asserted, not skipped). */
function bloomInstalled(): boolean {
  return existsSync(join(findPgBinDir(), "..", "lib", "bloom.so"));
}

describe("Generic WAL redo against PostgreSQL 15 (bloom)", () => {
  const sampler = new RecordSampler([RM_GENERIC_ID], 8);
  let report: VerifyReport;
  let fullImages = 0;

  beforeAll(async () => {
    expect(bloomInstalled()).toBe(true);
    report = await verifyRedo({
      conf: { wal_consistency_checking: "generic" },
      setup: async (pg) => {
        await pg.psql(`CREATE EXTENSION bloom;
          CREATE TABLE bl (a int, b int, c text, d int);
          INSERT INTO bl SELECT g, g % 7, md5(g::text), g % 1000 FROM generate_series(1, 5000) g;`);
      },
      workload: async (pg) => {
        await pg.psql(`CREATE INDEX bl_abc ON bl USING bloom (a, b, c) WITH (length = 80, col1 = 2, col2 = 2, col3 = 4);
          CREATE INDEX bl_d ON bl USING bloom (d);`);
        await pg.psql(`INSERT INTO bl SELECT g, g % 7, md5(g::text), g % 1000 FROM generate_series(5001, 15000) g;`);
        await pg.psql(`DELETE FROM bl WHERE a % 3 = 0; VACUUM bl;`);
        await pg.psql(`INSERT INTO bl SELECT g, g % 5, md5(g::text), g % 100 FROM generate_series(15001, 18000) g;`);
      },
      rmgrs: [RM_GENERIC_ID],
      onRecord: (rec) => {
        sampler.onRecord(rec);
        if (rec.rmid === RM_GENERIC_ID) for (const b of rec.blocks) if (b.applyImage) fullImages++;
      },
    });
  }, 300_000);

  it("matches PostgreSQL's images on every checked block", () => {
    const msg = formatReport(report);
    expect(report.mismatches, msg).toEqual([]);
    expect(report.noBase, msg).toBe(0);
    expect(report.checked.get("Generic/Generic") ?? 0, msg).toBeGreaterThanOrEqual(10_000);
    // Builds and new pages come as full images (restored, not redone).
    expect(fullImages, msg).toBeGreaterThanOrEqual(10);
  });

  it("delta checks and redo fail only with corruption errors on real records cut short", () => {
    const problems: string[] = [];
    for (const list of sampler.samples.values()) for (const rec of list) problems.push(...checkTruncations(rec, checkAll, genericRedo));
    expect(problems.slice(0, 20)).toEqual([]);
  });

  it("refuses deltas that overrun the data or the page", () => {
    const rec: DecodedRecord = {
      lsn: asLsn(0x100_0000),
      endLsn: asLsn(0x100_0040),
      xid: 0,
      prev: asLsn(0),
      info: 0,
      rmid: RM_GENERIC_ID,
      totLen: 0,
      blocks: [],
      mainData: new Uint8Array(0),
      record: new Uint8Array(0),
    };
    const frag = (off: number, len: number, have: number) =>
      new Uint8Array([off & 0xff, off >>> 8, len & 0xff, len >>> 8, ...new Array(have).fill(7)]);
    expect(checkGenericDelta(rec, 0, frag(100, 3, 3))).toBe(1);
    expect(() => checkGenericDelta(rec, 0, frag(100, 3, 2))).toThrow(CorruptionError);
    expect(() => checkGenericDelta(rec, 0, frag(BLCKSZ - 2, 3, 3))).toThrow(CorruptionError);
    expect(() => checkGenericDelta(rec, 0, new Uint8Array([1, 0, 0]))).toThrow(CorruptionError);
    expect(checkGenericDelta(rec, 0, new Uint8Array(0))).toBe(0);
  });
});

describe("Generic redo on hand-made records", () => {
  const frag = (off: number, bytes: number[]): number[] => [off & 0xff, off >>> 8, bytes.length & 0xff, bytes.length >>> 8, ...bytes];

  it("applies fragments, zeroes the hole, sets pd_lsn", () => {
    const page = new Uint8Array(BLCKSZ).fill(0x33);
    // pd_lower 40, pd_upper 8000, pd_special 8192, then bytes at 8100.
    const header = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0x40, 0x1f, 0, 0x20, 4, 0x20, 0, 0, 0, 0];
    genericRedo.redo(fakeRecord(RM_GENERIC_ID, 0, [], [{ id: 0, data: [...frag(0, header), ...frag(8100, [1, 2, 3])] }]), 0, page);
    expect(page[39]).toBe(0x33);
    expect(page.subarray(40, 8000).every((b) => b === 0)).toBe(true);
    expect(page[8000]).toBe(0x33);
    expect([...page.subarray(8100, 8103)]).toEqual([1, 2, 3]);
    expect([...page.subarray(4, 8)]).toEqual([0x80, 0, 0, 1]);
  });

  it("refuses a delta that leaves pd_lower above pd_upper, and block ids past 3", () => {
    const page = new Uint8Array(BLCKSZ);
    const bad = fakeRecord(RM_GENERIC_ID, 0, [], [{ id: 0, data: frag(12, [0x20, 0, 0x10, 0]) }]);
    expect(() => genericRedo.redo(bad, 0, page)).toThrow(/Generic.*0\/1000028.*make no hole/);
    expect(() => genericRedo.redo(fakeRecord(RM_GENERIC_ID, 0, [], [{ id: 4 }]), 4, page)).toThrow(CorruptionError);
  });
});
