/**
 * An S3 endpoint for tests: s3rver (an S3 clone on the local filesystem) in a child process
 * (test/support/s3rver_child.ts says why), on 127.0.0.1 with a free port and a temp directory,
 * one bucket created at start. stop() kills it (SIGKILL: every connection drops, as when an
 * endpoint crashes); start() again serves the same data on the same port.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const CHILD = resolve(import.meta.dirname, "s3rver_child.ts");
const START_TIMEOUT_MS = 60_000;

export const S3RVER_KEY = "S3RVER";

export class TestS3 {
  readonly dir = mkdtempSync(join(tmpdir(), "s3rver-"));
  port = 0;
  private child: ChildProcess | null = null;

  constructor(readonly bucket = "test-bucket") {
    // The SDK's default credential chain reads these; they are s3rver's fixed defaults.
    process.env["AWS_ACCESS_KEY_ID"] = S3RVER_KEY;
    process.env["AWS_SECRET_ACCESS_KEY"] = S3RVER_KEY;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The remote storage URL of a prefix in the bucket. */
  url(prefix: string): string {
    return `s3://${this.bucket}/${prefix}?endpoint=${encodeURIComponent(this.endpoint)}&region=us-east-1`;
  }

  async start(): Promise<void> {
    if (this.child !== null) return;
    const child = spawn(
      process.execPath,
      ["--openssl-legacy-provider", "--import", "tsx", CHILD, this.dir, String(this.port), this.bucket],
      {
        stdio: ["pipe", "pipe", "inherit"],
      },
    );
    this.child = child;
    this.port = await new Promise<number>((res, rej) => {
      let out = "";
      const timer = setTimeout(() => rej(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /listening (\d+)/.exec(out);
        if (m !== null) {
          clearTimeout(timer);
          res(Number(m[1]));
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        rej(new Error(`s3rver exited with ${code} before listening: ${out}`));
      });
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((res) => {
      child.once("exit", () => res());
      child.kill("SIGKILL");
    });
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
