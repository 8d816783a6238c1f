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
}

export function deltaCounter<L extends string = never>(spec: DeltaCounterSpec<L>): Counter<L> {
  const labelled = (spec.labelNames ?? []).length > 0;
  let last = new Map<unknown, number>();
  return new Counter<L>({
    name: spec.name,
    help: spec.help,
    labelNames: spec.labelNames ?? [],
    registers: spec.registers,
    collect() {
      const now = new Map<unknown, number>();
      for (const s of spec.read()) {
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
