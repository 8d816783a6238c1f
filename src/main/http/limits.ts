/**
 * The HTTP layer's bounds on what a client may send: body size, JSON nesting, URL length,
 * and the node-wide in-flight caps (node config http_max_inflight_*). Checked before a body is
 * read or parsed, so an oversized or hostile request costs no memory beyond its headers.
 */

export const MAX_BODY_BYTES = 1024 * 1024;
/** JSON nested deeper than this is refused (400) before it is parsed or validated. */
export const MAX_JSON_DEPTH = 64;
/**
 * Longest path + query we answer (414 above it). A request head past ~128 KiB is refused before
 * any handler runs: uWebSockets.js resets the connection, node:http (node_adapter.ts reads
 * heads up to 128 KiB to match) answers 431.
 */
export const MAX_URL_BYTES = 8 * 1024;

/** Node-wide bounds of the HTTP server (node config http_max_inflight_*). */
export interface HttpLimits {
  max_inflight_requests: number;
  max_inflight_body_bytes: number;
}

export const DEFAULT_LIMITS: HttpLimits = { max_inflight_requests: 1024, max_inflight_body_bytes: 64 * 1024 * 1024 };

/** Nesting depth of JSON text (brackets outside strings): linear, no recursion. */
export function jsonDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > max) max = depth;
      if (max > limit) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}
