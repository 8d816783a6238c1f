/**
 * Redo job: one page reconstruction moved off the main thread because its chain of records
 * is long (Timeline.get decides; see REDO_OFFLOAD_MIN_RECORDS there). Plain data in (the
 * base image and the records, copied out of the layers), the page out. The redo manager is
 * the timeline's own, loaded by module URL.
 */
import { redoFailure } from "../layers/reconstruct_state.js";
import type { RedoResult, RedoTask } from "./jobs.js";
import { loadRedo } from "./redo_module.js";

export default async function redo(task: RedoTask): Promise<RedoResult> {
  const manager = await loadRedo(task.redoModule);
  try {
    return { page: manager.apply(task.key, task.base, task.baseLsn, task.records, task.lsns) };
  } catch (e) {
    const err = redoFailure(task.key, e);
    return { error: { code: err.code, message: err.message } };
  }
}
