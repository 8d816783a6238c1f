/**
 * Log checking for tests: a Server's pino output is captured (in-process: a pino logger
 * writing into memory; a process: its log file) and parsed as JSON lines, and a test fails
 * when a line at WARN (40) or above appears that its allow-list (regexes on `msg`) does not
 * expect. A warning nobody provoked on purpose is a bug the test would otherwise hide.
 *
 * Usage:
 *   const logs = new LogCapture();
 *   const server = new Server(config, logs.logger);
 *   …
 *   logs.expectClean([/could not compute the logical size/]); // in afterAll / at the end
 *
 * Lines are kept up to MAX_LINES; beyond it only their count and any unexpected ones are kept.
 */
import { readFileSync } from "node:fs";
import { type Logger, pino } from "pino";
import { expect } from "vitest";

export interface LogLine {
  level: number;
  msg: string;
  /** The whole parsed object (err, tenant_id, …). */
  raw: Record<string, unknown>;
}

export const WARN = 40;
const MAX_LINES = 100_000;
/** Unexpected lines shown in a failure message at most. */
const MAX_SHOWN = 20;

/** Parse pino's JSON lines; a line that isn't JSON (a stack trace, a child's stderr) is level 0. */
export function parseLogLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let raw: Record<string, unknown>;
    try {
      const v: unknown = JSON.parse(line);
      if (typeof v !== "object" || v === null || Array.isArray(v)) continue;
      raw = v as Record<string, unknown>;
    } catch {
      continue;
    }
    const level = typeof raw["level"] === "number" ? raw["level"] : 0;
    out.push({ level, msg: typeof raw["msg"] === "string" ? raw["msg"] : "", raw });
  }
  return out;
}

/** Lines at WARN or above whose msg matches none of `allow`. */
export function unexpectedWarnings(lines: readonly LogLine[], allow: readonly RegExp[]): LogLine[] {
  return lines.filter((l) => l.level >= WARN && !allow.some((re) => re.test(l.msg)));
}

function describe(lines: readonly LogLine[]): string {
  const shown = lines.slice(0, MAX_SHOWN).map((l) => JSON.stringify(l.raw).slice(0, 2000));
  const more = lines.length > MAX_SHOWN ? `\n… and ${lines.length - MAX_SHOWN} more` : "";
  return `unexpected log lines at WARN or above:\n${shown.join("\n")}${more}`;
}

/** Fail the test when `lines` hold a WARN+ line that `allow` does not expect. */
export function expectNoUnexpectedWarnings(lines: readonly LogLine[], allow: readonly RegExp[] = []): void {
  const bad = unexpectedWarnings(lines, allow);
  expect(bad, describe(bad)).toEqual([]);
}

/** The same for a log file (test/support/pageserver_process.ts writes one per process). */
export function expectLogFileClean(path: string, allow: readonly RegExp[] = []): void {
  expectNoUnexpectedWarnings(parseLogLines(readFileSync(path, "utf8")), allow);
}

/** An in-memory pino destination and a logger writing to it. */
export class LogCapture {
  readonly logger: Logger;
  private readonly kept: LogLine[] = [];
  /** Lines beyond MAX_LINES that were at WARN or above (never dropped). */
  private readonly overflowWarnings: LogLine[] = [];
  private total = 0;
  private partial = "";

  constructor(level = "info") {
    // pino writes whole lines to a destination with write(); synchronous, so nothing is lost
    // at the end of a test.
    this.logger = pino({ level }, { write: (chunk: string) => this.onChunk(chunk) });
  }

  private onChunk(chunk: string): void {
    const text = this.partial + chunk;
    const end = text.lastIndexOf("\n");
    this.partial = end < 0 ? text : text.slice(end + 1);
    if (end < 0) return;
    for (const l of parseLogLines(text.slice(0, end))) {
      this.total++;
      if (this.kept.length < MAX_LINES) this.kept.push(l);
      else if (l.level >= WARN && this.overflowWarnings.length < MAX_LINES) this.overflowWarnings.push(l);
    }
  }

  /** The lines captured so far (up to MAX_LINES, then only warnings). */
  get lines(): LogLine[] {
    return [...this.kept, ...this.overflowWarnings];
  }

  get count(): number {
    return this.total;
  }

  /** Lines whose msg matches `re`. */
  find(re: RegExp): LogLine[] {
    return this.lines.filter((l) => re.test(l.msg));
  }

  expectClean(allow: readonly RegExp[] = []): void {
    expectNoUnexpectedWarnings(this.lines, allow);
  }
}
