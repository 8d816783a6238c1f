/**
 * Build info: `pageserver --version` (a spawned process) prints the package version and the
 * git commit (GIT_VERSION overrides `git rev-parse HEAD`); GET /v1/status returns version,
 * git_commit and started_at; the startup log line and pageserver_build_info carry the same.
 * Also the log checker itself: it catches a warning nobody allowed.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { LogCapture, unexpectedWarnings } from "./support/log_check.js";
import { uwsUnavailable } from "../src/main/http/adapter_choice.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

/** What the pageserver should find as its commit in this checkout (the same rule, done here). */
function expectedCommit(): string {
  const env = process.env["GIT_VERSION"]?.trim();
  if (env !== undefined && env !== "") return env;
  const r = spawnSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "unknown";
}

function runVersion(env: Record<string, string | undefined>): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, ["--import", "tsx", "src/main/pageserver.ts", "--version"], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 20_000,
    env: { ...process.env, ...env },
  });
}

const logs = new LogCapture();
let dir = "";
let server: Server | null = null;
let base = "";
let startedBefore = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ps-version-"));
  startedBefore = Date.now();
  server = new Server(loadNodeConfig({ workdir: dir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), logs.logger);
  base = `http://127.0.0.1:${await server.start()}`;
});

afterAll(async () => {
  if (server !== null) await server.stop();
  rmSync(dir, { recursive: true, force: true });
  logs.expectClean();
});

describe("pageserver --version", () => {
  it("prints the package version and the git commit of the checkout, and exits 0", () => {
    const r = runVersion({ GIT_VERSION: undefined });
    expect(r.status, r.stderr).toBe(0);
    const head = spawnSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" });
    const commit = head.status === 0 ? head.stdout.trim() : "unknown";
    expect(r.stdout).toBe(`pageserver ${VERSION} (${commit})\n`);
  });

  it("GIT_VERSION overrides the commit", () => {
    const r = runVersion({ GIT_VERSION: "0123abcd-custom" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`pageserver ${VERSION} (0123abcd-custom)\n`);
    expect(runVersion({ GIT_VERSION: "v9" }).stdout).toBe(`pageserver ${VERSION} (v9)\n`);
  });
});

describe("build info of a running server", () => {
  it("GET /v1/status returns version, git_commit, started_at and the HTTP server", async () => {
    const r = await fetch(`${base}/v1/status`);
    expect(r.status).toBe(200);
    const j = (await r.json()) as Record<string, unknown>;
    expect(Object.keys(j).sort()).toEqual(["git_commit", "http_server", "started_at", "status", "tls", "version"]);
    // http_server auto: uWS where it loads, else node:http.
    expect(j["http_server"]).toBe(uwsUnavailable() === null ? "uws" : "node");
    expect(j).toMatchObject({ status: "ok", version: VERSION, git_commit: expectedCommit() });
    const started = Date.parse(String(j["started_at"]));
    expect(started).toBeGreaterThanOrEqual(startedBefore - 1000);
    expect(started).toBeLessThanOrEqual(Date.now());
  });

  it("the startup log line and pageserver_build_info carry them too", async () => {
    const line = logs.find(/^pageserver starting$/);
    expect(line.length).toBe(1);
    expect(line[0]!.raw).toMatchObject({ version: VERSION, git_commit: expectedCommit(), failpoints: {} });
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toContain(`pageserver_build_info{version="${VERSION}",revision="${expectedCommit()}"} 1\n`);
  });
});

describe("the log checker", () => {
  it("flags WARN and above unless allowed; lower levels never", () => {
    const c = new LogCapture("debug");
    c.logger.debug("debug line");
    c.logger.info("info line");
    c.logger.warn({ detail: 1 }, "something odd");
    c.logger.error("something broke");
    c.logger.fatal("the end");
    expect(c.count).toBe(5);
    expect(unexpectedWarnings(c.lines, []).map((l) => l.msg)).toEqual(["something odd", "something broke", "the end"]);
    expect(unexpectedWarnings(c.lines, [/^something /]).map((l) => l.msg)).toEqual(["the end"]);
    expect(() => c.expectClean([/^something odd$/])).toThrow(/unexpected log lines at WARN or above:[\s\S]*something broke/);
    c.expectClean([/^something /, /^the end$/]);
  });
});
