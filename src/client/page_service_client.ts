/**
 * A client of the page service (src/main/page_service/page_service.ts): one TCP connection speaking the
 * PostgreSQL wire protocol, on which to open a pagestream session (pipelined requests) or
 * fetch a base backup. Used by tests, benches and pagectl.
 *
 *   const c = await PageServiceClient.connect({ host, port, password: jwt, tls: { ca } });
 *   const s = await c.pagestream(tenant, timeline, 3);
 *   const page = await s.getPage(rel, 0, LATEST_LSN, lsn);    // or many send()s, pipelined
 *   await s.close(); c.close();
 *
 * Invariants:
 * - One operation at a time per connection (a command, or one open pagestream session):
 *   a second is an InvalidArgumentError.
 * - Responses resolve in request order; at most `max_in_flight` requests are on the wire,
 *   the rest wait in a bounded queue (`max_queued`) and go out as answers arrive.
 * - Inbound frames are copied out of the socket buffer; the inbox is bounded: past
 *   `max_inbox_bytes` the socket is paused until the reader drains it.
 * - A v3 response must echo its request's header: a mismatch fails the session.
 * - The socket closing (or an ErrorResponse inside a session) fails every pending request.
 * - With `tls`, nothing (the password least of all) is sent before the server's certificate
 *   is verified against the CA and the host (sslmode=verify-full).
 */
import { isIP, connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { type ErrorCode, InvalidArgumentError, LimitReachedError, PageserverError } from "../types/errors.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import {
  copyDone,
  type Frame,
  FrameReader,
  MSG,
  parseCStringBody,
  parseErrorFields,
  passwordMessage,
  query,
  sslRequest,
  startupMessage,
  terminate,
  typeName,
} from "../protocol/pg_wire.js";
import {
  decodeResponse,
  encodeRequest,
  header,
  type PagestreamRequest,
  type PagestreamResponse,
  type PagestreamVersion,
  type RelTag,
  type RequestHeader,
  sameHeader,
} from "../protocol/pagestream.js";

/** An ErrorResponse from the server (sqlstate set), or the connection failing (sqlstate null). */
export class PageServiceError extends PageserverError {
  readonly sqlstate: string | null;
  constructor(sqlstate: string | null, message: string) {
    super(codeOf(sqlstate), sqlstate === null ? message : `${message} (SQLSTATE ${sqlstate})`);
    this.sqlstate = sqlstate;
  }
}

function codeOf(sqlstate: string | null): ErrorCode {
  if (sqlstate === null) return "source_unavailable";
  if (sqlstate.startsWith("28")) return "unauthorized";
  if (sqlstate === "42501") return "forbidden";
  if (sqlstate === "58P01" || sqlstate === "42704") return "not_found";
  if (sqlstate.startsWith("08")) return "invalid_argument";
  return "internal";
}

/** An Error response (tag 103) inside a pagestream session: the request failed, the session goes on. */
export class PagestreamRequestError extends PageserverError {
  constructor(message: string) {
    super("internal", message);
  }
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** The JWT, sent when the server asks for a cleartext password. */
  password?: string;
  user?: string;
  /**
   * TLS as libpq's sslmode=verify-full: SSLRequest, the server must answer 'S', then a TLS
   * handshake whose certificate must chain to `ca` (PEM) and name `host` (a DNS name or an IP
   * address in its subjectAltName). Absent: clear text (a node with a certificate refuses it).
   */
  tls?: { ca: string | Buffer };
  connect_timeout_ms?: number;
  max_inbox_bytes?: number;
}

const MAX_FRAME_BYTES = 16 * 1024 * 1024;
const DEFAULT_INBOX_BYTES = 32 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export class PageServiceClient {
  private readonly sock: Socket;
  private readonly reader = new FrameReader({ max_frame_bytes: MAX_FRAME_BYTES, startup: false });
  private readonly inbox: Frame[] = [];
  private inboxBytes = 0;
  private readonly maxInboxBytes: number;
  private waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private busy = false;

  private constructor(sock: Socket, maxInboxBytes: number) {
    this.sock = sock;
    this.maxInboxBytes = maxInboxBytes;
    sock.on("data", (d: Buffer) => this.onData(d));
    sock.on("error", (e) => this.fail(new PageServiceError(null, `page service connection: ${e.message}`)));
    sock.on("close", () => this.fail(new PageServiceError(null, "page service connection closed")));
  }

  static async connect(opts: ConnectOptions): Promise<PageServiceClient> {
    const where = `${opts.host}:${opts.port}`;
    const timeout_ms = opts.connect_timeout_ms ?? DEFAULT_CONNECT_TIMEOUT_MS;
    let sock = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect({ host: opts.host, port: opts.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new PageServiceError(null, `connect to ${where} timed out`));
      }, timeout_ms);
      s.once("connect", () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        resolve(s);
      });
      s.once("error", (e) => {
        clearTimeout(timer);
        reject(new PageServiceError(null, `connect to ${where}: ${e.message}`));
      });
    });
    if (opts.tls !== undefined) {
      try {
        sock = await startTls(sock, opts.host, opts.tls.ca, where, timeout_ms);
      } catch (e) {
        sock.destroy();
        throw e;
      }
    }
    const c = new PageServiceClient(sock, opts.max_inbox_bytes ?? DEFAULT_INBOX_BYTES);
    try {
      await c.startup(opts);
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  private onData(d: Buffer): void {
    try {
      this.reader.push(d);
      for (let f = this.reader.next(); f !== null; f = this.reader.next()) {
        const owned: Frame = { type: f.type, code: 0, body: f.body.slice() };
        if (this.waiter !== null) {
          const w = this.waiter;
          this.waiter = null;
          w.resolve(owned);
        } else {
          this.inbox.push(owned);
          this.inboxBytes += owned.body.length;
        }
      }
      if (this.inboxBytes > this.maxInboxBytes) this.sock.pause();
    } catch (e) {
      this.fail(e as Error);
      this.sock.destroy();
    }
  }

  private fail(e: Error): void {
    if (this.failure === null) this.failure = e;
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(this.failure);
    }
  }

  /** The next frame from the server (in order); rejects once the connection failed. */
  recv(): Promise<Frame> {
    const f = this.inbox.shift();
    if (f !== undefined) {
      this.inboxBytes -= f.body.length;
      if (this.inboxBytes <= this.maxInboxBytes / 2 && this.sock.isPaused()) this.sock.resume();
      return Promise.resolve(f);
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Raw bytes to the server (tests of malformed input). */
  write(bytes: Uint8Array): boolean {
    return this.sock.write(bytes);
  }

  private async startup(opts: ConnectOptions): Promise<void> {
    this.sock.write(startupMessage({ user: opts.user ?? "pageserver", database: "postgres", application_name: "page_service_client" }));
    for (;;) {
      const f = await this.recv();
      if (f.type === MSG.Authentication) {
        if (f.body.length < 4) throw new PageServiceError("08P01", "short Authentication message");
        const kind = new DataView(f.body.buffer, f.body.byteOffset, 4).getInt32(0);
        if (kind === 0) continue;
        if (kind !== 3) throw new PageServiceError("08P01", `unsupported authentication request ${kind}`);
        if (opts.password === undefined)
          throw new PageServiceError("28000", "the page service asks for a password (a JWT) and none was given");
        this.sock.write(passwordMessage(opts.password));
        continue;
      }
      if (f.type === MSG.ReadyForQuery) return;
      this.checkCommon(f, "startup");
    }
  }

  /** ErrorResponse → throw; notices and parameter status → ignore; anything else → protocol error. */
  private checkCommon(f: Frame, during: string): void {
    if (f.type === MSG.ErrorResponse) throw errorFromFrame(f);
    if (f.type === MSG.ParameterStatus || f.type === MSG.NoticeResponse || f.type === 0x4b /* BackendKeyData */) return;
    throw new PageServiceError("08P01", `unexpected message ${typeName(f.type)} during ${during}`);
  }

  private begin(): void {
    if (this.busy) throw new InvalidArgumentError("page service connection busy: one command or session at a time");
    if (this.failure !== null) throw this.failure;
    this.busy = true;
  }

  /** Run a simple query expecting no rows: resolves with the CommandComplete tag. */
  async command(sql: string): Promise<string> {
    this.begin();
    try {
      this.sock.write(query(sql));
      let tag = "";
      let err: PageServiceError | null = null;
      for (;;) {
        const f = await this.recv();
        if (f.type === MSG.ReadyForQuery) break;
        if (f.type === MSG.CommandComplete) tag = parseCStringBody(f.body, "CommandComplete");
        else if (f.type === MSG.ErrorResponse) err = errorFromFrame(f);
        else this.checkCommon(f, sql);
      }
      if (err !== null) throw err;
      return tag;
    } finally {
      this.busy = false;
    }
  }

  /** Open a pagestream session (`pagestream_v2|v3 <tenant> <timeline>`). */
  async pagestream(
    tenant: string,
    timeline: string,
    version: PagestreamVersion,
    opts: { max_in_flight?: number; max_queued?: number } = {},
  ): Promise<PagestreamSession> {
    this.begin();
    try {
      this.sock.write(query(`pagestream_v${version} ${tenant} ${timeline}`));
      const f = await this.recv();
      if (f.type === MSG.ErrorResponse) {
        const e = errorFromFrame(f);
        await this.expectReady();
        throw e;
      }
      if (f.type !== MSG.CopyBothResponse) throw new PageServiceError("08P01", `expected CopyBothResponse, got ${typeName(f.type)}`);
    } catch (e) {
      this.busy = false;
      throw e;
    }
    return new PagestreamSession(this, version, opts.max_in_flight ?? 1024, opts.max_queued ?? 100_000, () => {
      this.busy = false;
    });
  }

  private async expectReady(): Promise<void> {
    for (;;) {
      const f = await this.recv();
      if (f.type === MSG.ReadyForQuery) return;
      this.checkCommon(f, "the end of a command");
    }
  }

  /**
   * The base backup tar at `lsn` (or the latest), as the server sent it: gzip bytes with
   * `gzip`. At most `max_bytes` (default 1 GiB) are accepted.
   */
  async basebackup(
    tenant: string,
    timeline: string,
    lsn: Lsn | "latest",
    opts: { gzip?: boolean; max_bytes?: number } = {},
  ): Promise<Uint8Array> {
    this.begin();
    try {
      const lsnArg = lsn === "latest" ? "latest" : lsnToString(lsn);
      this.sock.write(query(`basebackup ${tenant} ${timeline} ${lsnArg}${opts.gzip ? " --gzip" : ""}`));
      const max = opts.max_bytes ?? 1024 * 1024 * 1024;
      const chunks: Uint8Array[] = [];
      let total = 0;
      let err: PageServiceError | null = null;
      for (;;) {
        const f = await this.recv();
        if (f.type === MSG.ReadyForQuery) break;
        if (f.type === MSG.CopyData) {
          total += f.body.length;
          if (total > max) throw new LimitReachedError(`base backup larger than max_bytes ${max}`);
          chunks.push(f.body);
        } else if (f.type === MSG.ErrorResponse) err = errorFromFrame(f);
        else if (f.type !== MSG.CopyOutResponse && f.type !== MSG.CopyDone && f.type !== MSG.CommandComplete)
          this.checkCommon(f, "basebackup");
      }
      if (err !== null) throw err;
      return Buffer.concat(chunks);
    } finally {
      this.busy = false;
    }
  }

  /** Terminate and close the socket (idempotent). */
  close(): void {
    if (!this.sock.destroyed) {
      this.sock.end(terminate());
      this.sock.destroySoon();
    }
  }

  get closed(): boolean {
    return this.failure !== null;
  }
}

/**
 * SSLRequest on `sock`, then TLS over it, verified as libpq's sslmode=verify-full: the
 * certificate chains to `ca` and names `host`. Any answer but 'S', or a byte after it before
 * the handshake (a man in the middle injecting clear text, CVE-2021-23222), fails.
 */
async function startTls(sock: Socket, host: string, ca: string | Buffer, where: string, timeout_ms: number): Promise<TLSSocket> {
  const answer = await new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new PageServiceError(null, `TLS with ${where}: no answer to SSLRequest in time`)), timeout_ms);
    const done = (): void => {
      clearTimeout(timer);
      sock.off("data", onData);
      sock.off("close", onClose);
    };
    const onData = (d: Buffer): void => {
      done();
      sock.pause();
      resolve(d);
    };
    const onClose = (): void => {
      done();
      reject(new PageServiceError(null, `TLS with ${where}: the connection closed after SSLRequest`));
    };
    sock.on("data", onData);
    sock.once("close", onClose);
    sock.once("error", () => {}); // its 'close' follows and rejects
    sock.write(sslRequest());
  });
  if (answer[0] === MSG.ErrorResponse && answer.length >= 5 && answer.readInt32BE(1) === answer.length - 1) {
    // Refused before TLS (too many connections from this peer): the server's FATAL, in clear.
    throw errorFromFrame({ type: MSG.ErrorResponse, code: 0, body: answer.subarray(5) });
  }
  if (answer.length !== 1 || answer[0] !== 0x53 /* S */) {
    const why =
      answer[0] === 0x4e /* N */ ? "the page service does not offer TLS (no certificate configured)" : "unexpected answer to SSLRequest";
    throw new PageServiceError(null, `TLS with ${where}: ${why}`);
  }
  return await new Promise<TLSSocket>((resolve, reject) => {
    const t = tlsConnect({ socket: sock, ca, host, ...(isIP(host) === 0 ? { servername: host } : {}) });
    const timer = setTimeout(() => {
      t.destroy();
      reject(new PageServiceError(null, `TLS with ${where}: handshake timed out`));
    }, timeout_ms);
    t.once("secureConnect", () => {
      clearTimeout(timer);
      t.off("error", onError);
      resolve(t);
    });
    const onError = (e: Error): void => {
      clearTimeout(timer);
      t.destroy();
      reject(new PageServiceError(null, `TLS with ${where}: ${e.message}`));
    };
    t.once("error", onError);
  });
}

function errorFromFrame(f: Frame): PageServiceError {
  const fields = parseErrorFields(f.body);
  return new PageServiceError(fields.get("C") ?? "XX000", fields.get("M") ?? "error without a message");
}

interface Pending {
  req: PagestreamRequest;
  resolve: (r: PagestreamResponse) => void;
  reject: (e: Error) => void;
}

/**
 * A pagestream session: `send` pipelines requests, answers come in order. The typed helpers
 * resolve with the payload and reject with PagestreamRequestError on an Error response.
 */
export class PagestreamSession {
  readonly version: PagestreamVersion;
  private readonly conn: PageServiceClient;
  private readonly inFlight: Pending[] = [];
  private readonly queued: Pending[] = [];
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly onEnd: () => void;
  private failure: Error | null = null;
  private nextReqid = 1;
  private reading = false;
  private ended = false;
  /** close() waiting for the last answer. */
  private readonly idleWaiters: (() => void)[] = [];

  constructor(conn: PageServiceClient, version: PagestreamVersion, maxInFlight: number, maxQueued: number, onEnd: () => void) {
    this.conn = conn;
    this.version = version;
    this.maxInFlight = maxInFlight;
    this.maxQueued = maxQueued;
    this.onEnd = onEnd;
  }

  /** A fresh header: reqid counts from 1 (v3 echoes it; v2 has none). */
  header(requestLsn: Lsn, notModifiedSince: Lsn): RequestHeader {
    return header(this.version === 3 ? this.nextReqid++ : 0, requestLsn, notModifiedSince);
  }

  /** Send one request; resolves with its response (an Error response resolves too). */
  send(req: PagestreamRequest): Promise<PagestreamResponse> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.ended) return Promise.reject(new InvalidArgumentError("pagestream session closed"));
    return new Promise((resolve, reject) => {
      const p: Pending = { req, resolve, reject };
      if (this.inFlight.length < this.maxInFlight) this.transmit(p);
      else if (this.queued.length < this.maxQueued) this.queued.push(p);
      else reject(new LimitReachedError(`more than ${this.maxQueued} pagestream requests queued`));
    });
  }

  private transmit(p: Pending): void {
    this.inFlight.push(p);
    // The envelope: CopyData header then the request.
    const body = encodeRequest(p.req, this.version);
    const frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = MSG.CopyData;
    frame.writeInt32BE(4 + body.length, 1);
    frame.set(body, 5);
    this.conn.write(frame);
    if (!this.reading) void this.readLoop();
  }

  private async readLoop(): Promise<void> {
    this.reading = true;
    try {
      while (this.inFlight.length > 0) {
        const f = await this.conn.recv();
        if (f.type === MSG.ErrorResponse) throw errorFromFrame(f);
        if (f.type !== MSG.CopyData) throw new PageServiceError("08P01", `unexpected message ${typeName(f.type)} in a pagestream session`);
        const resp = decodeResponse(f.body, this.version);
        const p = this.inFlight.shift()!;
        if (this.version === 3) {
          const echoed = resp.kind === "error" ? resp.hdr : resp.req?.hdr;
          if (echoed == null || !sameHeader(echoed, p.req.hdr)) {
            throw new PageServiceError("08P01", `v3 response does not echo the request header (reqid ${p.req.hdr.reqidLo})`);
          }
        }
        p.resolve(resp);
        const next = this.queued.shift();
        if (next !== undefined) this.transmit(next);
      }
      this.wakeIdle();
    } catch (e) {
      this.failAll(e as Error);
    } finally {
      this.reading = false;
    }
  }

  private failAll(e: Error): void {
    if (this.failure === null) this.failure = e;
    for (const p of this.inFlight.splice(0)) p.reject(this.failure);
    for (const p of this.queued.splice(0)) p.reject(this.failure);
    this.wakeIdle();
  }

  private wakeIdle(): void {
    for (const w of this.idleWaiters.splice(0)) w();
  }

  get pending(): number {
    return this.inFlight.length + this.queued.length;
  }

  // Typed helpers: the payload, or a PagestreamRequestError.

  async exists(rel: RelTag, requestLsn: Lsn, notModifiedSince: Lsn): Promise<boolean> {
    const r = await this.send({ kind: "exists", hdr: this.header(requestLsn, notModifiedSince), rel });
    return expectKind(r, "exists").exists;
  }

  async nblocks(rel: RelTag, requestLsn: Lsn, notModifiedSince: Lsn): Promise<number> {
    const r = await this.send({ kind: "nblocks", hdr: this.header(requestLsn, notModifiedSince), rel });
    return expectKind(r, "nblocks").nblocks;
  }

  async getPage(rel: RelTag, blkno: number, requestLsn: Lsn, notModifiedSince: Lsn): Promise<Uint8Array> {
    const r = await this.send({ kind: "get_page", hdr: this.header(requestLsn, notModifiedSince), rel, blkno });
    return expectKind(r, "get_page").page;
  }

  async dbSize(dbnode: number, requestLsn: Lsn, notModifiedSince: Lsn): Promise<number> {
    const r = await this.send({ kind: "db_size", hdr: this.header(requestLsn, notModifiedSince), dbnode });
    return expectKind(r, "db_size").dbSizeBytes;
  }

  async getSlruSegment(slruKind: number, segno: number, requestLsn: Lsn, notModifiedSince: Lsn): Promise<Uint8Array> {
    const r = await this.send({ kind: "get_slru_segment", hdr: this.header(requestLsn, notModifiedSince), slruKind, segno });
    return expectKind(r, "get_slru_segment").segment;
  }

  /** Wait for every answer, send CopyDone, and return the connection to the query state. */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    try {
      if (this.pending > 0 && this.failure === null) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      if (this.failure !== null) throw this.failure;
      this.conn.write(copyDone());
      for (;;) {
        const f = await this.conn.recv();
        if (f.type === MSG.ReadyForQuery) break;
        if (f.type === MSG.ErrorResponse) throw errorFromFrame(f);
      }
    } finally {
      this.onEnd();
    }
  }
}

function expectKind<K extends PagestreamResponse["kind"]>(r: PagestreamResponse, kind: K): Extract<PagestreamResponse, { kind: K }> {
  if (r.kind === "error") throw new PagestreamRequestError(r.message);
  if (r.kind !== kind) throw new PageServiceError("08P01", `expected a ${kind} response, got ${r.kind}`);
  return r as Extract<PagestreamResponse, { kind: K }>;
}
