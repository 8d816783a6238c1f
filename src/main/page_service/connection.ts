/**
 * One page service connection, from the first byte to the close:
 *   startup   GSSENCRequest → 'N'; SSLRequest → 'S' and a TLS handshake when the node has a
 *             certificate (`tls`), else 'N'; then the StartupMessage (protocol 3.0; anything
 *             else → FATAL 0A000); a CancelRequest just closes. With a certificate, a
 *             StartupMessage in clear text gets FATAL 28000 (tokens never travel in clear).
 *             A failed handshake closes the connection (logged at INFO).
 *   auth      trust when auth is off; else AuthenticationCleartextPassword, and the password
 *             is a JWT: a bad one → FATAL 28000 and close. Then AuthenticationOk,
 *             ParameterStatus, ReadyForQuery. The whole startup has STARTUP_TIMEOUT_MS.
 *   queries   simple Query commands, each ending in ReadyForQuery:
 *             `pagestream_v2|v3 <tenant> <timeline>` → CopyBoth session (pagestream_handler)
 *             `basebackup <tenant> <timeline> [<lsn>|latest] [--gzip]` → CopyOut of the tar
 *             anything else → ErrorResponse. The token's tenant is checked on each command.
 *             Extended-protocol messages get one ErrorResponse and are skipped until Sync.
 *
 * Bounds after the login (node settings): the connection is closed with a FATAL
 *   ErrorResponse when it waits on its client (no request, or answers unread) for
 *   idle_timeout_ms (57P05, PostgreSQL's idle_session_timeout), when its token's `exp` passes
 *   (28000; a timer at exp, and a check before each command), and when it would be one
 *   connection too many for its tenant (53300): the tenant of a tenant-scoped token at login,
 *   else the tenant of a command.
 *
 * Invariants: run() never throws (a bug is logged and the connection closed); every reply to
 * bad input is an ErrorResponse (with a SQLSTATE) or a close; a client going away is INFO;
 * the connection holds at most one tenant slot and gives it back when run() ends; client
 * strings (startup parameters) are logged cut to MAX_LOGGED_PARAM_CHARS.
 */
import type { SecureContext } from "node:tls";
import { createGzip } from "node:zlib";
import { decodeJwt } from "jose";
import type { Logger } from "pino";
import type { PagestreamVersion } from "../../protocol/pagestream.js";
import {
  authenticationCleartextPassword,
  authenticationOk,
  CANCEL_REQUEST_CODE,
  commandComplete,
  copyBothResponse,
  copyData,
  copyDone,
  copyOutResponse,
  errorResponse,
  GSSENC_REQUEST_CODE,
  MSG,
  parameterStatus,
  parseCStringBody,
  parseStartupParams,
  PROTOCOL_V3,
  readyForQuery,
  SSL_REQUEST_CODE,
  typeName,
  WireProtocolError,
} from "../../protocol/pg_wire.js";
import { basebackupTar } from "../../pgdata/basebackup.js";
import { MAX_TIMER_MS } from "../../tenant/config.js";
import type { TenantWorkLimiter } from "../../tenant/heavy_work.js";
import type { Tenant } from "../../tenant/tenant.js";
import type { Timeline } from "../../tenant/timeline/index.js";
import { type ErrorCode, InvalidArgumentError, PageserverError } from "../../types/errors.js";
import { parseTenantId, parseTimelineId, type TenantId } from "../../types/ids.js";
import { type Lsn, parseLsn } from "../../types/lsn.js";
import { Auth, type Claims } from "../auth.js";
import type { ClosedReason, PageServiceMetrics } from "./metrics.js";
import { type PagestreamContext, PagestreamHandler } from "./pagestream_handler.js";
import type { PgSocket } from "./pg_socket.js";
import type { TenantManager } from "../tenant_manager.js";

/** The startup (packets and authentication) must be over within this. */
export const STARTUP_TIMEOUT_MS = 10_000;
/** After the last answer, a connection is destroyed if its output isn't flushed within this. */
const CLOSE_FLUSH_TIMEOUT_MS = 10_000;
/** Startup packets before the StartupMessage (SSLRequest, GSSENCRequest): at most this many. */
const MAX_STARTUP_PACKETS = 4;
/** A base backup goes out in CopyData messages of at most this many bytes (clients bound their frames). */
const MAX_COPY_DATA_BYTES = 256 * 1024;
/** Words in a command (ids, LSN, flags): anything longer is refused unparsed. */
const MAX_COMMAND_WORDS = 8;
/** A startup parameter (user, application_name: up to ~10 KB from the client) is logged cut to this. */
export const MAX_LOGGED_PARAM_CHARS = 64;

/** SQLSTATE for each error code (the client sees both: the message names the code). */
const SQLSTATE: Record<ErrorCode, string> = {
  invalid_argument: "22023", // invalid_parameter_value
  not_found: "42704", // undefined_object
  conflict: "55000",
  remote_storage_disabled: "55000", // object_not_in_prerequisite_state
  lsn_timeout: "57014", // query_canceled (timed out)
  gc_cutoff: "22023",
  corrupt: "XX001", // data_corrupted
  bad_state: "55000", // object_not_in_prerequisite_state
  shutdown: "57P01", // admin_shutdown
  unauthorized: "28000", // invalid_authorization_specification
  forbidden: "42501", // insufficient_privilege
  unsupported: "0A000", // feature_not_supported
  source_unavailable: "08000",
  limit_reached: "53400", // configuration_limit_exceeded
  payload_too_large: "54000",
  uri_too_long: "54000",
  internal: "XX000",
};

/** Per-tenant connection counts (owned by the PageService); a connection holds at most one slot. */
export interface TenantSlots {
  readonly max_per_tenant: number;
  /** Move a connection's slot from `from` (null: none) to `to`; false, and nothing moved, when `to` is full. */
  move(from: TenantId | null, to: TenantId): boolean;
  release(t: TenantId): void;
}

export interface ConnDeps {
  tenants: TenantManager;
  auth: Auth | null;
  /** The node's certificate (src/main/tls.ts): SSLRequest gets 'S', clear-text startups are refused; null: no TLS. */
  tls: SecureContext | null;
  /** Waiting on the client this long after the login closes the connection. */
  idle_timeout_ms: number;
  tenant_conns: TenantSlots;
  metrics: PageServiceMetrics;
  /** Heavy requests per tenant (basebackup), shared with HTTP; null: unlimited. */
  heavy?: TenantWorkLimiter | null;
  pagestream: PagestreamContext;
}

/** The tenant holds the most connections allowed: FATAL 53300 and close. */
class TooManyConnectionsError extends Error {}

export class PageServiceConnection {
  private readonly io: PgSocket;
  private readonly deps: ConnDeps;
  private log: Logger;
  private claims: Claims | null = null;
  /** The token's `exp` (ms since the epoch); null: no expiry (or no auth). */
  private expiresAtMs: number | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;
  /** The tenant this connection counts for (TenantSlots). */
  private tenantSlot: TenantId | null = null;
  /** Why the server ended the connection (then a session's end is not the client's doing). */
  private closedBy: ClosedReason | "too_many_connections" | null = null;

  constructor(io: PgSocket, deps: ConnDeps, log: Logger) {
    this.io = io;
    this.deps = deps;
    this.log = log;
  }

  async run(): Promise<void> {
    try {
      const timer = setTimeout(() => {
        this.log.info("page service startup timed out: closing");
        this.io.destroy();
      }, STARTUP_TIMEOUT_MS);
      let ok: boolean;
      try {
        ok = await this.startup();
      } finally {
        clearTimeout(timer);
      }
      if (ok) {
        this.io.setIdleTimeout(this.deps.idle_timeout_ms, () => this.closeIdle());
        await this.queries();
      }
    } catch (e) {
      if (e instanceof WireProtocolError) {
        this.log.info({ reason: e.message }, "protocol violation: closing the connection");
        this.io.send(errorResponse("08P01", e.message, "FATAL"));
      } else {
        this.log.error({ err: e }, "page service connection failed");
        this.io.send(errorResponse("XX000", "internal error", "FATAL"));
      }
    } finally {
      if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
      if (this.tenantSlot !== null) this.deps.tenant_conns.release(this.tenantSlot);
      this.tenantSlot = null;
      this.io.end();
      // end() waits for the queued answers to be flushed: a client that never reads them
      // must not keep the socket open.
      setTimeout(() => this.io.destroy(), CLOSE_FLUSH_TIMEOUT_MS).unref();
    }
  }

  private async startup(): Promise<boolean> {
    for (let i = 0; i < MAX_STARTUP_PACKETS; i++) {
      const f = await this.io.next();
      if (f === null) return false;
      if (f.code === SSL_REQUEST_CODE || f.code === GSSENC_REQUEST_CODE) {
        if (f.body.length !== 0) throw new WireProtocolError("SSLRequest/GSSENCRequest with a body");
        if (f.code === SSL_REQUEST_CODE && this.deps.tls !== null) {
          const r = await this.io.startTls(this.deps.tls);
          if (!r.ok) {
            this.log.info({ reason: r.reason }, "page service TLS handshake failed: closing");
            return false;
          }
          continue;
        }
        // A GSSENCRequest over TLS is a protocol violation in PostgreSQL too.
        if (this.io.tls) throw new WireProtocolError("GSSENCRequest on a connection already over TLS");
        this.io.send(Buffer.from("N"));
        continue;
      }
      if (f.code === CANCEL_REQUEST_CODE) return false; // nothing runs long enough to cancel
      if (f.code !== PROTOCOL_V3) {
        this.io.send(errorResponse("0A000", `unsupported frontend protocol ${f.code >>> 16}.${f.code & 0xffff}: only 3.0`, "FATAL"));
        return false;
      }
      if (this.deps.tls !== null && !this.io.tls) {
        this.log.info("page service startup in clear text refused: the node requires TLS");
        this.io.send(
          errorResponse(
            "28000",
            "the page service requires TLS: connect with sslmode=require (or verify-full), not in clear text",
            "FATAL",
          ),
        );
        return false;
      }
      const params = parseStartupParams(f.body);
      this.io.endStartup();
      this.log = this.log.child({ user: logged(params.get("user")), application_name: logged(params.get("application_name")) });
      return await this.authenticate();
    }
    throw new WireProtocolError(`more than ${MAX_STARTUP_PACKETS} startup packets`);
  }

  private async authenticate(): Promise<boolean> {
    const auth = this.deps.auth;
    if (auth !== null) {
      this.io.send(authenticationCleartextPassword());
      const f = await this.io.next();
      if (f === null) return false;
      if (f.type !== MSG.PasswordMessage) throw new WireProtocolError(`expected a password message, got ${typeName(f.type)}`);
      const token = parseCStringBody(f.body, "password message");
      try {
        this.claims = await auth.verify(token);
      } catch (e) {
        const why = e instanceof PageserverError ? e.message : String(e);
        this.log.info({ reason: why }, "page service authentication failed");
        this.io.send(errorResponse("28000", `authentication failed: ${why}`, "FATAL"));
        return false;
      }
      // Verified above: its exp is the signer's.
      const exp = decodeJwt(token).exp;
      if (exp !== undefined) {
        this.expiresAtMs = exp * 1000;
        this.armExpiry();
      }
      if (this.claims.scope === "tenant" && !this.claimTenant(this.claims.tenant_id)) {
        this.io.send(errorResponse("53300", this.tooMany(this.claims.tenant_id), "FATAL"));
        return false;
      }
    }
    this.io.send(authenticationOk(), parameterStatus("server_version", "15"), parameterStatus("client_encoding", "UTF8"), readyForQuery());
    return true;
  }

  /** A timer at the token's exp (re-armed while exp is beyond the longest timer, MAX_TIMER_MS). */
  private armExpiry(): void {
    const at = this.expiresAtMs;
    if (at === null) return;
    const in_ms = at - Date.now();
    if (in_ms <= 0) {
      this.closeExpired();
      return;
    }
    this.expiryTimer = setTimeout(() => this.armExpiry(), Math.min(in_ms, MAX_TIMER_MS));
    this.expiryTimer.unref();
  }

  private closeExpired(): void {
    if (this.io.closed) return;
    const at = new Date(this.expiresAtMs!).toISOString();
    this.log.info({ exp: at }, "page service token expired: closing the connection");
    this.deps.metrics.closed("token_expired");
    this.closedBy = "token_expired";
    this.io.terminate("28000", `the token expired at ${at}: reconnect with a new token`);
  }

  private closeIdle(): void {
    if (this.io.closed) return;
    const ms = this.deps.idle_timeout_ms;
    this.log.info({ idle_timeout_ms: ms }, "page service connection idle: closing it");
    this.deps.metrics.closed("idle_timeout");
    this.closedBy = "idle_timeout";
    this.io.terminate(
      "57P05",
      `terminating connection due to idle-session timeout (waited ${ms} ms on the client: no request, or answers unread)`,
    );
  }

  /** Count this connection for `tenant` (moving it from its previous tenant); false when `tenant` is full. */
  private claimTenant(tenant: TenantId): boolean {
    if (!this.deps.tenant_conns.move(this.tenantSlot, tenant)) {
      this.log.info(
        { tenant_id: tenant, max_connections_per_tenant: this.deps.tenant_conns.max_per_tenant },
        "page service connection refused: too many connections for this tenant",
      );
      this.deps.metrics.refused("tenant_limit");
      return false;
    }
    this.tenantSlot = tenant;
    return true;
  }

  private tooMany(tenant: TenantId): string {
    return `too many connections for tenant ${tenant}: at most ${this.deps.tenant_conns.max_per_tenant} (page_service_max_connections_per_tenant)`;
  }

  private async queries(): Promise<void> {
    let skipToSync = false;
    for (;;) {
      const f = await this.io.next();
      if (f === null) {
        if (this.closedBy === null) this.log.info("client disconnected");
        return;
      }
      // The timer may not have run yet: a command never starts on an expired token.
      if (this.expiresAtMs !== null && Date.now() >= this.expiresAtMs) {
        this.closeExpired();
        return;
      }
      switch (f.type) {
        case MSG.Query: {
          const sql = parseCStringBody(f.body, "query");
          if ((await this.command(sql)) === "closed") return;
          break;
        }
        case MSG.Terminate:
          return;
        case 0x53: // Sync: the end of an extended-protocol exchange
          skipToSync = false;
          this.io.send(readyForQuery());
          break;
        case 0x50: // Parse
        case 0x42: // Bind
        case 0x44: // Describe
        case 0x45: // Execute
        case 0x48: // Flush
        case 0x43: // Close
        case 0x46: // FunctionCall
          if (!skipToSync) this.io.send(errorResponse("0A000", "the page service speaks only the simple query protocol"));
          skipToSync = true;
          break;
        default:
          throw new WireProtocolError(`unexpected message ${typeName(f.type)}`);
      }
    }
  }

  /** One simple-query command; "closed" when the connection is over. */
  private async command(sql: string): Promise<"ok" | "closed"> {
    const words = sql.trim().split(/\s+/, MAX_COMMAND_WORDS + 1);
    try {
      if (words.length > MAX_COMMAND_WORDS) throw new InvalidArgumentError("command has too many words");
      switch (words[0]) {
        case "pagestream_v2":
        case "pagestream_v3":
          return await this.pagestream(words, words[0] === "pagestream_v2" ? 2 : 3);
        case "basebackup":
          await this.basebackup(words);
          break;
        default:
          throw new PageserverError(
            "unsupported",
            `unsupported command ${JSON.stringify(sql.slice(0, 80))}: expected pagestream_v2, pagestream_v3 or basebackup`,
          );
      }
    } catch (e) {
      if (e instanceof TooManyConnectionsError) {
        this.closedBy = "too_many_connections";
        this.io.terminate("53300", e.message);
        return "closed";
      }
      this.sendError(e);
    }
    this.io.send(readyForQuery());
    return "ok";
  }

  private sendError(e: unknown): void {
    this.deps.metrics.requestError(e);
    if (e instanceof PageserverError) {
      this.io.send(errorResponse(SQLSTATE[e.code], e.message));
    } else {
      this.log.error({ err: e }, "page service command failed unexpectedly");
      this.io.send(errorResponse("XX000", `internal error: ${e instanceof Error ? e.message : String(e)}`));
    }
  }

  /** The tenant and timeline of a command's words 1 and 2, after the token's check. */
  private target(words: string[], usage: string): { tenant: Tenant; tl: Timeline } {
    if (words.length < 3) throw new InvalidArgumentError(`usage: ${usage}`);
    const tenantId: TenantId = parseTenantId(words[1]);
    const timelineId = parseTimelineId(words[2]);
    if (this.claims !== null) Auth.check(this.claims, { tenant: tenantId });
    const tenant = this.deps.tenants.get(tenantId);
    const tl = tenant.getTimeline(timelineId);
    if (!this.claimTenant(tenantId)) throw new TooManyConnectionsError(this.tooMany(tenantId));
    return { tenant, tl };
  }

  private async pagestream(words: string[], version: PagestreamVersion): Promise<"ok" | "closed"> {
    if (words.length !== 3) throw new InvalidArgumentError(`usage: pagestream_v${version} <tenant_id> <timeline_id>`);
    const { tenant, tl } = this.target(words, `pagestream_v${version} <tenant_id> <timeline_id>`);
    const log = this.log.child({ tenant_id: tenant.id, timeline_id: tl.timelineId, protocol: `pagestream_v${version}` });
    this.io.send(copyBothResponse());
    log.debug("pagestream session started");
    const end = await new PagestreamHandler(this.io, tenant, tl, version, this.deps.pagestream, log).run();
    if (end === "closed") {
      if (this.closedBy === null) log.info("pagestream session ended: client disconnected");
      return "closed";
    }
    this.io.send(copyDone(), commandComplete("SELECT 1"), readyForQuery());
    return "ok";
  }

  private async basebackup(words: string[]): Promise<void> {
    const usage = "basebackup <tenant_id> <timeline_id> [<lsn>|latest] [--gzip]";
    const { tl } = this.target(words, usage);
    let lsnArg: string | null = null;
    let gzip = false;
    for (const w of words.slice(3)) {
      if (w === "--gzip") gzip = true;
      else if (!w.startsWith("--") && lsnArg === null) lsnArg = w;
      else throw new InvalidArgumentError(`unexpected argument ${JSON.stringify(w)}: usage: ${usage}`);
    }
    const lsn = lsnArg === null || lsnArg === "latest" ? tl.lastRecordLsn : parseLsn(lsnArg);
    // A tenant's base backups count against its heavy-work limit (an ErrorResponse 53400
    // beyond it) until the copy ends or the connection closes (the loops below stop then).
    const permit = this.deps.heavy?.acquire(tl.tenantId, "base backup") ?? null;
    try {
      await this.sendBasebackup(tl, lsn, gzip);
    } finally {
      permit?.release();
    }
  }

  private async sendBasebackup(tl: Timeline, lsn: Lsn, gzip: boolean): Promise<void> {
    const tar = await basebackupTar(tl, lsn);
    this.io.send(copyOutResponse());
    try {
      if (gzip) await this.sendGzipped(tar);
      else {
        for await (const chunk of tar) {
          for (let off = 0; off < chunk.length && !this.io.closed; off += MAX_COPY_DATA_BYTES) {
            this.io.send(copyData(chunk.subarray(off, off + MAX_COPY_DATA_BYTES)));
            await this.io.drained();
          }
          if (this.io.closed) return;
        }
      }
    } catch (e) {
      // After CopyOutResponse an ErrorResponse ends the copy (libpq reports it).
      this.sendError(e);
      return;
    }
    this.io.send(copyDone(), commandComplete("COPY"));
  }

  private async sendGzipped(tar: AsyncIterable<Uint8Array>): Promise<void> {
    const gz = createGzip();
    const pump = (async () => {
      for await (const chunk of tar) {
        if (this.io.closed) break;
        if (!gz.write(chunk)) await new Promise((resolve) => gz.once("drain", resolve));
      }
      gz.end();
    })();
    pump.catch((e: unknown) => gz.destroy(e instanceof Error ? e : new Error(String(e))));
    for await (const out of gz as AsyncIterable<Buffer>) {
      this.io.send(copyData(out));
      await this.io.drained();
    }
    await pump;
  }
}

/** A client-supplied string as logged: at most MAX_LOGGED_PARAM_CHARS, and how long it was when cut. */
export function logged(v: string | undefined): string | null {
  if (v === undefined) return null;
  if (v.length <= MAX_LOGGED_PARAM_CHARS) return v;
  return `${v.slice(0, MAX_LOGGED_PARAM_CHARS)}… (${v.length} chars)`;
}
