/**
 * Crash safety: a child process ingesting synthetic values (constantly flushing and
 * compacting) is SIGKILLed at random moments; after each kill the tenant loads, and every
 * key reads back exactly as the schedule says, at disk_consistent_lsn and at earlier LSNs.
 * Then the child resumes from there, and is killed again.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { KEY_MIN } from "../src/types/key.js";
import { expectedAt, keyOf, NKEYS, START_LSN } from "./support/kill9_schedule.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { asLsn } from "../src/types/lsn.js";

const KILLS = 6;
const CHILD = fileURLToPath(new URL("./support/kill9_child.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "ps-kill9-"));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** Run the child until it has flushed at least once past `minDcl`, then SIGKILL it after a random delay. */
function runAndKill(tid: string, tlid: string, seed: number): Promise<{ lastDclSeen: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, dir, tid, tlid], { stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let lastDclSeen = -1;
    let out = "";
    let err = "";
    let killTimer: NodeJS.Timeout | null = null;
    const guard = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`child made no progress in time; stderr: ${err.slice(-2000)}`));
    }, 90_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const lines = out.split("\n");
      out = lines.pop()!;
      for (const line of lines) {
        const [what, v] = line.split(" ");
        if (what === "broken") reject(new Error(`tenant failed to load: ${line}`));
        if (what === "dcl") lastDclSeen = Number(v);
        // Kill once it has flushed a few times in this life: a random moment in steady state.
        if (what === "dcl" && killTimer === null) {
          killTimer = setTimeout(() => child.kill("SIGKILL"), 100 + ((seed * 7919) % 900));
        }
      }
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("exit", (code, signal) => {
      clearTimeout(guard);
      if (killTimer) clearTimeout(killTimer);
      if (signal === "SIGKILL") resolve({ lastDclSeen });
      else reject(new Error(`child exited by itself (code ${code}); stderr: ${err.slice(-2000)}`));
    });
  });
}

describe("kill -9", () => {
  it("loses nothing at or below disk_consistent_lsn, and always loads", async () => {
    const tid = generateTenantId();
    const tlid = generateTimelineId();
    let prevDcl = START_LSN;
    for (let round = 0; round < KILLS; round++) {
      const { lastDclSeen } = await runAndKill(tid, tlid, round + 1);
      const h = new TenantHarness({ dir, tenantId: tid });
      try {
        const tenant = h.load();
        expect(tenant.state, tenant.brokenReason ?? "").toBe("Active");
        const tl = tenant.getTimeline(tlid);
        const dcl = tl.diskConsistentLsn;
        // The durable point never goes back, and covers everything the child reported.
        expect(dcl).toBeGreaterThanOrEqual(lastDclSeen);
        expect(dcl).toBeGreaterThanOrEqual(prevDcl);
        expect(tl.lastRecordLsn).toBe(dcl);
        const lsns = [dcl, START_LSN + Math.floor((dcl - START_LSN) / 2 / 8) * 8, prevDcl];
        for (const lsn of lsns) {
          for (let k = 0; k < NKEYS; k++) {
            const got = await tl.get(keyOf(k), asLsn(lsn));
            const want = expectedAt(k, lsn);
            expect(got === null ? null : new TextDecoder().decode(got), `key ${k} at ${lsn.toString(16)} (round ${round})`).toBe(want);
          }
        }
        prevDcl = dcl;
        if (round === KILLS - 1) {
          // The child's lives did compact: L1 deltas or image layers exist besides L0s.
          expect(tl.layerMap.layers.some((l) => l.desc.kind === "image" || l.desc.keyRange.start !== KEY_MIN)).toBe(true);
        }
      } finally {
        await h.close();
      }
    }
    expect(prevDcl).toBeGreaterThan(START_LSN);
  });
});
