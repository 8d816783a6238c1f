/**
 * Value types of src/types: Lsn (PostgreSQL's `X/Y` text form, refusal beyond 2^53, the
 * fixed-width hex16 form of file names, LE/BE u64 readers and writers), Key (makeKey field
 * ranges, latin1 string order equal to byte order — a property test against Buffer.compare —,
 * keyNext carry, hex round trip, keyAddBlocks) and tenant/timeline id validation messages.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../src/types/assert.js";
import { InvalidArgumentError } from "../src/types/errors.js";
import { generateTenantId, generateTimelineId, isId, parseTenantId, parseTimelineId } from "../src/types/ids.js";
import {
  compareKeys,
  isKey,
  KEY_MAX,
  KEY_MIN,
  KEY_SIZE,
  type Key,
  keyAddBlocks,
  keyField6,
  keyFields,
  keyFromBytes,
  keyFromFields,
  keyFromHex,
  keyNext,
  keyRangeContains,
  keyRangesOverlap,
  keyToBytes,
  keyToHex,
  makeKey,
} from "../src/types/key.js";
import {
  asLsn,
  isValidLsn,
  lsnAdd,
  lsnFromHex16,
  lsnFromParts,
  lsnHi,
  lsnLo,
  lsnMax,
  lsnMin,
  lsnToHex16,
  lsnToString,
  MAX_LSN,
  parseLsn,
  readLsnBE,
  readLsnLE,
  writeLsnBE,
  writeLsnLE,
} from "../src/types/lsn.js";

const TWO_32 = 0x1_0000_0000;

describe("Lsn text form", () => {
  it("prints as PostgreSQL does: upper-case hex halves without padding", () => {
    expect(lsnToString(asLsn(0))).toBe("0/0");
    expect(lsnToString(asLsn(0x16b3748))).toBe("0/16B3748");
    expect(lsnToString(asLsn(TWO_32))).toBe("1/0");
    expect(lsnToString(asLsn(TWO_32 - 1))).toBe("0/FFFFFFFF");
    expect(lsnToString(asLsn(0xab * TWO_32 + 0xcd))).toBe("AB/CD");
    expect(lsnToString(MAX_LSN)).toBe("1FFFFF/FFFFFFFF");
  });

  it("parses both cases and padded halves", () => {
    expect(parseLsn("0/16B3748")).toBe(0x16b3748);
    expect(parseLsn("0/16b3748")).toBe(0x16b3748);
    expect(parseLsn("00000001/00000000")).toBe(TWO_32);
    expect(parseLsn("1FFFFF/FFFFFFFF")).toBe(MAX_LSN);
  });

  it("refuses malformed text with a message naming the input", () => {
    for (const bad of ["", "0", "/0", "0/", "0x1/0", "1/2/3", " 0/1", "0/1 ", "G/0", "123456789/0", "0/123456789", "-1/0", "0/-1"]) {
      expect(() => parseLsn(bad), bad).toThrow(InvalidArgumentError);
      expect(() => parseLsn(bad), bad).toThrow(`invalid LSN '${bad}': expected X/Y in hex`);
    }
  });

  it("refuses LSNs beyond 2^53 instead of rounding", () => {
    expect(() => parseLsn("200000/0")).toThrow("LSN '200000/0' is beyond 2^53");
    expect(() => parseLsn("FFFFFFFF/FFFFFFFF")).toThrow(InvalidArgumentError);
    expect(() => lsnFromParts(0x200000, 0)).toThrow("LSN 200000/0 is beyond 2^53");
    expect(lsnFromParts(0x1fffff, 0xffffffff)).toBe(MAX_LSN);
  });

  it("round-trips every safe LSN through text", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_LSN }), (lsn) => {
        expect(parseLsn(lsnToString(asLsn(lsn)))).toBe(lsn);
        expect(lsnHi(asLsn(lsn)) * TWO_32 + lsnLo(asLsn(lsn))).toBe(lsn);
        expect(lsnLo(asLsn(lsn))).toBeLessThan(TWO_32);
      }),
      { numRuns: 2000 },
    );
  });

  it("isValidLsn accepts only non-negative safe integers", () => {
    expect(isValidLsn(0)).toBe(true);
    expect(isValidLsn(MAX_LSN)).toBe(true);
    expect(isValidLsn(MAX_LSN + 1)).toBe(false);
    expect(isValidLsn(-1)).toBe(false);
    expect(isValidLsn(1.5)).toBe(false);
    expect(isValidLsn("0/0")).toBe(false);
    expect(isValidLsn(Number.NaN)).toBe(false);
  });

  it("asLsn brands a number from outside only when it is a valid LSN", () => {
    expect(asLsn(0)).toBe(0);
    expect(asLsn(MAX_LSN)).toBe(MAX_LSN);
    for (const bad of [-1, MAX_LSN + 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => asLsn(bad), String(bad)).toThrow(InvalidArgumentError);
  });

  it("lsnAdd, lsnMax and lsnMin are plain arithmetic on LSNs", () => {
    expect(lsnAdd(asLsn(TWO_32 - 8), 16)).toBe(TWO_32 + 8);
    expect(lsnAdd(asLsn(0x100), -8)).toBe(0xf8);
    expect(lsnMax(asLsn(1), asLsn(2))).toBe(2);
    expect(lsnMin(asLsn(1), asLsn(2))).toBe(1);
  });
});

describe("Lsn hex16 form (file names)", () => {
  it("is 16 upper-case digits and sorts like the number", () => {
    expect(lsnToHex16(asLsn(0))).toBe("0000000000000000");
    expect(lsnToHex16(asLsn(0x16b3748))).toBe("00000000016B3748");
    expect(lsnToHex16(MAX_LSN)).toBe("001FFFFFFFFFFFFF");
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_LSN }), fc.integer({ min: 0, max: MAX_LSN }), (a, b) => {
        const ha = lsnToHex16(asLsn(a));
        const hb = lsnToHex16(asLsn(b));
        expect(ha).toHaveLength(16);
        expect(lsnFromHex16(ha)).toBe(a);
        expect(Math.sign(ha < hb ? -1 : ha > hb ? 1 : 0)).toBe(Math.sign(a - b));
      }),
      { numRuns: 1000 },
    );
  });

  it("refuses lower case, wrong length, and values beyond 2^53", () => {
    expect(() => lsnFromHex16("00000000016b3748")).toThrow("invalid LSN '00000000016b3748' in a file name");
    expect(() => lsnFromHex16("016B3748")).toThrow(InvalidArgumentError);
    expect(() => lsnFromHex16("00000000016B37480")).toThrow(InvalidArgumentError);
    expect(() => lsnFromHex16("0020000000000000")).toThrow("is beyond 2^53");
  });
});

describe("Lsn binary readers and writers", () => {
  it("LE is PostgreSQL's byte order: low half first, each half little-endian", () => {
    const buf = new Uint8Array(12);
    writeLsnLE(buf, 2, asLsn(0x000a_0b0c * TWO_32 + 0x0506_0708));
    expect([...buf]).toEqual([0, 0, 0x08, 0x07, 0x06, 0x05, 0x0c, 0x0b, 0x0a, 0x00, 0, 0]);
    expect(readLsnLE(buf, 2)).toBe(0x000a_0b0c * TWO_32 + 0x0506_0708);
  });

  it("BE is high half first, big-endian", () => {
    const buf = new Uint8Array(10);
    writeLsnBE(buf, 1, asLsn(0x000a_0b0c * TWO_32 + 0x0506_0708));
    expect([...buf]).toEqual([0, 0x00, 0x0a, 0x0b, 0x0c, 0x05, 0x06, 0x07, 0x08, 0]);
    expect(readLsnBE(buf, 1)).toBe(0x000a_0b0c * TWO_32 + 0x0506_0708);
  });

  it("readers honour the view's byteOffset and refuse u64 beyond 2^53", () => {
    const backing = new Uint8Array(32);
    const view = backing.subarray(5, 21);
    writeLsnBE(view, 0, MAX_LSN);
    writeLsnLE(view, 8, asLsn(0x16b3748));
    expect(readLsnBE(backing, 5)).toBe(MAX_LSN);
    expect(readLsnLE(backing, 13)).toBe(0x16b3748);
    const big = new Uint8Array(8).fill(0xff);
    expect(() => readLsnLE(big, 0)).toThrow("beyond 2^53");
    expect(() => readLsnBE(big, 0)).toThrow("beyond 2^53");
    // 2^53 exactly: hi = 0x00200000, lo = 0.
    const edge = new Uint8Array([0, 0x20, 0, 0, 0, 0, 0, 0]);
    expect(readLsnBE(new Uint8Array([0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 0)).toBe(MAX_LSN);
    expect(() => readLsnBE(edge, 0)).toThrow(InvalidArgumentError);
  });

  it("round-trips random LSNs both ways and agrees with DataView.getBigUint64", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_LSN }), (lsn) => {
        const buf = new Uint8Array(16);
        writeLsnLE(buf, 0, asLsn(lsn));
        writeLsnBE(buf, 8, asLsn(lsn));
        const dv = new DataView(buf.buffer);
        expect(dv.getBigUint64(0, true)).toBe(BigInt(lsn));
        expect(dv.getBigUint64(8, false)).toBe(BigInt(lsn));
        expect(readLsnLE(buf, 0)).toBe(lsn);
        expect(readLsnBE(buf, 8)).toBe(lsn);
      }),
      { numRuns: 1000 },
    );
  });
});

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u8 = fc.integer({ min: 0, max: 0xff });
/** Keys biased towards shared prefixes and 0x00/0x7f/0x80/0xff bytes, where order bugs hide. */
const keyArb: fc.Arbitrary<Key> = fc
  .tuple(
    fc.constantFrom(0, 1, 0x7f, 0x80, 0xff),
    fc.oneof(u32, fc.constantFrom(0, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff)),
    fc.oneof(u32, fc.constantFrom(0, 1, 0x80, 0xffff_ffff)),
    u32,
    fc.oneof(u8, fc.constantFrom(0, 0xff)),
    fc.oneof(u32, fc.constantFrom(0, 0xff, 0x100, 0xffff_ffff)),
  )
  .map(([a, b, c, d, e, f]) => makeKey(a, b, c, d, e, f));

function bytesOf(k: Key): Buffer {
  const b = Buffer.alloc(KEY_SIZE);
  keyToBytes(k, b, 0);
  return b;
}

describe("Key", () => {
  it("makeKey lays the six fields out big-endian in 18 bytes", () => {
    const k = makeKey(0x01, 0x0203_0405, 0x0607_0809, 0x0a0b_0c0d, 0x0e, 0x0f10_1112);
    expect(k).toHaveLength(KEY_SIZE);
    expect([...bytesOf(k)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
    expect(keyToHex(k)).toBe("0102030405060708090A0B0C0D0E0F101112");
    expect(keyFields(k)).toEqual({
      field1: 1,
      field2: 0x0203_0405,
      field3: 0x0607_0809,
      field4: 0x0a0b_0c0d,
      field5: 0x0e,
      field6: 0x0f10_1112,
    });
    expect(keyField6(k)).toBe(0x0f10_1112);
    expect(makeKey(0xff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xff, 0xffff_ffff)).toBe(KEY_MAX);
    expect(makeKey(0, 0, 0, 0, 0, 0)).toBe(KEY_MIN);
  });

  it("makeKey refuses every field out of its range, naming the fields", () => {
    const ok = [1, 2, 3, 4, 5, 6];
    const bad: Array<[number, number]> = [
      [0, 256],
      [0, -1],
      [0, 1.5],
      [1, 0x1_0000_0000],
      [1, -1],
      [2, Number.NaN],
      [3, 0.5],
      [4, 256],
      [5, 0x1_0000_0000],
      [5, Number.POSITIVE_INFINITY],
    ];
    for (const [field, value] of bad) {
      const args = [...ok];
      args[field] = value;
      const [a, b, c, d, e, f] = args as [number, number, number, number, number, number];
      expect(() => makeKey(a, b, c, d, e, f), `field ${field + 1} = ${value}`).toThrow(InvalidArgumentError);
      expect(() => makeKey(a, b, c, d, e, f)).toThrow(`key field out of range: ${args.join(",")}`);
    }
  });

  it("string order equals byte order (property, against Buffer.compare)", () => {
    fc.assert(
      fc.property(keyArb, keyArb, (a, b) => {
        expect(compareKeys(a, b)).toBe(Buffer.compare(bytesOf(a), bytesOf(b)));
        expect(a < b).toBe(Buffer.compare(bytesOf(a), bytesOf(b)) < 0);
      }),
      { numRuns: 3000 },
    );
  });

  it("fields, bytes and hex round-trip", () => {
    fc.assert(
      fc.property(keyArb, (k) => {
        expect(isKey(k)).toBe(true);
        expect(keyFromFields(keyFields(k))).toBe(k);
        expect(keyFromHex(keyToHex(k))).toBe(k);
        expect(keyFromHex(keyToHex(k).toLowerCase())).toBe(k);
        const buf = new Uint8Array(KEY_SIZE + 7);
        keyToBytes(k, buf, 7);
        expect(keyFromBytes(buf, 7)).toBe(k);
      }),
      { numRuns: 1000 },
    );
  });

  it("keyFromHex refuses anything but 36 hex digits", () => {
    for (const bad of ["", "00", "0".repeat(35), "0".repeat(37), `${"0".repeat(35)}G`, ` ${"0".repeat(35)}`]) {
      expect(() => keyFromHex(bad)).toThrow(`invalid key '${bad}': expected 36 hex digits`);
    }
  });

  it("isKey refuses wrong lengths and chars above 0xff", () => {
    expect(isKey(KEY_MIN)).toBe(true);
    expect(isKey("\0".repeat(17))).toBe(false);
    expect(isKey("\0".repeat(19))).toBe(false);
    expect(isKey(`${"\0".repeat(17)}\u0100`)).toBe(false);
    expect(isKey(42)).toBe(false);
  });

  it("keyNext increments the last byte and carries through 0xff bytes across fields", () => {
    expect(keyNext(makeKey(1, 2, 3, 4, 0, 7))).toBe(makeKey(1, 2, 3, 4, 0, 8));
    expect(keyNext(makeKey(1, 2, 3, 4, 0, 0xff))).toBe(makeKey(1, 2, 3, 4, 0, 0x100));
    // field6 full: carries into field5.
    expect(keyNext(makeKey(1, 2, 3, 4, 0, 0xffff_ffff))).toBe(makeKey(1, 2, 3, 4, 1, 0));
    // field6 and field5 full: carries into field4.
    expect(keyNext(makeKey(1, 2, 3, 4, 0xff, 0xffff_ffff))).toBe(makeKey(1, 2, 3, 5, 0, 0));
    expect(keyNext(makeKey(0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xff, 0xffff_ffff))).toBe(makeKey(1, 0, 0, 0, 0, 0));
    expect(keyNext(KEY_MIN)).toBe(makeKey(0, 0, 0, 0, 0, 1));
    expect(() => keyNext(KEY_MAX)).toThrow(AssertionError);
    fc.assert(
      fc.property(keyArb, (k) => {
        fc.pre(k !== KEY_MAX);
        const n = keyNext(k);
        expect(n > k).toBe(true);
        // Nothing lies strictly between k and keyNext(k): as 144-bit integers, n = k + 1.
        expect(BigInt(`0x${keyToHex(n)}`)).toBe(BigInt(`0x${keyToHex(k)}`) + 1n);
      }),
      { numRuns: 1000 },
    );
  });

  it("keyAddBlocks moves within field6 only and refuses to carry or go negative", () => {
    const k = makeKey(0, 1663, 5, 16384, 0, 10);
    expect(keyAddBlocks(k, 0)).toBe(k);
    expect(keyAddBlocks(k, 5)).toBe(makeKey(0, 1663, 5, 16384, 0, 15));
    expect(keyAddBlocks(k, -10)).toBe(makeKey(0, 1663, 5, 16384, 0, 0));
    expect(keyAddBlocks(k, 0xffff_fff5)).toBe(makeKey(0, 1663, 5, 16384, 0, 0xffff_ffff));
    expect(() => keyAddBlocks(k, 0xffff_fff6)).toThrow("keyAddBlocks overflow");
    expect(() => keyAddBlocks(k, -11)).toThrow("keyAddBlocks overflow");
    fc.assert(
      fc.property(keyArb, fc.integer({ min: 0, max: 0xffff_ffff }), (key, n) => {
        const f6 = keyField6(key);
        fc.pre(f6 + n <= 0xffff_ffff);
        const moved = keyAddBlocks(key, n);
        const f = keyFields(key);
        expect(keyFields(moved)).toEqual({ ...f, field6: f6 + n });
      }),
      { numRuns: 500 },
    );
  });

  it("key ranges are half-open", () => {
    const a = makeKey(0, 0, 0, 0, 0, 10);
    const b = makeKey(0, 0, 0, 0, 0, 20);
    const c = makeKey(0, 0, 0, 0, 0, 30);
    expect(keyRangeContains({ start: a, end: b }, a)).toBe(true);
    expect(keyRangeContains({ start: a, end: b }, b)).toBe(false);
    expect(keyRangesOverlap({ start: a, end: b }, { start: b, end: c })).toBe(false);
    expect(keyRangesOverlap({ start: a, end: keyNext(b) }, { start: b, end: c })).toBe(true);
  });
});

describe("ids", () => {
  it("accepts 32 lower-case hex characters and generates such ids", () => {
    const t = generateTenantId();
    const tl = generateTimelineId();
    expect(isId(t) && isId(tl)).toBe(true);
    expect(t).not.toBe(generateTenantId());
    expect(parseTenantId("0123456789abcdef0123456789abcdef")).toBe("0123456789abcdef0123456789abcdef");
    expect(parseTimelineId(tl)).toBe(tl);
  });

  it("refuses anything else with a message that names the input and the expected form", () => {
    const bads: unknown[] = [
      "xyz",
      "../etc",
      "0123456789ABCDEF0123456789abcdef",
      "0".repeat(31),
      "0".repeat(33),
      `${"0".repeat(31)}/`,
      "",
      42,
      null,
      undefined,
    ];
    for (const bad of bads) {
      expect(() => parseTenantId(bad)).toThrow(InvalidArgumentError);
      expect(() => parseTenantId(bad)).toThrow(`invalid tenant id ${JSON.stringify(bad)}: expected 32 lower-case hex characters`);
      expect(() => parseTimelineId(bad)).toThrow(`invalid timeline id ${JSON.stringify(bad)}: expected 32 lower-case hex characters`);
      expect(isId(bad)).toBe(false);
    }
    // A trailing newline must not slip past the anchors ($ without the m flag matches only at the end).
    expect(isId(`${"a".repeat(32)}\n`)).toBe(false);
  });
});
