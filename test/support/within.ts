/**
 * `within(p, what)`: a test's bound on one wait. Resolves as `p`, or rejects with
 * "bound exceeded: <what>" after `bound_ms` (default 60 s), so no test hangs on a promise
 * that never settles. The timer is cleared either way.
 */
export const WAIT_BOUND_MS = 60_000;

export async function within<T>(p: Promise<T>, what: string, bound_ms = WAIT_BOUND_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`bound exceeded: ${what} (${bound_ms} ms)`)), bound_ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
