/**
 * The pageserver as a separate process (`node --import tsx src/main/pageserver.ts`), for
 * tests that kill and restart it. Logs go to <workdir>/../pageserver.log (appended across
 * restarts) so a failing test can show them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const ENTRY = fileURLToPath(new URL("../../src/main/pageserver.ts", import.meta.url));
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

export class PageserverProcess {
  readonly workdir: string;
  readonly port: number;
  readonly logFile: string;
  private child: ChildProcess | null = null;
  /**
   * Flags after the workdir and listen addresses. Test PostgreSQL data directories live in
   * the temp directory: that is the import root. Tests that use failpoints add --enable-failpoints.
   */
  readonly extraArgs: string[] = ["--import-pgdata-root", tmpdir()];

  constructor(workdir: string, port: number, logFile: string) {
    this.workdir = workdir;
    this.port = port;
    this.logFile = logFile;
  }

  /** The running process's pid (null before start). */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Start and wait until /v1/status answers. `env`: extra environment (e.g. FAILPOINTS). */
  async start(timeout_ms = 30_000, env: Record<string, string> = {}): Promise<void> {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        ENTRY,
        "--workdir",
        this.workdir,
        "--listen",
        `127.0.0.1:${this.port}`,
        "--listen-pg",
        "127.0.0.1:0",
        ...this.extraArgs,
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ...env },
      },
    );
    live.add(child);
    this.child = child;
    child.stdout!.on("data", (d: Buffer) => appendFileSync(this.logFile, d));
    child.stderr!.on("data", (d: Buffer) => appendFileSync(this.logFile, d));
    child.on("exit", () => live.delete(child));
    const deadline = Date.now() + timeout_ms;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`pageserver exited with ${child.exitCode}: ${this.logTail()}`);
      try {
        const r = await fetch(`${this.url}/v1/status`);
        if (r.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`pageserver did not start: ${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Wait until the process exits by itself (e.g. an `exit` failpoint); its exit code. */
  async waitExit(timeout_ms = 30_000): Promise<number | null> {
    const c = this.child;
    if (c === null) throw new Error("pageserver was never started");
    if (c.exitCode !== null || c.signalCode !== null) return c.exitCode;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`pageserver did not exit within ${timeout_ms} ms: ${this.logTail()}`)), timeout_ms);
      // "close": the exit, and the last of its output is in the log file.
      c.once("close", (code) => {
        clearTimeout(t);
        resolve(code);
      });
    });
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<void> {
    const c = this.child;
    // Already gone (exited, or killed by a signal): nothing to wait for.
    if (c === null || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM; resolves with the exit code. */
  async stop(timeout_ms = 30_000): Promise<number | null> {
    const c = this.child;
    if (c === null || c.exitCode !== null || c.signalCode !== null) return c?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => c.once("exit", (code) => r(code)));
    c.kill("SIGTERM");
    const t = setTimeout(() => c.kill("SIGKILL"), timeout_ms);
    const code = await exited;
    clearTimeout(t);
    return code;
  }

  logTail(n = 4000): string {
    try {
      return readFileSync(this.logFile, "utf8").slice(-n);
    } catch {
      return "";
    }
  }
}
