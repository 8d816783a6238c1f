/**
 * BackgroundLoops (src/tenant/background_loops.ts): the node-wide scheduler of tenants'
 * rounds. The global concurrency limit holds; a tenant with endless work ("more") takes turns
 * with the others instead of starving them; wake() during a round runs one more round;
 * period 0 disables a loop and stop() ends it; inline loops run in the tick.
 */
import { afterEach, describe, expect, it } from "vitest";
import { BackgroundLoops } from "../src/tenant/background_loops.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeout_ms = 5000): Promise<void> {
  const end = Date.now() + timeout_ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await sleep(5);
  }
}

describe("BackgroundLoops", () => {
  let s: BackgroundLoops | null = null;
  afterEach(() => {
    s?.close();
    s = null;
  });

  it("never runs more rounds at once than its limit, and runs every due loop", async () => {
    s = new BackgroundLoops(2);
    let running = 0;
    let peak = 0;
    const done = new Array<number>(10).fill(0);
    for (let i = 0; i < 10; i++) {
      s.register({
        what: `t${i}`,
        period_ms: () => 20,
        onError: (e) => {
          throw e;
        },
        round: async () => {
          running++;
          peak = Math.max(peak, running);
          await sleep(5);
          running--;
          done[i]!++;
          return false;
        },
      });
    }
    await until(() => done.every((n) => n >= 3));
    expect(peak).toBe(2);
  });

  it("a loop that always has more work takes turns with the others (FIFO at the tail)", async () => {
    s = new BackgroundLoops(1);
    const order: string[] = [];
    const greedy = s.register({
      what: "greedy",
      period_ms: () => 60_000,
      onError: () => undefined,
      round: async () => {
        order.push("g");
        await sleep(1);
        return true;
      },
    });
    for (const name of ["a", "b", "c"]) {
      const h = s.register({
        what: name,
        period_ms: () => 60_000,
        onError: () => undefined,
        round: async () => {
          order.push(name);
          return false;
        },
      });
      h.wake();
    }
    greedy.wake();
    await until(() => order.length >= 12);
    greedy.stop();
    // Every other tenant ran once, all before the greedy loop's second round.
    const second = order.indexOf("g", order.indexOf("g") + 1);
    for (const name of ["a", "b", "c"]) {
      expect(order.filter((x) => x === name)).toHaveLength(1);
      expect(order.indexOf(name)).toBeLessThan(second);
    }
  });

  it("wake() during a round runs exactly one more round right after it", async () => {
    s = new BackgroundLoops(1);
    let rounds = 0;
    let release: () => void = () => undefined;
    const h = s.register({
      what: "x",
      period_ms: () => 60_000,
      onError: () => undefined,
      round: async () => {
        rounds++;
        if (rounds === 1) await new Promise<void>((r) => (release = r));
        return false;
      },
    });
    h.wake();
    await until(() => rounds === 1);
    h.wake();
    h.wake();
    release();
    await until(() => rounds === 2);
    await sleep(50);
    expect(rounds).toBe(2);
  });

  it("period 0 disables a loop, stop() ends it, a failing round is reported and the loop goes on", async () => {
    s = new BackgroundLoops(2);
    let disabledRounds = 0;
    s.register({
      what: "d",
      period_ms: () => 0,
      onError: () => undefined,
      round: () => {
        disabledRounds++;
        return false;
      },
    }).wake();
    const errors: unknown[] = [];
    let failing = 0;
    s.register({
      what: "f",
      period_ms: () => 10,
      onError: (e) => errors.push(e),
      round: async () => {
        failing++;
        throw new Error("boom");
      },
    });
    let stopped = 0;
    const h = s.register({
      what: "s",
      period_ms: () => 10,
      onError: () => undefined,
      round: () => {
        stopped++;
        return false;
      },
    });
    await until(() => failing >= 3 && stopped >= 1);
    h.stop();
    const atStop = stopped;
    await sleep(60);
    expect(stopped).toBe(atStop);
    expect(disabledRounds).toBe(0);
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect((errors[0] as Error).message).toBe("boom");
  });

  it("inline loops run in the tick, outside the limit", async () => {
    s = new BackgroundLoops(1);
    let release: () => void = () => undefined;
    s.register({
      what: "busy",
      period_ms: () => 60_000,
      onError: () => undefined,
      round: () => new Promise<boolean>((r) => (release = () => r(false))),
    }).wake();
    let ticks = 0;
    s.register({
      what: "hk",
      period_ms: () => 10,
      inline: true,
      onError: () => undefined,
      round: () => {
        ticks++;
        return false;
      },
    });
    await until(() => ticks >= 3);
    expect(s.active).toBe(1);
    release();
  });
});
