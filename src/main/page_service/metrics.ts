/**
 * Metrics of the page service, registered on the node's prom-client Registry. Names as
 * Neon's (a global histogram carries its `_global` suffix: Neon's unsuffixed one is per
 * timeline). Global (not per tenant: a node hosts thousands), except the throttle counter,
 * which only tenants that were actually throttled get a series of.
 *
 * Hot-path cost: the per-query-type histogram children are resolved once here, so serving a
 * request costs one observe() (a batch of GetPage: one observe per request of the batch's time,
 * plus one for the batch size).
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { type ErrorCode, PageserverError } from "../../types/errors.js";

export const SMGR_QUERY_TYPES = ["get_page_at_lsn", "get_rel_exists", "get_rel_size", "get_db_size", "get_slru_segment"] as const;
export type SmgrQueryType = (typeof SMGR_QUERY_TYPES)[number];
/** Why a connection was refused: its peer or its tenant holds the most connections allowed. */
export type RefusedReason = "peer_limit" | "tenant_limit";
/** Why the server closed a connection: no request in the idle timeout, or its token's exp passed. */
export type ClosedReason = "idle_timeout" | "token_expired";

/** Error series shown at 0 from the start: those the alert rules (deploy/prometheus) watch. */
const ERROR_SERIES: readonly (ErrorCode | "internal")[] = ["internal", "lsn_timeout", "corrupt", "not_found"];

const LATENCY_BUCKETS_S = [
  0.00001, 0.00003, 0.0001, 0.0003, 0.0006, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 24, 32];

type Observer = { observe(v: number): void };

export class PageServiceMetrics {
  private readonly byType: Record<SmgrQueryType, Observer>;
  readonly batchSize: Histogram;
  readonly connections: Gauge;
  private readonly throttled: Counter<"tenant_id">;
  private readonly refusedTotal: Counter<"reason">;
  private readonly closedTotal: Counter<"reason">;
  private readonly errorsTotal: Counter<"code">;

  constructor(registry: Registry) {
    const smgr = new Histogram({
      name: "pageserver_smgr_query_seconds_global",
      help: "Time to serve a page service request, from its batch's start (after throttling) to its answer being queued",
      labelNames: ["smgr_query_type"],
      buckets: LATENCY_BUCKETS_S,
      registers: [registry],
    });
    // Every query type shows (at 0) before its first request: rate() and dashboards need the series.
    for (const t of SMGR_QUERY_TYPES) smgr.zero({ smgr_query_type: t });
    const child = (t: SmgrQueryType): Observer => smgr.labels({ smgr_query_type: t });
    this.byType = {
      get_page_at_lsn: child("get_page_at_lsn"),
      get_rel_exists: child("get_rel_exists"),
      get_rel_size: child("get_rel_size"),
      get_db_size: child("get_db_size"),
      get_slru_segment: child("get_slru_segment"),
    };
    this.batchSize = new Histogram({
      name: "pageserver_page_service_batch_size",
      help: "GetPage requests served together from one snapshot (consecutive, same effective LSN)",
      buckets: BATCH_BUCKETS,
      registers: [registry],
    });
    this.connections = new Gauge({
      name: "pageserver_page_service_connections",
      help: "Open page service connections",
      registers: [registry],
    });
    this.throttled = new Counter({
      name: "pageserver_tenant_throttled_seconds_total",
      help: "Time GetPage requests of a tenant waited for its getpage_throttle_rps token bucket",
      labelNames: ["tenant_id"],
      registers: [registry],
    });
    this.refusedTotal = new Counter({
      name: "pageserver_page_service_connections_refused_total",
      help: "Page service connections refused with FATAL 53300: their peer (remote address) or tenant held the most connections allowed",
      labelNames: ["reason"],
      registers: [registry],
    });
    this.closedTotal = new Counter({
      name: "pageserver_page_service_connections_closed_total",
      help: "Page service connections the server closed: idle (waited on the client for page_service_idle_timeout_ms) or token expired",
      labelNames: ["reason"],
      registers: [registry],
    });
    this.errorsTotal = new Counter({
      name: "pageserver_page_service_request_errors_total",
      help: "Page service requests and commands answered with an error, by error code (internal: an unexpected error, a bug)",
      labelNames: ["code"],
      registers: [registry],
    });
    // Every series from the start (0), so a rate() sees the first one.
    for (const reason of ["peer_limit", "tenant_limit"] satisfies RefusedReason[]) this.refusedTotal.inc({ reason }, 0);
    for (const reason of ["idle_timeout", "token_expired"] satisfies ClosedReason[]) this.closedTotal.inc({ reason }, 0);
    for (const code of ERROR_SERIES) this.errorsTotal.inc({ code }, 0);
  }

  /** A request or command answered with an error (the catalogue's code; bounded label set). */
  requestError(e: unknown): void {
    this.errorsTotal.inc({ code: e instanceof PageserverError ? e.code : "internal" });
  }

  refused(reason: RefusedReason): void {
    this.refusedTotal.inc({ reason });
  }

  closed(reason: ClosedReason): void {
    this.closedTotal.inc({ reason });
  }

  observe(type: SmgrQueryType, seconds: number): void {
    this.byType[type].observe(seconds);
  }

  throttledFor(tenantId: string, seconds: number): void {
    this.throttled.inc({ tenant_id: tenantId }, seconds);
  }
}
