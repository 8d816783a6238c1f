/**
 * The operations of a timeline's upload queue (upload_queue.ts), the projected index they
 * carry, and Neon's ordering rules for starting them (remote_timeline_client.rs,
 * upload_queue.rs):
 *
 * - An index upload starts only when every operation scheduled before it is done, so an index
 *   never names a layer that isn't uploaded. Consecutive index uploads that are ready together
 *   are coalesced: only the newest is written, and all of them complete with it.
 * - A deletion starts only when every operation before it is done, in particular the index
 *   that stopped naming its layers.
 * - Layer uploads may overtake earlier index uploads (an earlier index never names a later
 *   layer), but never an earlier operation on the same object key.
 *
 * It also holds what the queue reports of its ops (UploadQueueStats, opCounts).
 *
 * Invariants: an op's seq is its schedule order (set once, increasing); `pending` is in seq
 * order; an index snapshot goes out (publishable) only with every layer's CRC known.
 */
import { assert } from "../types/assert.js";
import { lsnToString } from "../types/lsn.js";
import type { TimelineMetadata } from "../tenant/metadata.js";
import type { Generation } from "./generation.js";
import type { IndexLayerMetadata, IndexPart } from "./index_part.js";

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

export type OpState = "queued" | "inflight";

export interface LayerOp {
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
export interface IndexOp {
  kind: "upload_index";
  seq: number;
  state: OpState;
  index: ProjectedIndex;
}
export interface DeleteOp {
  kind: "delete_layers";
  seq: number;
  state: OpState;
  names: string[];
  keys: string[];
}
export type Op = LayerOp | IndexOp | DeleteOp;
export type OpKind = Op["kind"];

/** What UploadQueue.stats() reports: ops pending by kind and state, and running totals. */
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

/** The ops of `pending` by kind, split queued / in flight. */
export function opCounts(pending: readonly Op[]): Pick<UploadQueueStats, "queued" | "inflight"> {
  const queued: Record<OpKind, number> = { upload_layer: 0, upload_index: 0, delete_layers: 0 };
  const inflight: Record<OpKind, number> = { upload_layer: 0, upload_index: 0, delete_layers: 0 };
  for (const op of pending) (op.state === "queued" ? queued : inflight)[op.kind]++;
  return { queued, inflight };
}

/** Whether the queued op at pending[i] may start now (see the header's rules); `generation` is ours. */
export function canStart(pending: readonly Op[], i: number, generation: Generation): boolean {
  const op = pending[i]!;
  if (op.kind !== "upload_layer") return i === 0;
  for (let j = 0; j < i; j++) {
    const other = pending[j]!;
    if (other.kind === "upload_layer" && other.key === op.key) return false;
    if (other.kind === "delete_layers" && other.keys.includes(op.key)) return false;
    if (other.kind === "upload_index") {
      const l = other.index.layers.get(op.layer.name);
      if (l !== undefined && l.generation === generation) return false;
    }
  }
  return true;
}

/** The last of the run of index uploads that starts at pending[i] (an index upload): they coalesce. */
export function indexRunEnd(pending: readonly Op[], i: number): number {
  let last = i;
  while (last + 1 < pending.length && pending[last + 1]!.kind === "upload_index") last++;
  return last;
}

/**
 * An index snapshot as it goes out: every layer's CRC is known by then, because an index
 * upload starts only after every upload scheduled before it is done.
 */
export function publishable(ip: ProjectedIndex): IndexPart {
  const layers = new Map<string, IndexLayerMetadata>();
  for (const [name, l] of ip.layers) {
    assert(l.crc32c !== null, `index names layer ${name} before its upload is done`);
    layers.set(name, { file_size: l.file_size, crc32c: l.crc32c, generation: l.generation });
  }
  return ip.commit_times ? { metadata: ip.metadata, layers, commit_times: ip.commit_times } : { metadata: ip.metadata, layers };
}

/** What an op does, for the reason a queue stops with. */
export function describe(op: Op): string {
  switch (op.kind) {
    case "upload_layer":
      return `upload of layer ${op.layer.name}`;
    case "upload_index":
      return `upload of the index at ${lsnToString(op.index.metadata.disk_consistent_lsn)}`;
    case "delete_layers":
      return `deletion of ${op.keys.length} layers`;
  }
}
