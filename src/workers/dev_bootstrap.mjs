// Development only (running from TypeScript sources under tsx/vitest): Node 20 does not apply
// tsx's ESM hooks inside worker threads started with `--import tsx`, so Piscina loads this
// plain-JS module, which imports the pool's TypeScript job module through tsx's API and
// re-exports its jobs. Built code (dist/) loads the compiled job modules directly.
import { workerData } from "node:worker_threads";
import { tsImport } from "tsx/esm/api";

const mod = await tsImport(workerData.tsJobModule, import.meta.url);
export default mod.default;
export const compact = mod.compact;
export const createImages = mod.createImages;
