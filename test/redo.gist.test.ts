/**
 * GiST native redo against PostgreSQL 15's own images (wal_consistency_checking = gist):
 * points and ranges, enough rows for page splits at several levels (root splits included),
 * DELETE + VACUUM emptying leaf pages (PAGE_DELETE), and a second VACUUM plus inserts reusing
 * them (PAGE_REUSE). Every checked block must match after gist_mask; floors per info code
 * prove the corpus reached them.
 *
 * Gist/DELETE (killed tuples pruned by an insert) is PostgreSQL's own inconsistency:
 * gistprunepage does not set F_TUPLES_DELETED on the primary, gistRedoDeleteRecord does,
 * and gist_mask does not hide it, so PostgreSQL 15's own crash recovery with
 * wal_consistency_checking = gist stops with "inconsistent page found" at the first
 * Gist/DELETE. Our redo does what PostgreSQL's does; its own test shows PostgreSQL failing
 * and pins our difference from the primary to exactly that bit, on exactly those pages.
 *
 * Then the decoders and redo on malformed input: real records cut short.
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { F_TUPLES_DELETED, gistRedo, SIZE_OF_GIST_OPAQUE } from "../src/pg/redo/gist.js";
import { BLCKSZ } from "../src/pg/page.js";
import type { DecodedRecord } from "../src/pg/wal/record.js";
import {
  decodeGistDelete,
  decodeGistPageDelete,
  decodeGistPageReuse,
  decodeGistPageSplit,
  decodeGistPageUpdate,
  decodeGistPageUpdateBlock,
  decodeGistSplitPageTuples,
  XLOG_GIST_DELETE,
  XLOG_GIST_OPMASK,
  XLOG_GIST_PAGE_DELETE,
  XLOG_GIST_PAGE_REUSE,
  XLOG_GIST_PAGE_SPLIT,
  XLOG_GIST_PAGE_UPDATE,
} from "../src/pg/wal/records/gist.js";
import { RM_GIST_ID } from "../src/pg/wal/rmgr_ids.js";
import { CorruptionError, UnsupportedError } from "../src/types/errors.js";
import { PgInstance } from "./support/postgres.js";
import { checkTruncations, fakeRecord, RecordSampler } from "./support/redo_malformed.js";
import { formatReport, type VerifyReport, verifyRedo } from "./support/redo_verify.js";

/** Decode everything a GiST record of any info code carries (main data and block data). */
function decodeAll(rec: DecodedRecord): void {
  switch (rec.info & XLOG_GIST_OPMASK) {
    case XLOG_GIST_PAGE_UPDATE: {
      const xl = decodeGistPageUpdate(rec);
      const b0 = rec.blocks.find((b) => b.id === 0);
      if (b0?.hasData) decodeGistPageUpdateBlock(rec, xl, b0.data);
      return;
    }
    case XLOG_GIST_DELETE:
      decodeGistDelete(rec);
      return;
    case XLOG_GIST_PAGE_REUSE:
      decodeGistPageReuse(rec);
      return;
    case XLOG_GIST_PAGE_SPLIT:
      decodeGistPageSplit(rec);
      for (const b of rec.blocks) if (b.id > 0) decodeGistSplitPageTuples(rec, b.id, b.data);
      return;
    case XLOG_GIST_PAGE_DELETE:
      decodeGistPageDelete(rec);
      return;
  }
}

/** Splits by kind, and the left-child fix-ups (F_FOLLOW_RIGHT cleared, NSN set) seen. */
class SplitCounter {
  leaf = 0;
  internal = 0;
  root = 0;
  leftChildFixups = 0;
  readonly onRecord = (rec: DecodedRecord): void => {
    if (rec.rmid !== RM_GIST_ID) return;
    const op = rec.info & XLOG_GIST_OPMASK;
    if (op === XLOG_GIST_PAGE_SPLIT) {
      const xl = decodeGistPageSplit(rec);
      if (xl.origleaf) this.leaf++;
      else this.internal++;
      if (rec.blocks.some((b) => b.id === 1 && b.blkno === 0)) this.root++;
      if (rec.blocks.some((b) => b.id === 0)) this.leftChildFixups++;
    } else if (op === XLOG_GIST_PAGE_UPDATE && rec.blocks.some((b) => b.id === 1)) {
      this.leftChildFixups++;
    }
  };
}

describe("GiST redo against PostgreSQL 15", () => {
  const sampler = new RecordSampler([RM_GIST_ID]);
  const splits = new SplitCounter();
  let report: VerifyReport;

  beforeAll(async () => {
    report = await verifyRedo({
      conf: { wal_consistency_checking: "gist", wal_compression: "lz4" },
      setup: async (pg) => {
        await pg.psql(`
          CREATE TABLE gp (id int, pt point);
          CREATE INDEX gp_pt ON gp USING gist (pt);
          CREATE TABLE gr (id int, r int4range, tr tsrange);
          CREATE INDEX gr_r ON gr USING gist (r);
          CREATE INDEX gr_tr ON gr USING gist (tr);
        `);
      },
      workload: async (pg) => {
        // ~60k points: ~400 leaf pages under internal pages under the root (three levels).
        await pg.psql(`SELECT setseed(0.17);
          INSERT INTO gp SELECT g, point(random() * 1000, random() * 1000) FROM generate_series(1, 60000) g;`);
        await pg.psql(`SELECT setseed(0.29);
          INSERT INTO gr SELECT g, int4range(x, x + (random() * 50)::int), tsrange('2020-01-01'::timestamp + x * interval '1 minute', '2020-01-01'::timestamp + (x + 30) * interval '1 minute')
          FROM (SELECT g, (random() * 100000)::int AS x FROM generate_series(1, 20000) g) s;`);
        // Empty a region: VACUUM deletes the emptied leaf pages (PAGE_DELETE) and their downlinks.
        await pg.psql(`DELETE FROM gp WHERE pt[0] > 500; DELETE FROM gr WHERE id % 3 <> 0; VACUUM gp; VACUUM gr;`);
        // Once no snapshot can see them, a second VACUUM hands the deleted pages to the FSM and
        // new splits reuse them (PAGE_REUSE, then PAGE_SPLIT re-initializing them).
        for (let i = 0; i < 3; i++) await pg.psql("SELECT txid_current();");
        await pg.psql("VACUUM gp;");
        await pg.psql(`SELECT setseed(0.37);
          INSERT INTO gp SELECT 200000 + g, point(500 + random() * 500, random() * 1000) FROM generate_series(1, 20000) g;
          INSERT INTO gr SELECT g, int4range(g, g + 10), NULL FROM generate_series(1, 5000) g;`);
      },
      rmgrs: [RM_GIST_ID],
      onRecord: (rec) => {
        sampler.onRecord(rec);
        splits.onRecord(rec);
      },
    });
  }, 600_000);

  it("matches PostgreSQL's images on every checked block", () => {
    const msg = formatReport(report);
    expect(report.mismatches, msg).toEqual([]);
    expect(report.noBase, msg).toBe(0);
    const floors: [string, number][] = [
      ["Gist/PAGE_UPDATE", 50_000],
      ["Gist/PAGE_SPLIT", 500],
      ["Gist/PAGE_DELETE", 20],
    ];
    for (const [kind, floor] of floors) expect(report.checked.get(kind) ?? 0, `${kind}\n${msg}`).toBeGreaterThanOrEqual(floor);
    // PAGE_REUSE carries no block reference: count the records.
    expect(sampler.counts.get("Gist/PAGE_REUSE") ?? 0, msg).toBeGreaterThanOrEqual(5);
    // Splits at several levels: leaves, internal pages, the root more than once.
    expect(splits.leaf, msg).toBeGreaterThanOrEqual(400);
    expect(splits.internal, msg).toBeGreaterThanOrEqual(2);
    expect(splits.root, msg).toBeGreaterThanOrEqual(2);
    expect(splits.leftChildFixups, msg).toBeGreaterThanOrEqual(400);
  });

  it("decoders and redo fail only with corruption errors on real records cut short", () => {
    const problems: string[] = [];
    for (const list of sampler.samples.values()) for (const rec of list) problems.push(...checkTruncations(rec, decodeAll, gistRedo));
    expect(problems.slice(0, 20)).toEqual([]);
    // Cut below their fixed parts, the main data of every kind must be refused.
    for (const [kind, list] of sampler.samples) {
      const rec = list[0]!;
      if (kind === "Gist/ASSIGN_LSN") continue;
      expect(() => decodeAll({ ...rec, mainData: rec.mainData.subarray(0, 3) }), kind).toThrow(CorruptionError);
    }
  });
});

describe("Gist/DELETE: PostgreSQL's redo differs from its primary by F_TUPLES_DELETED", () => {
  const setupSql = `CREATE TABLE gk (id int, pt point); CREATE INDEX gk_pt ON gk USING gist (pt);
    SELECT setseed(0.17); INSERT INTO gk SELECT g, point(random() * 1000, random() * 1000) FROM generate_series(1, 20000) g;`;
  // An index scan over deleted rows marks their tuples LP_DEAD (F_HAS_GARBAGE); inserts into
  // those full pages prune them first: gistprunepage, XLOG_GIST_DELETE.
  const workloadSql = [
    `DELETE FROM gk WHERE pt <@ box '((0,0),(300,300))' AND id % 2 = 0;`,
    `SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(id) FROM gk WHERE pt <@ box '((0,0),(300,300))';`,
    `SELECT setseed(0.31); INSERT INTO gk SELECT 100000 + g, point(random() * 300, random() * 300) FROM generate_series(1, 4000) g;`,
  ];

  it("PostgreSQL 15's own crash recovery with wal_consistency_checking = gist stops at a Gist/DELETE", async () => {
    const pg = await PgInstance.start({ conf: { wal_level: "replica", wal_consistency_checking: "gist", autovacuum: false } });
    try {
      await pg.psql(setupSql);
      await pg.psql("CHECKPOINT");
      for (const sql of workloadSql) await pg.psql(sql);
      pg.killPostmaster();
      await expect(pg.restart()).rejects.toThrow();
      const log = readFileSync(pg.logFile, "utf8");
      expect(log).toMatch(
        /FATAL: {2}inconsistent page found, rel [0-9/]+, forknum 0, blkno \d+\n[^\n]*CONTEXT: {2}WAL redo at [0-9A-F/]+ for Gist\/DELETE/,
      );
    } finally {
      await pg.destroy();
    }
  }, 300_000);

  it("ours differs from the primary in that bit only, only on pages a Gist/DELETE pruned", async () => {
    const report = await verifyRedo({
      conf: { wal_consistency_checking: "gist", wal_compression: "lz4" },
      setup: async (pg) => {
        await pg.psql(setupSql);
      },
      workload: async (pg) => {
        for (const sql of workloadSql) await pg.psql(sql);
      },
      rmgrs: [RM_GIST_ID],
    });
    const msg = formatReport(report);
    expect(report.checked.get("Gist/DELETE") ?? 0, msg).toBeGreaterThanOrEqual(10);
    expect(report.mismatches.length, msg).toBeGreaterThan(0);
    const firstByPage = new Map<string, string>();
    for (const m of report.mismatches) {
      expect(m.error, msg).toBeUndefined();
      // The opaque's flags byte (pd_special = BLCKSZ - 16, flags at +12): nothing before it differs.
      expect(m.offset, msg).toBe(BLCKSZ - SIZE_OF_GIST_OPAQUE + 12);
      const page = `${m.rel}/${m.blkno}`;
      if (!firstByPage.has(page)) firstByPage.set(page, `${m.rmgr}/${m.info}`);
      if (m.ours !== "") {
        const ours = Number.parseInt(/\[([0-9a-f]{2})\]/.exec(m.ours)![1]!, 16);
        const theirs = Number.parseInt(/\[([0-9a-f]{2})\]/.exec(m.theirs)![1]!, 16);
        expect(ours, msg).toBe(theirs | F_TUPLES_DELETED);
        // The bytes after it (flags high byte, gist_page_id) agree.
        expect(m.ours.split("]")[1], msg).toBe(m.theirs.split("]")[1]);
      }
    }
    // Each diverging page diverged at a Gist/DELETE and carried the bit on from there.
    expect([...new Set(firstByPage.values())], msg).toEqual(["Gist/DELETE"]);
  }, 300_000);
});

describe("GiST redo on hand-made malformed records", () => {
  const leafPage = (): Uint8Array => {
    const p = new Uint8Array(BLCKSZ);
    // An empty GiST leaf page, as a split would leave it.
    gistRedo.redo(fakeRecord(RM_GIST_ID, XLOG_GIST_PAGE_SPLIT, splitMain(1), [{ id: 1, blkno: 7, data: [0, 0, 0, 0] }]), 1, p);
    return p;
  };
  function splitMain(npage: number): number[] {
    const d = new Array(24).fill(0);
    d[0] = 0xff;
    d[1] = 0xff;
    d[2] = 0xff;
    d[3] = 0xff; // origrlink: none
    d[16] = 1; // origleaf
    d[18] = npage;
    return d;
  }
  const tuple = (size: number): number[] => [
    0,
    0,
    0,
    0,
    1,
    0,
    size & 0xff,
    (size >>> 8) & 0x1f,
    ...new Array(Math.max(0, size - 8)).fill(0x5a),
  ];

  it("names the record in its errors: LSN, rmgr, info", () => {
    const rec = fakeRecord(RM_GIST_ID, XLOG_GIST_PAGE_SPLIT, splitMain(2), [{ id: 1, data: [0, 0, 0, 0] }]);
    expect(() => gistRedo.redo(rec, 1, new Uint8Array(BLCKSZ))).toThrow(/Gist\/PAGE_SPLIT.*0\/1000028.*lacks block reference 2/);
  });

  it("refuses tuples that overrun their data or have no size, and counts that disagree", () => {
    const upd = (data: number[], ntoinsert: number) =>
      fakeRecord(RM_GIST_ID, XLOG_GIST_PAGE_UPDATE, [0, 0, ntoinsert, 0], [{ id: 0, data }]);
    expect(() => gistRedo.redo(upd(tuple(0), 1), 0, leafPage())).toThrow(CorruptionError);
    expect(() => gistRedo.redo(upd(tuple(16).slice(0, 12), 1), 0, leafPage())).toThrow(CorruptionError);
    expect(() => gistRedo.redo(upd([...tuple(16), ...tuple(16)], 1), 0, leafPage())).toThrow(CorruptionError);
    const page = leafPage();
    gistRedo.redo(upd([...tuple(16), ...tuple(24)], 2), 0, page);
    expect(page[12]! | (page[13]! << 8)).toBe(24 + 2 * 4);
  });

  it("refuses offsets that are not on the page", () => {
    // Replace offset 9 (one for one) on an empty page.
    const rec = fakeRecord(RM_GIST_ID, XLOG_GIST_PAGE_UPDATE, [1, 0, 1, 0], [{ id: 0, data: [9, 0, ...tuple(16)] }]);
    expect(() => gistRedo.redo(rec, 0, leafPage())).toThrow(/offset 9 is not on the page/);
    const del = fakeRecord(RM_GIST_ID, XLOG_GIST_PAGE_DELETE, [1, 0, 0, 0, 0, 0, 0, 0, 3, 0], [{ id: 0 }, { id: 1 }]);
    expect(() => gistRedo.redo(del, 1, leafPage())).toThrow(CorruptionError);
  });

  it("refuses block references the info code does not define, and unknown info codes", () => {
    const rec = fakeRecord(RM_GIST_ID, XLOG_GIST_PAGE_UPDATE, [0, 0, 0, 0], [{ id: 0 }, { id: 1 }, { id: 2 }]);
    expect(() => gistRedo.redo(rec, 2, leafPage())).toThrow(CorruptionError);
    expect(() => gistRedo.redo(rec, 3, leafPage())).toThrow(CorruptionError);
    expect(() => gistRedo.redo(fakeRecord(RM_GIST_ID, 0x40, [0, 0, 0, 0], [{ id: 0 }]), 0, leafPage())).toThrow(UnsupportedError);
  });
});
