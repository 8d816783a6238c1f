/**
 * Benchmark plumbing shared by every bench: the row format, the table printer, the JSON
 * writer. A bench module default-exports `run(): Promise<BenchRow[]>`.
 *
 * Row: {"name", "unit", "value", "peer", "peer_value", "ratio"}; ratio > 1 means we are better
 * (for "higher is better" units it is value / peer_value, for latencies peer_value / value).
 * The JSON file also records the machine's load average (1, 5, 15 min) at the start and the
 * end of the run: the machines here are shared, and a figure means little without it.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface BenchRow {
  name: string;
  unit: string;
  value: number;
  peer: string | null;
  peer_value: number | null;
  ratio: number | null;
}

export type BenchFn = () => Promise<BenchRow[]>;

/** Units where smaller is better (times, CPU share, memory): ratio is inverted for them. */
const LOWER_IS_BETTER = new Set(["us", "ms", "s", "ns", "%", "MiB", "series"]);

export function row(name: string, unit: string, value: number, peer?: string, peerValue?: number): BenchRow {
  let ratio: number | null = null;
  if (peer !== undefined && peerValue !== undefined && peerValue > 0 && value > 0) {
    ratio = LOWER_IS_BETTER.has(unit) ? peerValue / value : value / peerValue;
  }
  return { name, unit, value, peer: peer ?? null, peer_value: peerValue ?? null, ratio };
}

function fmt(x: number | null): string {
  if (x === null) return "-";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  return x.toPrecision(4);
}

export function printTable(bench: string, rows: BenchRow[]): void {
  const header = ["name", "unit", "value", "peer", "peer_value", "ratio"];
  const cells = rows.map((r) => [
    r.name,
    r.unit,
    fmt(r.value),
    r.peer ?? "-",
    fmt(r.peer_value),
    r.ratio === null ? "-" : r.ratio.toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((s, i) => (i >= 2 ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join("  ");
  console.log(`\n== bench: ${bench} ==`);
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const c of cells) console.log(line(c));
}

/** The load average when this module was loaded (the start of the run). */
const LOAD_AVG_AT_START = loadavg();

export function writeResults(bench: string, rows: BenchRow[]): string {
  const dir = join(dirname(fileURLToPath(import.meta.url)), "results");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${bench}.json`);
  const load_avg = { start: LOAD_AVG_AT_START, end: loadavg() };
  writeFileSync(
    path,
    `${JSON.stringify(
      rows.map((r) => ({ ...r, load_avg })),
      null,
      2,
    )}\n`,
  );
  console.log(`load average (1/5/15 min): start ${fmtLoad(load_avg.start)}, end ${fmtLoad(load_avg.end)}`);
  return path;
}

function fmtLoad(l: number[]): string {
  return l.map((x) => x.toFixed(2)).join(" ");
}

/** Percentile of a sorted array of numbers. */
export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
