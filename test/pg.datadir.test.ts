/**
 * Datadir key map: key layout, directory encodings, DatadirWriter / DatadirSnapshot
 * semantics on a real timeline (TenantHarness), and reclaim of dropped relations through
 * collectKeyspace + image layers + GC.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import {
  CHECKPOINT_KEY,
  CONTROLFILE_KEY,
  collectKeyspace,
  DBDIR_KEY,
  DatadirSnapshot,
  DatadirWriter,
  datadirAt,
  DirectoryDecodeError,
  dbdirKeyRange,
  decodeDbDirectory,
  decodeRelDirectory,
  decodeSlruDirectory,
  decodeTwoPhaseDirectory,
  encodeDbDirectory,
  encodeRelDirectory,
  encodeSlruDirectory,
  encodeTwoPhaseDirectory,
  isDataKey,
  isRelBlockKey,
  isRelSizeKey,
  relBlockKey,
  relBlockOfKey,
  relDirEntry,
  relDirKey,
  relKeyRange,
  relmapFileKey,
  relSegmentPath,
  relSizeKey,
  relTag,
  SlruKind,
  slruBlockKey,
  slruSegmentSizeKey,
  twophaseFileKey,
} from "../src/pgdata/index.js";
import { basebackupTar } from "../src/pgdata/basebackup.js";
import { PendingValues } from "../src/pgdata/pending_values.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { type Key, keyFields, keyToHex, makeKey } from "../src/types/key.js";
import { asLsn, type Lsn } from "../src/types/lsn.js";
import { type Value, ValueTag } from "../src/types/value.js";
import { TenantHarness } from "./support/tenant_harness.js";

let h: TenantHarness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

function page(fill: number): Uint8Array {
  return new Uint8Array(8192).fill(fill);
}

describe("keys", () => {
  it("lays out keys as Neon does", async () => {
    const rel = relTag(1663, 5, 16384, 0);
    expect(keyToHex(relBlockKey(rel, 7))).toBe("00" + "0000067F" + "00000005" + "00004000" + "00" + "00000007");
    expect(keyFields(relSizeKey(rel)).field6).toBe(0xffffffff);
    expect(keyToHex(DBDIR_KEY)).toBe("0".repeat(36));
    expect(keyFields(relDirKey(1663, 5))).toEqual({ field1: 0, field2: 1663, field3: 5, field4: 0, field5: 0, field6: 1 });
    expect(keyFields(relmapFileKey(1663, 5)).field6).toBe(0);
    expect(keyFields(slruBlockKey(SlruKind.MultiXactOffsets, 3, 4))).toEqual({
      field1: 1,
      field2: 2,
      field3: 1,
      field4: 3,
      field5: 0,
      field6: 4,
    });
    expect(keyFields(slruSegmentSizeKey(SlruKind.Clog, 0)).field6).toBe(0xffffffff);
    expect(keyFields(twophaseFileKey(0x1_2345_6789 * 0x100 + 0xab))).toMatchObject({ field1: 2 });
    expect(keyFields(CONTROLFILE_KEY)).toMatchObject({ field1: 3, field6: 0 });
    expect(keyFields(CHECKPOINT_KEY)).toMatchObject({ field1: 3, field6: 1 });
    // Size key sorts right after the fork's blocks and inside rel_key_range.
    const r = relKeyRange(rel);
    expect(relBlockKey(rel, 0xfffffffe) < relSizeKey(rel)).toBe(true);
    expect(relSizeKey(rel) < r.end).toBe(true);
    expect(r.end).toBe(relBlockKey(relTag(1663, 5, 16384, 1), 0));
    const d = dbdirKeyRange(1663, 5);
    expect(d.start <= relmapFileKey(1663, 5) && relSizeKey(rel) < d.end && relBlockKey(relTag(1663, 6, 1, 0), 0) >= d.end).toBe(true);
    expect(isRelBlockKey(relBlockKey(rel, 1)) && !isRelBlockKey(relSizeKey(rel)) && isRelSizeKey(relSizeKey(rel))).toBe(true);
    expect(isDataKey(slruBlockKey(SlruKind.Clog, 0, 0)) && !isDataKey(relDirKey(1663, 5)) && !isDataKey(DBDIR_KEY)).toBe(true);
    expect(relBlockOfKey(relBlockKey(rel, 9))).toEqual({ rel, blkno: 9 });
    expect(() => relBlockKey(relTag(1663, 5, 0, 0), 0)).toThrow(/relnode 0/);
    expect(() => relBlockKey(relTag(1663, 5, 1, 4), 0)).toThrow(/fork/);
    expect(relSegmentPath(relTag(1663, 5, 16384, 1), 2)).toBe("base/5/16384_fsm.2");
    expect(relSegmentPath(relTag(1664, 0, 1262, 0), 0)).toBe("global/1262");
  });
});

describe("directory encodings", () => {
  it("round-trip and refuse bad bytes with a typed error", async () => {
    const db = new Map([
      ["1664/0", { spcnode: 1664, dbnode: 0, relmapExists: true }],
      ["1663/5", { spcnode: 1663, dbnode: 5, relmapExists: false }],
    ]);
    const enc = encodeDbDirectory(db);
    expect(decodeDbDirectory(enc)).toEqual(db);
    expect(encodeDbDirectory(decodeDbDirectory(enc))).toEqual(enc);
    const rels = new Set([relDirEntry(16384, 0), relDirEntry(16384, 2), relDirEntry(1259, 0)]);
    expect(decodeRelDirectory(encodeRelDirectory(rels))).toEqual(rels);
    expect(decodeSlruDirectory(encodeSlruDirectory(new Set([0, 5, 0xffffffff])))).toEqual(new Set([0, 5, 0xffffffff]));
    expect(decodeTwoPhaseDirectory(encodeTwoPhaseDirectory(new Set([7, 2 ** 40])))).toEqual(new Set([7, 2 ** 40]));
    expect(() => decodeRelDirectory(enc)).toThrow(DirectoryDecodeError);
    expect(() => decodeDbDirectory(enc.subarray(0, enc.length - 1))).toThrow(/does not match/);
    const bad = enc.slice();
    bad[1] = 9;
    expect(() => decodeDbDirectory(bad)).toThrow(/version/);
    const unordered = encodeSlruDirectory(new Set([1, 2]));
    unordered[8] = 3;
    expect(() => decodeSlruDirectory(unordered)).toThrow(/ascending/);
  });
});

describe("PendingValues", () => {
  it("behaves as a Map of key → value (order, replace, delete, delete ranges, bytes), with and without its index (property)", async () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("set" as const),
        key: fc.integer({ min: 0, max: 40 }),
        len: fc.integer({ min: 1, max: 9 }),
        tagged: fc.boolean(),
      }),
      fc.record({ kind: fc.constant("del" as const), from: fc.integer({ min: 0, max: 40 }), n: fc.integer({ min: 0, max: 6 }) }),
      fc.record({ kind: fc.constant("del1" as const), key: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ kind: fc.constant("clear" as const) }),
    );
    const key = (i: number): Key => makeKey(0, 1663, 5, 16384, 0, i);
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const p = new PendingValues();
        const model = new Map<Key, Value>();
        let seq = 0;
        for (const o of ops) {
          if (o.kind === "set") {
            const payload = new Uint8Array(o.len).fill(seq++ & 0xff);
            const whole = new Uint8Array(o.len + 1);
            whole[0] = ValueTag.PgRecord;
            whole.set(payload, 1);
            if (o.tagged) p.setTagged(key(o.key), ValueTag.PgRecord, payload);
            else p.setValue(key(o.key), whole);
            model.set(key(o.key), whole);
          } else if (o.kind === "del") {
            p.deleteRange(key(o.from), key(o.from + o.n));
            for (const k of [...model.keys()]) if (k >= key(o.from) && k < key(o.from + o.n)) model.delete(k);
          } else if (o.kind === "del1") {
            p.delete(key(o.key));
            model.delete(key(o.key));
          } else {
            p.clear();
            model.clear();
          }
          expect(p.size).toBe(model.size);
          expect(p.bytes).toBe([...model.values()].reduce((a, v) => a + v.length, 0));
        }
        const got: Array<[Key, number[]]> = [];
        p.putAll(
          {
            put: (k: Key, _lsn: Lsn, v: Value) => got.push([k, [...v]]),
            putTagged: (k: Key, _lsn: Lsn, tag: ValueTag, payload: Uint8Array) => got.push([k, [tag, ...payload]]),
          },
          asLsn(1),
        );
        expect(got).toEqual([...model].map(([k, v]) => [k, [...v]]));
      }),
      { numRuns: 200 },
    );
  });
});

describe("writer and reader", () => {
  async function setup(conf: Record<string, unknown> = {}): Promise<Timeline> {
    h = new TenantHarness({ keyspace: collectKeyspace, conf });
    const t = await h.create();
    return await t.createTimeline({ startLsn: asLsn(0x1000) });
  }

  it("creates, extends, truncates, drops relations; drops databases; logical size", async () => {
    const tl = await setup();
    const w = new DatadirWriter(tl);
    const rel = relTag(1663, 5, 16384, 0);
    const fsm = relTag(1663, 5, 16384, 1);
    w.begin(asLsn(0x1000));
    w.createDb(1663, 5);
    w.putRelmap(1663, 5, new Uint8Array(512).fill(7));
    w.createRel(rel);
    w.putRelPageImage(rel, 0, page(1));
    w.putRelPageImage(rel, 3, page(4)); // beyond EOF: blocks 1, 2 zero-filled
    // Metadata is visible inside the same modification.
    expect(w.relSize(rel)).toBe(4);
    expect(w.relExists(fsm)).toBe(false);
    w.commit();

    let s = new DatadirSnapshot(tl, asLsn(0x1000));
    expect(await s.listDbs()).toEqual([{ spcnode: 1663, dbnode: 5, relmapExists: true }]);
    expect(await s.relExists(rel)).toBe(true);
    expect(await s.relSize(rel)).toBe(4);
    expect(await s.relSize(fsm)).toBe(0); // nonexistent FSM fork → 0
    await expect(s.relSize(relTag(1663, 5, 99999, 0))).rejects.toThrow(/does not exist/);
    expect((await s.getRelPage(rel, 0))[0]).toBe(1);
    expect(await s.getRelPage(rel, 2)).toEqual(page(0));
    expect((await s.getRelPage(rel, 3))[100]).toBe(4);
    expect(await s.getRelPage(rel, 100)).toEqual(page(0)); // beyond EOF
    expect(await s.relmap(1663, 5)).toEqual(new Uint8Array(512).fill(7));
    expect(await s.logicalSize()).toBe(4 * 8192);

    w.begin(asLsn(0x2000));
    w.truncateRel(rel, 1);
    w.createRel(fsm, 2);
    w.commit();
    s = new DatadirSnapshot(tl, asLsn(0x2000));
    expect(await s.relSize(rel)).toBe(1);
    expect(await s.getRelPage(rel, 3)).toEqual(page(0));
    expect(await s.listRels(1663, 5)).toEqual([rel, fsm]);
    expect(await s.logicalSize()).toBe(3 * 8192);
    // Re-extension after truncation must not resurrect the old block 3.
    w.begin(asLsn(0x3000));
    w.putRelPageImage(rel, 4, page(9));
    w.commit();
    s = new DatadirSnapshot(tl, asLsn(0x3000));
    expect(await s.getRelPage(rel, 3)).toEqual(page(0));
    expect((await s.getRelPage(rel, 4))[0]).toBe(9);
    // Old LSNs still read the old state.
    expect((await new DatadirSnapshot(tl, asLsn(0x1000)).getRelPage(rel, 3))[0]).toBe(4);

    w.begin(asLsn(0x4000));
    w.dropRel(rel);
    w.commit();
    s = new DatadirSnapshot(tl, asLsn(0x4000));
    expect(await s.relExists(rel)).toBe(false);
    expect(await s.listRels(1663, 5)).toEqual([fsm]);
    // Re-created relnode starts empty.
    w.begin(asLsn(0x5000));
    w.createRel(rel);
    w.commit();
    expect(await new DatadirSnapshot(tl, asLsn(0x5000)).relSize(rel)).toBe(0);

    w.begin(asLsn(0x6000));
    w.dropDb(1663, 5);
    w.commit();
    s = new DatadirSnapshot(tl, asLsn(0x6000));
    expect(await s.listDbs()).toEqual([]);
    expect(await s.relExists(fsm)).toBe(false);
    expect(await s.listRels(1663, 5)).toEqual([]);
    expect(await s.logicalSize()).toBe(0);
    // A database created again has no relations from before.
    w.begin(asLsn(0x7000));
    w.createDb(1663, 5);
    w.commit();
    expect(await new DatadirSnapshot(tl, asLsn(0x7000)).listRels(1663, 5)).toEqual([]);
  });

  it("SLRU segments, two-phase files, control file, checkpoint", async () => {
    const tl = await setup();
    const w = new DatadirWriter(tl);
    w.begin(asLsn(0x1000));
    const seg = new Uint8Array(3 * 8192);
    seg[8192] = 0x55;
    w.putSlruSegment(SlruKind.Clog, 0, seg);
    w.putSlruPageImage(SlruKind.MultiXactOffsets, 0, 1, page(3));
    w.putTwophase(1234, new Uint8Array([1, 2, 3]));
    w.putControlFile(new Uint8Array(8192).fill(1));
    w.putCheckpoint(new Uint8Array(88).fill(2));
    w.commit();
    w.begin(asLsn(0x2000));
    w.putTwophase(1235, new Uint8Array([4]));
    w.dropTwophase(1234);
    w.commit();
    const s = new DatadirSnapshot(tl, asLsn(0x2000));
    expect(await s.slruSegments(SlruKind.Clog)).toEqual([0]);
    expect(await s.getSlruSegment(SlruKind.Clog, 0)).toEqual(seg);
    expect(await s.slruSegmentSize(SlruKind.MultiXactOffsets, 0)).toBe(2);
    expect((await s.getSlruPage(SlruKind.MultiXactOffsets, 0, 1))[0]).toBe(3);
    expect(await s.twophaseXids()).toEqual([1235]);
    expect(await s.twophaseFile(1235)).toEqual(new Uint8Array([4]));
    expect(await new DatadirSnapshot(tl, asLsn(0x1000)).twophaseXids()).toEqual([1234]);
    expect((await s.controlFile())![0]).toBe(1);
    expect((await s.checkpoint())!.length).toBe(88);
    // Keyspace: sorted, non-overlapping, holds what exists.
    const ks = await s.keyspace();
    for (let i = 1; i < ks.length; i++) expect(ks[i - 1]!.end < ks[i]!.start).toBe(true);
    const inKs = (k: string) => ks.some((r) => r.start <= k && k < r.end);
    expect(inKs(slruBlockKey(SlruKind.Clog, 0, 2))).toBe(true);
    expect(inKs(slruBlockKey(SlruKind.Clog, 0, 3))).toBe(false);
    expect(inKs(twophaseFileKey(1235)) && !inKs(twophaseFileKey(1234))).toBe(true);
    expect(inKs(CONTROLFILE_KEY) && inKs(CHECKPOINT_KEY) && inKs(DBDIR_KEY)).toBe(true);
  });

  it("keyspace excludes dropped relations; after compaction + GC their data is gone", async () => {
    const tl = await setup({ image_creation_threshold: 1, gc_horizon: 0, pitr_interval: 0 });
    const t = h!.tenant;
    const w = new DatadirWriter(tl);
    const keep = relTag(1663, 5, 16384, 0);
    const gone = relTag(1663, 5, 16385, 0);
    const goneDb = relTag(1663, 6, 16386, 0);
    w.begin(asLsn(0x1000));
    for (let b = 0; b < 5; b++) {
      w.putRelPageImage(keep, b, page(b + 1));
      w.putRelPageImage(gone, b, page(b + 11));
      w.putRelPageImage(goneDb, b, page(b + 21));
    }
    w.commit();
    await tl.checkpoint();
    let ks = await collectKeyspace(tl, asLsn(0x1000));
    const inKs = (k: string) => ks.some((r) => r.start <= k && k < r.end);
    expect(inKs(relBlockKey(gone, 4)) && inKs(relBlockKey(goneDb, 0))).toBe(true);

    w.begin(asLsn(0x2000));
    w.dropRel(gone);
    w.dropDb(1663, 6);
    w.putRelPageImage(keep, 0, page(99));
    w.commit();
    await tl.checkpoint();
    ks = await collectKeyspace(tl, asLsn(0x2000));
    expect(inKs(relBlockKey(keep, 4)) && inKs(relSizeKey(keep))).toBe(true);
    expect(inKs(relBlockKey(keep, 5))).toBe(false);
    expect(inKs(relBlockKey(gone, 0)) || inKs(relSizeKey(gone)) || inKs(relBlockKey(goneDb, 0)) || inKs(relDirKey(1663, 6))).toBe(false);

    await t.compact({ forceImages: true });
    await t.gc({ timeline: tl, cutoffLsn: asLsn(0x2000) });
    expect(tl.layerMap.layers.every((l) => l.desc.kind === "image")).toBe(true);
    const s = new DatadirSnapshot(tl, asLsn(0x2000));
    expect((await s.getRelPage(keep, 0))[0]).toBe(99);
    expect((await s.getRelPage(keep, 4))[0]).toBe(5);
    expect(await s.relExists(gone)).toBe(false);
    // The raw keys of the dropped relations are gone from storage.
    expect(await tl.get(relBlockKey(gone, 2), asLsn(0x2000))).toBe(null);
    expect(await tl.get(relBlockKey(goneDb, 2), asLsn(0x2000))).toBe(null);
    expect(await tl.get(relSizeKey(gone), asLsn(0x2000))).toBe(null);
    // Below the GC cutoff: typed errors from reads and base backups.
    await expect(datadirAt(tl, asLsn(0x1000))).rejects.toMatchObject({ code: "gc_cutoff" });
    await expect(basebackupTar(tl, asLsn(0x1000))).rejects.toMatchObject({ code: "gc_cutoff" });
    // Still right after a restart (layers on disk).
    const t2 = await h!.restart(true);
    const tl2 = t2.getTimeline(tl.timelineId);
    expect((await new DatadirSnapshot(tl2, asLsn(0x2000)).getRelPage(keep, 4))[0]).toBe(5);
    expect(await new DatadirSnapshot(tl2, asLsn(0x2000)).logicalSize()).toBe(5 * 8192);
  });

  it("big modifications put data early and stay consistent", async () => {
    const tl = await setup();
    const w = new DatadirWriter(tl);
    const rel = relTag(1663, 5, 16384, 0);
    w.begin(asLsn(0x1000));
    for (let b = 0; b < 2000; b++) w.putRelPageImage(rel, b, page(b & 0xff)); // 16 MB > 8 MiB pending
    expect(w.commit()).toBeGreaterThan(2000);
    const s = new DatadirSnapshot(tl, asLsn(0x1000));
    expect(await s.relSize(rel)).toBe(2000);
    expect((await s.getRelPage(rel, 1999))[0]).toBe(1999 & 0xff);
    expect(() => w.begin(asLsn(0x800))).toThrow(/below last_record_lsn/);
  });
});
