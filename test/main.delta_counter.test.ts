/**
 * deltaCounter (src/main/delta_counter.ts), the one "counter from a running total kept
 * elsewhere" of the node's metrics, on a real prom-client Registry: each scrape adds the
 * increase since the last; a total that went down adds nothing and counting resumes from it;
 * a new owner of a series counts from 0; every series read shows, at 0 before any event.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { type DeltaSample, deltaCounter } from "../src/main/delta_counter.js";

async function value(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
}

describe("deltaCounter", () => {
  it("adds the increase of an unlabelled total; a lower total adds nothing and counting resumes from it", async () => {
    const registry = new Registry();
    let total = 0;
    deltaCounter({ name: "t_total", help: "t", registers: [registry], read: () => [{ labels: {}, total }] });
    expect(await value(registry, "t_total")).toBe(0);
    total = 5;
    expect(await value(registry, "t_total")).toBe(5);
    expect(await value(registry, "t_total")).toBe(5);
    total = 2;
    expect(await value(registry, "t_total")).toBe(5);
    total = 4;
    expect(await value(registry, "t_total")).toBe(7);
  });

  it("keys a series by its owner when it names one: a new owner counts from 0", async () => {
    const registry = new Registry();
    const first = { errors: 3 };
    const second = { errors: 1 };
    let sources: { errors: number }[] = [first];
    const read = (): DeltaSample<"source">[] => sources.map((s) => ({ labels: { source: "a" }, total: s.errors, owner: s }));
    deltaCounter({ name: "e_total", help: "e", labelNames: ["source"], registers: [registry], read });
    expect(await value(registry, "e_total", { source: "a" })).toBe(3);
    first.errors = 4;
    expect(await value(registry, "e_total", { source: "a" })).toBe(4);
    // The source is replaced: all of the new one's total is an increase of the same series.
    sources = [second];
    expect(await value(registry, "e_total", { source: "a" })).toBe(5);
    // The old owner, gone for a scrape, is forgotten: back, its whole total counts again.
    sources = [first];
    expect(await value(registry, "e_total", { source: "a" })).toBe(9);
  });

  it("touches every labelled series it reads, so each shows at 0 before its first event", async () => {
    const registry = new Registry();
    deltaCounter({
      name: "k_total",
      help: "k",
      labelNames: ["kind"],
      registers: [registry],
      read: () => [
        { labels: { kind: "x" }, total: 0 },
        { labels: { kind: "y" }, total: 2 },
      ],
    });
    expect(await value(registry, "k_total", { kind: "x" })).toBe(0);
    expect(await value(registry, "k_total", { kind: "y" })).toBe(2);
  });
});
