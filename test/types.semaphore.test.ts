/**
 * Semaphore (src/types/semaphore.ts): at most `permits` holders, waiters served FIFO, the
 * permit returned when the holder throws, the waiting queue bounded.
 */
import { describe, expect, it } from "vitest";
import { BadStateError } from "../src/types/errors.js";
import { MAX_SEMAPHORE_WAITERS, Semaphore } from "../src/types/semaphore.js";

/** A promise and its resolver. */
function gate(): { p: Promise<void>; open: () => void } {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe("Semaphore", () => {
  it("holds at most its permits; waiters run FIFO as permits return", async () => {
    const s = new Semaphore(2);
    const order: number[] = [];
    const gates = [gate(), gate(), gate(), gate()];
    const runs = gates.map((g, i) =>
      s.run(async () => {
        order.push(i);
        await g.p;
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([0, 1]);
    expect(s.held).toBe(2);
    expect(s.waiting).toBe(2);
    gates[1]!.open();
    await runs[1];
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([0, 1, 2]);
    gates[0]!.open();
    gates[2]!.open();
    gates[3]!.open();
    await Promise.all(runs);
    expect(order).toEqual([0, 1, 2, 3]);
    expect(s.held).toBe(0);
    expect(s.waiting).toBe(0);
  });

  it("returns the permit when the holder throws", async () => {
    const s = new Semaphore(1);
    await expect(s.run(async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(s.held).toBe(0);
    expect(await s.run(async () => 7)).toBe(7);
  });

  it("refuses a waiter beyond the bound", async () => {
    const s = new Semaphore(1);
    const g = gate();
    const holder = s.run(() => g.p);
    const waiters: Promise<void>[] = [];
    for (let i = 0; i < MAX_SEMAPHORE_WAITERS; i++) waiters.push(s.run(async () => undefined));
    await new Promise((r) => setImmediate(r));
    expect(s.waiting).toBe(MAX_SEMAPHORE_WAITERS);
    await expect(s.run(async () => undefined)).rejects.toBeInstanceOf(BadStateError);
    g.open();
    await holder;
    await Promise.all(waiters);
    expect(s.held).toBe(0);
  });

  it("needs at least one permit", () => {
    expect(() => new Semaphore(0)).toThrow(/at least one permit/);
  });
});
