/** Worker pools and the job contracts between the main thread and them. */
export * from "./jobs.js";
export { JobPools, type PoolOptions } from "./pools.js";
