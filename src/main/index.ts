/**
 * src/main: the node. Entry point (pageserver.ts), configuration, the Server that wires the
 * page cache, worker pools, tenant manager, WAL sources and the HTTP API (uWebSockets.js),
 * and Prometheus metrics.
 */
export * from "./config.js";
export { Server } from "./server.js";
export { TenantManager } from "./tenant_manager.js";
export { WalSources } from "./wal_sources.js";
export * from "./wal_source.js";
