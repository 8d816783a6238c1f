/**
 * The file in which a base backup names its user tablespaces' original locations,
 * `pageserver_tablespaces.json` at the top of the data directory (PostgreSQL ignores files it
 * does not know there). Written by src/pgdata/basebackup.ts, read by `pagectl endpoint start
 * --tablespace-mapping OLD=NEW` (src/cli/endpoint.ts) to find OLD; here because both sides
 * need it and neither may import the other.
 *
 * Format: JSON, `[{"oid": 16390, "location": ""}, …]`, ascending by OID; location "" for an
 * in-place tablespace (created with allow_in_place_tablespaces), else the absolute LOCATION
 * it was created with.
 */
import { InvalidArgumentError } from "./errors.js";

export const TABLESPACES_FILE = "pageserver_tablespaces.json";

export interface TablespaceEntry {
  oid: number;
  location: string;
}

export function encodeTablespacesFile(entries: readonly TablespaceEntry[]): string {
  return `${JSON.stringify(entries.map((e) => ({ oid: e.oid, location: e.location })))}\n`;
}

/** Parse the file; anything but the format above is an InvalidArgumentError. */
export function parseTablespacesFile(text: string): TablespaceEntry[] {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw new InvalidArgumentError(`${TABLESPACES_FILE} is not JSON`);
  }
  if (!Array.isArray(j)) throw new InvalidArgumentError(`${TABLESPACES_FILE} is not a list`);
  return j.map((e: unknown) => {
    const o = e as Partial<TablespaceEntry> | null;
    if (o === null || typeof o !== "object" || !Number.isInteger(o.oid) || typeof o.location !== "string") {
      throw new InvalidArgumentError(`${TABLESPACES_FILE}: bad entry ${JSON.stringify(e)}`);
    }
    return { oid: o.oid as number, location: o.location };
  });
}
