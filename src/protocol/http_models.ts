/**
 * The wire models of the HTTP API v1 (docs/http-api.md): the snake_case JSON shapes as
 * TypeBox schemas, each with its TypeScript type of the same name (`Static<typeof …>`). One
 * declaration serves both ends: the server's route declarations, request validation, reply
 * checks (HttpServer.checkResponses) and OpenAPI document (src/main/http), and the client's
 * return types (src/client/http_client.ts, pagectl), so a shape change that one end does not
 * follow fails to compile instead of misreading at run time.
 *
 * LSNs on the wire are PostgreSQL's "X/Y" strings; ids 32 lower-case hex characters; keys
 * 36 upper-case hex characters (18 bytes); times RFC 3339.
 *
 * Enumerations of domain states (tenant, timeline, backpressure) are spelled here as the
 * wire's literals, because src/protocol may not import src/tenant; src/main/http/models.ts
 * checks at compile time that they are the same sets as the domain's enums.
 */
import { type Static, type TLiteral, type TSchema, type TUnion, Type } from "@sinclair/typebox";
import type { ErrorCode } from "../types/errors.js";

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
/**
 * A tenant's or timeline's name (pagectl accepts it wherever an id goes): 1..63 of
 * [A-Za-z0-9_.-]. A name that reads as an id is refused by the server (it could never be
 * told apart from one).
 */
export const NAME_MAX_CHARS = 63;
export const Name = Type.String({
  pattern: `^[A-Za-z0-9_.-]{1,${NAME_MAX_CHARS}}$`,
  description: `a name: 1..${NAME_MAX_CHARS} of A-Z a-z 0-9 _ . - (unique per node for tenants, per tenant for timelines)`,
});
const AnyObject = Type.Record(Type.String(), Type.Unknown(), { description: "an object" });

/**
 * Every error code a reply may carry, in the order of the HTTP error catalogue
 * (src/main/http/errors.ts), which is the order the OpenAPI document lists them. A Record
 * over ErrorCode, so a code added to or removed from src/types/errors.ts fails to compile here.
 */
const ERROR_CODE_SET: Record<ErrorCode, true> = {
  invalid_argument: true,
  unauthorized: true,
  forbidden: true,
  not_found: true,
  gc_cutoff: true,
  conflict: true,
  remote_storage_disabled: true,
  payload_too_large: true,
  uri_too_long: true,
  unsupported: true,
  source_unavailable: true,
  limit_reached: true,
  internal: true,
  corrupt: true,
  bad_state: true,
  shutdown: true,
  lsn_timeout: true,
};
const WIRE_ERROR_CODES = Object.keys(ERROR_CODE_SET) as ErrorCode[];

/** A value the error body's `code` may hold (a reply of another version may carry one this build does not know). */
export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === "string" && Object.hasOwn(ERROR_CODE_SET, x);
}

/** The body of every non-2xx reply. */
export const ApiError = Type.Object(
  { error: Type.String({ description: "what was wrong, with which input" }), code: enumOf(WIRE_ERROR_CODES) },
  { additionalProperties: false },
);
export type ApiError = Static<typeof ApiError>;

// -----------------------------------------------------------------------------------------
// Node

export const Status = Type.Object(
  {
    status: Type.Literal("ok"),
    version: Type.String(),
    git_commit: Type.String(),
    started_at: Type.String(),
    http_server: Type.Union([Type.Literal("uws"), Type.Literal("node")], {
      description: "the HTTP server serving: uWebSockets.js or node:http (node config http_server)",
    }),
    tls: Type.Boolean({ description: "whether the node has a TLS certificate (--tls-cert): the page service then requires TLS" }),
  },
  { additionalProperties: false },
);
export type Status = Static<typeof Status>;
/** GET /v1/remote_storage: the node's remote storage, and whether it answered a probe just now. */
export const RemoteStorageStatus = Type.Object(
  {
    configured: Type.Boolean(),
    description: Nullable(Type.String({ description: "s3://bucket/prefix or file:///path; null without remote storage" })),
    reachable: Nullable(Type.Boolean()),
    error: Nullable(Type.String()),
  },
  { additionalProperties: false },
);
export type RemoteStorageStatus = Static<typeof RemoteStorageStatus>;
export const Failpoints = Type.Record(Type.String(), Type.String(), { description: "active failpoints: name → action" });
export type Failpoints = Static<typeof Failpoints>;
export const FailpointsBody = Type.Array(Type.Object({ name: Type.String(), actions: Type.String() }, { additionalProperties: false }), {
  maxItems: 1000,
});
export type FailpointsBody = Static<typeof FailpointsBody>;

// -----------------------------------------------------------------------------------------
// Tenants

export const TenantCreate = Type.Object(
  { new_tenant_id: Type.Optional(Id), config: Type.Optional(AnyObject), name: Type.Optional(Name) },
  { additionalProperties: false },
);
export type TenantCreate = Static<typeof TenantCreate>;
export const TenantCreated = Type.Object({ id: Id }, { additionalProperties: false });
export type TenantCreated = Static<typeof TenantCreated>;
/** src/tenant/tenant.ts TenantState's values. */
export const TenantStateName = enumOf(["Loading", "Attaching", "Active", "Stopping", "Broken"]);
export type TenantStateName = Static<typeof TenantStateName>;
export const TenantListItem = Type.Object({ id: Id, state: TenantStateName, name: Nullable(Name) }, { additionalProperties: false });
export type TenantListItem = Static<typeof TenantListItem>;
export const TenantInfo = Type.Object(
  {
    id: Id,
    state: TenantStateName,
    name: Nullable(Name),
    broken_reason: Type.Optional(Type.String()),
    /** How many timelines (timeline_ids lists them, sorted). */
    timelines: Count,
    timeline_ids: Type.Array(Id),
    /** The tenant's config overrides (GET …/config has the effective values too). */
    config: AnyObject,
  },
  { additionalProperties: false },
);
export type TenantInfo = Static<typeof TenantInfo>;
export const TenantConfig = Type.Object({ overrides: AnyObject, effective: AnyObject }, { additionalProperties: false });
/** PUT /v1/tenant/:id/name and …/timeline/:id/name: a new name, or null to remove it. */
export const NameBody = Type.Object({ name: Nullable(Name) }, { additionalProperties: false });
export type NameBody = Static<typeof NameBody>;
export type TenantConfig = Static<typeof TenantConfig>;
/** PUT …/config's reply: the overrides now (GET …/config has the effective values too). */
export const TenantConfigSet = Type.Object({ overrides: AnyObject }, { additionalProperties: false });
export type TenantConfigSet = Static<typeof TenantConfigSet>;

/** What became of a WAL source's slot when the source was removed: null when there was none. */
export const SlotDrop = Type.Object(
  { slot_dropped: Type.Boolean(), slot_error: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export type SlotDrop = Static<typeof SlotDrop>;
export const TimelineDeleted = Type.Object(
  { tenant_id: Id, timeline_id: Id, wal_source: Nullable(SlotDrop) },
  { additionalProperties: false },
);
export type TimelineDeleted = Static<typeof TimelineDeleted>;
export const TenantDeleted = Type.Object({ tenant_id: Id, timelines: Type.Array(TimelineDeleted) }, { additionalProperties: false });
export type TenantDeleted = Static<typeof TenantDeleted>;
/** Attach (routes only with remote storage): the generation the control plane issued, higher than any before. */
export const TenantAttach = Type.Object(
  { generation: Type.Integer({ minimum: 1, maximum: 0xffff_ffff, description: "generation of this attachment (RFC 025)" }) },
  { additionalProperties: false },
);
export type TenantAttach = Static<typeof TenantAttach>;
export const TenantDetached = Type.Object({ tenant_id: Id }, { additionalProperties: false });
export type TenantDetached = Static<typeof TenantDetached>;
const Keys = Type.Array(Type.String());
/** src/remote/remote_check.ts: a timeline's index against its bucket objects. */
export const RemoteCheck = Type.Object(
  {
    index_key: Nullable(Type.String()),
    index_generation: Nullable(Type.Integer({ minimum: 1 })),
    layers_named: Count,
    missing: Keys,
    size_mismatch: Type.Array(
      Type.Object({ key: Type.String(), index_bytes: Count, object_bytes: Count }, { additionalProperties: false }),
    ),
    checksum_mismatch: Keys,
    orphans: Keys,
    unknown: Keys,
    stale_indexes: Keys,
    newer_generation_keys: Keys,
    ok: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type RemoteCheck = Static<typeof RemoteCheck>;

/** GET /v1/tenant/:id/size: the tenant size model (src/tenant/size_model.ts) with its inputs. */
export const TenantSizeSegment = Type.Object(
  {
    timeline_id: Id,
    parent: Nullable(Id),
    lsn_start: Lsn,
    lsn_end: Lsn,
    logical_size_bytes: Nullable(
      Type.Integer({ minimum: 0, description: "the logical size at lsn_start; null when the parent's retained history holds it" }),
    ),
    wal_bytes: Count,
    size_bytes: Count,
  },
  { additionalProperties: false },
);
export type TenantSizeSegment = Static<typeof TenantSizeSegment>;
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
export type TenantSize = Static<typeof TenantSize>;

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
export type WalSourceStatus = Static<typeof WalSourceStatus>;
export const WalSourceSet = Type.Object(
  { ...WalSourceStatus.properties, old_slot: Type.Optional(SlotDrop) },
  { additionalProperties: false },
);
export type WalSourceSet = Static<typeof WalSourceSet>;
export const WalSourceRemoved = Type.Object({ removed: Type.Literal(true), ...SlotDrop.properties }, { additionalProperties: false });
export type WalSourceRemoved = Static<typeof WalSourceRemoved>;
export const WalSourceBody = Type.Object({ connstr: Type.String({ maxLength: 4096 }) }, { additionalProperties: false });
export type WalSourceBody = Static<typeof WalSourceBody>;

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
    name: Type.Optional(Name),
  },
  { additionalProperties: false },
);
export type TimelineCreate = Static<typeof TimelineCreate>;

/** src/tenant/timeline/core.ts TimelineState's values. */
export const TimelineStateName = enumOf(["Loading", "Active", "Stopping", "Broken"]);
export type TimelineStateName = Static<typeof TimelineStateName>;
/** src/tenant/ingest_gate.ts Backpressure's values. */
export const BackpressureName = enumOf(["none", "delayed", "stalled"]);
export type BackpressureName = Static<typeof BackpressureName>;

export const TimelineInfo = Type.Object(
  {
    tenant_id: Id,
    timeline_id: Id,
    name: Nullable(Name),
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
    state: TimelineStateName,
    wal_source: Nullable(WalSourceStatus),
    layers: Type.Object({ delta: Count, image: Count, l0: Count, frozen: Count }, { additionalProperties: false }),
    ingest_backpressure: Type.Object(
      { state: BackpressureName, reason: Nullable(Type.String()), delayed_ms: Count, stalled_ms: Count, waits: Count },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type TimelineInfo = Static<typeof TimelineInfo>;

export const Checkpointed = Type.Object({ disk_consistent_lsn: Lsn }, { additionalProperties: false });
export type Checkpointed = Static<typeof Checkpointed>;
export const Compacted = Type.Object({ l0_compacted: Count, image_layers_created: Count }, { additionalProperties: false });
export type Compacted = Static<typeof Compacted>;
export const GcBody = Type.Object(
  { gc_horizon: Type.Optional(Type.Integer({ minimum: 0, description: "bytes of WAL" })) },
  { additionalProperties: false },
);
export type GcBody = Static<typeof GcBody>;
export const GcDone = Type.Object({ layers_removed: Count, latest_gc_cutoff_lsn: Lsn }, { additionalProperties: false });
export type GcDone = Static<typeof GcDone>;

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
export type LayerInfo = Static<typeof LayerInfo>;

// -----------------------------------------------------------------------------------------
// LSN by time

export const LsnByTimestampQuery = Type.Object({ timestamp: Rfc3339 }, { additionalProperties: false });
export type LsnByTimestampQuery = Static<typeof LsnByTimestampQuery>;
export const LsnByTimestamp = Type.Object(
  {
    lsn: Lsn,
    kind: enumOf(["present", "past", "future", "nodata"]),
  },
  { additionalProperties: false },
);
export type LsnByTimestamp = Static<typeof LsnByTimestamp>;
