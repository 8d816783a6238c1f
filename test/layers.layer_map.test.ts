/**
 * LayerMap (src/layers/layer_map.ts) on descriptors alone: which layer search() picks and
 * down to which floor (L0 only, partial-range L1 deltas, images newer / older than a delta,
 * an image inside a delta's LSN range, endLsn inside a delta, nothing left), the GC and
 * image-creation queries (imageCoverageExists, newestImageCovering, countDeltas), and
 * with(added, removed) leaving the original untouched. A property test walks search() down
 * random layer sets and checks the windows: disjoint, strictly decreasing, complete.
 * Also planGc (src/layers/gc_plan.ts): Neon's worked example, images' inclusive LSN,
 * retained branch points and partial image coverage.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { planGc } from "../src/layers/gc_plan.js";
import { type HasDesc, LayerMap } from "../src/layers/layer_map.js";
import { type LayerDesc, layerName } from "../src/layers/layer_name.js";
import { AssertionError } from "../src/types/assert.js";
import { KEY_MAX, KEY_MIN, type Key, type KeyRange, makeKey } from "../src/types/key.js";
import { asLsn, type Lsn } from "../src/types/lsn.js";

/** Key number n (block n of one relation); k(0) > KEY_MIN and k(n) < KEY_MAX. */
function k(n: number): Key {
  return makeKey(0, 1663, 5, 16384, 0, n);
}
const ALL: KeyRange = { start: KEY_MIN, end: KEY_MAX };

interface L extends HasDesc {
  readonly tag: string;
}

function delta(keys: KeyRange, start: Lsn, end: Lsn): L {
  const desc: LayerDesc = {
    kind: "delta",
    keyRange: keys,
    lsnRange: { start, end },
    fileName: layerName("delta", keys, { start, end }),
    fileSize: 0,
  };
  return { desc, tag: `D${keys === ALL ? "" : "1"}[${start},${end})` };
}
function image(keys: KeyRange, lsn: Lsn): L {
  const desc: LayerDesc = {
    kind: "image",
    keyRange: keys,
    lsnRange: { start: lsn, end: asLsn(lsn + 1) },
    fileName: layerName("image", keys, { start: lsn, end: asLsn(lsn + 1) }),
    fileSize: 0,
  };
  return { desc, tag: `I@${lsn}` };
}
function range(a: number, b: number): KeyRange {
  return { start: k(a), end: k(b) };
}

/** search() as a compact string: "tag floor", or "null". */
function s(map: LayerMap<L>, key: Key, end: Lsn): string {
  const r = map.search(key, end);
  return r === null ? "null" : `${r.layer.tag} ${r.floor}`;
}

describe("LayerMap.search", () => {
  it("an empty map has nothing", () => {
    const m = LayerMap.empty<L>();
    expect(m.size).toBe(0);
    expect(m.search(k(1), asLsn(1000))).toBeNull();
    expect(m.search(KEY_MIN, asLsn(1000))).toBeNull();
  });

  it("L0 only: the newest delta starting below endLsn, read down to its start", () => {
    const m = new LayerMap([delta(ALL, asLsn(0), asLsn(100)), delta(ALL, asLsn(200), asLsn(300)), delta(ALL, asLsn(100), asLsn(200))]);
    expect(m.l0Layers().map((l) => l.tag)).toEqual(["D[200,300)", "D[100,200)", "D[0,100)"]);
    expect(s(m, k(7), asLsn(1000))).toBe("D[200,300) 200");
    expect(s(m, k(7), asLsn(300))).toBe("D[200,300) 200");
    expect(s(m, k(7), asLsn(250))).toBe("D[200,300) 200"); // endLsn inside the delta
    expect(s(m, k(7), asLsn(201))).toBe("D[200,300) 200");
    expect(s(m, k(7), asLsn(200))).toBe("D[100,200) 100");
    expect(s(m, k(7), asLsn(1))).toBe("D[0,100) 0");
    expect(s(m, k(7), asLsn(0))).toBe("null");
    // L0 covers every key, including the extremes.
    expect(s(m, KEY_MIN, asLsn(1000))).toBe("D[200,300) 200");
    expect(s(m, "\xff".repeat(17).concat("\xfe") as Key, asLsn(1000))).toBe("D[200,300) 200");
  });

  it("L1 deltas answer only inside their (half-open) key range", () => {
    const m = new LayerMap([
      delta(ALL, asLsn(0), asLsn(100)),
      delta(range(10, 20), asLsn(100), asLsn(200)),
      delta(range(20, 30), asLsn(100), asLsn(200)),
    ]);
    expect(s(m, k(9), asLsn(1000))).toBe("D[0,100) 0");
    expect(s(m, k(10), asLsn(1000))).toBe("D1[100,200) 100");
    expect(m.search(k(19), asLsn(1000))?.layer.desc.keyRange.start).toBe(k(10));
    expect(m.search(k(20), asLsn(1000))?.layer.desc.keyRange.start).toBe(k(20));
    expect(s(m, k(30), asLsn(1000))).toBe("D[0,100) 0");
    expect(s(m, k(15), asLsn(100))).toBe("D[0,100) 0");
    // Without the L0, keys outside every L1 range have nothing.
    const m1 = new LayerMap([delta(range(10, 20), asLsn(100), asLsn(200))]);
    expect(s(m1, k(9), asLsn(1000))).toBe("null");
    expect(s(m1, k(20), asLsn(1000))).toBe("null");
    expect(s(m1, k(15), asLsn(100))).toBe("null");
  });

  it("an L1 newer than the newest L0 wins, an older one loses", () => {
    const m = new LayerMap([
      delta(ALL, asLsn(0), asLsn(100)),
      delta(range(10, 20), asLsn(100), asLsn(200)),
      delta(ALL, asLsn(200), asLsn(300)),
    ]);
    expect(s(m, k(15), asLsn(1000))).toBe("D[200,300) 200");
    expect(s(m, k(15), asLsn(200))).toBe("D1[100,200) 100");
    expect(s(m, k(15), asLsn(100))).toBe("D[0,100) 0");
  });

  it("an image newer than the newest delta wins; below it the delta is read", () => {
    const m = new LayerMap([delta(ALL, asLsn(100), asLsn(200)), image(range(10, 20), asLsn(300))]);
    expect(s(m, k(15), asLsn(1000))).toBe("I@300 300");
    expect(s(m, k(15), asLsn(301))).toBe("I@300 300");
    expect(s(m, k(15), asLsn(300))).toBe("D[100,200) 100");
    // A key outside the image's range never sees it.
    expect(s(m, k(20), asLsn(1000))).toBe("D[100,200) 100");
  });

  it("an image at a delta's last LSN supersedes the delta (images hold values up to and including their LSN)", () => {
    const m = new LayerMap([delta(ALL, asLsn(100), asLsn(200)), image(range(10, 20), asLsn(199))]);
    expect(s(m, k(15), asLsn(1000))).toBe("I@199 199");
    expect(s(m, k(15), asLsn(199))).toBe("D[100,200) 100");
  });

  it("an image older than the delta: the delta is read down to its start, then the image", () => {
    const m = new LayerMap([image(range(10, 20), asLsn(100)), delta(range(0, 30), asLsn(150), asLsn(300))]);
    expect(s(m, k(15), asLsn(1000))).toBe("D1[150,300) 150");
    expect(s(m, k(15), asLsn(150))).toBe("I@100 100");
    expect(s(m, k(15), asLsn(100))).toBe("null");
  });

  it("an image inside a delta's LSN range: the delta is read only down to image+1", () => {
    const m = new LayerMap([delta(ALL, asLsn(100), asLsn(300)), image(range(10, 20), asLsn(200))]);
    expect(s(m, k(15), asLsn(1000))).toBe("D[100,300) 201");
    expect(s(m, k(15), asLsn(201))).toBe("I@200 200");
    expect(s(m, k(15), asLsn(200))).toBe("D[100,300) 100");
    // endLsn in the middle of the delta, above the image.
    expect(s(m, k(15), asLsn(250))).toBe("D[100,300) 201");
    // endLsn in the middle of the delta, below the image: the image is not a candidate.
    expect(s(m, k(15), asLsn(150))).toBe("D[100,300) 100");
    // A key the image does not cover reads the whole delta.
    expect(s(m, k(25), asLsn(1000))).toBe("D[100,300) 100");
  });

  it("the newest of several images below endLsn is chosen", () => {
    const m = new LayerMap([image(range(10, 20), asLsn(100)), image(range(10, 20), asLsn(300)), image(range(0, 40), asLsn(200))]);
    expect(s(m, k(15), asLsn(1000))).toBe("I@300 300");
    expect(s(m, k(15), asLsn(300))).toBe("I@200 200");
    expect(s(m, k(15), asLsn(200))).toBe("I@100 100");
    expect(s(m, k(35), asLsn(1000))).toBe("I@200 200");
    expect(s(m, k(15), asLsn(100))).toBe("null");
  });
});

describe("LayerMap queries for GC and image creation", () => {
  const m = new LayerMap([
    delta(ALL, asLsn(0), asLsn(100)),
    image(range(0, 10), asLsn(100)),
    image(range(10, 20), asLsn(150)),
    image(range(0, 20), asLsn(50)),
    delta(range(0, 10), asLsn(100), asLsn(200)),
    delta(range(0, 10), asLsn(200), asLsn(300)),
    delta(range(5, 15), asLsn(300), asLsn(400)),
  ]);

  it("imageCoverageExists needs images over every key of the range within [from, to]", () => {
    expect(m.imageCoverageExists(range(0, 10), asLsn(100), asLsn(100))).toBe(true);
    expect(m.imageCoverageExists(range(0, 10), asLsn(101), asLsn(1000))).toBe(false);
    expect(m.imageCoverageExists(range(0, 20), asLsn(100), asLsn(150))).toBe(true);
    expect(m.imageCoverageExists(range(0, 20), asLsn(100), asLsn(149))).toBe(false); // [10,20) only at 150
    expect(m.imageCoverageExists(range(0, 20), asLsn(50), asLsn(50))).toBe(true);
    expect(m.imageCoverageExists(range(0, 21), asLsn(0), asLsn(1000))).toBe(false); // k(20) uncovered
    expect(m.imageCoverageExists(range(3, 4), asLsn(100), asLsn(100))).toBe(true); // inside one segment
    expect(m.imageCoverageExists(ALL, asLsn(0), asLsn(1000))).toBe(false);
    expect(LayerMap.empty<L>().imageCoverageExists(range(0, 1), asLsn(0), asLsn(1000))).toBe(false);
  });

  it("newestImageCovering is the oldest of the per-segment newest images at or below lsn, or -1", () => {
    expect(m.newestImageCovering(range(0, 20), asLsn(1000))).toBe(100);
    expect(m.newestImageCovering(range(0, 10), asLsn(1000))).toBe(100);
    expect(m.newestImageCovering(range(10, 20), asLsn(1000))).toBe(150);
    expect(m.newestImageCovering(range(10, 20), asLsn(149))).toBe(50);
    expect(m.newestImageCovering(range(0, 20), asLsn(99))).toBe(50);
    expect(m.newestImageCovering(range(0, 20), asLsn(49))).toBe(-1);
    expect(m.newestImageCovering(range(0, 21), asLsn(1000))).toBe(-1);
    expect(m.newestImageCovering(ALL, asLsn(1000))).toBe(-1);
  });

  it("countDeltas counts the tallest stack over (above, upto], L0 included", () => {
    // k in [5,10): D[0,100) L0, [100,200), [200,300), [300,400).
    expect(m.countDeltas(range(0, 20), -1 as Lsn, asLsn(1000))).toBe(4);
    expect(m.countDeltas(range(0, 5), -1 as Lsn, asLsn(1000))).toBe(3);
    expect(m.countDeltas(range(15, 20), -1 as Lsn, asLsn(1000))).toBe(1); // only the L0
    expect(m.countDeltas(range(0, 20), asLsn(99), asLsn(1000))).toBe(3); // L0's last LSN is 99: not above 99
    expect(m.countDeltas(range(0, 20), asLsn(98), asLsn(1000))).toBe(4);
    expect(m.countDeltas(range(0, 20), asLsn(100), asLsn(299))).toBe(2); // [100,200) and [200,300)
    expect(m.countDeltas(range(0, 20), asLsn(100), asLsn(300))).toBe(3); // [300,400) holds 300
    expect(m.countDeltas(range(0, 20), asLsn(399), asLsn(1000))).toBe(0);
    expect(m.countDeltas(range(20, 30), -1 as Lsn, asLsn(1000))).toBe(1);
  });
});

describe("LayerMap.with", () => {
  it("builds a new map and leaves the original untouched", () => {
    const a = delta(ALL, asLsn(0), asLsn(100));
    const b = delta(range(10, 20), asLsn(100), asLsn(200));
    const c = image(range(10, 20), asLsn(200));
    const m1 = new LayerMap([a, b]);
    const m2 = m1.with([c], [b.desc.fileName]);
    expect(m1.size).toBe(2);
    expect(m1.layers.map((l) => l.tag)).toEqual(["D[0,100)", "D1[100,200)"]);
    expect(m1.get(c.desc.fileName)).toBeUndefined();
    expect(s(m1, k(15), asLsn(1000))).toBe("D1[100,200) 100");
    expect(m2.size).toBe(2);
    expect(m2.get(b.desc.fileName)).toBeUndefined();
    expect(m2.get(c.desc.fileName)).toBe(c);
    expect(s(m2, k(15), asLsn(1000))).toBe("I@200 200");
    expect(s(m2, k(15), asLsn(200))).toBe("D[0,100) 0");
    const m3 = m2.with([], [a.desc.fileName, c.desc.fileName]);
    expect(m3.size).toBe(0);
    expect(m2.size).toBe(2);
    expect(m3.l0Layers()).toEqual([]);
  });

  it("search asserts its window lies inside the layer it returns", () => {
    // A descriptor with an empty LSN range (end = start): the window [start, end) would be
    // empty, so a reader would go round forever; search refuses to hand it out.
    const bad = image(range(10, 20), asLsn(100));
    const broken: L = { desc: { ...bad.desc, lsnRange: { start: asLsn(100), end: asLsn(100) } }, tag: "broken" };
    const m = new LayerMap([delta(ALL, asLsn(0), asLsn(50)), broken]);
    expect(() => m.search(k(15), asLsn(1000))).toThrow(/outside the layer or the window/);
    expect(s(m, k(25), asLsn(1000))).toBe("D[0,50) 0");
  });

  it("refuses to remove an unknown layer and to hold one name twice", () => {
    const a = delta(ALL, asLsn(0), asLsn(100));
    const m = new LayerMap([a]);
    expect(() => m.with([], ["nope"])).toThrow(AssertionError);
    expect(() => m.with([], ["nope"])).toThrow("removing unknown layer nope");
    expect(() => m.with([delta(ALL, asLsn(0), asLsn(100))], [])).toThrow(`duplicate layer ${a.desc.fileName}`);
    // Replacing a layer by one of the same name in one step is fine.
    expect(m.with([delta(ALL, asLsn(0), asLsn(100))], [a.desc.fileName]).size).toBe(1);
  });
});

/**
 * A random timeline: consecutive or gapped delta LSN ranges (each L0 or an L1 over a random
 * key range), and images at random LSNs over random key ranges, which may fall inside
 * deltas' LSN ranges when `imagesInside`.
 */
function layersArb(imagesInside: boolean): fc.Arbitrary<L[]> {
  const kr = fc.tuple(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 1, max: 8 })).map(([a, n]) => range(a, a + n));
  const deltaSpec = fc.record({ gap: fc.integer({ min: 0, max: 3 }), len: fc.integer({ min: 1, max: 20 }), l0: fc.boolean(), keys: kr });
  return fc
    .tuple(
      fc.array(deltaSpec, { maxLength: 12 }),
      fc.array(fc.record({ at: fc.integer({ min: 0, max: 300 }), keys: kr }), { maxLength: 10 }),
    )
    .map(([ds, imgs]) => {
      const out: L[] = [];
      let lsn = 0;
      const taken: Array<[number, number]> = [];
      for (const d of ds) {
        lsn += d.gap;
        out.push(delta(d.l0 ? ALL : d.keys, asLsn(lsn), asLsn(lsn + d.len)));
        taken.push([lsn, lsn + d.len]);
        lsn += d.len;
      }
      const names = new Set<string>();
      for (const i of imgs) {
        if (!imagesInside && taken.some(([a, b]) => i.at >= a && i.at < b)) continue;
        const l = image(i.keys, asLsn(i.at));
        if (names.has(l.desc.fileName)) continue;
        names.add(l.desc.fileName);
        if (!imagesInside) taken.push([i.at, i.at + 1]);
        out.push(l);
      }
      return out;
    });
}

function checkWalk(layers: L[], keyNo: number, from: Lsn): void {
  const map = new LayerMap(layers);
  const key = k(keyNo);
  const windows: Array<{ lo: number; hi: number; layer: L }> = [];
  let end = from;
  for (let steps = 0; steps <= 2 * layers.length + 2; steps++) {
    const r = map.search(key, end);
    if (r === null) break;
    const d = r.layer.desc;
    expect(d.keyRange.start <= key && key < d.keyRange.end, "layer covers the key").toBe(true);
    expect(r.floor, "floor strictly below endLsn").toBeLessThan(end);
    expect(r.floor, "floor inside the layer").toBeGreaterThanOrEqual(d.lsnRange.start);
    expect(r.floor).toBeLessThan(d.lsnRange.end);
    const hi = Math.min(end, d.lsnRange.end);
    if (windows.length > 0) expect(hi, "windows never overlap").toBeLessThanOrEqual(windows[windows.length - 1]!.lo);
    windows.push({ lo: r.floor, hi, layer: r.layer });
    end = r.floor;
  }
  expect(map.search(key, end), "the walk ends").toBeNull();
  // Complete: every LSN below `from` that some layer holds for the key lies in a window.
  for (const l of layers) {
    const d = l.desc;
    if (!(d.keyRange.start <= key && key < d.keyRange.end)) continue;
    for (let lsn = d.lsnRange.start; lsn < Math.min(d.lsnRange.end, from); lsn++) {
      const w = windows.find((x) => x.lo <= lsn && lsn < x.hi);
      expect(w, `LSN ${lsn} of ${l.tag} is read by some window`).toBeDefined();
      // Where two layers hold an LSN (an image inside a delta), only the image may take it.
      if (w!.layer !== l) expect(w!.layer.desc.kind).toBe("image");
    }
  }
}

describe("LayerMap.search walk (property)", () => {
  it("layers disjoint in LSN: windows are disjoint, strictly decreasing and complete", () => {
    fc.assert(
      fc.property(layersArb(false), fc.integer({ min: 0, max: 17 }), fc.integer({ min: 0, max: 320 }), (layers, keyNo, from) => {
        checkWalk(layers, keyNo, asLsn(from));
      }),
      { numRuns: 400 },
    );
  });

  it("images inside deltas' LSN ranges as well", () => {
    fc.assert(
      fc.property(layersArb(true), fc.integer({ min: 0, max: 17 }), fc.integer({ min: 0, max: 320 }), (layers, keyNo, from) => {
        checkWalk(layers, keyNo, asLsn(from));
      }),
      { numRuns: 400 },
    );
  });
});

describe("planGc", () => {
  const descs = (ls: L[]): LayerDesc[] => ls.map((l) => l.desc);
  const tags = (ls: L[], removed: string[]): string[] => ls.filter((l) => removed.includes(l.desc.fileName)).map((l) => l.tag);

  it("Neon's example: images 1000/2000/3000, deltas 1000-2000 and 2000-3000, cutoff 2500", () => {
    const ls = [
      image(ALL, asLsn(1000)),
      image(ALL, asLsn(2000)),
      image(ALL, asLsn(3000)),
      delta(ALL, asLsn(1000), asLsn(2000)),
      delta(ALL, asLsn(2000), asLsn(3000)),
    ];
    expect(tags(ls, planGc(descs(ls), asLsn(2500), []))).toEqual(["I@1000", "D[1000,2000)"]);
    // At cutoff 3000 the second pair goes too; the newest image always stays.
    expect(tags(ls, planGc(descs(ls), asLsn(3000), []))).toEqual(["I@1000", "I@2000", "D[1000,2000)", "D[2000,3000)"]);
    // Below the first image's successor nothing is covered.
    expect(planGc(descs(ls), asLsn(1999), [])).toEqual([]);
  });

  it("an image at a delta's last LSN covers the delta; one LSN lower does not", () => {
    const d = delta(range(0, 10), asLsn(1000), asLsn(2000));
    expect(tags([d], planGc(descs([d, image(range(0, 10), asLsn(1999))]), asLsn(1999), []))).toEqual(["D1[1000,2000)"]);
    expect(planGc(descs([d, image(range(0, 10), asLsn(1998))]), asLsn(5000), [])).toEqual([]);
    // The covering image must be at or below the cutoff.
    expect(planGc(descs([d, image(range(0, 10), asLsn(2100))]), asLsn(2099), [])).toEqual([]);
    expect(planGc(descs([d, image(range(0, 10), asLsn(2100))]), asLsn(2100), [])).toEqual([d.desc.fileName]);
  });

  it("a layer whose last LSN is above the cutoff stays", () => {
    const ls = [delta(ALL, asLsn(1000), asLsn(2000)), image(ALL, asLsn(2000))];
    expect(planGc(descs(ls), asLsn(1998), [])).toEqual([]);
    expect(tags(ls, planGc(descs(ls), asLsn(2000), []))).toEqual(["D[1000,2000)"]);
  });

  it("an image is removed only for strictly newer images", () => {
    const ls = [image(range(0, 10), asLsn(1000)), image(range(0, 10), asLsn(1000 + 1))];
    expect(tags(ls, planGc(descs(ls), asLsn(5000), []))).toEqual(["I@1000"]);
    expect(planGc(descs([image(range(0, 10), asLsn(1000))]), asLsn(5000), [])).toEqual([]);
  });

  it("retain LSNs keep every layer starting at or below the largest branch point", () => {
    const ls = [
      image(ALL, asLsn(1000)),
      delta(ALL, asLsn(1000), asLsn(2000)),
      image(ALL, asLsn(2000)),
      delta(ALL, asLsn(2000), asLsn(3000)),
      image(ALL, asLsn(3000)),
    ];
    expect(tags(ls, planGc(descs(ls), asLsn(3000), [asLsn(1000)]))).toEqual(["I@2000", "D[2000,3000)"]);
    expect(tags(ls, planGc(descs(ls), asLsn(3000), [asLsn(999)]))).toEqual(["I@1000", "D[1000,2000)", "I@2000", "D[2000,3000)"]);
    expect(tags(ls, planGc(descs(ls), asLsn(3000), [asLsn(500), asLsn(2500), asLsn(1500)]))).toEqual([]);
    expect(tags(ls, planGc(descs(ls), asLsn(3000), [asLsn(1999)]))).toEqual(["I@2000", "D[2000,3000)"]);
  });

  it("partial image coverage keeps a layer; full coverage from several images removes it", () => {
    const d = delta(range(0, 20), asLsn(1000), asLsn(2000));
    const left = image(range(0, 10), asLsn(2000));
    const right = image(range(10, 20), asLsn(2200));
    expect(planGc(descs([d, left]), asLsn(5000), [])).toEqual([]);
    expect(planGc(descs([d, right]), asLsn(5000), [])).toEqual([]);
    expect(planGc(descs([d, left, right]), asLsn(2199), [])).toEqual([]);
    expect(planGc(descs([d, left, right]), asLsn(2200), [])).toEqual([d.desc.fileName]);
    // An image wider than the layer covers it.
    expect(planGc(descs([d, image(ALL, asLsn(2000))]), asLsn(2000), [])).toEqual([d.desc.fileName]);
    // An L0 delta needs images over the whole key space.
    const l0 = delta(ALL, asLsn(1000), asLsn(2000));
    expect(planGc(descs([l0, image(range(0, 20), asLsn(2000))]), asLsn(5000), [])).toEqual([]);
  });
});
