/**
 * Object keys of a timeline in remote storage (relative to the storage's root):
 *
 *   tenants/<tenant>/timelines/<timeline>/<layer name>-<gen:08x>
 *   tenants/<tenant>/timelines/<timeline>/index_part.json-<gen:08x>
 *   tenants/<tenant>/timelines/<timeline>/commit_times-<gen:08x>   the commit-time index
 *                                             (one per generation, replaced by each upload)
 *   tenants/<tenant>/generation-<gen:08x>     (empty) written by an attach before it reads
 *                                             anything: the tenant is held in <gen> from here on
 *
 * Every key a pageserver writes carries its generation (see generation.ts). The parse
 * functions are the inverse of the builders and return null for keys of another shape, so a
 * listing can hold objects we don't know without failing.
 */
import { parseLayerName } from "../layers/layer_name.js";
import type { TenantId, TimelineId } from "../types/ids.js";
import { type Generation, generationSuffix, parseGenerationSuffix } from "./generation.js";

export const INDEX_PART_NAME = "index_part.json";

export function tenantPrefix(tenant: TenantId): string {
  return `tenants/${tenant}/`;
}

/** Ends in '/': list() under it yields exactly the timeline's objects. */
export function timelinePrefix(tenant: TenantId, timeline: TimelineId): string {
  return `tenants/${tenant}/timelines/${timeline}/`;
}

export function layerKey(tenant: TenantId, timeline: TimelineId, layer_name: string, gen: Generation): string {
  return `${timelinePrefix(tenant, timeline)}${layer_name}-${generationSuffix(gen)}`;
}

export function indexKey(tenant: TenantId, timeline: TimelineId, gen: Generation): string {
  return `${timelinePrefix(tenant, timeline)}${INDEX_PART_NAME}-${generationSuffix(gen)}`;
}

export const COMMIT_TIMES_OBJECT_NAME = "commit_times";

/** The commit-time index object of generation `gen` (index_part.ts `commit_times`). */
export function commitTimesKey(tenant: TenantId, timeline: TimelineId, gen: Generation): string {
  return `${timelinePrefix(tenant, timeline)}${COMMIT_TIMES_OBJECT_NAME}-${generationSuffix(gen)}`;
}

/** `commit_times-<gen>` → gen; null for anything else. */
export function parseCommitTimesKey(key: string): Generation | null {
  const base = baseName(key);
  const head = `${COMMIT_TIMES_OBJECT_NAME}-`;
  if (!base.startsWith(head)) return null;
  return parseGenerationSuffix(base.slice(head.length));
}

const GENERATION_MARKER_NAME = "generation";

/** The attach marker of generation `gen` (see the header). */
export function generationMarkerKey(tenant: TenantId, gen: Generation): string {
  return `${tenantPrefix(tenant)}${GENERATION_MARKER_NAME}-${generationSuffix(gen)}`;
}

/** The list prefix of a tenant's generation markers. */
export function generationMarkerPrefix(tenant: TenantId): string {
  return `${tenantPrefix(tenant)}${GENERATION_MARKER_NAME}-`;
}

/** `tenants/<t>/generation-<gen>` → gen; null for anything else. */
export function parseGenerationMarkerKey(key: string): Generation | null {
  const base = baseName(key);
  const head = `${GENERATION_MARKER_NAME}-`;
  if (!base.startsWith(head) || key.split("/").length !== 3) return null;
  return parseGenerationSuffix(base.slice(head.length));
}

/** The file name part of a key (after the last '/'). */
function baseName(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}

/** `index_part.json-<gen>` → gen; null for anything else. */
export function parseIndexKey(key: string): Generation | null {
  const base = baseName(key);
  const head = `${INDEX_PART_NAME}-`;
  if (!base.startsWith(head)) return null;
  return parseGenerationSuffix(base.slice(head.length));
}

/** `<layer name>-<gen>` → {layer_name, generation}; null for anything else. */
export function parseLayerKey(key: string): { layer_name: string; generation: Generation } | null {
  const base = baseName(key);
  const dash = base.lastIndexOf("-");
  if (dash < 0) return null;
  const generation = parseGenerationSuffix(base.slice(dash + 1));
  const layer_name = base.slice(0, dash);
  if (generation === null) return null;
  try {
    if (parseLayerName(layer_name) === null) return null;
  } catch {
    return null;
  }
  return { layer_name, generation };
}
