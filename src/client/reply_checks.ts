/**
 * The client's checks of the HTTP API's replies (docs/http-api.md). The shapes themselves are
 * the server's TypeBox schemas (src/protocol/http_models.ts): the types PageserverHttpClient
 * returns are derived from them, so a shape change the client does not follow fails to
 * compile. What is checked here at run time is what a server of another version could break
 * under the client: that each reply is an object (or an array of them) with the fields
 * pagectl and the tests rely on, of the right kind. A reply that fails a check is a
 * ResponseShapeError, never a silent misread.
 */
import { PageserverError } from "../types/errors.js";
import { LsnByTimestamp, type RemoteCheck, type TenantSize, type TenantSizeSegment, type TimelineInfo } from "../protocol/http_models.js";

/** A response whose shape is not what this client understands (a server of another version). */
export class ResponseShapeError extends PageserverError {
  constructor(what: string, body: unknown) {
    const text = JSON.stringify(body) ?? String(body);
    super("internal", `unexpected ${what} from the pageserver: ${text.length > 200 ? `${text.slice(0, 200)}…` : text}`);
  }
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

export function expectRemoteCheck(x: unknown): RemoteCheck {
  const r = expectObject<Obj>("remote check", x, [], ["index_key"]);
  const lists = ["missing", "size_mismatch", "checksum_mismatch", "orphans", "unknown", "stale_indexes", "newer_generation_keys"];
  if (typeof r["ok"] !== "boolean" || typeof r["layers_named"] !== "number" || lists.some((f) => !Array.isArray(r[f])))
    throw new ResponseShapeError("remote check", x);
  return r as RemoteCheck;
}

export function expectTenantSize(x: unknown): TenantSize {
  const r = expectObject<Obj>("tenant size", x, ["id"]);
  if (typeof r["size"] !== "number" || !Array.isArray(r["segments"]) || !isObj(r["inputs"])) throw new ResponseShapeError("tenant size", x);
  for (const g of r["segments"])
    expectObject<TenantSizeSegment>("tenant size segment", g, ["timeline_id", "lsn_start", "lsn_end"], ["parent"]);
  return r as TenantSize;
}

export function expectTimelineInfo(x: unknown): TimelineInfo {
  return expectObject<TimelineInfo>(
    "timeline info",
    x,
    ["tenant_id", "timeline_id", "last_record_lsn", "state"],
    ["ancestor_timeline_id", "ancestor_lsn"],
  );
}

export function expectLsnByTimestamp(x: unknown): LsnByTimestamp {
  const r = expectObject<Obj>("get_lsn_by_timestamp answer", x, ["lsn", "kind"]);
  if (!LsnByTimestamp.properties.kind.anyOf.some((k) => k.const === r["kind"]))
    throw new ResponseShapeError("get_lsn_by_timestamp kind", x);
  return r as LsnByTimestamp;
}
