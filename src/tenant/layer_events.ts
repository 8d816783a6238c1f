/**
 * LayerEvents: what a timeline tells the world about its layer files and metadata, in the
 * order the changes become durable locally. Remote storage implements it (the
 * RemoteTimelineClient in src/remote, wired by src/main); without remote storage a timeline
 * has NO_LAYER_EVENTS. src/tenant never imports src/remote: this interface is the seam.
 *
 * Contract (the upload queue's ordering rules rest on it):
 * - layersAdded comes after the files are durable and before any metadataChanged whose
 *   disk_consistent_lsn covers their data, and before the timeline could unlink them. An
 *   implementation takes what it needs from the files synchronously (it opens them), so the
 *   timeline may unlink a layer right after layersRemoved without losing a pending upload.
 * - layersRemoved comes after the layers left the layer map (compaction, GC) and after the
 *   metadata that allows their removal (GC: the raised cutoff) was reported.
 * - metadataChanged reports each metadata write, in write order, after it is durable.
 * - The calls never throw into the timeline: an implementation that can't go on reports it
 *   its own way (the remote client stops its queue and says why).
 */
import type { TimelineMetadata } from "./metadata.js";

export interface AddedLayer {
  name: string;
  path: string;
}

export interface LayerEvents {
  layersAdded(layers: readonly AddedLayer[]): void;
  layersRemoved(names: readonly string[]): void;
  metadataChanged(metadata: TimelineMetadata): void;
  /**
   * Backpressure: the flush asks before each layer; false after timeout_ms means "still full,
   * ask again" (the flush waits while its loop runs). Absent: never full.
   */
  waitForRoom?(timeout_ms: number): Promise<boolean>;
}

export const NO_LAYER_EVENTS: LayerEvents = {
  layersAdded: () => undefined,
  layersRemoved: () => undefined,
  metadataChanged: () => undefined,
};
