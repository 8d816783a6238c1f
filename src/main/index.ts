/**
 * src/main: the node. Entry point (pageserver.ts), configuration, the Server that wires the
 * page cache, worker pools, tenant manager, WAL sources, the HTTP API (uWebSockets.js) and the
 * page service (pagestream v2/v3 and basebackup over the PostgreSQL wire protocol: page_service,
 * page_service_conn, pagestream_handler, pg_socket, page_service_metrics), and Prometheus metrics.
 * The HTTP API: routes in api.ts / api_timeline.ts, declared with schemas (http/schema.ts), wire
 * models (http/models.ts), the error catalogue (http/errors.ts), the generated OpenAPI document
 * (http/openapi.ts), and the layer picture (layer_map_svg.ts).
 */
export * from "./config.js";
export { PageService } from "./page_service.js";
export { Server } from "./server.js";
export { TenantManager } from "./tenant_manager.js";
export { WalSources } from "./wal_sources.js";
export * from "./wal_source.js";
