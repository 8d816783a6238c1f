/**
 * src/main: the node. What each folder holds:
 * - here: the entry point (pageserver.ts), node configuration (config.ts), the Server that
 *   wires the page cache, worker pools, tenant manager, WAL sources, HTTP API and page service
 *   together (server.ts), the tenant manager, auth, build info, Prometheus metrics (metrics.ts;
 *   delta_counter.ts: counters read from running totals at scrape time), log
 *   serializers, and the node-wide logical-size query limiter.
 * - http/: the HTTP framework (http_server.ts: routing, auth, limits, streaming) over a wire
 *   adapter (wire.ts: uws_adapter.ts or node_adapter.ts, chosen by adapter_choice.ts), route declarations with schemas (schema.ts), the error catalogue (errors.ts),
 *   the OpenAPI document (openapi.ts), wire models built from domain objects (models.ts; the
 *   schemas are src/protocol/http_models.ts), and the routes themselves
 *   (tenant_routes.ts, timeline_routes.ts, scope_checks.ts, layer_map_svg.ts).
 * - page_service/: pagestream v2/v3 and basebackup over the PostgreSQL wire protocol
 *   (page_service.ts: the listener; connection.ts: one connection; pagestream_handler.ts: one
 *   pagestream session; pg_socket.ts: frames with flow control; metrics.ts).
 * - wal_source/: timelines streaming WAL from a PostgreSQL source (timeline_wal_source.ts: one
 *   timeline's stream; wal_sources.ts: the node's running sources; source_connect.ts: connection
 *   strings, probes and bootstrap).
 * - remote/: remote storage wiring (remote_timelines.ts) and disk-usage eviction of layers the
 *   bucket holds (disk_usage_eviction.ts).
 */
export * from "./config.js";
export { PageService } from "./page_service/page_service.js";
export { Server } from "./server.js";
export { TenantManager } from "./tenant_manager.js";
export { WalSources } from "./wal_source/wal_sources.js";
export * from "./wal_source/source_connect.js";
export * from "./wal_source/timeline_wal_source.js";
