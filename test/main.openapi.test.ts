/**
 * The OpenAPI document against the real routes (src/main/http/openapi.ts, schema.ts): an
 * in-process Server (its replies also checked by HttpServer.checkResponses) holding a tenant
 * whose timeline is a real PostgreSQL 15 data directory (import_pgdata) and later streams
 * from it. `GET /v1/openapi.json` is fetched without a token; then for every registered route
 * (server.http.routes):
 * - the route is in the document (and the document has no other operation), and the
 *   document's schemas are exactly the route's declared ones (so TypeBox's Value.Check on the
 *   declaration is a check against the document);
 * - a valid request gets a declared success status, and its body (JSON) passes the document's
 *   schema for that status, or its content type is the declared one;
 * - an invalid request (bad id, unknown body field, bad query) is a 400 naming the field, its
 *   status in the document and its body the document's Error.
 * An import that fails after its timeline exists leaves no timeline behind. Error bodies of
 * the HTTP layer itself (unknown route, bad JSON, 413, 414) are Error too.
 */
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { ApiError } from "../src/main/http/models.js";
import { openApiPath } from "../src/main/http/openapi.js";
import type { RegisteredRoute } from "../src/main/http/exchange.js";
import { Server } from "../src/main/server.js";
import { parseLsn } from "../src/types/lsn.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";

const logs = new LogCapture();
let pg: PgInstance;
let server: Server;
let workdir: string;
let base: string;
let doc: {
  openapi: string;
  info: { license: unknown };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: { Error: unknown } };
};
let tenant = "";
let timeline = "";

interface Operation {
  parameters: { name: string; in: string; required: boolean; schema: unknown }[];
  requestBody?: { content: { "application/json": { schema: unknown } } };
  responses: Record<string, { content: Record<string, { schema?: unknown }> }>;
}

interface Reply {
  status: number;
  type: string;
  json: unknown;
  text: string;
}

async function send(method: string, path: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${base}${path}`, {
    method,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const type = (res.headers.get("content-type") ?? "").split(";")[0]!;
  const buf = Buffer.from(await res.arrayBuffer());
  const text = type === "application/x-tar" ? "" : buf.toString("utf8");
  let json: unknown = null;
  if (type === "application/json") json = JSON.parse(text);
  return { status: res.status, type, json, text };
}

const plain = (s: TSchema): unknown => JSON.parse(JSON.stringify(s));

function opOf(r: RegisteredRoute): Operation {
  const op = doc.paths[openApiPath(r.pattern)]?.[r.method];
  expect(op, `${r.method} ${r.pattern} in the document`).toBeDefined();
  return op!;
}

/** The reply against the document: a status it lists, and the body its schema for that status. */
function checkAgainstDoc(r: RegisteredRoute, reply: Reply): void {
  const what = `${r.method.toUpperCase()} ${r.pattern} → ${reply.status} ${reply.text.slice(0, 300)}`;
  const op = opOf(r);
  const resp = op.responses[String(reply.status)];
  expect(resp, `${what}: status in the document`).toBeDefined();
  const media = Object.keys(resp!.content);
  expect(media, what).toContain(reply.type);
  if (reply.status >= 400) {
    expect(resp!.content["application/json"]!.schema).toEqual({ $ref: "#/components/schemas/Error" });
    expect(Value.Check(ApiError, reply.json), what).toBe(true);
    expect(Object.keys(reply.json as object).sort()).toEqual(["code", "error"]);
    return;
  }
  const declared = r.spec.responses[reply.status]!;
  if (declared.schema === undefined) return;
  expect(resp!.content["application/json"]!.schema, what).toEqual(plain(declared.schema));
  const errors = [...Value.Errors(declared.schema, reply.json)].slice(0, 3).map((e) => `${e.path}: ${e.message}`);
  expect(errors, what).toEqual([]);
}

beforeAll(async () => {
  pg = await PgInstance.start({ conf: { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4 } });
  await pg.psql("CREATE TABLE t (x int); INSERT INTO t SELECT g FROM generate_series(1, 1000) g; CHECKPOINT;");
  await pg.stop();
  workdir = mkdtempSync(join(tmpdir(), "ps-openapi-"));
  server = new Server(
    loadNodeConfig({
      workdir,
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      enable_failpoints: true,
      import_pgdata_root: tmpdir(),
      tenant_config: { compaction_period: 0, gc_period: 0 },
    }),
    logs.logger,
  );
  server.http.checkResponses = true;
  base = `http://127.0.0.1:${await server.start()}`;
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await pg?.destroy();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("OpenAPI document", { timeout: 300_000 }, () => {
  it("is served without a token and lists exactly the registered routes, with their declared schemas", async () => {
    const r = await send("GET", "/v1/openapi.json");
    expect(r.status).toBe(200);
    doc = r.json as typeof doc;
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.info.license).toEqual({ name: "Apache-2.0", identifier: "Apache-2.0" });
    expect(doc.components.schemas.Error).toEqual(plain(ApiError));
    const routes = server.http.routes;
    const ops = Object.entries(doc.paths).flatMap(([p, m]) => Object.keys(m).map((method) => `${method} ${p}`));
    expect(ops.sort()).toEqual(routes.map((x) => `${x.method} ${openApiPath(x.pattern)}`).sort());
    for (const route of routes) {
      const op = opOf(route);
      const params = op.parameters.filter((p) => p.in === "path").map((p) => [p.name, p.schema]);
      expect(params).toEqual(Object.entries(route.spec.params?.properties ?? {}).map(([n, s]) => [n, plain(s)]));
      const query = op.parameters.filter((p) => p.in === "query").map((p) => [p.name, p.schema]);
      expect(query).toEqual(Object.entries(route.spec.query?.properties ?? {}).map(([n, s]) => [n, plain(s)]));
      if (route.spec.body === undefined) expect(op.requestBody).toBeUndefined();
      else expect(op.requestBody!.content["application/json"].schema).toEqual(plain(route.spec.body));
      // Every error status of the catalogue is documented; auth ones only where a token is needed.
      for (const s of [400, 404, 409, 413, 414, 500, 503]) expect(op.responses[String(s)], `${s} on ${route.pattern}`).toBeDefined();
      expect(op.responses["401"] === undefined).toBe(route.open);
    }
  });

  it("every route: a valid request passes the document's schema for its status; an invalid one is a documented 400 naming the field", async () => {
    const routes = new Map(server.http.routes.map((x) => [`${x.method.toUpperCase()} ${x.pattern}`, x]));
    const seen = new Set<string>();
    const T = "/v1/tenant/:tenant_id";
    const TL = `${T}/timeline/:timeline_id`;
    let scratchTenant = "";
    let branch = "";
    const path = (pattern: string, t = tenant, tl = timeline): string => pattern.replace(":tenant_id", t).replace(":timeline_id", tl);

    /** A valid request to `key`: its status must be `status`, its reply match the document. */
    async function valid(key: string, status: number, opts: { path?: string; body?: unknown; query?: string } = {}): Promise<Reply> {
      const route = routes.get(key);
      expect(route, key).toBeDefined();
      seen.add(key);
      const [method, pattern] = key.split(" ") as [string, string];
      const reply = await send(method, (opts.path ?? path(pattern)) + (opts.query === undefined ? "" : `?${opts.query}`), opts.body);
      expect(reply.status, `${key}: ${reply.text.slice(0, 300)}`).toBe(status);
      checkAgainstDoc(route!, reply);
      return reply;
    }
    /** An invalid request to `key`: a 400 whose message starts with `msg`, and a documented Error. */
    async function invalid(key: string, msg: string, opts: { path?: string; body?: unknown; query?: string } = {}): Promise<void> {
      const route = routes.get(key)!;
      const [method, pattern] = key.split(" ") as [string, string];
      const reply = await send(method, (opts.path ?? path(pattern)) + (opts.query === undefined ? "" : `?${opts.query}`), opts.body);
      expect(reply.status, `${key}: ${reply.text.slice(0, 300)}`).toBe(400);
      expect((reply.json as { code: string }).code).toBe("invalid_argument");
      expect((reply.json as { error: string }).error.startsWith(msg), `${key}: ${(reply.json as { error: string }).error}`).toBe(true);
      checkAgainstDoc(route, reply);
    }
    const badId = (key: string, which: "tenant_id" | "timeline_id", body?: unknown) =>
      invalid(key, `params.${which}: expected 32 lower-case hex characters, got "xyz"`, {
        path: path(key.split(" ")[1]!, which === "tenant_id" ? "xyz" : tenant, which === "timeline_id" ? "xyz" : timeline),
        body,
      });

    // Node.
    await valid("GET /v1/status", 200);
    await valid("GET /v1/openapi.json", 200);
    expect((await valid("GET /v1/remote_storage", 200)).json).toEqual({
      configured: false,
      description: null,
      reachable: null,
      error: null,
    });
    await valid("GET /v1/failpoints", 200);
    await valid("PUT /v1/failpoints", 200, { body: [] });
    await invalid("PUT /v1/failpoints", "body: expected array", { body: { name: "x" } });
    await invalid("PUT /v1/failpoints", "body.0.bogus: unknown field", { body: [{ name: "x", actions: "off", bogus: 1 }] });
    const metrics = await valid("GET /metrics", 200);
    expect(metrics.text).toContain("# TYPE");

    // Tenants.
    tenant = String(((await valid("POST /v1/tenant", 201, { body: { config: { compaction_period: "0s" } } })).json as { id: string }).id);
    scratchTenant = String(((await valid("POST /v1/tenant", 201, { body: {} })).json as { id: string }).id);
    await invalid("POST /v1/tenant", "body.bogus: unknown field", { body: { bogus: 1 } });
    await invalid("POST /v1/tenant", 'body.new_tenant_id: expected 32 lower-case hex characters, got "xyz"', {
      body: { new_tenant_id: "xyz" },
    });
    await valid("GET /v1/tenant", 200);
    expect((await valid(`PUT ${T}/name`, 200, { body: { name: "openapi.tenant" } })).json).toMatchObject({ name: "openapi.tenant" });
    await invalid(`PUT ${T}/name`, "body.name: required", { body: {} });
    await valid(`GET ${T}`, 200);
    await badId(`GET ${T}`, "tenant_id");
    await valid(`GET ${T}/config`, 200);
    await badId(`GET ${T}/config`, "tenant_id");
    await valid(`PUT ${T}/config`, 200, { body: { gc_period: "0s", compaction_period: "0s" } });
    await invalid(`PUT ${T}/config`, "unknown tenant config key 'bogus'", { body: { bogus: 1 } });
    await invalid(`PUT ${T}/config`, "body: expected object, got [1]", { body: [1] });

    // An import that fails once its timeline exists (a data directory without its databases)
    // leaves nothing behind.
    const broken = join(workdir, "broken-pgdata");
    cpSync(pg.dataDir, broken, { recursive: true });
    rmSync(join(broken, "base"), { recursive: true });
    const failed = await send("POST", path(`${T}/timeline`), { import_pgdata: broken });
    expect(failed.status, failed.text).toBe(400);
    expect((failed.json as { error: string }).error).toContain("is not a PostgreSQL data directory (no base/)");
    checkAgainstDoc(routes.get(`POST ${T}/timeline`)!, failed);
    expect((await send("GET", path(`${T}/timeline`))).json).toEqual([]);
    expect(readdirSync(join(workdir, "tenants", tenant, "timelines"))).toEqual([]);

    // Timelines: an imported data directory, a branch of it.
    const created = await valid(`POST ${T}/timeline`, 201, { body: { import_pgdata: pg.dataDir } });
    timeline = String((created.json as { timeline_id: string }).timeline_id);
    await invalid(`POST ${T}/timeline`, "body.import_pgdata: expected an absolute path", { body: { import_pgdata: "relative/dir" } });
    await invalid(`POST ${T}/timeline`, "body.wal_source.connstr: required", { body: { wal_source: {} } });
    await invalid(
      `POST ${T}/timeline`,
      'body.ancestor_start_time: expected an RFC 3339 time like "2026-01-02T03:04:05.678Z", got "yesterday"',
      {
        body: { ancestor_timeline_id: timeline, ancestor_start_time: "yesterday" },
      },
    );
    await badId(`POST ${T}/timeline`, "tenant_id", {});
    branch = String(
      ((await valid(`POST ${T}/timeline`, 201, { body: { ancestor_timeline_id: timeline } })).json as { timeline_id: string }).timeline_id,
    );
    await valid(`GET ${T}/timeline`, 200);
    await badId(`GET ${T}/timeline`, "tenant_id");
    await valid(`GET ${TL}`, 200);
    expect((await valid(`PUT ${TL}/name`, 200, { body: { name: "main" } })).json).toMatchObject({ name: "main" });
    await badId(`PUT ${TL}/name`, "timeline_id", { name: "main" });
    await badId(`GET ${TL}`, "timeline_id");

    // Its source: the data directory's server, running again.
    await pg.restart();
    const setSrc = await valid(`PUT ${TL}/wal_source`, 200, { body: { connstr: pg.connectionString() } });
    expect((setSrc.json as { slot_name: string }).slot_name).toBe(`pageserver_${timeline}`);
    await invalid(`PUT ${TL}/wal_source`, "body.connstr: required", { body: {} });
    await badId(`PUT ${TL}/wal_source`, "timeline_id", { connstr: pg.connectionString() });
    await pg.psql("INSERT INTO t SELECT g FROM generate_series(1, 100) g");
    // Streamed in (its commit with it) before the source goes.
    const target = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
    for (let i = 0; ; i++) {
      const now = (await send("GET", path(TL))).json as { last_record_lsn: string };
      if (parseLsn(now.last_record_lsn) >= target) break;
      expect(i, "ingest reaches the source's insert LSN").toBeLessThan(600);
      await new Promise((res) => setTimeout(res, 100));
    }
    const removed = await valid(`DELETE ${TL}/wal_source`, 200);
    expect(removed.json).toEqual({ removed: true, slot_dropped: true });
    await badId(`DELETE ${TL}/wal_source`, "timeline_id");

    // Reads.
    const info = (await send("GET", path(TL))).json as { last_record_lsn: string };
    const tar = await valid(`GET ${TL}/basebackup`, 200, { query: `lsn=${info.last_record_lsn}` });
    expect(tar.type).toBe("application/x-tar");
    await invalid(`GET ${TL}/basebackup`, 'query.lsn: expected an LSN like "0/16B3748", got "zz"', { query: "lsn=zz" });
    await invalid(`GET ${TL}/basebackup`, "query.bogus: unknown field", { query: "bogus=1" });
    const byTime = await valid(`GET ${TL}/get_lsn_by_timestamp`, 200, {
      query: `timestamp=${encodeURIComponent(new Date().toISOString())}`,
    });
    expect((byTime.json as { kind: string }).kind).toBe("future");
    await invalid(`GET ${TL}/get_lsn_by_timestamp`, "query.timestamp: required");
    await invalid(
      `GET ${TL}/get_lsn_by_timestamp`,
      'query.timestamp: expected an RFC 3339 time like "2026-01-02T03:04:05.678Z", got "now"',
      { query: "timestamp=now" },
    );
    const layers = await valid(`GET ${TL}/layer`, 200);
    expect((layers.json as unknown[]).length).toBeGreaterThan(0);
    await badId(`GET ${TL}/layer`, "tenant_id");
    const svg = await valid(`GET ${TL}/layer_map.svg`, 200);
    expect(svg.type).toBe("image/svg+xml");
    await badId(`GET ${TL}/layer_map.svg`, "timeline_id");

    // Operator actions.
    await valid(`PUT ${TL}/checkpoint`, 200);
    await invalid(`PUT ${TL}/checkpoint`, "body: this route takes no request body", { body: { x: 1 } });
    await valid(`PUT ${TL}/compact`, 200, { query: "force_image_layer_creation=true" });
    await invalid(`PUT ${TL}/compact`, 'query.force_image_layer_creation: expected "true" or "false", got "maybe"', {
      query: "force_image_layer_creation=maybe",
    });
    await valid(`PUT ${TL}/do_gc`, 200, { body: { gc_horizon: 1 << 30 } });
    await invalid(`PUT ${TL}/do_gc`, "body.gc_horizon: expected integer ≥ 0, got -1", { body: { gc_horizon: -1 } });

    // The size model: the timeline and its branch (the branch's history shared).
    const size = await valid(`GET ${T}/size`, 200);
    expect((size.json as { segments: unknown[] }).segments.length).toBe(2);
    await badId(`GET ${T}/size`, "tenant_id");

    // Remote storage: its routes are in the document on a node without it too, and answer a
    // documented 409 remote_storage_disabled before touching the tenant.
    for (const [key, body] of [
      [`POST ${T}/detach`, undefined],
      [`POST ${T}/attach`, { generation: 1 }],
      [`GET ${TL}/remote_check`, undefined],
    ] as const) {
      const r = await valid(key, 409, body === undefined ? {} : { body });
      expect((r.json as { code: string }).code, key).toBe("remote_storage_disabled");
    }
    expect((await send("GET", path(TL))).status).toBe(200);

    // Deletes: the branch, then the scratch tenant; a timeline with children is a documented 409.
    const withChild = await send("DELETE", path(TL));
    expect(withChild.status).toBe(409);
    checkAgainstDoc(routes.get(`DELETE ${TL}`)!, withChild);
    await valid(`DELETE ${TL}`, 200, { path: path(TL, tenant, branch) });
    await badId(`DELETE ${TL}`, "timeline_id");
    await valid(`DELETE ${T}`, 200, { path: path(T, scratchTenant) });
    await badId(`DELETE ${T}`, "tenant_id");
    const gone = await send("DELETE", path(T, scratchTenant));
    expect(gone.status).toBe(404);
    checkAgainstDoc(routes.get(`DELETE ${T}`)!, gone);

    expect([...routes.keys()].filter((k) => !seen.has(k))).toEqual([]);
  });

  it("is one document whatever the configuration: a node with remote storage serves the same", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ps-openapi-remote-"));
    const other = new Server(
      loadNodeConfig({
        workdir: join(dir, "node"),
        listen: "127.0.0.1:0",
        listen_pg: "127.0.0.1:0",
        remote_storage: `file://${join(dir, "bucket")}`,
      }),
      logs.logger,
    );
    try {
      const res = await fetch(`http://127.0.0.1:${await other.start()}/v1/openapi.json`);
      const otherDoc = (await res.json()) as typeof doc;
      expect(otherDoc.paths).toEqual(doc.paths);
      expect(otherDoc.components).toEqual(doc.components);
    } finally {
      await other.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the HTTP layer's own errors are the document's Error: unknown route 404, bad JSON 400, 413, 414", async () => {
    const errorSchema = ApiError;
    const check = (r: Reply, status: number, code: string): void => {
      expect(r.status, r.text).toBe(status);
      expect(r.type).toBe("application/json");
      expect(Value.Check(errorSchema, r.json), r.text).toBe(true);
      expect((r.json as { code: string }).code).toBe(code);
    };
    check(await send("GET", "/v1/nope"), 404, "not_found");
    check(await send("PATCH", "/v1/tenant"), 404, "not_found");
    check(await send("POST", "/v1/tenant", "{not json"), 400, "invalid_argument");
    check(await send("POST", "/v1/tenant", "x".repeat(1024 * 1024 + 1)), 413, "payload_too_large");
    check(await send("GET", `/v1/tenant?${"x".repeat(9000)}`), 414, "uri_too_long");
    check(await send("GET", `/v1/nope/${"x".repeat(9000)}`), 414, "uri_too_long");
  });
});
