/**
 * `npm run demo` (bench/demo.ts) runs, bounded, exits 0 and prints its summary: the endpoint
 * on the branch at T showed the database at T, the source the later commits; the layer
 * picture was written; everything it started was stopped (its temp
 * dir is gone, no postmaster of its own is left).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The demo's own budget is 170 s; past this the test kills it. */
const DEMO_TIMEOUT_MS = 200_000;
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

const out = mkdtempSync(join(tmpdir(), "ps-demo-out-"));

afterAll(() => {
  rmSync(out, { recursive: true, force: true });
});

describe("npm run demo", () => {
  it("tells the whole story, exits 0, prints its summary and leaves nothing running", { timeout: DEMO_TIMEOUT_MS + 20_000 }, async () => {
    const child = spawn("npm", ["run", "-s", "demo", "--", "--out", out], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    // SIGINT first (the demo stops what it started), SIGKILL of the group later.
    const soft = setTimeout(() => process.kill(-child.pid!, "SIGINT"), DEMO_TIMEOUT_MS);
    const hard = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), DEMO_TIMEOUT_MS + 15_000);
    const code = await new Promise<number | null>((r) => child.once("close", (c) => r(c)));
    clearTimeout(soft);
    clearTimeout(hard);
    expect(code, `${stdout}\n${stderr}`).toBe(0);

    const summary = stdout.slice(stdout.indexOf("== summary"));
    expect(summary).toMatch(/^endpoint on the branch: (\d+) rows \(source: (\d+)\): as expected$/m);
    const m = /^endpoint on the branch: (\d+) rows \(source: (\d+)\)/m.exec(summary)!;
    expect(Number(m[1])).toBeGreaterThan(0);
    expect(Number(m[2])).toBeGreaterThan(Number(m[1]));
    const layers = /^layers of the main timeline: (\d+) layers \(/m.exec(summary);
    expect(layers, summary).not.toBeNull();
    expect(Number(layers![1])).toBeGreaterThan(0);
    expect(summary).toMatch(/everything started was stopped$/m);
    // The branch came from pagectl endpoint start; a write there stayed there.
    expect(stdout).toMatch(/\$ pagectl --json endpoint start --tenant [0-9a-f]{32} --timeline [0-9a-f]{32} --at \S+ /);
    expect(stdout).toMatch(/a table created on the endpoint: 1000 rows there, absent on the source/);
    // The picture, as the summary describes it (the background compaction loop may have
    // changed the layers between the list and the picture: each is compared with itself).
    const picture = /^the layer picture: (\S+) \((\d+) layers drawn/m.exec(summary);
    expect(picture, summary).not.toBeNull();
    expect(picture![1]).toBe(join(out, "layer_map.svg"));
    const svg = readFileSync(picture![1]!, "utf8");
    expect(svg).toMatch(/<svg[\s>]/);
    expect(Number(picture![2])).toBeGreaterThan(0);
    expect((svg.match(/<rect class="layer"/g) ?? []).length).toBe(Number(picture![2]));

    // Its temp dir (pageserver workdir, endpoint data directory) is gone.
    const workdir = /\(workdir (\S+)\/workdir\)/.exec(stdout)![1]!;
    expect(existsSync(workdir)).toBe(false);
    const sourceDir = /\((\/\S+\/data)\)/.exec(stdout)![1]!;
    expect(existsSync(sourceDir)).toBe(false);
    // Nothing listens where the source and the endpoint did.
    const sourcePort = Number(/source PostgreSQL 15 on 127\.0\.0\.1:(\d+)/.exec(stdout)![1]);
    const endpointPort = Number(/endpoint on 127\.0\.0\.1:(\d+)/.exec(stdout)![1]);
    expect(await listening(sourcePort)).toBe(false);
    expect(await listening(endpointPort)).toBe(false);
  });
});
