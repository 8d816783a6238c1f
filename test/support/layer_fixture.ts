/**
 * Shared fixture of the layer-file tests: a seeded RNG (mulberry32), deterministic payloads,
 * and a temp directory per test file with a fresh subdirectory per layer.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll } from "vitest";

/** mulberry32: reproducible pseudo-random numbers in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `size` bytes whose content follows from `seed`. */
export function payload(size: number, seed: number): Uint8Array {
  const p = new Uint8Array(size);
  for (let i = 0; i < size; i++) p[i] = (seed * 13 + i * 5) & 0xff;
  return p;
}

/** Registers a temp root for this test file (removed afterwards); returns `freshDir()`. */
export function tempDirs(prefix: string): { root: () => string; freshDir: () => string } {
  let root = "";
  let seq = 0;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });
  return {
    root: () => root,
    freshDir: () => {
      const d = path.join(root, `d${seq++}`);
      fs.mkdirSync(d);
      return d;
    },
  };
}
