/**
 * Attach: a tenant's remote state into a local tenant directory, crash-safe and resumable,
 * and the tenant's generation on disk.
 *
 *   <tenant dir>/attaching     {"generation": N} while an attach is under way (durable, first)
 *   <tenant dir>/generation    {"generation": N} the generation this node holds the tenant in
 *
 * attachTenant writes the marker before anything else and removes it after everything else
 * (each timeline's layers, then its metadata: download.ts; the tenant config; the generation
 * file). A directory with the marker is a half-attached tenant: never loaded as it is, only
 * attached again (attachPending says with which generation), which skips the layers already
 * there. With `lazy_layers` (the node's attach) only the indexes and metadata come down: every
 * layer starts evicted and is downloaded when a read needs it. An attach refuses a generation
 * older than one already in the bucket (that tenant belongs to a newer attachment), and one
 * equal to the bucket's newest (ConflictError: another node may hold it live) unless it
 * resumes this directory's own attach marker in that generation.
 *
 * Before it reads any index, an attach writes the bucket's generation marker
 * (tenants/<id>/generation-<gen>, src/remote/remote_path.ts): the previous holder's generation
 * checks see it from then on (src/remote/generation_check.ts).
 *
 * Each timeline's commit-time index comes down with it (download.ts); a missing or corrupt one
 * is logged (opts.log) as a warning and the timeline starts that index empty.
 *
 * The generation file is what the remote client of each timeline writes its keys with
 * (readTenantGeneration); a tenant created here, without one, is in FIRST_GENERATION.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { fsyncDir, writeFileDurable } from "../layers/durable_file.js";
import { BadStateError, ConflictError, CorruptionError } from "../types/errors.js";
import { failpoint } from "../types/failpoints.js";
import type { TenantId, TimelineId } from "../types/ids.js";
import { downloadTimeline, listRemoteTimelines } from "./download.js";
import { FIRST_GENERATION, type Generation, isGeneration } from "./generation.js";
import { bucketGenerationValidator } from "./generation_check.js";
import { generationMarkerKey } from "./remote_path.js";
import type { RemoteCallOptions, RemoteStorage } from "./remote_storage.js";

export const ATTACHING_MARKER = "attaching";
export const GENERATION_FILE = "generation";
const TENANT_CONFIG_FILE = "config.json";

function readGenerationFile(path: string): Generation | null {
  if (!existsSync(path)) return null;
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CorruptionError(path, 0, `bad JSON: ${(e as Error).message}`);
  }
  const g = (j as { generation?: unknown } | null)?.generation;
  if (!isGeneration(g)) throw new CorruptionError(path, 0, "no valid generation");
  return g;
}

/** The generation this node holds the tenant in: its generation file, or FIRST_GENERATION. */
export function readTenantGeneration(tenantDir: string): Generation {
  return readGenerationFile(join(tenantDir, GENERATION_FILE)) ?? FIRST_GENERATION;
}

export async function writeTenantGeneration(tenantDir: string, gen: Generation): Promise<void> {
  await writeFileDurable(join(tenantDir, GENERATION_FILE), Buffer.from(JSON.stringify({ generation: gen })));
}

/** The generation of an attach cut short in this directory, or null if none is. */
export function attachPending(tenantDir: string): Generation | null {
  return readGenerationFile(join(tenantDir, ATTACHING_MARKER));
}

/**
 * Attaches `tenant` in generation `gen` into `tenantDir` (created if missing; a pending attach
 * there is resumed). Returns what it did per timeline.
 */
export async function attachTenant(
  storage: RemoteStorage,
  tenant: TenantId,
  gen: Generation,
  tenantDir: string,
  opts: RemoteCallOptions & { concurrency?: number; lazy_layers?: boolean; log?: Logger } = {},
): Promise<{ timelines: { id: TimelineId; downloaded: number; present: number; warning: string | null }[] }> {
  const pending = existsSync(tenantDir) ? attachPending(tenantDir) : null;
  if (pending !== null && pending !== gen)
    throw new BadStateError(`tenant ${tenant}: an attach in generation ${pending} is pending here, not ${gen}`);
  if (pending === null && existsSync(join(tenantDir, GENERATION_FILE))) {
    throw new BadStateError(`tenant ${tenant} is attached here already (generation ${readTenantGeneration(tenantDir)})`);
  }
  // The newest generation the bucket shows: markers of attaches, and every timeline's indexes.
  const validator = bucketGenerationValidator(storage);
  const newest = await validator.newestGeneration(tenant, await listRemoteTimelines(storage, tenant, opts), opts);
  if (newest !== null && newest > gen) {
    throw new BadStateError(`tenant ${tenant}: generation ${gen} is older than generation ${newest} in ${storage.description}`);
  }
  // The same generation as a live holder's would make two writers of one index key; only
  // our own attach, cut short here (its marker), may go on in it.
  if (newest === gen && pending !== gen) {
    throw new ConflictError(
      `tenant ${tenant}: generation ${gen} is already in use in ${storage.description}: attach in a newer generation`,
    );
  }
  await mkdir(join(tenantDir, "timelines"), { recursive: true });
  await writeFileDurable(join(tenantDir, ATTACHING_MARKER), Buffer.from(JSON.stringify({ generation: gen })));
  // Before reading any index: from here on the previous holder's generation checks see us
  // (src/remote/generation_check.ts), so it reports no flush position past what we read.
  await storage.put(generationMarkerKey(tenant, gen), new Uint8Array(0), { ...opts, size_bytes: 0 });
  const ids = await listRemoteTimelines(storage, tenant, opts);
  const timelines: { id: TimelineId; downloaded: number; present: number; warning: string | null }[] = [];
  for (const id of ids) {
    await failpoint("remote-attach-timeline");
    const r = await downloadTimeline(storage, tenant, id, gen, join(tenantDir, "timelines", id), opts);
    if (r.warning !== null) opts.log?.warn({ tenant_id: tenant, timeline_id: id, generation: gen }, r.warning);
    timelines.push({ id, downloaded: r.downloaded, present: r.present, warning: r.warning });
  }
  await fsyncDir(join(tenantDir, "timelines"));
  if (!existsSync(join(tenantDir, TENANT_CONFIG_FILE))) await writeFileDurable(join(tenantDir, TENANT_CONFIG_FILE), Buffer.from("{}"));
  await writeTenantGeneration(tenantDir, gen);
  // Last: the directory is a whole tenant from here on.
  await rm(join(tenantDir, ATTACHING_MARKER));
  await fsyncDir(tenantDir);
  return { timelines };
}
