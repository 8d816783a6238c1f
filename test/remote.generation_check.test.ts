/**
 * The generation check behind the flush position a node reports to a WAL source
 * (RemoteTimelines.feedbackLsn, src/remote/generation_check.ts), on a real Server over LocalFs:
 * a new remote_consistent_lsn is reported only after a check confirmed it; an attach marker of
 * a newer generation in the bucket (another node attached, uploaded nothing yet) makes the
 * next check put the tenant Broken ("superseded"), its remote client stops, and the reported
 * position never moves past what was confirmed before. The bucket validator sees markers and
 * index keys alike, and so does a stale node's remote deletion.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { within } from "./support/within.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { bucketGenerationValidator } from "../src/remote/generation_check.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { deleteRemoteTenant, deleteRemoteTimeline } from "../src/remote/remote_delete.js";
import { generationMarkerKey, indexKey } from "../src/remote/remote_path.js";
import { generateTenantId, generateTimelineId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { asLsn, INVALID_LSN } from "../src/types/lsn.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";

const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" };
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const dirs: string[] = [];
const tmp = (p: string): string => {
  const d = mkdtempSync(join(tmpdir(), p));
  dirs.push(d);
  return d;
};
const logs = new LogCapture();
let server: Server | null = null;

afterAll(async () => {
  await server?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  logs.expectClean([/tenant is broken/, /a newer generation holds the tenant/]);
});

async function until(what: string, cond: () => boolean): Promise<void> {
  await within(
    (async () => {
      while (!cond()) await sleep(10);
    })(),
    what,
  );
}

describe("generation checks before flush feedback", () => {
  it("the bucket validator takes the newest of attach markers and index keys", async () => {
    const storage = new LocalFs(tmp("ps-gencheck-bucket-"));
    const tenant = generateTenantId();
    const tl = generateTimelineId();
    const v = bucketGenerationValidator(storage);
    expect(await v.newestGeneration(tenant, [tl], {})).toBeNull();
    await storage.put(indexKey(tenant, tl, 3), new Uint8Array(1), { size_bytes: 1 });
    expect(await v.newestGeneration(tenant, [tl], {})).toBe(3);
    await storage.put(generationMarkerKey(tenant, 5), new Uint8Array(0), { size_bytes: 0 });
    expect(await v.newestGeneration(tenant, [tl], {})).toBe(5);
  });

  it("a stale node's remote deletion deletes nothing once a newer attach marker is there (the new holder may read our objects)", async () => {
    const storage = new LocalFs(tmp("ps-gencheck-del-"));
    const tenant = generateTenantId();
    const tl = generateTimelineId();
    await storage.put(indexKey(tenant, tl, 1), new Uint8Array(1), { size_bytes: 1 });
    await storage.put(generationMarkerKey(tenant, 2), new Uint8Array(0), { size_bytes: 0 });
    const before = (await storage.list("")).map((o) => o.key);
    await expect(deleteRemoteTenant(storage, tenant, 1)).rejects.toThrow(/superseded by generation 2/);
    await expect(deleteRemoteTimeline(storage, tenant, tl, 1)).rejects.toThrow(/superseded by generation 2/);
    expect((await storage.list("")).map((o) => o.key)).toEqual(before);
    // The holder of generation 2 deletes it all, its marker too.
    await deleteRemoteTenant(storage, tenant, 2);
    expect(await storage.list("")).toEqual([]);
  });

  it("reports a position only once confirmed; a newer attach marker makes the tenant Broken (superseded) and stops its uploads", async () => {
    const root = tmp("ps-gencheck-");
    server = new Server(
      loadNodeConfig({
        workdir: tmp("ps-gencheck-node-"),
        listen: "127.0.0.1:0",
        listen_pg: "127.0.0.1:0",
        remote_storage: `file://${root}?generation_check_interval_ms=0`,
      }),
      logs.logger,
    );
    await server.start();
    const remote = server.remote!;
    const tenantId: TenantId = generateTenantId();
    const timelineId: TimelineId = generateTimelineId();
    const t = await server.tenants.create(tenantId, QUIET);
    const tl = await t.createTimeline({ timelineId, startLsn: asLsn(0x1000) });
    let lsn = 0x1000;
    const write = async (tag: string): Promise<void> => {
      for (let i = 0; i < 10; i++) {
        lsn += 8;
        tl.put(k(i), asLsn(lsn), imageValue(Buffer.from(`${tag} ${i}`)));
      }
      tl.finishWrite(asLsn(lsn));
      await tl.checkpoint();
    };
    await write("a");
    await within(remote.whenConnected(), "connected");
    await within(remote.clientOf(tl)!.waitUploaded(), "uploaded");
    const rcl1 = remote.remoteConsistentLsn(tl)!;
    expect(rcl1).toBe(lsn);
    // Not confirmed yet: the first ask starts a check and reports nothing new.
    expect(remote.feedbackLsn(tl)).toBe(INVALID_LSN);
    await until("confirmed", () => remote.feedbackLsn(tl) === rcl1);

    // Another node attaches in generation 2 (its marker only, nothing uploaded yet).
    await remote.storage.put(generationMarkerKey(tenantId, 2), new Uint8Array(0), { size_bytes: 0 });
    await write("b");
    await within(remote.clientOf(tl)!.waitUploaded(), "uploaded again");
    expect(remote.remoteConsistentLsn(tl)).toBe(lsn);
    // The newer position is never reported: the check finds generation 2.
    expect(remote.feedbackLsn(tl)).toBe(rcl1);
    await until("superseded", () => t.state === "Broken");
    expect(t.brokenReason).toContain("superseded");
    expect(t.brokenReason).toContain("generation 2");
    expect(remote.feedbackLsn(tl)).toBe(rcl1);
    // Its uploads stopped with it.
    expect(remote.clientOf(tl)).toBeUndefined();
  });
});
