/**
 * What a timeline directory holds at load: the layer files named in it and the evicted layers
 * of its manifest, after removing what a crash left behind. Owns nothing past the call.
 *
 * Invariants (what load() guarantees the timeline it builds):
 * - temp files and ephemeral (in-memory layer) files are deleted: their data is re-ingested.
 * - a layer ending above disk_consistent_lsn ("future": flushed after the last durable
 *   metadata write) is deleted; its WAL comes again.
 * - an interrupted bulk import (its temp directory is there) of a timeline still at its
 *   initdb LSN leaves the timeline empty: every layer file is deleted.
 * - a layer both present and in the evicted manifest is resident (the file wins).
 *
 * Lock order: none; runs before the timeline exists.
 */
import { existsSync, readdirSync, rmSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { type LayerDesc, parseLayerName, TEMP_SUFFIX } from "../../layers/layer_name.js";
import { lsnToString } from "../../types/lsn.js";
import { IMPORT_TEMP_DIR } from "../bulk_import.js";
import { isCommitTimesFile } from "../commit_time_format.js";
import { readEvictedLayers } from "../evicted_layers.js";
import type { TimelineMetadata } from "../metadata.js";

export const METADATA_FILE = "metadata";

/** The layers of a timeline directory, split by residency. */
export interface ScannedLayers {
  resident: LayerDesc[];
  evicted: LayerDesc[];
}

/**
 * Scan `dir` for the timeline whose metadata is `md` (`isBranch`: it has an ancestor),
 * deleting leftovers (see the invariants above).
 */
export function scanTimelineDir(log: Logger, dir: string, md: TimelineMetadata, isBranch: boolean): ScannedLayers {
  const layers: LayerDesc[] = [];
  // A bulk import that never finished: its temp directory is still there, and any layer it
  // had moved in is part of an incomplete import. The timeline is empty again.
  const importDir = join(dir, IMPORT_TEMP_DIR);
  const importInterrupted = existsSync(importDir);
  if (importInterrupted) {
    log.warn({ dir: importDir }, "removing an interrupted bulk import");
    rmSync(importDir, { recursive: true, force: true });
  }
  const emptyAgain = importInterrupted && !isBranch && md.disk_consistent_lsn === md.initdb_lsn;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (name.endsWith(TEMP_SUFFIX) || name.startsWith("ephemeral-")) {
      unlinkSync(path);
      continue;
    }
    // Our metadata, and JSON files other layers keep beside it (wal_source.json).
    if (name === METADATA_FILE || name.endsWith(".json") || isCommitTimesFile(name)) continue;
    const parsed = parseLayerName(name);
    if (parsed === null) {
      log.warn({ file: name }, "unknown file in timeline directory, ignoring");
      continue;
    }
    if (emptyAgain) {
      unlinkSync(path);
      continue;
    }
    if (parsed.lsnRange.end - 1 > md.disk_consistent_lsn) {
      log.info({ layer: name, disk_consistent_lsn: lsnToString(md.disk_consistent_lsn) }, "deleting future layer");
      unlinkSync(path);
      continue;
    }
    // The size from the directory: layer_bytes metrics, and open() refuses a file that changed.
    layers.push({ ...parsed, fileSize: statSync(path).size });
  }
  // Layers held only remotely: those of the manifest whose file is not here (a file wins).
  const evicted: LayerDesc[] = [];
  if (!emptyAgain) {
    const present = new Set(layers.map((d) => d.fileName));
    for (const [name, size] of readEvictedLayers(dir)) {
      const parsed = parseLayerName(name);
      if (parsed === null || present.has(name) || parsed.lsnRange.end - 1 > md.disk_consistent_lsn) continue;
      evicted.push({ ...parsed, fileSize: size });
    }
  }
  return { resident: layers, evicted };
}
