/**
 * HTTP API v1 routes (management): node, tenants, and (timeline_routes.ts) timelines. Every
 * route is declared with its schemas (http/schema.ts; wire models in http/models.ts): the
 * HTTP layer validates requests against them before a handler runs, and the OpenAPI
 * document served at /v1/openapi.json is generated from them. docs/http-api.md describes
 * each route.
 *
 * Scopes (with auth on): each route declares who may call it (http/http_server.ts routeScope);
 * a tenant route whose request needs management for a body field or a setting checks it here
 * (api_scopes.ts). Heavy requests take a permit of their tenant (src/tenant/heavy_work.ts).
 */
import { Type } from "@sinclair/typebox";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { metricsReply } from "../metrics.js";
import { activeFailpoints, applyFailpoints, parseFailpointConfig } from "../../types/failpoints.js";
import type { TenantId } from "../../types/ids.js";
import { registerTimelineRoutes } from "./timeline_routes.js";
import { type ApiPolicy, checkTenantConfigScope } from "./scope_checks.js";
import type { TenantWorkLimiter } from "../../tenant/heavy_work.js";
import { RemoteStorageDisabledError, UnsupportedError } from "../../types/errors.js";
import { RemoteStorageError } from "../../remote/remote_storage.js";
import type { NodeConfig } from "../config.js";
import type { LogicalSizeQueries } from "../logical_size_queries.js";
import type { RemoteTimelines } from "../remote/remote_timelines.js";
import { buildInfo } from "../build_info.js";
import * as M from "./models.js";
import { openApiDocument } from "./openapi.js";
import type { HttpServer } from "./http_server.js";
import type { Tenant } from "../../tenant/tenant.js";
import type { TenantManager } from "../tenant_manager.js";
import type { WalSources } from "../wal_source/wal_sources.js";
import { NameBook } from "../names.js";

/** The API's policy from the node config. */
export function apiPolicy(c: NodeConfig, heavy: TenantWorkLimiter): ApiPolicy {
  return {
    enable_failpoints: c.enable_failpoints,
    import_pgdata_root: c.import_pgdata_root,
    floors: {
      checkpoint_distance_bytes: c.tenant_min_checkpoint_distance_bytes,
      gc_horizon_bytes: c.tenant_min_gc_horizon_bytes,
      pitr_interval_ms: c.tenant_min_pitr_interval_ms,
    },
    heavy,
    tenant_defaults: c.tenant_defaults,
    separate_metrics: c.listen_metrics !== null,
  };
}

/** GET /metrics (open): on the API listener, or alone on `listen_metrics`. */
export function registerMetricsRoute(http: HttpServer, metrics: Registry): void {
  http.route(
    {
      method: "get",
      path: "/metrics",
      summary: "Prometheus metrics",
      open: true,
      responses: { 200: { description: "text exposition format", contentType: "text/plain" } },
    },
    (req) => metricsReply(metrics, req.headers["accept-encoding"]),
  );
}

/** Is `host` a loopback address (or a name that only resolves there)? */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * A WARN line per listener reachable from other machines while auth is off: anyone there is
 * the operator. (listen_metrics is not one: /metrics is open and changes nothing.)
 */
export function warnIfExposed(c: NodeConfig, log: Logger): void {
  if (c.auth_public_key !== null) return;
  for (const [name, l] of [
    ["listen (HTTP)", c.listen_http],
    ["listen_pg (page service)", c.listen_pg],
  ] as const) {
    if (!isLoopback(l.host)) {
      log.warn(
        { listener: name, host: l.host, port: l.port },
        "listening beyond loopback with auth off: anyone who reaches this address has every power (set auth_public_key)",
      );
    }
  }
}

/** A key no object has (keys live under tenants/): its HEAD answers "not found" when the bucket is there. */
const REMOTE_PROBE_KEY = "pageserver-reachability-probe";
const REMOTE_PROBE_TIMEOUT_MS = 10_000;

const TenantParams = Type.Object({ tenant_id: M.Id }, { additionalProperties: false });
const OpenApiDoc = Type.Object({
  openapi: Type.String(),
  info: Type.Object({ version: Type.String() }),
  paths: Type.Record(Type.String(), Type.Unknown()),
});

export function registerRoutes(
  http: HttpServer,
  tenants: TenantManager,
  metrics: Registry,
  extra: {
    startedAt: Date;
    /** Whether the node has a TLS certificate (config tls_cert_file, src/main/tls.ts). */
    tls: boolean;
    walSources: WalSources;
    log: Logger;
    remote?: RemoteTimelines | null;
    /** The tenant size model's logical-size computations (node-wide limit). */
    sizes: LogicalSizeQueries;
    /** Detach / attach (Server's): their routes exist only with remote storage. */
    mobility?: { detach(id: TenantId): Promise<void>; attach(id: TenantId, generation: number): Promise<Tenant> } | null;
    /** Node policy: failpoints on or off, the import root, the floors of tenant settings, per-tenant heavy work. */
    policy: ApiPolicy;
  },
): void {
  const ws = extra.walSources;
  const build = buildInfo();
  const names = new NameBook();

  // ---------------------------------------------------------------------------------------
  // Node

  http.route(
    {
      method: "get",
      path: "/v1/status",
      summary: "version, git commit, start time, whether TLS is on",
      open: true,
      responses: { 200: { description: "the node", schema: M.Status } },
    },
    () => ({
      status: 200,
      json: {
        status: "ok",
        version: build.version,
        git_commit: build.git_commit,
        started_at: extra.startedAt.toISOString(),
        tls: extra.tls,
        http_server: http.kind,
      },
    }),
  );
  http.route(
    {
      method: "get",
      path: "/v1/remote_storage",
      summary: "the node's remote storage and whether it answers (a HEAD of a key that does not exist)",
      responses: { 200: { description: "remote storage", schema: M.RemoteStorageStatus } },
    },
    async () => {
      const storage = extra.remote?.storage ?? null;
      if (storage === null) return { status: 200, json: { configured: false, description: null, reachable: null, error: null } };
      let error: string | null = null;
      try {
        await storage.head(REMOTE_PROBE_KEY, { timeout_ms: REMOTE_PROBE_TIMEOUT_MS });
      } catch (e) {
        // "not found" is the answer of a bucket that is there: reachable.
        if (!(e instanceof RemoteStorageError && e.kind === "not_found")) error = e instanceof Error ? e.message : String(e);
      }
      return { status: 200, json: { configured: true, description: storage.description, reachable: error === null, error } };
    },
  );
  let openApi: unknown = null;
  http.route(
    {
      method: "get",
      path: "/v1/openapi.json",
      summary: "this API's OpenAPI 3.1 document, generated from the route declarations",
      open: true,
      responses: { 200: { description: "the document", schema: OpenApiDoc } },
    },
    () => {
      openApi ??= openApiDocument(http.routes, { version: build.version });
      return { status: 200, json: openApi };
    },
  );
  // Failpoints (src/types/failpoints.ts): Neon's body, [{"name", "actions"}]; all or nothing.
  http.route(
    {
      method: "get",
      path: "/v1/failpoints",
      summary: "the active failpoints",
      responses: { 200: { description: "name → action", schema: M.Failpoints } },
    },
    () => ({
      status: 200,
      json: activeFailpoints(),
    }),
  );
  http.route(
    {
      method: "put",
      path: "/v1/failpoints",
      summary: "set or clear failpoints (all or nothing)",
      body: M.FailpointsBody,
      responses: { 200: { description: "the active failpoints", schema: M.Failpoints } },
    },
    (r) => {
      if (!extra.policy.enable_failpoints)
        throw new UnsupportedError(
          "failpoints are off on this node: start it with --enable-failpoints (or PAGESERVER_ENABLE_FAILPOINTS=1)",
        );
      const settings = parseFailpointConfig(r.body);
      applyFailpoints(settings);
      extra.log.info({ failpoints: activeFailpoints() }, "failpoints changed");
      return { status: 200, json: activeFailpoints() };
    },
  );
  // With listen_metrics, /metrics is served there only (a port the operator's scraper reaches).
  if (!extra.policy.separate_metrics) registerMetricsRoute(http, metrics);

  // ---------------------------------------------------------------------------------------
  // Tenants

  http.route(
    {
      method: "post",
      path: "/v1/tenant",
      summary: "create a tenant",
      body: M.TenantCreate,
      responses: { 201: { description: "created", schema: M.TenantCreated } },
    },
    async (r) => {
      const name = r.body.name;
      // Held from before the first await to the end: of two creates with one name, one wins.
      const claim = name === undefined ? null : names.claimTenantName(name, tenants.list());
      try {
        const t = await tenants.create(r.body.new_tenant_id as TenantId | undefined, r.body.config ?? {});
        if (name !== undefined) {
          try {
            await names.setTenantName(t, name);
          } catch (e) {
            // Never half-created: a tenant whose name could not be written goes again.
            await tenants.delete(t.id, async () => undefined).catch(() => undefined);
            throw e;
          }
        }
        return { status: 201, json: { id: t.id } };
      } finally {
        claim?.release();
      }
    },
  );
  http.route(
    {
      method: "get",
      path: "/v1/tenant",
      summary: "list tenants",
      responses: { 200: { description: "every tenant", schema: Type.Array(M.TenantListItem) } },
    },
    () => ({
      status: 200,
      json: tenants.list().map((t) => M.tenantListItem(t, names.tenantName(t))),
    }),
  );
  const tenantOf = (params: Record<string, string>) => tenants.get(params["tenant_id"] as TenantId);
  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id",
      summary: "a tenant: state, timelines",
      params: TenantParams,
      responses: { 200: { description: "the tenant", schema: M.TenantInfo } },
    },
    (r) => {
      const t = tenantOf(r.params);
      return { status: 200, json: M.tenantInfo(t, names.tenantName(t)) };
    },
  );
  http.route(
    {
      method: "put",
      path: "/v1/tenant/:tenant_id/name",
      summary: "rename a tenant (name null: remove its name); names are unique on the node",
      scope: "management",
      params: TenantParams,
      body: M.NameBody,
      responses: { 200: { description: "the tenant", schema: M.TenantInfo } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      const claim = r.body.name === null ? null : names.claimTenantName(r.body.name, tenants.list(), t);
      try {
        await names.setTenantName(t, r.body.name);
      } finally {
        claim?.release();
      }
      return { status: 200, json: M.tenantInfo(t, names.tenantName(t)) };
    },
  );
  http.route(
    {
      method: "delete",
      path: "/v1/tenant/:tenant_id",
      summary: "delete a tenant: its WAL sources stop (slots dropped, or the reply says why not), its data goes",
      scope: "management",
      params: TenantParams,
      responses: { 200: { description: "deleted", schema: M.TenantDeleted } },
    },
    async (r) => {
      const id = r.params["tenant_id"] as TenantId;
      const timelines = await tenants.delete(id, async (t) => {
        const out: M.TimelineDeleted[] = [];
        for (const tl of t.listTimelines()) out.push({ tenant_id: id, timeline_id: tl.timelineId, wal_source: await ws.remove(tl, true) });
        await extra.remote?.dropTenant(t);
        return out;
      });
      return { status: 200, json: { tenant_id: id, timelines } };
    },
  );
  const mobility = extra.mobility ?? null;
  http.route(
    {
      method: "post",
      path: "/v1/tenant/:tenant_id/detach",
      summary: "detach a tenant: its WAL sources stop (slots kept), it flushes, the bucket receives everything, then it leaves this node",
      scope: "management",
      params: TenantParams,
      responses: { 200: { description: "detached", schema: M.TenantDetached } },
    },
    async (r) => {
      const id = r.params["tenant_id"] as TenantId;
      if (mobility === null) throw new RemoteStorageDisabledError("detach");
      await mobility.detach(id);
      return { status: 200, json: { tenant_id: id } };
    },
  );
  http.route(
    {
      method: "post",
      path: "/v1/tenant/:tenant_id/attach",
      summary: "attach a tenant from remote storage in a generation: downloaded (resumable), then loaded",
      scope: "management",
      params: TenantParams,
      body: M.TenantAttach,
      responses: { 201: { description: "attached", schema: M.TenantInfo } },
    },
    async (r) => {
      if (mobility === null) throw new RemoteStorageDisabledError("attach");
      const t = await mobility.attach(r.params["tenant_id"] as TenantId, r.body.generation);
      return { status: 201, json: M.tenantInfo(t, names.tenantName(t)) };
    },
  );
  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/config",
      summary: "the tenant's config: its overrides and the effective values",
      params: TenantParams,
      responses: { 200: { description: "config", schema: M.TenantConfig } },
    },
    (r) => {
      const t = tenantOf(r.params);
      return { status: 200, json: { overrides: t.configOverrides, effective: t.conf } };
    },
  );
  http.route(
    {
      method: "put",
      path: "/v1/tenant/:tenant_id/config",
      summary: "replace the tenant's config overrides",
      scopeNote:
        "Node-protecting settings need management: changing getpage_throttle_*, max_frozen_layers, l0_flush_* (or the thresholds derived from compaction_threshold), wait_lsn_timeout; compaction_period 0; checkpoint_distance, gc_horizon or pitr_interval below the node's floors (tenant_min_*).",
      params: TenantParams,
      body: Type.Record(Type.String(), Type.Unknown(), { description: "tenant settings (docs/configuration.md)" }),
      responses: { 200: { description: "the overrides now", schema: M.TenantConfigSet } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      checkTenantConfigScope(r.claims, t.conf, r.body, extra.policy.tenant_defaults, extra.policy.floors);
      await t.setConfig(r.body);
      return { status: 200, json: { overrides: t.configOverrides } };
    },
  );

  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/size",
      summary:
        "the tenant size model: per timeline the logical size at its retention start plus the WAL after it, history shared at branch points counted once",
      scopeNote: "Heavy: at most max_heavy_requests_per_tenant of the tenant's heavy requests at once (429 beyond).",
      params: TenantParams,
      responses: { 200: { description: "size, segments and the model's inputs", schema: M.TenantSize } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      const size = await extra.policy.heavy.run(t.id, "tenant size", () => extra.sizes.tenantSize(t, Date.now(), r.signal));
      return { status: 200, json: M.tenantSize(t.id, size) };
    },
  );

  registerTimelineRoutes(http, tenants, ws, extra.remote ?? null, extra.policy, names);
}
