/**
 * The page service: Neon's pagestream (v2, v3) and `basebackup` over the PostgreSQL wire
 * protocol, on its own port (`listen_pg`, node:net on the main thread). docs/pagestream.md
 * describes the protocol as served.
 *
 * Owns the listener, the open connections (each a PageServiceConnection over a PgSocket),
 * the per-tenant GetPage token buckets, the per-timeline last snapshot, and the page service
 * metrics.
 *
 * Invariants:
 * - At most MAX_CONNECTIONS connections: node:net closes one more at once (maxConnections).
 * - close() stops accepting, destroys every open connection (their sessions end: a pending
 *   LSN wait finishes into a closed socket and writes nothing), and resolves when every
 *   connection and the listener are closed.
 * - A tenant has a token bucket only while its getpage_throttle_rps is set (WeakMap: a
 *   dropped tenant's bucket goes with it).
 */
import { createServer, type Server as NetServer, type Socket } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { type DatadirSnapshot, datadirAt } from "../pgdata/reader.js";
import { getpageThrottle } from "../tenant/config.js";
import type { Tenant } from "../tenant/tenant.js";
import type { Timeline } from "../tenant/timeline.js";
import { TokenBucket } from "../tenant/throttle.js";
import type { Auth } from "./auth.js";
import { PageServiceConnection } from "./page_service_conn.js";
import { PageServiceMetrics } from "./page_service_metrics.js";
import { PgSocket } from "./pg_socket.js";
import type { TenantWorkLimiter } from "../tenant/heavy_work.js";
import type { TenantManager } from "./tenant_manager.js";

export const MAX_CONNECTIONS = 4096;
/** GetPage requests served from one snapshot at most (Neon's max_batch_size). */
export const MAX_BATCH_SIZE = 32;
const SOCKET_LIMITS = {
  // Requests are ≤ 42 bytes, queries a few hundred, a JWT a few kB.
  max_frame_bytes: 64 * 1024,
  max_buffered_bytes: 256 * 1024,
  max_unwritten_bytes: 1024 * 1024,
};

export class PageService {
  readonly metrics: PageServiceMetrics;
  private readonly tenants: TenantManager;
  private readonly log: Logger;
  private readonly auth: () => Auth | null;
  private server: NetServer | null = null;
  private readonly conns = new Set<Socket>();
  private readonly buckets = new WeakMap<Tenant, TokenBucket>();
  /** Per timeline, the snapshot of its latest request: its directories and sizes decoded once. */
  private readonly snapshots = new WeakMap<Timeline, DatadirSnapshot>();
  private nextConnId = 1;
  /** Heavy requests per tenant (the basebackup command), shared with HTTP. */
  private readonly heavy: TenantWorkLimiter | null;

  /** `auth` is read per connection (the server loads its key in start()). */
  constructor(tenants: TenantManager, registry: Registry, log: Logger, auth: () => Auth | null, heavy: TenantWorkLimiter | null = null) {
    this.tenants = tenants;
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
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
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
    const log = this.log.child({ conn_id: id, peer: `${sock.remoteAddress}:${sock.remotePort}` });
    this.conns.add(sock);
    this.metrics.connections.inc();
    sock.on("error", (e) => log.info({ reason: e.message }, "page service socket error"));
    sock.on("close", () => {
      this.conns.delete(sock);
      this.metrics.connections.dec();
    });
    const io = new PgSocket(sock, SOCKET_LIMITS);
    const conn = new PageServiceConnection(
      io,
      {
        tenants: this.tenants,
        auth: this.auth(),
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

  /**
   * The datadir of `tl` at `lsn`. A snapshot is immutable (the state at an ingested LSN never
   * changes), so the last one is reused for the same LSN while it is at or above the GC cutoff.
   */
  private async snapshot(tl: Timeline, lsn: number): Promise<DatadirSnapshot> {
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

  /** Per open connection: bytes read and written, and bytes queued unwritten (flow control is visible here). */
  connectionStats(): { bytes_read: number; bytes_written: number; unwritten_bytes: number }[] {
    return [...this.conns].map((s) => ({ bytes_read: s.bytesRead, bytes_written: s.bytesWritten, unwritten_bytes: s.writableLength }));
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    const closed = [...this.conns].map((s) => new Promise<void>((resolve) => s.once("close", () => resolve())));
    for (const s of this.conns) s.destroy();
    await Promise.all(closed);
    if (server === null) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.log.info("page service closed");
  }
}
