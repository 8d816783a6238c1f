/**
 * A new tenant or timeline directory is durable in its parent (issue 16, "Smaller"): the
 * pageserver runs under strace, and after the mkdir of `tenants/<id>` the directory
 * `tenants/` is opened and fsynced (likewise `timelines/` after `timelines/<id>`), before
 * the creation answers. Without the parent's fsync a crash can lose the new directory's
 * entry while the client was told 201. strace is the only way to see an fsync from outside;
 * .ci/run installs it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { freePort } from "./support/backup_server.js";

const ENTRY = fileURLToPath(new URL("../src/main/pageserver.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "ps-dirfsync-"));
const workdir = join(dir, "work");
const traceFile = join(dir, "trace.txt");
let child: ChildProcess | null = null;

afterAll(() => {
  if (child !== null && child.exitCode === null) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** One syscall: name, its first argument (path or fd) and its result. */
interface Call {
  name: string;
  arg: string;
  result: string;
}

/**
 * strace -f output in completion order, "<unfinished ...>" and "<... resumed>" halves joined
 * (per thread id).
 */
function parseTrace(text: string): Call[] {
  const pending = new Map<string, string>();
  const calls: Call[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const [, tid, rest] = m as unknown as [string, string, string];
    let full: string;
    if (rest.endsWith("<unfinished ...>")) {
      pending.set(tid, rest.slice(0, -"<unfinished ...>".length));
      continue;
    }
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(rest);
    if (resumed !== null) {
      full = (pending.get(tid) ?? "") + resumed[1];
      pending.delete(tid);
    } else full = rest;
    const c = /^(\w+)\((?:AT_FDCWD, )?("(?:[^"\\]|\\.)*"|\d+)[^)]*\)\s*=\s*(-?\d+)/.exec(full);
    if (c === null) continue;
    calls.push({ name: c[1]!, arg: c[2]!.replace(/^"|"$/g, ""), result: c[3]! });
  }
  return calls;
}

/** Whether `parent` is opened and that fd fsynced after the mkdir of `child`. */
function parentFsyncedAfterMkdir(calls: Call[], parent: string, childDir: string): boolean {
  const made = calls.findIndex((c) => (c.name === "mkdir" || c.name === "mkdirat") && c.arg === childDir && c.result === "0");
  expect(made, `mkdir ${childDir} in the trace`).toBeGreaterThanOrEqual(0);
  const open = new Map<string, string>();
  for (const c of calls.slice(made + 1)) {
    if ((c.name === "openat" || c.name === "open") && Number(c.result) >= 0) open.set(c.result, c.arg);
    if ((c.name === "fsync" || c.name === "fdatasync") && c.result === "0" && open.get(c.arg) === parent) return true;
  }
  return false;
}

describe("directory fsync", { timeout: 120_000 }, () => {
  it("a new tenant's and a new timeline's parent directory is fsynced after their mkdir", async () => {
    const port = await freePort();
    child = spawn(
      "strace",
      [
        "-f",
        "-qq",
        "-e",
        "trace=mkdir,mkdirat,open,openat,fsync,fdatasync",
        "-o",
        traceFile,
        process.execPath,
        "--import",
        "tsx",
        ENTRY,
        "--workdir",
        workdir,
        "--listen",
        `127.0.0.1:${port}`,
        "--listen-pg",
        "127.0.0.1:0",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`strace/pageserver exited with ${child.exitCode}: ${stderr}`);
      const up = await fetch(`${url}/v1/status`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (up) break;
      if (Date.now() > deadline) throw new Error(`pageserver under strace did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const tid = generateTenantId();
    const tl = generateTimelineId();
    expect((await fetch(`${url}/v1/tenant`, { method: "POST", body: JSON.stringify({ new_tenant_id: tid }) })).status).toBe(201);
    expect(
      (
        await fetch(`${url}/v1/tenant/${tid}/timeline`, {
          method: "POST",
          body: JSON.stringify({ new_timeline_id: tl, start_lsn: "0/1000" }),
        })
      ).status,
    ).toBe(201);
    // The node process is strace's first traced pid: stop it (strace ends with it).
    const first = /^(\d+)\s/.exec(readFileSync(traceFile, "utf8"));
    expect(first).not.toBeNull();
    const exited = new Promise<void>((r) => child!.once("exit", () => r()));
    process.kill(Number(first![1]), "SIGTERM");
    await exited;

    const calls = parseTrace(readFileSync(traceFile, "utf8"));
    const tenants = join(workdir, "tenants");
    expect(parentFsyncedAfterMkdir(calls, tenants, join(tenants, tid)), "tenants/ fsynced after mkdir tenants/<id>").toBe(true);
    const timelines = join(tenants, tid, "timelines");
    expect(parentFsyncedAfterMkdir(calls, timelines, join(timelines, tl)), "timelines/ fsynced after mkdir timelines/<id>").toBe(true);
  });
});
