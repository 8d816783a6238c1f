/**
 * The one error type of the replication client, and how whatever `pg` or the socket reports
 * becomes one.
 *
 * Owns: ReplicationError (a `kind` and whether reconnecting can help) and toReplicationError.
 *
 * Invariants: `retryable` is decided once, here, from the kind and the SQLSTATE: a socket
 * failure or a server error is retryable unless its SQLSTATE says that reconnecting cannot
 * help (FATAL_SQLSTATES); protocol, mismatch and stop errors never are unless the thrower
 * says so.
 */
import { type ErrorCode, PageserverError } from "../../types/errors.js";

export type ReplicationErrorKind =
  /** The socket failed or closed, or a connect/command timed out. Retryable. */
  | "connection"
  /** The server answered with an ErrorResponse (see `sqlstate`). */
  | "server"
  /** The server sent something this client does not understand. */
  | "protocol"
  /** IDENTIFY_SYSTEM reported another cluster than expected. Never retried. */
  | "system_id_mismatch"
  /** IDENTIFY_SYSTEM reported another timeline than expected. Never retried. */
  | "timeline_mismatch"
  /** The operation was abandoned because the client is stopping. */
  | "stopped";

const KIND_CODE: Record<ReplicationErrorKind, ErrorCode> = {
  connection: "bad_state",
  server: "bad_state",
  protocol: "internal",
  system_id_mismatch: "conflict",
  timeline_mismatch: "conflict",
  stopped: "shutdown",
};

/**
 * SQLSTATEs after which reconnecting cannot help: the WAL asked for is gone (58P01), the slot
 * is of the wrong kind or otherwise unusable (55000), the command was malformed (42601), or
 * the role may not replicate (42501).
 */
const FATAL_SQLSTATES = new Set(["58P01", "55000", "42601", "42501"]);

export class ReplicationError extends PageserverError {
  readonly kind: ReplicationErrorKind;
  /** Whether reconnecting and trying again can succeed. */
  readonly retryable: boolean;
  /** The server's SQLSTATE, for kind "server". */
  readonly sqlstate: string | undefined;
  constructor(kind: ReplicationErrorKind, message: string, options: { sqlstate?: string; retryable?: boolean; cause?: unknown } = {}) {
    super(KIND_CODE[kind], message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.sqlstate = options.sqlstate;
    this.retryable =
      options.retryable ??
      (kind === "connection" || (kind === "server" && !(options.sqlstate !== undefined && FATAL_SQLSTATES.has(options.sqlstate))));
  }
}

/** Wraps whatever pg reported (DatabaseError, socket Error, …) into a ReplicationError. */
export function toReplicationError(e: unknown, context: string): ReplicationError {
  if (e instanceof ReplicationError) return e;
  if (e instanceof Error) {
    const sqlstate = (e as { code?: unknown }).code;
    // pg's DatabaseError carries a 5-character SQLSTATE in `code`; socket errors carry
    // node codes such as ECONNREFUSED.
    if (typeof sqlstate === "string" && /^[0-9A-Z]{5}$/.test(sqlstate) && (e as { severity?: unknown }).severity !== undefined) {
      return new ReplicationError("server", `${context}: ${e.message} (SQLSTATE ${sqlstate})`, { sqlstate, cause: e });
    }
    return new ReplicationError("connection", `${context}: ${e.message}`, { cause: e });
  }
  return new ReplicationError("connection", `${context}: ${String(e)}`);
}
