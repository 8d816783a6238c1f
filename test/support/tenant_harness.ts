/**
 * A tenant with the real parts (shared page cache, Piscina worker pools, TestRedo) in a
 * temp directory, for storage-core tests. `restart()` drops everything in memory and loads
 * the tenant again from disk, as a process restart would.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { PageCache } from "../../src/cache/index.js";
import { DEFAULT_TENANT_CONF, parseTenantConf, type TenantConf } from "../../src/tenant/config.js";
import { BackgroundLoops } from "../../src/tenant/background_loops.js";
import { Tenant, type TenantDeps } from "../../src/tenant/tenant.js";
import { TestRedo } from "./test_redo.js";
import type { KeyspaceProvider } from "../../src/tenant/timeline/index.js";
import { generateTenantId, type TenantId } from "../../src/types/ids.js";
import type { JobRunner } from "../../src/workers/jobs.js";
import { JobPools } from "../../src/workers/pools.js";

export const TEST_REDO_MODULE = pathToFileURL(fileURLToPath(new URL("./test_redo.ts", import.meta.url))).href;

/** Background loops off: tests drive flush, compaction and GC themselves. */
export const QUIET_CONF: Record<string, unknown> = {
  compaction_period: 0,
  gc_period: 0,
  checkpoint_timeout: "1d",
  wait_lsn_timeout: "2s",
};

export class TenantHarness {
  readonly dir: string;
  readonly cache: PageCache;
  readonly pools: JobPools;
  readonly loops = new BackgroundLoops(4);
  readonly tenantId: TenantId = generateTenantId();
  private readonly ownsDir: boolean;
  tenant!: Tenant;
  private readonly deps: TenantDeps;

  /**
   * `jobs` wraps the real pools, e.g. to slow a job kind down (a test hook passed as a
   * dependency: src has no test doubles).
   */
  constructor(
    opts: {
      cacheBytes?: number;
      conf?: Record<string, unknown>;
      keyspace?: KeyspaceProvider;
      dir?: string;
      tenantId?: TenantId;
      jobs?: (pools: JobPools) => JobRunner;
    } = {},
  ) {
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), "ps-tenant-"));
    if (opts.tenantId !== undefined) this.tenantId = opts.tenantId;
    this.ownsDir = opts.dir === undefined;
    this.cache = PageCache.create({ size_bytes: opts.cacheBytes ?? 8 * 1024 * 1024 });
    this.pools = new JobPools({ cacheSab: this.cache.shared });
    const defaults: TenantConf = parseTenantConf({ ...QUIET_CONF, ...(opts.conf ?? {}) }, DEFAULT_TENANT_CONF);
    this.deps = {
      cache: this.cache,
      jobs: opts.jobs?.(this.pools) ?? this.pools,
      redo: new TestRedo(),
      redoModule: TEST_REDO_MODULE,
      log: pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" }),
      defaults,
      keyspace: opts.keyspace,
      loops: this.loops,
    };
  }

  get tenantDir(): string {
    return join(this.dir, this.tenantId);
  }

  async create(): Promise<Tenant> {
    this.tenant = await Tenant.create(this.deps, this.tenantId, this.tenantDir, {});
    return this.tenant;
  }

  /** Load the tenant from disk (a directory an earlier process left). */
  load(): Tenant {
    this.tenant = Tenant.load(this.deps, this.tenantId, this.tenantDir);
    return this.tenant;
  }

  /** Simulate a restart: stop (optionally without flushing), then load from disk. */
  async restart(flush = false): Promise<Tenant> {
    await this.tenant.shutdown(flush);
    this.tenant = Tenant.load(this.deps, this.tenantId, this.tenantDir);
    return this.tenant;
  }

  async close(): Promise<void> {
    if (this.tenant !== undefined) await this.tenant.shutdown(false);
    this.loops.close();
    await this.pools.destroy();
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
