/**
 * WalSources: the node's running WAL sources, one per timeline that has one. Started at
 * startup for every timeline with a persisted source, and by the API; stopped before the
 * tenants shut down (so a final flush is reported to the source's slot).
 */
import type { Logger } from "pino";
import { ReplicationConnection } from "../pg/replication/connection.js";
import type { Timeline } from "../tenant/timeline.js";
import { NotFoundError } from "../types/errors.js";
import type { TenantManager } from "./tenant_manager.js";
import { slotNameFor, TimelineWalSource, type WalSourceStatus } from "./wal_source.js";

export class WalSources {
  private readonly sources = new Map<string, TimelineWalSource>();
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  private static keyOf(tl: Timeline): string {
    return `${tl.tenantId}/${tl.timelineId}`;
  }

  /** Start the persisted sources of every loaded timeline; a failing source is logged, not fatal. */
  async startAll(tenants: TenantManager): Promise<void> {
    for (const t of tenants.list()) {
      for (const tl of t.listTimelines()) {
        let cfg: ReturnType<typeof TimelineWalSource.load>;
        try {
          cfg = TimelineWalSource.load(tl);
        } catch (e) {
          this.log.error({ err: e, timeline_id: tl.timelineId }, "unreadable wal_source.json");
          continue;
        }
        if (cfg === null) continue;
        const src = new TimelineWalSource(tl, cfg, this.log.child({ tenant_id: t.id, timeline_id: tl.timelineId }));
        this.sources.set(WalSources.keyOf(tl), src);
        src.start().catch((e: unknown) => {
          src.markFailed(e);
          this.log.error({ err: e, timeline_id: tl.timelineId }, "WAL source failed to start");
        });
      }
    }
  }

  /** Set (or replace) the source of a timeline, persist it, start streaming. */
  async set(tl: Timeline, connstr: string, systemId: string | null = null, consistentFrom: string | null = null): Promise<TimelineWalSource> {
    await this.remove(tl, false);
    const src = new TimelineWalSource(
      tl,
      { connstr, slot_name: slotNameFor(tl.timelineId), system_id: systemId, consistent_from_lsn: consistentFrom },
      this.log.child({ timeline_id: tl.timelineId }),
    );
    await src.persist();
    this.sources.set(WalSources.keyOf(tl), src);
    await src.start();
    return src;
  }

  get(tl: Timeline): TimelineWalSource | undefined {
    return this.sources.get(WalSources.keyOf(tl));
  }

  status(tl: Timeline): WalSourceStatus | null {
    return this.get(tl)?.status() ?? null;
  }

  /** Stop streaming and forget the source; with dropSlot, also drop its slot on the source (best effort). */
  async remove(tl: Timeline, dropSlot: boolean): Promise<boolean> {
    const src = this.get(tl);
    if (src === undefined) return false;
    this.sources.delete(WalSources.keyOf(tl));
    await src.stop();
    TimelineWalSource.remove(tl);
    if (dropSlot) {
      try {
        const conn = await ReplicationConnection.connect({ connstr: src.config.connstr, connect_timeout_ms: 5000 });
        try {
          await conn.dropReplicationSlot(src.config.slot_name);
        } finally {
          await conn.close();
        }
      } catch (e) {
        this.log.warn({ err: e, slot: src.config.slot_name }, "could not drop the source's replication slot");
      }
    }
    return true;
  }

  requireFor(tl: Timeline): TimelineWalSource {
    const s = this.get(tl);
    if (s === undefined) throw new NotFoundError(`timeline ${tl.timelineId} has no WAL source`);
    return s;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.sources.values()].map((s) => s.stop().catch(() => undefined)));
    this.sources.clear();
  }
}
