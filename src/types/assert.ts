/**
 * Invariant assertions (TigerBeetle style): an assertion failing means a bug in this process,
 * never bad input. Bad input gets a typed error from ./errors.ts instead.
 */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}
