/**
 * Delta layers: round trips of thousands of versions with values from 1 byte to beyond a
 * block, getValues stopping at will_init, LSN windows, entries()/index() order and sizes,
 * a ≥ 3-level index, writer bookkeeping (sizeBytes, temp files, abort, misuse), the checks
 * of open() against the file name, and openLayer.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PAGE_SIZE, PageCache } from "../src/cache/index.js";
import { DeltaLayer, DeltaLayerWriter } from "../src/layers/delta_layer.js";
import { openLayer } from "../src/layers/layer_file.js";
import { deltaLayerName, TEMP_SUFFIX } from "../src/layers/layer_name.js";
import { ReconstructState } from "../src/layers/reconstruct_state.js";
import { AssertionError } from "../src/types/assert.js";
import { BadStateError, CorruptionError, InvalidArgumentError } from "../src/types/errors.js";
import { KEY_MAX, KEY_MIN, type Key, keyNext, makeKey } from "../src/types/key.js";
import { asLsn, MAX_LSN } from "../src/types/lsn.js";
import { type Value, ValueTag, valueWillInit } from "../src/types/value.js";
import { tempDirs } from "./support/layer_fixture.js";
import { rng } from "./support/rng.js";

const { freshDir } = tempDirs("delta-test-");
let cache: PageCache;

beforeAll(() => {
  cache = PageCache.create({ size_bytes: 1024 * PAGE_SIZE });
});

/** A value with a tag and a payload derived from (seed, size), so any mix-up shows. */
function makeValue(tag: ValueTag, size: number, seed: number): Value {
  const v = new Uint8Array(size);
  v[0] = tag;
  for (let i = 1; i < size; i++) v[i] = (seed * 31 + i * 7) & 0xff;
  return v;
}

interface Version {
  lsn: number;
  value: Value;
}

interface Dataset {
  keys: Key[];
  versions: Map<Key, Version[]>;
  lsnStart: number;
  lsnEnd: number;
}

/** Keys of a few relations; each key 1..6 versions; sizes 1 B .. 20 kB; tags of all kinds. */
function makeDataset(seed: number, nKeys: number): Dataset {
  const r = rng(seed);
  const lsnStart = 0x1_0000_0000 + 0x1000; // above 2^32: exercises the hi/lo halves
  const lsnEnd = lsnStart + 10_000_000;
  const keys: Key[] = [];
  for (let i = 0; i < nKeys; i++) keys.push(makeKey(0, 1663, 5, 16384 + (i % 3), 0, Math.floor(i / 3) * 2));
  keys.sort();
  const versions = new Map<Key, Version[]>();
  let n = 0;
  for (const k of keys) {
    const count = 1 + Math.floor(r() * 6);
    const list: Version[] = [];
    let lsn = lsnStart + Math.floor(r() * 1000);
    for (let j = 0; j < count; j++) {
      const roll = r();
      const size = roll < 0.5 ? 1 + Math.floor(r() * 200) : roll < 0.85 ? PAGE_SIZE + 1 : roll < 0.95 ? 1 + Math.floor(r() * 20_000) : 1;
      const tags = [ValueTag.Image, ValueTag.PgRecord, ValueTag.PgRecordInit, ValueTag.Native];
      const tag = j === 0 && r() < 0.7 ? ValueTag.Image : tags[Math.floor(r() * 4)]!;
      list.push({ lsn, value: makeValue(tag, size, n++) });
      lsn += 1 + Math.floor(r() * 100_000);
      if (lsn >= lsnEnd) break;
    }
    versions.set(k, list);
  }
  return { keys, versions, lsnStart, lsnEnd };
}

function writeDataset(
  dir: string,
  ds: Dataset,
  keyStart: Key = KEY_MIN,
  keyEnd: Key = KEY_MAX,
): { writer: DeltaLayerWriter; layer: DeltaLayer } {
  const w = new DeltaLayerWriter(cache, dir, keyStart, { start: asLsn(ds.lsnStart), end: asLsn(ds.lsnEnd) });
  let lastSize = w.sizeBytes;
  for (const k of ds.keys) {
    for (const v of ds.versions.get(k)!) {
      w.put(k, asLsn(v.lsn), v.value);
      expect(w.sizeBytes).toBeGreaterThanOrEqual(lastSize);
      lastSize = w.sizeBytes;
    }
  }
  const desc = w.finish(keyEnd);
  expect(desc.fileName).toBe(deltaLayerName({ start: keyStart, end: keyEnd }, { start: asLsn(ds.lsnStart), end: asLsn(ds.lsnEnd) }));
  expect(desc.fileSize).toBe(fs.statSync(path.join(dir, desc.fileName)).size);
  expect(desc.fileSize).toBeLessThanOrEqual(lastSize);
  expect(fs.readdirSync(dir).filter((f) => f.endsWith(TEMP_SUFFIX))).toEqual([]);
  const layer = DeltaLayer.open(cache, path.join(dir, desc.fileName));
  expect(layer.desc).toEqual(desc);
  return { writer: w, layer };
}

/** What getValues must add: versions in [floor, end), newest first, up to the first will_init. */
function expected(ds: Dataset, key: Key, floor: number, end: number): Version[] {
  const out: Version[] = [];
  const list = ds.versions.get(key) ?? [];
  for (let i = list.length - 1; i >= 0; i--) {
    const v = list[i]!;
    if (v.lsn >= end) continue;
    if (v.lsn < floor) break;
    out.push(v);
    if (valueWillInit(v.value)) break;
  }
  return out;
}

function check(layer: DeltaLayer, ds: Dataset, key: Key, floor: number, end: number, state: ReconstructState): void {
  state.reset();
  const want = expected(ds, key, floor, end);
  const complete = layer.getValues(key, asLsn(floor), asLsn(end), state);
  expect(state.lsns).toEqual(want.map((v) => v.lsn));
  expect(state.values.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(Buffer.compare(state.values[i]!, want[i]!.value)).toBe(0);
  expect(complete).toBe(want.length > 0 && valueWillInit(want[want.length - 1]!.value));
  expect(complete).toBe(state.complete);
}

describe("delta layer", () => {
  const ds = makeDataset(1, 3000);
  let dir: string;
  let layer: DeltaLayer;

  beforeAll(() => {
    dir = freshDir();
    layer = writeDataset(dir, ds).layer;
  });
  afterAll(() => layer.close());

  it("returns every key's versions newest first, stopping at will_init", () => {
    const state = new ReconstructState();
    let stoppedEarly = 0;
    for (const k of ds.keys) {
      check(layer, ds, k, 0, MAX_LSN, state);
      if (state.lsns.length < ds.versions.get(k)!.length) stoppedEarly++;
    }
    expect(stoppedEarly).toBeGreaterThan(100);
  });

  it("honours LSN windows", () => {
    const r = rng(2);
    const state = new ReconstructState();
    for (let n = 0; n < 5000; n++) {
      const k = ds.keys[Math.floor(r() * ds.keys.length)]!;
      const list = ds.versions.get(k)!;
      const pick = (): number => {
        const v = list[Math.floor(r() * list.length)]!.lsn;
        return v + Math.floor(r() * 3) - 1; // just below, at, just above a version
      };
      const a = pick();
      const b = pick();
      check(layer, ds, k, Math.min(a, b), Math.max(a, b), state);
      check(layer, ds, k, 0, Math.max(a, b), state);
    }
    // Windows outside the layer's range add nothing.
    check(layer, ds, ds.keys[0]!, 0, ds.lsnStart, state);
    check(layer, ds, ds.keys[0]!, ds.lsnEnd, MAX_LSN, state);
  });

  it("finds nothing for absent keys", () => {
    const state = new ReconstructState();
    for (const k of [ds.keys[0]!, ds.keys[100]!, ds.keys[ds.keys.length - 1]!]) {
      const absent = keyNext(k); // block numbers are even: k + 1 is never present
      state.reset();
      expect(layer.getValues(absent, asLsn(0), MAX_LSN, state)).toBe(false);
      expect(state.lsns).toEqual([]);
    }
    state.reset();
    expect(layer.getValues(KEY_MIN, asLsn(0), MAX_LSN, state)).toBe(false);
    expect(layer.getValues(makeKey(0xff, 0, 0, 0, 0, 0), asLsn(0), MAX_LSN, state)).toBe(false);
    expect(state.lsns).toEqual([]);
  });

  it("continues a walk started in a newer layer (lsnEnd = oldest collected)", () => {
    const state = new ReconstructState();
    for (const k of ds.keys.slice(0, 500)) {
      const list = ds.versions.get(k)!;
      if (list.length < 2) continue;
      const newest = list[list.length - 1]!;
      if (valueWillInit(newest.value)) continue;
      state.reset();
      state.add(asLsn(newest.lsn), newest.value);
      layer.getValues(k, asLsn(0), state.oldestLsn(), state);
      const want = [newest, ...expected(ds, k, 0, newest.lsn)];
      expect(state.lsns).toEqual(want.map((v) => v.lsn));
    }
  });

  it("streams entries() and index() in (key, lsn) order", () => {
    const all: { key: Key; lsn: number; value: Value }[] = [];
    for (const k of ds.keys) for (const v of ds.versions.get(k)!) all.push({ key: k, lsn: v.lsn, value: v.value });
    let i = 0;
    for (const e of layer.entries()) {
      const w = all[i++]!;
      expect(e.key).toBe(w.key);
      expect(e.lsn).toBe(w.lsn);
      expect(Buffer.compare(e.value, w.value)).toBe(0);
    }
    expect(i).toBe(all.length);
    expect(layer.numEntries).toBe(all.length);
    i = 0;
    for (const e of layer.index()) {
      const w = all[i++]!;
      expect(e.key).toBe(w.key);
      expect(e.lsn).toBe(w.lsn);
      expect(e.sizeBytes).toBe(w.value.length);
    }
    expect(i).toBe(all.length);
  });

  it("lets iterators and lookups interleave", () => {
    const it1 = layer.entries();
    const it2 = layer.index();
    const state = new ReconstructState();
    for (let n = 0; n < 200; n++) {
      const a = it1.next();
      const b = it2.next();
      expect(a.done).toBe(false);
      expect(b.done).toBe(false);
      if (!a.done && !b.done) {
        expect(a.value.key).toBe(b.value.key);
        expect(a.value.value.length).toBe(b.value.sizeBytes);
        check(layer, ds, a.value.key, 0, MAX_LSN, state);
      }
    }
  });

  it("opens through openLayer and refuses a size mismatch", () => {
    const l = openLayer(cache, dir, layer.desc);
    expect(l).toBeInstanceOf(DeltaLayer);
    l.close();
    expect(() => openLayer(cache, dir, { ...layer.desc, fileSize: layer.desc.fileSize + 8192 })).toThrow(CorruptionError);
    expect(() => openLayer(cache, dir, { ...layer.desc, fileSize: 0 })).not.toThrow();
  });

  it("refuses use after close", () => {
    const l = DeltaLayer.open(cache, layer.path);
    l.close();
    expect(() => l.getValues(ds.keys[0]!, asLsn(0), MAX_LSN, new ReconstructState())).toThrow(BadStateError);
    expect(() => l.entries().next()).toThrow(BadStateError);
  });
});

describe("delta layer index with ≥ 3 levels", () => {
  it("round-trips 80k random keys", () => {
    const dir = freshDir();
    const r = rng(7);
    const set = new Set<Key>();
    while (set.size < 80_000) {
      set.add(
        makeKey(
          Math.floor(r() * 256),
          Math.floor(r() * 2 ** 32),
          Math.floor(r() * 2 ** 32),
          Math.floor(r() * 2 ** 32),
          0,
          Math.floor(r() * 2 ** 32),
        ),
      );
    }
    const keys = [...set].sort();
    const w = new DeltaLayerWriter(cache, dir, KEY_MIN, { start: asLsn(100), end: asLsn(200) });
    for (let i = 0; i < keys.length; i++)
      w.put(keys[i]!, asLsn(100 + (i % 50)), makeValue(i % 2 ? ValueTag.Image : ValueTag.PgRecord, 1 + (i % 13), i));
    const desc = w.finish(KEY_MAX);
    const layer = DeltaLayer.open(cache, path.join(dir, desc.fileName));
    expect(layer.indexDepth).toBeGreaterThanOrEqual(3);
    const state = new ReconstructState();
    for (let n = 0; n < 3000; n++) {
      const i = Math.floor(r() * keys.length);
      state.reset();
      layer.getValues(keys[i]!, asLsn(0), MAX_LSN, state);
      expect(state.lsns).toEqual([100 + (i % 50)]);
      expect(Buffer.compare(state.values[0]!, makeValue(i % 2 ? ValueTag.Image : ValueTag.PgRecord, 1 + (i % 13), i))).toBe(0);
    }
    let count = 0;
    let mismatches = 0;
    for (const e of layer.index()) {
      const i = count++;
      if (e.key !== keys[i] || e.lsn !== 100 + (i % 50) || e.sizeBytes !== 1 + (i % 13)) mismatches++;
    }
    expect(mismatches).toBe(0);
    expect(count).toBe(keys.length);
    layer.close();
  });
});

describe("delta layer writer", () => {
  it("writes an empty layer and a partial key range", () => {
    const dir = freshDir();
    const w = new DeltaLayerWriter(cache, dir, KEY_MIN, { start: asLsn(10), end: asLsn(20) });
    const desc = w.finish(KEY_MAX);
    const l = DeltaLayer.open(cache, path.join(dir, desc.fileName));
    expect([...l.entries()]).toEqual([]);
    expect(l.getValues(makeKey(0, 1, 2, 3, 0, 4), asLsn(0), MAX_LSN, new ReconstructState())).toBe(false);
    l.close();

    const ds = makeDataset(3, 60);
    const start = ds.keys[0]!;
    const end = keyNext(ds.keys[ds.keys.length - 1]!);
    const { layer } = writeDataset(dir, ds, start, end);
    expect(layer.desc.keyRange).toEqual({ start, end });
    const state = new ReconstructState();
    for (const k of ds.keys) check(layer, ds, k, 0, MAX_LSN, state);
    layer.close();
  });

  it("abort removes the temp file; misuse is refused", () => {
    const dir = freshDir();
    const w = new DeltaLayerWriter(cache, dir, KEY_MIN, { start: asLsn(10), end: asLsn(20) });
    const k = makeKey(0, 1, 2, 3, 0, 4);
    w.put(k, asLsn(10), makeValue(ValueTag.Image, PAGE_SIZE + 1, 1));
    expect(fs.readdirSync(dir).length).toBe(1);
    expect(() => w.put(k, asLsn(10), makeValue(ValueTag.PgRecord, 5, 1))).toThrow(AssertionError); // not increasing
    expect(() => w.put(keyNext(k), asLsn(20), makeValue(ValueTag.PgRecord, 5, 1))).toThrow(AssertionError); // LSN outside
    expect(() => w.put(keyNext(k), asLsn(9), makeValue(ValueTag.PgRecord, 5, 1))).toThrow(AssertionError);
    expect(() => w.put(keyNext(k), asLsn(11), new Uint8Array(0))).toThrow(InvalidArgumentError);
    expect(() => w.put(keyNext(k), asLsn(11), new Uint8Array([9, 1]))).toThrow(InvalidArgumentError);
    w.abort();
    w.abort();
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(() => w.put(keyNext(k), asLsn(11), makeValue(ValueTag.PgRecord, 5, 1))).toThrow(BadStateError);
    expect(() => w.finish(KEY_MAX)).toThrow(BadStateError);

    const w2 = new DeltaLayerWriter(cache, dir, KEY_MIN, { start: asLsn(10), end: asLsn(20) });
    w2.put(k, asLsn(15), makeValue(ValueTag.Image, 3, 1));
    expect(() => w2.finish(k)).toThrow(AssertionError); // keyEnd must be above the keys
    const desc = w2.finish(keyNext(k));
    w2.abort(); // no-op after finish
    expect(fs.readdirSync(dir)).toEqual([desc.fileName]);
  });
});

describe("delta layer open", () => {
  it("checks the header against the file name", () => {
    const dir = freshDir();
    const w = new DeltaLayerWriter(cache, dir, KEY_MIN, { start: asLsn(10), end: asLsn(20) });
    w.put(makeKey(0, 1, 2, 3, 0, 4), asLsn(12), makeValue(ValueTag.Image, 100, 1));
    const desc = w.finish(KEY_MAX);
    const src = path.join(dir, desc.fileName);
    const renamed = path.join(dir, deltaLayerName({ start: KEY_MIN, end: KEY_MAX }, { start: asLsn(10), end: asLsn(21) }));
    fs.copyFileSync(src, renamed);
    const err = (() => {
      try {
        DeltaLayer.open(cache, renamed);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(CorruptionError);
    expect((err as CorruptionError).blkno).toBe(0);
    expect((err as CorruptionError).path).toBe(renamed);
    expect(() => DeltaLayer.open(cache, path.join(dir, "not-a-layer"))).toThrow(InvalidArgumentError);
  });
});
