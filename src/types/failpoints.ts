/**
 * Failpoints: named places in the code where a test (or an operator reproducing a bug) makes
 * the process fail on purpose. Set at startup with FAILPOINTS="name=action;name2=action" and
 * at runtime with PUT /v1/failpoints (Neon's body shape).
 *
 * Actions: `return` (the instrumented operation fails with a FailpointError naming the
 * failpoint), `exit` (the process exits at once with code 1: a crash at that point, with no
 * flush and no cleanup), `sleep(ms)` (the operation waits, then goes on), `off`.
 *
 * Invariants: only names of the catalogue below can be set (an unknown name is refused, so a
 * typo can't silently test nothing); a configuration is validated whole before any of it
 * applies. The registry is per thread: it lives on the main thread, where every failpoint of
 * the catalogue is checked. Worker threads have their own (empty) copy and never see runtime
 * changes, so no failpoint sits inside a worker job. It is per process, not per Server: tests
 * that run several Servers in one process share it and must clear what they set.
 */
import { InvalidArgumentError, PageserverError } from "./errors.js";

export const FAILPOINTS = {
  "flush-before-layer-map": "a frozen layer was written to an L0 file, which is not yet in the layer map",
  "compact-before-map-swap": "a compaction job wrote its L1 files; the layer map still holds the L0 files",
  "gc-before-delete": "GC recorded its new cutoff and is about to drop layers from the map and delete their files",
  "basebackup-start": "a base backup is requested (HTTP or page service), before anything is read",
  "walreceiver-before-ingest": "a message of WAL from the source arrived and is about to be decoded and ingested",
  "tenant-load": "a tenant is about to load its timelines from disk at startup",
  "remote-upload-layer": "an upload queue is about to put a layer file's object (each attempt)",
  "remote-upload-index": "an upload queue is about to put an index_part.json (each attempt)",
  "remote-delete-layers": "an upload queue checked generations and is about to delete layer objects (each attempt)",
  "remote-delete-timeline": "a deleted timeline's index objects left the bucket; its layer objects are about to",
  "remote-attach-timeline": "an attach (marker written) is about to download the next timeline's index and metadata",
  "remote-download-layer": "a layer download wrote the object to its temp file, before the fsync and the rename into place",
} as const;

export type FailpointName = keyof typeof FAILPOINTS;

export type FailpointAction = { kind: "off" } | { kind: "return" } | { kind: "exit" } | { kind: "sleep"; ms: number };

/** sleep(ms) longer than this is refused: a failpoint that hangs a test for hours is a typo. */
const MAX_SLEEP_MS = 600_000;
/** A FAILPOINTS spec or a PUT body names at most this many entries. */
const MAX_ENTRIES = 64;

export class FailpointError extends PageserverError {
  readonly failpoint: FailpointName;
  constructor(name: FailpointName) {
    super("internal", `failpoint '${name}' returned an error`);
    this.failpoint = name;
  }
}

const armed = new Map<FailpointName, FailpointAction>();

export function isFailpointName(name: string): name is FailpointName {
  return Object.hasOwn(FAILPOINTS, name);
}

function parseName(name: string): FailpointName {
  if (!isFailpointName(name)) {
    throw new InvalidArgumentError(`unknown failpoint '${name.slice(0, 100)}': known failpoints are ${Object.keys(FAILPOINTS).join(", ")}`);
  }
  return name;
}

export function parseFailpointAction(s: string): FailpointAction {
  const a = s.trim();
  if (a === "off" || a === "return" || a === "exit") return { kind: a };
  const m = /^sleep\((\d{1,9})\)$/.exec(a);
  if (m !== null) {
    const ms = Number(m[1]);
    if (ms > MAX_SLEEP_MS) throw new InvalidArgumentError(`failpoint action '${a}': sleep is at most ${MAX_SLEEP_MS} ms`);
    return { kind: "sleep", ms };
  }
  throw new InvalidArgumentError(`invalid failpoint action '${a.slice(0, 100)}': expected return, exit, sleep(<ms>) or off`);
}

export function formatFailpointAction(a: FailpointAction): string {
  return a.kind === "sleep" ? `sleep(${a.ms})` : a.kind;
}

export interface FailpointSetting {
  name: FailpointName;
  action: FailpointAction;
}

/** Parse a FAILPOINTS value: `name=action` entries separated by `;` (empty entries are skipped). */
export function parseFailpointSpec(spec: string): FailpointSetting[] {
  const out: FailpointSetting[] = [];
  for (const part of spec.split(";")) {
    if (part.trim() === "") continue;
    if (out.length >= MAX_ENTRIES) throw new InvalidArgumentError(`FAILPOINTS names more than ${MAX_ENTRIES} failpoints`);
    const eq = part.indexOf("=");
    if (eq < 0) throw new InvalidArgumentError(`invalid FAILPOINTS entry '${part.trim().slice(0, 100)}': expected name=action`);
    out.push({ name: parseName(part.slice(0, eq).trim()), action: parseFailpointAction(part.slice(eq + 1)) });
  }
  return out;
}

/** Parse Neon's PUT /v1/failpoints body: `[{"name": "...", "actions": "return"}]`. */
export function parseFailpointConfig(body: unknown): FailpointSetting[] {
  if (!Array.isArray(body)) throw new InvalidArgumentError('failpoints body must be an array of {"name", "actions"}');
  if (body.length > MAX_ENTRIES) throw new InvalidArgumentError(`at most ${MAX_ENTRIES} failpoints at once`);
  return body.map((e: unknown) => {
    if (typeof e !== "object" || e === null || Array.isArray(e))
      throw new InvalidArgumentError('each failpoint must be an object {"name", "actions"}');
    const { name, actions } = e as Record<string, unknown>;
    if (typeof name !== "string") throw new InvalidArgumentError("failpoint name must be a string");
    if (typeof actions !== "string") throw new InvalidArgumentError(`failpoint '${name.slice(0, 100)}': actions must be a string`);
    return { name: parseName(name), action: parseFailpointAction(actions) };
  });
}

/** Apply settings (already validated as a whole): `off` removes a failpoint. */
export function applyFailpoints(settings: readonly FailpointSetting[]): void {
  for (const s of settings) {
    if (s.action.kind === "off") armed.delete(s.name);
    else armed.set(s.name, s.action);
  }
}

/** The failpoints set now, name → action. */
export function activeFailpoints(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, action] of armed) out[name] = formatFailpointAction(action);
  return out;
}

export function clearFailpoints(): void {
  armed.clear();
}

function exitNow(name: FailpointName): never {
  process.stderr.write(`failpoint '${name}': exit\n`);
  process.exit(1);
}

/**
 * Check failpoint `name` on an async path: `await failpoint(name)`. Nothing set: returns
 * undefined (no promise made). `return` throws, `sleep` resolves after the delay.
 */
export function failpoint(name: FailpointName): Promise<void> | undefined {
  if (armed.size === 0) return undefined;
  const a = armed.get(name);
  if (a === undefined) return undefined;
  switch (a.kind) {
    case "return":
      return Promise.reject(new FailpointError(name));
    case "exit":
      return exitNow(name);
    case "sleep":
      return new Promise((resolve) => setTimeout(resolve, a.ms));
    case "off":
      return undefined;
  }
}

let sleepWord: Int32Array | null = null;

/** Check failpoint `name` on a synchronous path; `sleep` blocks the thread (Atomics.wait). */
export function failpointSync(name: FailpointName): void {
  if (armed.size === 0) return;
  const a = armed.get(name);
  if (a === undefined) return;
  switch (a.kind) {
    case "return":
      throw new FailpointError(name);
    case "exit":
      exitNow(name);
      break;
    case "sleep":
      sleepWord ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(sleepWord, 0, 0, a.ms);
      break;
    case "off":
      break;
  }
}
