/**
 * Route declarations: every route states once what it takes (path params, query, body, as
 * TypeBox schemas) and what it answers (a schema per status, or a non-JSON content type).
 * The HTTP layer validates params, query and body against them after auth and before the
 * handler runs; the OpenAPI document (openapi.ts) is generated from the same declarations;
 * tests check every reply against them (HttpServer.checkResponses).
 *
 * A validation failure is an InvalidArgumentError naming the field and what was expected:
 * `body.gc_horizon: expected integer ≥ 0, got -1`. Only the first failure is reported.
 */
import type { Static, TObject, TProperties, TSchema } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { type ValueError, ValueErrorType } from "@sinclair/typebox/errors";
import { InvalidArgumentError } from "../../types/errors.js";
import { quoteInput } from "../../types/ids.js";
import type { Claims } from "../auth.js";

export type Method = "get" | "post" | "put" | "delete";

/** One answer of a route: a JSON body with its schema, or another content type. */
export interface ResponseSpec {
  description: string;
  /** The JSON body's schema (content type application/json). */
  schema?: TSchema;
  /** A non-JSON body (application/x-tar, image/svg+xml, text/plain). */
  contentType?: string;
}

export interface RouteSpec<B extends TSchema = TSchema, Q extends TProperties = TProperties> {
  method: Method;
  /** `/v1/tenant/:tenant_id`: params are the `:name` segments. */
  path: string;
  summary: string;
  /** Served without a token when auth is on (/metrics, /v1/status, /v1/openapi.json). */
  open?: boolean;
  /**
   * Who may call it when auth is on (http/http_server.ts routeScope): `tenant` (that tenant's token
   * or pageserverapi) or `management` (pageserverapi). Default: tenant for a path with
   * `:tenant_id`, management otherwise.
   */
  scope?: "tenant" | "management";
  /** When some requests of a tenant route need management (a body field, a setting): stated in the OpenAPI document. */
  scopeNote?: string;
  /** Every `:name` of the path, each a string schema. */
  params?: TObject;
  /** Query parameters (all optional strings on the wire). */
  query?: TObject<Q>;
  /** The JSON body; absent: the route takes none (a body sent anyway is refused). */
  body?: B;
  /** Successful answers by status. Errors are the catalogue's (errors.ts), added for every route. */
  responses: Record<number, ResponseSpec>;
}

/** The request a handler sees: validated params, query and body. */
export interface ValidRequest<B extends TSchema = TSchema, Q extends TProperties = TProperties> {
  method: string;
  url: string;
  params: Record<string, string>;
  query: Static<TObject<Q>>;
  headers: Record<string, string>;
  body: Static<B>;
  /** The caller's verified claims; null when auth is off (every caller is the operator). */
  claims: Claims | null;
  /** Aborted when the client goes away: heavy handlers pass it into their loops. */
  signal: AbortSignal;
}

/** Compiled checks of one route, built once at registration. */
export interface RouteValidator {
  params: TypeCheck<TObject> | null;
  query: TypeCheck<TObject> | null;
  body: TypeCheck<TSchema> | null;
}

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** A schema compiled once (the same schema object is shared by many routes). */
export function compile<T extends TSchema>(schema: T): TypeCheck<T> {
  let c = compiled.get(schema);
  if (c === undefined) {
    c = TypeCompiler.Compile(schema);
    compiled.set(schema, c);
  }
  return c as TypeCheck<T>;
}

export function routeValidator(spec: RouteSpec): RouteValidator {
  return {
    params: spec.params === undefined ? null : compile(spec.params),
    query: spec.query === undefined ? null : compile(spec.query),
    body: spec.body === undefined ? null : compile(spec.body),
  };
}

/** What a schema expects, in words: `integer ≥ 0`, `an LSN like "0/16B3748" or null`. */
export function expectedText(s: TSchema): string {
  if (Array.isArray(s["anyOf"])) return (s["anyOf"] as TSchema[]).map(expectedText).join(" or ");
  if (s["const"] !== undefined) return JSON.stringify(s["const"]);
  if (typeof s["description"] === "string" && s["type"] === "string") return s["description"];
  const type = s["type"];
  if (type === "integer" || type === "number") {
    let t = String(type);
    if (typeof s["minimum"] === "number") t += ` ≥ ${s["minimum"]}`;
    if (typeof s["maximum"] === "number") t += ` ≤ ${s["maximum"]}`;
    return t;
  }
  if (type === "string" && typeof s["pattern"] === "string") return `a string matching /${s["pattern"]}/`;
  if (type === "string" && typeof s["format"] === "string") return `a ${s["format"]} string`;
  return typeof type === "string" ? type : "a valid value";
}

function fieldName(where: string, e: ValueError): string {
  return e.path === "" ? where : `${where}${e.path.replaceAll("/", ".")}`;
}

/** The message of the first error: `body.x: expected …, got …`, `body.y: unknown field`. */
export function describeError(where: string, e: ValueError): string {
  const field = fieldName(where, e);
  switch (e.type) {
    case ValueErrorType.ObjectAdditionalProperties:
      return `${field}: unknown field`;
    case ValueErrorType.ObjectRequiredProperty:
      return `${field}: required`;
    default:
      return `${field}: expected ${expectedText(e.schema)}, got ${quoteInput(e.value)}`;
  }
}

/** JSON Schema's name for the type of a JSON value. */
function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** Unions nested in a reported error followed at most this deep. */
const MAX_UNION_DEPTH = 8;

/**
 * The error to report. A union (`X or null`) reports only "expected X or null"; when exactly
 * one alternative has the value's type (an object given where an object or null is
 * expected), the error inside that alternative says more: `body.wal_source.connstr: required`.
 */
function reportedError(first: ValueError): ValueError {
  let e = first;
  for (let depth = 0; depth < MAX_UNION_DEPTH && e.type === ValueErrorType.Union; depth++) {
    const t = jsonType(e.value);
    const alts = ((e.schema["anyOf"] as TSchema[] | undefined) ?? []).filter(
      (a) => a["type"] === t || (t === "integer" && a["type"] === "number"),
    );
    const [only] = alts;
    if (only === undefined || alts.length !== 1 || only["const"] !== undefined) break;
    const inner = compile(only).Errors(e.value).First();
    if (inner === undefined) break;
    e = { ...inner, path: e.path + inner.path };
  }
  return e;
}

/** Throw an InvalidArgumentError naming the first failing field of `value`; else return it typed. */
export function checkValue<T extends TSchema>(where: string, check: TypeCheck<T>, value: unknown): Static<T> {
  if (check.Check(value)) return value;
  const first = check.Errors(value).First();
  throw new InvalidArgumentError(first === undefined ? `${where}: invalid` : describeError(where, reportedError(first)));
}

/** Query parameters as the object the query schema checks: the first value of each name. */
export function queryObject(q: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of q) if (!(k in out)) out[k] = v;
  return out;
}
