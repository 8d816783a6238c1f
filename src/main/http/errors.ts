/**
 * The HTTP error catalogue: every PageserverError code (src/types/errors.ts) and the status
 * it answers with, plus the JSON error body `{"error", "code"}` every non-2xx reply carries.
 * The table is total over ErrorCode: a new code without a status does not compile.
 * docs/http-api.md lists the same table for operators. Also what a 5xx reply may say: which
 * codes are known states (logged at INFO), and paths cut to their last component.
 */
import type { ErrorCode } from "../../types/errors.js";

const HTTP_STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  gc_cutoff: 406,
  conflict: 409,
  remote_storage_disabled: 409,
  payload_too_large: 413,
  uri_too_long: 414,
  unsupported: 422,
  source_unavailable: 422,
  limit_reached: 429,
  internal: 500,
  corrupt: 500,
  bad_state: 503,
  shutdown: 503,
  lsn_timeout: 504,
};

export function httpStatusFor(code: ErrorCode): number {
  return HTTP_STATUS[code];
}

/** Every code, in the catalogue's order (src/protocol/http_models.ts lists them in this order for the OpenAPI document). */
const ERROR_CODES = Object.keys(HTTP_STATUS) as ErrorCode[];

/** Every status an error can answer with, ascending. */
export const ERROR_STATUSES: readonly number[] = [...new Set(Object.values(HTTP_STATUS))].sort((a, b) => a - b);

/** The codes answering with `status` (the OpenAPI description of that response). */
export function codesFor(status: number): ErrorCode[] {
  return ERROR_CODES.filter((c) => HTTP_STATUS[c] === status);
}

/** 5xx codes that describe a known state rather than a failure (logged at INFO). */
export const EXPECTED_5XX: ReadonlySet<string> = new Set(["bad_state", "shutdown", "lsn_timeout"]);

/**
 * Absolute paths in a 5xx message (the workdir, temp dirs): each cut to `…/<its last
 * component>`, so a reply names the file (a layer, `metadata`) but never where the node keeps
 * its data. LSNs (`0/16B3748`) are not paths.
 */
export function redactPaths(message: string): string {
  return message.replace(/(?<![\w.~-])\/[^\s'"`,;()]+/g, (p) => `…/${p.slice(p.lastIndexOf("/") + 1)}`);
}
