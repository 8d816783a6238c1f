/**
 * PageserverHttpClient: a typed client of the HTTP API v1 (docs/http-api.md) on fetch, used by
 * pagectl, the demo and tests.
 *
 *   const api = new PageserverHttpClient({ url: "http://127.0.0.1:9898", token });
 *   const { id } = await api.createTenant();
 *   const tl = await api.createTimeline(id, { wal_source: { connstr } });
 *
 * Invariants:
 * - Every failure is a PageserverError with a stable `code`: an error reply is an
 *   HttpApiError carrying the server's `code` and the HTTP status; a server that can't be
 *   reached is an HttpApiError with code `source_unavailable` and status null.
 * - Every JSON reply is read to at most MAX_JSON_BYTES and checked against the shape its
 *   method promises (reply_checks.ts) before it is returned; the types
 *   of the replies are the server's own schemas (src/protocol/http_models.ts).
 * - Each request is bounded: `timeout_ms` covers the whole exchange of a JSON request and the
 *   wait for the headers of a streamed one (a base backup streams for as long as it takes).
 * - The token, when given, goes out as `Authorization: Bearer`; it is never put in a message.
 * - With `ca`, an https:// server's certificate must chain to it and name the URL's host
 *   (node:https, since fetch takes no CA); without, fetch and the system's roots.
 */
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { type ErrorCode, PageserverError } from "../types/errors.js";
import {
  type Checkpointed,
  type Compacted,
  type Failpoints,
  type FailpointsBody,
  type GcDone,
  isErrorCode,
  type LayerInfo,
  type LsnByTimestamp,
  type NameBody,
  type RemoteCheck,
  type RemoteStorageStatus,
  type Status,
  type TenantConfig,
  type TenantConfigSet,
  type TenantCreate,
  type TenantCreated,
  type TenantDeleted,
  type TenantDetached,
  type TenantInfo,
  type TenantListItem,
  type TenantSize,
  type TimelineCreate,
  type TimelineDeleted,
  type TimelineInfo,
  type WalSourceRemoved,
  type WalSourceSet,
} from "../protocol/http_models.js";
import {
  expectArray,
  expectLsnByTimestamp,
  expectObject,
  expectRemoteCheck,
  expectTenantSize,
  expectTimelineInfo,
  ResponseShapeError,
} from "./reply_checks.js";

/** JSON (and SVG) replies larger than this are refused: no reply of the API comes close. */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;
/** A timeline create bootstraps from a source (a whole base backup): minutes, not seconds. */
export const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

/** An error reply of the API (status set), or the server unreachable (status null). */
export class HttpApiError extends PageserverError {
  readonly status: number | null;
  constructor(code: ErrorCode, status: number | null, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

export interface HttpClientOptions {
  /** Base URL, e.g. http://127.0.0.1:9898 (a trailing slash is ignored). */
  url: string;
  /** A JWT, sent as `Authorization: Bearer` (the server's auth is on). */
  token?: string;
  timeout_ms?: number;
  /**
   * PEM CA certificate(s) an https:// server's certificate must chain to (instead of the
   * system's roots), its host checked against the certificate; ignored for http://.
   */
  ca?: string | Buffer;
}

/** A streamed reply: its bytes, and its length when the server said it. */
export interface StreamedReply {
  body: AsyncIterable<Uint8Array>;
  size_bytes: number | null;
}

/** The code for a status when the body has none (a proxy's reply, an old server). */
function codeForStatus(status: number): ErrorCode {
  const byStatus: Record<number, ErrorCode> = {
    400: "invalid_argument",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    406: "gc_cutoff",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    422: "unsupported",
    429: "limit_reached",
    503: "bad_state",
    504: "lsn_timeout",
  };
  return byStatus[status] ?? "internal";
}

const enc = encodeURIComponent;

export class PageserverHttpClient {
  readonly url: string;
  private readonly token: string | undefined;
  private readonly timeout_ms: number;
  /** The CA of an https:// URL; null: fetch with the system's roots (or plain http). */
  private readonly ca: string | Buffer | null;

  constructor(opts: HttpClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new HttpApiError("invalid_argument", null, `invalid server URL '${opts.url}'`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:")
      throw new HttpApiError("invalid_argument", null, `server URL '${opts.url}' must be http(s)`);
    this.url = url.toString().replace(/\/+$/, "");
    this.token = opts.token;
    this.timeout_ms = opts.timeout_ms ?? DEFAULT_TIMEOUT_MS;
    this.ca = url.protocol === "https:" && opts.ca !== undefined ? opts.ca : null;
  }

  // ---- node ----
  async status(): Promise<Status> {
    return expectObject<Status>("status", await this.json("GET", "/v1/status"), ["status", "version"]);
  }

  /** The node's remote storage and whether it answered a probe (GET /v1/remote_storage). */
  async remoteStorage(): Promise<RemoteStorageStatus> {
    const r = expectObject<RemoteStorageStatus>(
      "remote storage",
      await this.json("GET", "/v1/remote_storage"),
      [],
      ["description", "error"],
    );
    if (typeof r.configured !== "boolean") throw new ResponseShapeError("remote storage", r);
    return r;
  }

  async failpoints(): Promise<Failpoints> {
    return expectObject<Failpoints>("failpoints", await this.json("GET", "/v1/failpoints"), []);
  }

  /** Set (or, with action "off", clear) failpoints; the active set after the change. */
  async setFailpoints(settings: FailpointsBody): Promise<Failpoints> {
    return expectObject<Failpoints>("failpoints", await this.json("PUT", "/v1/failpoints", settings), []);
  }

  // ---- tenants ----
  async listTenants(): Promise<TenantListItem[]> {
    return expectArray<TenantListItem>("tenant list", await this.json("GET", "/v1/tenant"), ["id", "state"]);
  }

  async createTenant(body: TenantCreate = {}): Promise<TenantCreated> {
    return expectObject<TenantCreated>("tenant create answer", await this.json("POST", "/v1/tenant", body), ["id"]);
  }

  async getTenant(tenant: string): Promise<TenantInfo> {
    return expectObject<TenantInfo>("tenant info", await this.json("GET", `/v1/tenant/${enc(tenant)}`), ["id", "state"]);
  }

  /** Set the tenant's name (null: remove it); names are unique on the node. */
  async renameTenant(tenant: string, name: NameBody["name"]): Promise<TenantInfo> {
    return expectObject<TenantInfo>("tenant info", await this.json("PUT", `/v1/tenant/${enc(tenant)}/name`, { name }), ["id", "state"]);
  }

  async deleteTenant(tenant: string): Promise<TenantDeleted> {
    return expectObject<TenantDeleted>("tenant delete answer", await this.json("DELETE", `/v1/tenant/${enc(tenant)}`), []);
  }

  /** The tenant size model: size, one segment per timeline, the inputs. */
  async tenantSize(tenant: string): Promise<TenantSize> {
    return expectTenantSize(await this.json("GET", `/v1/tenant/${enc(tenant)}/size`));
  }

  /** Attach from remote storage in `generation` (the server must have remote storage). */
  async attachTenant(tenant: string, generation: number): Promise<TenantInfo> {
    return expectObject<TenantInfo>("tenant attach answer", await this.json("POST", `/v1/tenant/${enc(tenant)}/attach`, { generation }), [
      "id",
      "state",
    ]);
  }

  /** Detach: flush, wait for the bucket, leave this node (the server must have remote storage). */
  async detachTenant(tenant: string): Promise<TenantDetached> {
    return expectObject<TenantDetached>("tenant detach answer", await this.json("POST", `/v1/tenant/${enc(tenant)}/detach`), ["tenant_id"]);
  }

  async getTenantConfig(tenant: string): Promise<TenantConfig> {
    const r = expectObject<TenantConfig>("tenant config", await this.json("GET", `/v1/tenant/${enc(tenant)}/config`), []);
    if (typeof r.overrides !== "object" || r.overrides === null) throw new ResponseShapeError("tenant config", r);
    return r;
  }

  /** Replace the tenant's overrides with `config`. */
  async putTenantConfig(tenant: string, config: Record<string, unknown>): Promise<TenantConfigSet> {
    return expectObject<TenantConfigSet>("tenant config", await this.json("PUT", `/v1/tenant/${enc(tenant)}/config`, config), []);
  }

  // ---- timelines ----
  async listTimelines(tenant: string): Promise<TimelineInfo[]> {
    const r = await this.json("GET", `/v1/tenant/${enc(tenant)}/timeline`);
    if (!Array.isArray(r)) throw new ResponseShapeError("timeline list", r);
    return r.map(expectTimelineInfo);
  }

  async getTimeline(tenant: string, timeline: string): Promise<TimelineInfo> {
    return expectTimelineInfo(await this.json("GET", this.tl(tenant, timeline)));
  }

  async createTimeline(tenant: string, body: TimelineCreate): Promise<TimelineInfo> {
    return expectTimelineInfo(await this.json("POST", `/v1/tenant/${enc(tenant)}/timeline`, body));
  }

  /** Set the timeline's name (null: remove it); names are unique within the tenant. */
  async renameTimeline(tenant: string, timeline: string, name: NameBody["name"]): Promise<TimelineInfo> {
    return expectTimelineInfo(await this.json("PUT", `${this.tl(tenant, timeline)}/name`, { name }));
  }

  async deleteTimeline(tenant: string, timeline: string): Promise<TimelineDeleted> {
    return expectObject<TimelineDeleted>("timeline delete answer", await this.json("DELETE", this.tl(tenant, timeline)), []);
  }

  async layers(tenant: string, timeline: string): Promise<LayerInfo[]> {
    return expectArray<LayerInfo>("layer list", await this.json("GET", `${this.tl(tenant, timeline)}/layer`), ["name", "kind"]);
  }

  /** The SVG picture of the timeline's layers (`layer_map.svg`), as text. */
  async layerMapSvg(tenant: string, timeline: string): Promise<string> {
    const r = await this.send("GET", `${this.tl(tenant, timeline)}/layer_map.svg`);
    const text = await this.readText(r.res, r.done);
    if (!text.trimStart().startsWith("<")) throw new ResponseShapeError("layer map (not SVG)", text.slice(0, 100));
    return text;
  }

  /** `timestamp`: RFC 3339. */
  async lsnByTimestamp(tenant: string, timeline: string, timestamp: string): Promise<LsnByTimestamp> {
    return expectLsnByTimestamp(await this.json("GET", `${this.tl(tenant, timeline)}/get_lsn_by_timestamp?timestamp=${enc(timestamp)}`));
  }

  async setWalSource(tenant: string, timeline: string, connstr: string): Promise<WalSourceSet> {
    return expectObject<WalSourceSet>("wal source status", await this.json("PUT", `${this.tl(tenant, timeline)}/wal_source`, { connstr }), [
      "state",
    ]);
  }

  async deleteWalSource(tenant: string, timeline: string): Promise<WalSourceRemoved> {
    const r = expectObject<WalSourceRemoved>(
      "wal source removal",
      await this.json("DELETE", `${this.tl(tenant, timeline)}/wal_source`),
      [],
    );
    if (typeof r.slot_dropped !== "boolean") throw new ResponseShapeError("wal source removal", r);
    return r;
  }

  async checkpoint(tenant: string, timeline: string): Promise<Checkpointed> {
    return expectObject<Checkpointed>("checkpoint answer", await this.json("PUT", `${this.tl(tenant, timeline)}/checkpoint`), [
      "disk_consistent_lsn",
    ]);
  }

  async compact(tenant: string, timeline: string, forceImageLayerCreation = false): Promise<Compacted> {
    const q = forceImageLayerCreation ? "?force_image_layer_creation=true" : "";
    return expectObject<Compacted>("compact answer", await this.json("PUT", `${this.tl(tenant, timeline)}/compact${q}`), []);
  }

  /** GC of this timeline, `gc_horizon_bytes` back from its last record LSN (default: the tenant's settings). */
  async gc(tenant: string, timeline: string, gc_horizon_bytes?: number): Promise<GcDone> {
    const body = gc_horizon_bytes === undefined ? {} : { gc_horizon: gc_horizon_bytes };
    return expectObject<GcDone>("gc answer", await this.json("PUT", `${this.tl(tenant, timeline)}/do_gc`, body), []);
  }

  /** The timeline's index against its objects in remote storage. */
  async remoteCheck(tenant: string, timeline: string, verifyChecksums = false): Promise<RemoteCheck> {
    const q = verifyChecksums ? "?verify_checksums=true" : "";
    return expectRemoteCheck(await this.json("GET", `${this.tl(tenant, timeline)}/remote_check${q}`));
  }

  /** The base backup tar at `lsn` ("X/Y"; default the latest), streamed. */
  async basebackup(tenant: string, timeline: string, lsn?: string): Promise<StreamedReply> {
    const q = lsn === undefined ? "" : `?lsn=${enc(lsn)}`;
    const { res, done } = await this.send("GET", `${this.tl(tenant, timeline)}/basebackup${q}`);
    // The body streams past the request timeout: only the wait for the headers was bounded.
    done();
    if (res.body === null) throw new ResponseShapeError("base backup (no body)", null);
    const len = res.headers.get("content-length");
    const size = len === null ? null : Number(len);
    return {
      body: res.body as unknown as AsyncIterable<Uint8Array>,
      size_bytes: size !== null && Number.isSafeInteger(size) && size >= 0 ? size : null,
    };
  }

  // ---- plumbing ----
  private tl(tenant: string, timeline: string): string {
    return `/v1/tenant/${enc(tenant)}/timeline/${enc(timeline)}`;
  }

  /** A request whose reply is JSON: the parsed body of a 2xx, else HttpApiError. */
  async json(method: string, path: string, body?: unknown): Promise<unknown> {
    const { res, done } = await this.send(method, path, body);
    const text = await this.readText(res, done);
    if (text.length === 0) return {};
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new ResponseShapeError(`reply to ${method} ${path} (not JSON)`, text.slice(0, 200));
    }
  }

  /**
   * Send; resolves on a 2xx with the response and `done` (clears the timeout: call it once
   * the body is read, or at once for a streamed body). A non-2xx is read and thrown.
   */
  private async send(method: string, path: string, body?: unknown): Promise<{ res: Response; done: () => void }> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.timeout_ms);
    const done = (): void => clearTimeout(timer);
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers["authorization"] = `Bearer ${this.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    try {
      const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: ac.signal };
      // fetch can't take a CA (undici's dispatcher isn't public in Node): node:https can.
      res = this.ca === null ? await fetch(`${this.url}${path}`, init) : await httpsFetch(`${this.url}${path}`, init, this.ca);
    } catch (e) {
      done();
      const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : e instanceof Error ? e.message : String(e);
      const what = ac.signal.aborted ? `no answer within ${this.timeout_ms} ms` : cause;
      throw new HttpApiError("source_unavailable", null, `cannot reach the pageserver at ${this.url}: ${what}`, { cause: e });
    }
    if (res.status >= 200 && res.status < 300) return { res, done };
    const text = await this.readText(res, done).catch(() => "");
    let code: ErrorCode = codeForStatus(res.status);
    let message = `${method} ${path}: HTTP ${res.status}`;
    try {
      const j = JSON.parse(text) as unknown;
      if (typeof j === "object" && j !== null) {
        const o = j as Record<string, unknown>;
        if (isErrorCode(o["code"])) code = o["code"];
        if (typeof o["error"] === "string") message = o["error"];
      }
    } catch {
      if (text.length > 0) message = `${message}: ${text.slice(0, 200)}`;
    }
    throw new HttpApiError(code, res.status, message);
  }

  /** The body as text, at most MAX_JSON_BYTES; `done` is called whatever happens. */
  private async readText(res: Response, done: () => void): Promise<string> {
    try {
      const len = Number(res.headers.get("content-length") ?? "0");
      if (len > MAX_JSON_BYTES)
        throw new PageserverError("limit_reached", `a reply of ${len} bytes from the pageserver (limit ${MAX_JSON_BYTES})`);
      if (res.body === null) return "";
      const chunks: Uint8Array[] = [];
      let total = 0;
      for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
        total += c.byteLength;
        if (total > MAX_JSON_BYTES) throw new PageserverError("limit_reached", `a reply over ${MAX_JSON_BYTES} bytes from the pageserver`);
        chunks.push(c);
      }
      return Buffer.concat(chunks).toString("utf8");
    } catch (e) {
      if (e instanceof PageserverError) throw e;
      throw new HttpApiError("source_unavailable", res.status, `reading the reply failed: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    } finally {
      done();
    }
  }
}

/** Statuses whose Response has no body (the constructor refuses one). */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/**
 * A request over node:https verified against `ca`, answered as a fetch Response (its body
 * streams), so both transports share the rest of the client. Rejects as fetch does: on a
 * network or TLS failure, or when `signal` aborts before the headers.
 */
function httpsFetch(
  url: string,
  init: { method: string; headers: Record<string, string>; body: string | undefined; signal: AbortSignal },
  ca: string | Buffer,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: init.method, headers: init.headers, ca, signal: init.signal }, (res) => {
      try {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (v === undefined) continue;
          for (const x of Array.isArray(v) ? v : [v]) headers.append(k, x);
        }
        const status = res.statusCode ?? 0;
        const nullBody = NULL_BODY_STATUSES.has(status) || init.method === "HEAD";
        if (nullBody) res.resume();
        const stream = nullBody ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
        resolve(new Response(stream, { status, statusText: res.statusMessage ?? "", headers }));
      } catch (e) {
        res.destroy();
        reject(e);
      }
    });
    req.on("error", reject);
    req.end(init.body);
  });
}
