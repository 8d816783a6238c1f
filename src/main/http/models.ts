/**
 * Wire models of the HTTP API: the snake_case JSON shapes (TypeBox schemas, which the route
 * declarations, the validation and the OpenAPI document share) and the functions that build
 * them from domain objects (Tenant, Timeline, layer descriptors). Domain objects know nothing
 * of these shapes.
 *
 * LSNs on the wire are PostgreSQL's "X/Y" strings; ids 32 lower-case hex characters; keys
 * 36 upper-case hex characters (18 bytes); times RFC 3339.
 */
import { type Static, type TLiteral, type TSchema, type TUnion, Type } from "@sinclair/typebox";
import type { SizeInputs, TenantSize as TenantSizeModel } from "../../tenant/size_model.js";
import type { Tenant } from "../../tenant/tenant.js";
import { type Timeline, TimelineState } from "../../tenant/timeline/index.js";
import { DatadirSnapshot } from "../../pgdata/reader.js";
import { Backpressure } from "../../tenant/ingest_gate.js";
import { TenantState } from "../../tenant/tenant.js";
import { KEY_MAX, KEY_MIN, keyToHex } from "../../types/key.js";
import { lsnToString } from "../../types/lsn.js";
import { secondsSince } from "../../types/metrics_sink.js";
import type { WalSources } from "../wal_source/wal_sources.js";
import { ERROR_CODES } from "./errors.js";

// -----------------------------------------------------------------------------------------
// Scalars

export const Lsn = Type.String({ pattern: "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$", description: 'an LSN like "0/16B3748"' });
export const Id = Type.String({ pattern: "^[0-9a-f]{32}$", description: "32 lower-case hex characters" });
export const KeyHex = Type.String({ pattern: "^[0-9A-F]{36}$", description: "a key: 36 upper-case hex characters" });
/** RFC 3339 with a zone (Z or ±hh:mm), as Neon's API takes it. */
export const Rfc3339 = Type.String({
  pattern: "^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$",
  description: 'an RFC 3339 time like "2026-01-02T03:04:05.678Z"',
});
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/** A string enum as a union of literals (what Static<> narrows to, and OpenAPI shows as anyOf const). */
const enumOf = <const T extends string>(values: readonly T[]): TUnion<TLiteral<T>[]> => Type.Union(values.map((v) => Type.Literal(v)));
const Count = Type.Integer({ minimum: 0 });
const AnyObject = Type.Record(Type.String(), Type.Unknown(), { description: "an object" });

export const ApiError = Type.Object(
  { error: Type.String({ description: "what was wrong, with which input" }), code: enumOf(ERROR_CODES) },
  { additionalProperties: false },
);

// -----------------------------------------------------------------------------------------
// Node

export const Status = Type.Object({ status: Type.Literal("ok"), version: Type.String(), git_commit: Type.String(), started_at: Type.String() }, { additionalProperties: false });
export const Failpoints = Type.Record(Type.String(), Type.String(), { description: "active failpoints: name → action" });
export const FailpointsBody = Type.Array(Type.Object({ name: Type.String(), actions: Type.String() }, { additionalProperties: false }), { maxItems: 1000 });

// -----------------------------------------------------------------------------------------
// Tenants

export const TenantCreate = Type.Object({ new_tenant_id: Type.Optional(Id), config: Type.Optional(AnyObject) }, { additionalProperties: false });
export const TenantCreated = Type.Object({ id: Id }, { additionalProperties: false });
const TenantStateT = enumOf(Object.values(TenantState));
export const TenantListItem = Type.Object({ id: Id, state: TenantStateT }, { additionalProperties: false });
export const TenantInfo = Type.Object(
  {
    id: Id,
    state: TenantStateT,
    broken_reason: Type.Optional(Type.String()),
    /** How many timelines (timeline_ids lists them, sorted). */
    timelines: Count,
    timeline_ids: Type.Array(Id),
    /** The tenant's config overrides (GET …/config has the effective values too). */
    config: AnyObject,
  },
  { additionalProperties: false },
);
export const TenantConfig = Type.Object({ overrides: AnyObject, effective: AnyObject }, { additionalProperties: false });
export const TenantConfigSet = Type.Object({ overrides: AnyObject }, { additionalProperties: false });

/** What became of a WAL source's slot when the source was removed: null when there was none. */
export const SlotDrop = Type.Object({ slot_dropped: Type.Boolean(), slot_error: Type.Optional(Type.String()) }, { additionalProperties: false });
export const TimelineDeleted = Type.Object({ tenant_id: Id, timeline_id: Id, wal_source: Nullable(SlotDrop) }, { additionalProperties: false });
export const TenantDeleted = Type.Object({ tenant_id: Id, timelines: Type.Array(TimelineDeleted) }, { additionalProperties: false });
/** Attach (routes only with remote storage): the generation the control plane issued, higher than any before. */
export const TenantAttach = Type.Object(
  { generation: Type.Integer({ minimum: 1, maximum: 0xffff_ffff, description: "generation of this attachment (RFC 025)" }) },
  { additionalProperties: false },
);
export const TenantDetached = Type.Object({ tenant_id: Id }, { additionalProperties: false });
const Keys = Type.Array(Type.String());
/** src/remote/remote_check.ts: a timeline's index against its bucket objects. */
export const RemoteCheck = Type.Object(
  {
    index_key: Nullable(Type.String()),
    index_generation: Nullable(Type.Integer({ minimum: 1 })),
    layers_named: Count,
    missing: Keys,
    size_mismatch: Type.Array(Type.Object({ key: Type.String(), index_bytes: Count, object_bytes: Count }, { additionalProperties: false })),
    checksum_mismatch: Keys,
    orphans: Keys,
    unknown: Keys,
    stale_indexes: Keys,
    newer_generation_keys: Keys,
    ok: Type.Boolean(),
  },
  { additionalProperties: false },
);

/** GET /v1/tenant/:id/size: the tenant size model (src/tenant/size_model.ts) with its inputs. */
export const TenantSizeSegment = Type.Object(
  {
    timeline_id: Id,
    parent: Nullable(Id),
    lsn_start: Lsn,
    lsn_end: Lsn,
    logical_size_bytes: Nullable(Type.Integer({ minimum: 0, description: "the logical size at lsn_start; null when the parent's retained history holds it" })),
    wal_bytes: Count,
    size_bytes: Count,
  },
  { additionalProperties: false },
);
export const TenantSize = Type.Object(
  {
    id: Id,
    size: Type.Integer({ minimum: 0, description: "bytes: the sum of the segments' size_bytes" }),
    segments: Type.Array(TenantSizeSegment),
    inputs: Type.Object(
      {
        gc_horizon_bytes: Count,
        pitr_interval_ms: Count,
        timelines: Type.Array(
          Type.Object(
            {
              timeline_id: Id,
              ancestor_id: Nullable(Id),
              ancestor_lsn: Nullable(Lsn),
              last_record_lsn: Lsn,
              latest_gc_cutoff_lsn: Lsn,
              retention_start_lsn: Lsn,
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export function tenantSize(id: string, s: TenantSizeModel & { inputs: SizeInputs }): Static<typeof TenantSize> {
  const opt = (l: number | null): string | null => (l === null ? null : lsnToString(l));
  return {
    id,
    size: s.size_bytes,
    segments: s.segments.map((g) => ({ ...g, lsn_start: lsnToString(g.lsn_start), lsn_end: lsnToString(g.lsn_end) })),
    inputs: {
      gc_horizon_bytes: s.inputs.gc_horizon_bytes,
      pitr_interval_ms: s.inputs.pitr_interval_ms,
      timelines: s.inputs.timelines.map((t) => ({
        ...t,
        ancestor_lsn: opt(t.ancestor_lsn),
        last_record_lsn: lsnToString(t.last_record_lsn),
        latest_gc_cutoff_lsn: lsnToString(t.latest_gc_cutoff_lsn),
        retention_start_lsn: lsnToString(t.retention_start_lsn),
      })),
    },
  };
}

export function tenantListItem(t: Tenant): Static<typeof TenantListItem> {
  return { id: t.id, state: t.state };
}

export function tenantInfo(t: Tenant): Static<typeof TenantInfo> {
  const ids = t.listTimelines().map((tl) => tl.timelineId as string);
  ids.sort();
  return {
    id: t.id,
    state: t.state,
    ...(t.brokenReason ? { broken_reason: t.brokenReason } : {}),
    timelines: ids.length,
    timeline_ids: ids,
    config: t.configOverrides,
  };
}

// -----------------------------------------------------------------------------------------
// Timelines

export const WalSourceStatus = Type.Object(
  {
    connstr: Type.String({ description: "the connection string, password masked" }),
    slot_name: Type.String(),
    state: enumOf(["starting", "connecting", "streaming", "retrying", "error", "failed", "stopped"]),
    last_received_lsn: Nullable(Lsn),
    last_error: Nullable(Type.String()),
    next_retry_at: Nullable(Type.String()),
    records_ingested: Count,
  },
  { additionalProperties: false },
);
export const WalSourceSet = Type.Object({ ...WalSourceStatus.properties, old_slot: Type.Optional(SlotDrop) }, { additionalProperties: false });
export const WalSourceRemoved = Type.Object({ removed: Type.Literal(true), ...SlotDrop.properties }, { additionalProperties: false });
export const WalSourceBody = Type.Object({ connstr: Type.String({ maxLength: 4096 }) }, { additionalProperties: false });

export const TimelineCreate = Type.Object(
  {
    new_timeline_id: Type.Optional(Id),
    ancestor_timeline_id: Type.Optional(Nullable(Id)),
    ancestor_start_lsn: Type.Optional(Nullable(Lsn)),
    ancestor_start_time: Type.Optional(Nullable(Rfc3339)),
    start_lsn: Type.Optional(Nullable(Lsn)),
    pg_version: Type.Optional(Type.Literal(15)),
    import_pgdata: Type.Optional(Nullable(Type.String({ pattern: "^/", maxLength: 4096, description: "an absolute path" }))),
    wal_source: Type.Optional(Nullable(WalSourceBody)),
  },
  { additionalProperties: false },
);

export const TimelineInfo = Type.Object(
  {
    tenant_id: Id,
    timeline_id: Id,
    ancestor_timeline_id: Nullable(Id),
    ancestor_lsn: Nullable(Lsn),
    last_record_lsn: Lsn,
    prev_record_lsn: Nullable(Lsn),
    disk_consistent_lsn: Lsn,
    remote_consistent_lsn: Nullable(Lsn),
    latest_gc_cutoff_lsn: Lsn,
    initdb_lsn: Lsn,
    current_logical_size: Nullable(Count),
    current_logical_size_error: Type.Optional(Type.String()),
    state: enumOf(Object.values(TimelineState)),
    wal_source: Nullable(WalSourceStatus),
    layers: Type.Object({ delta: Count, image: Count, l0: Count, frozen: Count }, { additionalProperties: false }),
    ingest_backpressure: Type.Object(
      { state: enumOf(Object.values(Backpressure)), reason: Nullable(Type.String()), delayed_ms: Count, stalled_ms: Count, waits: Count },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/**
 * current_logical_size walks every relation's size: too much to do on each GET while a
 * client polls. It is recomputed at most every LOGICAL_SIZE_TTL_MS per timeline.
 */
const LOGICAL_SIZE_TTL_MS = 2000;
interface LogicalSize {
  at_ms: number;
  lsn: number;
  size: number | null;
  error: string | null;
}
const logicalSizes = new WeakMap<Timeline, LogicalSize>();
/** The computation under way per timeline: requests meanwhile share it. */
const logicalSizesComputing = new WeakMap<Timeline, Promise<LogicalSize>>();

/** The timeline's logical size, or null with the reason when it can't be computed (never a made-up 0). */
function logicalSizeNow(tl: Timeline): Promise<LogicalSize> {
  const now = Date.now();
  const c = logicalSizes.get(tl);
  if (c !== undefined && (c.lsn === tl.lastRecordLsn || now - c.at_ms < LOGICAL_SIZE_TTL_MS)) return Promise.resolve(c);
  const running = logicalSizesComputing.get(tl);
  if (running !== undefined) return running;
  const p = computeLogicalSize(tl, now).finally(() => logicalSizesComputing.delete(tl));
  logicalSizesComputing.set(tl, p);
  return p;
}

async function computeLogicalSize(tl: Timeline, now: number): Promise<LogicalSize> {
  const lsn = tl.lastRecordLsn;
  let entry: LogicalSize;
  const start_ms = performance.now();
  try {
    entry = { at_ms: now, lsn, size: await new DatadirSnapshot(tl, lsn).logicalSize(), error: null };
  } catch (e) {
    tl.log.warn({ err: e }, "could not compute the logical size");
    entry = { at_ms: now, lsn, size: null, error: e instanceof Error ? e.message : String(e) };
  }
  tl.metrics.storageOperation("logical size", secondsSince(start_ms));
  logicalSizes.set(tl, entry);
  return entry;
}

/** Where remote_consistent_lsn comes from (the node's RemoteTimelines, when remote storage is on). */
export interface RemoteLsnSource {
  remoteConsistentLsn(tl: Timeline): number | null;
}

export async function timelineInfo(tl: Timeline, walSources?: WalSources, remote?: RemoteLsnSource | null): Promise<Static<typeof TimelineInfo>> {
  const size = await logicalSizeNow(tl);
  const remoteLsn = remote?.remoteConsistentLsn(tl) ?? null;
  const st = tl.layerStats();
  const bp = tl.backpressureStats;
  const prev = tl.prevRecordLsn;
  return {
    tenant_id: tl.tenantId,
    timeline_id: tl.timelineId,
    ancestor_timeline_id: tl.ancestor?.timelineId ?? null,
    ancestor_lsn: tl.ancestor === null ? null : lsnToString(tl.ancestorLsn),
    last_record_lsn: lsnToString(tl.lastRecordLsn),
    prev_record_lsn: prev === null ? null : lsnToString(prev),
    disk_consistent_lsn: lsnToString(tl.diskConsistentLsn),
    remote_consistent_lsn: remoteLsn === null ? null : lsnToString(remoteLsn),
    latest_gc_cutoff_lsn: lsnToString(tl.latestGcCutoffLsn),
    initdb_lsn: lsnToString(tl.initdbLsn),
    current_logical_size: size.size,
    ...(size.error === null ? {} : { current_logical_size_error: size.error }),
    state: tl.state,
    wal_source: (walSources?.status(tl) as Static<typeof WalSourceStatus> | undefined) ?? null,
    layers: { delta: st.l0Delta.count + st.l1Delta.count, image: st.image.count, l0: st.l0Delta.count, frozen: st.frozen.count },
    ingest_backpressure: { state: bp.state, reason: bp.reason, delayed_ms: Math.round(bp.delayed_ms), stalled_ms: Math.round(bp.stalled_ms), waits: bp.waits },
  };
}

export const Checkpointed = Type.Object({ disk_consistent_lsn: Lsn }, { additionalProperties: false });
export const Compacted = Type.Object({ l0_compacted: Count, image_layers_created: Count }, { additionalProperties: false });
export const GcBody = Type.Object({ gc_horizon: Type.Optional(Type.Integer({ minimum: 0, description: "bytes of WAL" })) }, { additionalProperties: false });
export const GcDone = Type.Object({ layers_removed: Count, latest_gc_cutoff_lsn: Lsn }, { additionalProperties: false });

// -----------------------------------------------------------------------------------------
// Layers

export const LayerInfo = Type.Object(
  {
    name: Type.String(),
    kind: enumOf(["delta", "image"]),
    level: enumOf(["l0", "l1", "image"]),
    /** null for a layer file; "open" / "frozen" for the in-memory layers not flushed yet. */
    in_memory: Nullable(enumOf(["open", "frozen"])),
    key_start: KeyHex,
    key_end: KeyHex,
    lsn_start: Lsn,
    /** Exclusive; an image at L is [L, L+1); the open layer ends past last_record_lsn. */
    lsn_end: Lsn,
    size_bytes: Count,
    /** Neon's `remote`: the layer is evicted, its bytes only in remote storage (downloaded when a read needs it). */
    remote: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type LayerInfoT = Static<typeof LayerInfo>;

/** The timeline's layer files (by LSN, then key) and then its frozen and open in-memory layers. */
export function layerList(tl: Timeline): LayerInfoT[] {
  const layers = [...tl.layerMap.layers];
  layers.sort((x, y) => {
    const a = x.desc;
    const b = y.desc;
    return a.lsnRange.start - b.lsnRange.start || (a.keyRange.start < b.keyRange.start ? -1 : a.keyRange.start > b.keyRange.start ? 1 : 0);
  });
  const out: LayerInfoT[] = layers.map(({ desc: d, resident }) => ({
    name: d.fileName,
    kind: d.kind,
    level: d.kind === "image" ? "image" : d.keyRange.start === KEY_MIN && d.keyRange.end === KEY_MAX ? "l0" : "l1",
    in_memory: null,
    key_start: keyToHex(d.keyRange.start),
    key_end: keyToHex(d.keyRange.end),
    lsn_start: lsnToString(d.lsnRange.start),
    lsn_end: lsnToString(d.lsnRange.end),
    size_bytes: d.fileSize,
    remote: !resident,
  }));
  for (const m of tl.inMemoryLayers()) {
    out.push({
      name: `inmem-${lsnToString(m.start)}-${m.frozen ? lsnToString(m.end) : "open"}`,
      kind: "delta",
      level: "l0",
      in_memory: m.frozen ? "frozen" : "open",
      key_start: keyToHex(KEY_MIN),
      key_end: keyToHex(KEY_MAX),
      lsn_start: lsnToString(m.start),
      lsn_end: lsnToString(m.end),
      size_bytes: m.sizeBytes,
      remote: false,
    });
  }
  return out;
}

// -----------------------------------------------------------------------------------------
// LSN by time

export const LsnByTimestampQuery = Type.Object({ timestamp: Rfc3339 }, { additionalProperties: false });
export const LsnByTimestamp = Type.Object(
  {
    lsn: Lsn,
    kind: enumOf(["present", "past", "future", "nodata"]),
  },
  { additionalProperties: false },
);

export type TimelineDeletedT = Static<typeof TimelineDeleted>;
