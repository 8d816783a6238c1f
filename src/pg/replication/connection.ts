/**
 * A physical replication client connection (a walsender session) on the `pg` package.
 *
 * Owns: one `pg.Client` started with `replication=true`, the replication commands
 * (IDENTIFY_SYSTEM, CREATE/READ/DROP_REPLICATION_SLOT, SHOW, START_REPLICATION, and a generic
 * COPY-out command runner that base_backup.ts uses for BASE_BACKUP), the CopyBoth stream of
 * START_REPLICATION, and the codecs of the messages carried inside its CopyData.
 *
 * How `pg` is used (it has no CopyBoth API): a command is a custom Submittable handed to
 * `client.query()`. pg routes RowDescription / DataRow / CommandComplete / ErrorResponse /
 * ReadyForQuery / CopyData of the active query to it; CopyBothResponse ('W', which pg parses
 * as "replicationStart"), CopyOutResponse and CopyDone are NOT routed to queries, so we
 * listen for them on the pg Connection and forward them to the active command. We send
 * CopyData and CopyDone with pg's own serializer (`sendCopyFromChunk`, `endCopyFrom`).
 *
 * Invariants:
 * - pg's CopyData `chunk` is a view into the parser's buffer, which pg reuses for the next
 *   socket read. Every chunk is copied on arrival; what we hand out is owned by the receiver.
 * - Inbound CopyData is held in a bounded inbox (`max_buffered_bytes`): at the bound the
 *   socket is paused, and it resumes when the reader has drained half. Messages already
 *   parsed out of the current socket read still arrive after pause(), so the inbox may exceed
 *   its bound by at most one socket read (and one message).
 * - One command at a time: a second command while one is active is an assertion failure.
 *
 * Messages inside CopyData (all integers big-endian; times are µs since 2000-01-01 UTC):
 *
 *   S→C XLogData (25 + n bytes)
 *   ┌─────┬──────────────┬──────────────┬──────────────┬──────────────────┐
 *   │ 'w' │ dataStart u64│ walEnd u64   │ sendTime i64 │ WAL bytes (n)    │
 *   └─────┴──────────────┴──────────────┴──────────────┴──────────────────┘
 *    0     1              9              17             25
 *
 *   S→C primary keepalive (18 bytes)
 *   ┌─────┬──────────────┬──────────────┬────────────────┐
 *   │ 'k' │ walEnd u64   │ sendTime i64 │ replyRequested │
 *   └─────┴──────────────┴──────────────┴────────────────┘
 *    0     1              9              17 (u8)
 *
 *   C→S standby status update (34 bytes)
 *   ┌─────┬───────────┬───────────┬───────────┬──────────────┬────────────────┐
 *   │ 'r' │ write u64 │ flush u64 │ apply u64 │ sendTime i64 │ replyRequested │
 *   └─────┴───────────┴───────────┴───────────┴──────────────┴────────────────┘
 *    0     1           9           17          25             33 (u8)
 *
 * u64/i64 are read and written as two u32 halves: LSNs through readLsnBE / writeLsnBE (which
 * refuse anything beyond 2^53), times as hi * 2^32 + lo (µs since 2000 stay below 2^53 until
 * the year 2285). No BigInt.
 */
import type { Duplex } from "node:stream";
import pg from "pg";
import { assert } from "../../types/assert.js";
import { type ErrorCode, PageserverError } from "../../types/errors.js";
import { type ResolvedConninfo, resolveConninfo } from "./conninfo.js";
import { isValidLsn, type Lsn, lsnToString, parseLsn, readLsnBE, writeLsnBE } from "../../types/lsn.js";

// ─── errors ──────────────────────────────────────────────────────────────────────────────

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

// ─── message codecs ──────────────────────────────────────────────────────────────────────

/** 2000-01-01T00:00:00Z in Unix ms: PostgreSQL's timestamp epoch. */
export const PG_EPOCH_UNIX_MS = 946_684_800_000;
const TWO_32 = 0x1_0000_0000;

export const XLOGDATA_HEADER_BYTES = 25;
export const KEEPALIVE_BYTES = 18;
export const STANDBY_STATUS_BYTES = 34;

export interface XLogDataMessage {
  kind: "xlogdata";
  /** LSN of data[0]. */
  dataStart: Lsn;
  /** The server's flush position when it sent this. */
  walEnd: Lsn;
  /** µs since 2000-01-01 UTC. */
  sendTime_us: number;
  /** Raw WAL, page headers included; owned by the receiver (a copy of the wire bytes). */
  data: Uint8Array;
}

export interface KeepaliveMessage {
  kind: "keepalive";
  walEnd: Lsn;
  sendTime_us: number;
  replyRequested: boolean;
}

export type ReplicationMessage = XLogDataMessage | KeepaliveMessage;

export interface StandbyStatus {
  /** Last WAL byte + 1 received (0 when unknown). */
  write: Lsn;
  /** Last WAL byte + 1 durably stored: a physical slot's restart_lsn follows it. */
  flush: Lsn;
  /** Last WAL byte + 1 applied (0 when unknown). */
  apply: Lsn;
  replyRequested: boolean;
  /** µs since 2000-01-01 UTC; default now. */
  sendTime_us?: number;
}

/** Now as µs since 2000-01-01 UTC: an exact integer in a JS number (ms × 1000 < 2^53). */
export function pgNow_us(): number {
  return (Date.now() - PG_EPOCH_UNIX_MS) * 1000;
}

function readI64BE(dv: DataView, off: number): number {
  return dv.getInt32(off, false) * TWO_32 + dv.getUint32(off + 4, false);
}

function writeI64BE(dv: DataView, off: number, value: number): void {
  assert(Number.isSafeInteger(value), `i64 ${value} is not a safe integer`);
  const hi = Math.floor(value / TWO_32);
  dv.setInt32(off, hi, false);
  dv.setUint32(off + 4, value - hi * TWO_32, false);
}

/** Decode one CopyData payload of START_REPLICATION ('w' or 'k'). `buf` must be owned by the caller. */
export function parseReplicationMessage(buf: Uint8Array): ReplicationMessage {
  if (buf.length === 0) throw new ReplicationError("protocol", "empty CopyData message in replication stream");
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const type = buf[0];
  if (type === 0x77 /* 'w' */) {
    if (buf.length < XLOGDATA_HEADER_BYTES) throw new ReplicationError("protocol", `XLogData message of ${buf.length} bytes, expected >= ${XLOGDATA_HEADER_BYTES}`);
    return {
      kind: "xlogdata",
      dataStart: readLsnBE(buf, 1),
      walEnd: readLsnBE(buf, 9),
      sendTime_us: readI64BE(dv, 17),
      // A plain Uint8Array view even when `buf` is a Buffer: the WAL decoder cuts every record
      // and its parts out of this with subarray(), which Buffer makes several times slower.
      data: new Uint8Array(buf.buffer, buf.byteOffset + XLOGDATA_HEADER_BYTES, buf.byteLength - XLOGDATA_HEADER_BYTES),
    };
  }
  if (type === 0x6b /* 'k' */) {
    if (buf.length < KEEPALIVE_BYTES) throw new ReplicationError("protocol", `keepalive message of ${buf.length} bytes, expected ${KEEPALIVE_BYTES}`);
    return { kind: "keepalive", walEnd: readLsnBE(buf, 1), sendTime_us: readI64BE(dv, 9), replyRequested: buf[17] !== 0 };
  }
  throw new ReplicationError("protocol", `unknown replication message type 0x${type!.toString(16)}`);
}

/** Encode a standby status update ('r'), 34 bytes. */
export function encodeStandbyStatus(s: StandbyStatus): Uint8Array {
  assert(isValidLsn(s.write) && isValidLsn(s.flush) && isValidLsn(s.apply), "status LSNs must be valid");
  const buf = new Uint8Array(STANDBY_STATUS_BYTES);
  const dv = new DataView(buf.buffer);
  buf[0] = 0x72; // 'r'
  writeLsnBE(buf, 1, s.write);
  writeLsnBE(buf, 9, s.flush);
  writeLsnBE(buf, 17, s.apply);
  writeI64BE(dv, 25, s.sendTime_us ?? pgNow_us());
  buf[33] = s.replyRequested ? 1 : 0;
  return buf;
}

// ─── command plumbing on pg ──────────────────────────────────────────────────────────────

/** One result set of a simple-protocol command: column names and text values. */
export interface ResultSet {
  columns: string[];
  rows: (string | null)[][];
}

/** The parts of pg's Connection we use; @types/pg does not declare the copy methods. */
interface PgWire {
  readonly stream: Duplex;
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(msg: string): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

interface PgRowDescription {
  fields: { name: string }[];
}
interface PgDataRow {
  fields: unknown[];
}
interface PgCopyData {
  chunk: Buffer;
}

/** Default bound of the inbound CopyData inbox. */
export const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/**
 * The inbox of CopyData payloads of one COPY (out or both): a bounded FIFO with one reader.
 * Bound: `max_bytes`, enforced by pausing the socket (see the module comment for the slack).
 */
class CopyInbox {
  private chunks: Uint8Array[] = [];
  private head = 0;
  private bytes = 0;
  private paused = false;
  private ended = false;
  private failure: Error | null = null;
  private waiter: { resolve: (c: Uint8Array | null) => void; reject: (e: Error) => void } | null = null;
  /** When true, arriving data is dropped (the client sent CopyDone and waits for the end). */
  discarding = false;

  constructor(
    private readonly socket: Duplex,
    private readonly max_bytes: number,
  ) {
    assert(max_bytes > 0, "inbox bound must be positive");
  }

  push(view: Buffer): void {
    if (this.ended || this.failure !== null || this.discarding) return;
    // Copy: `view` points into pg's parser buffer, which is overwritten by later reads.
    const own = Uint8Array.prototype.slice.call(view) as Uint8Array;
    if (this.waiter !== null) {
      assert(this.bytes === 0, "a reader waits only on an empty inbox");
      const w = this.waiter;
      this.waiter = null;
      w.resolve(own);
      return;
    }
    this.chunks.push(own);
    this.bytes += own.length;
    if (!this.paused && this.bytes >= this.max_bytes) {
      this.paused = true;
      this.socket.pause();
    }
  }

  end(): void {
    if (this.ended || this.failure !== null) return;
    this.ended = true;
    this.resume();
    if (this.waiter !== null && this.bytes === 0) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(null);
    }
  }

  fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.chunks = [];
    this.head = 0;
    this.bytes = 0;
    this.resume();
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
  }

  /** Drop everything queued and all that arrives later; keep the socket flowing. */
  discard(): void {
    this.discarding = true;
    this.chunks = [];
    this.head = 0;
    this.bytes = 0;
    this.resume();
  }

  get bufferedBytes(): number {
    return this.bytes;
  }

  /** The next payload, or null after the server's CopyDone. */
  read(): Promise<Uint8Array | null> {
    assert(this.waiter === null, "CopyInbox has one reader at a time");
    if (this.head < this.chunks.length) {
      const c = this.chunks[this.head]!;
      this.chunks[this.head] = EMPTY;
      this.head++;
      this.bytes -= c.length;
      if (this.head === this.chunks.length) {
        this.chunks = [];
        this.head = 0;
      } else if (this.head >= 1024) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
      if (this.paused && this.bytes <= this.max_bytes / 2) this.resume();
      return Promise.resolve(c);
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }
}

const EMPTY = new Uint8Array(0);

/** Make a promise whose rejection is never "unhandled" (callers may await it later or never). */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: Error) => void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const d: Deferred<T> = {
    promise: undefined as unknown as Promise<T>,
    resolve: (v) => {
      if (d.settled) return;
      d.settled = true;
      resolve(v);
    },
    reject: (e) => {
      if (d.settled) return;
      d.settled = true;
      reject(e);
    },
    settled: false,
  };
  d.promise = quiet(
    new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    }),
  );
  return d;
}

/**
 * One simple-protocol command as a pg Submittable. Collects result sets; if the command
 * enters COPY (out or both), `copyStarted` resolves with the result sets so far and the
 * CopyData payloads go to `inbox`; `done` resolves at ReadyForQuery with the result sets that
 * followed the COPY (all of them when there was no COPY).
 */
class Command {
  private results: ResultSet[] = [];
  private current: ResultSet | null = null;
  inbox: CopyInbox | null = null;
  readonly copyStarted = deferred<ResultSet[]>();
  readonly done = deferred<ResultSet[]>();
  private wire: PgWire | null = null;
  callback: undefined = undefined;

  constructor(
    readonly text: string,
    private readonly max_buffered_bytes: number,
  ) {}

  submit(connection: unknown): void {
    this.wire = connection as PgWire;
    this.wire.query(this.text);
  }

  // pg calls these on the active query.
  handleRowDescription(msg: PgRowDescription): void {
    this.current = { columns: msg.fields.map((f) => f.name), rows: [] };
  }
  handleDataRow(msg: PgDataRow): void {
    if (this.current === null) return;
    this.current.rows.push(msg.fields.map((v) => (v === null || v === undefined ? null : String(v))));
  }
  handleCommandComplete(_msg: unknown, _con: unknown): void {
    if (this.current !== null) this.results.push(this.current);
    this.current = null;
  }
  handleEmptyQuery(_con: unknown): void {}
  handlePortalSuspended(_con: unknown): void {}
  handleCopyInResponse(con: unknown): void {
    (con as PgWire).sendCopyFail("COPY FROM STDIN is not supported by the replication client");
  }
  handleCopyData(msg: PgCopyData, _con: unknown): void {
    if (this.inbox === null) {
      this.fail(new ReplicationError("protocol", `CopyData outside COPY in reply to ${this.text}`));
      return;
    }
    this.inbox.push(msg.chunk);
  }
  handleError(err: unknown, _con: unknown): void {
    this.fail(toReplicationError(err, this.text));
  }
  handleReadyForQuery(_con: unknown): void {
    if (this.current !== null) this.results.push(this.current);
    this.current = null;
    if (this.inbox !== null) this.inbox.end();
    this.copyStarted.resolve(this.results);
    this.done.resolve(this.results);
  }

  // Forwarded by ReplicationConnection from pg Connection events pg does not route.
  onCopyStart(): void {
    if (this.inbox !== null || this.wire === null) return;
    this.inbox = new CopyInbox(this.wire.stream, this.max_buffered_bytes);
    if (this.current !== null) this.results.push(this.current);
    this.current = null;
    const before = this.results;
    this.results = [];
    this.copyStarted.resolve(before);
  }
  onCopyDone(): void {
    this.inbox?.end();
  }

  fail(err: Error): void {
    this.inbox?.fail(err);
    this.copyStarted.reject(err);
    this.done.reject(err);
  }

  sendCopyData(bytes: Uint8Array): void {
    assert(this.wire !== null, "command not submitted");
    this.wire.sendCopyFromChunk(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  sendCopyDone(): void {
    assert(this.wire !== null, "command not submitted");
    this.wire.endCopyFrom();
  }
}

// ─── the connection ──────────────────────────────────────────────────────────────────────

export interface ReplicationConnectOptions {
  /**
   * libpq connection string of the source, URI or key=value (src/pg/replication/conninfo.ts).
   * Only what it says is used: no environment defaults, no ~/.pgpass.
   */
  connstr: string;
  application_name?: string;
  /** Connect (TCP + startup + auth) timeout; default 10 s. */
  connect_timeout_ms?: number;
  /** Bound of the inbound CopyData inbox; default 4 MiB. */
  max_buffered_bytes?: number;
}

export interface IdentifySystemResult {
  /** pg_control's system identifier in decimal (a u64; kept as text). */
  systemId: string;
  timeline: number;
  /** The server's current WAL flush position. */
  xlogPos: Lsn;
  dbName: string | null;
}

export interface ReplicationSlotInfo {
  /** "physical" or "logical"; null when the slot does not exist. */
  slotType: string | null;
  restartLsn: Lsn | null;
  restartTli: number | null;
}

export interface StartReplicationOptions {
  slot?: string;
  startLsn: Lsn;
  timeline?: number;
}

const SLOT_NAME_RE = /^[a-z0-9_]{1,63}$/;

function checkSlotName(name: string): void {
  // PostgreSQL's own rule (ReplicationSlotValidateName); it also keeps names safe to splice
  // into command text.
  if (!SLOT_NAME_RE.test(name)) throw new ReplicationError("protocol", `invalid replication slot name '${name}': use [a-z0-9_], 1..63 characters`, { retryable: false });
}

function cell(rs: ResultSet | undefined, column: string, context: string): string | null {
  if (rs === undefined || rs.rows.length !== 1) throw new ReplicationError("protocol", `${context}: expected one row`);
  const i = rs.columns.indexOf(column);
  if (i < 0) throw new ReplicationError("protocol", `${context}: no column ${column}`);
  return rs.rows[0]![i] ?? null;
}

function requireCell(rs: ResultSet | undefined, column: string, context: string): string {
  const v = cell(rs, column, context);
  if (v === null) throw new ReplicationError("protocol", `${context}: ${column} is NULL`);
  return v;
}

function lsnCell(text: string, context: string): Lsn {
  try {
    return parseLsn(text);
  } catch (e) {
    throw new ReplicationError("protocol", `${context}: bad LSN '${text}'`, { cause: e });
  }
}

function intCell(text: string, context: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new ReplicationError("protocol", `${context}: bad integer '${text}'`);
  return n;
}

/**
 * What every error of a failed connect starts with (`<this>: <reason>`): the reason tells
 * closed ports, other protocols and bad passwords apart, so it is for the log, not for clients.
 */
export const CONNECT_ERROR_CONTEXT = "connect for replication";

/**
 * A `pg.Client` for a resolved connection string with every setting explicit. `pg` fills
 * what its config leaves out from the node's environment (PGHOST, PGPORT, PGUSER,
 * PGDATABASE, PGPASSWORD, PGOPTIONS, PGSSLMODE, PGSSLNEGOTIATION, PGCLIENT_ENCODING,
 * PGAPPNAME, PGCONNECT_TIMEOUT) and a missing password from ~/.pgpass (PGPASSFILE): that
 * would hand a source named in a request the node's own credentials. So every field is
 * given, a missing password is a function that refuses, and what `pg` can only take from
 * the environment when a field is empty (options) is overwritten after construction.
 */
function explicitClient(ci: ResolvedConninfo, application_name: string, connect_timeout_ms: number): pg.Client {
  const password = ci.password;
  const config: pg.ClientConfig & Record<string, unknown> = {
    host: ci.host,
    port: ci.port,
    user: ci.user,
    database: ci.database,
    // pg asks for a password only when the server does; with none given that is an error,
    // never a look into PGPASSWORD or ~/.pgpass.
    password:
      password ??
      (() => {
        throw new Error("the server asks for a password and the connection string gives none");
      }),
    ssl: ci.ssl === "off" ? false : ci.ssl === "verified" ? true : { rejectUnauthorized: false },
    sslnegotiation: "postgres",
    client_encoding: "UTF8",
    replication: "true",
    application_name,
    connectionTimeoutMillis: connect_timeout_ms,
  };
  const client = new pg.Client(config);
  const params = (client as unknown as { connectionParameters: Record<string, unknown> }).connectionParameters;
  // An empty `options` falls back to PGOPTIONS inside pg: set what we mean.
  params["options"] = ci.options ?? undefined;
  assert(
    params["host"] === ci.host && params["port"] === ci.port && params["user"] === ci.user && params["database"] === ci.database && params["replication"] === "true",
    "pg.Client took a connection parameter from elsewhere than the connection string",
  );
  return client;
}

export class ReplicationConnection {
  private readonly client: pg.Client;
  private readonly wire: PgWire;
  private active: Command | null = null;
  private closedError: ReplicationError | null = null;
  private readonly max_buffered_bytes: number;

  private constructor(client: pg.Client, max_buffered_bytes: number) {
    this.client = client;
    this.max_buffered_bytes = max_buffered_bytes;
    this.wire = (client as unknown as { connection: PgWire }).connection;
    assert(typeof this.wire.sendCopyFromChunk === "function" && typeof this.wire.endCopyFrom === "function", "pg Connection lacks the copy methods");
    // CopyBothResponse ('W' → "replicationStart"), CopyOutResponse and CopyDone are not
    // routed to the active query by pg.Client; forward them.
    this.wire.on("replicationStart", () => this.active?.onCopyStart());
    this.wire.on("copyOutResponse", () => this.active?.onCopyStart());
    this.wire.on("copyDone", () => this.active?.onCopyDone());
    // Without an 'error' listener pg's errors would crash the process.
    client.on("error", (e: Error) => this.markClosed(toReplicationError(e, "replication connection")));
    client.on("end", () => this.markClosed(new ReplicationError("connection", "replication connection closed")));
  }

  static async connect(opts: ReplicationConnectOptions): Promise<ReplicationConnection> {
    const max_buffered_bytes = opts.max_buffered_bytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    if (!(Number.isInteger(max_buffered_bytes) && max_buffered_bytes > 0)) {
      throw new ReplicationError("protocol", `max_buffered_bytes must be a positive integer, got ${max_buffered_bytes}`, { retryable: false });
    }
    const client = explicitClient(resolveConninfo(opts.connstr), opts.application_name ?? "pageserver", opts.connect_timeout_ms ?? 10_000);
    const conn = new ReplicationConnection(client, max_buffered_bytes);
    try {
      await client.connect();
    } catch (e) {
      conn.destroy();
      throw toReplicationError(e, CONNECT_ERROR_CONTEXT);
    }
    return conn;
  }

  /** The walsender's backend pid (pg_stat_replication.pid). */
  get backendPid(): number {
    return (this.client as unknown as { processID: number | null }).processID ?? 0;
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  private markClosed(err: ReplicationError): void {
    if (this.closedError === null) this.closedError = err;
    const a = this.active;
    if (a !== null) {
      this.active = null;
      a.fail(err);
    }
  }

  private submit(text: string): Command {
    if (this.closedError !== null) throw this.closedError;
    assert(this.active === null, `replication command '${text}' while another is active`);
    const cmd = new Command(text, this.max_buffered_bytes);
    this.active = cmd;
    const clear = () => {
      if (this.active === cmd) this.active = null;
    };
    cmd.done.promise.then(clear, clear);
    this.client.query(cmd as unknown as pg.Submittable);
    return cmd;
  }

  /** Run a command without COPY; returns its result sets. */
  async command(text: string): Promise<ResultSet[]> {
    const cmd = this.submit(text);
    const before = await cmd.copyStarted.promise;
    if (cmd.inbox !== null) {
      cmd.fail(new ReplicationError("protocol", `'${text}' unexpectedly entered COPY`));
      this.destroy();
      throw new ReplicationError("protocol", `'${text}' unexpectedly entered COPY`);
    }
    await cmd.done.promise;
    return before;
  }

  async identifySystem(): Promise<IdentifySystemResult> {
    const ctx = "IDENTIFY_SYSTEM";
    const [rs] = await this.command("IDENTIFY_SYSTEM");
    const systemId = requireCell(rs, "systemid", ctx);
    if (!/^[0-9]{1,20}$/.test(systemId)) throw new ReplicationError("protocol", `${ctx}: bad systemid '${systemId}'`);
    return {
      systemId,
      timeline: intCell(requireCell(rs, "timeline", ctx), ctx),
      xlogPos: lsnCell(requireCell(rs, "xlogpos", ctx), ctx),
      dbName: cell(rs, "dbname", ctx),
    };
  }

  /**
   * CREATE_REPLICATION_SLOT name PHYSICAL [RESERVE_WAL]. Returns false when the slot already
   * existed (SQLSTATE 42710), which is not an error: callers ensure a slot, they don't care
   * who made it.
   */
  async createPhysicalSlot(name: string, opts: { reserveWal?: boolean } = {}): Promise<boolean> {
    checkSlotName(name);
    try {
      await this.command(`CREATE_REPLICATION_SLOT ${name} PHYSICAL${opts.reserveWal === false ? "" : " RESERVE_WAL"}`);
      return true;
    } catch (e) {
      if (e instanceof ReplicationError && e.sqlstate === "42710") return false;
      throw e;
    }
  }

  /** READ_REPLICATION_SLOT (PG15): all null when the slot does not exist. */
  async readReplicationSlot(name: string): Promise<ReplicationSlotInfo> {
    checkSlotName(name);
    const ctx = `READ_REPLICATION_SLOT ${name}`;
    const [rs] = await this.command(`READ_REPLICATION_SLOT ${name}`);
    const type = cell(rs, "slot_type", ctx);
    const lsn = cell(rs, "restart_lsn", ctx);
    const tli = cell(rs, "restart_tli", ctx);
    return {
      slotType: type,
      restartLsn: lsn === null ? null : lsnCell(lsn, ctx),
      restartTli: tli === null ? null : intCell(tli, ctx),
    };
  }

  /** DROP_REPLICATION_SLOT name; returns false when there was no such slot (42704). */
  async dropReplicationSlot(name: string): Promise<boolean> {
    checkSlotName(name);
    try {
      await this.command(`DROP_REPLICATION_SLOT ${name}`);
      return true;
    } catch (e) {
      if (e instanceof ReplicationError && e.sqlstate === "42704") return false;
      throw e;
    }
  }

  /** SHOW name (e.g. wal_segment_size → "16MB"). */
  async show(name: string): Promise<string> {
    if (!/^[a-z_][a-z0-9_.]*$/.test(name)) throw new ReplicationError("protocol", `invalid setting name '${name}'`, { retryable: false });
    const [rs] = await this.command(`SHOW ${name}`);
    if (rs === undefined || rs.rows.length !== 1) throw new ReplicationError("protocol", `SHOW ${name}: expected one row`);
    return rs.rows[0]![0] ?? "";
  }

  /**
   * START_REPLICATION [SLOT s] PHYSICAL X/Y [TIMELINE n]. Resolves once the server answered
   * with CopyBothResponse; rejects with the server's error otherwise.
   */
  async startReplication(opts: StartReplicationOptions): Promise<PhysicalReplicationStream> {
    assert(isValidLsn(opts.startLsn), "start LSN must be valid");
    let text = "START_REPLICATION";
    if (opts.slot !== undefined) {
      checkSlotName(opts.slot);
      text += ` SLOT ${opts.slot}`;
    }
    text += ` PHYSICAL ${lsnToString(opts.startLsn)}`;
    if (opts.timeline !== undefined) {
      assert(Number.isInteger(opts.timeline) && opts.timeline > 0, "timeline must be a positive integer");
      text += ` TIMELINE ${opts.timeline}`;
    }
    const cmd = this.submit(text);
    await cmd.copyStarted.promise;
    if (cmd.inbox === null) throw new ReplicationError("protocol", `${text}: the server did not start streaming`);
    return new PhysicalReplicationStream(this, cmd);
  }

  /**
   * Start a command that answers with COPY OUT (BASE_BACKUP): resolves when the COPY starts,
   * with the result sets sent before it. Read the COPY with `read()`; `done` gives the result
   * sets after it.
   */
  async startCopyOut(text: string): Promise<CopyOutCommand> {
    const cmd = this.submit(text);
    const before = await cmd.copyStarted.promise;
    if (cmd.inbox === null) throw new ReplicationError("protocol", `${text}: expected COPY, the command completed without one`);
    return new CopyOutCommand(cmd, before);
  }

  /** Close politely (Terminate); bounded by `timeout_ms`, then the socket is destroyed. */
  async close(timeout_ms = 5_000): Promise<void> {
    if (this.closedError !== null) {
      this.destroy();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.client.end().catch(() => {}),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeout_ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.destroy();
    }
  }

  /**
   * Drop the socket now. Idempotent. `reason` is what a pending read or command fails with
   * (default: a non-retryable "stopped").
   */
  destroy(reason?: ReplicationError): void {
    this.markClosed(this.closedError ?? reason ?? new ReplicationError("stopped", "replication connection closed by us", { retryable: false }));
    this.wire.stream.destroy();
  }

  /** @internal the command sends CopyData through the connection it belongs to. */
  checkOpen(): void {
    if (this.closedError !== null) throw this.closedError;
  }
}

/** A COPY OUT in progress (see ReplicationConnection.startCopyOut). */
export class CopyOutCommand {
  constructor(
    private readonly cmd: Command,
    /** The result sets before the COPY. */
    readonly resultsBefore: ResultSet[],
  ) {}

  /** The next CopyData payload (owned by the caller), or null after CopyDone. */
  read(): Promise<Uint8Array | null> {
    assert(this.cmd.inbox !== null, "COPY not started");
    return this.cmd.inbox.read();
  }

  /** Result sets after the COPY, at ReadyForQuery. */
  get done(): Promise<ResultSet[]> {
    return this.cmd.done.promise;
  }
}

/** How a replication stream ended from the server's side (CopyDone). */
export interface StreamEnd {
  /** After a historic timeline ends: the next timeline and where it starts. */
  nextTimeline: number | null;
  nextTimelineStart: Lsn | null;
}

/**
 * The CopyBoth stream of START_REPLICATION. Pull messages with next() (one reader); a null
 * means the server ended the COPY (end of a historic timeline: see `end`).
 */
export class PhysicalReplicationStream {
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private serverEnded = false;
  end: StreamEnd | null = null;

  constructor(
    private readonly conn: ReplicationConnection,
    private readonly cmd: Command,
  ) {}

  get bufferedBytes(): number {
    return this.cmd.inbox?.bufferedBytes ?? 0;
  }

  async next(): Promise<ReplicationMessage | null> {
    assert(this.cmd.inbox !== null, "stream without COPY");
    const payload = await this.cmd.inbox.read();
    if (payload !== null) return parseReplicationMessage(payload);
    // The server sent CopyDone. Answer with ours (the protocol wants both sides to), then
    // read the optional next-timeline result set.
    if (!this.serverEnded) {
      this.serverEnded = true;
      if (!this.stopping) this.trySend(() => this.cmd.sendCopyDone());
    }
    const after = await this.cmd.done.promise;
    const rs = after.find((r) => r.columns.includes("next_tli"));
    this.end = { nextTimeline: null, nextTimelineStart: null };
    if (rs !== undefined && rs.rows.length === 1) {
      const tli = cell(rs, "next_tli", "end of timeline");
      const pos = cell(rs, "next_tli_startpos", "end of timeline");
      this.end = { nextTimeline: tli === null ? null : intCell(tli, "next_tli"), nextTimelineStart: pos === null ? null : lsnCell(pos, "next_tli_startpos") };
    }
    return null;
  }

  /** Send a standby status update ('r'). Throws a ReplicationError if the connection is gone. */
  sendStatus(s: StandbyStatus): void {
    if (this.stopping || this.serverEnded) return;
    this.conn.checkOpen();
    this.cmd.sendCopyData(encodeStandbyStatus(s));
  }

  /**
   * End streaming: CopyDone, then wait (bounded by `timeout_ms`) for the server to finish the
   * command; data still in flight is dropped. The connection can run commands afterwards
   * unless this timed out, in which case it is destroyed.
   */
  stop(timeout_ms = 5_000): Promise<void> {
    if (this.stopPromise === null) this.stopPromise = this.doStop(timeout_ms);
    return this.stopPromise;
  }

  private async doStop(timeout_ms: number): Promise<void> {
    this.stopping = true;
    this.cmd.inbox?.discard();
    if (!this.serverEnded) this.trySend(() => this.cmd.sendCopyDone());
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.cmd.done.promise.then(
        () => false,
        () => false,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeout_ms);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) this.conn.destroy();
  }

  private trySend(f: () => void): void {
    try {
      this.conn.checkOpen();
      f();
    } catch {
      // The connection is gone; whoever reads will see why.
    }
  }
}
