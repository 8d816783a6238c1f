/**
 * TenantId / TimelineId: 32 lower-case hex characters (16 random bytes). They become path
 * components, so every boundary (HTTP, CLI, directory scan) validates them with parse*.
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError } from "./errors.js";

export type TenantId = string & { readonly __brand: "TenantId" };
export type TimelineId = string & { readonly __brand: "TimelineId" };

const ID_RE = /^[0-9a-f]{32}$/;

export function isId(x: unknown): x is string {
  return typeof x === "string" && ID_RE.test(x);
}

export function parseTenantId(x: unknown): TenantId {
  if (!isId(x)) throw new InvalidArgumentError(`invalid tenant id ${quoteInput(x)}: expected 32 lower-case hex characters`);
  return x as TenantId;
}

export function parseTimelineId(x: unknown): TimelineId {
  if (!isId(x)) throw new InvalidArgumentError(`invalid timeline id ${quoteInput(x)}: expected 32 lower-case hex characters`);
  return x as TimelineId;
}

export function generateTenantId(): TenantId {
  return randomBytes(16).toString("hex") as TenantId;
}

export function generateTimelineId(): TimelineId {
  return randomBytes(16).toString("hex") as TimelineId;
}

/** Bad input quoted in an error message, cut to a readable length (a 100 kB id is not echoed). */
export function quoteInput(x: unknown, max_chars = 80): string {
  const q = JSON.stringify(x) ?? String(x);
  return q.length <= max_chars ? q : `${q.slice(0, max_chars)}… (${q.length} characters)`;
}
