/**
 * Redo managers loaded by module URL inside a worker (image creation, offloaded page
 * reconstruction): each URL is imported once per thread and kept. The module's default
 * export is the WalRedoManager (src/pg/redo/pg_redo.ts for PostgreSQL timelines).
 */
import type { WalRedoManager } from "../types/redo.js";

const redoModules = new Map<string, WalRedoManager>();

export async function loadRedo(url: string): Promise<WalRedoManager> {
  let r = redoModules.get(url);
  if (r === undefined) {
    r = ((await import(url)) as { default: WalRedoManager }).default;
    redoModules.set(url, r);
  }
  return r;
}
