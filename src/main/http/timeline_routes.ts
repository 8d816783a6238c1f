/**
 * HTTP API v1 timeline routes: create (bootstrap from a source, import a data directory,
 * branch at an LSN or at a time), list, get, delete, WAL source, base backup, operator
 * actions (checkpoint, compact, do_gc), layers (list and picture), LSN by timestamp.
 * Declared with their schemas (http/schema.ts, http/models.ts); docs/http-api.md.
 *
 * Scopes: import_pgdata and a wal_source in a creation, the WAL source routes, and deleting a
 * timeline that has a WAL source need management (api_scopes.ts); heavy requests (base
 * backup, forced image compaction, do_gc, remote_check with checksums) take a permit of
 * their tenant (src/tenant/heavy_work.ts) and stop when the client goes away (r.signal).
 *
 * A creation holds its timeline id from before its first await to its end (of two
 * concurrent creates of one id, one gets 201, the other 409), and undoes itself when it
 * fails after the timeline exists: never half-created.
 */
import { Type } from "@sinclair/typebox";
import { basebackupTar } from "../../pgdata/basebackup.js";
import { importDatadir, readImportLsn, resolveImportDir } from "../../pgdata/import.js";
import type { Tenant, TimelineReservation } from "../../tenant/tenant.js";
import type { Timeline } from "../../tenant/timeline/index.js";
import { InvalidArgumentError, RemoteStorageDisabledError } from "../../types/errors.js";
import type { TenantId, TimelineId } from "../../types/ids.js";
import { type Lsn, lsnToString, parseLsn } from "../../types/lsn.js";
import * as M from "./models.js";
import type { HttpServer } from "./http_server.js";
import { layerMapSvg } from "./layer_map_svg.js";
import type { TenantManager } from "../tenant_manager.js";
import { bootstrapFromSource } from "../wal_source/source_connect.js";
import type { WalSources } from "../wal_source/wal_sources.js";
import type { RemoteTimelines } from "../remote/remote_timelines.js";
import { readTenantGeneration } from "../../remote/attach.js";
import { checkRemoteTimeline } from "../../remote/remote_check.js";
import { type ApiPolicy, checkGcHorizonScope } from "./scope_checks.js";
import { requireManagement } from "../auth.js";
import type { NameBook, NameClaim } from "../names.js";

const TenantParams = Type.Object({ tenant_id: M.Id }, { additionalProperties: false });
const TimelineParams = Type.Object({ tenant_id: M.Id, timeline_id: M.Id }, { additionalProperties: false });

const HEAVY =
  "Heavy: at most max_heavy_requests_per_tenant of the tenant's heavy requests at once (429 beyond); stops when the client goes away.";

const RFC3339_RE = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 time as Unix milliseconds, keeping sub-millisecond digits (commit times are µs). */
export function parseRfc3339Ms(text: string): number {
  const m = RFC3339_RE.exec(text);
  const whole = m === null ? Number.NaN : Date.parse(`${m[1]}T${m[2]}${m[4]!.toUpperCase()}`);
  if (m === null || Number.isNaN(whole)) throw new InvalidArgumentError(`invalid RFC 3339 time ${JSON.stringify(text.slice(0, 80))}`);
  const frac = m[3] === undefined ? 0 : Number(`0.${m[3].slice(0, 9)}`) * 1000;
  return whole + frac;
}

export function registerTimelineRoutes(
  http: HttpServer,
  tenants: TenantManager,
  ws: WalSources,
  remote: RemoteTimelines | null,
  policy: ApiPolicy,
  names: NameBook,
): void {
  const tenantOf = (p: Record<string, string>): Tenant => tenants.get(p["tenant_id"] as TenantId);
  const timelineOf = (p: Record<string, string>): Timeline => tenantOf(p).getTimeline(p["timeline_id"] as TimelineId);
  const info = (t: Tenant, tl: Timeline) => M.timelineInfo(tl, names.timelineName(t, tl.timelineId), ws, remote);
  const optLsn = (v: string | null | undefined): Lsn | undefined => (v === undefined || v === null ? undefined : parseLsn(v));

  /**
   * A creation failed after its timeline existed: take it away again (its source first). A
   * failure here is logged; the creation's own error is what the client gets.
   */
  async function undoCreate(t: Tenant, id: TimelineId): Promise<void> {
    const tl = t.listTimelines().find((x) => x.timelineId === id);
    if (tl === undefined) return;
    try {
      await t.deleteTimeline(id, async (x) => {
        await ws.remove(x, true);
        await remote?.dropTimeline(t, x);
      });
      tl.log.info("removed the timeline whose creation failed");
    } catch (e) {
      tl.log.error({ err: e }, "could not remove a timeline whose creation failed");
    }
  }

  http.route(
    {
      method: "post",
      path: "/v1/tenant/:tenant_id/timeline",
      summary: "create a timeline: bootstrap from a source, import a data directory, or branch at an LSN or a time",
      scopeNote: "import_pgdata and wal_source need management.",
      params: TenantParams,
      body: M.TimelineCreate,
      responses: { 201: { description: "created", schema: M.TimelineInfo } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      const b = r.body;
      if (b.import_pgdata !== undefined && b.import_pgdata !== null) requireManagement(r.claims, "import_pgdata");
      if (b.wal_source !== undefined && b.wal_source !== null) requireManagement(r.claims, "wal_source");
      const ancestorId = (b.ancestor_timeline_id ?? undefined) as TimelineId | undefined;
      const connstr = b.wal_source === undefined || b.wal_source === null ? null : ws.parseConnstr(b.wal_source.connstr);
      // Only under the node's import root, symlinks resolved (refused alike whatever the reason).
      const imported =
        b.import_pgdata === undefined || b.import_pgdata === null ? null : resolveImportDir(policy.import_pgdata_root, b.import_pgdata);
      const pgdata = imported?.dir ?? null;
      let ancestorLsn = optLsn(b.ancestor_start_lsn);
      const atTime = b.ancestor_start_time ?? null;
      if (atTime !== null) {
        if (ancestorId === undefined) throw new InvalidArgumentError("ancestor_start_time given without ancestor_timeline_id");
        if (ancestorLsn !== undefined) throw new InvalidArgumentError("ancestor_start_lsn and ancestor_start_time exclude each other");
        const found = t.getTimeline(ancestorId).lsnForTime(parseRfc3339Ms(atTime));
        if (found.kind !== "present") {
          throw new InvalidArgumentError(
            `ancestor_start_time ${atTime}: the ancestor's commit history answers "${found.kind}" (lsn ${lsnToString(found.lsn)}), not a commit at or before that time; see get_lsn_by_timestamp`,
          );
        }
        ancestorLsn = found.lsn;
      }
      if (pgdata !== null && ancestorId !== undefined)
        throw new InvalidArgumentError("import_pgdata and ancestor_timeline_id exclude each other");
      // The name is held from here (before any await) to the creation's end, like the id.
      const claim: NameClaim | null = b.name === undefined ? null : names.claimTimelineName(t, b.name);
      let reservation: TimelineReservation;
      try {
        reservation = t.reserveTimeline(b.new_timeline_id as TimelineId | undefined);
      } catch (e) {
        claim?.release();
        throw e;
      }
      /** The created timeline's reply, once its name is written (or the creation is undone). */
      const created = async (tl: Timeline) => {
        if (b.name !== undefined) {
          try {
            await names.setTimelineName(t, tl.timelineId, b.name);
          } catch (e) {
            await undoCreate(t, tl.timelineId);
            throw e;
          }
        }
        return { status: 201, json: await info(t, tl) };
      };
      try {
        if (pgdata !== null) {
          // Bootstrap from a cleanly shut down data directory on this machine, at its checkpoint.
          const { lsn } = readImportLsn(pgdata, imported!.root);
          const tl = await t.createTimeline({ reservation, startLsn: lsn, pgVersion: 15 });
          try {
            await importDatadir(tl, pgdata, { within: imported!.root });
            // The imported server is shut down (that is what import needs): its source starts
            // streaming once it runs again, retrying until then.
            if (connstr !== null) await ws.setDeferred(tl, connstr);
          } catch (e) {
            await undoCreate(t, reservation.id);
            throw e;
          }
          return await created(tl);
        }
        if (connstr !== null && ancestorId === undefined) {
          // Bootstrap from a running source: BASE_BACKUP, import, then stream from its start.
          // A failed import leaves the timeline it created (bootstrapFromSource drops the slot).
          try {
            const boot = await bootstrapFromSource(t, reservation, connstr, ws.log);
            await ws.set(boot.timeline, connstr, { consistentFrom: boot.config.consistent_from_lsn ?? null });
            return await created(boot.timeline);
          } catch (e) {
            await undoCreate(t, reservation.id);
            throw e;
          }
        }
        // A branch with its own source (an endpoint started from the branch point): the source
        // must be usable, and of the ancestor's system, before the branch exists.
        const probed = connstr !== null && ancestorId !== undefined ? await ws.probe(t.getTimeline(ancestorId), connstr) : undefined;
        const tl = await t.createTimeline({
          reservation,
          ancestorId,
          ancestorLsn,
          startLsn: optLsn(b.start_lsn),
          pgVersion: b.pg_version,
        });
        if (connstr !== null) {
          try {
            await ws.set(tl, connstr, { probed });
          } catch (e) {
            await undoCreate(t, reservation.id);
            throw e;
          }
        }
        return await created(tl);
      } finally {
        reservation.release();
        claim?.release();
      }
    },
  );
  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/timeline",
      summary: "list the tenant's timelines",
      params: TenantParams,
      responses: { 200: { description: "timeline infos", schema: Type.Array(M.TimelineInfo) } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      return { status: 200, json: await Promise.all(t.listTimelines().map((tl) => info(t, tl))) };
    },
  );
  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id",
      summary: "a timeline's info",
      params: TimelineParams,
      responses: { 200: { description: "timeline info", schema: M.TimelineInfo } },
    },
    async (r) => ({ status: 200, json: await info(tenantOf(r.params), timelineOf(r.params)) }),
  );
  http.route(
    {
      method: "put",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/name",
      summary: "rename a timeline (name null: remove its name); names are unique within the tenant",
      params: TimelineParams,
      body: M.NameBody,
      responses: { 200: { description: "timeline info", schema: M.TimelineInfo } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      const tl = timelineOf(r.params);
      const claim = r.body.name === null ? null : names.claimTimelineName(t, r.body.name, tl.timelineId);
      try {
        await names.setTimelineName(t, tl.timelineId, r.body.name);
      } finally {
        claim?.release();
      }
      return { status: 200, json: await info(t, tl) };
    },
  );
  http.route(
    {
      method: "delete",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id",
      summary: "delete a timeline (409 while it has child branches): its WAL source stops and its slot is dropped, its data goes",
      scopeNote: "A timeline with a WAL source needs management (its slot is dropped).",
      params: TimelineParams,
      responses: { 200: { description: "deleted", schema: M.TimelineDeleted } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      const id = r.params["timeline_id"] as TimelineId;
      const existing = t.listTimelines().find((x) => x.timelineId === id);
      if (existing !== undefined && ws.get(existing) !== undefined) requireManagement(r.claims, "deleting a timeline with a WAL source");
      const slot = await t.deleteTimeline(id, async (tl) => {
        const s = await ws.remove(tl, true);
        await remote?.dropTimeline(t, tl);
        return s;
      });
      return { status: 200, json: { tenant_id: t.id, timeline_id: id, wal_source: slot } };
    },
  );

  // ---------------------------------------------------------------------------------------
  // WAL source

  http.route(
    {
      method: "put",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/wal_source",
      summary: "set or replace the timeline's WAL source (probed first; a refused change leaves the current one streaming)",
      scope: "management",
      params: TimelineParams,
      body: M.WalSourceBody,
      responses: { 200: { description: "the new source", schema: M.WalSourceSet } },
    },
    async (r) => {
      const tl = timelineOf(r.params);
      const connstr = ws.parseConnstr(r.body.connstr);
      const { source, oldSlot } = await ws.set(tl, connstr);
      return { status: 200, json: { ...source.status(), ...(oldSlot === null ? {} : { old_slot: oldSlot }) } };
    },
  );
  http.route(
    {
      method: "delete",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/wal_source",
      summary: "stop the timeline's WAL source and drop its slot",
      scope: "management",
      params: TimelineParams,
      responses: { 200: { description: "removed", schema: M.WalSourceRemoved } },
    },
    async (r) => {
      const tl = timelineOf(r.params);
      ws.requireFor(tl);
      const slot = await ws.remove(tl, true);
      return {
        status: 200,
        json: {
          removed: true,
          slot_dropped: slot?.slot_dropped ?? false,
          ...(slot?.slot_error === undefined ? {} : { slot_error: slot.slot_error }),
        },
      };
    },
  );

  // ---------------------------------------------------------------------------------------
  // Reads

  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/basebackup",
      summary: "a base backup (tar) at an LSN (default: last record LSN)",
      scopeNote: HEAVY,
      params: TimelineParams,
      query: Type.Object({ lsn: Type.Optional(M.Lsn) }, { additionalProperties: false }),
      responses: { 200: { description: "tar stream", contentType: "application/x-tar" } },
    },
    async (r) => {
      const tl = timelineOf(r.params);
      const lsn = r.query.lsn === undefined ? tl.lastRecordLsn : parseLsn(r.query.lsn);
      // Held until the stream ends (or the client goes away: the next write throws).
      const permit = policy.heavy.acquire(tl.tenantId, "base backup");
      let tar: AsyncIterable<Uint8Array>;
      try {
        tar = await basebackupTar(tl, lsn);
      } catch (e) {
        permit.release();
        throw e;
      }
      return {
        status: 200,
        contentType: "application/x-tar",
        produce: async (write) => {
          try {
            for await (const chunk of tar) await write(chunk);
          } finally {
            permit.release();
          }
        },
      };
    },
  );
  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/get_lsn_by_timestamp",
      summary:
        "the LSN where recovery_target_time = T stops, after the last commit at or before T, by PostgreSQL's rule (Neon's kinds: present, past, future, nodata)",
      params: TimelineParams,
      query: M.LsnByTimestampQuery,
      responses: { 200: { description: "the LSN and what kind of answer it is", schema: M.LsnByTimestamp } },
    },
    (r) => {
      const found = timelineOf(r.params).lsnForTime(parseRfc3339Ms(r.query.timestamp));
      return { status: 200, json: { lsn: lsnToString(found.lsn), kind: found.kind } };
    },
  );
  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/layer",
      summary: "the timeline's layers: files by LSN, then the frozen and open in-memory layers",
      params: TimelineParams,
      responses: { 200: { description: "layers", schema: Type.Array(M.LayerInfo) } },
    },
    (r) => ({ status: 200, json: M.layerList(timelineOf(r.params)) }),
  );
  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/layer_map.svg",
      summary: "a picture of the timeline's layers (key × LSN), branch points and GC cutoff",
      params: TimelineParams,
      responses: { 200: { description: "SVG", contentType: "image/svg+xml" } },
    },
    (r) => {
      const t = tenantOf(r.params);
      const tl = timelineOf(r.params);
      const svg = layerMapSvg({
        title: `tenant ${t.id} timeline ${tl.timelineId} at ${lsnToString(tl.lastRecordLsn)}`,
        layers: M.layerList(tl),
        branchPoints: t
          .children(tl)
          .map((c) => ({ lsn: c.ancestorLsn, label: `branch ${c.timelineId.slice(0, 8)} @ ${lsnToString(c.ancestorLsn)}` })),
        gcCutoffLsn: tl.latestGcCutoffLsn,
      });
      return { status: 200, contentType: "image/svg+xml", body: svg };
    },
  );

  // ---------------------------------------------------------------------------------------
  // Operator actions

  http.route(
    {
      method: "put",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/checkpoint",
      summary: "freeze and flush; returns when durable",
      params: TimelineParams,
      responses: { 200: { description: "durable", schema: M.Checkpointed } },
    },
    async (r) => {
      const tl = timelineOf(r.params);
      await tl.checkpoint();
      return { status: 200, json: { disk_consistent_lsn: lsnToString(tl.diskConsistentLsn) } };
    },
  );
  http.route(
    {
      method: "put",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/compact",
      summary: "compact L0 and create image layers, this timeline only",
      scopeNote: "force_image_layer_creation is heavy: at most max_heavy_requests_per_tenant at once (429 beyond).",
      params: TimelineParams,
      query: Type.Object(
        { force_image_layer_creation: Type.Optional(Type.Union([Type.Literal("true"), Type.Literal("false")])) },
        { additionalProperties: false },
      ),
      responses: { 200: { description: "done", schema: M.Compacted } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      const tl = timelineOf(r.params);
      const forceImages = r.query.force_image_layer_creation === "true";
      const compact = () => t.compact({ forceImages, timeline: tl, signal: r.signal });
      const res = forceImages ? await policy.heavy.run(t.id, "compact with force_image_layer_creation", compact) : await compact();
      return { status: 200, json: { l0_compacted: res.l0Compacted, image_layers_created: res.imagesCreated } };
    },
  );
  http.route(
    {
      method: "put",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/do_gc",
      summary: "GC this timeline (cutoff gc_horizon bytes back from its last record LSN; its branch points kept)",
      scopeNote: `gc_horizon below the node's floor (tenant_min_gc_horizon) needs management. ${HEAVY}`,
      params: TimelineParams,
      body: M.GcBody,
      responses: { 200: { description: "done", schema: M.GcDone } },
    },
    async (r) => {
      const t = tenantOf(r.params);
      const tl = timelineOf(r.params);
      checkGcHorizonScope(r.claims, r.body.gc_horizon, policy.floors);
      const removed = await policy.heavy.run(t.id, "do_gc", () =>
        t.gc({ timeline: tl, horizonBytes: r.body.gc_horizon, signal: r.signal }),
      );
      return { status: 200, json: { layers_removed: removed, latest_gc_cutoff_lsn: lsnToString(tl.latestGcCutoffLsn) } };
    },
  );
  http.route(
    {
      method: "get",
      path: "/v1/tenant/:tenant_id/timeline/:timeline_id/remote_check",
      summary:
        "the timeline's index against its objects in remote storage: missing, mismatched, orphaned (409 remote_storage_disabled without remote storage)",
      scopeNote: "verify_checksums (downloads every layer) is heavy: at most max_heavy_requests_per_tenant at once (429 beyond).",
      params: TimelineParams,
      query: Type.Object(
        { verify_checksums: Type.Optional(Type.Union([Type.Literal("true"), Type.Literal("false")])) },
        { additionalProperties: false },
      ),
      responses: { 200: { description: "the check", schema: M.RemoteCheck } },
    },
    async (r) => {
      if (remote === null) throw new RemoteStorageDisabledError("remote_check");
      const t = tenantOf(r.params);
      const tl = timelineOf(r.params);
      const verify = r.query.verify_checksums === "true";
      const check = () =>
        checkRemoteTimeline(remote.storage, tl.tenantId, tl.timelineId, readTenantGeneration(t.dir), {
          verify_checksums: verify,
          signal: r.signal,
        });
      const checked = verify ? await policy.heavy.run(t.id, "remote_check with verify_checksums", check) : await check();
      return { status: 200, json: checked };
    },
  );
}
