/**
 * Remote deletion of a deleted timeline or tenant: its objects leave the bucket.
 *
 * Invariants:
 * - Never an object of a newer generation: before deleting anything, every timeline concerned
 *   is checked for an index of a generation above ours; if one exists we are stale (another
 *   pageserver attached the tenant after us: SupersededError) and nothing at all is deleted.
 *   An attach's generation marker (tenants/<t>/generation-<gen>) newer than ours counts too.
 * - Only keys we know (layer, index and commit-time index objects of a generation ≤ ours) are deleted; anything
 *   else under the prefix is left and reported (`left`), never guessed at.
 * - The indexes go first, then the layers and commit-time objects: a deletion cut short leaves no index naming a
 *   missing layer, only unindexed layer objects (garbage, never data; a retry removes them).
 * The caller stops the timeline's upload queue first: nothing uploads while this runs.
 */
import { failpoint } from "../types/failpoints.js";
import { isId, type TenantId, type TimelineId } from "../types/ids.js";
import type { Generation } from "./generation.js";
import { listIndexGenerations } from "./index_part.js";
import {
  generationMarkerPrefix,
  parseCommitTimesKey,
  parseGenerationMarkerKey,
  parseIndexKey,
  parseLayerKey,
  tenantPrefix,
  timelinePrefix,
} from "./remote_path.js";
import type { RemoteCallOptions, RemoteStorage } from "./remote_storage.js";
import { SupersededError } from "./remote_timeline_client.js";

export interface RemoteDeletion {
  /** Index, layer and commit-time index objects deleted. */
  deleted: number;
  /** Keys under the prefix left alone (neither a layer nor an index of ours). */
  left: string[];
}

/** Delete one timeline's objects (see the header). */
export function deleteRemoteTimeline(
  storage: RemoteStorage,
  tenant: TenantId,
  timeline: TimelineId,
  generation: Generation,
  opts: RemoteCallOptions = {},
): Promise<RemoteDeletion> {
  return deleteTimelines(storage, tenant, [timeline], generation, opts);
}

/** Delete every timeline of a tenant that the bucket holds (see the header): all or nothing on a newer generation. */
export async function deleteRemoteTenant(
  storage: RemoteStorage,
  tenant: TenantId,
  generation: Generation,
  opts: RemoteCallOptions = {},
): Promise<RemoteDeletion> {
  const prefix = `${tenantPrefix(tenant)}timelines/`;
  const ids = new Set<TimelineId>();
  const left: string[] = [];
  for (const o of await storage.list(prefix, opts)) {
    const id = o.key.slice(prefix.length).split("/")[0]!;
    if (isId(id)) ids.add(id as TimelineId);
    else left.push(o.key);
  }
  const r = await deleteTimelines(storage, tenant, [...ids], generation, opts);
  // Last: the attach markers of our generation and older (a newer one stopped us above).
  const markers = (await storage.list(generationMarkerPrefix(tenant), opts))
    .map((o) => o.key)
    .filter((k) => (parseGenerationMarkerKey(k) ?? Number.POSITIVE_INFINITY) <= generation);
  if (markers.length > 0) await storage.delete(markers, opts);
  return { deleted: r.deleted + markers.length, left: [...left, ...r.left] };
}

async function deleteTimelines(
  storage: RemoteStorage,
  tenant: TenantId,
  timelines: readonly TimelineId[],
  generation: Generation,
  opts: RemoteCallOptions,
): Promise<RemoteDeletion> {
  // Every check before any deletion: an attach's marker counts as much as an index (the new
  // holder may have read our index and not yet uploaded its own).
  for (const o of await storage.list(generationMarkerPrefix(tenant), opts)) {
    const g = parseGenerationMarkerKey(o.key);
    if (g !== null && g > generation) throw new SupersededError(`tenant ${tenant} (attach marker)`, generation, g);
  }
  for (const tl of timelines) {
    const newest = (await listIndexGenerations(storage, tenant, tl, opts)).at(-1);
    if (newest !== undefined && newest > generation) throw new SupersededError(`timeline ${tl}`, generation, newest);
  }
  let deleted = 0;
  const left: string[] = [];
  for (const tl of timelines) {
    const indexes: string[] = [];
    const layers: string[] = [];
    for (const o of await storage.list(timelinePrefix(tenant, tl), opts)) {
      const ig = parseIndexKey(o.key);
      const lk = ig === null ? parseLayerKey(o.key) : null;
      const g = ig ?? lk?.generation ?? parseCommitTimesKey(o.key);
      if (g === null || g > generation) left.push(o.key);
      else if (ig !== null) indexes.push(o.key);
      else layers.push(o.key);
    }
    if (indexes.length > 0) await storage.delete(indexes, opts);
    await failpoint("remote-delete-timeline");
    if (layers.length > 0) await storage.delete(layers, opts);
    deleted += indexes.length + layers.length;
  }
  return { deleted, left };
}
