import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { testAppend, testInit, testWriteAt } from "./support/test_redo.js";
import { type Key, KEY_MAX, makeKey } from "../src/types/key.js";
import { imageValue, nativeValue } from "../src/types/value.js";
import { REDO_OFFLOAD_MIN_RECORDS } from "../src/tenant/timeline/index.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { asLsn } from "../src/types/lsn.js";

const dec = new TextDecoder();
const k = (n: number): Key => makeKey(0, 1663, 5, 1000, 0, n);
const str = (b: Uint8Array | null): string | null => (b === null ? null : dec.decode(b));

let h: TenantHarness;
afterEach(async () => {
  await h?.close();
});

describe("timeline get/put", () => {
  it("reads back values from the open layer, L0 files, L1 files, image layers and after restart", async () => {
    h = new TenantHarness({ conf: { compaction_threshold: 2, image_creation_threshold: 1 } });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    tl.put(k(1), asLsn(0x100), imageValue(new TextEncoder().encode("a")));
    tl.finishWrite(asLsn(0x100));
    const expected: string[] = ["a"];
    let lsn = 0x100;
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 5; i++) {
        lsn += 8;
        const c = String.fromCharCode(98 + ((round * 5 + i) % 26));
        tl.put(k(1), asLsn(lsn), testAppend(c));
        tl.put(k(2 + i), asLsn(lsn), testInit(`v${round}`));
        tl.finishWrite(asLsn(lsn));
        expected.push(c);
      }
      expect(str(await tl.get(k(1), asLsn(lsn)))).toBe(expected.join(""));
      await tl.checkpoint();
      expect(tl.diskConsistentLsn).toBe(lsn);
    }
    expect(tl.layerMap.l0Layers().length).toBe(6);
    expect(str(await tl.get(k(1), asLsn(lsn)))).toBe(expected.join(""));
    // Each historic version is still there.
    expect(str(await tl.get(k(1), asLsn(0x100 + 8 * 3)))).toBe(expected.slice(0, 4).join(""));
    expect(str(await tl.get(k(3), asLsn(0x100 + 8)))).toBe(null);

    const res = await t.compact();
    expect(res.l0Compacted).toBe(6);
    expect(tl.layerMap.l0Layers().length).toBe(0);
    expect(res.imagesCreated).toBeGreaterThan(0);
    expect(str(await tl.get(k(1), asLsn(lsn)))).toBe(expected.join(""));
    expect(str(await tl.get(k(1), asLsn(0x100 + 8 * 7)))).toBe(expected.slice(0, 8).join(""));
    expect(str(await tl.get(k(4), asLsn(lsn)))).toBe("v5");

    const t2 = await h.restart(false);
    const tl2 = t2.getTimeline(tl.timelineId);
    expect(tl2.lastRecordLsn).toBe(lsn);
    expect(str(await tl2.get(k(1), asLsn(lsn)))).toBe(expected.join(""));
    expect(str(await tl2.get(k(1), asLsn(0x100 + 8 * 11)))).toBe(expected.slice(0, 12).join(""));
    expect(str(await tl2.get(k(6), asLsn(lsn)))).toBe("v5");
  });

  it("refuses LSNs going backwards and puts below a frozen layer", async () => {
    h = new TenantHarness();
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
    tl.put(k(1), asLsn(0x1010), testInit("x"));
    tl.finishWrite(asLsn(0x1010));
    expect(() => tl.put(k(1), asLsn(0x1008), testAppend("y"))).toThrow(/goes backwards/);
    await tl.checkpoint();
    expect(() => tl.put(k(1), asLsn(0x1010), testAppend("y"))).toThrow(/below the open layer start/);
    expect(() => tl.finishWrite(asLsn(0x1000))).toThrow(/backwards/);
  });

  it("waits for ingest to reach a read LSN, and times out with a clear error", async () => {
    h = new TenantHarness();
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
    tl.put(k(1), asLsn(0x1000), testInit("x"));
    tl.finishWrite(asLsn(0x1000));
    const pending = tl.get(k(1), asLsn(0x1100));
    setTimeout(() => {
      tl.put(k(1), asLsn(0x1100), testAppend("y"));
      tl.finishWrite(asLsn(0x1100));
    }, 50);
    expect(str(await pending)).toBe("xy");
    await expect(tl.get(k(1), asLsn(0x2000))).rejects.toThrow(
      /timed out after 2000 ms waiting for WAL to reach 0\/2000: last_record_lsn is 0\/1100/,
    );
  });

  it("serves repeated reads of a hot page from the materialized page cache", async () => {
    h = new TenantHarness();
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x1000) });
    const page = new Uint8Array(8192);
    tl.put(k(1), asLsn(0x1000), imageValue(page));
    let lsn = 0x1000;
    for (let i = 0; i < 20; i++) {
      lsn += 8;
      tl.put(k(1), asLsn(lsn), testWriteAt(i * 10, new Uint8Array([i + 1])));
    }
    tl.finishWrite(asLsn(lsn));
    const a = await tl.get(k(1), asLsn(lsn));
    expect(tl.counters.redos).toBe(1);
    const b = await tl.get(k(1), asLsn(lsn));
    expect(b).toEqual(a);
    expect(tl.counters.materializedHits).toBe(1);
    expect(tl.counters.redos).toBe(1);
    // One more record: the cached version is the base, only the new record is replayed.
    lsn += 8;
    tl.put(k(1), asLsn(lsn), testWriteAt(500, new Uint8Array([77])));
    tl.finishWrite(asLsn(lsn));
    const c = (await tl.get(k(1), asLsn(lsn)))!;
    expect(c[500]).toBe(77);
    expect(c[190]).toBe(20);
    expect(tl.counters.materializedHits).toBe(2);
    // Bulk reads (fillCache = false) reconstruct without filling the cache.
    tl.put(k(2), asLsn(lsn), imageValue(page));
    lsn += 8;
    tl.put(k(2), asLsn(lsn), testWriteAt(7, new Uint8Array([9])));
    tl.finishWrite(asLsn(lsn));
    const hitsBefore = tl.counters.materializedHits;
    expect(tl.getNow(k(2), asLsn(lsn), false)![7]).toBe(9);
    expect(tl.getNow(k(2), asLsn(lsn), false)![7]).toBe(9);
    expect(tl.counters.materializedHits).toBe(hitsBefore);
    expect(tl.getNow(k(2), asLsn(lsn))![7]).toBe(9);
    expect(tl.getNow(k(2), asLsn(lsn))![7]).toBe(9);
    expect(tl.counters.materializedHits).toBe(hitsBefore + 1);
    // An older LSN still reads the older version.
    const old = (await tl.get(k(1), asLsn(0x1000 + 8 * 5)))!;
    expect(old[40]).toBe(5);
    expect(old[50]).toBe(0);
  });
});

describe("branching", () => {
  it("a branch reads its ancestor below the branch point and its own writes above", async () => {
    h = new TenantHarness();
    const t = await h.create();
    const main = await t.createTimeline({ startLsn: asLsn(0x100) });
    main.put(k(1), asLsn(0x100), testInit("m"));
    main.finishWrite(asLsn(0x100));
    main.put(k(1), asLsn(0x200), testAppend("1"));
    main.finishWrite(asLsn(0x200));
    await main.checkpoint();
    main.put(k(1), asLsn(0x300), testAppend("2"));
    main.finishWrite(asLsn(0x300));

    const br = await t.createTimeline({ ancestorId: main.timelineId, ancestorLsn: asLsn(0x200) });
    expect(str(await br.get(k(1), asLsn(0x200)))).toBe("m1");
    br.put(k(1), asLsn(0x280), testAppend("b"));
    br.put(k(9), asLsn(0x280), testInit("only-on-branch"));
    br.finishWrite(asLsn(0x280));
    expect(str(await br.get(k(1), asLsn(0x280)))).toBe("m1b");
    expect(str(await main.get(k(1), asLsn(0x300)))).toBe("m12");
    expect(await main.get(k(9), asLsn(0x300))).toBe(null);
    expect(str(await br.get(k(9), asLsn(0x280)))).toBe("only-on-branch");

    await expect(t.createTimeline({ ancestorId: main.timelineId, ancestorLsn: asLsn(0x400) })).rejects.toThrow(
      /beyond the ancestor's last record LSN/,
    );

    // Restart: the branch still resolves through its ancestor.
    await br.checkpoint();
    await main.checkpoint();
    const t2 = await h.restart(false);
    const br2 = t2.getTimeline(br.timelineId);
    expect(str(await br2.get(k(1), asLsn(0x280)))).toBe("m1b");
    expect(str(await t2.getTimeline(main.timelineId).get(k(1), asLsn(0x300)))).toBe("m12");
  });
});

describe("gc", () => {
  it("removes layers covered by newer images, refuses reads and branches below the cutoff, keeps what a branch needs", async () => {
    h = new TenantHarness({ conf: { compaction_threshold: 100, image_creation_threshold: 1, gc_horizon: 0, pitr_interval: 0 } });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    let lsn = 0x100;
    tl.put(k(1), asLsn(lsn), testInit("0"));
    tl.finishWrite(asLsn(lsn));
    for (let i = 1; i <= 4; i++) {
      lsn += 0x100;
      tl.put(k(1), asLsn(lsn), testAppend(String(i)));
      tl.finishWrite(asLsn(lsn));
      await tl.checkpoint();
    }
    const branchLsn = 0x300;
    const child = await t.createTimeline({ ancestorId: tl.timelineId, ancestorLsn: asLsn(branchLsn) });
    await t.compact({ forceImages: true }); // images at 0x500
    const before = tl.layerMap.size;
    const removed = await t.gc({ timeline: tl, cutoffLsn: asLsn(lsn) });
    expect(removed).toBeGreaterThan(0);
    expect(tl.layerMap.size).toBe(before - removed);
    // Layers that start at or below the branch point survive: the child still reads them.
    expect(str(await child.get(k(1), asLsn(branchLsn)))).toBe("012");
    expect(str(await tl.get(k(1), asLsn(lsn)))).toBe("01234");
    await expect(tl.get(k(1), asLsn(0x400))).rejects.toThrow(/garbage collected/);
    await expect(t.createTimeline({ ancestorId: tl.timelineId, ancestorLsn: asLsn(0x400) })).rejects.toThrow(/less than latest GC cutoff/);
    const t2 = await h.restart(false);
    const tl2 = t2.getTimeline(tl.timelineId);
    expect(tl2.latestGcCutoffLsn).toBe(lsn);
    expect(str(await tl2.get(k(1), asLsn(lsn)))).toBe("01234");
  });

  it("reclaims keys that left the keyspace: image layers don't copy them, GC drops the old layers", async () => {
    let dropped = false;
    h = new TenantHarness({
      conf: { image_creation_threshold: 1, gc_horizon: 0, pitr_interval: 0 },
      keyspace: () => (dropped ? [{ start: k(0), end: k(10) }] : [{ start: k(0), end: KEY_MAX }]),
    });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    for (let i = 0; i < 20; i++) tl.put(k(i), asLsn(0x100), testInit(`v${i}`));
    tl.finishWrite(asLsn(0x100));
    await tl.checkpoint();
    expect(str(await tl.get(k(15), asLsn(0x100)))).toBe("v15");
    dropped = true; // keys 10.. are "deleted" as of now
    tl.put(k(0), asLsn(0x200), testAppend("!"));
    tl.finishWrite(asLsn(0x200));
    await tl.checkpoint();
    await t.compact({ forceImages: true });
    await t.gc({ timeline: tl, cutoffLsn: asLsn(0x200) });
    expect(tl.layerMap.layers.every((l) => l.desc.kind === "image")).toBe(true);
    expect(str(await tl.get(k(0), asLsn(0x200)))).toBe("v0!");
    expect(str(await tl.get(k(9), asLsn(0x200)))).toBe("v9");
    expect(await tl.get(k(15), asLsn(0x200))).toBe(null);
  });
});

describe("failure handling", () => {
  it("a flush requested while the flush loop is not running is an error saying which state", async () => {
    h = new TenantHarness();
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    tl.put(k(1), asLsn(0x100), testInit("x"));
    tl.finishWrite(asLsn(0x100));
    await t.shutdown(false);
    await expect(tl.checkpoint()).rejects.toThrow(/is Stopping/);
    expect(tl.flushLoopState).toBe("exited");
  });

  it("a tenant whose timeline metadata is corrupt loads as Broken with the reason; the file names the block", async () => {
    h = new TenantHarness();
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    tl.put(k(1), asLsn(0x100), testInit("x"));
    tl.finishWrite(asLsn(0x100));
    await tl.checkpoint();
    await t.shutdown(false);
    const md = join(tl.dir, "metadata");
    const bytes = readFileSync(md);
    bytes[bytes.length - 3]! ^= 0x20;
    writeFileSync(md, bytes);
    const t2 = h.load();
    expect(t2.state).toBe("Broken");
    expect(t2.brokenReason).toMatch(/corrupt file .*metadata at block 0: checksum mismatch/);
    expect(() => t2.getTimeline(tl.timelineId)).toThrow(/is Broken/);
  });

  it("a corrupt layer file fails the read with an error naming the file, and the timeline keeps serving other data", async () => {
    h = new TenantHarness();
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    tl.put(k(1), asLsn(0x100), testInit("on-disk"));
    tl.finishWrite(asLsn(0x100));
    await tl.checkpoint();
    const t2 = await h.restart(false);
    const tl2 = t2.getTimeline(tl.timelineId);
    const layer = tl2.layerMap.layers[0]!;
    const bytes = readFileSync(layer.path);
    bytes[8192 + 40]! ^= 0xff; // inside the values region
    writeFileSync(layer.path, bytes);
    await expect(tl2.get(k(1), asLsn(0x100))).rejects.toThrow(new RegExp(`corrupt file .*${layer.desc.fileName} at block \\d+`));
    tl2.put(k(2), asLsn(0x200), testInit("fresh"));
    tl2.finishWrite(asLsn(0x200));
    expect(str(await tl2.get(k(2), asLsn(0x200)))).toBe("fresh");
  });

  it("startup removes temp and ephemeral leftovers", async () => {
    h = new TenantHarness();
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    tl.put(k(1), asLsn(0x100), testInit("x"));
    tl.finishWrite(asLsn(0x100));
    await t.shutdown(false);
    writeFileSync(join(tl.dir, "metadata.___temp"), "half-written");
    writeFileSync(join(tl.dir, "ephemeral-99"), "spill");
    const t2 = h.load();
    expect(t2.state).toBe("Active");
    expect(readdirSync(tl.dir).filter((n) => n.endsWith(".___temp") || n.startsWith("ephemeral-"))).toEqual([]);
    // Unflushed data is gone (it would be re-ingested from WAL), nothing else is.
    expect(await t2.getTimeline(tl.timelineId).get(k(1), asLsn(0x100))).toBe(null);
  });

  it("reads with long record chains are redone on the redo pool, with the same result; its errors keep their type", async () => {
    h = new TenantHarness({ conf: { materialized_page_cache: false } });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    let lsn = 0x100;
    tl.put(k(1), asLsn(lsn), testInit("x"));
    tl.put(k(2), asLsn(lsn), testInit("y"));
    const expected = ["x"];
    for (let i = 0; i < REDO_OFFLOAD_MIN_RECORDS + 36; i++) {
      lsn += 8;
      const c = String.fromCharCode(97 + (i % 26));
      tl.put(k(1), asLsn(lsn), testAppend(c));
      expected.push(c);
    }
    // A short chain, and a record the redo manager refuses at the end of a long one.
    tl.put(k(2), asLsn(lsn), testAppend("z"));
    for (let i = 0; i < REDO_OFFLOAD_MIN_RECORDS; i++) tl.put(k(3), asLsn(0x100 + 8 * i), i === 0 ? testInit("w") : testAppend("w"));
    tl.put(k(3), asLsn(0x100 + 8 * REDO_OFFLOAD_MIN_RECORDS), nativeValue(new Uint8Array([0x7e])));
    lsn = Math.max(lsn, 0x100 + 8 * REDO_OFFLOAD_MIN_RECORDS);
    tl.finishWrite(asLsn(lsn));

    const before = tl.counters.offloadedRedos;
    expect(str(await tl.get(k(1), asLsn(lsn)))).toBe(expected.join(""));
    expect(tl.counters.offloadedRedos).toBe(before + 1);
    // The same read on the main thread (getNow) gives the same bytes.
    expect(str(tl.getNow(k(1), asLsn(lsn)))).toBe(expected.join(""));
    // A mid-chain version, and a short chain: inline.
    expect(str(await tl.get(k(1), asLsn(0x100 + 8 * 10)))).toBe(expected.slice(0, 11).join(""));
    expect(str(await tl.get(k(2), asLsn(lsn)))).toBe("yz");
    expect(tl.counters.offloadedRedos).toBe(before + 1);
    await expect(tl.get(k(3), asLsn(lsn))).rejects.toMatchObject({
      code: "unsupported",
      message: expect.stringContaining("unknown op 126"),
    });
    expect(tl.counters.offloadedRedos).toBe(before + 1);
  });
});
