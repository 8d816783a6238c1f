/**
 * The generation check a node makes before it reports a new flush position to a WAL source
 * (Neon's RFC 025: a stale node must not let a source recycle WAL that the tenant's newer
 * holder still needs). One small interface, so a control plane's validate call can replace
 * the bucket listing without touching its callers.
 *
 * bucketGenerationValidator answers from the bucket: the newest generation among the tenant's
 * generation markers (tenants/<t>/generation-<gen>, which an attach writes before it reads
 * anything) and the index keys (index_part.json-<gen>) of the given timelines: one list call
 * for the markers and one per timeline, of index keys only (never layer objects).
 *
 * Why the marker makes the check sound: a check that starts after position P was uploaded and
 * does not see a newer marker ran its listing before that marker was written, so the newer
 * holder read the bucket after P was there, and starts from P or later.
 */
import type { TenantId, TimelineId } from "../types/ids.js";
import type { Generation } from "./generation.js";
import { listIndexGenerations } from "./index_part.js";
import { generationMarkerPrefix, parseGenerationMarkerKey } from "./remote_path.js";
import type { RemoteCallOptions, RemoteStorage } from "./remote_storage.js";

export interface GenerationValidator {
  /** The newest generation the tenant's timelines show; null when none has an index yet. */
  newestGeneration(tenant: TenantId, timelines: readonly TimelineId[], opts: RemoteCallOptions): Promise<Generation | null>;
}

export function bucketGenerationValidator(storage: RemoteStorage): GenerationValidator {
  return {
    async newestGeneration(tenant, timelines, opts) {
      let newest: Generation | null = null;
      for (const o of await storage.list(generationMarkerPrefix(tenant), opts)) {
        const g = parseGenerationMarkerKey(o.key);
        if (g !== null && (newest === null || g > newest)) newest = g;
      }
      for (const tl of timelines) {
        const g = (await listIndexGenerations(storage, tenant, tl, opts)).at(-1);
        if (g !== undefined && (newest === null || g > newest)) newest = g;
      }
      return newest;
    },
  };
}
