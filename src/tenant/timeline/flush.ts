/**
 * TimelineFlush: freezing the open layer, the flush loop (frozen in-memory layers → L0 files
 * on the flush pool), checkpoints, and durability: disk_consistent_lsn and the metadata file.
 * Owns the flush loop state, the round in flight, the checkpoints waiting, the last failure,
 * the disk_consistent_lsn writer and its target, and the metadata write chain.
 *
 * Invariants:
 * - disk_consistent_lsn moves forward only after the L0 file holding data up to it is
 *   durable, and metadata is written after that; a crash in between leaves a "future" L0
 *   that load() deletes.
 * - frozen layers, counting flushed ones whose disk_consistent_lsn is not yet recorded
 *   (pendingFlushes), never exceed max_frozen_layers: at the limit the open layer keeps
 *   growing instead, and the ingest gate (ingest_gate.ts) stops ingest until a flush is
 *   recorded. So the flush lag (last_record_lsn − disk_consistent_lsn) stays below about
 *   (max_frozen_layers + 1) × checkpoint_distance plus one record (an XLOG_SWITCH record
 *   spans the rest of its segment).
 * - a layer whose flush fails stays frozen (and readable) until a later round writes it: the
 *   checkpoints waiting fail with the error, the timeline stays Active (as in Neon).
 * - metadata writes land in order (one chain), and the disk_consistent_lsn they record never
 *   goes below one already written: the source drops WAL below what we reported.
 *
 * Lock order: none (single-threaded); flushes run one at a time (one round in flight), and
 * disk_consistent_lsn writes one at a time, coalescing to the newest target.
 */
import { join } from "node:path";
import { HistoricLayer } from "../../layers/historic_layer.js";
import type { InMemoryLayer } from "../../layers/inmemory_layer.js";
import { assert } from "../../types/assert.js";
import { BadStateError } from "../../types/errors.js";
import { failpoint } from "../../types/failpoints.js";
import { INVALID_LSN, type Lsn, lsnAdd, lsnMax, lsnMin } from "../../types/lsn.js";
import { secondsSince } from "../../types/metrics_sink.js";
import { type TimelineMetadata, writeMetadata } from "../metadata.js";
import { FlushLoopState, type TimelineCore, TimelineState } from "./core.js";
import { METADATA_FILE } from "./load.js";

/** Attempts of one flush round; a round that fails them all fails the checkpoints waiting on it. */
const FLUSH_RETRY_LIMIT = 3;
/** After a failed flush round, housekeeping starts the next one no sooner than this. */
const FLUSH_ROUND_RETRY_MS = 10_000;
/** One bounded wait of a flush for room in the remote upload queue (it asks again while it runs). */
const ROOM_WAIT_MS = 10_000;
/** Checkpoints waiting on one timeline at once (each is an HTTP request or a shutdown). */
const MAX_FLUSH_WAITERS = 100_000;

/** What the flush tells the rest of the timeline. */
export interface FlushHooks {
  /** The frozen count or disk_consistent_lsn changed: the ingest gate looks again. */
  progressed(): void;
  /** What is durable can't be recorded: the timeline is broken. */
  setBroken(reason: string): void;
}

export class TimelineFlush {
  private readonly core: TimelineCore;
  private readonly hooks: FlushHooks;
  private loop: FlushLoopState = FlushLoopState.NotStarted;
  private flushing: Promise<void> | null = null;
  /**
   * Checkpoints waiting for disk_consistent_lsn: aborted with the error when a flush round
   * fails, so they report it instead of waiting for a flush that is not running.
   */
  private readonly flushWaiters = new Set<AbortController>();
  /** The last failed flush round: its error, and when housekeeping may start the next round. */
  private flushFailure: { error: Error; retry_at_ms: number } | null = null;
  /** The newest LSN flushes made durable, and the metadata writer recording it (advanceDiskConsistent). */
  private dclTarget: Lsn = INVALID_LSN;
  /** End LSNs of flushed layers not yet recorded as disk_consistent_lsn: they still count as frozen for backpressure. */
  private readonly unrecorded: Lsn[] = [];
  private dclWriter: Promise<void> | null = null;
  private metadataWrite: Promise<void> = Promise.resolve();
  /** disk_consistent_lsn of the last metadata write that landed. */
  private persistedDcl: Lsn;
  /** Set by shutdown: its flush no longer waits for room in the remote upload queue. */
  private shuttingDown = false;

  constructor(core: TimelineCore, hooks: FlushHooks) {
    this.core = core;
    this.hooks = hooks;
    this.persistedDcl = core.diskConsistent.load();
  }

  get loopState(): FlushLoopState {
    return this.loop;
  }

  /** The timeline became Active: flushes may run. */
  start(): void {
    this.loop = FlushLoopState.Running;
  }

  /** No flush starts any more (broken, or shutting down). */
  stop(): void {
    this.loop = FlushLoopState.Exited;
  }

  /**
   * Frozen layers plus flushed ones whose disk_consistent_lsn is not yet recorded: what the
   * frozen limit counts, so the reported flush lag stays bounded even while metadata writes lag.
   */
  get pendingFlushes(): number {
    return this.core.frozen.length + this.unrecorded.length;
  }

  /** Freeze the open layer at `at` and hand it to the flush loop. */
  freezeAt(at: Lsn): void {
    const core = this.core;
    if (this.loop !== FlushLoopState.Running) {
      throw new BadStateError(`cannot freeze timeline ${core.timelineId}: flush loop is ${this.loop}`);
    }
    const open = core.open;
    if (open === null) return;
    open.freeze(at);
    core.frozen.push(open);
    core.open = null;
    core.nextOpenLayerAt = lsnAdd(at, 1);
    this.kickFlush();
    this.hooks.progressed();
  }

  /** Housekeeping: start a new round for frozen layers a failed round left behind, once its retry time came. */
  retryIfDue(now_ms: number): void {
    if (this.flushFailure !== null && now_ms >= this.flushFailure.retry_at_ms && this.core.frozen.length > 0) this.kickFlush();
  }

  /**
   * Freeze what is open and wait until everything up to last_record_lsn is durable. A flush
   * round that fails while this waits fails the checkpoint with its error (the frozen layers
   * stay queued: the next checkpoint, or housekeeping, tries again).
   */
  async checkpoint(): Promise<void> {
    const core = this.core;
    core.checkActive();
    if (this.loop !== FlushLoopState.Running) throw new BadStateError(`flush requested but the flush loop is ${this.loop}`);
    // Layers a failed round left behind: a checkpoint is the request to try again.
    if (core.frozen.length > 0) this.kickFlush();
    // Keep the frozen limit: wait for room (flushes are running whenever the queue is full).
    for (let i = 0; this.pendingFlushes >= core.deps.conf().max_frozen_layers && (this.flushing !== null || this.dclWriter !== null); i++) {
      assert(i < 1_000_000, "checkpoint waited for frozen-queue room too often");
      await (this.flushing ?? this.dclWriter);
    }
    core.checkActive();
    if (this.pendingFlushes >= core.deps.conf().max_frozen_layers && this.flushFailure !== null)
      throw this.flushFailedError(this.flushFailure.error);
    const target = core.lastRecord.load();
    if (core.open !== null && core.open.valueCount > 0) this.freezeAt(target);
    else if (core.open !== null) {
      core.open.close(true);
      core.open = null;
    }
    if (core.frozen.length === 0 && core.diskConsistent.load() < target) {
      // Nothing unflushed: WAL without values (e.g. records that touch no page) is durable as is.
      await this.setDiskConsistent(target);
      core.nextOpenLayerAt = lsnMax(core.nextOpenLayerAt, lsnAdd(target, 1));
    }
    const waiter = new AbortController();
    assert(this.flushWaiters.size < MAX_FLUSH_WAITERS, "too many checkpoints waiting");
    this.flushWaiters.add(waiter);
    try {
      await core.diskConsistent.wait(target, 24 * 3_600_000, undefined, waiter.signal);
    } finally {
      this.flushWaiters.delete(waiter);
    }
  }

  /** Shutdown, before its last checkpoint: that flush no longer waits for the remote upload queue. */
  beginShutdown(): void {
    this.shuttingDown = true;
  }

  /** Shutdown, after its last checkpoint: no round starts; the one in flight and the metadata writes finish. */
  async drain(): Promise<void> {
    this.loop = FlushLoopState.Exited;
    if (this.flushing !== null) await this.flushing.catch(() => undefined);
    await this.dclWriter;
    await this.metadataWrite;
  }

  private flushFailedError(e: Error): BadStateError {
    return new BadStateError(`layer flush failed on timeline ${this.core.timelineId}: ${e.message}`);
  }

  private kickFlush(): void {
    if (this.flushing !== null) return;
    this.flushing = this.flushFrozen().finally(() => {
      this.flushing = null;
      if (this.core.frozen.length > 0 && this.loop === FlushLoopState.Running && this.flushFailure === null) this.kickFlush();
    });
  }

  /**
   * One flush round: the frozen layers, oldest first. A layer is tried FLUSH_RETRY_LIMIT
   * times; then the round stops, the layer stays frozen (its data is still readable and its
   * WAL still held by the source), and the checkpoints waiting fail with the error. The
   * timeline stays Active, as in Neon: a flush that fails (a failpoint, a full disk) may
   * succeed later, and ingest waits at the frozen limit meanwhile.
   */
  private async flushFrozen(): Promise<void> {
    const core = this.core;
    this.flushFailure = null;
    while (core.frozen.length > 0 && this.loop === FlushLoopState.Running) {
      const layer = core.frozen[0]!;
      // A full remote upload queue holds the flush (and so ingest) back, in bounded waits, until shutdown.
      if (!(await this.roomForLayer())) return;
      let attempt = 0;
      for (;;) {
        try {
          await this.flushOne(layer);
          break;
        } catch (e) {
          attempt++;
          const error = e instanceof Error ? e : new Error(String(e));
          if (attempt >= FLUSH_RETRY_LIMIT || this.loop !== FlushLoopState.Running) {
            core.log.error({ err: error, attempts: attempt }, "layer flush failed; the layer stays frozen until the next flush request");
            this.flushFailure = { error, retry_at_ms: Date.now() + FLUSH_ROUND_RETRY_MS };
            const failed = this.flushFailedError(error);
            for (const w of this.flushWaiters) w.abort(failed);
            return;
          }
          core.log.warn({ err: error, attempt }, "layer flush failed; retrying");
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
    }
  }

  /** Waits while the layer events' queue is full (LayerEvents.waitForRoom); false: the flush loop stopped meanwhile. */
  private async roomForLayer(): Promise<boolean> {
    for (let waits = 0; this.loop === FlushLoopState.Running; waits++) {
      if (this.shuttingDown || ((await this.core.events.waitForRoom?.(ROOM_WAIT_MS)) ?? true)) return true;
      if (waits % 6 === 0) this.core.log.warn({ waited_ms: (waits + 1) * ROOM_WAIT_MS }, "flush waits for room in the remote upload queue");
    }
    return false;
  }

  private async flushOne(layer: InMemoryLayer): Promise<void> {
    const start_ms = performance.now();
    try {
      await this.flushOneTimed(layer);
    } finally {
      this.core.metrics.storageOperation("layer flush", secondsSince(start_ms));
    }
  }

  private async flushOneTimed(layer: InMemoryLayer): Promise<void> {
    const core = this.core;
    const res = await core.deps.jobs.flush(
      {
        ephemeralPath: layer.file.path,
        lengthBytes: layer.file.sizeBytes,
        outDir: core.dir,
        lsnStart: layer.start,
        lsnEnd: layer.end,
      },
      core.tenantId,
    );
    // The file is durable under its final name but in no layer map: a crash here leaves a
    // "future" layer that load() deletes; an error here leaves the layer frozen.
    await failpoint("flush-before-layer-map");
    if (res.desc !== null && core.layerMap.get(res.desc.fileName) === undefined) {
      core.layerMap = core.layerMap.with([new HistoricLayer(core.deps.cache, core.dir, res.desc)], []);
      core.events.layersAdded([{ name: res.desc.fileName, path: join(core.dir, res.desc.fileName) }]);
    }
    assert(core.frozen[0] === layer, "frozen queue changed under a flush");
    core.frozen.shift();
    layer.close(true);
    core.counters.flushes++;
    // The next flush starts now, not after this one's metadata write (an fsync or two): the
    // flush worker stays busy, and disk_consistent_lsn follows in order (advanceDiskConsistent).
    if (layer.end - 1 > core.diskConsistent.load()) {
      assert(this.unrecorded.length < 1_000_000, "unrecorded flushes pile up");
      this.unrecorded.push(lsnAdd(layer.end, -1));
    }
    this.advanceDiskConsistent(lsnAdd(layer.end, -1));
    if (core.layerMap.l0Layers().length >= core.deps.conf().compaction_threshold) core.deps.wakeCompaction?.();
    this.hooks.progressed();
  }

  /**
   * Layers are durable up to `lsn`: persist it in the metadata, then advance
   * disk_consistent_lsn. Writes are one at a time and coalesce (the newest target wins); a
   * failed write breaks the timeline (what is durable can't be recorded).
   */
  private advanceDiskConsistent(lsn: Lsn): void {
    if (lsn > this.dclTarget) this.dclTarget = lsn;
    if (this.dclWriter !== null || this.dclTarget <= this.core.diskConsistent.load()) return;
    const w = this.writeDiskConsistent();
    this.dclWriter = w;
    void w.finally(() => {
      if (this.dclWriter === w) this.dclWriter = null;
      // A target that arrived after the writer's last check is picked up here.
      if (this.core.state === TimelineState.Active) this.advanceDiskConsistent(this.dclTarget);
    });
  }

  private async writeDiskConsistent(): Promise<void> {
    try {
      for (let i = 0; this.dclTarget > this.core.diskConsistent.load(); i++) {
        assert(i < 1_000_000, "disk_consistent_lsn writer looped too often");
        await this.setDiskConsistent(this.dclTarget);
      }
    } catch (e) {
      if (this.core.state === TimelineState.Active) this.hooks.setBroken(`cannot record disk_consistent_lsn: ${(e as Error).message}`);
    }
  }

  /** Record `lsn` as disk_consistent_lsn (metadata first); a lower or equal one is a no-op. */
  async setDiskConsistent(lsn: Lsn): Promise<void> {
    const core = this.core;
    // A checkpoint with nothing left to flush may advance it past a flush whose metadata write
    // is still in flight: the later (smaller) value is then already covered.
    if (lsn <= core.diskConsistent.load()) return;
    await this.persistMetadata({ disk_consistent_lsn: lsn });
    if (lsn > core.diskConsistent.load()) core.diskConsistent.advance(lsn);
    const dcl = core.diskConsistent.load();
    let n = 0;
    while (n < this.unrecorded.length && this.unrecorded[n]! <= dcl) n++;
    if (n > 0) {
      this.unrecorded.splice(0, n);
      this.hooks.progressed();
    }
  }

  metadata(overrides: Partial<TimelineMetadata> = {}): TimelineMetadata {
    const core = this.core;
    const dcl = overrides.disk_consistent_lsn ?? core.diskConsistent.load();
    return {
      disk_consistent_lsn: dcl,
      prev_record_lsn: dcl === core.lastRecord.load() ? core.prevRecord : null,
      ancestor_timeline_id: core.ancestor?.timelineId ?? null,
      ancestor_lsn: core.ancestorLsn,
      // Never persist a cutoff above what is durable: after a crash the timeline restarts at
      // disk_consistent_lsn and must still read there (raiseGcCutoff can run ahead of it).
      latest_gc_cutoff_lsn: lsnMin(core.latestGcCutoff, dcl),
      initdb_lsn: core.initdbLsn,
      pg_version: core.pgVersion,
      ...overrides,
    };
  }

  /** Metadata writes are serialized so an older one never lands after a newer one. */
  persistMetadata(overrides: Partial<TimelineMetadata>): Promise<void> {
    const core = this.core;
    // The metadata is built when its turn in the chain comes, and disk_consistent_lsn never
    // goes below what is already on disk: the source drops WAL below what we reported.
    const p = this.metadataWrite.then(async () => {
      const dcl = lsnMax(overrides.disk_consistent_lsn ?? core.diskConsistent.load(), this.persistedDcl);
      // Before the metadata: a crash in between leaves entries above the old
      // disk_consistent_lsn in the file, which load() drops (their WAL comes again).
      await core.commitTimes.save(dcl);
      const md = this.metadata({ ...overrides, disk_consistent_lsn: dcl });
      await writeMetadata(join(core.dir, METADATA_FILE), md);
      this.persistedDcl = dcl;
      core.events.metadataChanged(md);
    });
    this.metadataWrite = p.catch(() => undefined);
    return p;
  }
}
