/**
 * deltaCounter: a prom-client Counter whose value is a running total kept elsewhere (the
 * cache's shared buffer, timelines, worker pools, remote timeline clients, WAL sources, the
 * disk-usage eviction task) and read when /metrics is scraped. A prom-client counter only
 * goes up by inc(), so each scrape adds, per series, the increase since the last scrape.
 *
 * Invariants:
 * - An increase is never negative: a total that went down (a sum over timelines after one was
 *   removed) is no increase, and counting resumes from the lower total.
 * - A total is remembered under its owner (the object that keeps it) when the sample names
 *   one, else under its labels; a new owner (a new WAL source of a timeline) counts from 0,
 *   all of its total an increase.
 * - Only what the last scrape read is remembered: an owner that is gone is not held.
 * - Every series read is touched (inc by at least 0), so it shows before its first event.
 * - With `perNode()` true (metrics_per_timeline off), samples are summed over tenant_id and
 *   timeline_id first: one series per remaining label set. A switch of mode resets the counter
 *   (Prometheus reads it as a counter reset), so no series of the other mode lingers.
 */
import { Counter, type LabelValues, type Registry } from "prom-client";

/** One series' running total, as a scrape reads it. */
export interface DeltaSample<L extends string> {
  labels: LabelValues<L>;
  total: number;
  /** The object that keeps the total, when a series may outlive it (else its labels key it). */
  owner?: object;
}

export interface DeltaCounterSpec<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registers: Registry[];
  /** The totals now: one sample per series (bounded by what the node holds: timelines, pools…). */
  read: () => Iterable<DeltaSample<L>>;
  /** Whether to sum the samples over tenant_id/timeline_id (metrics_per_timeline off); absent: never. */
  perNode?: () => boolean;
}

/** The labels the node-wide aggregate of a per-timeline family keeps. */
export const TIMELINE_LABELS: readonly string[] = ["tenant_id", "timeline_id"];

/** `labels` without tenant_id and timeline_id (a per-timeline series' node-wide series). */
export function nodeLabels<T extends Record<string, string | number>>(labels: T): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(labels)) if (!TIMELINE_LABELS.includes(k)) out[k] = v;
  return out;
}

/**
 * Samples summed per node-wide label set (owners dropped: the sum is keyed by its labels):
 * keyed by the values of `kept` labels, the labels object built once per key.
 */
function sumPerNode<L extends string>(samples: Iterable<DeltaSample<L>>, kept: readonly string[]): DeltaSample<L>[] {
  const sums = new Map<string, DeltaSample<L>>();
  for (const s of samples) {
    const all = s.labels as Record<string, string | number>;
    let key = "";
    for (const k of kept) key += `${all[k]}\u0000`;
    const acc = sums.get(key);
    if (acc === undefined) sums.set(key, { labels: nodeLabels(all) as LabelValues<L>, total: s.total });
    else acc.total += s.total;
  }
  return [...sums.values()];
}

export function deltaCounter<L extends string = never>(spec: DeltaCounterSpec<L>): Counter<L> {
  const labelled = (spec.labelNames ?? []).length > 0;
  const kept = (spec.labelNames ?? []).filter((k) => !TIMELINE_LABELS.includes(k));
  let last = new Map<unknown, number>();
  let lastPerNode = false;
  return new Counter<L>({
    name: spec.name,
    help: spec.help,
    labelNames: spec.labelNames ?? [],
    registers: spec.registers,
    collect() {
      const perNode = spec.perNode?.() ?? false;
      if (perNode !== lastPerNode) {
        this.reset();
        last = new Map();
        lastPerNode = perNode;
      }
      const now = new Map<unknown, number>();
      for (const s of perNode ? sumPerNode(spec.read(), kept) : spec.read()) {
        const key = s.owner ?? JSON.stringify(s.labels);
        const increase = Math.max(s.total - (last.get(key) ?? 0), 0);
        if (labelled) this.inc(s.labels, increase);
        else this.inc(increase);
        now.set(key, s.total);
      }
      last = now;
    },
  });
}
