/**
 * deploy/: the Prometheus alert rules, their unit tests, the Grafana dashboard and the systemd
 * unit, checked against a live in-process Server (remote storage in a local directory, disk
 * usage eviction on, so every family the rules use is registered):
 * - `promtool check rules` accepts alerts.yml and `promtool test rules` passes alerts_test.yml;
 * - every metric name alerts.yml, alerts_test.yml or the dashboard mentions is in the scrape
 *   (a family's `# TYPE` line; a histogram's _bucket/_count/_sum series count as its name);
 * - the dashboard is JSON, each panel's query parses (promtool, as recording rules, with
 *   Grafana's variables replaced) and names only exported metrics;
 * - `systemd-analyze verify` accepts the unit, which stops with SIGTERM.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { asLsn } from "../src/types/lsn.js";
import { LogCapture } from "./support/log_check.js";

const ROOT = new URL("..", import.meta.url).pathname;
const DEPLOY = join(ROOT, "deploy");
const logs = new LogCapture();
let dir = "";
let server: Server;
/** Metric names a query may use: each family, and a histogram's series names. */
const exported = new Set<string>();

function run(cmd: string, args: string[], cwd = ROOT): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 60_000 });
  expect(r.error, `${cmd} must be installed`).toBeUndefined();
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** The metric names in `text`: ours and the process/runtime ones prom-client exports. */
function metricNames(text: string): string[] {
  return [...new Set(text.match(/\b(?:pageserver|process|nodejs)_[a-z0-9_]+\b/g) ?? [])].sort();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ps-deploy-"));
  server = new Server(
    loadNodeConfig({
      workdir: join(dir, "work"),
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      remote_storage: `file://${join(dir, "bucket")}`,
      max_local_disk_bytes: 1024 * 1024 * 1024,
      tenant_config: { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" },
    }),
    logs.logger,
  );
  const port = await server.start();
  const t = await server.tenants.create(undefined, { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" });
  await t.createTimeline({ startLsn: asLsn(0x1000) });
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m;
    exported.add(name!);
    if (type === "histogram") for (const s of ["_bucket", "_count", "_sum"]) exported.add(`${name}${s}`);
  }
  expect(exported.size).toBeGreaterThan(50);
});

afterAll(async () => {
  await server?.stop();
  logs.expectClean([]);
  rmSync(dir, { recursive: true, force: true });
});

describe("deploy/prometheus", () => {
  it("promtool check rules accepts alerts.yml", () => {
    const r = run("promtool", ["check", "rules", join(DEPLOY, "prometheus/alerts.yml")]);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("promtool test rules passes alerts_test.yml", () => {
    const r = run("promtool", ["test", "rules", "alerts_test.yml"], join(DEPLOY, "prometheus"));
    expect(r.status, r.out).toBe(0);
  });

  it("every metric alerts.yml and alerts_test.yml name is exported by the server", () => {
    for (const file of ["alerts.yml", "alerts_test.yml"]) {
      const names = metricNames(readFileSync(join(DEPLOY, "prometheus", file), "utf8"));
      expect(names.length, file).toBeGreaterThan(5);
      expect(
        names.filter((n) => !exported.has(n)),
        file,
      ).toEqual([]);
    }
  });
});

describe("deploy/grafana", () => {
  it("the dashboard is JSON whose queries parse and name only exported metrics", () => {
    const dash = JSON.parse(readFileSync(join(DEPLOY, "grafana/pageserver.json"), "utf8")) as {
      title: string;
      panels: { title: string; type: string; panels?: unknown[]; targets?: { expr: string }[] }[];
    };
    expect(dash.title).toBe("Pageserver");
    const exprs: { panel: string; expr: string }[] = [];
    for (const p of dash.panels) {
      if (p.type === "row") continue;
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!) exprs.push({ panel: p.title, expr: t.expr });
    }
    expect(exprs.length).toBeGreaterThan(20);
    const missing = exprs.flatMap(({ panel, expr }) =>
      metricNames(expr)
        .filter((n) => !exported.has(n))
        .map((n) => `${panel}: ${n}`),
    );
    expect(missing).toEqual([]);
    // Each query as a recording rule, Grafana's variables replaced: promtool parses them.
    const rules = [
      "groups:",
      "  - name: dashboard",
      "    rules:",
      ...exprs.flatMap(({ expr }, i) => [
        `      - record: dashboard:q${i}`,
        `        expr: ${JSON.stringify(expr.replaceAll("$__rate_interval", "5m").replaceAll("$instance", ".*"))}`,
      ]),
      "",
    ].join("\n");
    const file = join(dir, "dashboard_rules.yml");
    writeFileSync(file, rules);
    const r = run("promtool", ["check", "rules", file]);
    expect(r.status, r.out).toBe(0);
  });
});

describe("deploy/systemd", () => {
  it("systemd-analyze verify accepts the unit; it runs as pageserver, stops with SIGTERM, restarts on failure", () => {
    const unit = join(DEPLOY, "systemd/pageserver.service");
    const r = run("systemd-analyze", ["verify", unit], dir);
    expect(r.status, r.out).toBe(0);
    const text = readFileSync(unit, "utf8");
    for (const line of ["User=pageserver", "KillSignal=SIGTERM", "Restart=on-failure", "RestartPreventExitStatus=2", "LimitNOFILE=65536"]) {
      expect(text.split("\n"), line).toContain(line);
    }
    expect(text).toMatch(/^ExecStart=\S+ \S+pageserver\.js --workdir \/var\/lib\/pageserver$/m);
  });
});
