/**
 * Log serializers: what an error looks like in a log line. pino's standard `err` serializer
 * copies every enumerable property of an error as it is, so an error holding a live object
 * (a layer, and through it the whole page cache) turns one log line into megabytes. Errors
 * here must carry names and ids only; this serializer is the guard when one does not: it
 * keeps pino's type, message (with causes) and stack, and of the other properties only
 * primitives (long strings cut), plain objects and arrays of them, a few levels deep and a
 * few entries wide. Anything else (a class instance, a typed array, a buffer) is written as
 * its class name.
 *
 * Invariant: the serialized form of any value is bounded (MAX_DEPTH, MAX_ENTRIES,
 * MAX_STRING_CHARS), whatever the error holds.
 */
import { type Logger, stdSerializers } from "pino";

/** Nesting kept below an error's own properties. */
const MAX_DEPTH = 3;
/** Entries kept of one object or array (the rest are counted). */
const MAX_ENTRIES = 32;
/** Characters kept of one string property (message and stack are pino's, not cut). */
const MAX_STRING_CHARS = 2048;
/** Properties pino's serializer sets itself, kept as they are. */
const OWN_KEYS = new Set(["type", "message", "stack"]);

function className(v: object): string {
  const ctor = (v as { constructor?: { name?: unknown } }).constructor;
  return typeof ctor?.name === "string" && ctor.name !== "" ? ctor.name : "Object";
}

function isPlain(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** `v` reduced to primitives, plain objects and arrays, bounded in depth, width and string length. */
export function boundedValue(v: unknown, depth = 0): unknown {
  if (v === null || v === undefined || typeof v === "number" || typeof v === "boolean") return v;
  if (typeof v === "string") return v.length > MAX_STRING_CHARS ? `${v.slice(0, MAX_STRING_CHARS)}… (${v.length} chars)` : v;
  if (typeof v === "bigint") return v.toString();
  if (typeof v !== "object") return `[${typeof v}]`;
  if (v instanceof Error) return errorForLog(v, depth + 1);
  if (!Array.isArray(v) && !isPlain(v)) return `[${className(v)}]`;
  if (depth >= MAX_DEPTH) return Array.isArray(v) ? `[Array(${v.length})]` : "[Object]";
  if (Array.isArray(v)) {
    const out = v.slice(0, MAX_ENTRIES).map((x) => boundedValue(x, depth + 1));
    if (v.length > MAX_ENTRIES) out.push(`… ${v.length - MAX_ENTRIES} more`);
    return out;
  }
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, x] of Object.entries(v)) {
    if (n++ >= MAX_ENTRIES) {
      out["…"] = `${Object.keys(v).length - MAX_ENTRIES} more`;
      break;
    }
    out[k] = boundedValue(x, depth + 1);
  }
  return out;
}

/** An error as a log line holds it: pino's type, message and stack (with causes), and its other properties bounded. */
export function errorForLog(e: unknown, depth = 0): unknown {
  if (!(e instanceof Error)) return boundedValue(e, depth);
  const std = stdSerializers.err(e) as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = { type: std["type"], message: std["message"], stack: std["stack"] };
  if (depth >= MAX_DEPTH) return out;
  const errors: unknown = (e as { errors?: unknown }).errors;
  if (Array.isArray(errors)) out["aggregateErrors"] = boundedValue(errors, depth);
  let n = 0;
  // for…in as pino's own serializer: enumerable properties, inherited ones included.
  for (const k in e) {
    // The causes are in message and stack already.
    if (OWN_KEYS.has(k) || k === "cause" || k === "errors") continue;
    if (n++ >= MAX_ENTRIES) break;
    out[k] = boundedValue((e as unknown as Record<string, unknown>)[k], depth);
  }
  return out;
}

/** `log` with the bounded error serializer on `err` (children inherit it). */
export function withBoundedErrors(log: Logger): Logger {
  return log.child({}, { serializers: { err: errorForLog } });
}
