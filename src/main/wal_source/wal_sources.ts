/**
 * WalSources: the node's running WAL sources, one per timeline that has one. Started at
 * startup for every timeline with a persisted source (retrying while a source is down), and
 * by the API; stopped before the tenants shut down (so a final flush is reported to the
 * source's slot).
 *
 * Changing a source never breaks a working one: the new source is probed first (reachable,
 * settings, same system); only then is the old one stopped and the new one started. The old
 * source's slot is dropped once the new source streams; when it can't be (still in use, the
 * old server gone), the reply says so and the log has a WARN.
 *
 * One change at a time per timeline: set, setDeferred and remove of one timeline run one
 * after another in call order (a per-timeline chain), so two concurrent PUTs leave exactly one
 * source running, the last one, and never one that nothing references. After stopAll no
 * change starts (ShutdownError), and one already running stops the source it made.
 */
import type { Logger } from "pino";
import { ReplicationConnection } from "../../pg/replication/connection.js";
import type { Timeline } from "../../tenant/timeline/index.js";
import { NotFoundError, ShutdownError } from "../../types/errors.js";
import type { Lsn } from "../../types/lsn.js";
import type { TenantManager } from "../tenant_manager.js";
import { type ConnstrPolicy, parseConnstr, probeSource, publicSourceError, type SourceInfo, slotNameFor } from "./source_connect.js";
import { TimelineWalSource, timelineSystemId, type WalSourceStatus } from "./timeline_wal_source.js";

/** How long a switch waits for the new source to stream before it leaves the old slot alone. */
const SWITCH_STREAMING_WAIT_MS = 10_000;

/** Whether a slot on a source was dropped; the error when it wasn't. */
export interface SlotDrop {
  slot_dropped: boolean;
  slot_error?: string;
}

export class WalSources {
  private readonly sources = new Map<string, TimelineWalSource>();
  readonly log: Logger;
  private readonly policy: ConnstrPolicy;
  /** Per timeline key, the tail of its chain of changes (only while one is queued or running). */
  private readonly chains = new Map<string, Promise<void>>();
  private closed = false;

  /** The flush position reported to a timeline's source (see TimelineWalSource). */
  private readonly flushLsnOf: (tl: Timeline) => Lsn;

  constructor(
    log: Logger,
    flushLsnOf: (tl: Timeline) => Lsn = (tl) => tl.diskConsistentLsn,
    policy: ConnstrPolicy = { allowUnixSockets: false },
  ) {
    this.log = log;
    this.flushLsnOf = flushLsnOf;
    this.policy = policy;
  }

  /** Check a connection string from a request against libpq's syntax and this node's policy (InvalidArgumentError). */
  parseConnstr(x: unknown): string {
    return parseConnstr(x, this.policy);
  }

  /** Run `fn` after every change of `tl`'s source queued before it. */
  private serial<T>(tl: Timeline, fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new ShutdownError("WAL sources are stopping"));
    const key = WalSources.keyOf(tl);
    const p = (this.chains.get(key) ?? Promise.resolve()).then(fn);
    const tail = p.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return p;
  }

  /** Make `src` the timeline's running source, unless stopAll came first (then it stops). */
  private async install(tl: Timeline, src: TimelineWalSource): Promise<boolean> {
    this.sources.set(WalSources.keyOf(tl), src);
    if (!this.closed) return true;
    this.sources.delete(WalSources.keyOf(tl));
    await src.stop();
    return false;
  }

  private static keyOf(tl: Timeline): string {
    return `${tl.tenantId}/${tl.timelineId}`;
  }

  /** Start the persisted sources of every loaded timeline; one that can't start retries in the background. */
  async startAll(tenants: TenantManager): Promise<void> {
    for (const t of tenants.list()) for (const tl of t.listTimelines()) this.startPersisted(tl);
  }

  /** Start the timeline's persisted source, if it has one (retrying in the background while it can't). */
  startPersisted(tl: Timeline): void {
    let cfg: ReturnType<typeof TimelineWalSource.load>;
    try {
      cfg = TimelineWalSource.load(tl, this.policy);
    } catch (e) {
      tl.log.error({ err: e }, "cannot start the WAL source in wal_source.json");
      return;
    }
    if (cfg === null) return;
    const src = new TimelineWalSource(tl, cfg, tl.log, this.flushLsnOf);
    this.sources.set(WalSources.keyOf(tl), src);
    void src.startWithRetry();
  }

  /**
   * Stop streaming and forget the running source but keep its persisted settings and its slot
   * (a detach: they leave with the tenant's directory, or start again if the detach fails).
   */
  async stopKeepingConfig(tl: Timeline): Promise<void> {
    return this.serial(tl, async () => {
      const src = this.get(tl);
      if (src === undefined) return;
      this.sources.delete(WalSources.keyOf(tl));
      await src.stop();
    });
  }

  /**
   * Check `connstr` as a source for `tl` without changing anything: throws a 4xx error
   * (unreachable, settings, another system). The expected system is the current source's,
   * or the one in the timeline's pg_control.
   */
  async probe(tl: Timeline, connstr: string): Promise<SourceInfo> {
    parseConnstr(connstr, this.policy);
    return probeSource(connstr, this.get(tl)?.config.system_id ?? (await timelineSystemId(tl)), tl.log);
  }

  /**
   * Set (or replace) the source of a timeline: probe it first (a failing probe throws and
   * leaves the current source streaming), then switch, persist, start. Returns the new source
   * and, when an old source on another connstr was replaced, what became of its slot.
   */
  async set(
    tl: Timeline,
    connstr: string,
    opts: { probed?: SourceInfo; consistentFrom?: string | null } = {},
  ): Promise<{ source: TimelineWalSource; oldSlot: SlotDrop | null }> {
    parseConnstr(connstr, this.policy);
    return this.serial(tl, () => this.setNow(tl, connstr, opts));
  }

  private async setNow(
    tl: Timeline,
    connstr: string,
    opts: { probed?: SourceInfo; consistentFrom?: string | null },
  ): Promise<{ source: TimelineWalSource; oldSlot: SlotDrop | null }> {
    const info = opts.probed ?? (await this.probe(tl, connstr));
    const old = this.get(tl);
    const src = new TimelineWalSource(
      tl,
      {
        connstr,
        slot_name: slotNameFor(tl.timelineId),
        system_id: info.systemId,
        consistent_from_lsn: opts.consistentFrom ?? old?.config.consistent_from_lsn ?? null,
      },
      tl.log,
      this.flushLsnOf,
    );
    if (old !== undefined) {
      this.sources.delete(WalSources.keyOf(tl));
      await old.stop();
    }
    await src.persist();
    if (!(await this.install(tl, src))) throw new ShutdownError("WAL sources are stopping");
    try {
      await src.start(info);
    } catch (e) {
      // It answered the probe a moment ago: keep trying in the background, visibly.
      tl.log.warn({ err: e }, "new WAL source failed to start after its probe; retrying");
      void src.startWithRetry();
    }
    if (old === undefined || old.config.connstr === connstr) return { source: src, oldSlot: null };
    // Same slot name on both: if both connstrs reach one server, the new stream holds the
    // slot and the drop fails as "active", which is what we want. Only drop once the new
    // source streams, so an old server that is the same server never loses retained WAL.
    if (!(await src.waitStreaming(SWITCH_STREAMING_WAIT_MS))) {
      const oldSlot = { slot_dropped: false, slot_error: "the new source is not streaming yet; the old source's slot was kept" };
      tl.log.warn({ slot: old.config.slot_name }, oldSlot.slot_error);
      return { source: src, oldSlot };
    }
    return { source: src, oldSlot: await this.dropSlot(tl, old) };
  }

  /**
   * Set the source of a timeline whose server is not running yet (an imported data
   * directory's): no probe; it starts when the server answers (state "retrying" until then).
   */
  async setDeferred(tl: Timeline, connstr: string): Promise<TimelineWalSource> {
    parseConnstr(connstr, this.policy);
    return this.serial(tl, () => this.setDeferredNow(tl, connstr));
  }

  private async setDeferredNow(tl: Timeline, connstr: string): Promise<TimelineWalSource> {
    const old = this.get(tl);
    if (old !== undefined) {
      this.sources.delete(WalSources.keyOf(tl));
      await old.stop();
    }
    const system_id = await timelineSystemId(tl);
    const src = new TimelineWalSource(
      tl,
      { connstr, slot_name: slotNameFor(tl.timelineId), system_id, consistent_from_lsn: null },
      tl.log,
      this.flushLsnOf,
    );
    await src.persist();
    if (!(await this.install(tl, src))) throw new ShutdownError("WAL sources are stopping");
    void src.startWithRetry();
    return src;
  }

  get(tl: Timeline): TimelineWalSource | undefined {
    return this.sources.get(WalSources.keyOf(tl));
  }

  /** Every source now (for metrics: one pass, no copies of state beyond the list). */
  list(): TimelineWalSource[] {
    return [...this.sources.values()];
  }

  status(tl: Timeline): WalSourceStatus | null {
    return this.get(tl)?.status() ?? null;
  }

  /** Stop streaming and forget the source; with dropSlot, also drop its slot and say whether that worked. */
  async remove(tl: Timeline, dropSlot: boolean): Promise<SlotDrop | null> {
    // At shutdown nothing is queued any more: remove what is there directly.
    return this.closed ? this.removeNow(tl, dropSlot) : this.serial(tl, () => this.removeNow(tl, dropSlot));
  }

  private async removeNow(tl: Timeline, dropSlot: boolean): Promise<SlotDrop | null> {
    const src = this.get(tl);
    if (src === undefined) return null;
    this.sources.delete(WalSources.keyOf(tl));
    await src.stop();
    await TimelineWalSource.remove(tl);
    return dropSlot ? this.dropSlot(tl, src) : null;
  }

  /** Drop a (stopped) source's slot on its server. A slot left behind keeps WAL there: WARN. */
  private async dropSlot(tl: Timeline, src: TimelineWalSource): Promise<SlotDrop> {
    const slot = src.config.slot_name;
    try {
      const conn = await ReplicationConnection.connect({ connstr: src.config.connstr, connect_timeout_ms: 5000 });
      try {
        const existed = await conn.dropReplicationSlot(slot);
        tl.log.info({ slot, existed }, "dropped the source's replication slot");
        return { slot_dropped: true };
      } finally {
        await conn.close();
      }
    } catch (e) {
      const slot_error = publicSourceError(e instanceof Error ? e.message : String(e));
      tl.log.warn({ err: e, slot }, "could not drop the source's replication slot: it keeps WAL on the source until dropped by hand");
      return { slot_dropped: false, slot_error };
    }
  }

  requireFor(tl: Timeline): TimelineWalSource {
    const s = this.get(tl);
    if (s === undefined) throw new NotFoundError(`timeline ${tl.timelineId} has no WAL source`);
    return s;
  }

  async stopAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.sources.values()].map((s) => s.stop().catch(() => undefined)));
    this.sources.clear();
  }
}
