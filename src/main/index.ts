/**
 * src/main: the node. Entry point (pageserver.ts), configuration, the Server that wires the
 * page cache, worker pools, tenant manager, WAL sources, the HTTP API (uWebSockets.js) and the
 * page service (pagestream v2/v3 and basebackup over the PostgreSQL wire protocol: page_service,
 * page_service_conn, pagestream_handler, pg_socket, page_service_metrics), and Prometheus metrics.
 */
export * from "./config.js";
export { PageService } from "./page_service.js";
export { Server } from "./server.js";
export { TenantManager } from "./tenant_manager.js";
export { WalSources } from "./wal_sources.js";
export * from "./wal_source.js";
