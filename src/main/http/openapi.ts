/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the route declarations
 * (schema.ts) the server registered: paths with their params and query, request bodies,
 * every declared reply by status, and the error catalogue's replies (errors.ts) on every
 * route, and each route's scope (`x-scope`: open, tenant or management; `x-scope-note` when a
 * body field or setting of a tenant route needs management). Schemas are TypeBox's JSON
 * Schema (2020-12 compatible, as OpenAPI 3.1 takes it).
 * Built once, when asked first: routes are registered before the server listens.
 */
import type { TObject, TSchema } from "@sinclair/typebox";
import { codesFor, ERROR_STATUSES } from "./errors.js";
import { ApiError } from "./models.js";
import type { RouteSpec } from "./schema.js";
import { routeScope } from "./exchange.js";

/** A plain JSON copy of a TypeBox schema (drops its symbol keys). */
function jsonSchema(s: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(s)) as Record<string, unknown>;
}

/** `/v1/tenant/:tenant_id` → `/v1/tenant/{tenant_id}`. */
export function openApiPath(pattern: string): string {
  return pattern.replace(/:([a-z_]+)/g, "{$1}");
}

function parameters(where: "path" | "query", o: TObject | undefined): Record<string, unknown>[] {
  if (o === undefined) return [];
  const required = new Set(o.required ?? []);
  return Object.entries(o.properties).map(([name, schema]) => ({
    name,
    in: where,
    required: where === "path" || required.has(name),
    schema: jsonSchema(schema),
  }));
}

/** The statuses a route may answer errors with: all but the auth ones on an open route. */
function errorStatuses(spec: RouteSpec): number[] {
  return ERROR_STATUSES.filter((s) => !(spec.open === true && (s === 401 || s === 403)));
}

function operation(spec: RouteSpec): Record<string, unknown> {
  const responses: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(spec.responses)) {
    const media =
      r.schema === undefined
        ? { [r.contentType ?? "application/octet-stream"]: {} }
        : { "application/json": { schema: jsonSchema(r.schema) } };
    responses[status] = { description: r.description, content: media };
  }
  for (const s of errorStatuses(spec)) {
    responses[String(s)] = {
      description: `error: ${codesFor(s).join(", ")}`,
      content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
    };
  }
  const op: Record<string, unknown> = {
    operationId: `${spec.method}_${spec.path.replace(/[/:{}]+/g, "_").replace(/^_|_$/g, "")}`,
    summary: spec.summary,
    parameters: [...parameters("path", spec.params), ...parameters("query", spec.query)],
    responses,
  };
  if (spec.body !== undefined) op["requestBody"] = { required: false, content: { "application/json": { schema: jsonSchema(spec.body) } } };
  if (spec.open === true) op["security"] = [];
  const scope = routeScope(spec);
  op["x-scope"] = scope;
  if (spec.scopeNote !== undefined) op["x-scope-note"] = spec.scopeNote;
  op["description"] =
    scope === "open"
      ? "Scope: open (no token)."
      : scope === "tenant"
        ? `Scope: tenant (that tenant's token, or pageserverapi).${spec.scopeNote === undefined ? "" : ` ${spec.scopeNote}`}`
        : "Scope: management (a pageserverapi token).";
  return op;
}

export function openApiDocument(routes: readonly { spec: RouteSpec }[], info: { version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const { spec } of routes) {
    const p = openApiPath(spec.path);
    paths[p] ??= {};
    paths[p][spec.method] = operation(spec);
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "pageserver HTTP API",
      version: info.version,
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
      description:
        "Management API of the pageserver: tenants, timelines, branching, layers, LSN by time. Errors are {error, code}; docs/http-api.md.",
    },
    servers: [{ url: "/" }],
    components: {
      schemas: { Error: jsonSchema(ApiError) },
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "scope `pageserverapi` (every route) or `tenant` with `tenant_id` (that tenant's routes of x-scope tenant)",
        },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
