/**
 * Decompressors of src/pg/compress (pglz, raw LZ4 blocks, zstd frames):
 * - on data a real PostgreSQL 15 compressed: inline-compressed TOAST values (pglz and lz4)
 *   read from heap files, whose plaintext we know; full-page images from its WAL with
 *   wal_compression = pglz / lz4 / zstd, whose heap rows we know; and, where the lz4 / zstd
 *   command-line tools exist, the same images decoded by them;
 * - on hand-made streams: literal runs, overlapping matches, extended lengths, and every kind
 *   of corruption (typed DecompressError, never a hang or an out-of-bounds access);
 * - round trips through small reference encoders written here, and random mutations.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lz4DecompressBlock } from "../src/pg/compress/lz4.js";
import { DecompressError, pglzDecompress } from "../src/pg/compress/pglz.js";
import { zstdDecompress } from "../src/pg/compress/zstd.js";
import { WalStreamDecoder } from "../src/pg/wal/decoder.js";
import { restorePageImage } from "../src/pg/wal/image.js";
import { walFileName } from "../src/pg/wal/page.js";
import {
  BKPIMAGE_COMPRESS_LZ4,
  BKPIMAGE_COMPRESS_PGLZ,
  BKPIMAGE_COMPRESS_ZSTD,
  type BlockImage,
  type DecodedRecord,
} from "../src/pg/wal/record.js";
import { asLsn, parseLsn } from "../src/types/lsn.js";
import { PgInstance } from "./support/postgres.js";

const enc = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

// The lz4 and zstd command-line tools are test dependencies (.ci/run installs them): a
// missing tool fails these tests instead of skipping them.

/** Expect `fn` to throw DecompressError (and nothing else). */
function expectCorrupt(fn: () => unknown): DecompressError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DecompressError) {
      expect(e.code).toBe("corrupt");
      return e;
    }
    throw e;
  }
  throw new Error("expected a DecompressError");
}

// ---------------------------------------------------------------- reference encoders (tests only)

/** A greedy pglz encoder producing the format pglz_decompress reads (not PostgreSQL's heuristics). */
function pglzCompress(src: Uint8Array, window = 4095): Uint8Array {
  const out: number[] = [];
  let i = 0;
  while (i < src.length) {
    const ctrlPos = out.length;
    out.push(0);
    let ctrl = 0;
    for (let bit = 0; bit < 8 && i < src.length; bit++) {
      let bestLen = 0;
      let bestOff = 0;
      for (let off = 1; off <= Math.min(i, window); off++) {
        let l = 0;
        while (l < 273 && i + l < src.length && src[i + l - off] === src[i + l]) l++;
        if (l > bestLen) {
          bestLen = l;
          bestOff = off;
        }
      }
      if (bestLen >= 3) {
        ctrl |= 1 << bit;
        const hi = (bestOff >> 4) & 0xf0;
        if (bestLen >= 18) out.push(hi | 0x0f, bestOff & 0xff, bestLen - 18);
        else out.push(hi | (bestLen - 3), bestOff & 0xff);
        i += bestLen;
      } else {
        out.push(src[i++]!);
      }
    }
    out[ctrlPos] = ctrl;
  }
  return Uint8Array.from(out);
}

/** A greedy LZ4 block encoder following the block format's end rules (last 5 bytes literal). */
function lz4Compress(src: Uint8Array, window = 1024): Uint8Array {
  const out: number[] = [];
  const n = src.length;
  const pushLen = (rest: number) => {
    while (rest >= 255) {
      out.push(255);
      rest -= 255;
    }
    out.push(rest);
  };
  const sequence = (anchor: number, i: number, off: number, matchLen: number) => {
    const lit = i - anchor;
    const ml = matchLen - 4;
    out.push((Math.min(lit, 15) << 4) | Math.min(ml, 15));
    if (lit >= 15) pushLen(lit - 15);
    for (let k = anchor; k < i; k++) out.push(src[k]!);
    out.push(off & 0xff, off >> 8);
    if (ml >= 15) pushLen(ml - 15);
  };
  let anchor = 0;
  let i = 0;
  while (i < n - 12) {
    let bestLen = 0;
    let bestOff = 0;
    for (let off = 1; off <= Math.min(i, window); off++) {
      let l = 0;
      while (i + l < n - 5 && src[i + l - off] === src[i + l]) l++;
      if (l > bestLen) {
        bestLen = l;
        bestOff = off;
      }
    }
    if (bestLen < 4) {
      i++;
      continue;
    }
    sequence(anchor, i, bestOff, bestLen);
    i += bestLen;
    anchor = i;
  }
  const lit = n - anchor;
  out.push(Math.min(lit, 15) << 4);
  if (lit >= 15) pushLen(lit - 15);
  for (let k = anchor; k < n; k++) out.push(src[k]!);
  return Uint8Array.from(out);
}

/** Test inputs of different shapes: runs, text, pseudo-random, mixtures. */
function sampleInputs(): Uint8Array[] {
  const rnd = (n: number, seed: number) => {
    let s = seed;
    return Uint8Array.from({ length: n }, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s >>> 24;
    });
  };
  return [
    new Uint8Array(0),
    enc("a"),
    enc("abc"),
    new Uint8Array(1000).fill(0x41),
    enc("abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc"),
    enc("The quick brown fox jumps over the lazy dog. ".repeat(40)),
    rnd(3000, 7),
    Uint8Array.from({ length: 5000 }, (_, i) => (i % 300 < 250 ? 0 : i & 0xff)),
    new Uint8Array([...rnd(400, 3), ...rnd(400, 3), ...new Uint8Array(600), ...rnd(17, 9)]),
  ];
}

// ------------------------------------------------------------------------------ hand-made cases

describe("pglz", () => {
  it("decodes literals, overlapping matches and extended lengths", () => {
    // ctrl 0: 8 literals
    expect(pglzDecompress(Uint8Array.from([0x00, ...enc("abcdefgh")]), 8)).toEqual(enc("abcdefgh"));
    // "ab" then a match off=2 len=10 (overlapping: repeats "ab")
    const rle = Uint8Array.from([0b100, 0x61, 0x62, 0x07, 0x02]);
    expect(Buffer.from(pglzDecompress(rle, 12)).toString()).toBe("abababababab");
    // "x" then a match off=1 len=18+255 = 273 (the longest tag)
    const longest = Uint8Array.from([0b10, 0x78, 0x0f, 0x01, 0xff]);
    expect(pglzDecompress(longest, 274)).toEqual(new Uint8Array(274).fill(0x78));
    // A match running past the expected size is clamped when nothing follows (as PostgreSQL).
    expect(pglzDecompress(Uint8Array.from([0b10, 0x78, 0x0f, 0x01, 0xff]), 100)).toEqual(new Uint8Array(100).fill(0x78));
    // A 12-bit offset: 4095 literal-ish bytes then a match 4095 back.
    const src = Uint8Array.from({ length: 4100 }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
    src.set(src.subarray(0, 5), 4095);
    expect(pglzDecompress(pglzCompress(src), src.length)).toEqual(src);
  });

  it("refuses corrupt streams with DecompressError", () => {
    expect(expectCorrupt(() => pglzDecompress(Uint8Array.from([0b1, 0x00, 0x00]), 10)).message).toMatch(/offset 0/);
    expectCorrupt(() => pglzDecompress(Uint8Array.from([0b10, 0x61, 0x00, 0x02]), 10)); // offset 2 > 1 produced
    expectCorrupt(() => pglzDecompress(Uint8Array.from([0b10, 0x61, 0x0f]), 10)); // tag truncated
    expectCorrupt(() => pglzDecompress(Uint8Array.from([0b10, 0x61, 0x0f, 0x01]), 30)); // length byte missing
    expect(expectCorrupt(() => pglzDecompress(Uint8Array.from([0x00, 0x61, 0x62]), 3)).message).toMatch(/produced 2/);
    expect(expectCorrupt(() => pglzDecompress(Uint8Array.from([0x00, 0x61, 0x62, 0x63]), 2)).message).toMatch(/trailing/);
    expectCorrupt(() => pglzDecompress(new Uint8Array(0), 1));
    expect(pglzDecompress(new Uint8Array(0), 0).length).toBe(0);
  });

  it("round-trips every sample through a reference encoder", () => {
    for (const s of sampleInputs()) expect(pglzDecompress(pglzCompress(s), s.length)).toEqual(s);
  });
});

describe("lz4 (raw block)", () => {
  it("decodes literals, overlapping matches and extended lengths", () => {
    // 5 literals only
    expect(lz4DecompressBlock(Uint8Array.from([0x50, ...enc("hello")]), 5)).toEqual(enc("hello"));
    // "a", match off=1 len=4+15+255+10 (extended), then 5 literals
    const run = Uint8Array.from([0x1f, 0x61, 0x01, 0x00, 0xff, 0x0a, 0x50, ...enc("tail!")]);
    const want = new Uint8Array(1 + 284 + 5).fill(0x61);
    want.set(enc("tail!"), 285);
    expect(lz4DecompressBlock(run, want.length)).toEqual(want);
    // 20 literals (15 + 5 extension) then end
    const lits = enc("0123456789abcdefghij");
    expect(lz4DecompressBlock(Uint8Array.from([0xf0, 0x05, ...lits]), 20)).toEqual(lits);
    // an empty final literal run is accepted
    expect(lz4DecompressBlock(Uint8Array.from([0x10, 0x41, 0x01, 0x00, 0x00]), 5)).toEqual(enc("AAAAA"));
  });

  it("refuses corrupt blocks with DecompressError", () => {
    expect(expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x10, 0x61, 0x00, 0x00, 0x00]), 10)).message).toMatch(/offset 0/);
    expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x10, 0x61, 0x02, 0x00, 0x00]), 10)); // offset > produced
    expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x50, 0x61, 0x62]), 5)); // literals truncated
    expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0xf0, 0xff]), 300)); // literal length truncated
    expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x10, 0x61, 0x01]), 10)); // offset truncated
    expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x1f, 0x61, 0x01, 0x00]), 100)); // match length truncated
    expect(expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x10, 0x61, 0x01, 0x00]), 5)).message).toMatch(/without final literals/);
    expect(expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x30, ...enc("abc")]), 4)).message).toMatch(/produced 3/);
    expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x30, ...enc("abc")]), 2)); // output overrun
    expectCorrupt(() => lz4DecompressBlock(Uint8Array.from([0x1f, 0x61, 0x01, 0x00, 0x20, 0x00]), 10)); // match overrun
    expectCorrupt(() => lz4DecompressBlock(new Uint8Array(0), 0));
  });

  it("round-trips every sample through a reference encoder", () => {
    for (const s of sampleInputs()) expect(lz4DecompressBlock(lz4Compress(s), s.length)).toEqual(s);
  });

  it("decodes blocks made by the lz4 tool (legacy frames hold raw blocks)", () => {
    for (const s of sampleInputs().filter((x) => x.length > 0)) {
      const framed = execFileSync("lz4", ["-l", "-c", "-q", "-12"], { input: s });
      // legacy frame: magic 0x184C2102, then per block a u32 LE compressed size and the block
      expect(framed.readUInt32LE(0)).toBe(0x184c2102);
      const size = framed.readUInt32LE(4);
      const block = new Uint8Array(framed.subarray(8, 8 + size));
      expect(lz4DecompressBlock(block, s.length)).toEqual(s);
    }
  });
});

describe("zstd (guarded node:zlib)", () => {
  it("decodes frames made by the zstd tool and refuses damaged ones", () => {
    for (const s of sampleInputs().filter((x) => x.length > 0)) {
      const frame = new Uint8Array(execFileSync("zstd", ["-c", "-q", "-3"], { input: s }));
      expect(zstdDecompress(frame, s.length)).toEqual(s);
      expectCorrupt(() => zstdDecompress(frame, s.length + 1)); // content size differs
      expectCorrupt(() => zstdDecompress(frame.subarray(0, frame.length - 1), s.length)); // truncated
      expectCorrupt(() => zstdDecompress(Uint8Array.from([...frame, 1, 2, 3, 4, 5, 6]), s.length)); // trailing garbage
    }
  });

  it("refuses bad magic, dictionaries, reserved bits, huge windows", () => {
    expect(expectCorrupt(() => zstdDecompress(Uint8Array.from([1, 2, 3, 4, 5, 6, 7]), 5)).message).toMatch(/magic/);
    const hdr = (fhd: number, ...rest: number[]) => Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd, fhd, ...rest]);
    expect(expectCorrupt(() => zstdDecompress(hdr(0x01, 0, 0, 0, 0), 5)).message).toMatch(/dictionary/);
    expect(expectCorrupt(() => zstdDecompress(hdr(0x08, 0, 0, 0), 5)).message).toMatch(/reserved/);
    expect(expectCorrupt(() => zstdDecompress(hdr(0x00, 0xf8, 0, 0, 0), 5)).message).toMatch(/window/);
    expectCorrupt(() => zstdDecompress(hdr(0x20, 5), 5)); // header fine, no blocks
  });
});

// ------------------------------------------------------------------------ real PostgreSQL data

const md5 = (s: string) => createHash("md5").update(s).digest("hex");

/** The text value of row g, computed as the SQL below computes it. */
function expectedValue(g: number): string {
  let agg = "";
  for (let i = 1; i <= g % 20; i++) agg += md5(String(g * i));
  return md5(String(g)).repeat(70 + (g % 60)) + String.fromCharCode(65 + (g % 26)).repeat(g % 300) + agg + `ab${g}`.repeat(1 + (g % 90));
}
const VALUE_SQL = `repeat(md5(g::text), 70 + g % 60) || repeat(chr(65 + g % 26), g % 300)
  || coalesce((SELECT string_agg(md5((g * i)::text), '' ORDER BY i) FROM generate_series(1, g % 20) i), '')
  || repeat('ab' || g::text, 1 + g % 90)`;

let pg: PgInstance | undefined;
let heapFiles: { pglz: Uint8Array; lz4: Uint8Array };
const images: { method: number; image: BlockImage; record: DecodedRecord }[] = [];
let wFileNode = 0;

beforeAll(async () => {
  pg = await PgInstance.start({ conf: { wal_level: "replica", wal_keep_size: "256MB", autovacuum: false } });
  await pg.psql(`
    CREATE TABLE cp (id int, v text COMPRESSION pglz);
    CREATE TABLE cl (id int, v text COMPRESSION lz4);
    INSERT INTO cp SELECT g, ${VALUE_SQL} FROM generate_series(1, 400) g;
    INSERT INTO cl SELECT g, ${VALUE_SQL} FROM generate_series(1, 400) g;
    CREATE TABLE w (id int, v text);
    INSERT INTO w SELECT g, repeat(chr(65 + g % 26), g % 200) FROM generate_series(1, 3000) g;`);
  const start = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
  await pg.psql(`
    SET wal_compression = pglz; CHECKPOINT; UPDATE w SET v = v || 'u' WHERE id % 3 = 0;
    SET wal_compression = lz4;  CHECKPOINT; UPDATE w SET v = v || 'u' WHERE id % 3 = 1;
    SET wal_compression = zstd; CHECKPOINT; UPDATE w SET v = v || 'u' WHERE id % 3 = 2;
    CHECKPOINT;`);
  const end = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
  wFileNode = Number(await pg.psql("SELECT pg_relation_filenode('w')"));
  const paths = (await pg.psql("SELECT pg_relation_filepath('cp'), pg_relation_filepath('cl')")).split("|");
  await pg.stop();
  heapFiles = {
    pglz: new Uint8Array(readFileSync(join(pg.dataDir, paths[0]!))),
    lz4: new Uint8Array(readFileSync(join(pg.dataDir, paths[1]!))),
  };

  // Decode the WAL of the three compressed stretches; collect every compressed image.
  const SEG = 16 << 20;
  const segStart = Math.floor(start / SEG) * SEG;
  const parts: Buffer[] = [];
  for (let s = segStart; s < end; s += SEG) parts.push(readFileSync(join(pg.walDir, walFileName(1, s / SEG, SEG))));
  const wal = Buffer.concat(parts).subarray(0, end - segStart);
  const dec = new WalStreamDecoder(asLsn(segStart));
  dec.feed(wal);
  for (let r = dec.next(); r !== null; r = dec.next()) {
    for (const b of r.blocks) {
      const method = (b.image?.bimgInfo ?? 0) & (BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD);
      if (b.image !== undefined && method !== 0) images.push({ method, image: b.image, record: r });
    }
  }
}, 120_000);

afterAll(async () => {
  await pg?.destroy();
});

/** Inline compressed varlenas (4-byte header, tag 0x02) of a heap file of (id int, v text). */
function compressedValues(file: Uint8Array): { id: number; method: number; rawSize: number; data: Uint8Array }[] {
  const out: { id: number; method: number; rawSize: number; data: Uint8Array }[] = [];
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  for (let p = 0; p + 8192 <= file.length; p += 8192) {
    const lower = dv.getUint16(p + 12, true);
    for (let lp = p + 24; lp < p + lower; lp += 4) {
      const word = dv.getUint32(lp, true);
      if (((word >>> 15) & 3) !== 1) continue;
      const tup = p + (word & 0x7fff);
      const data = tup + file[tup + 22]!;
      const id = dv.getInt32(data, true);
      const h = dv.getUint32(data + 4, true);
      if ((h & 0x03) !== 0x02) continue; // not an inline compressed 4-byte varlena
      const size = h >>> 2;
      const tcinfo = dv.getUint32(data + 8, true);
      out.push({ id, method: tcinfo >>> 30, rawSize: tcinfo & 0x3fff_ffff, data: file.subarray(data + 12, data + 4 + size) });
    }
  }
  return out;
}

describe("on data compressed by PostgreSQL 15", () => {
  it("pglz: inline-compressed TOAST values decode to the known text", () => {
    const vals = compressedValues(heapFiles.pglz);
    expect(vals.length).toBeGreaterThan(300);
    for (const v of vals) {
      expect(v.method).toBe(0);
      const text = Buffer.from(pglzDecompress(v.data, v.rawSize)).toString("latin1");
      expect(text === expectedValue(v.id), `row ${v.id}`).toBe(true);
    }
  });

  it("lz4: inline-compressed TOAST values decode to the known text", () => {
    const vals = compressedValues(heapFiles.lz4);
    expect(vals.length).toBeGreaterThan(300);
    for (const v of vals) {
      expect(v.method).toBe(1);
      const text = Buffer.from(lz4DecompressBlock(v.data, v.rawSize)).toString("latin1");
      expect(text === expectedValue(v.id), `row ${v.id}`).toBe(true);
    }
  });

  it("WAL images: pglz, lz4 and zstd images restore to pages holding the known rows", () => {
    const byMethod = new Map<number, number>();
    for (const { method, image, record } of images) {
      byMethod.set(method, (byMethod.get(method) ?? 0) + 1);
      const page = restorePageImage({ image }, undefined, record.lsn);
      const dv = new DataView(page.buffer);
      expect(dv.getUint16(18, true)).toBe(8192 | 4);
      if (record.blocks.some((b) => b.image === image && b.rnode.relNode === wFileNode && b.forkNum === 0)) {
        const lower = dv.getUint16(12, true);
        for (let lp = 24; lp < lower; lp += 4) {
          const word = dv.getUint32(lp, true);
          if (((word >>> 15) & 3) !== 1) continue;
          const tup = word & 0x7fff;
          const data = tup + page[tup + 22]!;
          const id = dv.getInt32(data, true);
          const b0 = page[data + 4]!;
          const v =
            (b0 & 1) === 1
              ? page.subarray(data + 5, data + 4 + (b0 >>> 1))
              : page.subarray(data + 8, data + 4 + (dv.getUint32(data + 4, true) >>> 2));
          const s = Buffer.from(v).toString("latin1");
          const base = String.fromCharCode(65 + (id % 26)).repeat(id % 200);
          expect(s.startsWith(base) && /^u*$/.test(s.slice(base.length)), `row ${id}`).toBe(true);
        }
      }
    }
    expect(byMethod.get(BKPIMAGE_COMPRESS_PGLZ) ?? 0).toBeGreaterThan(10);
    expect(byMethod.get(BKPIMAGE_COMPRESS_LZ4) ?? 0).toBeGreaterThan(10);
    expect(byMethod.get(BKPIMAGE_COMPRESS_ZSTD) ?? 0).toBeGreaterThan(10);
  });

  it("WAL images: lz4 and zstd results equal the lz4 and zstd tools'", () => {
    let checked = 0;
    for (const { method, image } of images) {
      const size = 8192 - image.holeLength;
      let theirs: Buffer;
      if (method === BKPIMAGE_COMPRESS_LZ4) {
        const head = Buffer.alloc(8);
        head.writeUInt32LE(0x184c2102, 0);
        head.writeUInt32LE(image.bytes.length, 4);
        theirs = execFileSync("lz4", ["-d", "-c", "-q"], { input: Buffer.concat([head, image.bytes]) });
        expect(lz4DecompressBlock(image.bytes, size)).toEqual(new Uint8Array(theirs));
      } else if (method === BKPIMAGE_COMPRESS_ZSTD) {
        theirs = execFileSync("zstd", ["-d", "-c", "-q"], { input: image.bytes });
        expect(zstdDecompress(image.bytes, size)).toEqual(new Uint8Array(theirs));
      } else continue;
      if (++checked >= 40) break;
    }
    expect(checked).toBeGreaterThan(20);
  });

  it("mutated images: every decoder either yields the exact size or throws DecompressError", () => {
    const sample = [BKPIMAGE_COMPRESS_PGLZ, BKPIMAGE_COMPRESS_LZ4, BKPIMAGE_COMPRESS_ZSTD].flatMap((m) =>
      images.filter((i) => i.method === m).slice(0, 8),
    );
    const decode = (m: number, bytes: Uint8Array, size: number) =>
      m === BKPIMAGE_COMPRESS_PGLZ
        ? pglzDecompress(bytes, size)
        : m === BKPIMAGE_COMPRESS_LZ4
          ? lz4DecompressBlock(bytes, size)
          : zstdDecompress(bytes, size);
    fc.assert(
      fc.property(
        fc.nat(sample.length - 1),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: -40, max: 8 }),
        (which, flips, resize) => {
          const { method, image } = sample[which]!;
          const size = 8192 - image.holeLength;
          let bytes = image.bytes.slice();
          for (const [pos, val] of flips) bytes[pos % bytes.length] = val;
          if (resize < 0) bytes = bytes.subarray(0, Math.max(0, bytes.length + resize));
          else if (resize > 0) bytes = Uint8Array.from([...bytes, ...new Uint8Array(resize).fill(resize)]);
          try {
            expect(decode(method, bytes, size).length).toBe(size);
          } catch (e) {
            if (!(e instanceof DecompressError)) throw e;
          }
        },
      ),
      { numRuns: 1500, seed: 4242 },
    );
  });
});

describe("random round trips", () => {
  it("pglz and lz4 reference encodings of random buffers decode back; truncations are refused", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(40), (data, rep) => {
        // Make repetition likely: append a prefix of itself `rep` bytes long, twice.
        const src = Uint8Array.from([...data, ...data.subarray(0, rep), ...data.subarray(0, rep)]);
        const p = pglzCompress(src, 300);
        expect(pglzDecompress(p, src.length)).toEqual(src);
        const l = lz4Compress(src, 300);
        expect(lz4DecompressBlock(l, src.length)).toEqual(src);
        if (src.length > 0) {
          expectCorrupt(() => lz4DecompressBlock(l.subarray(0, l.length - 1), src.length));
          expectCorrupt(() => pglzDecompress(p, src.length + 1));
        }
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});
