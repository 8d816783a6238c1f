/** The compaction pool's module: L0 compaction, image creation and bulk import sorting share its threads. */
export { default as compact } from "./l0_compaction_job.js";
export { default as createImages } from "./image_job.js";
export { importMerge, importRun } from "./import_job.js";
