/**
 * Generations (Neon's RFC 025): a u32 that grows on every attach of a tenant. A tenant created
 * on a server starts at FIRST_GENERATION. Every object a pageserver writes carries its
 * generation as a suffix (`-{gen:08x}`), so two pageservers holding the same tenant in
 * different generations never overwrite each other's objects, and a reader picks the newest
 * index with a generation ≤ its own.
 */
import { InvalidArgumentError } from "../types/errors.js";
import { quoteInput } from "../types/ids.js";

export type Generation = number;

export const FIRST_GENERATION: Generation = 1;
export const MAX_GENERATION: Generation = 0xffff_ffff;

export function isGeneration(x: unknown): x is Generation {
  return typeof x === "number" && Number.isInteger(x) && x >= FIRST_GENERATION && x <= MAX_GENERATION;
}

export function parseGeneration(x: unknown): Generation {
  if (!isGeneration(x)) throw new InvalidArgumentError(`invalid generation ${quoteInput(x)}: expected an integer in 1..${MAX_GENERATION}`);
  return x;
}

/** The key suffix form: 8 lower-case hex digits (sorts like the number). */
export function generationSuffix(g: Generation): string {
  return g.toString(16).padStart(8, "0");
}

const SUFFIX_RE = /^[0-9a-f]{8}$/;

/** The generation of an 8-hex-digit suffix; null if it isn't one. */
export function parseGenerationSuffix(s: string): Generation | null {
  if (!SUFFIX_RE.test(s)) return null;
  const g = Number.parseInt(s, 16);
  return isGeneration(g) ? g : null;
}
