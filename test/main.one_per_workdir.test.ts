/**
 * One pageserver per workdir and per port (src/main/workdir_lock.ts, exclusive listens in
 * src/main/http/http_server.ts and src/main/page_service/page_service.ts): a second process on
 * the same workdir or the same port refuses to start with exit 2 and a message naming what is
 * taken, and a workdir whose holder died (kill -9) is taken over. Also: pageserver.json's
 * `listen` holds unless --listen is given.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { WORKDIR_LOCK_FILE } from "../src/main/workdir_lock.js";
import { freePort } from "./support/backup_server.js";
import { PageserverProcess } from "./support/pageserver_process.js";

const ENTRY = fileURLToPath(new URL("../src/main/pageserver.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "one-per-workdir-"));
const running: PageserverProcess[] = [];

afterAll(async () => {
  for (const p of running) await p.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** Start a second pageserver in the foreground; it must not start. */
function secondStart(workdir: string, listen: string, listenPg: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, ["--import", "tsx", ENTRY, "--workdir", workdir, "--listen", listen, "--listen-pg", listenPg], {
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: r.status, stderr: r.stderr };
}

describe("one pageserver per workdir and per port", { timeout: 180_000 }, () => {
  it("a second process on the same workdir exits 2 naming the holder's pid; after a kill -9 the workdir is taken over", async () => {
    const workdir = join(dir, "w1");
    const first = new PageserverProcess(workdir, await freePort(), join(dir, "w1.log"));
    running.push(first);
    await first.start();
    expect(readFileSync(join(workdir, WORKDIR_LOCK_FILE), "utf8").trim()).toBe(String(first.pid));

    const second = secondStart(workdir, `127.0.0.1:${await freePort()}`, "127.0.0.1:0");
    expect(second.status).toBe(2);
    expect(second.stderr).toContain(`is in use by the pageserver with pid ${first.pid}`);
    // The refused start left the holder's lock alone.
    expect(readFileSync(join(workdir, WORKDIR_LOCK_FILE), "utf8").trim()).toBe(String(first.pid));

    await first.kill();
    const third = new PageserverProcess(workdir, await freePort(), join(dir, "w1-third.log"));
    running.push(third);
    await third.start();
    expect(readFileSync(join(workdir, WORKDIR_LOCK_FILE), "utf8").trim()).toBe(String(third.pid));
    expect(await third.stop()).toBe(0);
    expect(existsSync(join(workdir, WORKDIR_LOCK_FILE))).toBe(false);
  });

  it("a second process on the same HTTP port or page-service port exits 2 naming the port", async () => {
    const port = await freePort();
    const first = new PageserverProcess(join(dir, "p1"), port, join(dir, "p1.log"));
    running.push(first);
    await first.start();

    const http = secondStart(join(dir, "p2"), `127.0.0.1:${port}`, "127.0.0.1:0");
    expect(http.status).toBe(2);
    expect(http.stderr).toContain(`cannot listen on 127.0.0.1:${port} (HTTP API)`);

    const status = (await (await fetch(`${first.url}/v1/status`)).json()) as { status: string };
    expect(status.status).toBe("ok");
    const pgPort = Number(/"listen_pg":"127\.0\.0\.1:(\d+)"/.exec(first.logTail(1_000_000))?.[1]);
    expect(pgPort).toBeGreaterThan(0);
    const pg = secondStart(join(dir, "p3"), `127.0.0.1:${await freePort()}`, `127.0.0.1:${pgPort}`);
    expect(pg.status).toBe(2);
    expect(pg.stderr).toContain(`cannot listen on 127.0.0.1:${pgPort} (page service): the port is in use`);
    expect(await first.stop()).toBe(0);
  });

  it("pageserver.json's listen is used when --listen is not given", async () => {
    const workdir = join(dir, "cfg");
    mkdirSync(workdir, { recursive: true });
    const port = await freePort();
    writeFileSync(join(workdir, "pageserver.json"), JSON.stringify({ listen: `127.0.0.1:${port}`, listen_pg: "127.0.0.1:0" }));
    const child = spawn(process.execPath, ["--import", "tsx", ENTRY, "--workdir", workdir], { stdio: "ignore" });
    try {
      let status = 0;
      for (let i = 0; i < 300 && status !== 200 && child.exitCode === null; i++) {
        status = await fetch(`http://127.0.0.1:${port}/v1/status`).then(
          (r) => r.status,
          () => 0,
        );
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(200);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
    }
  });
});
