/**
 * src/tenant/heavy_work.ts: TenantWorkLimiter refuses a tenant's heavy request beyond its
 * limit at once (LimitReachedError), other tenants unaffected, permits released once;
 * FairQueue serves tenants round-robin (a second waiter of tenant A waits behind tenant B's
 * first), and a waiter whose signal aborts leaves the queue without taking a permit.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FairQueue, TenantWorkLimiter } from "../src/tenant/heavy_work.js";
import { LimitReachedError } from "../src/types/errors.js";
import { type Key, makeKey } from "../src/types/key.js";
import { testInit } from "./support/test_redo.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { asLsn } from "../src/types/lsn.js";

const k = (n: number): Key => makeKey(0, 1663, 5, 1000, 0, n);
let h: TenantHarness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

describe("TenantWorkLimiter", () => {
  it("at most K per tenant, refused at once beyond; other tenants unaffected; release is idempotent", async () => {
    const l = new TenantWorkLimiter(2);
    const a1 = l.acquire("a", "x");
    const a2 = l.acquire("a", "x");
    expect(() => l.acquire("a", "base backup")).toThrow(LimitReachedError);
    expect(() => l.acquire("a", "base backup")).toThrow(
      /tenant a already runs 2 heavy requests \(max_heavy_requests_per_tenant 2\): base backup refused/,
    );
    const b = l.acquire("b", "x");
    a1.release();
    a1.release();
    expect(l.runningFor("a")).toBe(1);
    const a3 = l.acquire("a", "x");
    a2.release();
    a3.release();
    b.release();
    expect(l.runningFor("a")).toBe(0);
    expect(l.runningFor("b")).toBe(0);
    // run(): the permit is returned whatever fn does.
    await expect(l.run("a", "x", () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(l.runningFor("a")).toBe(0);
  });
});

describe("FairQueue", () => {
  it("round-robin among tenants: A's second waiter is served after B's first (a FIFO would serve A twice)", async () => {
    const q = new FairQueue(1);
    const order: string[] = [];
    const hold = gate();
    const first = q.run("a", async () => {
      order.push("a0");
      await hold.promise;
    });
    const rest = [
      q.run("a", async () => void order.push("a1")),
      q.run("a", async () => void order.push("a2")),
      q.run("b", async () => void order.push("b1")),
      q.run("c", async () => void order.push("c1")),
      q.run("b", async () => void order.push("b2")),
    ];
    expect(q.waiting).toBe(5);
    hold.open();
    await Promise.all([first, ...rest]);
    expect(order).toEqual(["a0", "a1", "b1", "c1", "a2", "b2"]);
    expect(q.held).toBe(0);
    expect(q.waiting).toBe(0);
  });

  it("a waiter whose signal aborts leaves the queue (its work never runs); an aborted signal is refused at once", async () => {
    const q = new FairQueue(1);
    const hold = gate();
    const first = q.run("a", () => hold.promise);
    const ac = new AbortController();
    let ran = false;
    const waiting = q.run(
      "b",
      async () => {
        ran = true;
      },
      ac.signal,
    );
    expect(q.waiting).toBe(1);
    ac.abort(new Error("client went away"));
    await expect(waiting).rejects.toThrow("client went away");
    expect(q.waiting).toBe(0);
    await expect(q.run("c", async () => undefined, ac.signal)).rejects.toThrow("client went away");
    hold.open();
    await first;
    expect(ran).toBe(false);
    expect(q.held).toBe(0);
  });
});

describe("a request's AbortSignal in compaction and GC", () => {
  it("an aborted signal stops compact and gc before their work; without it they run", async () => {
    h = new TenantHarness({ conf: { compaction_threshold: 2, image_creation_threshold: 1 } });
    const t = await h.create();
    const tl = await t.createTimeline({ startLsn: asLsn(0x100) });
    let lsn = 0x100;
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 5; i++) {
        lsn += 8;
        tl.put(k(i), asLsn(lsn), testInit(`v${round}`));
        tl.finishWrite(asLsn(lsn));
      }
      await tl.checkpoint();
    }
    const l0 = tl.layerMap.l0Layers().length;
    expect(l0).toBe(4);
    const gone = new AbortController();
    gone.abort(new Error("client went away"));
    await expect(t.compact({ forceImages: true, timeline: tl, signal: gone.signal })).rejects.toThrow("client went away");
    expect(tl.layerMap.l0Layers().length).toBe(l0);
    expect(tl.layerMap.layers.filter((l) => l.desc.kind === "image").length).toBe(0);
    await expect(t.gc({ timeline: tl, cutoffLsn: asLsn(lsn), signal: gone.signal })).rejects.toThrow("client went away");
    expect(tl.latestGcCutoffLsn).toBeLessThan(lsn);
    const res = await t.compact({ forceImages: true, timeline: tl, signal: new AbortController().signal });
    expect(res.l0Compacted).toBe(l0);
    expect(res.imagesCreated).toBeGreaterThan(0);
    await t.gc({ timeline: tl, cutoffLsn: asLsn(lsn), signal: new AbortController().signal });
    expect(tl.latestGcCutoffLsn).toBe(lsn);
  });
});
