/**
 * Shared fixture of the layer-file tests: deterministic payloads and a temp directory per
 * test file with a fresh subdirectory per layer. (Their seeded RNG is support/rng.ts.)
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll } from "vitest";

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
