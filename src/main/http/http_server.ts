/**
 * The HTTP framework, independent of the wire: routes declared with their schemas (schema.ts:
 * params, query, body, responses), their scope (tenant or management) and `:param` segments,
 * typed errors mapped to statuses (errors.ts: PageserverError.code → status), the limits of
 * limits.ts, and replies (exchange.ts) handed to a wire adapter (wire.ts: uws_adapter.ts or
 * node_adapter.ts, chosen by adapter_choice.ts) that only reads requests and writes replies.
 * With `checkResponses` on (tests), every reply is checked against its route's declared schema
 * for its status; a mismatch is a 500 and an ERROR line.
 *
 * Order of a request, so an unauthenticated client costs no body memory: the route (404, or
 * 414 for a URL past MAX_URL_BYTES) → the in-flight request cap (429, connection closed) → the
 * token (401/403; the body stays unread in the socket: reading is paused) → Content-Length
 * against the per-request limit (413) and the node-wide in-flight body budget (429) → only
 * then the body is read → validation → handler. A reply sent before the body was read closes
 * the connection, but for a 413 to a client that passed auth (its body is then read and
 * dropped). Reading stays paused while a handler runs.
 *
 * Routing: a path matches a pattern of as many `/`-separated segments whose literals are
 * equal; among several, the one whose first differing segment is a literal wins (as uWS
 * routes). A client that goes away aborts the request's AbortSignal, which heavy handlers
 * thread into their loops, and ends a streamed body at its next write.
 */
import type { Logger } from "pino";
import type { TProperties, TSchema } from "@sinclair/typebox";
import { randomUUID } from "node:crypto";
import { LimitReachedError, PageserverError, RequestTooLargeError } from "../../types/errors.js";
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
} from "./exchange.js";
import { DEFAULT_LIMITS, type HttpLimits, jsonDepth, MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_URL_BYTES } from "./limits.js";
import { ApiError } from "./models.js";
import { checkValue, compile, queryObject, type RouteSpec, type RouteValidator, routeValidator, type ValidRequest } from "./schema.js";
import type { TenantId } from "../../types/ids.js";
import { Auth, type AuthScope, type Claims } from "../auth.js";
import { chooseHttpServer, createWire } from "./adapter_choice.js";
import type { Exchange, HttpServerKind, HttpTls, WireServer } from "./wire.js";

const JSON_HEADERS: Readonly<Record<string, string>> = { "content-type": "application/json" };

/** The token of `Authorization: Bearer <token>`, or undefined. */
function bearerToken(headers: Record<string, string>): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(headers["authorization"] ?? "");
  return m === null ? undefined : m[1];
}

/** A route as the table holds it. */
interface Entry {
  route: RegisteredRoute;
  /** The pattern's segments; `null` for a `:param`. */
  segments: (string | null)[];
  /** The `:param` names, in path order. */
  names: string[];
  validator: RouteValidator;
  run: Handler;
}

/** Per-request state: the body's reading and the request's abort. */
interface RequestState {
  /** Aborted with the request: handed to the handler (ValidRequest.signal). */
  controller: AbortController;
  /** Runs when the client goes away (the body waiter). */
  onAbort: (() => void) | null;
}

/** A request body as the adapter delivers it: chunks held (bounded by MAX_BODY_BYTES) until the last. */
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

/** How a server serves: the wire adapter and TLS. */
export interface HttpServerOptions {
  kind: HttpServerKind;
  tls: HttpTls;
}

export class HttpServer {
  private readonly wire: WireServer;
  private readonly log: Logger;
  private inflight = 0;
  /** Request body bytes held (or reserved by Content-Length) across all requests. */
  private inflightBodyBytes = 0;
  private readonly limits: HttpLimits;
  private auth: Auth | null = null;
  private readonly table: Entry[] = [];
  /** Every route registered, in order (tests walk them all, e.g. the auth matrix). */
  readonly routes: RegisteredRoute[] = [];
  /** Check every reply against its route's declared schema (tests; costs a validation per reply). */
  checkResponses = false;

  /** Without options: uWS where it loads, else node:http (adapter_choice.ts); plain HTTP. */
  constructor(log: Logger, limits: HttpLimits = DEFAULT_LIMITS, options?: HttpServerOptions) {
    this.log = log;
    this.limits = limits;
    this.wire = createWire(options?.kind ?? chooseHttpServer("auto").kind, (ex) => this.serve(ex), options?.tls ?? null);
  }

  /** The wire adapter serving (GET /v1/status, the startup line). */
  get kind(): HttpServerKind {
    return this.wire.kind;
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
    this.table.push({
      route: registered,
      segments: pattern.split("/").map((s) => (s.startsWith(":") ? null : s)),
      names,
      validator: routeValidator(registered.spec),
      run: handler as unknown as Handler,
    });
  }

  /** The route serving `method path` and the raw values of its params, or null. */
  private match(method: string, path: string): { entry: Entry; raw: string[] } | null {
    const parts = path.split("/");
    let best: Entry | null = null;
    for (const e of this.table) {
      if (e.route.method.toUpperCase() !== method || e.segments.length !== parts.length) continue;
      if (!e.segments.every((s, i) => s === null || s === parts[i])) continue;
      if (best === null || literalFirst(e, best)) best = e;
    }
    if (best === null) return null;
    return { entry: best, raw: parts.filter((_, i) => best.segments[i] === null) };
  }

  /** One request, from its head: what the adapter calls as it arrives. */
  private serve(ex: Exchange): void {
    const { head } = ex;
    const urlBytes = head.path.length + head.query.length;
    const m = this.match(head.method, head.path);
    if (m === null) {
      const [status, json] =
        urlBytes > MAX_URL_BYTES
          ? [414, { error: `request URL of ${urlBytes} bytes is longer than ${MAX_URL_BYTES}`, code: "uri_too_long" }]
          : [404, { error: `no route for ${head.method} ${head.path}`, code: "not_found" }];
      ex.reply(status, JSON_HEADERS, JSON.stringify(json), false);
      return;
    }
    const { entry, raw } = m;
    const params: Record<string, string> = {};
    // A malformed escape (`%zz`) is the client's error: a 400, never an uncaught URIError.
    let badSegment: string | null = null;
    entry.names.forEach((n, i) => {
      const v = raw[i] ?? "";
      try {
        params[n] = decodeURIComponent(v);
      } catch {
        badSegment ??= v;
        params[n] = v;
      }
    });
    const r: Request = {
      method: head.method,
      url: head.path,
      params,
      query: new URLSearchParams(head.query),
      headers: head.headers,
      body: undefined,
    };
    const state: RequestState = { controller: new AbortController(), onAbort: null };
    ex.onAbort = () => {
      state.onAbort?.();
      state.controller.abort(new HttpError("shutdown", "client went away"));
    };
    if (this.inflight >= this.limits.max_inflight_requests) {
      const e = new LimitReachedError(`the server is serving ${this.inflight} requests (http_max_inflight_requests); retry later`);
      this.writeEarly(ex, null, this.errorReply(r, e));
      return;
    }
    this.inflight++;
    // The body stays in the socket until the token and the size are checked.
    const body = this.readBody(ex);
    const refusal: PageserverError | null =
      urlBytes > MAX_URL_BYTES
        ? new RequestTooLargeError("uri_too_long", `request URL of ${urlBytes} bytes is longer than ${MAX_URL_BYTES}`)
        : badSegment === null
          ? null
          : new HttpError("invalid_argument", `malformed percent-encoding in path segment '${badSegment}'`);
    void this.dispatch(ex, state, body, r, refusal, entry).finally(() => {
      this.inflight--;
      this.inflightBodyBytes -= body.counted;
      body.counted = 0;
      body.chunks = [];
    });
  }

  private readBody(ex: Exchange): BodyState {
    const body: BodyState = { chunks: [], size: 0, tooLarge: false, done: false, counted: 0, discard: false, waiter: null };
    ex.onChunk = (chunk, isLast) => {
      if (body.done || body.discard) return;
      if (!body.tooLarge) {
        body.size += chunk.byteLength;
        if (body.size > MAX_BODY_BYTES) {
          body.tooLarge = true;
          body.chunks = [];
        } else {
          // A copy: the adapter may reuse the chunk's memory after this call.
          if (chunk.byteLength > 0) body.chunks.push(Buffer.from(chunk));
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
    };
    return body;
  }

  /**
   * Reply at once, before the body. A client that passed auth (a 413) keeps its connection:
   * the body is read and dropped as it arrives. Any other (401, 403, 429) is closed after the
   * reply, its body unread.
   */
  private writeEarly(ex: Exchange, body: BodyState | null, reply: JsonReply): void {
    const keepAlive = body !== null && reply.status === 413;
    if (body !== null) {
      body.discard = true;
      body.chunks = [];
    }
    ex.reply(reply.status, JSON_HEADERS, JSON.stringify(reply.json), !keepAlive);
  }

  /**
   * The checks that come before the body: token, then size (Content-Length against the
   * per-request limit and the node-wide budget, reserved here). Then the body is read.
   */
  private async admit(ex: Exchange, state: RequestState, body: BodyState, r: Request, route: RegisteredRoute): Promise<Claims | null> {
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
    if (ex.aborted) return claims;
    if (!body.done) {
      ex.resume();
      await new Promise<void>((resolve) => {
        body.waiter = resolve;
        state.onAbort = resolve;
      });
      state.onAbort = null;
      ex.pause();
    }
    return claims;
  }

  private async dispatch(
    ex: Exchange,
    state: RequestState,
    body: BodyState,
    r: Request,
    refusal: PageserverError | null,
    entry: Entry,
  ): Promise<void> {
    let claims: Claims | null;
    try {
      // Auth first: a refused request is answered before its body is even read.
      claims = await this.admit(ex, state, body, r, entry.route);
    } catch (e) {
      this.writeEarly(ex, body, this.errorReply(r, e));
      return;
    }
    if (ex.aborted) return;
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
      reply = await entry.run(this.validate(r, entry.validator, claims, state.controller.signal));
    } catch (e) {
      reply = this.errorReply(r, e);
    }
    if (this.checkResponses) reply = this.checkReply(r, entry.route, reply);
    if (ex.aborted) {
      // A producer holds resources until it runs (a heavy-work permit, pinned layers): let
      // it end at its first write.
      if ("produce" in reply)
        await reply.produce(() => Promise.reject(new HttpError("shutdown", "client went away"))).catch(() => undefined);
      return;
    }
    if ("produce" in reply) {
      await this.stream(ex, reply, r);
      return;
    }
    if ("json" in reply) ex.reply(reply.status, JSON_HEADERS, JSON.stringify(reply.json), false);
    else ex.reply(reply.status, { ...reply.headers, "content-type": reply.contentType }, reply.body, false);
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
   * Stream a body (chunked). The adapter's `write` resolves once the client drained (its queue
   * is bounded), so the producer runs at the client's pace and stops at its first write after
   * the client went away.
   */
  private async stream(ex: Exchange, reply: StreamReply, r: Request): Promise<void> {
    ex.beginStream(reply.status, { ...reply.headers, "content-type": reply.contentType });
    const write = async (chunk: Uint8Array): Promise<void> => {
      if (ex.aborted) throw new HttpError("shutdown", "client went away");
      // A zero-length write would end the chunked body.
      if (chunk.length === 0) return;
      await ex.write(chunk);
      if (ex.aborted) throw new HttpError("shutdown", "client went away");
    };
    try {
      await reply.produce(write);
      ex.end();
    } catch (e) {
      // Headers are gone already: the only honest signal left is a broken connection. A
      // client that went away is not a failure of ours.
      if (ex.aborted) this.log.info({ url: r.url, reason: (e as Error).message }, "streamed response ended: the client went away");
      else this.log.error({ err: e, url: r.url }, "streamed response failed");
      ex.destroy();
    }
  }

  /** Listen exclusively; the bound port. ConflictError naming the port when it is taken. */
  listen(host: string, port: number): Promise<number> {
    return this.wire.listen(host, port);
  }

  close(): void {
    this.wire.close();
  }
}

/** Whether `a` beats `b` for the same path: its first segment that differs in kind is a literal. */
function literalFirst(a: Entry, b: Entry): boolean {
  for (let i = 0; i < a.segments.length; i++) {
    const la = a.segments[i] !== null;
    const lb = b.segments[i] !== null;
    if (la !== lb) return la;
  }
  return false;
}
