/**
 * Progress on stderr (cli-progress) for long work: bytes of a download (with a bar when the
 * total is known) and a ticking elapsed time while a long request runs (an import). Shown when
 * stderr is a terminal or `--progress` asks for it; never on stdout, which may carry the
 * result. Off a terminal cli-progress redraws on its own schedule, one line per redraw.
 */
import cliProgress from "cli-progress";
import { formatBytes } from "./table.js";

/** Redraws per second off a terminal are few: a log, not an animation. */
const NOT_TTY_SCHEDULE_MS = 500;

export function progressWanted(flag: boolean | undefined): boolean {
  return flag === true || process.stderr.isTTY === true;
}

export interface ByteProgress {
  add(n_bytes: number): void;
  stop(): void;
}

const NOOP: ByteProgress = { add: () => undefined, stop: () => undefined };

/** Bytes received so far (of `total_bytes` when known), with throughput. */
export function byteProgress(enabled: boolean, label: string, total_bytes: number | null): ByteProgress {
  if (!enabled) return NOOP;
  const known = total_bytes !== null && total_bytes > 0;
  const bar = new cliProgress.SingleBar({
    format: known ? `${label} [{bar}] {percentage}% {done} / {all} {rate}` : `${label} {done} {rate} {duration}s`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: NOT_TTY_SCHEDULE_MS,
    hideCursor: null,
  });
  const start_ms = performance.now();
  let value = 0;
  const payload = (): Record<string, string> => {
    const secs = Math.max((performance.now() - start_ms) / 1000, 0.001);
    return { done: formatBytes(value), all: known ? formatBytes(total_bytes) : "?", rate: `${formatBytes(Math.round(value / secs))}/s` };
  };
  bar.start(known ? total_bytes : 1, 0, payload());
  return {
    add(n: number): void {
      value += n;
      bar.update(known ? Math.min(value, total_bytes) : 0, payload());
    },
    stop(): void {
      bar.update(known ? Math.min(value, total_bytes) : 0, payload());
      bar.stop();
    },
  };
}

/** Run `work` while a line shows `label` and the seconds it has taken. */
export async function withElapsed<T>(enabled: boolean, label: string, work: () => Promise<T>): Promise<T> {
  if (!enabled) return await work();
  const bar = new cliProgress.SingleBar({
    format: `${label} … {duration}s`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: NOT_TTY_SCHEDULE_MS,
    hideCursor: null,
  });
  bar.start(1, 0);
  const tick = setInterval(() => bar.update(0), 1000);
  try {
    return await work();
  } finally {
    clearInterval(tick);
    bar.stop();
  }
}
