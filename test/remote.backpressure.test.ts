/**
 * Upload-queue backpressure through a real timeline (issue 16, item 11): a remote outage that
 * fills a timeline's upload queue holds its flushes back (LayerEvents.waitForRoom) instead of
 * stopping the queue and making the timeline Broken; once the bucket answers again the held
 * flushes go on and the bucket ends with everything, remote_consistent_lsn at the last flush.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { within } from "./support/within.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import { type PutOptions, RemoteStorageError } from "../src/remote/remote_storage.js";
import { RemoteTimelineClient } from "../src/remote/remote_timeline_client.js";
import { generateTimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { asLsn, lsnAdd } from "../src/types/lsn.js";

const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const root = mkdtempSync(join(tmpdir(), "ps-bp-bucket-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A bucket whose puts fail (transient, as in an outage) while `down` is set. */
class OutageFs extends LocalFs {
  down = false;
  override async put(key: string, body: Uint8Array | Readable, opts: PutOptions): Promise<void> {
    if (this.down) {
      if (!(body instanceof Uint8Array)) body.destroy();
      throw new RemoteStorageError("transient", key, "outage (injected)");
    }
    return super.put(key, body, opts);
  }
}

describe("a full upload queue", () => {
  it("holds the timeline's flushes back during an outage instead of breaking it; they go on once the bucket is back", async () => {
    const h = new TenantHarness();
    try {
      const t = await h.create();
      const timelineId = generateTimelineId();
      const tl = await t.createTimeline({ timelineId, startLsn: asLsn(0x1000) });
      const storage = new OutageFs(root);
      const stopped: string[] = [];
      const client = await RemoteTimelineClient.open({
        storage,
        tenant_id: h.tenantId,
        timeline_id: timelineId,
        generation: 1,
        log: pino({ level: "silent" }),
        max_queued_ops: 20,
        retry_base_ms: 5,
        retry_max_ms: 20,
        onStopped: (_s, r) => stopped.push(r),
      });
      client.reconcile({ layers: tl.layerFiles(), metadata: tl.metadata() });
      tl.setLayerEvents(client);
      await within(client.waitUploaded(), "first index");

      storage.down = true;
      const ROUNDS = 30;
      let done = 0;
      let lsn = tl.lastRecordLsn;
      const writer = (async () => {
        for (let round = 0; round < ROUNDS; round++) {
          for (let i = 0; i < 8; i++) {
            lsn = lsnAdd(lsn, 8);
            tl.put(k(i), lsn, imageValue(Buffer.from(`r${round} ${i}`)));
          }
          tl.finishWrite(lsn);
          await tl.checkpoint();
          done++;
        }
      })();
      await within(
        (async () => {
          while (client.stats().backpressure_waits_total === 0) await sleep(10);
        })(),
        "a flush held back",
      );
      // Held, not broken: the queue is still active, nothing stopped, the flushes wait.
      const held = done;
      await sleep(200);
      expect(done).toBe(held);
      expect(done).toBeLessThan(ROUNDS);
      expect(client.status).toBe("active");
      expect(stopped).toEqual([]);
      expect(tl.state).toBe("Active");
      expect(client.stats().queued.upload_layer + client.stats().inflight.upload_layer).toBeGreaterThan(0);

      storage.down = false;
      await within(writer, "the held flushes");
      expect(done).toBe(ROUNDS);
      await within(client.waitUploaded(), "uploads");
      expect(client.remote_consistent_lsn).toBe(tl.diskConsistentLsn);
      expect(tl.diskConsistentLsn).toBe(lsn);
      const check = await checkRemoteTimeline(storage, h.tenantId, timelineId, 1, { verify_checksums: true });
      expect(check.ok, JSON.stringify(check)).toBe(true);
      // Every upload's hard link is gone with it.
      expect(readdirSync(tl.dir).filter((n) => n.includes(".upload-"))).toEqual([]);
      await client.shutdown();
    } finally {
      await h.close();
    }
  });
});
