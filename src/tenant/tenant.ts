/**
 * Tenant: a set of timelines that branch from each other, with one configuration and the
 * background loops that keep its storage in shape (compaction, image creation, GC,
 * checkpoint_timeout housekeeping).
 *
 * On disk: <tenants dir>/<tenant_id>/config.json (overrides of the node's tenant defaults)
 * and timelines/<timeline_id>/ (see Timeline).
 *
 * The rounds are scheduled by the node's BackgroundLoops (one timer for all tenants, a global
 * limit on concurrent rounds, FIFO between tenants).
 * Compaction runs every compaction_period, and at once when a flush leaves
 * compaction_threshold L0 files (wakeCompaction), again and again while a round compacted
 * something and L0 files remain at the threshold: ingest backpressure waits on it.
 *
 * Lock order: the background mutex (`bg`) serializes compaction and GC of all timelines of
 * the tenant: a GC never deletes a layer that an image job is reading, also across
 * ancestors. Branch creation takes no lock: it runs on the main thread between awaits and
 * checks the planned GC cutoff, which GC sets before it plans.
 *
 * Creation and deletion of timelines: an id is reserved (synchronously, before any await)
 * for the whole creation, so of two concurrent creates of one id exactly one proceeds and
 * the other is a ConflictError; a deletion is refused while the timeline has children or a
 * branch of it is being created, and a branch of a timeline being deleted is refused. A
 * deleted timeline's directory is renamed to a temp name first (startup removes leftovers).
 * A creation refuses a directory of its id already on disk (ConflictError, nothing deleted)
 * and fsyncs timelines/ once the new directory is whole. setConfig calls run one at a time
 * (configLock), so config.json and the config in memory are the last call's.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { PageCacheApi } from "../cache/api.js";
import { TEMP_SUFFIX } from "../layers/layer_name.js";
import type { JobRunner } from "../workers/jobs.js";
import { assert } from "../types/assert.js";
import { BadStateError, ConflictError, InvalidArgumentError, NotFoundError } from "../types/errors.js";
import { generateTimelineId, isId, type TenantId, type TimelineId } from "../types/ids.js";
import { INVALID_LSN, type Lsn, lsnAdd, lsnMax, lsnToString } from "../types/lsn.js";
import { failpointSync } from "../types/failpoints.js";
import type { MetricsSink } from "../types/metrics_sink.js";
import type { WalRedoManager } from "../types/redo.js";
import { parseTenantConf, type TenantConf } from "./config.js";
import type { BackgroundLoops, LoopHandle } from "./background_loops.js";
import { fsyncDir, writeFileDurable } from "../layers/durable_file.js";
import { readMetadata } from "./metadata.js";
import { type KeyspaceProvider, Timeline, TimelineState } from "./timeline/index.js";

export enum TenantState {
  Loading = "Loading",
  /** Its remote state is being downloaded (attach), then it loads. */
  Attaching = "Attaching",
  Active = "Active",
  Stopping = "Stopping",
  Broken = "Broken",
}

export interface TenantDeps {
  cache: PageCacheApi;
  jobs: JobRunner;
  redo: WalRedoManager;
  redoModule: string;
  log: Logger;
  defaults: TenantConf;
  keyspace?: KeyspaceProvider;
  /** The node's scheduler of every tenant's compaction, GC and housekeeping rounds. */
  loops: BackgroundLoops;
  /** Observations at event time, handed to every timeline (the node's metrics). */
  metrics?: MetricsSink;
  /**
   * Told of every timeline once it is active (loaded or created): the node hooks remote
   * storage in here (Timeline.setLayerEvents).
   */
  onTimelineReady?: (tenant: Tenant, timeline: Timeline) => void;
}

const TENANT_CONFIG_FILE = "config.json";

/** Housekeeping period: checkpoint_timeout checks for idle timelines. */
const HOUSEKEEPING_PERIOD_MS = 1000;
const MAX_TIMELINES_PER_TENANT = 10_000;

/** A timeline id held for one creation: released when the creation ends, whatever its outcome. */
export interface TimelineReservation {
  readonly id: TimelineId;
  release(): void;
}

/** A promise-chain mutex: one holder at a time, FIFO. */
class AsyncMutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

export class Tenant {
  readonly id: TenantId;
  readonly dir: string;
  state: TenantState = TenantState.Loading;
  brokenReason: string | null = null;
  private overrides: Record<string, unknown>;
  private conf_: TenantConf;
  private readonly deps: TenantDeps;
  private readonly timelines = new Map<TimelineId, Timeline>();
  /** Ids being created (reserveTimeline), and being deleted. */
  private readonly reserved = new Set<TimelineId>();
  private readonly deleting = new Set<TimelineId>();
  /** Branch creations in progress, by ancestor id (a deletion of the ancestor waits for none: it is refused). */
  private readonly branching = new Map<TimelineId, number>();
  private readonly bg = new AsyncMutex();
  /** One config write at a time (setConfig), in call order. */
  private readonly configLock = new AsyncMutex();
  private loopHandles: LoopHandle[] = [];
  private readonly log: Logger;
  /** Runs the compaction loop soon (set by startLoops). */
  private wakeCompactionLoop: () => void = () => undefined;

  private constructor(deps: TenantDeps, id: TenantId, dir: string, overrides: Record<string, unknown>) {
    this.deps = deps;
    this.id = id;
    this.dir = dir;
    this.overrides = overrides;
    this.conf_ = parseTenantConf(overrides, deps.defaults);
    this.log = deps.log.child({ tenant_id: id });
  }

  get conf(): TenantConf {
    return this.conf_;
  }

  static async create(deps: TenantDeps, id: TenantId, dir: string, overrides: Record<string, unknown> = {}): Promise<Tenant> {
    parseTenantConf(overrides, deps.defaults); // validate before touching disk
    mkdirSync(join(dir, "timelines"), { recursive: true });
    await writeFileDurable(join(dir, TENANT_CONFIG_FILE), Buffer.from(JSON.stringify(overrides)));
    const t = new Tenant(deps, id, dir, overrides);
    t.activate();
    return t;
  }

  /** Load a tenant from disk. A failure to load makes the tenant Broken (with the reason), not the process. */
  static load(deps: TenantDeps, id: TenantId, dir: string): Tenant {
    const t = Tenant.loading(deps, id, dir);
    t.loadFromDisk();
    return t;
  }

  /** A tenant found on disk, not read yet: state Loading until loadFromDisk(). */
  static loading(deps: TenantDeps, id: TenantId, dir: string): Tenant {
    return new Tenant(deps, id, dir, {});
  }

  /** A tenant being attached: state Attaching while its remote state downloads, then loadFromDisk(). */
  static attaching(deps: TenantDeps, id: TenantId, dir: string): Tenant {
    const t = new Tenant(deps, id, dir, {});
    t.state = TenantState.Attaching;
    return t;
  }

  /** Read config and timelines: Active, or Broken with the reason. Once, from Loading. */
  loadFromDisk(): void {
    assert(this.state === TenantState.Loading || this.state === TenantState.Attaching, "a tenant loads once, from Loading or Attaching");
    try {
      removeTempFiles(this.dir);
      const overrides = JSON.parse(readFileSync(join(this.dir, TENANT_CONFIG_FILE), "utf8")) as Record<string, unknown>;
      this.conf_ = parseTenantConf(overrides, this.deps.defaults);
      this.overrides = overrides;
    } catch (e) {
      this.setBroken(`cannot read tenant config: ${(e as Error).message}`);
      return;
    }
    try {
      failpointSync("tenant-load");
      this.loadTimelines();
      this.activate();
    } catch (e) {
      this.setBroken(`cannot load: ${(e as Error).message}`);
    }
  }

  private timelineDeps() {
    return {
      cache: this.deps.cache,
      jobs: this.deps.jobs,
      redo: this.deps.redo,
      redoModule: this.deps.redoModule,
      conf: () => this.conf_,
      keyspace: this.deps.keyspace,
      metrics: this.deps.metrics,
      wakeCompaction: () => this.wakeCompactionLoop(),
    };
  }

  private loadTimelines(): void {
    const tdir = join(this.dir, "timelines");
    // A deletion that did not finish: its directory was renamed first.
    if (existsSync(tdir))
      for (const n of readdirSync(tdir)) if (n.endsWith(TEMP_SUFFIX)) rmSync(join(tdir, n), { recursive: true, force: true });
    const ids = existsSync(tdir) ? readdirSync(tdir).filter((n) => isId(n)) : [];
    // Ancestors first: a child's reads need its ancestor object.
    const ancestorOf = new Map<TimelineId, TimelineId | null>();
    for (const id of ids) {
      const mdPath = join(tdir, id, "metadata");
      if (!existsSync(mdPath)) {
        // Creation never finished (crash before its first metadata write): nothing to keep.
        this.log.warn({ timeline_id: id }, "removing timeline directory without metadata");
        rmSync(join(tdir, id), { recursive: true, force: true });
        continue;
      }
      ancestorOf.set(id as TimelineId, readMetadata(mdPath).ancestor_timeline_id);
    }
    const loading = new Set<TimelineId>();
    const load = (id: TimelineId): Timeline => {
      const done = this.timelines.get(id);
      if (done !== undefined) return done;
      if (loading.has(id)) throw new BadStateError(`timeline ancestry cycle at ${id}`);
      loading.add(id);
      const anc = ancestorOf.get(id);
      if (anc === undefined) throw new NotFoundError(`ancestor timeline ${id} is missing`);
      const ancestor = anc === null ? null : load(anc);
      const tl = Timeline.load({ ...this.timelineDeps(), log: this.log.child({ timeline_id: id }) }, this.id, id, join(tdir, id), ancestor);
      tl.activate();
      this.timelines.set(id, tl);
      this.deps.onTimelineReady?.(this, tl);
      return tl;
    };
    for (const id of ancestorOf.keys()) load(id);
  }

  private activate(): void {
    this.state = TenantState.Active;
    this.startLoops();
  }

  setBroken(reason: string): void {
    this.log.error({ reason }, "tenant is broken");
    this.state = TenantState.Broken;
    this.brokenReason = reason;
    this.stopLoops();
  }

  private checkActive(): void {
    if (this.state !== TenantState.Active) {
      throw new BadStateError(`tenant ${this.id} is ${this.state}${this.brokenReason ? `: ${this.brokenReason}` : ""}`);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Timelines

  getTimeline(id: TimelineId): Timeline {
    this.checkActive();
    const tl = this.timelines.get(id);
    if (tl === undefined) throw new NotFoundError(`timeline ${id} not found in tenant ${this.id}`);
    return tl;
  }

  listTimelines(): Timeline[] {
    return [...this.timelines.values()];
  }

  children(of: Timeline): Timeline[] {
    return [...this.timelines.values()].filter((t) => t.ancestor === of);
  }

  /**
   * Create an empty timeline at `startLsn` (bootstrap), or a branch of `ancestorId` at
   * `ancestorLsn` (default: the ancestor's last record LSN).
   */
  /**
   * Hold a timeline id (a new random one when absent) for a creation that takes a while
   * (a bootstrap from a source): a ConflictError when it exists or another creation holds it.
   */
  reserveTimeline(id?: TimelineId): TimelineReservation {
    this.checkActive();
    const tid = id ?? generateTimelineId();
    if (this.timelines.has(tid) || this.deleting.has(tid)) throw new ConflictError(`timeline ${tid} already exists in tenant ${this.id}`);
    if (this.reserved.has(tid)) throw new ConflictError(`timeline ${tid} is being created in tenant ${this.id}`);
    if (this.timelines.size + this.reserved.size >= MAX_TIMELINES_PER_TENANT)
      throw new BadStateError(`tenant ${this.id} has too many timelines`);
    this.reserved.add(tid);
    let held = true;
    return {
      id: tid,
      release: () => {
        if (held) this.reserved.delete(tid);
        held = false;
      },
    };
  }

  async createTimeline(opts: {
    timelineId?: TimelineId;
    /** An id reserved by the caller (reserveTimeline), who releases it. */
    reservation?: TimelineReservation;
    ancestorId?: TimelineId;
    ancestorLsn?: Lsn;
    startLsn?: Lsn;
    pgVersion?: number;
  }): Promise<Timeline> {
    this.checkActive();
    assert(opts.reservation === undefined || opts.timelineId === undefined || opts.timelineId === opts.reservation.id, "one timeline id");
    if (opts.ancestorId === undefined && opts.ancestorLsn !== undefined) {
      throw new InvalidArgumentError("ancestor_start_lsn given without ancestor_timeline_id");
    }
    const ancestor = opts.ancestorId === undefined ? null : this.getTimeline(opts.ancestorId);
    if (ancestor !== null && this.deleting.has(ancestor.timelineId))
      throw new ConflictError(`timeline ${ancestor.timelineId} is being deleted`);
    const start = ancestor === null ? (opts.startLsn ?? INVALID_LSN) : (opts.ancestorLsn ?? ancestor.lastRecordLsn);
    ancestor?.checkBranchPoint(start);
    const reservation = opts.reservation ?? this.reserveTimeline(opts.timelineId);
    const ancestorKey = ancestor?.timelineId;
    if (ancestorKey !== undefined) this.branching.set(ancestorKey, (this.branching.get(ancestorKey) ?? 0) + 1);
    try {
      return await this.createReserved(reservation.id, ancestor, start, opts.pgVersion);
    } finally {
      if (ancestorKey !== undefined) {
        const n = (this.branching.get(ancestorKey) ?? 1) - 1;
        if (n === 0) this.branching.delete(ancestorKey);
        else this.branching.set(ancestorKey, n);
      }
      if (opts.reservation === undefined) reservation.release();
    }
  }

  private async createReserved(id: TimelineId, ancestor: Timeline | null, start: Lsn, pgVersion: number | undefined): Promise<Timeline> {
    const parent = join(this.dir, "timelines");
    const dir = join(parent, id);
    // A directory of this id that no timeline owns may hold the only copy of something:
    // refuse, never wipe. mkdir is the atomic check.
    mkdirSync(parent, { recursive: true });
    try {
      mkdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      throw new ConflictError(
        `timeline directory ${id} already exists on disk in tenant ${this.id}: remove it by hand to create the timeline anew`,
      );
    }
    let tl: Timeline;
    try {
      tl = await Timeline.create(
        { ...this.timelineDeps(), log: this.log.child({ timeline_id: id }) },
        this.id,
        id,
        dir,
        ancestor,
        start,
        pgVersion ?? ancestor?.pgVersion ?? 15,
      );
      // The branch point may have been GC'd while metadata was written: check again.
      if (ancestor !== null) ancestor.checkBranchPoint(start);
      // The new directory's entry in timelines/ is durable before the timeline is.
      await fsyncDir(parent);
    } catch (e) {
      // Never half-created: nothing of it stays on disk.
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    tl.activate();
    this.timelines.set(id, tl);
    this.deps.onTimelineReady?.(this, tl);
    this.log.info({ timeline_id: id, ancestor: ancestor?.timelineId, start_lsn: lsnToString(start) }, "timeline created");
    return tl;
  }

  /**
   * Delete a timeline: refused (ConflictError) while it has children or a branch of it is
   * being created (and branching from it is refused from here on). `beforeStop` runs first
   * (the caller stops its WAL source); then it leaves the map (new requests see 404), stops
   * (no flush: its data goes) between background rounds, and its directory goes.
   */
  async deleteTimeline<T>(id: TimelineId, beforeStop: (tl: Timeline) => Promise<T>): Promise<T> {
    const tl = this.getTimeline(id);
    if (this.deleting.has(id)) throw new ConflictError(`timeline ${id} is being deleted`);
    const kids = this.children(tl);
    if (kids.length > 0)
      throw new ConflictError(`timeline ${id} has child branches (${kids.map((k) => k.timelineId).join(", ")}): delete them first`);
    if ((this.branching.get(id) ?? 0) > 0) throw new ConflictError(`a branch of timeline ${id} is being created`);
    this.deleting.add(id);
    try {
      // Its WAL source stops here (the caller's part): nothing ingests into it any more.
      const r = await beforeStop(tl);
      this.timelines.delete(id);
      // Between compaction / GC rounds: none of them is reading its layers then.
      await this.bg.run(() => tl.shutdown(false));
      const gone = `${tl.dir}${TEMP_SUFFIX}`;
      renameSync(tl.dir, gone);
      await rm(gone, { recursive: true, force: true });
      this.log.info({ timeline_id: id }, "timeline deleted");
      return r;
    } finally {
      this.deleting.delete(id);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Background work

  /**
   * Compaction then image creation, for one timeline (an operator action names it) or for
   * every timeline (the background loop). Returns files compacted + images made.
   * `l0First` (the background loop): a timeline still at compaction_threshold L0 files after
   * its L0 compaction skips image creation this round, as Neon's compaction_l0_first: the
   * next round follows at once, and ingest may be waiting for the L0 count to drop.
   */
  compact(
    opts: { forceImages?: boolean; l0First?: boolean; timeline?: Timeline; signal?: AbortSignal } = {},
  ): Promise<{ l0Compacted: number; imagesCreated: number }> {
    return this.bg.run(async () => {
      let l0Compacted = 0;
      let imagesCreated = 0;
      for (const tl of this.scope(opts.timeline)) {
        // A request whose client went away stops between steps (each leaves a consistent map).
        opts.signal?.throwIfAborted();
        l0Compacted += await tl.compactL0();
        if (opts.l0First === true && tl.l0Count >= this.conf_.compaction_threshold) continue;
        opts.signal?.throwIfAborted();
        imagesCreated += await tl.createImageLayers(opts.forceImages ?? false, opts.signal);
      }
      return { l0Compacted, imagesCreated };
    });
  }

  /**
   * GC one timeline (an operator action names it) or every timeline (the background loop).
   * Each timeline's cutoff comes from its own history: its configured horizon/PITR (as of
   * `now_ms`, default now), or `horizonBytes` back from its own last record LSN, or
   * `cutoffLsn` (only with `timeline`);
   * its children's branch points are kept. A cutoff is never taken from one timeline and
   * applied to another.
   */
  gc(opts: { timeline?: Timeline; horizonBytes?: number; cutoffLsn?: Lsn; now_ms?: number; signal?: AbortSignal } = {}): Promise<number> {
    assert(
      opts.cutoffLsn === undefined || (opts.timeline !== undefined && opts.horizonBytes === undefined),
      "an absolute GC cutoff names one timeline",
    );
    return this.bg.run(async () => {
      let removed = 0;
      for (const tl of this.scope(opts.timeline)) {
        opts.signal?.throwIfAborted();
        const retain = this.children(tl).map((c) => c.ancestorLsn);
        const cutoff =
          opts.cutoffLsn ??
          (opts.horizonBytes === undefined ? tl.gcCutoff(opts.now_ms) : lsnMax(INVALID_LSN, lsnAdd(tl.lastRecordLsn, -opts.horizonBytes)));
        removed += await tl.gc(retain, cutoff);
      }
      return removed;
    });
  }

  /** The active timelines an operation covers: the one given (if active) or all. */
  private scope(only: Timeline | undefined): Timeline[] {
    const all = only === undefined ? [...this.timelines.values()] : [only];
    return all.filter((tl) => tl.state === TimelineState.Active && this.timelines.get(tl.timelineId) === tl);
  }

  private startLoops(): void {
    const loops = this.deps.loops;
    const spec = (what: string, period_ms: () => number, round: () => Promise<boolean> | boolean, inline = false) =>
      loops.register({
        what,
        period_ms,
        inline,
        round: () => (this.state === TenantState.Active ? round() : false),
        onError: (e) => this.log.error({ err: e }, `${what} iteration failed`),
      });
    const compaction = spec(
      "compaction",
      () => this.conf_.compaction_period_ms,
      async () => {
        const r = await this.compact({ l0First: true });
        // More rounds while they make progress and some timeline is still at the threshold.
        return (
          r.l0Compacted > 0 &&
          this.listTimelines().some((tl) => tl.state === TimelineState.Active && tl.l0Count >= this.conf_.compaction_threshold)
        );
      },
    );
    const gc = spec(
      "gc",
      () => (this.conf_.gc_horizon_bytes === 0 ? 0 : this.conf_.gc_period_ms),
      async () => {
        await this.gc();
        return false;
      },
    );
    const housekeeping = spec(
      "housekeeping",
      () => HOUSEKEEPING_PERIOD_MS,
      () => {
        for (const tl of this.timelines.values()) tl.checkTimeout();
        return false;
      },
      true,
    );
    this.loopHandles = [compaction, gc, housekeeping];
    this.wakeCompactionLoop = () => {
      if (this.state === TenantState.Active) compaction.wake();
    };
  }

  private stopLoops(): void {
    for (const h of this.loopHandles) h.stop();
    this.loopHandles = [];
    this.wakeCompactionLoop = () => undefined;
  }

  /**
   * Replace the overrides: validated, written durably, then applied. Calls run one at a time
   * in call order (configLock), so the file and the config in memory are both the last
   * call's. Returns the overrides this call set.
   */
  async setConfig(overrides: Record<string, unknown>): Promise<Record<string, unknown>> {
    const conf = parseTenantConf(overrides, this.deps.defaults);
    return this.configLock.run(async () => {
      await writeFileDurable(join(this.dir, TENANT_CONFIG_FILE), Buffer.from(JSON.stringify(overrides)));
      this.overrides = overrides;
      this.conf_ = conf;
      for (const tl of this.timelines.values()) tl.configChanged();
      return { ...overrides };
    });
  }

  get configOverrides(): Record<string, unknown> {
    return { ...this.overrides };
  }

  /**
   * The tenant is going away (deletion): from now on it refuses new work (creations,
   * lookups: BadStateError) and its background rounds stop; shutdown() follows.
   */
  beginStopping(): void {
    if (this.state === TenantState.Active) this.state = TenantState.Stopping;
    this.stopLoops();
  }

  async shutdown(flush: boolean): Promise<void> {
    if (this.state === TenantState.Active) this.state = TenantState.Stopping;
    this.stopLoops();
    // Wait for a running compaction or GC, then stop children before their ancestors.
    await this.bg.run(async () => undefined);
    const order = [...this.timelines.values()].sort((a, b) => depth(b) - depth(a));
    for (const tl of order) await tl.shutdown(flush);
  }
}

/** Temp files a crash left in a directory (a durable write cut short): never the real ones. */
function removeTempFiles(dir: string): void {
  for (const n of readdirSync(dir)) if (n.endsWith(TEMP_SUFFIX)) rmSync(join(dir, n), { recursive: true, force: true });
}

function depth(t: Timeline): number {
  let d = 0;
  for (let a = t.ancestor; a !== null; a = a.ancestor) d++;
  assert(d < MAX_TIMELINES_PER_TENANT, "ancestry too deep");
  return d;
}
