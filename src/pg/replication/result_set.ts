/**
 * Result sets of simple-protocol replication commands (IDENTIFY_SYSTEM, READ_REPLICATION_SLOT,
 * SHOW, the end-of-timeline row of START_REPLICATION, BASE_BACKUP's rows) and typed reads of
 * their cells.
 *
 * Owns: ResultSet and the cell readers.
 *
 * Invariants: a cell reader reads a one-row result set only; a missing column, a wrong row
 * count or a cell that does not parse as asked is a "protocol" ReplicationError naming the
 * command (`context`), never a default value.
 */
import { type Lsn, parseLsn } from "../../types/lsn.js";
import { ReplicationError } from "./errors.js";

/** One result set of a simple-protocol command: column names and text values. */
export interface ResultSet {
  columns: string[];
  rows: (string | null)[][];
}

export function cell(rs: ResultSet | undefined, column: string, context: string): string | null {
  if (rs === undefined || rs.rows.length !== 1) throw new ReplicationError("protocol", `${context}: expected one row`);
  const i = rs.columns.indexOf(column);
  if (i < 0) throw new ReplicationError("protocol", `${context}: no column ${column}`);
  return rs.rows[0]![i] ?? null;
}

export function requireCell(rs: ResultSet | undefined, column: string, context: string): string {
  const v = cell(rs, column, context);
  if (v === null) throw new ReplicationError("protocol", `${context}: ${column} is NULL`);
  return v;
}

export function lsnCell(text: string, context: string): Lsn {
  try {
    return parseLsn(text);
  } catch (e) {
    throw new ReplicationError("protocol", `${context}: bad LSN '${text}'`, { cause: e });
  }
}

export function intCell(text: string, context: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new ReplicationError("protocol", `${context}: bad integer '${text}'`);
  return n;
}
