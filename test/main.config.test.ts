/**
 * Node configuration sources and startup (src/main/config.ts, src/main/pageserver.ts):
 * - precedence defaults < config file < PAGESERVER_<KEY> < flags, for an address, a number
 *   and the nested tenant defaults, through the pure loader;
 * - refusals naming their source and key: unknown file key, wrong type, unknown PAGESERVER_
 *   variable, a missing --config file;
 * - the real process: --config file + environment + flag decide what it listens on, and
 *   --log-format json-iso writes ISO 8601 times and level names;
 * - every expected startup failure is one stderr line `pageserver: …` and exit 2.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_NODE_CONFIG, loadNodeConfig } from "../src/main/config.js";
import { DEFAULT_TENANT_CONF } from "../src/tenant/config.js";
import { InvalidArgumentError } from "../src/types/errors.js";
import { freePort } from "./support/backup_server.js";
import { PageserverProcess } from "./support/pageserver_process.js";

const ENTRY = fileURLToPath(new URL("../src/main/pageserver.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "ps-config-"));
const running: PageserverProcess[] = [];

afterAll(async () => {
  for (const p of running) await p.kill();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** A fresh workdir holding `file` as its pageserver.json. */
function workdirWith(file: Record<string, unknown> | null): string {
  const w = join(dir, `w${n++}`);
  mkdirSync(w, { recursive: true });
  if (file !== null) writeFileSync(join(w, "pageserver.json"), JSON.stringify(file));
  return w;
}

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidArgumentError);
    return (e as Error).message;
  }
  throw new Error("expected a refusal");
}

describe("node config sources: defaults < file < PAGESERVER_* < flags", () => {
  const file = { listen: "127.0.0.2:7000", page_cache_size: 8192 * 10, tenant_config: { gc_period: "2h", compaction_threshold: 4 } };
  const env = {
    PAGESERVER_LISTEN: "127.0.0.3:7001",
    PAGESERVER_PAGE_CACHE_SIZE: "163840",
    PAGESERVER_TENANT_CONFIG: '{"gc_period":"1h 30m","gc_horizon":0}',
  };

  it("the file beats the defaults", () => {
    const c = loadNodeConfig({ workdir: workdirWith(file) });
    expect(c.listen_http).toEqual({ host: "127.0.0.2", port: 7000 });
    expect(c.page_cache_size_bytes).toBe(81920);
    expect(c.tenant_defaults).toEqual({ ...DEFAULT_TENANT_CONF, gc_period_ms: 7_200_000, compaction_threshold: 4 });
  });

  it("the environment beats the file (tenant settings merge over the file's)", () => {
    const c = loadNodeConfig({ workdir: workdirWith(file) }, { env });
    expect(c.listen_http).toEqual({ host: "127.0.0.3", port: 7001 });
    expect(c.page_cache_size_bytes).toBe(163840);
    expect(c.tenant_defaults).toEqual({ ...DEFAULT_TENANT_CONF, gc_period_ms: 5_400_000, compaction_threshold: 4, gc_horizon_bytes: 0 });
    // Without a file, the environment beats the defaults.
    const bare = loadNodeConfig({ workdir: workdirWith(null) }, { env });
    expect(bare.listen_http.port).toBe(7001);
    expect(bare.listen_pg).toEqual(DEFAULT_NODE_CONFIG.listen_pg);
  });

  it("a flag given beats the environment; one not given (undefined) doesn't", () => {
    const c = loadNodeConfig(
      { workdir: workdirWith(file), listen: "127.0.0.4:7002", page_cache_size: "245760", tenant_config: { compaction_threshold: 5 } },
      { env },
    );
    expect(c.listen_http).toEqual({ host: "127.0.0.4", port: 7002 });
    expect(c.page_cache_size_bytes).toBe(245760);
    expect(c.tenant_defaults).toMatchObject({ gc_period_ms: 5_400_000, compaction_threshold: 5, gc_horizon_bytes: 0 });
    const notGiven = loadNodeConfig({ workdir: workdirWith(file), listen: undefined, page_cache_size: undefined }, { env });
    expect(notGiven.listen_http.port).toBe(7001);
    expect(notGiven.page_cache_size_bytes).toBe(163840);
  });

  it("booleans and the workdir come from the environment too; pagectl's variables are not the server's", () => {
    const w = workdirWith(null);
    const c = loadNodeConfig(
      {},
      {
        env: {
          PAGESERVER_WORKDIR: w,
          PAGESERVER_ENABLE_FAILPOINTS: "1",
          PAGESERVER_WAL_SOURCE_UNIX_SOCKETS: "true",
          PAGESERVER_URL: "http://elsewhere:9898",
          PAGESERVER_PG: "elsewhere:6400",
          PAGESERVER_TOKEN: "x",
          HOME: "/root",
        },
      },
    );
    expect(c.workdir).toBe(resolve(w));
    expect(c.enable_failpoints).toBe(true);
    expect(c.wal_source_unix_sockets).toBe(true);
  });

  it("--config names the file (relative to cwd); a missing one is refused, a missing default is not", () => {
    const other = join(dir, "elsewhere.json");
    writeFileSync(other, JSON.stringify({ listen: "127.0.0.5:7005" }));
    const w = workdirWith({ listen: "127.0.0.2:7000" });
    expect(loadNodeConfig({ workdir: w }, { config_file: other }).listen_http.port).toBe(7005);
    expect(loadNodeConfig({ workdir: w }, { config_file: "elsewhere.json", cwd: dir }).listen_http.port).toBe(7005);
    expect(refusal(() => loadNodeConfig({ workdir: w }, { config_file: join(dir, "nope.json") }))).toBe(
      `--config ${join(dir, "nope.json")}: no such file`,
    );
    expect(loadNodeConfig({ workdir: workdirWith(null) }).listen_http).toEqual(DEFAULT_NODE_CONFIG.listen_http);
  });

  it("an unknown key or a value of the wrong type in the file is refused naming the file and the key", () => {
    const w = workdirWith({ listen: "127.0.0.1:1", page_cahce_size: 8192 });
    expect(refusal(() => loadNodeConfig({ workdir: w }))).toBe(`${join(resolve(w), "pageserver.json")}: unknown key 'page_cahce_size'`);
    const typed = (content: Record<string, unknown>): string => {
      const t = workdirWith(content);
      return refusal(() => loadNodeConfig({ workdir: t })).replace(`${join(resolve(t), "pageserver.json")}: `, "FILE: ");
    };
    expect(typed({ listen: 9898 })).toBe("FILE: listen: expected HOST:PORT, got 9898");
    expect(typed({ enable_failpoints: "yes" })).toBe('FILE: enable_failpoints: expected true or false, got "yes"');
    expect(typed({ tenant_config: [] })).toBe("FILE: tenant_config: expected an object of tenant settings, got []");
    expect(typed({ log_level: 3 })).toBe("FILE: log_level: expected one of fatal, error, warn, info, debug, trace, silent, got 3");
    expect(typed({ max_tenants: true })).toBe("FILE: max_tenants: expected a positive integer, got true");
    expect(typed({ tenant_min_pitr_interval: "soon" })).toBe(
      'FILE: tenant_min_pitr_interval: invalid duration "soon" (e.g. "20s", "10m", "1h", or milliseconds)',
    );
  });

  it("an unknown PAGESERVER_ variable or a bad value in one is refused naming the variable", () => {
    const w = workdirWith(null);
    expect(refusal(() => loadNodeConfig({ workdir: w }, { env: { PAGESERVER_LISTNE: "127.0.0.1:1" } }))).toMatch(
      /^PAGESERVER_LISTNE: unknown setting/,
    );
    // The variable is the key upper-cased, nothing else.
    expect(refusal(() => loadNodeConfig({ workdir: w }, { env: { PAGESERVER_listen: "127.0.0.1:1" } }))).toMatch(
      /^PAGESERVER_listen: unknown setting/,
    );
    expect(refusal(() => loadNodeConfig({ workdir: w }, { env: { PAGESERVER_PAGE_CACHE_SIZE: "64MiB" } }))).toBe(
      'PAGESERVER_PAGE_CACHE_SIZE: page_cache_size: expected a positive integer, got "64MiB"',
    );
    expect(refusal(() => loadNodeConfig({ workdir: w }, { env: { PAGESERVER_ENABLE_FAILPOINTS: "yes" } }))).toBe(
      'PAGESERVER_ENABLE_FAILPOINTS: enable_failpoints: expected true or false (or 1 / 0), got "yes"',
    );
    expect(refusal(() => loadNodeConfig({ workdir: w }, { env: { PAGESERVER_TENANT_CONFIG: "{gc_period" } }))).toMatch(
      /^PAGESERVER_TENANT_CONFIG: tenant_config: expected JSON: /,
    );
    expect(refusal(() => loadNodeConfig({ workdir: w }, { env: { PAGESERVER_LISTEN: "nope" } }))).toBe(
      "PAGESERVER_LISTEN: listen: invalid listen address 'nope': expected HOST:PORT",
    );
  });
});

/** Run the pageserver to its exit (a refused start). */
function refusedStart(args: string[], env: Record<string, string> = {}): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, ["--import", "tsx", ENTRY, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, ...env },
  });
  return { status: r.status, stderr: r.stderr };
}

async function waitStatus(port: number, child: ChildProcess): Promise<number> {
  let status = 0;
  for (let i = 0; i < 300 && status !== 200 && child.exitCode === null; i++) {
    status = await fetch(`http://127.0.0.1:${port}/v1/status`).then(
      (r) => r.status,
      () => 0,
    );
    if (status !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  return status;
}

describe("the pageserver process", { timeout: 180_000 }, () => {
  it("--config file < PAGESERVER_* < flag decide the listen addresses; json-iso logs ISO 8601 times and level names", async () => {
    const [filePort, envPort, flagPgPort] = [await freePort(), await freePort(), await freePort()];
    const configFile = join(dir, "spawned.json");
    writeFileSync(configFile, JSON.stringify({ listen: `127.0.0.1:${filePort}`, listen_pg: "127.0.0.1:1", log_format: "json" }));
    const child = spawn(
      process.execPath,
      ["--import", "tsx", ENTRY, "--config", configFile, "--workdir", join(dir, "spawned"), "--listen-pg", `127.0.0.1:${flagPgPort}`],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          PAGESERVER_LISTEN: `127.0.0.1:${envPort}`,
          PAGESERVER_LISTEN_PG: "127.0.0.1:2",
          PAGESERVER_LOG_FORMAT: "json-iso",
        },
      },
    );
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    try {
      expect(await waitStatus(envPort, child)).toBe(200);
      // The file's port is not used: the environment beat it.
      expect(
        await fetch(`http://127.0.0.1:${filePort}/v1/status`).then(
          () => "answered",
          () => "refused",
        ),
      ).toBe("refused");
      const lines = out
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as { time: unknown; level: unknown; listen_pg?: string });
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) {
        expect(l.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
        expect(["trace", "debug", "info", "warn", "error", "fatal"]).toContain(l.level);
      }
      // The flag beat the environment and the file for the page service.
      expect(lines.find((l) => l.listen_pg !== undefined)?.listen_pg).toBe(`127.0.0.1:${flagPgPort}`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
    }
  });

  it("--help states the precedence of the sources and the variables' names", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", ENTRY, "--help"], { encoding: "utf8", timeout: 60_000 });
    expect(r.status).toBe(0);
    const help = r.stdout.replace(/\s+/g, " ");
    expect(help).toContain("Settings, later wins: embedded defaults < config file (--config FILE, else <workdir>/pageserver.json");
    expect(help).toContain("< environment PAGESERVER_<KEY>");
    expect(help).toContain("< flags given");
    expect(help).toContain("--log-format <format> json | json-iso | pretty");
  });

  it("every expected startup failure is one line 'pageserver: …' on stderr and exit 2; the stack only at debug", async () => {
    const holder = new PageserverProcess(join(dir, "held"), await freePort(), join(dir, "held.log"));
    running.push(holder);
    await holder.start();
    // The default log format stays pino's own: epoch-ms time, numeric level.
    const first = JSON.parse(holder.logTail(1_000_000).split("\n")[0]!) as { time: unknown; level: unknown };
    expect(typeof first.time).toBe("number");
    expect(first.level).toBe(30);
    const notADir = join(dir, "a-file");
    writeFileSync(notADir, "");
    const badFile = workdirWith({ listen: "127.0.0.1:0", lsiten: 1 });
    const free = async (): Promise<string> => `127.0.0.1:${await freePort()}`;
    const cases: [string, string[], Record<string, string>, string][] = [
      ["unknown option", ["--workdir", join(dir, "u"), "--lisen", "x"], {}, "unknown option '--lisen'"],
      ["bad config file", ["--workdir", badFile], {}, "unknown key 'lsiten'"],
      ["missing --config", ["--config", join(dir, "absent.json")], {}, "no such file"],
      ["unknown variable", ["--workdir", join(dir, "v")], { PAGESERVER_NOPE: "1" }, "PAGESERVER_NOPE: unknown setting"],
      [
        "busy HTTP port",
        ["--workdir", join(dir, "b"), "--listen", `127.0.0.1:${holder.port}`, "--listen-pg", "127.0.0.1:0"],
        {},
        "cannot listen",
      ],
      ["locked workdir", ["--workdir", holder.workdir, "--listen", await free(), "--listen-pg", "127.0.0.1:0"], {}, "is in use by"],
      [
        "unreadable key file",
        ["--workdir", join(dir, "k"), "--listen", await free(), "--listen-pg", "127.0.0.1:0", "--auth-public-key", join(dir, "no.pem")],
        {},
        "auth_public_key: cannot read",
      ],
      ["workdir under a file", ["--workdir", join(notADir, "w"), "--listen", await free(), "--listen-pg", "127.0.0.1:0"], {}, "ENOTDIR"],
    ];
    for (const [what, args, env, message] of cases) {
      const r = refusedStart(args, env);
      expect(r.status, what).toBe(2);
      expect(r.stderr, what).toMatch(/^pageserver: [^\n]+\n$/);
      expect(r.stderr, what).toContain(message);
    }
    // At debug the stack follows the line.
    const debug = refusedStart([
      "--workdir",
      join(notADir, "w"),
      "--log-level",
      "debug",
      "--listen",
      await free(),
      "--listen-pg",
      "127.0.0.1:0",
    ]);
    expect(debug.status).toBe(2);
    expect(debug.stderr).toMatch(/^pageserver: [^\n]*ENOTDIR[^\n]*\n.*\n\s+at /s);
  });
});
