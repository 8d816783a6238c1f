/**
 * The upload queue of one timeline: the ordered operations that carry its layer files and its
 * index to remote storage, with Neon's ordering rules (remote_timeline_client.rs,
 * upload_queue.rs). This file holds the queue: scheduling, starting ops in order, running and
 * completing them, stopping. Its parts: the ops and their ordering rules (upload_ops.ts), the
 * retry policy (upload_retry.ts), a layer's local file and its read (upload_layer_file.ts),
 * waiters and backpressure (upload_waiters.ts), the commit-time index (upload_commit_times.ts).
 *
 * - The queue keeps the *projected* index: the remote state once everything scheduled so far
 *   is done. scheduleLayerUpload adds a layer to it, scheduleIndexUpload snapshots it (with new
 *   metadata), scheduleLayerDeletion removes layers, snapshots it, then deletes them.
 * - Ops start in the order upload_ops.ts's rules allow, at most max_concurrent_uploads
 *   operations in flight. A deletion (and the removal of a stale commit-time object) runs only
 *   after checkGeneration() finds no newer generation of the timeline in the bucket. If one
 *   exists, nothing is deleted and the queue stops as "superseded by generation N".
 * - Every remote error is retried (counted in stats().retries_total) until it succeeds or the
 *   queue stops. Only a local error (the layer file changed or is gone) stops the queue as
 *   "failed" with the reason: every later index would be wrong without it.
 * - Backpressure: waitForRoom() resolves once the queue holds fewer than
 *   max_queued_ops - roomHeadroom() operations; a timeline's flush waits on it (bounded
 *   waits), so a long outage slows flushes (and so ingest) instead of filling the queue.
 * - remote_consistent_lsn is the disk_consistent_lsn of the last index known to be uploaded.
 * - shutdown() aborts what is in flight, stops retrying, and rejects every pending wait with a
 *   ShutdownError; a stop (failed/superseded) rejects them with UploadQueueStoppedError.
 *
 * Invariants: at most max_queued_ops ops pending and max_concurrent_uploads in flight; an op
 * leaves `pending` only when done (complete) or when a stopped queue is idle; the status only
 * leaves "active", once. Nothing here is persisted: after a restart the queue starts from the
 * remote index and the local files (the owner reconciles them), as Neon's does.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { parseLayerName } from "../layers/layer_name.js";
import type { TimelineMetadata } from "../tenant/metadata.js";
import { assert } from "../types/assert.js";
import { BadStateError, ConflictError, InvalidArgumentError, LimitReachedError, PageserverError, ShutdownError } from "../types/errors.js";
import type { TenantId, TimelineId } from "../types/ids.js";
import { failpoint } from "../types/failpoints.js";
import type { Lsn } from "../types/lsn.js";
import { type Generation, isGeneration } from "./generation.js";
import { encodeIndexPart, type IndexPart, listIndexGenerations } from "./index_part.js";
import { indexKey, layerKey, parseLayerKey } from "./remote_path.js";
import type { RemoteStorage } from "./remote_storage.js";
import { CommitTimesUploads } from "./upload_commit_times.js";
import { linkLocal, unlinkQuiet, uploadLayerFile } from "./upload_layer_file.js";
import {
  canStart,
  describe,
  type IndexOp,
  indexRunEnd,
  type LayerUpload,
  type Op,
  opCounts,
  type ProjectedIndex,
  type ProjectedLayer,
  publishable,
  type UploadQueueStats,
} from "./upload_ops.js";
import { backoffDelayMs, isRetryable, NewerGenerationError, retryLogLevel } from "./upload_retry.js";
import { UploadWaiters } from "./upload_waiters.js";

export type { LayerUpload, ProjectedIndex, ProjectedLayer, UploadQueueStats } from "./upload_ops.js";

export interface UploadQueueOptions {
  storage: RemoteStorage;
  tenant_id: TenantId;
  timeline_id: TimelineId;
  /** Our generation: suffix of every key we write. */
  generation: Generation;
  /** The remote index we start from (loaded at startup/attach); null for a new timeline. */
  initial: IndexPart | null;
  log: Logger;
  /** Operations in flight at once (default 4). */
  max_concurrent_uploads?: number;
  /** Operations queued at once; scheduling beyond is a LimitReachedError (default 10,000). */
  max_queued_ops?: number;
  retry_base_ms?: number;
  retry_max_ms?: number;
  /** Per storage call (default: the backend's). */
  op_timeout_ms?: number;
  /**
   * The newest generation of this timeline found in remote storage, asked before every
   * deletion. Default: the newest index_part.json-<gen> under the timeline's prefix.
   */
  newestRemoteGeneration?: (signal: AbortSignal) => Promise<Generation | null>;
  /**
   * The timeline's commit-time index as one object (CommitTimes.snapshot), taken at each index
   * upload; null: it has none. Absent: the queue carries the remote index's reference as is.
   */
  commit_times?: () => Promise<Uint8Array | null>;
  /** Called once when the queue stops by itself (failed or superseded), with the reason. */
  onStopped?: (status: "failed" | "superseded", reason: string) => void;
}

export type UploadQueueStatus = "active" | "failed" | "superseded" | "shutdown";

/** The queue stopped on a permanent error or a newer generation; says which. */
export class UploadQueueStoppedError extends PageserverError {
  constructor(message: string) {
    super("bad_state", message);
  }
}

export class UploadQueue {
  private readonly o: UploadQueueOptions;
  private readonly max_inflight: number;
  private readonly max_queued: number;
  private readonly retry_base_ms: number;
  private readonly retry_max_ms: number;
  private readonly abort = new AbortController();
  /** Undone operations (queued or in flight), in schedule order. */
  private readonly pending: Op[] = [];
  private readonly running = new Set<Promise<void>>();
  private readonly waits = new UploadWaiters();
  private next_seq = 1;
  private inflight = 0;
  private projectedLayers: Map<string, ProjectedLayer>;
  private projectedMetadata: TimelineMetadata | null;
  private uploaded: IndexPart | null;
  private readonly commitTimes: CommitTimesUploads;
  private _status: UploadQueueStatus = "active";
  private _stop_reason: string | null = null;
  private readonly counters = {
    retries_total: 0,
    uploaded_layers_total: 0,
    uploaded_layer_bytes_total: 0,
    uploaded_indexes_total: 0,
    deleted_layers_total: 0,
    backpressure_waits_total: 0,
  };

  constructor(opts: UploadQueueOptions) {
    assert(isGeneration(opts.generation), "UploadQueue: bad generation");
    this.o = opts;
    this.max_inflight = opts.max_concurrent_uploads ?? 4;
    this.max_queued = opts.max_queued_ops ?? 10_000;
    this.retry_base_ms = opts.retry_base_ms ?? 100;
    this.retry_max_ms = opts.retry_max_ms ?? 30_000;
    assert(this.max_inflight >= 1 && this.max_queued >= 1, "UploadQueue: limits must be ≥ 1");
    assert(this.retry_base_ms > 0 && this.retry_max_ms >= this.retry_base_ms, "UploadQueue: bad retry bounds");
    this.projectedLayers = new Map([...(opts.initial?.layers ?? [])].map(([n, l]) => [n, { ...l }]));
    this.projectedMetadata = opts.initial?.metadata ?? null;
    this.uploaded = opts.initial;
    this.commitTimes = new CommitTimesUploads(opts, opts.initial?.commit_times ?? null);
  }

  get status(): UploadQueueStatus {
    return this._status;
  }

  /** Why the queue stopped (null while active). */
  get stop_reason(): string | null {
    return this._stop_reason;
  }

  get generation(): Generation {
    return this.o.generation;
  }

  /** disk_consistent_lsn of the last index known to be in remote storage; null if none. */
  get remote_consistent_lsn(): Lsn | null {
    return this.uploaded?.metadata.disk_consistent_lsn ?? null;
  }

  /** The last index known to be in remote storage. */
  get remoteIndex(): IndexPart | null {
    return this.uploaded;
  }

  /** The remote state once everything scheduled so far is done. */
  get projectedIndex(): ProjectedIndex | null {
    return this.projectedMetadata === null ? null : { metadata: this.projectedMetadata, layers: new Map(this.projectedLayers) };
  }

  /** True while an upload of this layer is queued or in flight (its file is held open). */
  isPending(name: string): boolean {
    return this.pending.some((op) => op.kind === "upload_layer" && op.layer.name === name);
  }

  /** Operations not done (queued + in flight). */
  get depth(): number {
    return this.pending.length;
  }

  stats(): UploadQueueStats {
    return { ...opCounts(this.pending), ...this.counters };
  }

  /**
   * Uploads a new layer file under our generation; it joins the projected index. A hard link
   * to the file is made now (see the header), so the timeline may unlink it at any time after
   * this call without losing the upload. A missing file is a NotFoundError.
   */
  scheduleLayerUpload(layer: LayerUpload): void {
    this.checkSchedulable(1);
    if (parseLayerName(layer.name) === null) throw new InvalidArgumentError(`not a layer name: '${layer.name}'`);
    assert(Number.isSafeInteger(layer.file_size) && layer.file_size >= 0, "scheduleLayerUpload: bad file_size");
    const c = layer.crc32c;
    assert(c === null || (Number.isInteger(c) && c >= 0 && c <= 0xffff_ffff), "scheduleLayerUpload: bad crc32c");
    const existing = this.projectedLayers.get(layer.name);
    if (existing !== undefined && existing.generation === this.o.generation) {
      // Same key as an object an index may already name: overwriting it could change a
      // published layer under a reader.
      throw new ConflictError(`layer ${layer.name} is already part of the remote state in generation ${this.o.generation}`);
    }
    const link = linkLocal(layer.local_path);
    const entry: ProjectedLayer = { file_size: layer.file_size, crc32c: layer.crc32c, generation: this.o.generation };
    this.projectedLayers.set(layer.name, entry);
    const key = layerKey(this.o.tenant_id, this.o.timeline_id, layer.name, this.o.generation);
    this.enqueue({ kind: "upload_layer", seq: 0, state: "queued", key, layer: { ...layer }, entry, link });
  }

  /** Operations kept free below max_queued_ops for what a flush and a compaction round schedule. */
  private roomHeadroom(): number {
    return Math.max(1, Math.min(1000, Math.floor(this.max_queued / 10)));
  }

  /**
   * Backpressure for the timeline's flush: true at once while the queue has room (fewer than
   * max_queued_ops - headroom operations) or is stopped (scheduling then fails on its own);
   * otherwise waits until it has, at most timeout_ms (false: still full, ask again).
   */
  waitForRoom(timeout_ms: number): Promise<boolean> {
    const hasRoom = (): boolean => this._status !== "active" || this.pending.length < this.max_queued - this.roomHeadroom();
    if (hasRoom()) return Promise.resolve(true);
    if (this.waits.roomFull) return Promise.resolve(false);
    this.counters.backpressure_waits_total++;
    return this.waits.untilRoom(hasRoom, timeout_ms);
  }

  /** Uploads the projected index with this metadata, after everything scheduled before it. */
  scheduleIndexUpload(metadata: TimelineMetadata): void {
    this.checkSchedulable(1);
    if (this.projectedMetadata !== null && metadata.disk_consistent_lsn < this.projectedMetadata.disk_consistent_lsn) {
      throw new InvalidArgumentError(
        `index upload would move disk_consistent_lsn back from ${this.projectedMetadata.disk_consistent_lsn} to ${metadata.disk_consistent_lsn}`,
      );
    }
    this.projectedMetadata = { ...metadata };
    this.enqueue({
      kind: "upload_index",
      seq: 0,
      state: "queued",
      index: { metadata: { ...metadata }, layers: new Map(this.projectedLayers) },
    });
  }

  /**
   * Removes layers from the remote state: an index without them is uploaded, then (after the
   * generation check) their objects are deleted. Names not in the projected index are an error.
   */
  scheduleLayerDeletion(names: readonly string[]): void {
    this.checkSchedulable(2);
    if (this.projectedMetadata === null) throw new BadStateError("no index scheduled yet: nothing to delete from");
    const unique = [...new Set(names)];
    const missing = unique.filter((n) => !this.projectedLayers.has(n));
    if (missing.length > 0) throw new InvalidArgumentError(`layers not in the remote state: ${missing.slice(0, 5).join(", ")}`);
    if (unique.length === 0) return;
    const keys = unique.map((n) => layerKey(this.o.tenant_id, this.o.timeline_id, n, this.projectedLayers.get(n)!.generation));
    for (const n of unique) this.projectedLayers.delete(n);
    this.enqueue({
      kind: "upload_index",
      seq: 0,
      state: "queued",
      index: { metadata: { ...this.projectedMetadata }, layers: new Map(this.projectedLayers) },
    });
    this.enqueue({ kind: "delete_layers", seq: 0, state: "queued", names: unique, keys });
  }

  /**
   * Deletes objects of this timeline that no index names (uploads or deletions a crash cut
   * short), after the generation check. Only layer objects of our own generation: older
   * generations' garbage is left to a scrubber, since only we write ours.
   */
  scheduleOrphanDeletion(keys: readonly string[]): void {
    this.checkSchedulable(1);
    const unique = [...new Set(keys)];
    for (const k of unique) {
      const lk = parseLayerKey(k);
      if (lk === null || k !== layerKey(this.o.tenant_id, this.o.timeline_id, lk.layer_name, this.o.generation)) {
        throw new InvalidArgumentError(`not a layer object of this timeline in generation ${this.o.generation}: '${k}'`);
      }
      const named = this.projectedLayers.get(lk.layer_name);
      if (named !== undefined && named.generation === this.o.generation) throw new ConflictError(`'${k}' is part of the remote state`);
    }
    if (unique.length === 0) return;
    this.enqueue({ kind: "delete_layers", seq: 0, state: "queued", names: unique.map((k) => parseLayerKey(k)!.layer_name), keys: unique });
  }

  /** Resolves when everything scheduled before this call is done; rejects if the queue stops. */
  waitUploaded(opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (this._status !== "active") return Promise.reject(this.stoppedError());
    const seq = this.next_seq - 1;
    const head = this.pending[0];
    if (head === undefined || head.seq > seq) return Promise.resolve();
    return this.waits.untilDone(seq, opts.signal);
  }

  /**
   * The newest generation of this timeline in remote storage if it is newer than ours, else
   * null. Asked before every deletion; the owner may also ask at startup.
   */
  async checkGeneration(signal?: AbortSignal): Promise<Generation | null> {
    const sig = signal ?? this.abort.signal;
    const newest = this.o.newestRemoteGeneration
      ? await this.o.newestRemoteGeneration(sig)
      : ((
          await listIndexGenerations(this.o.storage, this.o.tenant_id, this.o.timeline_id, {
            signal: sig,
            timeout_ms: this.o.op_timeout_ms,
          })
        ).at(-1) ?? null);
    return newest !== null && newest > this.o.generation ? newest : null;
  }

  /** Stops: aborts what is in flight, rejects pending waits with ShutdownError. Idempotent. */
  async shutdown(): Promise<void> {
    if (this._status === "active") {
      this._status = "shutdown";
      this._stop_reason = "shut down";
    }
    this.abortAll(new ShutdownError("upload queue shut down"));
    await this.closeFilesWhenIdle();
  }

  /** Stops the queue as failed (its owner can't keep the remote state in step any more). */
  fail(reason: string): void {
    this.stop("failed", reason);
  }

  private checkSchedulable(n_ops: number): void {
    if (this._status !== "active") throw this.stoppedError();
    if (this.pending.length + n_ops > this.max_queued) {
      throw new LimitReachedError(
        `upload queue of ${this.o.timeline_id} holds ${this.pending.length} operations (max_queued_ops ${this.max_queued})`,
      );
    }
  }

  private stoppedError(): Error {
    if (this._status === "shutdown") return new ShutdownError("upload queue shut down");
    return new UploadQueueStoppedError(`upload queue of timeline ${this.o.timeline_id} stopped: ${this._stop_reason}`);
  }

  private enqueue(op: Op): void {
    op.seq = this.next_seq++;
    this.pending.push(op);
    this.pump();
  }

  private pump(): void {
    // Each pass starts at most one op per pending entry; it ends at the inflight bound.
    for (let i = 0; i < this.pending.length && this._status === "active" && this.inflight < this.max_inflight; i++) {
      const op = this.pending[i]!;
      if (op.state !== "queued" || !canStart(this.pending, i, this.o.generation)) continue;
      if (op.kind === "upload_index") {
        // Coalesce: the run of queued index uploads right behind this one is ready too.
        const last = indexRunEnd(this.pending, i);
        const group = this.pending.slice(i, last + 1) as IndexOp[];
        this.start(group, group[group.length - 1]!);
        i = last;
        continue;
      }
      this.start([op], op);
    }
  }

  private start(group: Op[], op: Op): void {
    for (const g of group) g.state = "inflight";
    this.inflight++;
    const p = this.runWithRetries(op).then(
      (ok) => {
        this.running.delete(p);
        this.inflight--;
        if (ok) this.complete(group);
      },
      (e: unknown) => {
        // runWithRetries catches everything it expects; anything else is a bug.
        this.running.delete(p);
        this.inflight--;
        this.stop("failed", `internal error in the upload queue: ${(e as Error)?.message ?? String(e)}`);
      },
    );
    this.running.add(p);
  }

  /** true when the op is done; false when the queue stopped first. */
  private async runWithRetries(op: Op): Promise<boolean> {
    // Bounded by the queue's life: every failure either stops the queue or sleeps a backoff
    // that shutdown() interrupts.
    for (let attempt = 0; ; attempt++) {
      if (this._status !== "active") return false;
      try {
        await this.execute(op);
        return true;
      } catch (e) {
        if (this._status !== "active") return false;
        if (e instanceof NewerGenerationError) {
          this.stop("superseded", e.message);
          return false;
        }
        // Any remote error may heal (upload_retry.ts). Only local errors stop the queue.
        if (isRetryable(e)) {
          this.counters.retries_total++;
          const delay_ms = backoffDelayMs(attempt, this.retry_base_ms, this.retry_max_ms);
          const n = attempt + 1;
          this.o.log[retryLogLevel(n)]({ op: op.kind, attempt: n, delay_ms, err: e.message }, "remote operation failed, retrying");
          try {
            await sleep(delay_ms, undefined, { signal: this.abort.signal });
          } catch {
            return false;
          }
          continue;
        }
        this.stop("failed", `${describe(op)}: ${(e as Error)?.message ?? String(e)}`);
        return false;
      }
    }
  }

  private async execute(op: Op): Promise<void> {
    const call = { signal: this.abort.signal, timeout_ms: this.o.op_timeout_ms };
    switch (op.kind) {
      case "upload_layer":
        return uploadLayerFile(op, this.o.storage, call);
      case "upload_index": {
        await failpoint("remote-upload-index");
        const named = await this.commitTimes.put(call);
        op.index.commit_times = named;
        const bytes = encodeIndexPart(publishable(op.index));
        await this.o.storage.put(indexKey(this.o.tenant_id, this.o.timeline_id, this.o.generation), bytes, {
          ...call,
          size_bytes: bytes.byteLength,
        });
        const stale = this.commitTimes.staleKey(named);
        if (stale !== null) {
          // The index no longer names that object: it is garbage.
          const newer = await this.checkGeneration(this.abort.signal);
          if (newer !== null) throw new NewerGenerationError(newer);
          await this.o.storage.delete([stale], call);
        }
        this.commitTimes.indexUploaded(named);
        return;
      }
      case "delete_layers": {
        const newer = await this.checkGeneration(this.abort.signal);
        if (newer !== null) throw new NewerGenerationError(newer);
        await failpoint("remote-delete-layers");
        await this.o.storage.delete(op.keys, call);
        return;
      }
    }
  }

  private complete(group: Op[]): void {
    for (const op of group) {
      const i = this.pending.indexOf(op);
      assert(i >= 0, "completed op not pending");
      this.pending.splice(i, 1);
      if (op.kind === "upload_layer") unlinkQuiet(op.link);
    }
    const last = group[group.length - 1]!;
    switch (last.kind) {
      case "upload_layer":
        this.counters.uploaded_layers_total++;
        this.counters.uploaded_layer_bytes_total += last.layer.file_size;
        break;
      case "upload_index":
        this.counters.uploaded_indexes_total++;
        this.uploaded = publishable(last.index);
        break;
      case "delete_layers":
        this.counters.deleted_layers_total += last.keys.length;
        break;
    }
    const first = this.pending[0]?.seq ?? Number.POSITIVE_INFINITY;
    this.waits.doneBefore(first);
    this.waits.wakeRoom();
    this.pump();
  }

  private stop(status: "failed" | "superseded", reason: string): void {
    if (this._status !== "active") return;
    this._status = status;
    this._stop_reason = reason;
    this.o.log.error({ status, reason }, "upload queue stopped");
    this.abortAll(new UploadQueueStoppedError(`upload queue of timeline ${this.o.timeline_id} stopped: ${reason}`));
    this.waits.wakeRoom();
    void this.closeFilesWhenIdle();
    this.o.onStopped?.(status, reason);
  }

  /** After a stop: once nothing runs, remove the links of the uploads that will never happen. */
  private async closeFilesWhenIdle(): Promise<void> {
    // Each round awaits the ops running now; a stopped queue starts none, so one round ends it.
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
    for (const op of this.pending.splice(0)) if (op.kind === "upload_layer") unlinkQuiet(op.link);
    this.waits.wakeRoom();
  }

  private abortAll(err: Error): void {
    this.abort.abort(err);
    this.waits.rejectAll(err);
  }
}
