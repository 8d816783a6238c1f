/**
 * HTTP API v1 routes (management): tenants, timelines, operator actions, status, metrics.
 * Ids in paths and bodies are validated (they become paths); LSNs are "X/Y" strings.
 * docs/http-api.md describes each route.
 */
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { basebackupTar } from "../pgdata/basebackup.js";
import { isAbsolute } from "node:path";
import { importDatadir, readImportLsn } from "../pgdata/import.js";
import { DatadirSnapshot } from "../pgdata/reader.js";
import { lsnToString, parseLsn } from "../types/lsn.js";
import { InvalidArgumentError } from "../types/errors.js";
import { activeFailpoints, applyFailpoints, parseFailpointConfig } from "../types/failpoints.js";
import { secondsSince } from "../types/metrics_sink.js";
import { parseTenantId, parseTimelineId, type TenantId, type TimelineId } from "../types/ids.js";
import type { Tenant } from "../tenant/tenant.js";
import type { Timeline } from "../tenant/timeline.js";
import { buildInfo } from "./build_info.js";
import type { HttpServer, Request } from "./http/server.js";
import type { RemoteTimelines } from "./remote_timelines.js";
import type { TenantManager } from "./tenant_manager.js";
import { bootstrapFromSource, parseConnstr } from "./wal_source.js";
import type { WalSources } from "./wal_sources.js";

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

/**
 * current_logical_size walks every relation's size: too much to do on each GET while a
 * client polls. It is recomputed at most every LOGICAL_SIZE_TTL_MS per timeline.
 */
const LOGICAL_SIZE_TTL_MS = 2000;
const logicalSizes = new WeakMap<Timeline, { at_ms: number; lsn: number; size: number | null; error: string | null }>();

/** The timeline's logical size, or null with the reason when it can't be computed (never a made-up 0). */
function logicalSizeNow(tl: Timeline): { size: number | null; error: string | null } {
  const now = Date.now();
  const c = logicalSizes.get(tl);
  if (c !== undefined && (c.lsn === tl.lastRecordLsn || now - c.at_ms < LOGICAL_SIZE_TTL_MS)) return c;
  let entry: { at_ms: number; lsn: number; size: number | null; error: string | null };
  const start_ms = performance.now();
  try {
    entry = { at_ms: now, lsn: tl.lastRecordLsn, size: new DatadirSnapshot(tl, tl.lastRecordLsn).logicalSize(), error: null };
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    tl.log.warn({ err: e }, "could not compute the logical size");
    entry = { at_ms: now, lsn: tl.lastRecordLsn, size: null, error };
  }
  tl.metrics.storageOperation("logical size", secondsSince(start_ms));
  logicalSizes.set(tl, entry);
  return entry;
}

function remoteLsnJson(lsn: number | null): string | null {
  return lsn === null ? null : lsnToString(lsn);
}

export function timelineInfoJson(tl: Timeline, walSources?: WalSources, remote?: RemoteTimelines | null): Record<string, unknown> {
  const i = tl.info();
  return {
    tenant_id: i.tenant_id,
    timeline_id: i.timeline_id,
    ancestor_timeline_id: i.ancestor_timeline_id,
    ancestor_lsn: i.ancestor_lsn,
    last_record_lsn: i.last_record_lsn,
    prev_record_lsn: i.prev_record_lsn,
    disk_consistent_lsn: i.disk_consistent_lsn,
    remote_consistent_lsn: remoteLsnJson(remote?.remoteConsistentLsn(tl) ?? null),
    latest_gc_cutoff_lsn: i.latest_gc_cutoff_lsn,
    initdb_lsn: i.initdb_lsn,
    ...logicalSizeJson(tl),
    state: i.state,
    wal_source: walSources?.status(tl) ?? null,
    layers: i.layers,
    ingest_backpressure: i.ingest_backpressure,
  };
}

function logicalSizeJson(tl: Timeline): { current_logical_size: number | null; current_logical_size_error?: string } {
  const { size, error } = logicalSizeNow(tl);
  return error === null ? { current_logical_size: size } : { current_logical_size: null, current_logical_size_error: error };
}

function tenantJson(t: Tenant): Record<string, unknown> {
  return { id: t.id, state: t.state, ...(t.brokenReason ? { broken_reason: t.brokenReason } : {}), timelines: t.listTimelines().length };
}

export function registerRoutes(
  http: HttpServer,
  tenants: TenantManager,
  metrics: Registry,
  extra: { startedAt: Date; walSources: WalSources; log: Logger; remote?: RemoteTimelines | null },
): void {
  const ws = extra.walSources;
  const tenantOf = (r: Request): Tenant => tenants.get(parseTenantId(r.params["tenant_id"]));
  const timelineOf = (r: Request): Timeline => tenantOf(r).getTimeline(parseTimelineId(r.params["timeline_id"]));

  const build = buildInfo();
  http.route(
    "get",
    "/v1/status",
    () => ({ status: 200, json: { status: "ok", version: build.version, git_commit: build.git_commit, started_at: extra.startedAt.toISOString() } }),
    { open: true },
  );
  // Failpoints (src/types/failpoints.ts): Neon's body, [{"name", "actions"}]; all or nothing.
  http.route("get", "/v1/failpoints", () => ({ status: 200, json: activeFailpoints() }));
  http.route("put", "/v1/failpoints", (r) => {
    const settings = parseFailpointConfig(r.body);
    applyFailpoints(settings);
    extra.log.info({ failpoints: activeFailpoints() }, "failpoints changed");
    return { status: 200, json: activeFailpoints() };
  });
  http.route("get", "/metrics", async () => ({ status: 200, contentType: metrics.contentType, body: await metrics.metrics() }), { open: true });

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
    const timelineId = b["new_timeline_id"] === undefined ? undefined : (parseTimelineId(b["new_timeline_id"]) as TimelineId);
    const ancestorId =
      b["ancestor_timeline_id"] === undefined || b["ancestor_timeline_id"] === null ? undefined : parseTimelineId(b["ancestor_timeline_id"]);
    let connstr: string | null = null;
    if (b["wal_source"] !== undefined && b["wal_source"] !== null) {
      const src = b["wal_source"];
      if (typeof src !== "object" || Array.isArray(src)) throw new InvalidArgumentError("wal_source must be an object {\"connstr\"}");
      connstr = parseConnstr((src as Record<string, unknown>)["connstr"]);
    }
    const pgdata = b["import_pgdata"];
    if (pgdata !== undefined && pgdata !== null) {
      // Bootstrap from a cleanly shut down data directory on this machine, at its checkpoint.
      if (typeof pgdata !== "string" || !isAbsolute(pgdata)) throw new InvalidArgumentError("import_pgdata must be an absolute path");
      if (ancestorId !== undefined) throw new InvalidArgumentError("import_pgdata and ancestor_timeline_id exclude each other");
      const { lsn } = readImportLsn(pgdata);
      const tl = await t.createTimeline({ timelineId, startLsn: lsn, pgVersion: 15 });
      await importDatadir(tl, pgdata);
      // The imported server is shut down (that is what import needs): its source starts
      // streaming once it runs again, retrying until then.
      if (connstr !== null) await ws.setDeferred(tl, connstr);
      return { status: 201, json: timelineInfoJson(tl, ws, extra.remote) };
    }
    if (connstr !== null && ancestorId === undefined) {
      // Bootstrap from a running source: BASE_BACKUP, import, then stream from its start.
      const boot = await bootstrapFromSource(t, timelineId, connstr);
      await ws.set(boot.timeline, connstr, { consistentFrom: boot.config.consistent_from_lsn ?? null });
      return { status: 201, json: timelineInfoJson(boot.timeline, ws, extra.remote) };
    }
    // A branch with its own source (an endpoint started from the branch point): the source
    // must be usable, and of the ancestor's system, before the branch exists.
    const probed = connstr !== null && ancestorId !== undefined ? await ws.probe(t.getTimeline(ancestorId), connstr) : undefined;
    const tl = await t.createTimeline({
      timelineId,
      ancestorId,
      ancestorLsn: optLsn(b["ancestor_start_lsn"], "ancestor_start_lsn"),
      startLsn: optLsn(b["start_lsn"], "start_lsn"),
      pgVersion: b["pg_version"] === undefined ? undefined : Number(b["pg_version"]),
    });
    if (connstr !== null) await ws.set(tl, connstr, { probed });
    return { status: 201, json: timelineInfoJson(tl, ws, extra.remote) };
  });
  http.route("put", "/v1/tenant/:tenant_id/timeline/:timeline_id/wal_source", async (r) => {
    const tl = timelineOf(r);
    const connstr = parseConnstr(bodyObject(r)["connstr"]);
    const { source, oldSlot } = await ws.set(tl, connstr);
    return { status: 200, json: { ...source.status(), ...(oldSlot === null ? {} : { old_slot: oldSlot }) } };
  });
  http.route("delete", "/v1/tenant/:tenant_id/timeline/:timeline_id/wal_source", async (r) => {
    const tl = timelineOf(r);
    ws.requireFor(tl);
    const slot = await ws.remove(tl, true);
    return { status: 200, json: { removed: true, ...slot } };
  });
  http.route("get", "/v1/tenant/:tenant_id/timeline/:timeline_id/basebackup", async (r) => {
    const tl = timelineOf(r);
    const q = r.query.get("lsn");
    const lsn = q === null ? tl.lastRecordLsn : parseLsn(q);
    const tar = await basebackupTar(tl, lsn);
    return {
      status: 200,
      contentType: "application/x-tar",
      produce: async (write) => {
        for await (const chunk of tar) await write(chunk);
      },
    };
  });
  http.route("get", "/v1/tenant/:tenant_id/timeline", (r) => ({ status: 200, json: tenantOf(r).listTimelines().map((tl) => timelineInfoJson(tl, ws, extra.remote)) }));
  http.route("get", "/v1/tenant/:tenant_id/timeline/:timeline_id", (r) => ({ status: 200, json: timelineInfoJson(timelineOf(r), ws, extra.remote) }));

  http.route("put", "/v1/tenant/:tenant_id/timeline/:timeline_id/checkpoint", async (r) => {
    const tl = timelineOf(r);
    await tl.checkpoint();
    return { status: 200, json: { disk_consistent_lsn: lsnToString(tl.diskConsistentLsn) } };
  });
  http.route("put", "/v1/tenant/:tenant_id/timeline/:timeline_id/compact", async (r) => {
    const t = tenantOf(r);
    const tl = timelineOf(r);
    const force = r.query.get("force_image_layer_creation") === "true";
    const res = await t.compact({ forceImages: force, timeline: tl });
    return { status: 200, json: { l0_compacted: res.l0Compacted, image_layers_created: res.imagesCreated } };
  });
  http.route("put", "/v1/tenant/:tenant_id/timeline/:timeline_id/do_gc", async (r) => {
    const t = tenantOf(r);
    const tl = timelineOf(r);
    const horizon = bodyObject(r)["gc_horizon"];
    if (horizon !== undefined && (typeof horizon !== "number" || !Number.isSafeInteger(horizon) || horizon < 0)) {
      throw new InvalidArgumentError("gc_horizon must be a byte count");
    }
    const removed = await t.gc({ timeline: tl, horizonBytes: horizon });
    return { status: 200, json: { layers_removed: removed, latest_gc_cutoff_lsn: lsnToString(tl.latestGcCutoffLsn) } };
  });
}
