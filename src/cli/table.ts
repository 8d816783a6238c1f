/**
 * Tables for humans: aligned columns with a header row, no dependency. Cells are strings; a
 * null or undefined value prints as "-". Numbers are right-aligned, everything else left.
 * Invariant: every row has one cell per column (missing fields print as "-").
 */

export interface Column<T> {
  header: string;
  value: (row: T) => unknown;
  /** Right-align (numbers, sizes). */
  right?: boolean;
}

export function cellText(v: unknown): string {
  if (v === null || v === undefined) return "-";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

/** Rows under a header, columns padded to their widest cell, separated by two spaces. */
export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => cellText(c.value(r))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: readonly string[]): string =>
    row
      .map((cell, i) => (columns[i]!.right ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join("\n");
}

/** A record as "key  value" lines, keys aligned (one object shown to a human). */
export function formatRecord(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj);
  const width = Math.max(0, ...keys.map((k) => k.length));
  return keys.map((k) => `${k.padEnd(width)}  ${cellText(obj[k])}`).join("\n");
}

/** Bytes as a human size: 8192 → "8.0 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
