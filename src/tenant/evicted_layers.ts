/**
 * The evicted-layer manifest of a timeline directory (`evicted_layers.json`): the layers of
 * the timeline that are held only in remote storage, by name with their size in bytes.
 * Timeline.load takes the union of the layer files present and this list; a file present
 * wins (a download renames the file into place before anything else, an eviction writes the
 * manifest before it unlinks), so a crash at any point loads every layer exactly once.
 * An attach that downloads no layers writes the whole index here. A name the remote index
 * no longer holds (GC or compaction removed it while evicted) is dropped when the timeline
 * connects to remote storage.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseLayerName } from "../layers/layer_name.js";
import { CorruptionError } from "../types/errors.js";
import { writeFileDurable } from "../layers/durable_file.js";

export const EVICTED_LAYERS_FILE = "evicted_layers.json";
/** Bound on entries read back (a timeline's layer count is far below it). */
const MAX_EVICTED_LAYERS = 1_000_000;

/** Name → file size of the evicted layers recorded in `dir`; empty when there is no manifest. */
export function readEvictedLayers(dir: string): Map<string, number> {
  const path = join(dir, EVICTED_LAYERS_FILE);
  const out = new Map<string, number>();
  if (!existsSync(path)) return out;
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CorruptionError(path, 0, `bad JSON: ${(e as Error).message}`);
  }
  const layers = (j as { layers?: unknown } | null)?.layers;
  if (typeof layers !== "object" || layers === null || Array.isArray(layers)) throw new CorruptionError(path, 0, "no layers object");
  const entries = Object.entries(layers as Record<string, unknown>);
  if (entries.length > MAX_EVICTED_LAYERS) throw new CorruptionError(path, 0, `${entries.length} entries, more than ${MAX_EVICTED_LAYERS}`);
  for (const [name, size] of entries) {
    if (parseLayerName(name) === null) throw new CorruptionError(path, 0, `not a layer name: ${name}`);
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) throw new CorruptionError(path, 0, `layer ${name}: bad size`);
    out.set(name, size);
  }
  return out;
}

/** Replace the manifest of `dir` durably with `layers` (name → size). */
export async function writeEvictedLayers(dir: string, layers: ReadonlyMap<string, number>): Promise<void> {
  const obj: Record<string, number> = {};
  for (const [name, size] of [...layers].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) obj[name] = size;
  await writeFileDurable(join(dir, EVICTED_LAYERS_FILE), Buffer.from(JSON.stringify({ layers: obj })));
}
