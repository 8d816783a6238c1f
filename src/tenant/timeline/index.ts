/**
 * src/tenant/timeline: one branch of a tenant's history. `Timeline` (timeline.ts) is what the
 * rest of the pageserver uses; its parts each own one concern (see timeline.ts's header):
 * the read path, ingest, flush and durability, layer residency, compaction and image layers,
 * GC, LSN ↔ time, and loading a timeline directory.
 */
export { FlushLoopState, TimelineState } from "./core.js";
export type { RecordApplier } from "./ingest.js";
export { REDO_OFFLOAD_MIN_RECORDS } from "./read.js";
export { type InMemoryLayerInfo, type KeyspaceProvider, Timeline, type TimelineDeps, WHOLE_KEYSPACE } from "./timeline.js";
