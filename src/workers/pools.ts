/**
 * Worker pools: one Piscina pool per job kind (flush, compaction + image creation, gc), each
 * thread attached to the one shared page cache. Sized for the machine: one thread each by
 * default. Each pool's queue is bounded (maxQueue): a job beyond it is refused, not buffered.
 *
 * Job modules are TypeScript in development (run through tsx's loader) and JavaScript once
 * built; the pool resolves whichever sits next to this file.
 */
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import type {
  CompactResult,
  CompactTask,
  FlushResult,
  FlushTask,
  GcResult,
  GcTask,
  ImageResult,
  ImageTask,
  JobRunner,
} from "./jobs.js";
import type { PoolWorkerData } from "./worker_cache.js";

export interface PoolOptions {
  cacheSab: SharedArrayBuffer;
  flushThreads?: number;
  compactionThreads?: number;
  gcThreads?: number;
  /** Max queued jobs per pool. */
  maxQueue?: number;
}

const isTs = import.meta.url.endsWith(".ts");

function jobFile(name: string): string {
  return fileURLToPath(new URL(`./${name}${isTs ? ".ts" : ".js"}`, import.meta.url));
}

export class JobPools implements JobRunner {
  private readonly flushPool: Piscina;
  private readonly compactionPool: Piscina;
  private readonly gcPool: Piscina;

  constructor(opts: PoolOptions) {
    const workerData: PoolWorkerData = { cacheSab: opts.cacheSab };
    const base = {
      workerData,
      execArgv: isTs ? ["--import", "tsx"] : [],
      minThreads: 1,
      maxQueue: opts.maxQueue ?? 1024,
      idleTimeout: 60_000,
    };
    this.flushPool = new Piscina({ ...base, filename: jobFile("flush_job"), maxThreads: opts.flushThreads ?? 1 });
    this.compactionPool = new Piscina({ ...base, filename: jobFile("compaction_jobs"), maxThreads: opts.compactionThreads ?? 1 });
    this.gcPool = new Piscina({ ...base, filename: jobFile("gc_job"), maxThreads: opts.gcThreads ?? 1 });
  }

  flush(task: FlushTask): Promise<FlushResult> {
    return this.flushPool.run(task) as Promise<FlushResult>;
  }
  compact(task: CompactTask): Promise<CompactResult> {
    return this.compactionPool.run(task, { name: "compact" }) as Promise<CompactResult>;
  }
  images(task: ImageTask): Promise<ImageResult> {
    return this.compactionPool.run(task, { name: "createImages" }) as Promise<ImageResult>;
  }
  gc(task: GcTask): Promise<GcResult> {
    return this.gcPool.run(task) as Promise<GcResult>;
  }

  async destroy(): Promise<void> {
    await Promise.all([this.flushPool.destroy(), this.compactionPool.destroy(), this.gcPool.destroy()]);
  }
}
