/**
 * The node's error serializer (src/main/log_serializers.ts, issue 16 item 13): an error that
 * holds a live object (a layer, and through it a page cache of megabytes) logs as a short
 * line with the object's class name; plain fields, codes, causes and nesting stay readable
 * and bounded. Checked through a Server's logger, as every node log line is written.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { errorForLog } from "../src/main/log_serializers.js";
import { Server } from "../src/main/server.js";
import { BadStateError, PageserverError } from "../src/types/errors.js";
import { LogCapture } from "./support/log_check.js";

class BigThing {
  readonly data = new Uint8Array(1 << 20);
  readonly self = this;
  readonly map = new Map([[1, 2]]);
}

class HoldsAThing extends PageserverError {
  readonly thing = new BigThing();
  readonly layer_name = "000-FFF__0000000001-0000000002";
  readonly attempts = 3;
  readonly detail = { path: "/x/y", sizes: Array.from({ length: 1000 }, (_, i) => i), deep: { a: { b: { c: { d: 1 } } } } };
  readonly long = "z".repeat(100_000);
}

const dir = mkdtempSync(join(tmpdir(), "ps-logser-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("bounded error serializer", () => {
  it("a Server's log line of an error holding a live object is small and names it by class", () => {
    const logs = new LogCapture();
    const s = new Server(loadNodeConfig({ workdir: dir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), logs.logger);
    try {
      const e = new HoldsAThing("bad_state", "held", { cause: new Error("the cause") });
      s.log.child({ tenant_id: "t" }).info({ err: e }, "probe");
      const [line] = logs.find(/^probe$/);
      expect(line).toBeDefined();
      const text = JSON.stringify(line!.raw);
      expect(text.length).toBeLessThan(8192);
      const err = line!.raw["err"] as Record<string, unknown>;
      expect(err["type"]).toBe("HoldsAThing");
      expect(err["message"]).toMatch(/held.*the cause/s);
      expect(err["code"]).toBe("bad_state");
      expect(err["thing"]).toBe("[BigThing]");
      expect(err["layer_name"]).toBe("000-FFF__0000000001-0000000002");
      expect(err["attempts"]).toBe(3);
      const detail = err["detail"] as { path: string; sizes: unknown[]; deep: unknown };
      expect(detail.path).toBe("/x/y");
      expect(detail.sizes.length).toBe(33);
      expect(detail.sizes[32]).toBe("… 968 more");
      expect(JSON.stringify(detail.deep)).toBe('{"a":{"b":"[Object]"}}');
      expect((err["long"] as string).length).toBeLessThan(2200);
    } finally {
      void s.stop().catch(() => undefined);
    }
  });

  it("non-errors pass through bounded; errors nested in fields keep type and message", () => {
    expect(errorForLog("plain")).toBe("plain");
    expect(errorForLog(null)).toBe(null);
    const inner = new BadStateError("inner");
    const outer = Object.assign(new Error("outer"), { other: inner, buf: Buffer.alloc(1 << 16) });
    const out = errorForLog(outer) as Record<string, unknown>;
    expect((out["other"] as Record<string, unknown>)["message"]).toBe("inner");
    expect(out["buf"]).toBe("[Buffer]");
  });
});
