/**
 * src/layers: where page versions live. The ephemeral file and in-memory layer (newest
 * values), delta and image layer files (8 kB blocks, CRC32C, on-disk B-tree index), the
 * layer map (which layer to read next for a key below an LSN), the read path over it, and
 * the GC plan. Everything reads blocks through the shared page cache.
 */
export * from "./delta_layer.js";
export * from "./ephemeral_file.js";
export * from "./gc_plan.js";
export * from "./historic_layer.js";
export * from "./image_layer.js";
export * from "./inmemory_layer.js";
export * from "./layer_file.js";
export * from "./layer_map.js";
export * from "./layer_name.js";
export * from "./read_path.js";
export * from "./reconstruct_state.js";
