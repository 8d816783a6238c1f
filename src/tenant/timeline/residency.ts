/**
 * LayerResidency: which historic layers of a timeline are on local disk (on-demand download,
 * eviction, the evicted-layer manifest) and the read leases that keep them there. Owns the
 * downloader (remote storage), the reads waiting for it, the manifest write chain and the
 * leases; the layers themselves are the core's layer map.
 *
 * A historic layer is resident (on local disk) or evicted (held in remote storage only;
 * evicted_layers.ts keeps the list across restarts). The synchronous read (read.ts) meets an
 * evicted layer as a LayerEvictedError; the async read downloads it (downloadEvicted) and
 * reads again. Jobs that read files in workers (compaction, image creation) download and pin
 * their inputs first (pinAndFetch). A long read that runs synchronously in steps over the
 * whole datadir (a base backup) leases its LSN (leaseReadsAt): every layer a read at that LSN
 * may visit, on this timeline and its ancestors, including layers a flush or compaction
 * creates while it runs, stays resident, and GC keeps its cutoff at or below the LSN.
 * Eviction (evictLayer) takes only resident, unpinned, unleased layers, between reads.
 *
 * Invariants:
 * - a lease taken on a timeline is held on every ancestor at min(LSN, branch point) too, and
 *   released on each exactly once.
 * - the manifest is written before an eviction unlinks the file, and lists what the map has
 *   evicted when the write starts: a crash between the two loads each layer exactly once.
 * - a layer downloaded after GC or compaction dropped it from the map is removed again.
 *
 * Lock order: none (single-threaded); manifest writes are chained one at a time in order.
 * `parent` is the ancestor timeline's residency (leases and downloads walk it).
 */
import { rmSync, unlinkSync } from "node:fs";
import { HistoricLayer, type LayerDownloader, LayerEvictedError } from "../../layers/historic_layer.js";
import { parseLayerName } from "../../layers/layer_name.js";
import { assert } from "../../types/assert.js";
import { BadStateError } from "../../types/errors.js";
import { type Lsn, lsnMin, MAX_LSN } from "../../types/lsn.js";
import { writeEvictedLayers } from "../evicted_layers.js";
import type { LayerDesc } from "../../layers/layer_name.js";
import { MAX_ANCESTRY_DEPTH, type TimelineCore } from "./core.js";

/** Downloads one async read may wait for before it gives up (each makes one more layer resident). */
export const MAX_DOWNLOADS_PER_READ = 10_000;
/** Reads waiting at once for remote storage to connect (each is a request). */
const MAX_DOWNLOADER_WAITERS = 100_000;
/** Read leases held at once on one timeline (each is a base backup in flight). */
const MAX_READ_LEASES = 100_000;

export class LayerResidency {
  private readonly core: TimelineCore;
  /** The ancestor timeline's residency; null for a root timeline. */
  private readonly parent: LayerResidency | null;
  /** Brings evicted layers back (remote storage); null: none can be downloaded. */
  private downloader: LayerDownloader | null = null;
  /** Reads that wait for a downloader (remote storage connects in the background after load). */
  private readonly downloaderWaiters = new Set<() => void>();
  /** The evicted-layer manifest writes, one at a time in order. */
  private manifestWrite: Promise<void> = Promise.resolve();
  /** Read leases (leaseReadsAt): LSN → how many long reads hold it, here or on a descendant at its branch point. */
  private readonly readLeases = new Map<Lsn, number>();

  constructor(core: TimelineCore, parent: LayerResidency | null) {
    assert((parent === null) === (core.ancestor === null), "residency parent must be the ancestor's");
    this.core = core;
    this.parent = parent;
  }

  /** Where evicted layers of this timeline are downloaded from; null: nowhere (no remote storage). */
  setLayerDownloader(d: LayerDownloader | null): void {
    this.downloader = d;
    if (d === null) return;
    for (const w of this.downloaderWaiters) w();
    this.downloaderWaiters.clear();
  }

  /** The downloader, waiting (up to wait_lsn_timeout) for remote storage to connect; null if it does not. */
  private async awaitDownloader(): Promise<LayerDownloader | null> {
    if (this.downloader !== null) return this.downloader;
    if (this.downloaderWaiters.size >= MAX_DOWNLOADER_WAITERS) return null;
    let timer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    await new Promise<void>((resolve) => {
      wake = resolve;
      this.downloaderWaiters.add(resolve);
      timer = setTimeout(resolve, this.core.deps.conf().wait_lsn_timeout_ms);
    });
    clearTimeout(timer);
    if (wake !== undefined) this.downloaderWaiters.delete(wake);
    return this.downloader;
  }

  /** The names of this timeline's evicted layers. */
  evictedLayerNames(): string[] {
    return this.core.layerMap.layers.filter((l) => !l.resident).map((l) => l.desc.fileName);
  }

  /** The resident historic layers (eviction candidates, among others). */
  residentLayers(): HistoricLayer[] {
    return this.core.layerMap.layers.filter((l) => l.resident);
  }

  /** Bytes of the resident layer files. */
  residentBytes(): number {
    let n = 0;
    for (const l of this.core.layerMap.layers) if (l.resident) n += l.desc.fileSize;
    return n;
  }

  /**
   * Make the layer map match the remote index (`remote`: name → size) for what is not on
   * local disk: index layers we lack become evicted layers (an attach downloads none), and
   * evicted layers the index no longer names are dropped (GC or compaction removed them
   * while they were evicted). Layers above disk_consistent_lsn are left out, as load does.
   */
  adoptRemoteLayers(remote: ReadonlyMap<string, number>): { added: number; dropped: number } {
    const core = this.core;
    const added: HistoricLayer[] = [];
    const dropped: string[] = [];
    const dcl = core.diskConsistent.load();
    for (const [name, size] of remote) {
      if (core.layerMap.get(name) !== undefined) continue;
      const parsed = parseLayerName(name);
      if (parsed === null || parsed.lsnRange.end - 1 > dcl) continue;
      added.push(new HistoricLayer(core.deps.cache, core.dir, { ...parsed, fileSize: size }, false));
    }
    for (const l of core.layerMap.layers) if (!l.resident && !remote.has(l.desc.fileName)) dropped.push(l.desc.fileName);
    if (added.length > 0 || dropped.length > 0) {
      core.layerMap = core.layerMap.with(added, dropped);
      this.saveEvictedManifest().catch((e: unknown) => core.log.warn({ err: e }, "cannot write the evicted-layer manifest"));
    }
    return { added: added.length, dropped: dropped.length };
  }

  /** Writes the manifest of the evicted layers as the map has them when the write starts (plus `also`). */
  saveEvictedManifest(also: HistoricLayer | null = null): Promise<void> {
    const p = this.manifestWrite.then(() => {
      const m = new Map<string, number>();
      for (const l of this.core.layerMap.layers) if (!l.resident || l === also) m.set(l.desc.fileName, l.desc.fileSize);
      return writeEvictedLayers(this.core.dir, m);
    });
    this.manifestWrite = p.catch(() => undefined);
    return p;
  }

  /** Layers a job wrote again under names the map holds (an interrupted run's output): their files are here now. */
  markRewritten(written: readonly LayerDesc[]): void {
    for (const d of written) {
      const l = this.core.layerMap.get(d.fileName);
      if (l !== undefined && !l.resident) l.markRewritten();
    }
  }

  /** The residency (this or an ancestor's) whose map holds `layer`, for its downloader. */
  private ownerOf(layer: HistoricLayer): LayerResidency | null {
    let depth = 0;
    for (let r: LayerResidency | null = this; r !== null; r = r.parent) {
      assert(depth++ < MAX_ANCESTRY_DEPTH, "ancestry too deep");
      if (r.core.layerMap.get(layer.desc.fileName) === layer) return r;
    }
    return null;
  }

  /** Download `layer` (of this timeline or an ancestor) if it is evicted; one download per layer at a time. */
  async downloadLayer(layer: HistoricLayer): Promise<void> {
    if (layer.resident) return;
    const owner = this.ownerOf(layer) ?? this;
    const d = await owner.awaitDownloader();
    if (layer.resident) return;
    if (d === null)
      throw new BadStateError(
        `layer ${layer.desc.fileName} of timeline ${owner.core.timelineId} is evicted and remote storage is not connected (yet)`,
      );
    await layer.fetch(d);
    // GC or compaction dropped the layer while it came down: its file must not stay, or the
    // next load would take it for one of the timeline's layers.
    if (owner.core.layerMap.get(layer.desc.fileName) === undefined) {
      layer.close();
      rmSync(layer.path, { force: true });
    }
  }

  /**
   * Download the layer `e` names, if a map of this timeline or an ancestor still holds it
   * (the error carries names only). When none does, a compaction or GC replaced it meanwhile:
   * nothing to download, the caller's rerun walks the new map.
   */
  async downloadEvicted(e: LayerEvictedError): Promise<void> {
    let depth = 0;
    for (let r: LayerResidency | null = this; r !== null; r = r.parent) {
      assert(depth++ < MAX_ANCESTRY_DEPTH, "ancestry too deep");
      if (r.core.dir !== e.timeline_dir) continue;
      const layer = r.core.layerMap.get(e.layer_name);
      if (layer !== undefined) await this.downloadLayer(layer);
      return;
    }
  }

  /**
   * Run the synchronous read `fn`; each time it meets an evicted layer, download that layer
   * and run `fn` again (reads are pure, so a rerun is safe).
   */
  async withResidentLayers<T>(fn: () => T): Promise<T> {
    for (let downloads = 0; ; downloads++) {
      try {
        return fn();
      } catch (e) {
        if (!(e instanceof LayerEvictedError) || downloads >= MAX_DOWNLOADS_PER_READ) throw e;
        await this.downloadEvicted(e);
      }
    }
  }

  /**
   * Lease `lsn` for a long read (a base backup) until the returned release function runs
   * (idempotent; call it in a finally). While the lease is held, eviction leaves every layer
   * a read at `lsn` may visit: this timeline's layers that start at or below it, the
   * ancestors' at or below their branch points, and layers created later (a flush of the
   * in-memory layer that held `lsn`, a compaction's output) as much as those there now. GC
   * keeps the cutoff at or below a leased LSN (an LSN below the cutoff already: GcCutoffError).
   * Synchronous: no eviction can come between the caller's check and the lease.
   */
  leaseReadsAt(lsn: Lsn): () => void {
    this.core.checkReadable(lsn);
    const held: { r: LayerResidency; at: Lsn }[] = [];
    let at = lsn;
    let depth = 0;
    for (let r: LayerResidency | null = this; r !== null; r = r.parent) {
      assert(depth++ < MAX_ANCESTRY_DEPTH, "ancestry too deep");
      if (r.readLeases.size >= MAX_READ_LEASES && !r.readLeases.has(at)) {
        for (const h of held) h.r.dropLease(h.at);
        throw new BadStateError(`timeline ${r.core.timelineId} has ${MAX_READ_LEASES} read leases already`);
      }
      r.readLeases.set(at, (r.readLeases.get(at) ?? 0) + 1);
      held.push({ r, at });
      at = lsnMin(at, r.core.ancestorLsn);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const h of held) h.r.dropLease(h.at);
    };
  }

  private dropLease(at: Lsn): void {
    const n = this.readLeases.get(at);
    assert(n !== undefined && n > 0, "read lease released twice");
    if (n === 1) this.readLeases.delete(at);
    else this.readLeases.set(at, n - 1);
  }

  /** The highest leased LSN on this timeline (-1: none): layers starting at or below it stay. */
  private maxLeasedLsn(): Lsn {
    let max = -1 as Lsn;
    for (const at of this.readLeases.keys()) if (at > max) max = at;
    return max;
  }

  /** The lowest leased LSN on this timeline (MAX_LSN: none): GC's cutoff stays at or below it. */
  minLeasedLsn(): Lsn {
    let min = MAX_LSN;
    for (const at of this.readLeases.keys()) if (at < min) min = at;
    return min;
  }

  /** Number of read leases held on this timeline (its own long reads and its descendants'). */
  get readLeaseCount(): number {
    let n = 0;
    for (const c of this.readLeases.values()) n += c;
    return n;
  }

  /**
   * Whether eviction may take `layer` of this timeline now: in the map, resident, not pinned
   * by a job, not being downloaded, and no leased read may visit it.
   */
  evictable(layer: HistoricLayer): boolean {
    return (
      this.core.layerMap.get(layer.desc.fileName) === layer &&
      layer.resident &&
      layer.pins === 0 &&
      !layer.downloadInFlight &&
      layer.desc.lsnRange.start > this.maxLeasedLsn()
    );
  }

  /**
   * Lease `lsn` (leaseReadsAt), then download every evicted layer a read at it may visit: for
   * readers that read everything synchronously in steps (base backups). Returns the release
   * function. A layer that shows up evicted later anyway (remote storage connecting adopts
   * layers of the index) is still met by the reads, which download it then.
   */
  async holdReadsAt(lsn: Lsn): Promise<() => void> {
    const release = this.leaseReadsAt(lsn);
    try {
      for (let round = 0; ; round++) {
        assert(round < MAX_DOWNLOADS_PER_READ, "lease downloads did not settle");
        const missing = this.evictedAt(lsn);
        if (missing.length === 0) return release;
        for (const l of missing) await this.downloadLayer(l);
      }
    } catch (e) {
      release();
      throw e;
    }
  }

  /** The evicted layers a read at `lsn` may visit (this timeline's, the ancestors' below their branch points). */
  private evictedAt(lsn: Lsn): HistoricLayer[] {
    const out: HistoricLayer[] = [];
    let at = lsn;
    let depth = 0;
    for (let t: TimelineCore | null = this.core; t !== null; t = t.ancestor) {
      assert(depth++ < MAX_ANCESTRY_DEPTH, "ancestry too deep");
      for (const l of t.layerMap.layers) if (!l.resident && l.desc.lsnRange.start <= at) out.push(l);
      at = lsnMin(at, t.ancestorLsn);
    }
    return out;
  }

  /** Pin `layers` (so eviction leaves them), then download those that are evicted. Returns the unpin function. */
  async pinAndFetch(layers: HistoricLayer[]): Promise<() => void> {
    for (const l of layers) l.pins++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      for (const l of layers) l.pins--;
    };
    try {
      for (const l of layers) if (!l.resident) await this.downloadLayer(l);
    } catch (e) {
      release();
      throw e;
    }
    return release;
  }

  /**
   * Evict one resident layer of this timeline: recorded in the manifest first, then closed
   * and unlinked. False when it can't be now (see evictable: not in the map any more, pinned,
   * leased, downloading, already evicted). The caller decides it is safe remotely (uploaded,
   * no upload pending).
   */
  async evictLayer(layer: HistoricLayer): Promise<boolean> {
    if (!this.evictable(layer)) return false;
    await this.saveEvictedManifest(layer);
    // The manifest write awaited: a read, a pin, a lease or a map change may have come meanwhile.
    if (!this.evictable(layer)) return false;
    layer.markEvicted();
    try {
      unlinkSync(layer.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    return true;
  }
}
