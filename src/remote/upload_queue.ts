/**
 * The upload queue of one timeline: the ordered operations that carry its layer files and its
 * index to remote storage, with Neon's ordering rules (remote_timeline_client.rs,
 * upload_queue.rs):
 *
 * - The queue keeps the *projected* index: the remote state once everything scheduled so far
 *   is done. scheduleLayerUpload adds a layer to it, scheduleIndexUpload snapshots it (with new
 *   metadata), scheduleLayerDeletion removes layers, snapshots it, then deletes them.
 * - An index upload starts only when every operation scheduled before it is done, so an index
 *   never names a layer that isn't uploaded. Consecutive index uploads that are ready together
 *   are coalesced: only the newest is written, and all of them complete with it.
 * - A deletion starts only when every operation before it is done, in particular the index
 *   that stopped naming its layers; and only after checkGeneration() finds no newer generation
 *   of the timeline in the bucket. If one exists, nothing is deleted and the queue stops as
 *   "superseded by generation N".
 * - Layer uploads run concurrently (at most max_concurrent_uploads operations in flight) and
 *   may overtake earlier index uploads (an earlier index never names a later layer), but never
 *   an earlier operation on the same object key.
 * - Every remote storage error (transient or "permanent": a clock-skew 403 or an expired
 *   token heals) is retried with jittered exponential backoff (a random delay in the upper
 *   half of retry_base_ms doubling up to retry_max_ms, so thousands of queues that failed
 *   together don't retry in lockstep) until it succeeds or the queue stops; a retry loop ends
 *   only with the queue. Each retry is counted (stats().retries_total) and logged (WARN for
 *   the first attempts and every RETRY_LOG_EVERY-th, DEBUG between). Only a local error (the
 *   layer file changed or is gone) stops the queue as "failed" with the reason: every later
 *   index would be wrong without it.
 * - A scheduled layer upload holds a hard link to its local file (beside it, named
 *   `<file>.upload-<random>.___temp`, which timeline load removes after a crash) until it
 *   ends, so the timeline may unlink a layer (compaction, GC) right away without losing a
 *   pending upload; isPending() says whether one is still queued or in flight. A queued upload
 *   holds no file descriptor: the file is opened only while its upload runs (at most
 *   max_concurrent_uploads at once).
 * - Backpressure: waitForRoom() resolves once the queue holds fewer than
 *   max_queued_ops - roomHeadroom() operations; a timeline's flush waits on it (bounded
 *   waits), so a long outage slows flushes (and so ingest) instead of filling the queue.
 * - The commit-time index (commit_times option): each index upload first puts the timeline's
 *   commit-time snapshot as `commit_times-<our gen>` (skipped when its CRC32C equals the one
 *   we put last) and names it in the index, so an index never names a snapshot older than
 *   its disk_consistent_lsn (the timeline saves the commit-time index before it reports the
 *   metadata). After an index that names ours is in, the object of an older generation the
 *   previous index named is deleted (after the generation check), as is ours when the index
 *   names none (the timeline has no commit-time files, or they can't be read: warning).
 * - remote_consistent_lsn is the disk_consistent_lsn of the last index known to be uploaded.
 * - shutdown() aborts what is in flight, stops retrying, and rejects every pending wait with a
 *   ShutdownError; a stop (failed/superseded) rejects them with UploadQueueStoppedError.
 *
 * Nothing here is persisted: after a restart the queue starts from the remote index and the
 * local files (the owner reconciles them), as Neon's does.
 */
import { randomBytes } from "node:crypto";
import { linkSync, read, unlinkSync } from "node:fs";
import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { crc32c } from "@node-rs/crc32";
import type { Logger } from "pino";
import { parseLayerName, TEMP_SUFFIX } from "../layers/layer_name.js";
import type { TimelineMetadata } from "../tenant/metadata.js";
import { assert } from "../types/assert.js";
import { BadStateError, ConflictError, InvalidArgumentError, LimitReachedError, NotFoundError, PageserverError, ShutdownError } from "../types/errors.js";
import type { TenantId, TimelineId } from "../types/ids.js";
import { FailpointError, failpoint } from "../types/failpoints.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import { type Generation, isGeneration } from "./generation.js";
import { encodeIndexPart, type IndexLayerMetadata, type IndexPart, listIndexGenerations } from "./index_part.js";
import { commitTimesKey, indexKey, layerKey, parseLayerKey } from "./remote_path.js";
import { type RemoteStorage, RemoteStorageError } from "./remote_storage.js";

export interface LayerUpload {
  name: string;
  local_path: string;
  file_size: number;
  /** CRC32C of the whole file; null: taken while uploading (the file is read once). */
  crc32c: number | null;
}

/** A layer of the projected index; crc32c is null until the upload that reads it is done. */
export interface ProjectedLayer {
  file_size: number;
  crc32c: number | null;
  generation: Generation;
}

/** The remote state once everything scheduled is done (see UploadQueue.projectedIndex). */
export interface ProjectedIndex {
  metadata: TimelineMetadata;
  layers: Map<string, Readonly<ProjectedLayer>>;
  /** Set when the index goes out (the snapshot is taken then). */
  commit_times?: { generation: Generation } | null;
}

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

class NewerGenerationError extends Error {
  readonly generation: Generation;
  constructor(generation: Generation) {
    super(`superseded by generation ${generation}`);
    this.generation = generation;
  }
}

type OpState = "queued" | "inflight";

interface LayerOp {
  kind: "upload_layer";
  seq: number;
  state: OpState;
  key: string;
  layer: LayerUpload;
  /** Its entry in the projected index (and in every index snapshot taken since): the upload fills in crc32c. */
  entry: ProjectedLayer;
  /** A hard link to the local file, from scheduling until the op ends: the layer's name may go meanwhile. */
  link: string;
}
interface IndexOp {
  kind: "upload_index";
  seq: number;
  state: OpState;
  index: ProjectedIndex;
}
interface DeleteOp {
  kind: "delete_layers";
  seq: number;
  state: OpState;
  names: string[];
  keys: string[];
}
type Op = LayerOp | IndexOp | DeleteOp;
type OpKind = Op["kind"];

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface UploadQueueStats {
  queued: Record<OpKind, number>;
  inflight: Record<OpKind, number>;
  retries_total: number;
  uploaded_layers_total: number;
  uploaded_layer_bytes_total: number;
  uploaded_indexes_total: number;
  deleted_layers_total: number;
  /** waitForRoom calls that found the queue full (a flush held back). */
  backpressure_waits_total: number;
}

const MAX_WAITERS = 10_000;
/** Retries logged at WARN: the first few of an op, then every this many. */
const RETRY_LOG_FIRST = 3;
const RETRY_LOG_EVERY = 10;

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
  private waiters: Waiter[] = [];
  /** waitForRoom calls waiting: each checks for room when an op completes or the queue stops. */
  private readonly roomWaiters = new Set<() => void>();
  private next_seq = 1;
  private inflight = 0;
  private projectedLayers: Map<string, ProjectedLayer>;
  private projectedMetadata: TimelineMetadata | null;
  private uploaded: IndexPart | null;
  /** The commit-time object the last uploaded index names, and the CRC32C of the one we put (null: none yet). */
  private commitTimesRef: { generation: Generation } | null;
  private commitTimesCrc: number | null = null;
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
    this.commitTimesRef = opts.initial?.commit_times ?? null;
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
    const queued: Record<OpKind, number> = { upload_layer: 0, upload_index: 0, delete_layers: 0 };
    const inflight: Record<OpKind, number> = { upload_layer: 0, upload_index: 0, delete_layers: 0 };
    for (const op of this.pending) (op.state === "queued" ? queued : inflight)[op.kind]++;
    return { queued, inflight, ...this.counters };
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
    if (this.roomWaiters.size >= MAX_WAITERS) return Promise.resolve(false);
    this.counters.backpressure_waits_total++;
    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.roomWaiters.delete(check);
        resolve(hasRoom());
      };
      const check = (): void => {
        if (hasRoom()) done();
      };
      const timer = setTimeout(done, timeout_ms);
      this.roomWaiters.add(check);
    });
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
    this.enqueue({ kind: "upload_index", seq: 0, state: "queued", index: { metadata: { ...metadata }, layers: new Map(this.projectedLayers) } });
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
    if (this.waiters.length >= MAX_WAITERS) return Promise.reject(new LimitReachedError(`more than ${MAX_WAITERS} waits on one upload queue`));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { seq, resolve, reject };
      this.waiters.push(w);
      opts.signal?.addEventListener(
        "abort",
        () => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(opts.signal!.reason instanceof Error ? opts.signal!.reason : new ShutdownError("wait aborted"));
        },
        { once: true },
      );
    });
  }

  /**
   * The newest generation of this timeline in remote storage if it is newer than ours, else
   * null. Asked before every deletion; the owner may also ask at startup.
   */
  async checkGeneration(signal?: AbortSignal): Promise<Generation | null> {
    const sig = signal ?? this.abort.signal;
    const newest = this.o.newestRemoteGeneration
      ? await this.o.newestRemoteGeneration(sig)
      : ((await listIndexGenerations(this.o.storage, this.o.tenant_id, this.o.timeline_id, { signal: sig, timeout_ms: this.o.op_timeout_ms })).at(-1) ??
        null);
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
      throw new LimitReachedError(`upload queue of ${this.o.timeline_id} holds ${this.pending.length} operations (max_queued_ops ${this.max_queued})`);
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

  /** Whether the queued op at pending[i] may start now (see the header's rules). */
  private canStart(i: number): boolean {
    const op = this.pending[i]!;
    if (op.kind !== "upload_layer") return i === 0;
    for (let j = 0; j < i; j++) {
      const other = this.pending[j]!;
      if (other.kind === "upload_layer" && other.key === op.key) return false;
      if (other.kind === "delete_layers" && other.keys.includes(op.key)) return false;
      if (other.kind === "upload_index") {
        const l = other.index.layers.get(op.layer.name);
        if (l !== undefined && l.generation === this.o.generation) return false;
      }
    }
    return true;
  }

  private pump(): void {
    // Each pass starts at most one op per pending entry; it ends at the inflight bound.
    for (let i = 0; i < this.pending.length && this._status === "active" && this.inflight < this.max_inflight; i++) {
      const op = this.pending[i]!;
      if (op.state !== "queued" || !this.canStart(i)) continue;
      if (op.kind === "upload_index") {
        // Coalesce: the run of queued index uploads right behind this one is ready too.
        let last = i;
        while (last + 1 < this.pending.length && this.pending[last + 1]!.kind === "upload_index") last++;
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
        // Any remote error may heal (a 403 from clock skew, an expired token, an outage); a
        // failpoint's `return` stands for one. Only local errors stop the queue.
        if ((e instanceof RemoteStorageError && e.kind !== "cancelled") || e instanceof FailpointError) {
          this.counters.retries_total++;
          const cap_ms = Math.min(this.retry_max_ms, this.retry_base_ms * 2 ** Math.min(attempt, 30));
          const delay_ms = Math.round(cap_ms / 2 + Math.random() * (cap_ms / 2));
          const n = attempt + 1;
          const level = n <= RETRY_LOG_FIRST || n % RETRY_LOG_EVERY === 0 ? "warn" : "debug";
          this.o.log[level]({ op: op.kind, attempt: n, delay_ms, err: e.message }, "remote operation failed, retrying");
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
        return this.uploadLayer(op);
      case "upload_index": {
        await failpoint("remote-upload-index");
        op.index.commit_times = await this.uploadCommitTimes(call);
        const bytes = encodeIndexPart(publishable(op.index));
        await this.o.storage.put(indexKey(this.o.tenant_id, this.o.timeline_id, this.o.generation), bytes, { ...call, size_bytes: bytes.byteLength });
        const before = this.commitTimesRef;
        if (before !== null && op.index.commit_times?.generation !== before.generation) {
          // The index no longer names that object (an older generation's, or ours when the
          // timeline has no index now): it is garbage.
          const newer = await this.checkGeneration(this.abort.signal);
          if (newer !== null) throw new NewerGenerationError(newer);
          await this.o.storage.delete([commitTimesKey(this.o.tenant_id, this.o.timeline_id, before.generation)], call);
        }
        this.commitTimesRef = op.index.commit_times;
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

  /** Puts the commit-time snapshot (unless unchanged) and returns what the index names. */
  private async uploadCommitTimes(call: { signal: AbortSignal; timeout_ms: number | undefined }): Promise<{ generation: Generation } | null> {
    if (this.o.commit_times === undefined) return this.commitTimesRef;
    let bytes: Uint8Array | null;
    try {
      bytes = await this.o.commit_times();
    } catch (e) {
      // A commit-time index that can't be read is no reason to stop the layers' uploads: the
      // index names none (an older snapshot could lack entries up to its LSN).
      this.o.log.warn({ err: e }, "commit-time index unreadable: the remote index names none");
      return null;
    }
    if (bytes === null) return null;
    const crc = crc32c(bytes) >>> 0;
    const ours = this.commitTimesRef?.generation === this.o.generation;
    if (!ours || crc !== this.commitTimesCrc) {
      await this.o.storage.put(commitTimesKey(this.o.tenant_id, this.o.timeline_id, this.o.generation), bytes, { ...call, size_bytes: bytes.byteLength });
      this.commitTimesCrc = crc;
    }
    return { generation: this.o.generation };
  }

  private async uploadLayer(op: LayerOp): Promise<void> {
    const { local_path, file_size, crc32c: expected_crc } = op.layer;
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(op.link, "r");
    } catch (e) {
      throw new LocalLayerError(`local file ${local_path} (held as ${op.link}) can't be opened: ${(e as Error).message}`);
    }
    try {
      const size = (await fh.stat()).size;
      if (size !== file_size) throw new LocalLayerError(`local file ${local_path} is ${size} bytes, scheduled as ${file_size}`);
      await failpoint("remote-upload-layer");
      const reader = new FdReader(fh.fd, file_size, local_path);
      try {
        await this.o.storage.put(op.key, reader.stream, { signal: this.abort.signal, timeout_ms: this.o.op_timeout_ms, size_bytes: file_size });
      } finally {
        reader.stream.destroy();
        // No read may still use the fd when the attempt ends and the fd is closed.
        await reader.idle();
      }
      if (expected_crc !== null && reader.crc !== expected_crc) {
        throw new LocalLayerError(`local file ${local_path} has CRC32C ${reader.crc.toString(16)}, scheduled as ${expected_crc.toString(16)}`);
      }
      op.entry.crc32c = reader.crc;
    } finally {
      await fh.close();
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
    const ready = this.waiters.filter((w) => w.seq < first);
    if (ready.length > 0) {
      this.waiters = this.waiters.filter((w) => w.seq >= first);
      for (const w of ready) w.resolve();
    }
    this.wakeRoomWaiters();
    this.pump();
  }

  private stop(status: "failed" | "superseded", reason: string): void {
    if (this._status !== "active") return;
    this._status = status;
    this._stop_reason = reason;
    this.o.log.error({ status, reason }, "upload queue stopped");
    this.abortAll(new UploadQueueStoppedError(`upload queue of timeline ${this.o.timeline_id} stopped: ${reason}`));
    this.wakeRoomWaiters();
    void this.closeFilesWhenIdle();
    this.o.onStopped?.(status, reason);
  }

  /** After a stop: once nothing runs, remove the links of the uploads that will never happen. */
  private async closeFilesWhenIdle(): Promise<void> {
    // Each round awaits the ops running now; a stopped queue starts none, so one round ends it.
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
    for (const op of this.pending.splice(0)) if (op.kind === "upload_layer") unlinkQuiet(op.link);
    this.wakeRoomWaiters();
  }

  private wakeRoomWaiters(): void {
    for (const w of [...this.roomWaiters]) w();
  }

  private abortAll(err: Error): void {
    this.abort.abort(err);
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(err);
  }
}

/** The local side of a layer upload is wrong (the file changed): retrying won't help. */
class LocalLayerError extends Error {}

/**
 * An index snapshot as it goes out: every layer's CRC is known by then, because an index
 * upload starts only after every upload scheduled before it is done.
 */
function publishable(ip: ProjectedIndex): IndexPart {
  const layers = new Map<string, IndexLayerMetadata>();
  for (const [name, l] of ip.layers) {
    assert(l.crc32c !== null, `index names layer ${name} before its upload is done`);
    layers.set(name, { file_size: l.file_size, crc32c: l.crc32c, generation: l.generation });
  }
  return ip.commit_times ? { metadata: ip.metadata, layers, commit_times: ip.commit_times } : { metadata: ip.metadata, layers };
}

const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * A stream over the first `size_bytes` of an open file, read by position (so each attempt
 * reads from byte 0 of the same fd, and destroying the stream never closes the fd), with the
 * CRC32C of what it read.
 */
class FdReader {
  readonly stream: Readable;
  crc = 0;
  private pos = 0;
  private reading: Promise<void> = Promise.resolve();

  constructor(fd: number, size_bytes: number, path: string) {
    this.stream = new Readable({
      highWaterMark: READ_CHUNK_BYTES,
      read: () => {
        if (this.pos >= size_bytes) {
          this.stream.push(null);
          return;
        }
        const len = Math.min(READ_CHUNK_BYTES, size_bytes - this.pos);
        const buf = Buffer.allocUnsafe(len);
        this.reading = new Promise<void>((done) => {
          read(fd, buf, 0, len, this.pos, (err, n) => {
            done();
            if (this.stream.destroyed) return;
            if (err !== null) return void this.stream.destroy(err);
            if (n === 0) return void this.stream.destroy(new LocalLayerError(`local file ${path} shrank below ${size_bytes} bytes during its upload`));
            const chunk = n === len ? buf : buf.subarray(0, n);
            this.crc = crc32c(chunk, this.crc) >>> 0;
            this.pos += n;
            this.stream.push(chunk);
          });
        });
      },
    });
  }

  idle(): Promise<void> {
    return this.reading;
  }
}

/** A hard link to `path` beside it (see the header); a missing file is a NotFoundError. */
function linkLocal(path: string): string {
  const link = `${path}.upload-${randomBytes(6).toString("hex")}${TEMP_SUFFIX}`;
  try {
    linkSync(path, link);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new NotFoundError(`local layer file ${path} does not exist`);
    throw e;
  }
  return link;
}

/** Removes an upload's link; a failure leaves a `.___temp` file that timeline load removes. */
function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already, or removed at the next load.
  }
}

function describe(op: Op): string {
  switch (op.kind) {
    case "upload_layer":
      return `upload of layer ${op.layer.name}`;
    case "upload_index":
      return `upload of the index at ${lsnToString(op.index.metadata.disk_consistent_lsn)}`;
    case "delete_layers":
      return `deletion of ${op.keys.length} layers`;
  }
}
