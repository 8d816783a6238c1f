/**
 * Hashing of the page cache's tags: the hash picks a slot's bucket (low bits) and, through the
 * bucket, its mapping stripe. Materialized versions of one (ns, key) hash alike (the LSN is
 * not hashed), so one chain walk finds the newest version at or below a requested LSN.
 *
 * Invariants: pure integer functions (a few Math.imul mixes), no allocation: they run on every
 * lookup. A key's 18 bytes are read as four big-endian words and a 16-bit tail (keyWord).
 */
import { KIND_MATERIALIZED } from "./layout.js";

/** One murmur3 round: mixes word `w` into `h`. */
function mix(h: number, w: number): number {
  let k = Math.imul(w, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** murmur3 finalizer: every input bit reaches the low bits (bucket and stripe come from them). */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

export function hashBlock(kind: number, fileId: number, blkno: number): number {
  return fmix(mix(mix(kind, fileId), blkno));
}

export function hashMaterialized(ns: number, k0: number, k1: number, k2: number, k3: number, k4: number): number {
  return fmix(mix(mix(mix(mix(mix(mix(KIND_MATERIALIZED, ns), k0), k1), k2), k3), k4));
}

/** Bytes i..i+3 of a key (a binary string) as one big-endian word. */
export function keyWord(key: string, i: number): number {
  return (key.charCodeAt(i) << 24) | (key.charCodeAt(i + 1) << 16) | (key.charCodeAt(i + 2) << 8) | key.charCodeAt(i + 3);
}
