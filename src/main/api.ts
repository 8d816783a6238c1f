/**
 * HTTP API v1 routes (management): tenants, timelines, operator actions, status, metrics.
 * Ids in paths and bodies are validated (they become paths); LSNs are "X/Y" strings.
 * docs/http-api.md describes each route.
 */
import type { Registry } from "prom-client";
import { lsnToString, parseLsn } from "../types/lsn.js";
import { InvalidArgumentError } from "../types/errors.js";
import { parseTenantId, parseTimelineId, type TenantId, type TimelineId } from "../types/ids.js";
import type { Tenant } from "../tenant/tenant.js";
import type { Timeline } from "../tenant/timeline.js";
import type { HttpServer, Request } from "./http/server.js";
import type { TenantManager } from "./tenant_manager.js";

function bodyObject(r: Request): Record<string, unknown> {
  if (r.body === undefined) return {};
  if (typeof r.body !== "object" || r.body === null || Array.isArray(r.body)) throw new InvalidArgumentError("request body must be a JSON object");
  return r.body as Record<string, unknown>;
}

function optLsn(v: unknown, name: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new InvalidArgumentError(`${name} must be an LSN string like "0/16B3748"`);
  return parseLsn(v);
}

export function timelineInfoJson(tl: Timeline): Record<string, unknown> {
  const i = tl.info();
  return {
    tenant_id: i.tenant_id,
    timeline_id: i.timeline_id,
    ancestor_timeline_id: i.ancestor_timeline_id,
    ancestor_lsn: i.ancestor_lsn,
    last_record_lsn: i.last_record_lsn,
    prev_record_lsn: i.prev_record_lsn,
    disk_consistent_lsn: i.disk_consistent_lsn,
    remote_consistent_lsn: null,
    latest_gc_cutoff_lsn: i.latest_gc_cutoff_lsn,
    initdb_lsn: i.initdb_lsn,
    state: i.state,
    layers: i.layers,
  };
}

function tenantJson(t: Tenant): Record<string, unknown> {
  return { id: t.id, state: t.state, ...(t.brokenReason ? { broken_reason: t.brokenReason } : {}), timelines: t.listTimelines().length };
}

export function registerRoutes(http: HttpServer, tenants: TenantManager, metrics: Registry, extra: { startedAt: Date }): void {
  const tenantOf = (r: Request): Tenant => tenants.get(parseTenantId(r.params["tenant_id"]));
  const timelineOf = (r: Request): Timeline => tenantOf(r).getTimeline(parseTimelineId(r.params["timeline_id"]));

  http.route("get", "/v1/status", () => ({ status: 200, json: { status: "ok", started_at: extra.startedAt.toISOString() } }));
  http.route("get", "/metrics", async () => ({ status: 200, contentType: metrics.contentType, body: await metrics.metrics() }));

  http.route("post", "/v1/tenant", async (r) => {
    const b = bodyObject(r);
    const id = b["new_tenant_id"] === undefined ? undefined : (parseTenantId(b["new_tenant_id"]) as TenantId);
    const conf = b["config"];
    if (conf !== undefined && (typeof conf !== "object" || conf === null || Array.isArray(conf))) throw new InvalidArgumentError("config must be an object");
    const t = await tenants.create(id, (conf ?? {}) as Record<string, unknown>);
    return { status: 201, json: { id: t.id } };
  });
  http.route("get", "/v1/tenant", () => ({ status: 200, json: tenants.list().map((t) => ({ id: t.id, state: t.state })) }));
  http.route("get", "/v1/tenant/:tenant_id", (r) => ({ status: 200, json: tenantJson(tenantOf(r)) }));
  http.route("get", "/v1/tenant/:tenant_id/config", (r) => {
    const t = tenantOf(r);
    return { status: 200, json: { overrides: t.configOverrides, effective: t.conf } };
  });
  http.route("put", "/v1/tenant/:tenant_id/config", async (r) => {
    const t = tenantOf(r);
    await t.setConfig(bodyObject(r));
    return { status: 200, json: { overrides: t.configOverrides } };
  });

  http.route("post", "/v1/tenant/:tenant_id/timeline", async (r) => {
    const t = tenantOf(r);
    const b = bodyObject(r);
    const tl = await t.createTimeline({
      timelineId: b["new_timeline_id"] === undefined ? undefined : (parseTimelineId(b["new_timeline_id"]) as TimelineId),
      ancestorId: b["ancestor_timeline_id"] === undefined || b["ancestor_timeline_id"] === null ? undefined : parseTimelineId(b["ancestor_timeline_id"]),
      ancestorLsn: optLsn(b["ancestor_start_lsn"], "ancestor_start_lsn"),
      startLsn: optLsn(b["start_lsn"], "start_lsn"),
      pgVersion: b["pg_version"] === undefined ? undefined : Number(b["pg_version"]),
    });
    return { status: 201, json: timelineInfoJson(tl) };
  });
  http.route("get", "/v1/tenant/:tenant_id/timeline", (r) => ({ status: 200, json: tenantOf(r).listTimelines().map(timelineInfoJson) }));
  http.route("get", "/v1/tenant/:tenant_id/timeline/:timeline_id", (r) => ({ status: 200, json: timelineInfoJson(timelineOf(r)) }));

  http.route("put", "/v1/tenant/:tenant_id/timeline/:timeline_id/checkpoint", async (r) => {
    const tl = timelineOf(r);
    await tl.checkpoint();
    return { status: 200, json: { disk_consistent_lsn: lsnToString(tl.diskConsistentLsn) } };
  });
  http.route("put", "/v1/tenant/:tenant_id/timeline/:timeline_id/compact", async (r) => {
    const t = tenantOf(r);
    timelineOf(r);
    const force = r.query.get("force_image_layer_creation") === "true";
    const res = await t.compact({ forceImages: force });
    return { status: 200, json: { l0_compacted: res.l0Compacted, image_layers_created: res.imagesCreated } };
  });
  http.route("put", "/v1/tenant/:tenant_id/timeline/:timeline_id/do_gc", async (r) => {
    const t = tenantOf(r);
    const tl = timelineOf(r);
    const b = bodyObject(r);
    const horizon = b["gc_horizon"];
    let cutoff: number | undefined;
    if (horizon !== undefined) {
      if (typeof horizon !== "number" || !Number.isSafeInteger(horizon) || horizon < 0) throw new InvalidArgumentError("gc_horizon must be a byte count");
      cutoff = Math.max(0, tl.lastRecordLsn - horizon);
    }
    const removed = await t.gc(cutoff);
    return { status: 200, json: { layers_removed: removed, latest_gc_cutoff_lsn: lsnToString(tl.latestGcCutoffLsn) } };
  });
}
