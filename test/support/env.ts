/**
 * Test environment bookkeeping for the end-to-end tests (the role of Neon's env builder's
 * failure handling): every process a test starts registers its logs and data directories
 * here, and when a test fails they are copied to test_output/<file>/<test name>/ so the
 * failure can be read after the temp dirs are gone.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { afterEach } from "vitest";

const OUTPUT_ROOT = join(process.cwd(), "test_output");
/** Data directories larger than this are not copied (logs always are). */
const MAX_COPY_BYTES = 512 * 1024 * 1024;

export class TestEnv {
  private readonly artifacts = new Map<string, string>();

  constructor(readonly file: string) {
    afterEach((ctx) => {
      if (ctx.task.result?.state !== "fail") return;
      this.keep(ctx.task.name);
    });
  }

  /** Register a log file or data directory under a name. */
  add(name: string, path: string): void {
    this.artifacts.set(name, path);
  }

  keep(testName: string): string {
    const dir = join(OUTPUT_ROOT, basename(this.file).replace(/\W+/g, "_"), testName.replace(/\W+/g, "_").slice(0, 100));
    mkdirSync(dir, { recursive: true });
    for (const [name, path] of this.artifacts) {
      if (!existsSync(path)) continue;
      try {
        const st = statSync(path);
        if (st.isDirectory() && dirSize(path, MAX_COPY_BYTES) > MAX_COPY_BYTES) continue;
        cpSync(path, join(dir, name), { recursive: true });
      } catch {
        // best effort: a file that vanished meanwhile is not worth failing the report for
      }
    }
    return dir;
  }
}

function dirSize(path: string, limit: number): number {
  let total = 0;
  const stack = [path];
  while (stack.length > 0 && total <= limit) {
    const p = stack.pop()!;
    const st = statSync(p);
    if (st.isDirectory()) {
      for (const e of readdirSync(p)) stack.push(join(p, e));
    } else total += st.size;
  }
  return total;
}
