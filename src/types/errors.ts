/**
 * Typed errors. Every error that crosses a module boundary is a PageserverError with a
 * stable `code`; the HTTP layer (src/main/http/errors.ts) maps codes to statuses. Messages say
 * what was wrong and with which input; they never leak stack traces to clients.
 */
/** Every code, for the HTTP layer's catalogue (a code without a status fails its type check). */
export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "conflict"
  | "lsn_timeout"
  | "gc_cutoff"
  | "corrupt"
  | "bad_state"
  | "shutdown"
  | "unauthorized"
  | "forbidden"
  | "unsupported"
  | "source_unavailable"
  | "limit_reached"
  | "payload_too_large"
  | "uri_too_long"
  | "remote_storage_disabled"
  | "internal";

export class PageserverError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends PageserverError {
  constructor(message: string) {
    super("invalid_argument", message);
  }
}

export class NotFoundError extends PageserverError {
  constructor(message: string) {
    super("not_found", message);
  }
}

export class ConflictError extends PageserverError {
  constructor(message: string) {
    super("conflict", message);
  }
}

/** A read waited for an LSN that ingest did not reach in time. */
export class LsnTimeoutError extends PageserverError {
  constructor(message: string) {
    super("lsn_timeout", message);
  }
}

/** A request below the GC cutoff: the data it needs may be gone. */
export class GcCutoffError extends PageserverError {
  constructor(message: string) {
    super("gc_cutoff", message);
  }
}

/** A file failed its checksum or structure checks. Names the file and the block. */
export class CorruptionError extends PageserverError {
  readonly path: string;
  readonly blkno: number;
  constructor(path: string, blkno: number, reason: string) {
    super("corrupt", `corrupt file ${path} at block ${blkno}: ${reason}`);
    this.path = path;
    this.blkno = blkno;
  }
}

/** The object is in a state that does not allow the operation (says which state). */
export class BadStateError extends PageserverError {
  constructor(message: string) {
    super("bad_state", message);
  }
}

export class ShutdownError extends PageserverError {
  constructor(message = "shutting down") {
    super("shutdown", message);
  }
}

/** A WAL record or value we cannot handle: names rmgr/info or kind. */
export class UnsupportedError extends PageserverError {
  constructor(message: string) {
    super("unsupported", message);
  }
}

/** A configured limit is reached: the client's problem, names the limit and its setting. */
export class LimitReachedError extends PageserverError {
  constructor(message: string) {
    super("limit_reached", message);
  }
}

/** A PostgreSQL source named in a request can't be reached or used as asked. */
export class SourceUnavailableError extends PageserverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("source_unavailable", message, options);
  }
}

/** An operation that needs remote storage, on a node without it (config remote_storage). */
export class RemoteStorageDisabledError extends PageserverError {
  constructor(what: string) {
    super("remote_storage_disabled", `${what} needs remote storage (config remote_storage), which this node has not`);
  }
}

/** A request body or URL over the server's limits (413 / 414). */
export class RequestTooLargeError extends PageserverError {
  constructor(code: "payload_too_large" | "uri_too_long", message: string) {
    super(code, message);
  }
}
