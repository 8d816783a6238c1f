/** Domain types shared by every layer of the process: Lsn, Key, ids, values, errors, assert. */
export * from "./assert.js";
export * from "./bytes.js";
export * from "./errors.js";
export * from "./ids.js";
export * from "./key.js";
export * from "./lsn.js";
export * from "./value.js";
export * from "./redo.js";
export * from "./failpoints.js";
export * from "./metrics_sink.js";
