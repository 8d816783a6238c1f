/** GC job: plan which layers to delete (the main thread applies the plan and unlinks). */
import { planGc } from "../layers/gc_plan.js";
import type { GcResult, GcTask } from "./jobs.js";

export default async function gc(task: GcTask): Promise<GcResult> {
  return { remove: planGc(task.layers, task.cutoffLsn, task.retainLsns) };
}
