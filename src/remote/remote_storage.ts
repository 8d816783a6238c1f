/**
 * The remote storage interface: a flat key → bytes object store (LocalFs or S3), the durable
 * home of every timeline's layer files and index.
 *
 * Keys are '/'-separated relative paths (no leading '/', no empty, '.' or '..' components, at
 * most MAX_KEY_BYTES); every backend validates them with checkKey before touching anything.
 * `list(prefix)` matches by string prefix, as S3 does, not by directory.
 *
 * Errors: every failure is a RemoteStorageError whose `kind` tells the caller what to do:
 *   not_found  the key does not exist (get, head)
 *   transient  retry later (network, timeout, 5xx, throttling, full disk)
 *   permanent  retrying will not help (access denied, no such bucket, object too large)
 *   cancelled  the caller's AbortSignal fired
 * Every call is bounded in time: the caller's signal and a timeout (the backend's default or
 * the call's own `timeout_ms`); a timeout is transient.
 */
import type { Readable } from "node:stream";
import { InvalidArgumentError, PageserverError } from "../types/errors.js";
import { quoteInput } from "../types/ids.js";

export interface RemoteObject {
  key: string;
  size_bytes: number;
}

export interface RemoteCallOptions {
  /** Fires on shutdown: the call ends with a `cancelled` error. */
  signal?: AbortSignal;
  /** Overrides the backend's default timeout for this call. */
  timeout_ms?: number;
}

export interface PutOptions extends RemoteCallOptions {
  /** The exact length of the body; a stream that yields another length fails the put. */
  size_bytes: number;
}

export interface ListOptions extends RemoteCallOptions {
  /** More keys than this under the prefix is a permanent error (default MAX_LIST_KEYS). */
  max_keys?: number;
}

export interface RemoteStorage {
  /** For logs: "file:///…" or "s3://bucket/prefix". */
  readonly description: string;
  /** Writes the whole object, atomically: readers see the old object or the new one. */
  put(key: string, body: Uint8Array | Readable, opts: PutOptions): Promise<void>;
  get(key: string, opts?: RemoteCallOptions): Promise<Uint8Array>;
  /** The object as a stream, for large downloads; size_bytes is the object's length. */
  getStream(key: string, opts?: RemoteCallOptions): Promise<{ stream: Readable; size_bytes: number }>;
  head(key: string, opts?: RemoteCallOptions): Promise<RemoteObject>;
  /** Every key starting with `prefix`, sorted by key. */
  list(prefix: string, opts?: ListOptions): Promise<RemoteObject[]>;
  /** Idempotent: a missing key is not an error. */
  delete(keys: readonly string[], opts?: RemoteCallOptions): Promise<void>;
  /** Releases connections; no call may follow. */
  close(): void;
}

export type RemoteErrorKind = "not_found" | "transient" | "permanent" | "cancelled";

const CODE_OF_KIND = {
  not_found: "not_found",
  transient: "bad_state",
  permanent: "internal",
  cancelled: "shutdown",
} as const;

export class RemoteStorageError extends PageserverError {
  readonly kind: RemoteErrorKind;
  readonly key: string;
  constructor(kind: RemoteErrorKind, key: string, message: string, options?: { cause?: unknown }) {
    super(CODE_OF_KIND[kind], `remote storage ${kind} error on '${key}': ${message}`, options);
    this.kind = kind;
    this.key = key;
  }
}

export function isRemoteError(e: unknown, kind: RemoteErrorKind): e is RemoteStorageError {
  return e instanceof RemoteStorageError && e.kind === kind;
}

/** S3's own key limit. */
export const MAX_KEY_BYTES = 1024;
/** Default bound on one list() answer. */
export const MAX_LIST_KEYS = 1_000_000;
/** Default bound on one call; a layer file of a few hundred MB at a few MB/s fits. */
export const DEFAULT_TIMEOUT_MS = 300_000;

const BAD_COMPONENTS = new Set(["", ".", ".."]);

/** Refuses a key that is not a clean relative '/'-separated path. */
export function checkKey(key: string): void {
  if (typeof key !== "string" || key.length === 0) throw new InvalidArgumentError("empty remote key");
  if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(`remote key longer than ${MAX_KEY_BYTES} bytes: ${quoteInput(key)}`);
  }
  if (/[\\\0\r\n]/.test(key)) throw new InvalidArgumentError(`remote key with a backslash or control character: ${quoteInput(key)}`);
  for (const c of key.split("/")) {
    if (BAD_COMPONENTS.has(c)) throw new InvalidArgumentError(`remote key with an empty, '.' or '..' component: ${quoteInput(key)}`);
  }
}

/** A list prefix: empty, or a key prefix (it may end in '/' or in the middle of a name). */
export function checkPrefix(prefix: string): void {
  if (prefix === "") return;
  checkKey(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix);
}

/**
 * The signal a backend passes to its I/O: fires on the caller's abort or after the timeout.
 * `classifyAbort` tells the two apart afterwards.
 */
export function callSignal(opts: RemoteCallOptions | undefined, default_timeout_ms: number): AbortSignal {
  const timeout = AbortSignal.timeout(opts?.timeout_ms ?? default_timeout_ms);
  return opts?.signal === undefined ? timeout : AbortSignal.any([opts.signal, timeout]);
}

/** The error for an aborted call: cancelled if the caller aborted, transient if it timed out. */
export function abortError(key: string, opts: RemoteCallOptions | undefined, cause: unknown): RemoteStorageError {
  if (opts?.signal?.aborted) return new RemoteStorageError("cancelled", key, "cancelled by the caller", { cause });
  return new RemoteStorageError("transient", key, "timed out", { cause });
}
