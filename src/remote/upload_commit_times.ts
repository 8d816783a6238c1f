/**
 * The commit-time index in remote storage, as the upload queue carries it (commit_times
 * option): each index upload first puts the timeline's commit-time snapshot as
 * `commit_times-<our gen>` (skipped when its CRC32C equals the one we put last) and names it
 * in the index, so an index never names a snapshot older than its disk_consistent_lsn (the
 * timeline saves the commit-time index before it reports the metadata). After an index that
 * names ours is in, the object of an older generation the previous index named is garbage
 * (the queue deletes it after the generation check), as is ours when the index names none
 * (the timeline has no commit-time files, or they can't be read: warning).
 *
 * Invariants: `named` is what the last uploaded index names (from the initial remote index
 * until the first upload); `crc` is that of the object we put last (null: none yet). Without
 * the commit_times option the remote index's reference is carried as is.
 */
import { crc32c } from "@node-rs/crc32";
import type { Logger } from "pino";
import type { TenantId, TimelineId } from "../types/ids.js";
import type { Generation } from "./generation.js";
import { commitTimesKey } from "./remote_path.js";
import type { RemoteStorage } from "./remote_storage.js";

/** What an index names of the commit-time index: the generation whose object it is. */
export type CommitTimesRef = { generation: Generation } | null;

/** The parts of the queue's options this needs (UploadQueueOptions has them). */
export interface CommitTimesOptions {
  storage: RemoteStorage;
  tenant_id: TenantId;
  timeline_id: TimelineId;
  generation: Generation;
  log: Logger;
  commit_times?: () => Promise<Uint8Array | null>;
}

export class CommitTimesUploads {
  private readonly o: CommitTimesOptions;
  /** The commit-time object the last uploaded index names. */
  private named: CommitTimesRef;
  private crc: number | null = null;

  constructor(o: CommitTimesOptions, initial: CommitTimesRef) {
    this.o = o;
    this.named = initial;
  }

  /** Puts the commit-time snapshot (unless unchanged) and returns what the next index names. */
  async put(call: { signal: AbortSignal; timeout_ms: number | undefined }): Promise<CommitTimesRef> {
    if (this.o.commit_times === undefined) return this.named;
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
    const ours = this.named?.generation === this.o.generation;
    if (!ours || crc !== this.crc) {
      await this.o.storage.put(commitTimesKey(this.o.tenant_id, this.o.timeline_id, this.o.generation), bytes, {
        ...call,
        size_bytes: bytes.byteLength,
      });
      this.crc = crc;
    }
    return { generation: this.o.generation };
  }

  /**
   * The key of the object the last uploaded index names and an index naming `next` no longer
   * does (an older generation's, or ours when the timeline has no index now): garbage once that
   * index is in. null: none.
   */
  staleKey(next: CommitTimesRef): string | null {
    const before = this.named;
    if (before === null || next?.generation === before.generation) return null;
    return commitTimesKey(this.o.tenant_id, this.o.timeline_id, before.generation);
  }

  /** An index naming `ref` is in remote storage (and the stale object, if any, deleted). */
  indexUploaded(ref: CommitTimesRef): void {
    this.named = ref;
  }
}
