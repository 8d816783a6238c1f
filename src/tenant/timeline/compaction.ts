/**
 * TimelineCompaction: L0 → L1 compaction and image layer creation for one timeline, decided
 * here and run as jobs on the worker pools (src/workers). Owns no state of its own: it swaps
 * the core's layer map when a job's output is durable.
 *
 * Invariants:
 * - a job's output files are durable before the map names them; the inputs are unlinked
 *   only after the map no longer does (a crash in between loads both: they overlap, which
 *   reads allow, and the next run writes the same outputs again).
 * - the files a job reads in a worker are resident and pinned until it is done.
 * - image layers tile the whole key space [KEY_MIN, KEY_MAX), cut where existing images are.
 * - layer events name new layers before the ones they replace go (the remote index never
 *   lacks data it had).
 *
 * Lock order: the tenant's background mutex orders compaction and GC (never both at once
 * for a tenant); nothing is held here.
 */
import { join } from "node:path";
import { HistoricLayer } from "../../layers/historic_layer.js";
import { unlinkSync } from "node:fs";
import type { ChainLink } from "../../workers/jobs.js";
import { failpoint } from "../../types/failpoints.js";
import { KEY_MAX, KEY_MIN, type Key, type KeyRange } from "../../types/key.js";
import { type Lsn, lsnAdd } from "../../types/lsn.js";
import { secondsSince } from "../../types/metrics_sink.js";
import type { TenantConf } from "../config.js";
import type { TimelineCore } from "./core.js";
import type { LayerResidency } from "./residency.js";

/** L0 files one compaction job takes at most (Neon's compaction_upper_limit): bounds a job's length. */
const COMPACTION_UPPER_LIMIT = 10;

/** What compaction needs of the rest of the timeline. */
export interface CompactionHooks {
  /** The live keys at `lsn` (image creation copies only these); it reads through readAt. */
  keyspaceAt(lsn: Lsn): Promise<KeyRange[]>;
  /** The L0 count changed: the ingest gate looks again. */
  progressed(): void;
}

export class TimelineCompaction {
  private readonly core: TimelineCore;
  private readonly residency: LayerResidency;
  private readonly hooks: CompactionHooks;

  constructor(core: TimelineCore, residency: LayerResidency, hooks: CompactionHooks) {
    this.core = core;
    this.residency = residency;
    this.hooks = hooks;
  }

  /**
   * L0 → L1 when at least compaction_threshold L0 files exist: the oldest contiguous chain,
   * at most max(compaction_threshold, COMPACTION_UPPER_LIMIT) files, so one job stays short
   * (the loop runs again while L0 files remain). A chain of one (a gap after it: a checkpoint
   * with nothing to flush) is rewritten alone, so no L0 file is ever stuck. Returns the
   * number of L0 files compacted.
   */
  async compactL0(): Promise<number> {
    const core = this.core;
    core.checkActive();
    const conf = core.deps.conf();
    const l0 = [...core.layerMap.l0Layers()].sort((a, b) => a.desc.lsnRange.start - b.desc.lsnRange.start);
    if (l0.length === 0 || l0.length < conf.compaction_threshold) return 0;
    // Only a contiguous chain (each end == next start) may merge into one LSN range.
    const limit = Math.max(conf.compaction_threshold, COMPACTION_UPPER_LIMIT);
    const chain = [l0[0]!];
    for (
      let i = 1;
      i < l0.length && chain.length < limit && chain[chain.length - 1]!.desc.lsnRange.end === l0[i]!.desc.lsnRange.start;
      i++
    ) {
      chain.push(l0[i]!);
    }
    const start_ms = performance.now();
    // The job reads the files in a worker: they must be here, and stay until it is done.
    const release = await this.residency.pinAndFetch(chain);
    try {
      await this.compactChain(chain, conf);
    } finally {
      release();
      core.metrics.storageOperation("compact", secondsSince(start_ms));
    }
    return chain.length;
  }

  private async compactChain(chain: HistoricLayer[], conf: TenantConf): Promise<void> {
    const core = this.core;
    const res = await core.deps.jobs.compact(
      {
        dir: core.dir,
        l0: chain.map((l) => l.desc),
        targetSizeBytes: conf.checkpoint_distance_bytes,
      },
      core.tenantId,
    );
    // The L1 files are durable, the map still has the L0 files: a crash here loads both (they
    // overlap, which reads allow), and the next compaction writes the same L1 files again.
    await failpoint("compact-before-map-swap");
    const removed = chain.map((l) => l.desc.fileName);
    // An L1 file of an interrupted compaction of the same chain is in the map already.
    const added = res.added
      .filter((d) => core.layerMap.get(d.fileName) === undefined)
      .map((d) => new HistoricLayer(core.deps.cache, core.dir, d));
    this.residency.markRewritten(res.added);
    const gone = removed.filter((n) => !res.added.some((d) => d.fileName === n));
    core.layerMap = core.layerMap.with(added, gone);
    // New layers first: the index that drops the L0 files names the L1 files that replace them.
    core.events.layersAdded(added.map((l) => ({ name: l.desc.fileName, path: l.path })));
    core.events.layersRemoved(gone);
    for (const l of chain) {
      if (res.added.some((d) => d.fileName === l.desc.fileName)) continue;
      l.close();
      unlinkSync(l.path);
    }
    core.counters.compactions++;
    this.hooks.progressed();
  }

  /**
   * Partitions for image creation: they tile the whole key space [KEY_MIN, KEY_MAX), cut where
   * existing image layers are cut. Tiling everything (not just the keyspace's extent) is what
   * lets images cover L0 deltas completely, and puts keys that left the keyspace inside an
   * image's range, where their absence reads as "does not exist".
   */
  private partitions(): KeyRange[] {
    const cuts = new Set<Key>();
    for (const l of this.core.layerMap.layers) {
      if (l.desc.kind !== "image") continue;
      const r = l.desc.keyRange;
      if (r.start !== KEY_MIN) cuts.add(r.start);
      if (r.end !== KEY_MAX) cuts.add(r.end);
    }
    const points = [KEY_MIN, ...[...cuts].sort(), KEY_MAX];
    const parts: KeyRange[] = [];
    for (let i = 0; i + 1 < points.length; i++) parts.push({ start: points[i]!, end: points[i + 1]! });
    return parts;
  }

  /**
   * Create image layers at disk_consistent_lsn for every partition over which at least
   * image_creation_threshold deltas lie above the newest image. Returns layers created.
   */
  async createImageLayers(force = false, signal?: AbortSignal): Promise<number> {
    const core = this.core;
    core.checkActive();
    const conf = core.deps.conf();
    const lsn = core.diskConsistent.load();
    // Every ancestor must have its branch point on disk: workers read files only.
    const chain: ChainLink[] = [{ dir: core.dir, layers: core.layerMap.layers.map((l) => l.desc), endLsn: lsnAdd(lsn, 1) }];
    for (let t: TimelineCore = core; t.ancestor !== null; t = t.ancestor) {
      if (t.ancestor.diskConsistentLsn < t.ancestorLsn) return 0;
      chain.push({ dir: t.ancestor.dir, layers: t.ancestor.layerMap.layers.map((l) => l.desc), endLsn: lsnAdd(t.ancestorLsn, 1) });
    }
    if (lsn < core.latestGcCutoff) return 0;
    const todo: KeyRange[] = [];
    for (const p of this.partitions()) {
      const imgLsn = core.layerMap.newestImageCovering(p, lsn);
      if (imgLsn === lsn) continue;
      const deltas = core.layerMap.countDeltas(p, imgLsn, lsn);
      if (deltas >= conf.image_creation_threshold || (force && (deltas > 0 || core.ancestor !== null))) todo.push(p);
    }
    if (todo.length === 0) return 0;
    const start_ms = performance.now();
    // The jobs read the chain's files in workers: download what is evicted, and keep it.
    const inputs: HistoricLayer[] = [...core.layerMap.layers];
    for (let t: TimelineCore = core; t.ancestor !== null; t = t.ancestor) inputs.push(...t.ancestor.layerMap.layers);
    const release = await this.residency.pinAndFetch(inputs);
    try {
      return await this.createImagesFor(todo, chain, lsn, conf, signal);
    } finally {
      release();
      core.metrics.storageOperation("create images", secondsSince(start_ms));
    }
  }

  private async createImagesFor(
    todo: KeyRange[],
    chain: ChainLink[],
    lsn: Lsn,
    conf: TenantConf,
    signal: AbortSignal | undefined,
  ): Promise<number> {
    const core = this.core;
    // Only now: walking the keyspace reads every relation's size on the main thread.
    const keyspace = await this.hooks.keyspaceAt(lsn);
    // One job per partition: between them the pool serves other tenants' jobs (fair queue).
    let created = 0;
    for (const part of todo) {
      // Stopped between partitions (an operator request whose client went away): each
      // partition's images are in the map already, the rest wait for the next round.
      signal?.throwIfAborted();
      const res = await core.deps.jobs.images(
        {
          outDir: core.dir,
          lsn,
          chain,
          partitions: [part],
          keyspace,
          targetSizeBytes: conf.compaction_target_size_bytes,
          redoModule: core.deps.redoModule,
        },
        core.tenantId,
      );
      const existing = new Set(core.layerMap.layers.map((l) => l.desc.fileName));
      const fresh = res.added.filter((d) => !existing.has(d.fileName));
      this.residency.markRewritten(res.added);
      core.layerMap = core.layerMap.with(
        fresh.map((d) => new HistoricLayer(core.deps.cache, core.dir, d)),
        [],
      );
      core.events.layersAdded(fresh.map((d) => ({ name: d.fileName, path: join(core.dir, d.fileName) })));
      core.counters.imageLayersCreated += fresh.length;
      created += fresh.length;
    }
    return created;
  }
}
