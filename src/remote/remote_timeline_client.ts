/**
 * RemoteTimelineClient: one timeline's side of remote storage. It implements the timeline's
 * LayerEvents (src/tenant/layer_events.ts) over an UploadQueue, so that every layer file and
 * every metadata change a timeline makes durable locally follows, in order, to the bucket.
 *
 * - open(): refuses a timeline whose bucket holds an index of a newer generation (we are
 *   stale: SupersededError), then starts the queue from the newest index ≤ our generation.
 * - reconcile(): makes the remote state the local one once at load: deletes our own
 *   generation's unindexed layer objects (a crash cut their upload or deletion short), uploads
 *   local layers the index lacks (or has with another size), removes remote-only layers
 *   except the timeline's evicted ones (held remotely on purpose), uploads an index with the
 *   local metadata. A remote index ahead of local disk_consistent_lsn is refused (that
 *   timeline needs an attach from remote storage, not an upload over it).
 * - downloadLayer: one evicted layer back from the uploaded index's object (verified and
 *   durable: download.ts); isUploaded says whether a local layer may be evicted (the uploaded
 *   index names it with the local size and no upload of it is pending).
 * - layersAdded hands each file to the queue at once (it holds a hard link until uploaded; see
 *   UploadQueue), so the timeline may unlink it any time later, and schedules an index that
 *   names them (image creation changes no metadata). A name already in the remote
 *   state is not uploaded again: a layer name fixes its key and LSN ranges, so a rewrite
 *   under the same name holds the same data.
 * - The LayerEvents calls never throw: a failure stops the queue, and the owner hears of it
 *   through onStopped (failed / superseded) to mark the timeline Broken.
 */
import { statSync } from "node:fs";
import type { Logger } from "pino";
import type { AddedLayer, LayerEvents } from "../tenant/layer_events.js";
import type { TimelineMetadata } from "../tenant/metadata.js";
import { BadStateError, NotFoundError, PageserverError } from "../types/errors.js";
import type { TenantId, TimelineId } from "../types/ids.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import type { Generation } from "./generation.js";
import { downloadLayer } from "./download.js";
import { findLatestIndex, listIndexGenerations } from "./index_part.js";
import { layerKey, parseLayerKey, timelinePrefix } from "./remote_path.js";
import type { RemoteCallOptions, RemoteStorage } from "./remote_storage.js";
import { UploadQueue, type UploadQueueOptions, type UploadQueueStats, type UploadQueueStatus } from "./upload_queue.js";

/** Our generation is not the newest: another pageserver attached this tenant after us. */
export class SupersededError extends PageserverError {
  readonly newer_generation: Generation;
  /** `subject`: what was found superseded, e.g. `timeline <id>` or `tenant <id>`. */
  constructor(subject: string, ours: Generation, newer: Generation) {
    super("bad_state", `${subject}: generation ${ours} is superseded by generation ${newer}`);
    this.newer_generation = newer;
  }
}

export interface RemoteTimelineClientOptions
  extends Pick<
    UploadQueueOptions,
    "max_concurrent_uploads" | "max_queued_ops" | "retry_base_ms" | "retry_max_ms" | "op_timeout_ms" | "onStopped" | "commit_times"
  > {
  storage: RemoteStorage;
  tenant_id: TenantId;
  timeline_id: TimelineId;
  generation: Generation;
  log: Logger;
}

export class RemoteTimelineClient implements LayerEvents {
  private readonly queue: UploadQueue;
  private readonly log: Logger;
  private readonly o: RemoteTimelineClientOptions;
  /** Layer objects of our generation that no index names, found at open (reconcile deletes them). */
  private orphans: string[];

  private constructor(o: RemoteTimelineClientOptions, queue: UploadQueue, log: Logger, orphans: string[]) {
    this.o = o;
    this.queue = queue;
    this.log = log;
    this.orphans = orphans;
  }

  static async open(o: RemoteTimelineClientOptions, call: RemoteCallOptions = {}): Promise<RemoteTimelineClient> {
    const gens = await listIndexGenerations(o.storage, o.tenant_id, o.timeline_id, call);
    const newest = gens.at(-1);
    if (newest !== undefined && newest > o.generation) throw new SupersededError(`timeline ${o.timeline_id}`, o.generation, newest);
    const latest = await findLatestIndex(o.storage, o.tenant_id, o.timeline_id, o.generation, call);
    const orphans: string[] = [];
    for (const obj of await o.storage.list(timelinePrefix(o.tenant_id, o.timeline_id), call)) {
      const lk = parseLayerKey(obj.key);
      if (lk === null || lk.generation !== o.generation) continue;
      if (latest?.index.layers.get(lk.layer_name)?.generation !== o.generation) orphans.push(obj.key);
    }
    const queue = new UploadQueue({ ...o, initial: latest?.index ?? null });
    return new RemoteTimelineClient(o, queue, o.log, orphans);
  }

  /** Schedules what makes the bucket hold exactly the local layers and metadata. */
  reconcile(local: { layers: readonly AddedLayer[]; metadata: TimelineMetadata; evicted?: readonly string[] }): void {
    const projected = this.queue.projectedIndex;
    const remote_dcl = projected?.metadata.disk_consistent_lsn ?? null;
    if (remote_dcl !== null && remote_dcl > local.metadata.disk_consistent_lsn) {
      throw new BadStateError(
        `remote index is at ${lsnToString(remote_dcl)}, ahead of the local disk_consistent_lsn ${lsnToString(local.metadata.disk_consistent_lsn)}: ` +
          "this timeline needs an attach from remote storage",
      );
    }
    const remoteLayers = projected?.layers ?? new Map();
    const localNames = new Set([...local.layers.map((l) => l.name), ...(local.evicted ?? [])]);
    const stale: string[] = [];
    const upload: { layer: AddedLayer; size: number }[] = [];
    for (const l of local.layers) {
      const size = statSync(l.path).size;
      const r = remoteLayers.get(l.name);
      if (r !== undefined && r.file_size === size) continue;
      if (r !== undefined) stale.push(l.name);
      upload.push({ layer: l, size });
    }
    const remoteOnly = [...remoteLayers.keys()].filter((n) => !localNames.has(n));
    // Our own garbage first (an upload below may put the same key again: it waits for this).
    const orphans = this.orphans;
    this.orphans = [];
    if (orphans.length > 0) this.queue.scheduleOrphanDeletion(orphans);
    // Same name, other size: off the remote state first (its key may be ours to reuse).
    if (stale.length > 0) this.queue.scheduleLayerDeletion(stale);
    for (const u of upload) {
      this.queue.scheduleLayerUpload({ name: u.layer.name, local_path: u.layer.path, file_size: u.size, crc32c: null });
    }
    this.queue.scheduleIndexUpload(local.metadata);
    if (remoteOnly.length > 0) this.queue.scheduleLayerDeletion(remoteOnly);
    this.log.info(
      {
        uploads: upload.length,
        remote_only: remoteOnly.length,
        replaced: stale.length,
        orphans: orphans.length,
        disk_consistent_lsn: lsnToString(local.metadata.disk_consistent_lsn),
      },
      "remote state reconciled with local layers",
    );
  }

  layersAdded(layers: readonly AddedLayer[]): void {
    this.guard("layersAdded", () => {
      const projected = this.queue.projectedIndex;
      const known = projected?.layers;
      let scheduled = 0;
      for (const l of layers) {
        if (known?.has(l.name) === true) continue;
        // The queue links the file now: the timeline may unlink it from here on.
        this.queue.scheduleLayerUpload({ name: l.name, local_path: l.path, file_size: statSync(l.path).size, crc32c: null });
        scheduled++;
      }
      // Publish them now: image creation changes no metadata, so nothing else would. (After
      // a flush the metadata follows at once; queued index uploads coalesce.)
      if (scheduled > 0 && projected !== null) this.queue.scheduleIndexUpload(projected.metadata);
    });
  }

  layersRemoved(names: readonly string[]): void {
    this.guard("layersRemoved", () => {
      const known = this.queue.projectedIndex?.layers;
      const remote = names.filter((n) => known?.has(n) === true);
      if (remote.length > 0) this.queue.scheduleLayerDeletion(remote);
    });
  }

  metadataChanged(metadata: TimelineMetadata): void {
    this.guard("metadataChanged", () => this.queue.scheduleIndexUpload(metadata));
  }

  /** disk_consistent_lsn of the last index known to be in the bucket; null before the first. */
  get remote_consistent_lsn(): Lsn | null {
    return this.queue.remote_consistent_lsn;
  }

  get status(): UploadQueueStatus {
    return this.queue.status;
  }

  get stop_reason(): string | null {
    return this.queue.stop_reason;
  }

  stats(): UploadQueueStats {
    return this.queue.stats();
  }

  /** Name → file size of every layer the remote state will hold (the timeline adopts those it lacks as evicted). */
  remoteLayerSizes(): Map<string, number> {
    const m = new Map<string, number>();
    for (const [name, l] of this.queue.projectedIndex?.layers ?? []) m.set(name, l.file_size);
    return m;
  }

  /** Whether the uploaded index names `name` with size `size_bytes` and no upload of it is pending: its local file may go. */
  isUploaded(name: string, size_bytes: number): boolean {
    const l = this.queue.remoteIndex?.layers.get(name);
    return l !== undefined && l.file_size === size_bytes && !this.queue.isPending(name);
  }

  /**
   * Downloads layer `name` to `dest` from the object the uploaded index names (length and
   * CRC32C checked; temp file, fsync, rename). A layer no uploaded index names is a NotFoundError.
   */
  async downloadLayer(name: string, dest: string, call: RemoteCallOptions = {}): Promise<void> {
    const meta = this.queue.remoteIndex?.layers.get(name);
    if (meta === undefined) throw new NotFoundError(`layer ${name} of timeline ${this.o.timeline_id} is in no uploaded index`);
    await downloadLayer(this.o.storage, layerKey(this.o.tenant_id, this.o.timeline_id, name, meta.generation), dest, meta, call);
  }

  /** Backpressure for the timeline's flush (LayerEvents.waitForRoom; UploadQueue.waitForRoom). */
  waitForRoom(timeout_ms: number): Promise<boolean> {
    return this.queue.waitForRoom(timeout_ms);
  }

  /** Whether an upload of this layer is still queued or in flight. */
  isPending(name: string): boolean {
    return this.queue.isPending(name);
  }

  /** Resolves when everything reported so far is in the bucket (detach waits on it). */
  waitUploaded(opts: { signal?: AbortSignal } = {}): Promise<void> {
    return this.queue.waitUploaded(opts);
  }

  shutdown(): Promise<void> {
    return this.queue.shutdown();
  }

  private guard(what: string, fn: () => void): void {
    if (this.queue.status !== "active") return;
    try {
      fn();
    } catch (e) {
      // The remote state can't follow the local one any more: stop rather than publish an
      // index that skips a change.
      this.log.error({ err: e, event: what }, "remote timeline client cannot schedule a change");
      this.queue.fail(`${what}: ${(e as Error)?.message ?? String(e)}`);
    }
  }
}
