/**
 * src/tenant: tenants and timelines. put/get@LSN with SeqWait, branching, the flush loop,
 * compaction/image creation/GC policy (the jobs themselves run in src/workers), durable
 * timeline metadata, the commit-time index (LSN ↔ time), and the tenant configuration.
 */
export * from "./commit_times.js";
export { COMMIT_TIMES_FILE, isCommitTimesFile } from "./commit_time_format.js";
export * from "./commit_times_snapshot.js";
export * from "./lsn_for_time.js";
export * from "./config.js";
export * from "./layer_events.js";
export * from "./metadata.js";
export * from "./seqwait.js";
export * from "./tenant.js";
export * from "./timeline/index.js";
