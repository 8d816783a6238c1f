/**
 * The page service: Neon's pagestream (v2, v3) and `basebackup` over the PostgreSQL wire
 * protocol, on its own port (`listen_pg`, node:net on the main thread). docs/pagestream.md
 * describes the protocol as served.
 *
 * Owns the listener, the open connections (each a PageServiceConnection over a PgSocket),
 * the per-peer and per-tenant connection counts, the per-tenant GetPage token buckets, the
 * per-timeline last snapshot, and the page service metrics.
 *
 * Invariants:
 * - At most MAX_CONNECTIONS connections: node:net closes one more at once (maxConnections).
 * - At most `page_service_max_connections_per_peer` admitted connections per remote address:
 *   one more gets FATAL 53300 at once (before its startup packet, as PostgreSQL's postmaster
 *   answers when it can't start a backend; libpq reads it) and is closed. It is not counted.
 * - At most `page_service_max_connections_per_tenant` connections per tenant: a connection
 *   counts for the tenant of its tenant-scoped token (from its login) or of its latest
 *   command (pagestream, basebackup); the one beyond gets FATAL 53300 and is closed
 *   (connection.ts). Counts drop when a connection closes; a zero count is no entry,
 *   so each map holds at most MAX_CONNECTIONS entries.
 * - close() stops accepting, destroys every open connection (their sessions end: a pending
 *   LSN wait finishes into a closed socket and writes nothing), and resolves when every
 *   connection and the listener are closed.
 * - With a certificate (`tls`), a connection's frames after its SSLRequest travel over TLS
 *   (PgSocket.startTls) and a startup in clear text is refused (connection.ts); the limits
 *   above apply from the accept, before the handshake, and the startup timeout covers it.
 * - A tenant has a token bucket only while its getpage_throttle_rps is set (WeakMap: a
 *   dropped tenant's bucket goes with it).
 */
import { createServer, type Server as NetServer, type Socket } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { errorResponse } from "../../protocol/pg_wire.js";
import { type DatadirSnapshot, datadirAt } from "../../pgdata/reader.js";
import { getpageThrottle } from "../../tenant/config.js";
import type { Tenant } from "../../tenant/tenant.js";
import type { Timeline } from "../../tenant/timeline/index.js";
import { TokenBucket } from "../../tenant/throttle.js";
import { ConflictError } from "../../types/errors.js";
import type { TenantId } from "../../types/ids.js";
import type { Lsn } from "../../types/lsn.js";
import type { Auth } from "../auth.js";
import type { NodeConfig } from "../config.js";
import type { NodeTls } from "../tls.js";
import { PageServiceConnection } from "./connection.js";
import { PageServiceMetrics } from "./metrics.js";
import { PgSocket } from "./pg_socket.js";
import type { TenantWorkLimiter } from "../../tenant/heavy_work.js";
import type { TenantManager } from "../tenant_manager.js";

export const MAX_CONNECTIONS = 4096;
/** GetPage requests served from one snapshot at most (Neon's max_batch_size). */
export const MAX_BATCH_SIZE = 32;
export const SOCKET_LIMITS = {
  // Requests are ≤ 42 bytes, queries a few hundred, a JWT a few kB.
  max_frame_bytes: 64 * 1024,
  max_buffered_bytes: 256 * 1024,
  max_unwritten_bytes: 1024 * 1024,
};

/** A refused connection is destroyed if its FATAL isn't flushed within this. */
const REFUSE_FLUSH_TIMEOUT_MS = 1_000;

/** The node settings the page service reads (NodeConfig has them). */
export type PageServiceConfig = Pick<
  NodeConfig,
  "page_service_idle_timeout_ms" | "page_service_max_connections_per_tenant" | "page_service_max_connections_per_peer"
>;

/** Connections per tenant (a connection holds at most one tenant's slot). */
export class TenantConnectionCounts {
  readonly max_per_tenant: number;
  private readonly counts = new Map<TenantId, number>();

  constructor(max_per_tenant: number) {
    if (!(Number.isSafeInteger(max_per_tenant) && max_per_tenant > 0))
      throw new RangeError(`max_per_tenant must be a positive integer, got ${max_per_tenant}`);
    this.max_per_tenant = max_per_tenant;
  }

  /** Move a connection's slot from `from` (null: none yet) to `to`; false, and nothing moved, when `to` is full. */
  move(from: TenantId | null, to: TenantId): boolean {
    if (from === to) return true;
    const n = this.counts.get(to) ?? 0;
    if (n >= this.max_per_tenant) return false;
    this.counts.set(to, n + 1);
    if (from !== null) this.release(from);
    return true;
  }

  release(t: TenantId): void {
    const n = this.counts.get(t);
    if (n === undefined) throw new Error(`page service: releasing a connection slot of tenant ${t}, which holds none`);
    if (n === 1) this.counts.delete(t);
    else this.counts.set(t, n - 1);
  }

  count(t: TenantId): number {
    return this.counts.get(t) ?? 0;
  }
}

export class PageService {
  readonly metrics: PageServiceMetrics;
  private readonly tenants: TenantManager;
  private readonly log: Logger;
  private readonly auth: () => Auth | null;
  private server: NetServer | null = null;
  private readonly conns = new Map<Socket, PgSocket | null>();
  private readonly conf: PageServiceConfig;
  /** Admitted connections per remote address. */
  private readonly peers = new Map<string, number>();
  private readonly tenantConns: TenantConnectionCounts;
  private readonly buckets = new WeakMap<Tenant, TokenBucket>();
  /** Per timeline, the snapshot of its latest request: its directories and sizes decoded once. */
  private readonly snapshots = new WeakMap<Timeline, DatadirSnapshot>();
  private nextConnId = 1;
  /** Heavy requests per tenant (the basebackup command), shared with HTTP. */
  private readonly heavy: TenantWorkLimiter | null;
  /** The node's certificate: TLS after SSLRequest, clear-text startups refused; null: no TLS. */
  private readonly tls: NodeTls | null;

  /** `auth` is read per connection (the server loads its key in start()). */
  constructor(
    tenants: TenantManager,
    registry: Registry,
    log: Logger,
    auth: () => Auth | null,
    conf: PageServiceConfig,
    heavy: TenantWorkLimiter | null = null,
    tls: NodeTls | null = null,
  ) {
    this.tls = tls;
    this.tenants = tenants;
    this.conf = conf;
    this.tenantConns = new TenantConnectionCounts(conf.page_service_max_connections_per_tenant);
    this.log = log.child({ component: "page_service" });
    this.auth = auth;
    this.metrics = new PageServiceMetrics(registry);
    this.heavy = heavy;
  }

  /** Listen on host:port (0: any free port); resolves with the bound port. */
  async listen(host: string, port: number): Promise<number> {
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (sock) => this.accept(sock));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) => {
        const why = e.code === "EADDRINUSE" ? "the port is in use (another pageserver?)" : `${e.code ?? e.message}`;
        reject(new ConflictError(`cannot listen on ${host}:${port} (page service): ${why}`));
      });
      server.listen(port, host, () => {
        server.removeAllListeners("error");
        resolve();
      });
    });
    server.on("error", (e) => this.log.error({ err: e }, "page service listener error"));
    this.server = server;
    const addr = server.address();
    const bound = typeof addr === "object" && addr !== null ? addr.port : port;
    this.log.info({ listen: `${host}:${bound}` }, "page service listening");
    return bound;
  }

  private accept(sock: Socket): void {
    const id = this.nextConnId++;
    // A socket already gone has no address: such sockets share the peer "unknown" (they close at once).
    const peer = sock.remoteAddress ?? "unknown";
    const log = this.log.child({ conn_id: id, peer: `${peer}:${sock.remotePort}` });
    sock.on("error", (e) => log.info({ reason: e.message }, "page service socket error"));
    const fromPeer = this.peers.get(peer) ?? 0;
    if (fromPeer >= this.conf.page_service_max_connections_per_peer) {
      this.refuse(sock, peer, log);
      return;
    }
    this.peers.set(peer, fromPeer + 1);
    this.metrics.connections.inc();
    sock.on("close", () => {
      this.conns.delete(sock);
      this.metrics.connections.dec();
      const n = this.peers.get(peer)!;
      if (n === 1) this.peers.delete(peer);
      else this.peers.set(peer, n - 1);
    });
    const io = new PgSocket(sock, SOCKET_LIMITS);
    this.conns.set(sock, io);
    const conn = new PageServiceConnection(
      io,
      {
        tenants: this.tenants,
        auth: this.auth(),
        tls: this.tls?.context ?? null,
        idle_timeout_ms: this.conf.page_service_idle_timeout_ms,
        tenant_conns: this.tenantConns,
        metrics: this.metrics,
        heavy: this.heavy,
        pagestream: {
          metrics: this.metrics,
          max_batch_size: MAX_BATCH_SIZE,
          throttle: (t, n) => this.throttle(t, n),
          snapshot: (tl, lsn) => this.snapshot(tl, lsn),
        },
      },
      log,
    );
    void conn.run();
  }

  /** FATAL 53300 to a connection beyond its peer's cap, and close it (it holds no slot meanwhile). */
  private refuse(sock: Socket, peer: string, log: Logger): void {
    const max = this.conf.page_service_max_connections_per_peer;
    log.info({ max_connections_per_peer: max }, "page service connection refused: too many connections from this peer");
    this.metrics.refused("peer_limit");
    this.conns.set(sock, null);
    sock.on("close", () => this.conns.delete(sock));
    sock.resume(); // its startup packet is read and dropped, so the client's close is seen at once
    sock.end(errorResponse("53300", `too many connections from ${peer}: at most ${max} (page_service_max_connections_per_peer)`, "FATAL"));
    setTimeout(() => sock.destroy(), REFUSE_FLUSH_TIMEOUT_MS).unref();
  }

  /**
   * The datadir of `tl` at `lsn`. A snapshot is immutable (the state at an ingested LSN never
   * changes), so the last one is reused for the same LSN while it is at or above the GC cutoff.
   */
  private async snapshot(tl: Timeline, lsn: Lsn): Promise<DatadirSnapshot> {
    const s = this.snapshots.get(tl);
    if (s !== undefined && s.lsn === lsn && lsn >= tl.latestGcCutoffLsn) return s;
    const fresh = await datadirAt(tl, lsn);
    this.snapshots.set(tl, fresh);
    return fresh;
  }

  /** ms the caller waits before serving `n` GetPage of `tenant`; the wait is counted in the metric. */
  private throttle(tenant: Tenant, n: number): number {
    const conf = getpageThrottle(tenant.conf);
    if (conf === null) {
      this.buckets.delete(tenant);
      return 0;
    }
    const now = performance.now();
    let b = this.buckets.get(tenant);
    if (b === undefined) {
      b = new TokenBucket(conf.rps, conf.burst, now);
      this.buckets.set(tenant, b);
    } else if (!b.matches(conf.rps, conf.burst)) b.reconfigure(conf.rps, conf.burst);
    const wait_ms = b.take(n, now);
    if (wait_ms > 0) this.metrics.throttledFor(tenant.id, wait_ms / 1000);
    return wait_ms;
  }

  /**
   * Per open connection: bytes read and written, bytes queued unwritten now and at most ever
   * (flow control is visible here).
   */
  connectionStats(): { bytes_read: number; bytes_written: number; unwritten_bytes: number; peak_unwritten_bytes: number }[] {
    return [...this.conns].map(([raw, io]) => {
      // Over TLS the TLSSocket's counts: the protocol's bytes, not the records'.
      const s = io?.sock ?? raw;
      return {
        bytes_read: s.bytesRead,
        bytes_written: s.bytesWritten,
        unwritten_bytes: s.writableLength,
        peak_unwritten_bytes: io?.peak_unwritten_bytes ?? s.writableLength,
      };
    });
  }

  /** Connections a tenant holds now (its count against page_service_max_connections_per_tenant). */
  tenantConnections(tenant: TenantId): number {
    return this.tenantConns.count(tenant);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    const conns = [...this.conns];
    const closed = conns.map(([s]) => new Promise<void>((resolve) => s.once("close", () => resolve())));
    // Over TLS the TLSSocket owns the TCP socket's handle: destroying it closes both.
    for (const [s, io] of conns) (io?.sock ?? s).destroy();
    await Promise.all(closed);
    if (server === null) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.log.info("page service closed");
  }
}
