/**
 * The deterministic synthetic workload of the kill -9 test: step i writes at LSN
 * START_LSN + 8·(i+1) to key i mod NKEYS, an initializing value every INIT_EVERY-th time a
 * key is written, else an append. Anyone can recompute the value of any key at any LSN.
 */
import { testAppend, testInit } from "./test_redo.js";
import { type Key, makeKey } from "../../src/types/key.js";
import { asLsn } from "../../src/types/lsn.js";
import type { Value } from "../../src/types/value.js";

export const START_LSN = asLsn(0x10000);
export const NKEYS = 64;
const INIT_EVERY = 5;
const PAD = "x".repeat(120);

export const keyOf = (k: number): Key => makeKey(0, 1663, 7, 4000 + (k % 4), 0, k);
export const lsnOfStep = (i: number): number => START_LSN + 8 * (i + 1);
export const stepOfLsn = (lsn: number): number => Math.floor((lsn - START_LSN) / 8) - 1;

function piece(i: number): string {
  return `${i};${PAD.slice(0, i % 120)}|`;
}

export function valueOfStep(i: number): { key: Key; value: Value } {
  const k = i % NKEYS;
  const nth = Math.floor(i / NKEYS);
  return { key: keyOf(k), value: nth % INIT_EVERY === 0 ? testInit(piece(i)) : testAppend(piece(i)) };
}

/** Expected content of key k at `lsn`, or null if never written by then. */
export function expectedAt(k: number, lsn: number): string | null {
  const last = stepOfLsn(lsn);
  if (last < k) return null;
  let i = last - ((last - k) % NKEYS); // newest step ≤ last that wrote key k
  const parts: string[] = [];
  for (; i >= 0; i -= NKEYS) {
    parts.push(piece(i));
    if (Math.floor(i / NKEYS) % INIT_EVERY === 0) break;
  }
  return parts.reverse().join("");
}
