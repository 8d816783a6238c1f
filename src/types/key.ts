/**
 * Key: the 18-byte page address of the storage model, six fields as in Neon:
 *
 *   field1 u8 | field2 u32 | field3 u32 | field4 u32 | field5 u8 | field6 u32     (big-endian)
 *   kind        spcnode      dbnode       relnode      forknum    blknum
 *
 * In memory a key is a `Key`: an 18-character string whose char codes are the 18 bytes
 * (latin1). Such strings compare with `<` in exactly the byte order, hash in Maps without
 * any work of ours, and cost one small string each. `KeyFields` is the decoded form for
 * construction, display and the datadir mapping; it never sits on a hot path.
 *
 * Text form (file names, logs): 36 upper-case hex digits.
 */
import { assert } from "./assert.js";
import { InvalidArgumentError } from "./errors.js";

export type Key = string & { readonly __brand: "Key" };

export const KEY_SIZE = 18;

export interface KeyFields {
  field1: number; // u8
  field2: number; // u32
  field3: number; // u32
  field4: number; // u32
  field5: number; // u8
  field6: number; // u32
}

function u8ok(x: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= 0xff;
}
function u32ok(x: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff;
}

const fc = String.fromCharCode;

export function makeKey(f1: number, f2: number, f3: number, f4: number, f5: number, f6: number): Key {
  if (!(u8ok(f1) && u32ok(f2) && u32ok(f3) && u32ok(f4) && u8ok(f5) && u32ok(f6))) {
    throw new InvalidArgumentError(`key field out of range: ${f1},${f2},${f3},${f4},${f5},${f6}`);
  }
  // One call: a flat string at once. Concatenated pieces would be a cons string that every
  // Map lookup flattens (a copy) before hashing, and ingest makes several keys per record.
  return fc(
    f1,
    f2 >>> 24,
    (f2 >>> 16) & 0xff,
    (f2 >>> 8) & 0xff,
    f2 & 0xff,
    f3 >>> 24,
    (f3 >>> 16) & 0xff,
    (f3 >>> 8) & 0xff,
    f3 & 0xff,
    f4 >>> 24,
    (f4 >>> 16) & 0xff,
    (f4 >>> 8) & 0xff,
    f4 & 0xff,
    f5,
    f6 >>> 24,
    (f6 >>> 16) & 0xff,
    (f6 >>> 8) & 0xff,
    f6 & 0xff,
  ) as Key;
}

export function keyFromFields(f: KeyFields): Key {
  return makeKey(f.field1, f.field2, f.field3, f.field4, f.field5, f.field6);
}

function u32at(k: string, i: number): number {
  return ((k.charCodeAt(i) << 24) | (k.charCodeAt(i + 1) << 16) | (k.charCodeAt(i + 2) << 8) | k.charCodeAt(i + 3)) >>> 0;
}

export function keyFields(k: Key): KeyFields {
  return {
    field1: k.charCodeAt(0),
    field2: u32at(k, 1),
    field3: u32at(k, 5),
    field4: u32at(k, 9),
    field5: k.charCodeAt(13),
    field6: u32at(k, 14),
  };
}

/** The last field (block number for relation and SLRU keys), read without decoding the rest. */
export function keyField6(k: Key): number {
  return u32at(k, 14);
}

export const KEY_MIN: Key = "\0".repeat(KEY_SIZE) as Key;
export const KEY_MAX: Key = "\xff".repeat(KEY_SIZE) as Key;

export function isKey(x: unknown): x is Key {
  if (typeof x !== "string" || x.length !== KEY_SIZE) return false;
  for (let i = 0; i < KEY_SIZE; i++) if (x.charCodeAt(i) > 0xff) return false;
  return true;
}

export function compareKeys(a: Key, b: Key): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The next key in order (carrying from field6 up), as Neon's Key::next. KEY_MAX has none. */
export function keyNext(k: Key): Key {
  assert(k !== KEY_MAX, "keyNext(KEY_MAX)");
  const codes = new Array<number>(KEY_SIZE);
  for (let i = 0; i < KEY_SIZE; i++) codes[i] = k.charCodeAt(i);
  for (let i = KEY_SIZE - 1; i >= 0; i--) {
    if (codes[i]! < 0xff) {
      codes[i]!++;
      break;
    }
    codes[i] = 0;
  }
  return fc(...codes) as Key;
}

/** Key + n within the last field only (block ranges); refuses to carry. */
export function keyAddBlocks(k: Key, n: number): Key {
  const f6 = keyField6(k) + n;
  assert(f6 >= 0 && f6 <= 0xffff_ffff, "keyAddBlocks overflow");
  return (k.slice(0, 14) + fc(f6 >>> 24, (f6 >>> 16) & 0xff, (f6 >>> 8) & 0xff, f6 & 0xff)) as Key;
}

export function keyToBytes(k: Key, dst: Uint8Array, off: number): void {
  for (let i = 0; i < KEY_SIZE; i++) dst[off + i] = k.charCodeAt(i);
}

export function keyFromBytes(src: Uint8Array, off: number): Key {
  let s = "";
  for (let i = 0; i < KEY_SIZE; i++) s += fc(src[off + i]!);
  return s as Key;
}

export function keyToHex(k: Key): string {
  let s = "";
  for (let i = 0; i < KEY_SIZE; i++) s += k.charCodeAt(i).toString(16).toUpperCase().padStart(2, "0");
  return s;
}

export function keyFromHex(text: string): Key {
  if (!/^[0-9A-Fa-f]{36}$/.test(text)) throw new InvalidArgumentError(`invalid key '${text}': expected 36 hex digits`);
  let s = "";
  for (let i = 0; i < KEY_SIZE; i++) s += fc(Number.parseInt(text.slice(2 * i, 2 * i + 2), 16));
  return s as Key;
}

/** Half-open key range [start, end). */
export interface KeyRange {
  start: Key;
  end: Key;
}

export function keyRangeContains(r: KeyRange, k: Key): boolean {
  return r.start <= k && k < r.end;
}

export function keyRangesOverlap(a: KeyRange, b: KeyRange): boolean {
  return a.start < b.end && b.start < a.end;
}
