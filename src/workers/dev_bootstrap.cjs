// Development only (running from TypeScript sources under tsx/vitest): Node 20 does not apply
// tsx's ESM hooks inside worker threads started with `--import tsx`, so Piscina loads this
// plain-JS module, which imports the pool's TypeScript job module through tsx's API.
//
// CommonJS on purpose: Piscina require()s a handler module first, and Node 20's require() of
// an ES module with top-level await raced by two tasks of one worker crashed the process
// ("v8::Module::IsGraphAsync must be used on an instantiated module"). Here nothing is
// awaited at load time; the job module is imported once, on the first task.
const { workerData } = require("node:worker_threads");

let loading = null;
function load() {
  if (loading === null) {
    loading = import("tsx/esm/api").then((api) => api.tsImport(workerData.tsJobModule, __filename));
  }
  return loading;
}

module.exports = async function run(task) {
  return (await load()).default(task);
};
module.exports.compact = async (task) => (await load()).compact(task);
module.exports.createImages = async (task) => (await load()).createImages(task);
module.exports.importRun = async (task) => (await load()).importRun(task);
module.exports.importMerge = async (task) => (await load()).importMerge(task);
