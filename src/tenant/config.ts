/**
 * Tenant configuration: the knobs of layered storage, with Neon's names and defaults. Durations
 * are given as strings ("20s", "10m", "1h30m", "7d", as Neon's humantime) or milliseconds;
 * sizes in bytes. Internally every field carries its unit in its name.
 *
 * Ingest backpressure (see Timeline.ingestBackpressure): the frozen-layer limit and the two L0
 * thresholds. The L0 thresholds default to multiples of compaction_threshold (null = derived,
 * as Neon derives l0_flush_delay_threshold); 0 disables one.
 */
import { InvalidArgumentError } from "../types/errors.js";

export interface TenantConf {
  checkpoint_distance_bytes: number;
  checkpoint_timeout_ms: number;
  compaction_period_ms: number;
  compaction_threshold: number;
  compaction_target_size_bytes: number;
  image_creation_threshold: number;
  gc_horizon_bytes: number;
  gc_period_ms: number;
  pitr_interval_ms: number;
  wait_lsn_timeout_ms: number;
  /** Cache reconstructed pages (materialized page versions) in the shared page cache. */
  materialized_page_cache: boolean;
  /** Frozen in-memory layers waiting for their flush; at this many, ingest waits. */
  max_frozen_layers: number;
  /** L0 files from which ingest waits for each flush (null: 3 × compaction_threshold; 0: off). */
  l0_flush_delay_threshold: number | null;
  /** L0 files from which ingest stops until compaction catches up (null: 5 × compaction_threshold; 0: off). */
  l0_flush_stall_threshold: number | null;
  /** GetPage requests per second the page service serves this tenant (token bucket); 0: no throttle. */
  getpage_throttle_rps: number;
  /** Bucket size of that throttle (null: = getpage_throttle_rps). */
  getpage_throttle_burst: number | null;
}

export const DEFAULT_TENANT_CONF: Readonly<TenantConf> = {
  checkpoint_distance_bytes: 256 * 1024 * 1024,
  checkpoint_timeout_ms: 10 * 60_000,
  compaction_period_ms: 20_000,
  compaction_threshold: 10,
  compaction_target_size_bytes: 128 * 1024 * 1024,
  image_creation_threshold: 3,
  gc_horizon_bytes: 64 * 1024 * 1024,
  gc_period_ms: 60 * 60_000,
  pitr_interval_ms: 7 * 24 * 60 * 60_000,
  wait_lsn_timeout_ms: 300_000,
  materialized_page_cache: true,
  max_frozen_layers: 2,
  l0_flush_delay_threshold: null,
  l0_flush_stall_threshold: null,
  getpage_throttle_rps: 0,
  getpage_throttle_burst: null,
};

/** The GetPage throttle: null when off, else rate and burst (the burst at least 1 request). */
export function getpageThrottle(c: Readonly<TenantConf>): { rps: number; burst: number } | null {
  if (c.getpage_throttle_rps === 0) return null;
  return { rps: c.getpage_throttle_rps, burst: Math.max(1, c.getpage_throttle_burst ?? Math.ceil(c.getpage_throttle_rps)) };
}

/** Default L0 thresholds as multiples of compaction_threshold (Neon: delay = 3 ×). */
const L0_DELAY_FACTOR = 3;
const L0_STALL_FACTOR = 5;

/** The effective L0 thresholds; 0 means that stage is off. */
export function l0Thresholds(c: Readonly<TenantConf>): { delay: number; stall: number } {
  return {
    delay: c.l0_flush_delay_threshold ?? L0_DELAY_FACTOR * c.compaction_threshold,
    stall: c.l0_flush_stall_threshold ?? L0_STALL_FACTOR * c.compaction_threshold,
  };
}

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The longest delay a Node timer waits (2^31 - 1 ms, ~24.8 days): a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 0x7fff_ffff;

/** Longest duration text read: bounds the terms of a compound duration. */
const MAX_DURATION_TEXT = 64;
/** The whole text: one or more `<number><unit>` terms, blanks between and around them. */
const DURATION_TEXT = /^(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+$/;
const DURATION_TERM = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/g;

/**
 * A duration in ms: milliseconds as a number, or text of terms summed as Neon's humantime
 * does ("20s", "1h30m", "1h 30m", "2d 3h", "1m 30s", "1.5s"); units ms, s, m, h, d. `max_ms`
 * bounds settings that become timer delays (MAX_TIMER_MS).
 */
export function parseDurationMs(x: unknown, name: string, max_ms = Number.MAX_SAFE_INTEGER): number {
  let ms: number | null = null;
  if (typeof x === "number" && Number.isFinite(x) && x >= 0) ms = x;
  else if (typeof x === "string" && x.length <= MAX_DURATION_TEXT) {
    const text = x.trim();
    if (DURATION_TEXT.test(text)) {
      let sum = 0;
      for (const m of text.matchAll(DURATION_TERM)) sum += Number.parseFloat(m[1]!) * UNITS_MS[m[2]!]!;
      if (Number.isSafeInteger(Math.round(sum))) ms = Math.round(sum);
    }
  }
  if (ms === null)
    throw new InvalidArgumentError(`${name}: invalid duration ${JSON.stringify(x)} (e.g. "20s", "10m", "1h", or milliseconds)`);
  if (ms > max_ms) throw new InvalidArgumentError(`${name}: ${JSON.stringify(x)} is longer than ${max_ms} ms`);
  return ms;
}

/** `ms` as parseDurationMs reads it back: "1d 2h 3m 4s 5ms" (zero terms left out; 0 is "0ms"). */
export function formatDurationMs(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new InvalidArgumentError(`not a duration in ms: ${ms}`);
  const terms: string[] = [];
  let rest = ms;
  for (const unit of ["d", "h", "m", "s", "ms"] as const) {
    const size = UNITS_MS[unit]!;
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0) terms.push(`${n}${unit}`);
  }
  return terms.length === 0 ? "0ms" : terms.join(" ");
}

function parseCount(x: unknown, name: string, min: number): number {
  if (typeof x === "number" && Number.isSafeInteger(x) && x >= min) return x;
  throw new InvalidArgumentError(`${name}: expected an integer >= ${min}, got ${JSON.stringify(x)}`);
}

/** Requests per second: a finite number ≥ 0 (fractions allowed: one request every few seconds). */
function parseRate(x: unknown, name: string): number {
  if (typeof x === "number" && Number.isFinite(x) && x >= 0 && x <= 1e9) return x;
  throw new InvalidArgumentError(`${name}: expected a number of requests per second >= 0, got ${JSON.stringify(x)}`);
}

/** User-facing names (as in Neon) → internal fields. */
const FIELDS: Record<string, (c: TenantConf, v: unknown) => void> = {
  checkpoint_distance: (c, v) => (c.checkpoint_distance_bytes = parseCount(v, "checkpoint_distance", 8192)),
  checkpoint_timeout: (c, v) => (c.checkpoint_timeout_ms = parseDurationMs(v, "checkpoint_timeout")),
  compaction_period: (c, v) => (c.compaction_period_ms = parseDurationMs(v, "compaction_period", MAX_TIMER_MS)),
  compaction_threshold: (c, v) => (c.compaction_threshold = parseCount(v, "compaction_threshold", 1)),
  compaction_target_size: (c, v) => (c.compaction_target_size_bytes = parseCount(v, "compaction_target_size", 8192)),
  image_creation_threshold: (c, v) => (c.image_creation_threshold = parseCount(v, "image_creation_threshold", 1)),
  gc_horizon: (c, v) => (c.gc_horizon_bytes = parseCount(v, "gc_horizon", 0)),
  gc_period: (c, v) => (c.gc_period_ms = parseDurationMs(v, "gc_period", MAX_TIMER_MS)),
  pitr_interval: (c, v) => (c.pitr_interval_ms = parseDurationMs(v, "pitr_interval")),
  wait_lsn_timeout: (c, v) => (c.wait_lsn_timeout_ms = parseDurationMs(v, "wait_lsn_timeout", MAX_TIMER_MS)),
  max_frozen_layers: (c, v) => (c.max_frozen_layers = parseCount(v, "max_frozen_layers", 1)),
  l0_flush_delay_threshold: (c, v) => (c.l0_flush_delay_threshold = v === null ? null : parseCount(v, "l0_flush_delay_threshold", 0)),
  l0_flush_stall_threshold: (c, v) => (c.l0_flush_stall_threshold = v === null ? null : parseCount(v, "l0_flush_stall_threshold", 0)),
  getpage_throttle_rps: (c, v) => (c.getpage_throttle_rps = parseRate(v, "getpage_throttle_rps")),
  getpage_throttle_burst: (c, v) => (c.getpage_throttle_burst = v === null ? null : parseCount(v, "getpage_throttle_burst", 1)),
  materialized_page_cache: (c, v) => {
    if (typeof v !== "boolean") throw new InvalidArgumentError("materialized_page_cache: expected true or false");
    c.materialized_page_cache = v;
  },
};

export const TENANT_CONF_KEYS = Object.keys(FIELDS);

/** Apply user-facing overrides (Neon names) on top of `base`. Unknown keys are refused. */
export function parseTenantConf(overrides: Record<string, unknown>, base: Readonly<TenantConf> = DEFAULT_TENANT_CONF): TenantConf {
  const c: TenantConf = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    const set = FIELDS[k];
    if (set === undefined) throw new InvalidArgumentError(`unknown tenant config key '${k}'; known: ${TENANT_CONF_KEYS.join(", ")}`);
    set(c, v);
  }
  return c;
}
