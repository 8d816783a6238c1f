/**
 * A small JSON HTTP layer over uWebSockets.js: routes declared with their schemas (schema.ts:
 * params, query, body, responses), their scope (tenant or management) and `:param` segments,
 * typed errors mapped to statuses (errors.ts: PageserverError.code → status), and streamed
 * responses with backpressure for large bodies (base backups). With `checkResponses` on
 * (tests), every reply is checked against its route's declared schema for its status; a
 * mismatch is a 500 and an ERROR line.
 *
 * Order of a request, so an unauthenticated client costs no body memory: the in-flight
 * request cap (429, connection closed) → the token (401/403; the body stays unread in the
 * socket: reading is paused) → Content-Length against the per-request limit (413) and the
 * node-wide in-flight body budget (429) → only then the body is read → validation → handler.
 * A reply sent before the body was read closes the connection, but for a 413 to a client that
 * passed auth (its body is then read and dropped). Reading stays paused while a handler runs
 * (see StreamState.paused).
 *
 * uWS rules followed here: everything from `req` is read before the first await (req is
 * stack-allocated); onData is registered in the handler (uWS drops data otherwise) and
 * paused; every async response registers onAborted and checks it before writing; writes
 * after an abort are dropped. An abort also aborts the request's AbortSignal, which heavy
 * handlers thread into their loops.
 */
import type { Logger } from "pino";
import type { TProperties, TSchema } from "@sinclair/typebox";
import { randomUUID } from "node:crypto";
import { ConflictError, LimitReachedError, PageserverError, RequestTooLargeError } from "../../types/errors.js";
import { ERROR_STATUSES, EXPECTED_5XX, httpStatusFor, redactPaths } from "./errors.js";
import {
  HttpError,
  type Handler,
  type JsonReply,
  type RegisteredRoute,
  type Reply,
  type Request,
  routeScope,
  type StreamReply,
  statusLine,
} from "./exchange.js";
import { DEFAULT_LIMITS, type HttpLimits, jsonDepth, MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_URL_BYTES } from "./limits.js";
import { ApiError } from "./models.js";
import { checkValue, compile, queryObject, type RouteSpec, type RouteValidator, routeValidator, type ValidRequest } from "./schema.js";
import type { TenantId } from "../../types/ids.js";
import { Auth, type AuthScope, type Claims } from "../auth.js";
import { type HttpRequest, type HttpResponse, loadUws, type TemplatedApp, type us_listen_socket } from "./uws.js";

/** uWebSockets.js's ListenOptions.LIBUS_LISTEN_EXCLUSIVE_PORT. */
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;
/** A streamed body's producer waits while more than this is queued, and resumes below LOW. */
const STREAM_QUEUE_HIGH_BYTES = 4 * 1024 * 1024;
const STREAM_QUEUE_LOW_BYTES = 1024 * 1024;

/** Reading resumed before a reply is written: the connection serves its next request afterwards. */
function resumeForReply(res: HttpResponse, state: StreamState): void {
  if (!state.paused) return;
  res.resume();
  state.paused = false;
}

/** The token of `Authorization: Bearer <token>`, or undefined. */
function bearerToken(headers: Record<string, string>): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(headers["authorization"] ?? "");
  return m === null ? undefined : m[1];
}

/** Per-request state shared with uWS callbacks: set when the client goes away. */
interface StreamState {
  aborted: boolean;
  onAbort: (() => void) | null;
  /** Aborted with the request: handed to the handler (ValidRequest.signal). */
  controller: AbortController;
  /**
   * Reading is paused (res.pause): before the checks, and again once the body is in. uWS arms
   * its 10 s idle timeout on resume and would close a connection whose handler runs longer,
   * so the socket is resumed only to read the body and right before the reply is written.
   */
  paused: boolean;
}

/** A request body as uWS delivers it: chunks held (bounded by MAX_BODY_BYTES) until the last. */
interface BodyState {
  chunks: Buffer[];
  size: number;
  tooLarge: boolean;
  done: boolean;
  /** Bytes of this request counted in the node-wide in-flight body total. */
  counted: number;
  /** Answered before the body: what still arrives is dropped uncounted. */
  discard: boolean;
  waiter: (() => void) | null;
}

export class HttpServer {
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private readonly log: Logger;
  private inflight = 0;
  /** Request body bytes held (or reserved by Content-Length) across all requests. */
  private inflightBodyBytes = 0;
  private readonly limits: HttpLimits;
  private auth: Auth | null = null;
  /** Every route registered, in order (tests walk them all, e.g. the auth matrix). */
  readonly routes: RegisteredRoute[] = [];
  /** Check every reply against its route's declared schema (tests; costs a validation per reply). */
  checkResponses = false;

  constructor(log: Logger, limits: HttpLimits = DEFAULT_LIMITS) {
    this.app = loadUws().App();
    this.log = log;
    this.limits = limits;
  }

  /** Requests being served and body bytes held now (tests, metrics). */
  get load(): { requests: number; body_bytes: number } {
    return { requests: this.inflight, body_bytes: this.inflightBodyBytes };
  }

  /**
   * Turn on JWT auth for every route not registered `open`: a `tenant` route needs a token for
   * the tenant in its path (or pageserverapi); a `management` route needs pageserverapi.
   */
  setAuth(auth: Auth): void {
    this.auth = auth;
  }

  /** The claims of a request to a route of `scope`; null when auth is off (every caller is the operator). */
  private async authorize(r: Request, scope: AuthScope): Promise<Claims | null> {
    if (this.auth === null || scope === "open") return null;
    const claims = await this.auth.verify(bearerToken(r.headers));
    const tenant = r.params["tenant_id"];
    Auth.check(claims, scope === "management" || tenant === undefined ? "management" : { tenant: tenant as TenantId });
    return claims;
  }

  /** Register a route: its declaration (validated requests, documented replies) and its handler. */
  route<B extends TSchema, Q extends TProperties>(spec: RouteSpec<B, Q>, handler: Handler<B, Q>): void {
    const { method, path: pattern } = spec;
    const names = [...pattern.matchAll(/:([a-z_]+)/g)].map((m) => m[1]!);
    const declared = Object.keys(spec.params?.properties ?? {}).sort();
    if (JSON.stringify(declared) !== JSON.stringify([...names].sort()))
      throw new Error(`route ${pattern}: params schema names ${declared} but the path has ${names}`);
    if (this.routes.some((r) => r.method === method && r.pattern === pattern))
      throw new Error(`route ${method} ${pattern} registered twice`);
    const registered: RegisteredRoute = {
      method,
      pattern,
      open: spec.open === true,
      scope: routeScope(spec),
      spec: spec as unknown as RouteSpec,
    };
    this.routes.push(registered);
    const validator = routeValidator(registered.spec);
    const run = handler as unknown as Handler;
    const register = method === "delete" ? this.app.del : this.app[method];
    register.call(this.app, pattern, (res: HttpResponse, req: HttpRequest) => {
      const params: Record<string, string> = {};
      // A malformed escape (`%zz`) is the client's error: a 400, never an uncaught URIError.
      let badSegment: string | null = null;
      names.forEach((n, i) => {
        const raw = req.getParameter(i) ?? "";
        try {
          params[n] = decodeURIComponent(raw);
        } catch {
          badSegment ??= raw;
          params[n] = raw;
        }
      });
      const headers: Record<string, string> = {};
      req.forEach((k, v) => {
        headers[k] = v;
      });
      const urlBytes = req.getUrl().length + (req.getQuery()?.length ?? 0);
      const r: Request = {
        method: method.toUpperCase(),
        url: req.getUrl(),
        params,
        query: new URLSearchParams(req.getQuery() ?? ""),
        headers,
        body: undefined,
      };
      const state: StreamState = { aborted: false, onAbort: null, controller: new AbortController(), paused: false };
      res.onAborted(() => {
        state.aborted = true;
        state.onAbort?.();
        state.controller.abort(new HttpError("shutdown", "client went away"));
      });
      if (this.inflight >= this.limits.max_inflight_requests) {
        const e = new LimitReachedError(`the server is serving ${this.inflight} requests (http_max_inflight_requests); retry later`);
        this.writeEarly(res, state, null, this.errorReply(r, e));
        return;
      }
      this.inflight++;
      // The body stays in the socket until the token and the size are checked.
      const body = this.readBody(res, state);
      res.pause();
      state.paused = true;
      const refusal: PageserverError | null =
        urlBytes > MAX_URL_BYTES
          ? new RequestTooLargeError("uri_too_long", `request URL of ${urlBytes} bytes is longer than ${MAX_URL_BYTES}`)
          : badSegment === null
            ? null
            : new HttpError("invalid_argument", `malformed percent-encoding in path segment '${badSegment}'`);
      void this.dispatch(res, state, body, r, refusal, run, registered, validator).finally(() => {
        this.inflight--;
        this.inflightBodyBytes -= body.counted;
        body.counted = 0;
        body.chunks = [];
      });
    });
  }

  /** 404 for everything else, as JSON. */
  fallback(): void {
    this.app.any("/*", (res, req) => {
      const url = req.getUrl();
      const method = req.getMethod();
      const urlBytes = url.length + (req.getQuery()?.length ?? 0);
      const [status, body] =
        urlBytes > MAX_URL_BYTES
          ? [414, { error: `request URL of ${urlBytes} bytes is longer than ${MAX_URL_BYTES}`, code: "uri_too_long" }]
          : [404, { error: `no route for ${method.toUpperCase()} ${url}`, code: "not_found" }];
      res.cork(() => {
        res.writeStatus(statusLine(status)).writeHeader("content-type", "application/json").end(JSON.stringify(body));
      });
    });
  }

  private readBody(res: HttpResponse, state: StreamState): BodyState {
    const body: BodyState = { chunks: [], size: 0, tooLarge: false, done: false, counted: 0, discard: false, waiter: null };
    res.onData((ab, isLast) => {
      if (state.aborted || body.done || body.discard) return;
      if (!body.tooLarge) {
        body.size += ab.byteLength;
        if (body.size > MAX_BODY_BYTES) {
          body.tooLarge = true;
          body.chunks = [];
        } else {
          // uWS reuses the ArrayBuffer after this callback: copy.
          body.chunks.push(Buffer.from(new Uint8Array(ab).slice()));
          // Bytes beyond the reservation (no Content-Length, or chunks before the checks) count too.
          if (body.size > body.counted) {
            this.inflightBodyBytes += body.size - body.counted;
            body.counted = body.size;
          }
        }
      }
      if (isLast) {
        body.done = true;
        body.waiter?.();
      }
    });
    return body;
  }

  /**
   * Reply at once, before the body. A client that passed auth (a 413) keeps its connection:
   * the body is read and dropped as it arrives. Any other (401, 403, 429) is closed after the
   * reply, its body unread.
   */
  private writeEarly(res: HttpResponse, state: StreamState, body: BodyState | null, reply: JsonReply): void {
    if (state.aborted) return;
    const keepAlive = body !== null && reply.status === 413;
    if (body !== null) {
      body.discard = true;
      body.chunks = [];
    }
    if (keepAlive) resumeForReply(res, state);
    res.cork(() => {
      res.writeStatus(statusLine(reply.status)).writeHeader("content-type", "application/json").end(JSON.stringify(reply.json), !keepAlive);
    });
  }

  /**
   * The checks that come before the body: token, then size (Content-Length against the
   * per-request limit and the node-wide budget, reserved here). Then the body is read.
   */
  private async admit(res: HttpResponse, state: StreamState, body: BodyState, r: Request, route: RegisteredRoute): Promise<Claims | null> {
    const claims = await this.authorize(r, route.scope);
    const lenText = r.headers["content-length"];
    const declared = lenText === undefined ? 0 : /^\d{1,15}$/.test(lenText) ? Number(lenText) : Number.NaN;
    if (Number.isNaN(declared)) throw new HttpError("invalid_argument", "invalid Content-Length header");
    if (declared > MAX_BODY_BYTES)
      throw new RequestTooLargeError("payload_too_large", `request body larger than ${MAX_BODY_BYTES} bytes (Content-Length ${declared})`);
    const extra = Math.max(0, declared - body.counted);
    if (this.inflightBodyBytes + extra > this.limits.max_inflight_body_bytes) {
      throw new LimitReachedError(
        `the server holds ${this.inflightBodyBytes} bytes of request bodies (http_max_inflight_body_bytes); retry later`,
      );
    }
    this.inflightBodyBytes += extra;
    body.counted += extra;
    // A client gone during the checks: nothing more will arrive (and onAbort already ran).
    if (state.aborted) return claims;
    if (!body.done) {
      res.resume();
      state.paused = false;
      await new Promise<void>((resolve) => {
        body.waiter = resolve;
        state.onAbort = resolve;
      });
      state.onAbort = null;
      if (!state.aborted) {
        res.pause();
        state.paused = true;
      }
    }
    return claims;
  }

  private async dispatch(
    res: HttpResponse,
    state: StreamState,
    body: BodyState,
    r: Request,
    refusal: PageserverError | null,
    handler: Handler,
    route: RegisteredRoute,
    validator: RouteValidator,
  ): Promise<void> {
    let claims: Claims | null;
    try {
      // Auth first: a refused request is answered before its body is even read.
      claims = await this.admit(res, state, body, r, route);
    } catch (e) {
      this.writeEarly(res, state, body, this.errorReply(r, e));
      return;
    }
    if (state.aborted) return;
    let reply: Reply;
    try {
      if (refusal !== null) throw refusal;
      if (body.tooLarge) throw new RequestTooLargeError("payload_too_large", `request body larger than ${MAX_BODY_BYTES} bytes`);
      const raw = Buffer.concat(body.chunks);
      if (raw.length > 0) {
        const text = raw.toString("utf8");
        if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH)
          throw new HttpError("invalid_argument", `request body nests deeper than ${MAX_JSON_DEPTH} levels`);
        try {
          r.body = JSON.parse(text);
        } catch {
          throw new HttpError("invalid_argument", "request body is not valid JSON");
        }
      }
      reply = await handler(this.validate(r, validator, claims, state.controller.signal));
    } catch (e) {
      reply = this.errorReply(r, e);
    }
    if (this.checkResponses) reply = this.checkReply(r, route, reply);
    if (state.aborted) {
      // A producer holds resources until it runs (a heavy-work permit, pinned layers): let
      // it end at its first write.
      if ("produce" in reply)
        await reply.produce(() => Promise.reject(new HttpError("shutdown", "client went away"))).catch(() => undefined);
      return;
    }
    if ("produce" in reply) {
      await this.stream(res, state, reply, r);
      return;
    }
    const out = "json" in reply ? JSON.stringify(reply.json) : reply.body;
    const ctype = "json" in reply ? "application/json" : reply.contentType;
    resumeForReply(res, state);
    const extra = "headers" in reply ? reply.headers : undefined;
    res.cork(() => {
      res.writeStatus(statusLine(reply.status)).writeHeader("content-type", ctype);
      for (const [k, v] of Object.entries(extra ?? {})) res.writeHeader(k, v);
      res.end(out);
    });
  }

  /** Params, query and body against the route's schemas: the first failure is a 400 naming its field. */
  private validate(r: Request, v: RouteValidator, claims: Claims | null, signal: AbortSignal): ValidRequest {
    const params = v.params === null ? r.params : (checkValue("params", v.params, r.params) as Record<string, string>);
    const q = queryObject(r.query);
    const query = v.query === null ? q : checkValue("query", v.query, q);
    let body: unknown = r.body;
    if (v.body === null) {
      // A route without a body ignores an empty object (clients send `{}` on a bare PUT).
      const empty =
        body === undefined || (typeof body === "object" && body !== null && !Array.isArray(body) && Object.keys(body).length === 0);
      if (!empty) throw new HttpError("invalid_argument", "body: this route takes no request body");
      body = undefined;
    } else {
      body = checkValue("body", v.body, body === undefined ? {} : body);
    }
    return { method: r.method, url: r.url, params, query, headers: r.headers, body, claims, signal };
  }

  /**
   * Tests: the reply against the route's declaration for its status (an error against the
   * catalogue's). A mismatch becomes a 500 naming the difference, and an ERROR line.
   */
  private checkReply(r: Request, route: RegisteredRoute, reply: Reply): Reply {
    const fail = (why: string): JsonReply => {
      this.log.error({ url: r.url, status: reply.status, why }, "reply does not match its declared schema");
      return { status: 500, json: { error: `reply does not match its declared schema: ${why}`, code: "internal" } };
    };
    if (reply.status >= 400) {
      if (!ERROR_STATUSES.includes(reply.status)) return fail(`status ${reply.status} is not in the error catalogue`);
      if (!("json" in reply)) return fail("an error reply is not JSON");
      try {
        checkValue("reply", compile(ApiError), reply.json);
      } catch (e) {
        return fail((e as Error).message);
      }
      return reply;
    }
    const decl = route.spec.responses[reply.status];
    if (decl === undefined) return fail(`status ${reply.status} is not declared for ${route.method.toUpperCase()} ${route.pattern}`);
    if ("json" in reply) {
      if (decl.schema === undefined) return fail(`status ${reply.status} is declared ${decl.contentType}, the reply is JSON`);
      try {
        checkValue("reply", compile(decl.schema), JSON.parse(JSON.stringify(reply.json)));
      } catch (e) {
        return fail((e as Error).message);
      }
      return reply;
    }
    if (decl.contentType !== reply.contentType.split(";")[0])
      return fail(`content type ${reply.contentType}, declared ${decl.contentType}`);
    return reply;
  }

  private errorReply(r: Request, e: unknown): JsonReply {
    if (e instanceof PageserverError) {
      const status = httpStatusFor(e.code);
      // A Broken or stopping tenant, or an LSN not reached in time, is a state the reply
      // explains (and that was logged where it arose), not a fault of this request: INFO.
      if (status >= 500) {
        if (EXPECTED_5XX.has(e.code)) this.log.info({ code: e.code, reason: e.message, url: r.url }, "request refused");
        else this.log.error({ err: e, url: r.url }, "request failed");
      }
      return { status, json: { error: status >= 500 ? redactPaths(e.message) : e.message, code: e.code } };
    }
    // An unexpected error's message is for the log (it may name files, or be a stack
    // overflow): the client gets an id to quote.
    const id = randomUUID();
    this.log.error({ err: e, url: r.url, error_id: id }, "request failed with an unexpected error");
    return { status: 500, json: { error: `internal error ${id}: ${redactPaths((e as Error)?.message ?? String(e))}`, code: "internal" } };
  }

  /**
   * Stream a body with chunked encoding. uWS corrupts the chunk framing when each write is
   * corked on its own and backpressure builds up (uWebSockets.js issues 1005, 1249; we saw it
   * under load). So writes are queued, and one pump writes as many as the socket takes inside
   * a single cork, then waits for onWritable to pump again. The queue is bounded: the producer
   * waits while more than STREAM_QUEUE_HIGH_BYTES are queued.
   */
  private async stream(res: HttpResponse, state: StreamState, reply: StreamReply, r: Request): Promise<void> {
    resumeForReply(res, state);
    res.cork(() => {
      res.writeStatus(statusLine(reply.status)).writeHeader("content-type", reply.contentType);
      for (const [k, v] of Object.entries(reply.headers ?? {})) res.writeHeader(k, v);
    });
    const queue: Uint8Array[] = [];
    let queuedBytes = 0;
    let backpressured = false;
    let producerDone = false;
    let ended = false;
    let spaceWaiter: (() => void) | null = null;
    const wakeProducer = (): void => {
      if (spaceWaiter !== null && (queuedBytes < STREAM_QUEUE_LOW_BYTES || state.aborted)) {
        const w = spaceWaiter;
        spaceWaiter = null;
        w();
      }
    };
    const pump = (): boolean => {
      if (state.aborted || ended) return true;
      let ok = true;
      res.cork(() => {
        while (ok && queue.length > 0) {
          const c = queue.shift()!;
          queuedBytes -= c.length;
          ok = res.write(c);
        }
        if (ok && producerDone && queue.length === 0) {
          res.end();
          ended = true;
        }
      });
      backpressured = !ok;
      wakeProducer();
      return ok;
    };
    res.onWritable(() => pump());
    state.onAbort = wakeProducer;
    const write = async (chunk: Uint8Array): Promise<void> => {
      if (state.aborted) throw new HttpError("shutdown", "client went away");
      // A zero-length write would end the chunked body.
      if (chunk.length === 0) return;
      queue.push(chunk);
      queuedBytes += chunk.length;
      if (!backpressured) pump();
      if (queuedBytes >= STREAM_QUEUE_HIGH_BYTES) {
        await new Promise<void>((resolve) => {
          spaceWaiter = resolve;
        });
        if (state.aborted) throw new HttpError("shutdown", "client went away");
      }
    };
    try {
      await reply.produce(write);
      producerDone = true;
      if (!backpressured) pump();
    } catch (e) {
      // Headers are gone already: the only honest signal left is a broken connection. A
      // client that went away is not a failure of ours.
      if (state.aborted) this.log.info({ url: r.url, reason: (e as Error).message }, "streamed response ended: the client went away");
      else this.log.error({ err: e, url: r.url }, "streamed response failed");
      if (!state.aborted && !ended) res.close();
    }
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      // Exclusive (no SO_REUSEPORT): a second server on this port fails here instead of
      // sharing the port's connections with this one.
      const listenExclusive = this.app.listen as unknown as (
        h: string,
        p: number,
        options: number,
        cb: (s: us_listen_socket | false) => void,
      ) => void;
      listenExclusive.call(this.app, host, port, LIBUS_LISTEN_EXCLUSIVE_PORT, (sock) => {
        if (!sock) {
          reject(
            new ConflictError(
              `cannot listen on ${host}:${port} (HTTP API): the port is in use (another pageserver?) or the address is not available`,
            ),
          );
          return;
        }
        this.listenSocket = sock;
        resolve(loadUws().us_socket_local_port(sock));
      });
    });
  }

  close(): void {
    if (this.listenSocket !== null) {
      loadUws().us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
  }
}
