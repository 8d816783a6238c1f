/**
 * LogicalSizeQueries: the node's logical-size computations for the tenant size model
 * (GET /v1/tenant/:id/size). Each walks every relation's size at an LSN (many page reads), so
 * at most `concurrent_tenant_size_logical_size_queries` run at once across all tenants, shared
 * among tenants round-robin (src/tenant/heavy_work.ts FairQueue: one tenant's requests don't
 * make the others queue behind all of them); a request whose client went away (its
 * AbortSignal) leaves the queue and stops before its next computation. Each one is timed in pageserver_storage_operations_seconds_global with Neon's
 * operation label "logical size".
 *
 * `compute` is the computation itself (default: src/pgdata's logicalSize); a caller may wrap
 * it (tests observe the concurrency limit that way).
 */
import { logicalSize } from "../pgdata/reader.js";
import { computeTenantSize, sizeInputs, type SizeInputs, type TenantSize } from "../tenant/size_model.js";
import type { Tenant } from "../tenant/tenant.js";
import type { Timeline } from "../tenant/timeline/index.js";
import type { TimelineId } from "../types/ids.js";
import type { Lsn } from "../types/lsn.js";
import { secondsSince } from "../types/metrics_sink.js";
import { FairQueue } from "../tenant/heavy_work.js";

export type LogicalSizeCompute = (tl: Timeline, lsn: Lsn) => Promise<number>;

export class LogicalSizeQueries {
  private readonly queue: FairQueue;
  private readonly compute: LogicalSizeCompute;

  constructor(limit: number, compute: LogicalSizeCompute = logicalSize) {
    this.queue = new FairQueue(limit);
    this.compute = compute;
  }

  /** The logical size of `tl` at `lsn`, within the node's limit, its turn shared fairly among tenants. */
  at(tl: Timeline, lsn: Lsn, signal?: AbortSignal): Promise<number> {
    return this.queue.run(
      tl.tenantId,
      async () => {
        const start_ms = performance.now();
        try {
          return await this.compute(tl, lsn);
        } finally {
          tl.metrics.storageOperation("logical size", secondsSince(start_ms));
        }
      },
      signal,
    );
  }

  /** The tenant's size by the model (src/tenant/size_model.ts), with the inputs it used. */
  async tenantSize(tenant: Tenant, now_ms = Date.now(), signal?: AbortSignal): Promise<TenantSize & { inputs: SizeInputs }> {
    const inputs = sizeInputs(tenant, now_ms);
    const size = await computeTenantSize(inputs, (id: TimelineId, lsn: Lsn) => this.at(tenant.getTimeline(id), lsn, signal));
    return { ...size, inputs };
  }
}
