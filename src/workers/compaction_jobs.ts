/** The compaction pool's module: L0 compaction and image creation share its threads. */
export { default as compact } from "./compaction_job.js";
export { default as createImages } from "./image_job.js";
