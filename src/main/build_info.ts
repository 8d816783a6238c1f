/**
 * Build info: the version from package.json and the git commit, found once per process (at
 * startup, never per request). The commit comes from the GIT_VERSION environment variable
 * (set by a packager that builds outside a git checkout), else from `git rev-parse HEAD` in
 * the package directory, else "unknown".
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface BuildInfo {
  version: string;
  git_commit: string;
}

/** src/main and dist/src/main sit two and three levels below the package directory. */
const MAX_PARENT_LEVELS = 6;
const GIT_TIMEOUT_MS = 5_000;

let cached: BuildInfo | null = null;

function packageDir(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < MAX_PARENT_LEVELS; i++) {
    const p = join(dir, "package.json");
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, "utf8")) as { name?: unknown };
      if (pkg.name === "pageserver") return dir;
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return null;
}

function gitCommit(dir: string | null): string {
  const env = process.env["GIT_VERSION"]?.trim();
  if (env !== undefined && env !== "") return env.slice(0, 100);
  if (dir === null) return "unknown";
  const r = spawnSync("git", ["rev-parse", "HEAD"], {
    cwd: dir,
    encoding: "utf8",
    timeout: GIT_TIMEOUT_MS,
    stdio: ["ignore", "pipe", "ignore"],
  });
  const out = typeof r.stdout === "string" ? r.stdout.trim() : "";
  return r.status === 0 && /^[0-9a-f]{40}$/.test(out) ? out : "unknown";
}

export function buildInfo(): BuildInfo {
  if (cached !== null) return cached;
  const dir = packageDir();
  let version = "unknown";
  if (dir !== null) {
    const v = (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version?: unknown }).version;
    if (typeof v === "string") version = v;
  }
  cached = { version, git_commit: gitCommit(dir) };
  return cached;
}

/** What `pageserver --version` prints. */
export function versionLine(): string {
  const b = buildInfo();
  return `pageserver ${b.version} (${b.git_commit})`;
}
