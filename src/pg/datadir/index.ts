/**
 * src/pg/datadir: the PostgreSQL 15 data directory as keys and values of a timeline.
 * - keys: the dense key map (relations, databases, SLRUs, two-phase, control, checkpoint)
 * - directories: encodings of the directory values
 * - writer: DatadirWriter, batched changes at one LSN
 * - reader: DatadirSnapshot / DatadirReader reads at an LSN, collectKeyspace, logical size
 * - import: a shut-down data directory (or a base.tar stream) into an empty timeline
 */
export * from "./directories.js";
export * from "./import.js";
export * from "./keys.js";
export * from "./reader.js";
export * from "./writer.js";
