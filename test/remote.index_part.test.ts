/**
 * index_part.json and object keys (src/remote/index_part.ts, remote_path.ts, generation.ts):
 * encode/parse round trip, every kind of corruption an IndexCorruptError naming the key,
 * key builders and parsers, the newest index with a generation ≤ ours, and fileCrc32c.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32c } from "@node-rs/crc32";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deltaLayerName, imageLayerName } from "../src/layers/layer_name.js";
import { generationSuffix, parseGeneration, parseGenerationSuffix } from "../src/remote/generation.js";
import {
  encodeIndexPart,
  fileCrc32c,
  findLatestIndex,
  IndexCorruptError,
  type IndexPart,
  listIndexGenerations,
  parseIndexPart,
} from "../src/remote/index_part.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { indexKey, layerKey, parseIndexKey, parseLayerKey, timelinePrefix } from "../src/remote/remote_path.js";
import { InvalidArgumentError } from "../src/types/errors.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { KEY_MAX, KEY_MIN } from "../src/types/key.js";
import { asLsn } from "../src/types/lsn.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "remote-index-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const tenant = generateTenantId();
const timeline = generateTimelineId();
const L1 = deltaLayerName({ start: KEY_MIN, end: KEY_MAX }, { start: asLsn(0x100), end: asLsn(0x200) });
const L2 = imageLayerName({ start: KEY_MIN, end: KEY_MAX }, asLsn(0x200));

function sample(): IndexPart {
  return {
    metadata: {
      disk_consistent_lsn: asLsn(0x1_0000_0200),
      prev_record_lsn: null,
      ancestor_timeline_id: generateTimelineId(),
      ancestor_lsn: asLsn(0x80),
      latest_gc_cutoff_lsn: asLsn(0x90),
      initdb_lsn: asLsn(0x10),
      pg_version: 15,
    },
    layers: new Map([
      [L1, { file_size: 8192, crc32c: 0xdeadbeef, generation: 1 }],
      [L2, { file_size: 0, crc32c: 0, generation: 2 }],
    ]),
  };
}

function corruptWith(mutate: (j: Record<string, unknown>) => void): Uint8Array {
  const j = JSON.parse(Buffer.from(encodeIndexPart(sample())).toString()) as Record<string, unknown>;
  mutate(j);
  return Buffer.from(JSON.stringify(j));
}

describe("index_part.json", () => {
  it("round-trips", () => {
    const ip = sample();
    const back = parseIndexPart(indexKey(tenant, timeline, 2), encodeIndexPart(ip));
    expect(back).toEqual(ip);
    const text = Buffer.from(encodeIndexPart(ip)).toString();
    expect(text).toContain('"disk_consistent_lsn":"1/200"');
    expect(text).toContain('"version":1');
  });

  it("every malformed index is an IndexCorruptError naming the key", () => {
    const key = indexKey(tenant, timeline, 2);
    const md = (j: Record<string, unknown>) => j["metadata"] as Record<string, unknown>;
    const layers = (j: Record<string, unknown>) => j["layers"] as Record<string, Record<string, unknown>>;
    const cases: [string, Uint8Array][] = [
      ["bad JSON", Buffer.from("{")],
      ["not a JSON object", Buffer.from("[]")],
      ["unsupported version", corruptWith((j) => (j["version"] = 2))],
      ["metadata missing", corruptWith((j) => delete j["metadata"])],
      ["metadata.disk_consistent_lsn missing", corruptWith((j) => delete md(j)["disk_consistent_lsn"])],
      ["metadata.ancestor_lsn", corruptWith((j) => (md(j)["ancestor_lsn"] = "zz"))],
      ["ancestor_timeline_id", corruptWith((j) => (md(j)["ancestor_timeline_id"] = "abc"))],
      ["pg_version", corruptWith((j) => (md(j)["pg_version"] = "15"))],
      ["layers missing", corruptWith((j) => delete j["layers"])],
      ["is not a layer name", corruptWith((j) => (layers(j)["__proto__x"] = { file_size: 1, crc32c: 1, generation: 1 }))],
      ["bad file_size", corruptWith((j) => (layers(j)[L1]!["file_size"] = -1))],
      ["bad crc32c", corruptWith((j) => (layers(j)[L1]!["crc32c"] = 2 ** 32))],
      ["bad generation", corruptWith((j) => (layers(j)[L1]!["generation"] = 0))],
      ["newer than the index's 2", corruptWith((j) => (layers(j)[L1]!["generation"] = 3))],
    ];
    for (const [msg, bytes] of cases) {
      let err: unknown = null;
      try {
        parseIndexPart(key, bytes);
      } catch (e) {
        err = e;
      }
      expect(err, msg).toBeInstanceOf(IndexCorruptError);
      expect((err as IndexCorruptError).key).toBe(key);
      expect((err as Error).message, msg).toContain(msg);
      expect((err as Error).message).toContain(key);
    }
  });

  it("an index too large is refused before parsing", () => {
    const huge = new Uint8Array(64 * 1024 * 1024 + 1);
    expect(() => parseIndexPart("k", huge)).toThrow(/over the limit/);
  });
});

describe("keys and generations", () => {
  it("builds and parses keys", () => {
    expect(layerKey(tenant, timeline, L1, 3)).toBe(`tenants/${tenant}/timelines/${timeline}/${L1}-00000003`);
    expect(indexKey(tenant, timeline, 0x1a)).toBe(`tenants/${tenant}/timelines/${timeline}/index_part.json-0000001a`);
    expect(parseLayerKey(layerKey(tenant, timeline, L2, 7))).toEqual({ layer_name: L2, generation: 7 });
    expect(parseIndexKey(indexKey(tenant, timeline, 9))).toBe(9);
    expect(parseIndexKey(layerKey(tenant, timeline, L1, 9))).toBeNull();
    expect(parseLayerKey(indexKey(tenant, timeline, 9))).toBeNull();
    expect(parseLayerKey(`${timelinePrefix(tenant, timeline)}${L1}`)).toBeNull();
    expect(parseLayerKey(`${timelinePrefix(tenant, timeline)}junk-00000001`)).toBeNull();
    expect(parseIndexKey(`${timelinePrefix(tenant, timeline)}index_part.json-00000000`)).toBeNull();
    expect(parseIndexKey(`${timelinePrefix(tenant, timeline)}index_part.json-0000000G`)).toBeNull();
  });

  it("generations are u32 ≥ 1 with 8-hex-digit suffixes", () => {
    expect(generationSuffix(1)).toBe("00000001");
    expect(generationSuffix(0xffffffff)).toBe("ffffffff");
    expect(parseGenerationSuffix("ffffffff")).toBe(0xffffffff);
    expect(parseGenerationSuffix("1")).toBeNull();
    for (const bad of [0, -1, 1.5, 2 ** 32, "1", null]) expect(() => parseGeneration(bad)).toThrow(InvalidArgumentError);
  });

  it("findLatestIndex takes the newest generation ≤ ours", async () => {
    const st = new LocalFs(join(dir, "bucket"));
    expect(await findLatestIndex(st, tenant, timeline, 5)).toBeNull();
    for (const g of [1, 3, 6]) {
      const ip = sample();
      ip.metadata.disk_consistent_lsn = asLsn(0x1000 * g);
      ip.layers = new Map([[L1, { file_size: 1, crc32c: 1, generation: 1 }]]);
      const bytes = encodeIndexPart(ip);
      await st.put(indexKey(tenant, timeline, g), bytes, { size_bytes: bytes.byteLength });
    }
    // Objects that are not indexes don't confuse it.
    await st.put(layerKey(tenant, timeline, L1, 1), new Uint8Array(1), { size_bytes: 1 });
    expect(await listIndexGenerations(st, tenant, timeline)).toEqual([1, 3, 6]);
    expect((await findLatestIndex(st, tenant, timeline, 5))?.generation).toBe(3);
    expect((await findLatestIndex(st, tenant, timeline, 5))?.index.metadata.disk_consistent_lsn).toBe(0x3000);
    expect((await findLatestIndex(st, tenant, timeline, 6))?.generation).toBe(6);
    expect((await findLatestIndex(st, tenant, timeline, 2))?.generation).toBe(1);
    // A corrupt newest index is an error, not a silent fallback to an older one.
    await st.put(indexKey(tenant, timeline, 4), Buffer.from("{"), { size_bytes: 1 });
    await expect(findLatestIndex(st, tenant, timeline, 5)).rejects.toBeInstanceOf(IndexCorruptError);
  });
});

describe("fileCrc32c", () => {
  it("matches crc32c of the whole file, across chunk boundaries", async () => {
    for (const size of [0, 1, 1024 * 1024, 3 * 1024 * 1024 + 17]) {
      const bytes = Buffer.alloc(size);
      for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 0xff;
      const p = join(dir, `f${size}`);
      writeFileSync(p, bytes);
      expect(await fileCrc32c(p)).toEqual({ crc32c: crc32c(bytes) >>> 0, size_bytes: size });
    }
  });
});
