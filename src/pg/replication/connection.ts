/**
 * A physical replication client connection (a walsender session) on the `pg` package.
 *
 * Owns: one `pg.Client` started with `replication=true`, and the replication commands
 * (IDENTIFY_SYSTEM, CREATE/READ/DROP_REPLICATION_SLOT, SHOW, START_REPLICATION, and a generic
 * COPY-out command runner that base_backup.ts uses for BASE_BACKUP). The pieces it is built
 * from live beside it: command.ts (a command as a pg Submittable), copy_inbox.ts (the bounded
 * CopyData inbox), copy_streams.ts (the COPY OUT and CopyBoth handles it returns),
 * messages.ts (the codecs inside CopyData), result_set.ts, errors.ts.
 *
 * Invariants:
 * - One command at a time: a second command while one is active is an assertion failure.
 * - The pg.Client takes every setting from the connection string and nothing from the
 *   node's environment or ~/.pgpass (explicitClient).
 * - Once closed (socket error or end, or destroy()), every command and send fails with the
 *   ReplicationError it closed with.
 */
import pg from "pg";
import { assert } from "../../types/assert.js";
import { isValidLsn, type Lsn, lsnToString } from "../../types/lsn.js";
import { Command, type PgWire } from "./command.js";
import { type ResolvedConninfo, resolveConninfo } from "./conninfo.js";
import { DEFAULT_MAX_BUFFERED_BYTES } from "./copy_inbox.js";
import { CopyOutCommand, PhysicalReplicationStream } from "./copy_streams.js";
import { ReplicationError, toReplicationError } from "./errors.js";
import { cell, intCell, lsnCell, requireCell, type ResultSet } from "./result_set.js";

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
  if (!SLOT_NAME_RE.test(name))
    throw new ReplicationError("protocol", `invalid replication slot name '${name}': use [a-z0-9_], 1..63 characters`, {
      retryable: false,
    });
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
    params["host"] === ci.host &&
      params["port"] === ci.port &&
      params["user"] === ci.user &&
      params["database"] === ci.database &&
      params["replication"] === "true",
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
    assert(
      typeof this.wire.sendCopyFromChunk === "function" && typeof this.wire.endCopyFrom === "function",
      "pg Connection lacks the copy methods",
    );
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
      throw new ReplicationError("protocol", `max_buffered_bytes must be a positive integer, got ${max_buffered_bytes}`, {
        retryable: false,
      });
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
    this.markClosed(
      this.closedError ?? reason ?? new ReplicationError("stopped", "replication connection closed by us", { retryable: false }),
    );
    this.wire.stream.destroy();
  }

  /** @internal the command sends CopyData through the connection it belongs to. */
  checkOpen(): void {
    if (this.closedError !== null) throw this.closedError;
  }
}
