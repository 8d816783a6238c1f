/**
 * What a route handler and the HTTP layer exchange: the request as read from the wire, the
 * replies a handler returns (JSON, raw bytes, or a stream produced under backpressure), the
 * registered route (what the auth matrix, the fuzzer and the OpenAPI document walk) and its
 * scope, and the status lines the layer writes. No server state lives here: a second HTTP
 * adapter shares these types.
 */
import type { TProperties, TSchema } from "@sinclair/typebox";
import { PageserverError } from "../../types/errors.js";
import type { AuthScope } from "../auth.js";
import type { Method, RouteSpec, ValidRequest } from "./schema.js";

export type { Method } from "./schema.js";

/** A request as read from the wire, before validation. */
export interface Request {
  method: string;
  url: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: unknown;
}

export interface JsonReply {
  status: number;
  json: unknown;
}
export interface RawReply {
  status: number;
  contentType: string;
  /** Written after content-type (e.g. content-encoding of a gzipped scrape). */
  headers?: Record<string, string>;
  body: string | Uint8Array;
}
/** A streamed body: `produce` writes chunks through `write`, which resolves when the client drained. */
export interface StreamReply {
  status: number;
  contentType: string;
  headers?: Record<string, string>;
  produce: (write: (chunk: Uint8Array) => Promise<void>) => Promise<void>;
}
export type Reply = JsonReply | RawReply | StreamReply;
export type Handler<B extends TSchema = TSchema, Q extends TProperties = TProperties> = (req: ValidRequest<B, Q>) => Promise<Reply> | Reply;

/** A registered route: what the auth matrix, the fuzzer and the OpenAPI document walk. */
export interface RegisteredRoute {
  method: Method;
  pattern: string;
  open: boolean;
  /** Who may call it: see routeScope. */
  scope: AuthScope;
  spec: RouteSpec;
}

/**
 * A route's scope: `open` (no token), `management` (pageserverapi only) or `tenant` (the
 * token of the tenant in its path, or pageserverapi). Declared, or by default: tenant for a
 * path with `:tenant_id`, management otherwise.
 */
export function routeScope(spec: Pick<RouteSpec, "open" | "scope" | "path">): AuthScope {
  if (spec.open === true) return "open";
  return spec.scope ?? (spec.path.includes(":tenant_id") ? "tenant" : "management");
}

/** An error the HTTP layer raises itself (malformed request, limits), answered through the catalogue. */
export class HttpError extends PageserverError {}

/** Status lines of the statuses the catalogue and the routes answer with. */
const STATUS_TEXT: Record<number, string> = {
  200: "200 OK",
  201: "201 Created",
  202: "202 Accepted",
  204: "204 No Content",
  400: "400 Bad Request",
  401: "401 Unauthorized",
  403: "403 Forbidden",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  406: "406 Not Acceptable",
  409: "409 Conflict",
  413: "413 Payload Too Large",
  414: "414 URI Too Long",
  422: "422 Unprocessable Entity",
  429: "429 Too Many Requests",
  500: "500 Internal Server Error",
  503: "503 Service Unavailable",
  504: "504 Gateway Timeout",
};

/** The status line of `s` (an unknown status gets a generic reason phrase). */
export function statusLine(s: number): string {
  return STATUS_TEXT[s] ?? `${s} Status`;
}
