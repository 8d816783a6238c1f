/**
 * Worker pools: one Piscina pool per job kind (flush, compaction + image creation, gc, and
 * reconstructions of pages with long record chains), each
 * thread attached to the one shared page cache. Sized for the machine: one thread each by
 * default. Jobs reach a pool through a FairQueue (fair_queue.ts): no more jobs in the pool
 * than it has threads, and waiting jobs are served tenant by tenant, so a tenant's flush or
 * compaction waits behind at most one job of each other busy tenant, never a whole backlog.
 * Flushes have their own pool: they never wait behind a compaction. Each queue is bounded
 * (maxQueue): a job beyond it is refused, not buffered.
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
  ImportMergeTask,
  ImportResult,
  ImportRunTask,
  JobRunner,
  RedoResult,
  RedoTask,
} from "./jobs.js";
import { FairQueue } from "./fair_queue.js";
import type { PoolWorkerData } from "./worker_cache.js";

export interface PoolOptions {
  cacheSab: SharedArrayBuffer;
  flushThreads?: number;
  compactionThreads?: number;
  gcThreads?: number;
  /** Threads that reconstruct pages whose record chains are long (Timeline.get). */
  redoThreads?: number;
  /** Max queued jobs per pool. */
  maxQueue?: number;
  onError?: (e: unknown) => void;
}

const isTs = import.meta.url.endsWith(".ts");

function jobUrl(name: string): URL {
  return new URL(`./${name}${isTs ? ".ts" : ".js"}`, import.meta.url);
}

/** Piscina options that load job module `name`: directly when built, through tsx in development. */
function jobModule(name: string, cacheSab: SharedArrayBuffer): { filename: string; workerData: PoolWorkerData } {
  if (!isTs) return { filename: fileURLToPath(jobUrl(name)), workerData: { cacheSab } };
  return {
    filename: fileURLToPath(new URL("./dev_bootstrap.cjs", import.meta.url)),
    workerData: { cacheSab, tsJobModule: jobUrl(name).href },
  };
}

/** One pool as metrics see it; cheap to read (counters the pool keeps anyway). */
export interface PoolStats {
  pool: "flush" | "compaction" | "gc" | "redo";
  /** Jobs waiting: in the fair queue and (briefly) in Piscina's own queue. */
  queued: number;
  /** Jobs handed to the pool and not finished. */
  running: number;
  /** Worker threads alive now (Piscina starts them lazily and retires idle ones). */
  threads: number;
  maxThreads: number;
  /** Piscina's utilization: mean run time of completed tasks over the pool's capacity since it started (0..1). */
  utilization: number;
  completed: number;
}

export class JobPools implements JobRunner {
  private readonly flushPool: Piscina;
  private readonly compactionPool: Piscina;
  private readonly gcPool: Piscina;
  private readonly redoPool: Piscina;
  private readonly flushQueue: FairQueue;
  private readonly compactionQueue: FairQueue;
  private readonly gcQueue: FairQueue;
  private readonly redoQueue: FairQueue;

  constructor(opts: PoolOptions) {
    const maxQueue = opts.maxQueue ?? 1024;
    const base = {
      minThreads: 1,
      maxQueue,
      idleTimeout: 60_000,
    };
    const flushThreads = opts.flushThreads ?? 1;
    const compactionThreads = opts.compactionThreads ?? 1;
    const gcThreads = opts.gcThreads ?? 1;
    const redoThreads = opts.redoThreads ?? 1;
    this.flushPool = new Piscina({ ...base, ...jobModule("flush_job", opts.cacheSab), maxThreads: flushThreads });
    this.compactionPool = new Piscina({ ...base, ...jobModule("compaction_pool", opts.cacheSab), maxThreads: compactionThreads });
    this.gcPool = new Piscina({ ...base, ...jobModule("gc_job", opts.cacheSab), maxThreads: gcThreads });
    this.redoPool = new Piscina({ ...base, ...jobModule("redo_job", opts.cacheSab), maxThreads: redoThreads });
    this.flushQueue = new FairQueue(flushThreads, maxQueue);
    this.compactionQueue = new FairQueue(compactionThreads, maxQueue);
    this.gcQueue = new FairQueue(gcThreads, maxQueue);
    this.redoQueue = new FairQueue(redoThreads, maxQueue);
    // A worker that dies outside a job (e.g. fails to load) must not crash the process silently
    // through an unhandled 'error' event: the jobs it would have run fail with the error instead.
    for (const p of [this.flushPool, this.compactionPool, this.gcPool, this.redoPool]) {
      p.on("error", (e: unknown) => (opts.onError ?? ((x: unknown) => console.error("worker pool error", x)))(e));
    }
  }

  flush(task: FlushTask, owner: string): Promise<FlushResult> {
    return this.flushQueue.run(owner, () => this.flushPool.run(task) as Promise<FlushResult>);
  }
  compact(task: CompactTask, owner: string): Promise<CompactResult> {
    return this.compactionQueue.run(owner, () => this.compactionPool.run(task, { name: "compact" }) as Promise<CompactResult>);
  }
  images(task: ImageTask, owner: string): Promise<ImageResult> {
    return this.compactionQueue.run(owner, () => this.compactionPool.run(task, { name: "createImages" }) as Promise<ImageResult>);
  }
  importRun(task: ImportRunTask, owner: string): Promise<ImportResult> {
    return this.compactionQueue.run(owner, () => this.compactionPool.run(task, { name: "importRun" }) as Promise<ImportResult>);
  }
  importMerge(task: ImportMergeTask, owner: string): Promise<ImportResult> {
    return this.compactionQueue.run(owner, () => this.compactionPool.run(task, { name: "importMerge" }) as Promise<ImportResult>);
  }
  gc(task: GcTask, owner: string): Promise<GcResult> {
    return this.gcQueue.run(owner, () => this.gcPool.run(task) as Promise<GcResult>);
  }

  redo(task: RedoTask, owner: string): Promise<RedoResult> {
    return this.redoQueue.run(owner, () => this.redoPool.run(task) as Promise<RedoResult>);
  }

  stats(): PoolStats[] {
    const one = (pool: PoolStats["pool"], p: Piscina, q: FairQueue): PoolStats => ({
      pool,
      queued: q.queuedCount + p.queueSize,
      running: q.runningCount,
      threads: p.threads.length,
      maxThreads: p.options.maxThreads,
      utilization: p.utilization,
      completed: p.completed,
    });
    return [
      one("flush", this.flushPool, this.flushQueue),
      one("compaction", this.compactionPool, this.compactionQueue),
      one("gc", this.gcPool, this.gcQueue),
      one("redo", this.redoPool, this.redoQueue),
    ];
  }

  async destroy(): Promise<void> {
    await Promise.all([this.flushPool.destroy(), this.compactionPool.destroy(), this.gcPool.destroy(), this.redoPool.destroy()]);
  }
}
