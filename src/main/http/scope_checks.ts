/**
 * What in a tenant route's request needs the management scope (pageserverapi), decided on the
 * values the request leads to. Used by the route handlers after auth (http/http_server.ts decided
 * the route's own scope) and before anything changes.
 *
 * Node-protecting tenant settings: a tenant token may change the tenant's other settings, and
 * may send these back unchanged (a PUT replaces every override), but not change them:
 * getpage_throttle_*, max_frozen_layers, the effective L0 thresholds (l0_flush_*, derived
 * from compaction_threshold when unset), wait_lsn_timeout; nor turn compaction off
 * (compaction_period 0); nor lower checkpoint_distance, gc_horizon or pitr_interval below the
 * node's floors (node config tenant_min_*). With auth off (claims null) nothing is checked.
 */
import type { TenantWorkLimiter } from "../../tenant/heavy_work.js";
import { l0Thresholds, parseTenantConf, type TenantConf } from "../../tenant/config.js";
import { type Claims, requireManagement } from "../auth.js";

/** What the node config decides for the API (src/main/config.ts). */
export interface ApiPolicy {
  enable_failpoints: boolean;
  import_pgdata_root: string | null;
  floors: TenantFloors;
  heavy: TenantWorkLimiter;
  /** The node's tenant defaults (a config PUT is judged by the effective values it leads to). */
  tenant_defaults: TenantConf;
  /** /metrics has its own listener (listen_metrics): not on the API's. */
  separate_metrics: boolean;
}

export interface TenantFloors {
  checkpoint_distance_bytes: number;
  gc_horizon_bytes: number;
  pitr_interval_ms: number;
}

/** Settings a tenant token must leave as they are: user-facing name → effective value. */
function protectedValues(c: Readonly<TenantConf>): Record<string, unknown> {
  const l0 = l0Thresholds(c);
  return {
    getpage_throttle_rps: c.getpage_throttle_rps,
    getpage_throttle_burst: c.getpage_throttle_burst,
    max_frozen_layers: c.max_frozen_layers,
    l0_flush_delay_threshold: l0.delay,
    l0_flush_stall_threshold: l0.stall,
    wait_lsn_timeout: c.wait_lsn_timeout_ms,
  };
}

/** Refuse (403) a config PUT by a tenant token that changes a node-protecting setting. */
export function checkTenantConfigScope(
  claims: Claims | null,
  current: Readonly<TenantConf>,
  overrides: Record<string, unknown>,
  defaults: Readonly<TenantConf>,
  floors: TenantFloors,
): void {
  if (claims === null || claims.scope === "pageserverapi") return;
  // Invalid overrides are a 400 from here, as from setConfig.
  const next = parseTenantConf(overrides, defaults);
  const before = protectedValues(current);
  const after = protectedValues(next);
  for (const [name, v] of Object.entries(after)) {
    if (before[name] !== v) requireManagement(claims, `changing ${name}`);
  }
  if (next.compaction_period_ms === 0 && current.compaction_period_ms !== 0)
    requireManagement(claims, "compaction_period 0 (compaction off)");
  const below = (name: string, v: number, was: number, floor: number): void => {
    if (v < floor && v !== was) requireManagement(claims, `${name} ${v} below the node's floor ${floor}`);
  };
  below("checkpoint_distance", next.checkpoint_distance_bytes, current.checkpoint_distance_bytes, floors.checkpoint_distance_bytes);
  below("gc_horizon", next.gc_horizon_bytes, current.gc_horizon_bytes, floors.gc_horizon_bytes);
  below("pitr_interval (ms)", next.pitr_interval_ms, current.pitr_interval_ms, floors.pitr_interval_ms);
}

/** Refuse (403) a do_gc by a tenant token whose horizon is below the node's gc_horizon floor. */
export function checkGcHorizonScope(claims: Claims | null, horizon_bytes: number | undefined, floors: TenantFloors): void {
  if (horizon_bytes !== undefined && horizon_bytes < floors.gc_horizon_bytes) {
    requireManagement(claims, `do_gc with gc_horizon ${horizon_bytes} below the node's floor ${floors.gc_horizon_bytes}`);
  }
}
