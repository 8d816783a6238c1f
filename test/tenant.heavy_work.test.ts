/**
 * src/tenant/heavy_work.ts: TenantWorkLimiter refuses a tenant's heavy request beyond its
 * limit at once (LimitReachedError), other tenants unaffected, permits released once;
 * FairQueue serves tenants round-robin (a second waiter of tenant A waits behind tenant B's
 * first), and a waiter whose signal aborts leaves the queue without taking a permit.
 */
import { describe, expect, it } from "vitest";
import { FairQueue, TenantWorkLimiter } from "../src/tenant/heavy_work.js";
import { LimitReachedError } from "../src/types/errors.js";

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
    expect(() => l.acquire("a", "base backup")).toThrow(/tenant a already runs 2 heavy requests \(max_heavy_requests_per_tenant 2\): base backup refused/);
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
