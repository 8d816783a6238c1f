/**
 * The upload queue's retry policy: which failed attempts are retried, how long to wait before
 * the next one, and how loudly to log it.
 *
 * - Every remote storage error (transient or "permanent": a clock-skew 403 or an expired
 *   token heals) is retried, as is a failpoint's `return` (it stands for one), until it
 *   succeeds or the queue stops; a retry loop ends only with the queue. A cancelled call is
 *   not retried (the queue is stopping), nor is a local error (the queue stops as failed).
 * - Jittered exponential backoff: a random delay in the upper half of retry_base_ms doubling
 *   up to retry_max_ms, so thousands of queues that failed together don't retry in lockstep.
 * - Retries are logged at WARN for the first RETRY_LOG_FIRST attempts of an op and every
 *   RETRY_LOG_EVERY-th, at DEBUG between.
 * - A newer generation found before a deletion is NewerGenerationError: the queue stops as
 *   superseded, without retrying.
 *
 * Invariants: the delay lies in [cap/2, cap] with cap = min(max, base·2^min(attempt, 30)).
 */
import { FailpointError } from "../types/failpoints.js";
import type { Generation } from "./generation.js";
import { RemoteStorageError } from "./remote_storage.js";

/** Retries logged at WARN: the first few of an op, then every this many. */
const RETRY_LOG_FIRST = 3;
const RETRY_LOG_EVERY = 10;

/** A newer generation of the timeline is in remote storage: ours must not delete anything. */
export class NewerGenerationError extends Error {
  readonly generation: Generation;
  constructor(generation: Generation) {
    super(`superseded by generation ${generation}`);
    this.generation = generation;
  }
}

/** Whether a failed attempt is retried (see the header). */
export function isRetryable(e: unknown): e is Error {
  return (e instanceof RemoteStorageError && e.kind !== "cancelled") || e instanceof FailpointError;
}

/** The wait before retry `attempt` (0-based) of an op. */
export function backoffDelayMs(attempt: number, retry_base_ms: number, retry_max_ms: number): number {
  const cap_ms = Math.min(retry_max_ms, retry_base_ms * 2 ** Math.min(attempt, 30));
  return Math.round(cap_ms / 2 + Math.random() * (cap_ms / 2));
}

/** The log level of the `n`-th (1-based) retry of an op. */
export function retryLogLevel(n: number): "warn" | "debug" {
  return n <= RETRY_LOG_FIRST || n % RETRY_LOG_EVERY === 0 ? "warn" : "debug";
}
