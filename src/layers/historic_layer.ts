/**
 * HistoricLayer: a layer file known to a layer map, opened on first use. The descriptor comes
 * from the file name alone (startup builds maps from directory listings without opening
 * files); the file is opened, and its header checked, when a read first needs it.
 *
 * Residency (on-demand download, disk-usage eviction): a layer is either resident (its file is
 * on local disk) or evicted (known by name, ranges and size, held only in remote storage).
 * A synchronous read of an evicted layer throws LayerEvictedError naming it; an async caller
 * then awaits `fetch(downloader)` and reads again. `fetch` is single-flight: concurrent
 * callers share one download. `pins` counts users that need this file to stay (a worker job
 * reading it); a long read of a whole timeline (a base backup) leases an LSN on the timeline
 * instead (Timeline.leaseReadsAt), which also covers layers created after it started.
 * Eviction skips a pinned or leased layer and one being downloaded, and takes the coldest
 * first (lastAccess: a tick of a process-wide read counter, one store per layer visited).
 */
import { join } from "node:path";
import type { PageCacheApi } from "../cache/api.js";
import { assert } from "../types/assert.js";
import { PageserverError } from "../types/errors.js";
import type { Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { openLayer, type PersistentLayer } from "./layer_file.js";
import type { LayerDesc } from "./layer_name.js";
import type { ReconstructState } from "./reconstruct_state.js";

/**
 * A synchronous read met a layer that is not on local disk: use the async path, which
 * downloads it. It names the layer (file name, timeline directory), never holds it: errors
 * are logged, and a layer object reaches the whole page cache.
 */
export class LayerEvictedError extends PageserverError {
  readonly layer_name: string;
  readonly timeline_dir: string;
  constructor(layer: HistoricLayer) {
    super(
      "bad_state",
      `layer ${layer.desc.fileName} is not on local disk (evicted): read through the async path, which downloads it first`,
    );
    this.layer_name = layer.desc.fileName;
    this.timeline_dir = layer.dir;
  }
}

/** Brings one layer's file to `layer.path` (verified, durable); the timeline's remote side. */
export type LayerDownloader = (layer: HistoricLayer) => Promise<void>;

/** Coarse clock for last access: a read costs one property store, not a clock call. */
let accessTick = 0;
export function advanceAccessTick(): number {
  return ++accessTick;
}

export class HistoricLayer {
  readonly desc: LayerDesc;
  readonly dir: string;
  private readonly cache: PageCacheApi;
  private file: PersistentLayer | null = null;
  private resident_: boolean;
  private downloading: Promise<void> | null = null;
  /** Users that need the file to stay on disk (jobs reading it in workers). */
  pins = 0;
  /** The access tick (advanceAccessTick) of the last read: eviction takes the smallest first. */
  lastAccess = 0;

  constructor(cache: PageCacheApi, dir: string, desc: LayerDesc, resident = true) {
    this.cache = cache;
    this.dir = dir;
    this.desc = desc;
    this.resident_ = resident;
  }

  get path(): string {
    return join(this.dir, this.desc.fileName);
  }

  get isImage(): boolean {
    return this.desc.kind === "image";
  }

  get resident(): boolean {
    return this.resident_;
  }

  /** Whether a download of this layer is under way. */
  get downloadInFlight(): boolean {
    return this.downloading !== null;
  }

  open(): PersistentLayer {
    if (!this.resident_) throw new LayerEvictedError(this);
    if (this.file === null) this.file = openLayer(this.cache, this.dir, this.desc);
    return this.file;
  }

  getValues(key: Key, lsnFloor: Lsn, lsnEnd: Lsn, state: ReconstructState): boolean {
    state.layersVisited++;
    this.lastAccess = accessTick;
    return this.open().getValues(key, lsnFloor, lsnEnd, state);
  }

  /**
   * Make the file resident: one download shared by every caller while it runs. A failed
   * download leaves the layer evicted (a later call tries again).
   */
  fetch(download: LayerDownloader): Promise<void> {
    if (this.resident_) return Promise.resolve();
    if (this.downloading === null) {
      this.downloading = download(this)
        .then(() => {
          this.resident_ = true;
          this.lastAccess = accessTick;
        })
        .finally(() => {
          this.downloading = null;
        });
    }
    return this.downloading;
  }

  /** The file was written here again under the same name (a job redid its output): resident, nothing to download. */
  markRewritten(): void {
    if (this.downloading === null) this.resident_ = true;
  }

  /**
   * Forget the local file (the caller unlinks it after): only a resident, unpinned layer that
   * is not being downloaded. Reads are synchronous, so none is running now.
   */
  markEvicted(): void {
    assert(this.resident_ && this.pins === 0 && this.downloading === null, "evicting a layer in use");
    this.close();
    this.resident_ = false;
  }

  close(): void {
    if (this.file !== null) {
      this.file.close();
      this.file = null;
    }
  }
}
