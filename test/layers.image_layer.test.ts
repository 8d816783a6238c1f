/**
 * Image layers: round trips of thousands of keys with values from 1 byte to beyond a block,
 * absent keys, getValues against LSN windows, entries()/keys() order, a ≥ 3-level index,
 * writer bookkeeping and misuse, open() checks, openLayer.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PAGE_SIZE, PageCache } from "../src/cache/index.js";
import { ImageLayer, ImageLayerWriter } from "../src/layers/image_layer.js";
import { openLayer } from "../src/layers/layer_file.js";
import { deltaLayerName, imageLayerName, TEMP_SUFFIX } from "../src/layers/layer_name.js";
import { ReconstructState } from "../src/layers/reconstruct_state.js";
import { AssertionError } from "../src/types/assert.js";
import { BadStateError, CorruptionError, InvalidArgumentError } from "../src/types/errors.js";
import { KEY_MAX, KEY_MIN, type Key, keyNext, makeKey } from "../src/types/key.js";
import { asLsn, MAX_LSN } from "../src/types/lsn.js";
import { imageValue, pgRecordValue, type Value } from "../src/types/value.js";
import { payload, tempDirs } from "./support/layer_fixture.js";
import { rng } from "./support/rng.js";

const { freshDir } = tempDirs("image-test-");
let cache: PageCache;

beforeAll(() => {
  cache = PageCache.create({ size_bytes: 1024 * PAGE_SIZE });
});

const LSN = asLsn(0x2_0000_0000 + 0x1234); // above 2^32

describe("image layer", () => {
  const r = rng(1);
  const keys: Key[] = [];
  for (let i = 0; i < 4000; i++) keys.push(makeKey(0, 1663, 5, 16384 + (i % 4), i % 2, Math.floor(i / 4) * 3));
  keys.sort();
  const values = new Map<Key, Value>();
  keys.forEach((k, i) => {
    const roll = r();
    const size = roll < 0.6 ? PAGE_SIZE : roll < 0.9 ? Math.floor(r() * 300) : Math.floor(r() * 30_000);
    values.set(k, imageValue(payload(size, i))); // size 0 payload → a 1-byte value
  });
  let dir: string;
  let layer: ImageLayer;

  beforeAll(() => {
    dir = freshDir();
    const w = new ImageLayerWriter(cache, dir, KEY_MIN, LSN);
    let last = w.sizeBytes;
    for (const k of keys) {
      w.put(k, values.get(k)!);
      expect(w.sizeBytes).toBeGreaterThanOrEqual(last);
      last = w.sizeBytes;
    }
    const desc = w.finish(KEY_MAX);
    expect(desc).toEqual({
      kind: "image",
      keyRange: { start: KEY_MIN, end: KEY_MAX },
      lsnRange: { start: LSN, end: LSN + 1 },
      fileName: imageLayerName({ start: KEY_MIN, end: KEY_MAX }, LSN),
      fileSize: fs.statSync(path.join(dir, desc.fileName)).size,
    });
    expect(desc.fileSize).toBeLessThanOrEqual(last);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith(TEMP_SUFFIX))).toEqual([]);
    layer = ImageLayer.open(cache, path.join(dir, desc.fileName));
    expect(layer.desc).toEqual(desc);
    expect(layer.lsn).toBe(LSN);
  });
  afterAll(() => layer.close());

  it("returns every image, and null for absent keys", () => {
    for (const k of keys) expect(Buffer.compare(layer.get(k)!, values.get(k)!)).toBe(0);
    for (const k of keys.slice(0, 500)) expect(layer.get(keyNext(k))).toBeNull(); // blocks step by 3
    expect(layer.get(KEY_MIN)).toBeNull();
    expect(layer.get(makeKey(0xfe, 0, 0, 0, 0, 0))).toBeNull();
  });

  it("adds the image in getValues only inside the LSN window", () => {
    const state = new ReconstructState();
    const k = keys[17]!;
    expect(layer.getValues(k, asLsn(0), LSN, state)).toBe(false); // end exclusive
    expect(layer.getValues(k, asLsn(LSN + 1), MAX_LSN, state)).toBe(false);
    expect(state.lsns).toEqual([]);
    expect(layer.getValues(k, LSN, asLsn(LSN + 1), state)).toBe(true);
    expect(state.lsns).toEqual([LSN]);
    expect(Buffer.compare(state.values[0]!, values.get(k)!)).toBe(0);
    state.reset();
    state.add(asLsn(LSN + 50), pgRecordValue(false, payload(10, 1)));
    expect(layer.getValues(k, asLsn(0), state.oldestLsn(), state)).toBe(true);
    expect(state.lsns).toEqual([LSN + 50, LSN]);
    state.reset();
    expect(layer.getValues(keyNext(k), asLsn(0), MAX_LSN, state)).toBe(false);
    expect(state.lsns).toEqual([]);
  });

  it("streams entries() and keys() in key order", () => {
    let i = 0;
    for (const e of layer.entries()) {
      expect(e.key).toBe(keys[i]);
      expect(e.lsn).toBe(LSN);
      expect(Buffer.compare(e.value, values.get(keys[i]!)!)).toBe(0);
      i++;
    }
    expect(i).toBe(keys.length);
    expect([...layer.keys()]).toEqual(keys);
    expect(layer.numEntries).toBe(keys.length);
  });

  it("opens through openLayer", () => {
    const l = openLayer(cache, dir, layer.desc);
    expect(l).toBeInstanceOf(ImageLayer);
    l.close();
    expect(() => openLayer(cache, dir, { ...layer.desc, fileSize: 8192 })).toThrow(CorruptionError);
  });

  it("refuses use after close", () => {
    const l = ImageLayer.open(cache, layer.path);
    l.close();
    expect(() => l.get(keys[0]!)).toThrow(BadStateError);
    expect(() => l.keys().next()).toThrow(BadStateError);
  });
});

describe("image layer index with ≥ 3 levels", () => {
  it("round-trips 150k random keys", () => {
    const dir = freshDir();
    const r = rng(2);
    const set = new Set<Key>();
    while (set.size < 150_000) {
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
    const w = new ImageLayerWriter(cache, dir, KEY_MIN, asLsn(500));
    for (let i = 0; i < keys.length; i++) w.put(keys[i]!, imageValue(payload(i % 9, i)));
    const layer = ImageLayer.open(cache, path.join(dir, w.finish(KEY_MAX).fileName));
    expect(layer.indexDepth).toBeGreaterThanOrEqual(3);
    for (let n = 0; n < 3000; n++) {
      const i = Math.floor(r() * keys.length);
      expect(Buffer.compare(layer.get(keys[i]!)!, imageValue(payload(i % 9, i)))).toBe(0);
      if (keyNext(keys[i]!) !== keys[i + 1]) expect(layer.get(keyNext(keys[i]!))).toBeNull();
    }
    let count = 0;
    let mismatches = 0;
    for (const k of layer.keys()) if (k !== keys[count++]) mismatches++;
    expect(mismatches).toBe(0);
    expect(count).toBe(keys.length);
    layer.close();
  });
});

describe("image layer writer", () => {
  it("writes an empty layer and a partial key range", () => {
    const dir = freshDir();
    const w = new ImageLayerWriter(cache, dir, KEY_MIN, asLsn(7));
    const l = ImageLayer.open(cache, path.join(dir, w.finish(KEY_MAX).fileName));
    expect([...l.entries()]).toEqual([]);
    expect(l.get(makeKey(0, 1, 2, 3, 0, 4))).toBeNull();
    l.close();

    const a = makeKey(0, 1, 2, 3, 0, 10);
    const b = makeKey(0, 1, 2, 3, 0, 11);
    const w2 = new ImageLayerWriter(cache, dir, a, asLsn(7));
    w2.put(a, imageValue(payload(5, 1)));
    w2.put(b, imageValue(payload(PAGE_SIZE * 3, 2)));
    const l2 = ImageLayer.open(cache, path.join(dir, w2.finish(keyNext(b)).fileName));
    expect(l2.desc.keyRange).toEqual({ start: a, end: keyNext(b) });
    expect(Buffer.compare(l2.get(b)!, imageValue(payload(PAGE_SIZE * 3, 2)))).toBe(0);
    expect(l2.get(keyNext(b))).toBeNull(); // outside the range
    l2.close();
  });

  it("abort removes the temp file; misuse is refused", () => {
    const dir = freshDir();
    const k = makeKey(0, 1, 2, 3, 0, 4);
    const w = new ImageLayerWriter(cache, dir, k, asLsn(9));
    w.put(k, imageValue(payload(PAGE_SIZE, 1)));
    expect(() => w.put(k, imageValue(payload(3, 1)))).toThrow(AssertionError);
    expect(() => w.put(keyNext(k), pgRecordValue(true, payload(3, 1)))).toThrow(InvalidArgumentError);
    expect(() => new ImageLayerWriter(cache, dir, k, asLsn(9)).put(KEY_MIN, imageValue(payload(1, 1)))).toThrow(AssertionError);
    for (const f of fs.readdirSync(dir)) if (!f.startsWith(`image-`)) throw new Error(`unexpected ${f}`);
    w.abort();
    expect(fs.readdirSync(dir).length).toBe(1); // the writer abandoned by the throw above
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f));
    expect(() => w.put(keyNext(k), imageValue(payload(3, 1)))).toThrow(BadStateError);
  });

  it("open refuses a header that disagrees with the file name or kind", () => {
    const dir = freshDir();
    const w = new ImageLayerWriter(cache, dir, KEY_MIN, asLsn(9));
    w.put(makeKey(0, 1, 2, 3, 0, 4), imageValue(payload(10, 1)));
    const desc = w.finish(KEY_MAX);
    const src = path.join(dir, desc.fileName);
    const otherLsn = path.join(dir, imageLayerName({ start: KEY_MIN, end: KEY_MAX }, asLsn(10)));
    fs.copyFileSync(src, otherLsn);
    expect(() => ImageLayer.open(cache, otherLsn)).toThrow(CorruptionError);
    const asDelta = path.join(dir, deltaLayerName({ start: KEY_MIN, end: KEY_MAX }, { start: asLsn(9), end: asLsn(10) }));
    fs.copyFileSync(src, asDelta);
    expect(() => ImageLayer.open(cache, asDelta)).toThrow(InvalidArgumentError); // the name says delta
    expect(() =>
      openLayer(cache, dir, {
        kind: "delta",
        keyRange: { start: KEY_MIN, end: KEY_MAX },
        lsnRange: { start: asLsn(9), end: asLsn(10) },
        fileName: path.basename(asDelta),
        fileSize: 0,
      }),
    ).toThrow(/bad magic/);
  });
});
