/**
 * The JSON shapes of the HTTP API v1 (docs/http-api.md) as a client sees them: snake_case,
 * LSNs as "X/Y" strings, times as RFC 3339 strings. Only the fields pagectl and the tests
 * read are required; the server may send more (the client keeps them, typed as unknown).
 *
 * These are the client's view, declared here because src/client may not import src/main
 * (where the server's own models live); a shape change on the server shows up as a failing
 * pagectl end-to-end test, not as a silent misread: every response is checked with the
 * guards below before it is returned.
 */
import { PageserverError } from "../types/errors.js";

export interface NodeStatus {
  status: string;
  version: string;
  git_commit: string;
  started_at: string;
  [k: string]: unknown;
}

export interface TenantSummary {
  id: string;
  state: string;
  [k: string]: unknown;
}

export interface TenantInfo extends TenantSummary {
  broken_reason?: string;
  /** The number of timelines. */
  timelines: number;
  /** Their ids, sorted. */
  timeline_ids?: string[];
  /** The tenant's config overrides. */
  config?: Record<string, unknown>;
}

export interface TenantConfig {
  overrides: Record<string, unknown>;
  effective?: Record<string, unknown>;
}

export interface WalSourceInfo {
  connstr: string;
  slot_name: string;
  state: string;
  last_received_lsn: string | null;
  last_error: string | null;
  next_retry_at?: string | null;
  records_ingested?: number;
  [k: string]: unknown;
}

export interface TimelineInfo {
  tenant_id: string;
  timeline_id: string;
  ancestor_timeline_id: string | null;
  ancestor_lsn: string | null;
  last_record_lsn: string;
  disk_consistent_lsn: string;
  latest_gc_cutoff_lsn?: string;
  current_logical_size?: number | null;
  state: string;
  wal_source: WalSourceInfo | null;
  [k: string]: unknown;
}

export interface TimelineCreateRequest {
  new_timeline_id?: string;
  ancestor_timeline_id?: string;
  ancestor_start_lsn?: string;
  ancestor_start_time?: string;
  start_lsn?: string;
  import_pgdata?: string;
  wal_source?: { connstr: string };
}

/** One layer of a timeline (`GET …/layer`). */
export interface LayerInfo {
  name: string;
  kind: string;
  level?: string;
  key_start?: string;
  key_end?: string;
  lsn_start?: string;
  lsn_end?: string;
  size_bytes?: number;
  [k: string]: unknown;
}

export type LsnByTimestampKind = "present" | "past" | "future" | "nodata";

export interface LsnByTimestamp {
  lsn: string;
  kind: LsnByTimestampKind;
  [k: string]: unknown;
}

/** A response whose shape is not what this client understands (a server of another version). */
export class ResponseShapeError extends PageserverError {
  constructor(what: string, body: unknown) {
    const text = JSON.stringify(body) ?? String(body);
    super("internal", `unexpected ${what} from the pageserver: ${text.length > 200 ? `${text.slice(0, 200)}…` : text}`);
  }
}

/** GET …/remote_check: a timeline's index against its objects in remote storage. */
export interface RemoteCheck {
  index_key: string | null;
  index_generation: number | null;
  layers_named: number;
  missing: string[];
  size_mismatch: { key: string; index_bytes: number; object_bytes: number }[];
  checksum_mismatch: string[];
  orphans: string[];
  unknown: string[];
  stale_indexes: string[];
  newer_generation_keys: string[];
  ok: boolean;
  [k: string]: unknown;
}

export function expectRemoteCheck(x: unknown): RemoteCheck {
  const r = expectObject<RemoteCheck>("remote check", x, [], ["index_key"]);
  const lists = ["missing", "size_mismatch", "checksum_mismatch", "orphans", "unknown", "stale_indexes", "newer_generation_keys"];
  if (typeof r.ok !== "boolean" || typeof r.layers_named !== "number" || lists.some((f) => !Array.isArray(r[f]))) throw new ResponseShapeError("remote check", x);
  return r;
}

/** GET /v1/tenant/:id/size: the tenant size model (docs/storage.md, Tenant size). */
export interface TenantSizeSegment {
  timeline_id: string;
  parent: string | null;
  lsn_start: string;
  lsn_end: string;
  logical_size_bytes: number | null;
  wal_bytes: number;
  size_bytes: number;
}
export interface TenantSize {
  id: string;
  size: number;
  segments: TenantSizeSegment[];
  inputs: Record<string, unknown>;
}

export function expectTenantSize(x: unknown): TenantSize {
  const r = expectObject<TenantSize>("tenant size", x, ["id"]);
  if (typeof r.size !== "number" || !Array.isArray(r.segments) || !isObj(r.inputs)) throw new ResponseShapeError("tenant size", x);
  for (const g of r.segments) expectObject<TenantSizeSegment>("tenant size segment", g, ["timeline_id", "lsn_start", "lsn_end"], ["parent"]);
  return r;
}

type Obj = Record<string, unknown>;

function isObj(x: unknown): x is Obj {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** `x` as an object whose `fields` are strings (or, for `nullable`, null too), else ResponseShapeError. */
export function expectObject<T>(what: string, x: unknown, fields: readonly string[], nullable: readonly string[] = []): T {
  if (!isObj(x)) throw new ResponseShapeError(what, x);
  for (const f of fields) if (typeof x[f] !== "string") throw new ResponseShapeError(what, x);
  for (const f of nullable) if (x[f] !== null && typeof x[f] !== "string") throw new ResponseShapeError(what, x);
  return x as T;
}

/** `x` as an array of objects with `fields`, else ResponseShapeError. */
export function expectArray<T>(what: string, x: unknown, fields: readonly string[]): T[] {
  if (!Array.isArray(x)) throw new ResponseShapeError(what, x);
  return x.map((e) => expectObject<T>(what, e, fields));
}

export function expectTimelineInfo(x: unknown): TimelineInfo {
  return expectObject<TimelineInfo>("timeline info", x, ["tenant_id", "timeline_id", "last_record_lsn", "state"], ["ancestor_timeline_id", "ancestor_lsn"]);
}

export function expectLsnByTimestamp(x: unknown): LsnByTimestamp {
  const r = expectObject<LsnByTimestamp>("get_lsn_by_timestamp answer", x, ["lsn", "kind"]);
  if (!["present", "past", "future", "nodata"].includes(r.kind)) throw new ResponseShapeError("get_lsn_by_timestamp kind", x);
  return r;
}
