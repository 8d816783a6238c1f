/**
 * SP-GiST native redo against PostgreSQL 15's own images (wal_consistency_checking =
 * spgist): points in a quad tree (quad_point_ops) and a k-d tree (kd_point_ops), with NULLs
 * (the nulls tree); text in a radix tree (text_ops) loaded so that long common prefixes get
 * split (SPLIT_TUPLE) and inner tuples gain labels (ADD_NODE); ranges; a small index whose
 * root is still a leaf (VACUUM_ROOT); DELETE + VACUUM (VACUUM_LEAF), and a second VACUUM once
 * the redirects are old (VACUUM_REDIRECT), then inserts reusing placeholders. Every checked
 * block must match after spg_mask; floors per info code prove the corpus reached them.
 * Then the decoders and redo on malformed input: real records cut short.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { spgistRedo } from "../src/pg/redo/spgist.js";
import { BLCKSZ } from "../src/pg/page.js";
import type { DecodedRecord } from "../src/pg/wal/record.js";
import {
  decodeSpgAddLeaf,
  decodeSpgAddNode,
  decodeSpgMoveLeafs,
  decodeSpgPickSplit,
  decodeSpgSplitTuple,
  decodeSpgVacuumLeaf,
  decodeSpgVacuumRedirect,
  decodeSpgVacuumRoot,
  XLOG_SPGIST_ADD_LEAF,
  XLOG_SPGIST_ADD_NODE,
  XLOG_SPGIST_MOVE_LEAFS,
  XLOG_SPGIST_OPMASK,
  XLOG_SPGIST_PICKSPLIT,
  XLOG_SPGIST_SPLIT_TUPLE,
  XLOG_SPGIST_VACUUM_LEAF,
  XLOG_SPGIST_VACUUM_REDIRECT,
  XLOG_SPGIST_VACUUM_ROOT,
} from "../src/pg/wal/records/spgist.js";
import { RM_SPGIST_ID } from "../src/pg/wal/rmgr_ids.js";
import { CorruptionError, UnsupportedError } from "../src/types/errors.js";
import { checkTruncations, fakeRecord, RecordSampler } from "./support/redo_malformed.js";
import { formatReport, type VerifyReport, verifyRedo } from "./support/redo_verify.js";

function decodeAll(rec: DecodedRecord): unknown {
  switch (rec.info & XLOG_SPGIST_OPMASK) {
    case XLOG_SPGIST_ADD_LEAF:
      return decodeSpgAddLeaf(rec);
    case XLOG_SPGIST_MOVE_LEAFS:
      return decodeSpgMoveLeafs(rec);
    case XLOG_SPGIST_ADD_NODE:
      return decodeSpgAddNode(rec);
    case XLOG_SPGIST_SPLIT_TUPLE:
      return decodeSpgSplitTuple(rec);
    case XLOG_SPGIST_PICKSPLIT:
      return decodeSpgPickSplit(rec);
    case XLOG_SPGIST_VACUUM_LEAF:
      return decodeSpgVacuumLeaf(rec);
    case XLOG_SPGIST_VACUUM_ROOT:
      return decodeSpgVacuumRoot(rec);
    case XLOG_SPGIST_VACUUM_REDIRECT:
      return decodeSpgVacuumRedirect(rec);
  }
  return undefined;
}

/** Words over a wide alphabet, of varying length: new labels at every level of a radix tree. */
const WORD = `translate(md5(g::text), '0123456789abcdef', 'qwErtyUiOpASdfgh') || substr('xyz_-.:/Zz', 1 + g % 9, 1 + g % 3)`;

/** Which redo paths the corpus took: the variants of each info code, counted by record. */
function spgVariants(rec: DecodedRecord): string[] {
  const blocks = new Set(rec.blocks.map((b) => b.id));
  switch (rec.info & XLOG_SPGIST_OPMASK) {
    case XLOG_SPGIST_ADD_LEAF: {
      const xl = decodeSpgAddLeaf(rec);
      const out = [xl.newPage ? "ADD_LEAF new page" : "ADD_LEAF"];
      if (xl.offnumLeaf === xl.offnumHeadLeaf) out.push("ADD_LEAF replacing a dead tuple");
      else if (xl.offnumHeadLeaf !== 0) out.push("ADD_LEAF chained to a head");
      if (xl.offnumParent !== 0) out.push("ADD_LEAF parent link");
      if (xl.storesNulls) out.push("ADD_LEAF nulls tree");
      return out;
    }
    case XLOG_SPGIST_MOVE_LEAFS: {
      const xl = decodeSpgMoveLeafs(rec);
      return [xl.newPage ? "MOVE_LEAFS new page" : "MOVE_LEAFS", ...(xl.replaceDead ? ["MOVE_LEAFS replacing a dead tuple"] : [])];
    }
    case XLOG_SPGIST_ADD_NODE: {
      const xl = decodeSpgAddNode(rec);
      return [blocks.has(1) ? `ADD_NODE moved, parent in block ${xl.parentBlk}${xl.newPage ? ", new page" : ""}` : "ADD_NODE in place"];
    }
    case XLOG_SPGIST_SPLIT_TUPLE: {
      const xl = decodeSpgSplitTuple(rec);
      return [xl.postfixBlkSame ? "SPLIT_TUPLE same page" : `SPLIT_TUPLE other page${xl.newPage ? ", new page" : ""}`];
    }
    case XLOG_SPGIST_PICKSPLIT: {
      const xl = decodeSpgPickSplit(rec);
      const out = [xl.isRootSplit ? "PICKSPLIT root" : xl.initSrc ? "PICKSPLIT init source" : "PICKSPLIT"];
      if (blocks.has(1)) out.push(xl.initDest ? "PICKSPLIT new dest page" : "PICKSPLIT dest page");
      if (xl.initInner) out.push("PICKSPLIT new inner page");
      if (xl.innerIsParent) out.push("PICKSPLIT inner is parent");
      if (blocks.has(3)) out.push("PICKSPLIT parent page");
      return out;
    }
  }
  return [];
}

describe("SP-GiST redo against PostgreSQL 15", () => {
  const sampler = new RecordSampler([RM_SPGIST_ID]);
  const variants = new Map<string, number>();
  let report: VerifyReport;

  beforeAll(async () => {
    report = await verifyRedo({
      conf: { wal_consistency_checking: "spgist", wal_compression: "lz4" },
      setup: async (pg) => {
        await pg.psql(`
          CREATE TABLE sp (id int, pt point, t text, r int4range);
          CREATE INDEX sp_quad ON sp USING spgist (pt);
          CREATE INDEX sp_kd ON sp USING spgist (pt kd_point_ops);
          CREATE INDEX sp_text ON sp USING spgist (t);
          CREATE INDEX sp_range ON sp USING spgist (r);
          CREATE TABLE st (t text);
          CREATE INDEX st_text ON st USING spgist (t);
          CREATE TABLE sr (id int, t text);
          CREATE INDEX sr_text ON sr USING spgist (t);
        `);
      },
      workload: async (pg) => {
        // Long common prefixes first: the radix tree's inner tuples get long prefixes...
        await pg.psql(`SELECT setseed(0.11);
          INSERT INTO sp SELECT g, CASE WHEN g % 20 = 0 THEN NULL ELSE point(random() * 1000, random() * 1000) END,
            'http://www.example.com/docs/15/' || g, int4range(g % 977, g % 977 + (random() * 100)::int)
          FROM generate_series(1, 12000) g;`);
        // ...that later strings don't share (SPLIT_TUPLE), with new labels under them (ADD_NODE).
        await pg.psql(`SELECT setseed(0.12);
          INSERT INTO sp SELECT 20000 + g, point(random() * 1000, random() * 1000),
            (ARRAY['http://www.example.com/docs/14/', 'http://www.example.com/doc/', 'http://www.example.org/', 'https://example.com/', 'ftp://', ''])[1 + g % 6] || ${WORD},
            NULL
          FROM generate_series(1, 6000) g;`);
        // Inner tuples gaining many labels outgrow their page: ADD_NODE moves them elsewhere.
        await pg.psql(`SELECT setseed(0.14);
          INSERT INTO st SELECT translate(substr(md5(g::text), 1, 5), '0123456789abcdef', 'aabbccddaabbccdd') FROM generate_series(1, 3000) g;
          INSERT INTO st SELECT (SELECT string_agg(chr(48 + (random() * 74)::int), '') FROM generate_series(1, 5 + g % 2)) FROM generate_series(1, 12000) g;`);
        // A root that is still a leaf page: VACUUM_ROOT.
        await pg.psql(`INSERT INTO sr SELECT g, 'w' || g FROM generate_series(1, 60) g; DELETE FROM sr WHERE id % 3 = 0; VACUUM sr;`);
        // Dead leaves: VACUUM_LEAF; once no snapshot can need the redirects, VACUUM_REDIRECT.
        await pg.psql("DELETE FROM sp WHERE id % 3 = 0 OR (id > 20000 AND id % 5 = 0); VACUUM sp;");
        for (let i = 0; i < 3; i++) await pg.psql("SELECT txid_current();");
        await pg.psql("VACUUM sp;");
        // Inserts again: placeholders get replaced.
        await pg.psql(`SELECT setseed(0.13);
          INSERT INTO sp SELECT 40000 + g, point(random() * 1000, random() * 1000), 'http://www.example.com/docs/15/' || (g * 7), NULL
          FROM generate_series(1, 3000) g;`);
      },
      rmgrs: [RM_SPGIST_ID],
      onRecord: (rec) => {
        sampler.onRecord(rec);
        if (rec.rmid === RM_SPGIST_ID) for (const v of spgVariants(rec)) variants.set(v, (variants.get(v) ?? 0) + 1);
      },
    });
  }, 600_000);

  it("matches PostgreSQL's images on every checked block", () => {
    const msg = formatReport(report);
    expect(report.mismatches, msg).toEqual([]);
    expect(report.noBase, msg).toBe(0);
    const floors: [string, number][] = [
      ["SPGist/ADD_LEAF", 50_000],
      ["SPGist/MOVE_LEAFS", 1_000],
      ["SPGist/ADD_NODE", 500],
      ["SPGist/SPLIT_TUPLE", 5],
      ["SPGist/PICKSPLIT", 800],
      ["SPGist/VACUUM_LEAF", 100],
      ["SPGist/VACUUM_ROOT", 1],
      ["SPGist/VACUUM_REDIRECT", 50],
    ];
    for (const [kind, floor] of floors) expect(report.checked.get(kind) ?? 0, `${kind}\n${msg}`).toBeGreaterThanOrEqual(floor);
    // The redo paths within the info codes (records, by variant).
    const seen = `${msg}\nvariants: ${JSON.stringify([...variants].sort())}`;
    const variantFloors: [string, number][] = [
      ["ADD_LEAF new page", 1],
      ["ADD_LEAF chained to a head", 10_000],
      ["ADD_LEAF parent link", 10],
      ["ADD_LEAF nulls tree", 1_000],
      ["ADD_NODE in place", 100],
      ["MOVE_LEAFS new page", 10],
      ["PICKSPLIT root", 2],
      ["PICKSPLIT new dest page", 10],
      ["PICKSPLIT new inner page", 2],
      ["PICKSPLIT inner is parent", 10],
      ["PICKSPLIT parent page", 5],
      ["SPLIT_TUPLE same page", 1],
      ["SPLIT_TUPLE other page", 1],
    ];
    for (const [v, floor] of variantFloors) expect(variants.get(v) ?? 0, `${v}\n${seen}`).toBeGreaterThanOrEqual(floor);
    const moved = [...variants].filter(([v]) => v.startsWith("ADD_NODE moved")).reduce((n, [, c]) => n + c, 0);
    expect(moved, seen).toBeGreaterThanOrEqual(1);
  });

  it("decoders and redo fail only with corruption errors on real records cut short", () => {
    const problems: string[] = [];
    for (const list of sampler.samples.values()) for (const rec of list) problems.push(...checkTruncations(rec, decodeAll, spgistRedo));
    expect(problems.slice(0, 20)).toEqual([]);
    for (const [kind, list] of sampler.samples) {
      const rec = list[0]!;
      expect(() => decodeAll({ ...rec, mainData: rec.mainData.subarray(0, 5) }), kind).toThrow(CorruptionError);
    }
  });
});

describe("SP-GiST redo on hand-made malformed records", () => {
  /** A 16-byte leaf tuple: tupstate LIVE, size 16, nextOffset 0, heap pointer (0, 1). */
  const leaf = (size = 16): number[] => [
    (size << 2) & 0xff,
    (size >>> 6) & 0xff,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    ...new Array(Math.max(0, size - 12)).fill(0),
  ];
  /** ADD_LEAF main data: newPage, offnumLeaf, offnumHeadLeaf, offnumParent, nodeI, then the tuple. */
  const addLeaf = (newPage: boolean, offLeaf: number, offHead: number, offParent: number, nodeI: number, tuple: number[]): number[] => [
    newPage ? 1 : 0,
    0,
    offLeaf,
    0,
    offHead,
    0,
    offParent,
    0,
    nodeI,
    0,
    ...tuple,
  ];
  const newLeafPage = (): Uint8Array => {
    const p = new Uint8Array(BLCKSZ);
    spgistRedo.redo(fakeRecord(RM_SPGIST_ID, XLOG_SPGIST_ADD_LEAF, addLeaf(true, 1, 0, 0, 0, leaf()), [{ id: 0, willInit: true }]), 0, p);
    return p;
  };

  it("adds a leaf to a new page, and names the record in its errors", () => {
    const p = newLeafPage();
    expect(p[12]! | (p[13]! << 8)).toBe(28);
    // Offset 3 on a page of one tuple: PageAddItem would refuse, so is the record.
    const rec = fakeRecord(RM_SPGIST_ID, XLOG_SPGIST_ADD_LEAF, addLeaf(false, 3, 0, 0, 0, leaf()), [{ id: 0 }]);
    expect(() => spgistRedo.redo(rec, 0, p)).toThrow(/SPGist\/ADD_LEAF.*0\/1000028/);
  });

  it("refuses a leaf tuple whose size is below its header or beyond the record", () => {
    expect(() => decodeSpgAddLeaf(fakeRecord(RM_SPGIST_ID, XLOG_SPGIST_ADD_LEAF, addLeaf(true, 1, 0, 0, 0, leaf(4).slice(0, 12))))).toThrow(
      CorruptionError,
    );
    expect(() =>
      decodeSpgAddLeaf(fakeRecord(RM_SPGIST_ID, XLOG_SPGIST_ADD_LEAF, addLeaf(true, 1, 0, 0, 0, leaf(24).slice(0, 20)))),
    ).toThrow(CorruptionError);
  });

  it("refuses replacing a live tuple, a missing node, a bad parentBlk, and placeholders past the page", () => {
    // Offset 1 holds a live tuple: only placeholders may be replaced.
    const replace = fakeRecord(RM_SPGIST_ID, XLOG_SPGIST_ADD_LEAF, addLeaf(false, 1, 2, 0, 0, leaf()), [{ id: 0 }]);
    expect(() => spgistRedo.redo(replace, 0, newLeafPage())).toThrow(/not a placeholder/);
    // A parent link to node 9 of the leaf at offset 1 read as an inner tuple: its first word
    // (size 16 << 2) says 8 nodes.
    const parent = fakeRecord(RM_SPGIST_ID, XLOG_SPGIST_ADD_LEAF, addLeaf(false, 2, 0, 1, 9, leaf()), [{ id: 0 }, { id: 1 }]);
    expect(() => spgistRedo.redo(parent, 1, newLeafPage())).toThrow(/failed to find requested node 9/);
    const addNode = new Array(20).fill(0);
    addNode[5] = 7; // parentBlk
    expect(() => decodeSpgAddNode(fakeRecord(RM_SPGIST_ID, XLOG_SPGIST_ADD_NODE, [...addNode, 0, 0, 0, 0, 8, 0, 0, 0]))).toThrow(
      /parentBlk 7/,
    );
    const redirect = fakeRecord(RM_SPGIST_ID, XLOG_SPGIST_VACUUM_REDIRECT, [0, 0, 9, 0, 0, 0, 0, 0], [{ id: 0 }]);
    expect(() => spgistRedo.redo(redirect, 0, newLeafPage())).toThrow(/first placeholder 9/);
  });

  it("refuses unknown info codes", () => {
    expect(() => spgistRedo.redo(fakeRecord(RM_SPGIST_ID, 0x90, [], [{ id: 0 }]), 0, newLeafPage())).toThrow(UnsupportedError);
  });
});
