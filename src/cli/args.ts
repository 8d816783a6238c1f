/**
 * Parsing and checking of pagectl's own arguments (ids, LSNs, times, relations, key=value
 * settings). A bad argument is a UsageError (exit 2) naming the argument, raised before any
 * request is sent.
 */
import { isId } from "../types/ids.js";
import { lsnToString, parseLsn } from "../types/lsn.js";

/** A mistake in the command line: pagectl prints it and exits with 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export function argId(what: string, x: string): string {
  if (!isId(x)) throw new UsageError(`invalid ${what} '${x}': expected 32 lower-case hex characters`);
  return x;
}

/** A tenant or timeline named on the command line: by id, or by its name (resolved through the list). */
export type Ref = { id: string; name?: undefined } | { id?: undefined; name: string };

const NAME_RE = /^[A-Za-z0-9_.-]{1,63}$/;

/** An id, or a name (1..63 of A-Z a-z 0-9 _ . -): checked here, resolved later (Cli.tenantId / timelineId). */
export function argRef(what: string, x: string): Ref {
  if (isId(x)) return { id: x };
  if (NAME_RE.test(x)) return { name: x };
  throw new UsageError(`invalid ${what} '${x}': expected an id (32 lower-case hex characters) or a name (1..63 of A-Z a-z 0-9 _ . -)`);
}

/** A new name (tenant create --name, timeline create/branch --name, rename). */
export function argName(what: string, x: string): string {
  if (!NAME_RE.test(x) || isId(x)) throw new UsageError(`invalid ${what} '${x}': expected 1..63 of A-Z a-z 0-9 _ . - (not an id)`);
  return x;
}

/** An LSN argument, normalized to PostgreSQL's form (upper-case hex). */
export function argLsn(what: string, x: string): string {
  try {
    return lsnToString(parseLsn(x));
  } catch {
    throw new UsageError(`invalid ${what} '${x}': expected an LSN like 0/16B3748`);
  }
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * A point in time as RFC 3339. An RFC 3339 argument is passed on as written (it may carry
 * microseconds, which a JS Date would cut); "now" and other forms Date.parse reads are
 * converted (milliseconds, UTC).
 */
export function argTime(what: string, x: string): string {
  if (RFC3339_RE.test(x)) return x.replace(" ", "T");
  const ms = x === "now" ? Date.now() : Date.parse(x);
  if (!Number.isFinite(ms)) throw new UsageError(`invalid ${what} '${x}': expected an RFC 3339 time like 2026-01-02T03:04:05Z`);
  return new Date(ms).toISOString();
}

export function argInt(what: string, x: string, min: number, max: number): number {
  if (!/^\d+$/.test(x)) throw new UsageError(`invalid ${what} '${x}': expected an integer`);
  const n = Number(x);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`invalid ${what} '${x}': expected ${min}..${max}`);
  return n;
}

/** "host:port" (an IPv6 host in brackets). */
export function argHostPort(what: string, x: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(x);
  if (m === null) throw new UsageError(`invalid ${what} '${x}': expected host:port`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port: argInt(`${what} port`, m[2]!, 1, 65535) };
}

export interface RelArg {
  spcnode: number;
  dbnode: number;
  relnode: number;
  forknum: number;
}

const FORKS: Record<string, number> = { main: 0, fsm: 1, vm: 2, init: 3 };

/** "spc/db/rel[.fork]" with fork main (default), fsm, vm, init or its number 0..3. */
export function argRel(x: string): RelArg {
  const m = /^(\d+)\/(\d+)\/(\d+)(?:\.(\w+))?$/.exec(x);
  if (m === null) throw new UsageError(`invalid relation '${x}': expected spcnode/dbnode/relnode[.fork], e.g. 1663/5/16384.main`);
  const oid = (s: string): number => argInt("relation oid", s, 0, 0xffff_ffff);
  const fork = m[4] === undefined ? 0 : (FORKS[m[4]] ?? (/^[0-3]$/.test(m[4]) ? Number(m[4]) : undefined));
  if (fork === undefined) throw new UsageError(`invalid fork '${m[4]}': expected main, fsm, vm, init or 0..3`);
  return { spcnode: oid(m[1]!), dbnode: oid(m[2]!), relnode: oid(m[3]!), forknum: fork };
}

/** Settings "k=v": a value that reads as JSON (numbers, true/false, null) is that, else a string. */
export function argSettings(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const eq = p.indexOf("=");
    if (eq <= 0) throw new UsageError(`invalid setting '${p}': expected key=value`);
    const k = p.slice(0, eq);
    const v = p.slice(eq + 1);
    let value: unknown = v;
    if (/^(-?\d+(\.\d+)?|true|false|null)$/.test(v)) value = JSON.parse(v) as unknown;
    out[k] = value;
  }
  return out;
}
