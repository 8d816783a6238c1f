/**
 * Small tenant and node modules on their own: SeqWait (src/tenant/seqwait.ts: wake order,
 * timeout message, the MAX_WAITERS bound, shutdown), tenant config (src/tenant/config.ts:
 * durations simple and compound with a format/parse round-trip property, counts, unknown
 * keys, defaults, timer limits), timeline metadata (src/tenant/metadata.ts: round trip,
 * every flipped byte a CorruptionError naming the file, versions, checksummed but malformed
 * bodies) and node config (src/main/config.ts: listen parsing, pageserver.json merged
 * under the flags, unknown keys and bad values refused).
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { crc32c } from "@node-rs/crc32";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_NODE_CONFIG, loadNodeConfig, parseListen } from "../src/main/config.js";
import {
  DEFAULT_TENANT_CONF,
  getpageThrottle,
  l0Thresholds,
  formatDurationMs,
  MAX_TIMER_MS,
  parseDurationMs,
  parseTenantConf,
  TENANT_CONF_KEYS,
} from "../src/tenant/config.js";
import { encodeIndexPart, IndexCorruptError, parseIndexPart } from "../src/remote/index_part.js";
import { decodeMetadata, encodeMetadata, readMetadata, type TimelineMetadata, writeMetadata } from "../src/tenant/metadata.js";
import { MAX_WAITERS, SeqWait } from "../src/tenant/seqwait.js";
import { AssertionError } from "../src/types/assert.js";
import { BadStateError, CorruptionError, InvalidArgumentError, LsnTimeoutError, ShutdownError } from "../src/types/errors.js";
import { generateTimelineId } from "../src/types/ids.js";
import { TokenBucket } from "../src/tenant/throttle.js";
import { asLsn, parseLsn } from "../src/types/lsn.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "ps-units-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

describe("SeqWait", () => {
  it("resolves at once at or below the current LSN, and never goes backwards", async () => {
    const s = new SeqWait(asLsn(100));
    await s.wait(asLsn(100), 10);
    await s.wait(asLsn(0), 10);
    expect(s.waiterCount()).toBe(0);
    expect(s.load()).toBe(100);
    s.advance(asLsn(100)); // equal is fine
    expect(() => s.advance(asLsn(99))).toThrow(AssertionError);
    expect(() => s.advance(asLsn(99))).toThrow("SeqWait went backwards: 0/63 < 0/64");
    expect(s.load()).toBe(100);
  });

  it("wakes waiters in LSN order, only those reached, FIFO among equal LSNs", async () => {
    const s = new SeqWait(asLsn(0));
    const order: string[] = [];
    const ps = [
      s.wait(asLsn(30), 5000).then(() => order.push("30")),
      s.wait(asLsn(10), 5000).then(() => order.push("10a")),
      s.wait(asLsn(20), 5000).then(() => order.push("20")),
      s.wait(asLsn(10), 5000).then(() => order.push("10b")),
      s.wait(asLsn(40), 5000).then(() => order.push("40")),
    ];
    expect(s.waiterCount()).toBe(5);
    s.advance(asLsn(9));
    await Promise.resolve();
    expect(order).toEqual([]);
    s.advance(asLsn(25));
    await Promise.all(ps.slice(1, 4));
    expect(order).toEqual(["10a", "10b", "20"]);
    expect(s.waiterCount()).toBe(2);
    s.advance(asLsn(1000));
    await Promise.all(ps);
    expect(order).toEqual(["10a", "10b", "20", "30", "40"]);
    expect(s.waiterCount()).toBe(0);
  });

  it("times out with a message naming the LSNs, the timeout and the caller's context", async () => {
    const s = new SeqWait(asLsn(0x32));
    const other = s.wait(asLsn(0x1000), 5000);
    const e = await rejection(s.wait(asLsn(0x64), 20, () => "timeline abc"));
    expect(e).toBeInstanceOf(LsnTimeoutError);
    expect((e as LsnTimeoutError).code).toBe("lsn_timeout");
    expect(e.message).toBe("timed out after 20 ms waiting for WAL to reach 0/64: last_record_lsn is 0/32; timeline abc");
    // The timed-out waiter is gone; the other one still waits and still wakes.
    expect(s.waiterCount()).toBe(1);
    const e2 = await rejection(s.wait(asLsn(0x64), 1));
    expect(e2.message).toBe("timed out after 1 ms waiting for WAL to reach 0/64: last_record_lsn is 0/32");
    s.advance(asLsn(0x1000));
    await other;
  });

  it(`refuses the waiter beyond MAX_WAITERS (${MAX_WAITERS}) instead of queueing it`, async () => {
    const s = new SeqWait(asLsn(0));
    const parked: Array<Promise<unknown>> = [];
    for (let i = 0; i < MAX_WAITERS; i++)
      parked.push(
        s.wait(asLsn(1 + (i % 100)), 60_000).then(
          () => "woken",
          (e: unknown) => e,
        ),
      );
    expect(s.waiterCount()).toBe(MAX_WAITERS);
    const e = await rejection(s.wait(asLsn(5), 60_000));
    expect(e).toBeInstanceOf(BadStateError);
    expect(e.message).toBe(`too many readers waiting for WAL (${MAX_WAITERS})`);
    // An LSN already reached needs no slot.
    await s.wait(asLsn(0), 1);
    // Waking some makes room again.
    s.advance(asLsn(50));
    expect(s.waiterCount()).toBe(MAX_WAITERS / 2);
    const late = s.wait(asLsn(60), 60_000);
    s.advance(asLsn(100));
    await late;
    expect(s.waiterCount()).toBe(0);
    expect(new Set(await Promise.all(parked))).toEqual(new Set(["woken"]));
  });

  it("shutdown rejects every waiter and every later wait with its reason", async () => {
    const s = new SeqWait(asLsn(0));
    const a = rejection(s.wait(asLsn(10), 60_000));
    const b = rejection(s.wait(asLsn(20), 60_000));
    s.shutdown("tenant detached");
    expect(s.waiterCount()).toBe(0);
    for (const e of [await a, await b]) {
      expect(e).toBeInstanceOf(ShutdownError);
      expect(e.message).toBe("tenant detached");
    }
    const later = await rejection(s.wait(asLsn(0), 10));
    expect(later).toBeInstanceOf(ShutdownError);
    expect(later.message).toBe("tenant detached");
    const d = new SeqWait(asLsn(0));
    d.shutdown();
    expect((await rejection(d.wait(asLsn(1), 10))).message).toBe("timeline is shutting down");
  });
});

describe("tenant config", () => {
  it("defaults are Neon's, as the README lists them", () => {
    expect(parseTenantConf({})).toEqual(DEFAULT_TENANT_CONF);
    expect(DEFAULT_TENANT_CONF).toEqual({
      checkpoint_distance_bytes: 268435456,
      checkpoint_timeout_ms: 600_000,
      compaction_period_ms: 20_000,
      compaction_threshold: 10,
      compaction_target_size_bytes: 134217728,
      image_creation_threshold: 3,
      gc_horizon_bytes: 67108864,
      gc_period_ms: 3_600_000,
      pitr_interval_ms: 604_800_000,
      wait_lsn_timeout_ms: 300_000,
      materialized_page_cache: true,
      max_frozen_layers: 2,
      l0_flush_delay_threshold: null,
      l0_flush_stall_threshold: null,
      getpage_throttle_rps: 0,
      getpage_throttle_burst: null,
    });
    // Unset L0 thresholds follow compaction_threshold (Neon: delay = 3 ×); 0 turns one off.
    expect(l0Thresholds(DEFAULT_TENANT_CONF)).toEqual({ delay: 30, stall: 50 });
    expect(l0Thresholds(parseTenantConf({ compaction_threshold: 3 }))).toEqual({ delay: 9, stall: 15 });
    expect(l0Thresholds(parseTenantConf({ l0_flush_delay_threshold: 0, l0_flush_stall_threshold: 12 }))).toEqual({ delay: 0, stall: 12 });
    expect(() => parseTenantConf({ max_frozen_layers: 0 })).toThrow(/max_frozen_layers: expected an integer >= 1/);
    expect([...TENANT_CONF_KEYS].sort()).toEqual(
      [
        "checkpoint_distance",
        "checkpoint_timeout",
        "compaction_period",
        "compaction_threshold",
        "compaction_target_size",
        "image_creation_threshold",
        "gc_horizon",
        "gc_period",
        "pitr_interval",
        "wait_lsn_timeout",
        "materialized_page_cache",
        "max_frozen_layers",
        "l0_flush_delay_threshold",
        "l0_flush_stall_threshold",
        "getpage_throttle_rps",
        "getpage_throttle_burst",
      ].sort(),
    );
  });

  it("parses durations in ms, s, m, h, d, fractions and plain milliseconds", () => {
    expect(parseDurationMs("250ms", "x")).toBe(250);
    expect(parseDurationMs("20s", "x")).toBe(20_000);
    expect(parseDurationMs("1.5s", "x")).toBe(1500);
    expect(parseDurationMs("10m", "x")).toBe(600_000);
    expect(parseDurationMs("1h", "x")).toBe(3_600_000);
    expect(parseDurationMs("7d", "x")).toBe(604_800_000);
    expect(parseDurationMs(" 5 s ", "x")).toBe(5000);
    expect(parseDurationMs("0s", "x")).toBe(0);
    expect(parseDurationMs(1234, "x")).toBe(1234);
    expect(parseDurationMs(0, "x")).toBe(0);
  });

  it("parses compound durations as Neon's humantime does: terms summed, blanks optional", () => {
    expect(parseDurationMs("1h30m", "x")).toBe(5_400_000);
    expect(parseDurationMs("1h 30m", "x")).toBe(5_400_000);
    expect(parseDurationMs("2d 3h", "x")).toBe(2 * 86_400_000 + 3 * 3_600_000);
    expect(parseDurationMs("500ms", "x")).toBe(500);
    expect(parseDurationMs("1m 30s", "x")).toBe(90_000);
    expect(parseDurationMs("1m30s500ms", "x")).toBe(90_500);
    expect(parseDurationMs(" 1h  30m ", "x")).toBe(5_400_000);
    // Garbage between, before or after terms, and texts past the length bound, are refused.
    for (const bad of ["1h30", "1h,30m", "h30m", "1h-30m", "1h 30x", "30m 1", "1h 30m garbage", `${"1s".repeat(40)}`]) {
      expect(() => parseDurationMs(bad, "pitr_interval"), bad).toThrow(`pitr_interval: invalid duration ${JSON.stringify(bad)}`);
    }
  });

  it("formatDurationMs then parseDurationMs gives the same milliseconds (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 42 }), (ms) => {
        const text = formatDurationMs(ms);
        expect(parseDurationMs(text, "x"), text).toBe(ms);
      }),
      { numRuns: 2000 },
    );
    expect(formatDurationMs(5_400_000)).toBe("1h 30m");
    expect(formatDurationMs(0)).toBe("0ms");
  });

  it("refuses bad durations with a message naming the setting and the value", () => {
    for (const bad of [
      "1w",
      "-1s",
      "s",
      "",
      "10",
      "1e3s",
      "1.5.2s",
      "10 minutes",
      -5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      null,
      true,
      {},
    ]) {
      expect(() => parseDurationMs(bad, "gc_period"), String(bad)).toThrow(InvalidArgumentError);
      expect(() => parseDurationMs(bad, "gc_period")).toThrow(
        `gc_period: invalid duration ${JSON.stringify(bad)} (e.g. "20s", "10m", "1h", or milliseconds)`,
      );
    }
  });

  it("applies overrides on top of a base without changing it", () => {
    const base = parseTenantConf({ gc_horizon: 1000 });
    const c = parseTenantConf({ checkpoint_distance: 8192, compaction_period: "1s", materialized_page_cache: false }, base);
    expect(c).toEqual({
      ...DEFAULT_TENANT_CONF,
      gc_horizon_bytes: 1000,
      checkpoint_distance_bytes: 8192,
      compaction_period_ms: 1000,
      materialized_page_cache: false,
    });
    expect(base.checkpoint_distance_bytes).toBe(DEFAULT_TENANT_CONF.checkpoint_distance_bytes);
    expect(DEFAULT_TENANT_CONF.gc_horizon_bytes).toBe(64 * 1024 * 1024);
    expect(parseTenantConf({ gc_horizon: 0, compaction_period: 0, gc_period: "0s" })).toMatchObject({
      gc_horizon_bytes: 0,
      compaction_period_ms: 0,
      gc_period_ms: 0,
    });
  });

  it("refuses unknown keys (listing the known ones) and out-of-range counts", () => {
    expect(() => parseTenantConf({ checkpoint_distanse: 1 })).toThrow(
      `unknown tenant config key 'checkpoint_distanse'; known: ${TENANT_CONF_KEYS.join(", ")}`,
    );
    expect(() => parseTenantConf({ checkpoint_distance: 8191 })).toThrow("checkpoint_distance: expected an integer >= 8192, got 8191");
    expect(() => parseTenantConf({ compaction_threshold: 0 })).toThrow("compaction_threshold: expected an integer >= 1, got 0");
    expect(() => parseTenantConf({ image_creation_threshold: 1.5 })).toThrow("image_creation_threshold: expected an integer >= 1, got 1.5");
    expect(() => parseTenantConf({ gc_horizon: "64MB" })).toThrow('gc_horizon: expected an integer >= 0, got "64MB"');
    expect(() => parseTenantConf({ gc_horizon: -1 })).toThrow(InvalidArgumentError);
    expect(() => parseTenantConf({ compaction_target_size: 2 ** 60 })).toThrow(InvalidArgumentError);
    expect(() => parseTenantConf({ materialized_page_cache: "yes" })).toThrow("materialized_page_cache: expected true or false");
  });

  it("refuses timer-driven durations a Node timer cannot wait for (they would fire at once)", () => {
    expect(MAX_TIMER_MS).toBe(2 ** 31 - 1);
    for (const key of ["wait_lsn_timeout", "compaction_period", "gc_period"]) {
      expect(() => parseTenantConf({ [key]: "30d" }), key).toThrow(`${key}: "30d" is longer than ${MAX_TIMER_MS} ms`);
      expect(() => parseTenantConf({ [key]: MAX_TIMER_MS + 1 }), key).toThrow(InvalidArgumentError);
      expect(parseTenantConf({ [key]: "24d" })).toBeDefined();
    }
    // Not timers: long values are fine.
    expect(parseTenantConf({ pitr_interval: "365d", checkpoint_timeout: "30d" })).toMatchObject({
      pitr_interval_ms: 365 * 86_400_000,
      checkpoint_timeout_ms: 30 * 86_400_000,
    });
  });
});

describe("GetPage throttle", () => {
  it("is off by default; burst defaults to rps; bad values are refused", () => {
    expect(getpageThrottle(DEFAULT_TENANT_CONF)).toBeNull();
    expect(getpageThrottle(parseTenantConf({ getpage_throttle_rps: 100 }))).toEqual({ rps: 100, burst: 100 });
    expect(getpageThrottle(parseTenantConf({ getpage_throttle_rps: 0.5 }))).toEqual({ rps: 0.5, burst: 1 });
    expect(getpageThrottle(parseTenantConf({ getpage_throttle_rps: 10, getpage_throttle_burst: 3 }))).toEqual({ rps: 10, burst: 3 });
    expect(() => parseTenantConf({ getpage_throttle_rps: -1 })).toThrow(
      /getpage_throttle_rps: expected a number of requests per second >= 0/,
    );
    expect(() => parseTenantConf({ getpage_throttle_rps: "10" })).toThrow(InvalidArgumentError);
    expect(() => parseTenantConf({ getpage_throttle_burst: 0 })).toThrow(/getpage_throttle_burst: expected an integer >= 1/);
  });

  it("token bucket: a burst free, then waits that repay the debt at rps", () => {
    const b = new TokenBucket(10, 5, 1000);
    for (let i = 0; i < 5; i++) expect(b.take(1, 1000)).toBe(0);
    expect(b.take(1, 1000)).toBeCloseTo(100, 9); // one token short at 10/s
    expect(b.take(2, 1000)).toBeCloseTo(300, 9); // debt queues: 3 tokens short
    expect(b.available(1300)).toBeCloseTo(0, 9);
    // Refill is capped at the burst; a clock going back counts as no time.
    expect(b.available(100_000)).toBe(5);
    expect(b.available(50_000)).toBe(5);
    expect(b.take(5, 100_000)).toBe(0);
    expect(b.take(32, 100_000)).toBeCloseTo(3200, 9);
    b.reconfigure(1000, 2);
    expect(b.matches(1000, 2)).toBe(true);
    expect(b.available(100_000)).toBeCloseTo(-32, 9);
    expect(() => b.take(0, 0)).toThrow(AssertionError);
    expect(() => new TokenBucket(0, 1, 0)).toThrow(AssertionError);
  });
});

describe("timeline metadata", () => {
  const meta: TimelineMetadata = {
    disk_consistent_lsn: parseLsn("1/16B3748"),
    prev_record_lsn: parseLsn("1/16B3710"),
    ancestor_timeline_id: generateTimelineId(),
    ancestor_lsn: parseLsn("0/1000000"),
    latest_gc_cutoff_lsn: parseLsn("0/2000000"),
    initdb_lsn: parseLsn("0/14EE0B0"),
    pg_version: 15,
  };
  const root: TimelineMetadata = { ...meta, prev_record_lsn: null, ancestor_timeline_id: null, ancestor_lsn: asLsn(0) };

  /** A metadata file with a correct header and checksum over an arbitrary body. */
  function sealed(body: string, version = 1): Uint8Array {
    const b = Buffer.from(body, "utf8");
    return Buffer.concat([Buffer.from(`pageserver-timeline-metadata v${version} crc32c=${crc32c(b).toString(16).padStart(8, "0")}\n`), b]);
  }
  function corruption(path: string, bytes: Uint8Array): CorruptionError {
    try {
      decodeMetadata(path, bytes);
    } catch (e) {
      expect(e).toBeInstanceOf(CorruptionError);
      return e as CorruptionError;
    }
    throw new Error("expected a CorruptionError");
  }

  it("round-trips in memory and on disk, with and without ancestor and prev_record_lsn", async () => {
    expect(decodeMetadata("m", encodeMetadata(meta))).toEqual(meta);
    expect(decodeMetadata("m", encodeMetadata(root))).toEqual(root);
    const path = join(dir, "metadata");
    await writeMetadata(path, meta);
    expect(readMetadata(path)).toEqual(meta);
    await writeMetadata(path, root);
    expect(readMetadata(path)).toEqual(root);
    expect(readdirSync(dir).filter((n) => n.startsWith("metadata"))).toEqual(["metadata"]); // no temp left
    const text = Buffer.from(encodeMetadata(meta)).toString("utf8");
    expect(text).toMatch(/^pageserver-timeline-metadata v1 crc32c=[0-9a-f]{8}\n\{/);
    expect(text).toContain('"disk_consistent_lsn":"1/16B3748"');
  });

  it("every flipped byte is a CorruptionError naming the file", () => {
    const good = encodeMetadata(meta);
    const path = "/data/tenants/t/timelines/x/metadata";
    for (let i = 0; i < good.length; i++) {
      for (const mask of [0x01, 0x20, 0x80]) {
        const bad = Uint8Array.from(good);
        bad[i]! ^= mask;
        const e = corruption(path, bad);
        expect(e.path).toBe(path);
        expect(e.code).toBe("corrupt");
        expect(e.message.startsWith(`corrupt file ${path} at block 0: `)).toBe(true);
      }
    }
  });

  it("names what is wrong: checksum, header, version, truncation", () => {
    const good = encodeMetadata(meta);
    const nl = Buffer.from(good).indexOf(10);
    const flipped = Uint8Array.from(good);
    flipped[nl + 5]! ^= 1;
    expect(corruption("f", flipped).message).toBe("corrupt file f at block 0: checksum mismatch");
    expect(corruption("f", good.subarray(0, good.length - 1)).message).toContain("checksum mismatch");
    expect(corruption("f", good.subarray(0, nl)).message).toContain("no header line");
    expect(corruption("f", new Uint8Array(0)).message).toContain("no header line");
    expect(corruption("f", Buffer.from("hello\n{}")).message).toContain("bad header 'hello'");
    const body = Buffer.from(good)
      .subarray(nl + 1)
      .toString("utf8");
    expect(corruption("f", sealed(body, 2)).message).toContain("unsupported format version 2");
    expect(corruption("f", sealed(body, 0)).message).toContain("unsupported format version 0");
  });

  it("a checksummed body that is not valid metadata is a CorruptionError too", () => {
    const j = JSON.parse(Buffer.from(encodeMetadata(meta)).toString("utf8").split("\n")[1]!) as Record<string, unknown>;
    const variant = (patch: Record<string, unknown>): Uint8Array => sealed(JSON.stringify({ ...j, ...patch }));
    expect(corruption("f", sealed("{not json")).message).toContain("bad JSON");
    expect(corruption("f", variant({ disk_consistent_lsn: undefined })).message).toContain("field disk_consistent_lsn missing");
    expect(corruption("f", variant({ initdb_lsn: 5 })).message).toContain("field initdb_lsn missing");
    expect(corruption("f", variant({ pg_version: "15" })).message).toContain("pg_version missing");
    expect(corruption("f", variant({ ancestor_timeline_id: "../x" })).message).toContain("bad ancestor_timeline_id");
    expect(corruption("f", variant({ ancestor_timeline_id: undefined })).message).toContain("bad ancestor_timeline_id");
    // Values of the right type but wrong form.
    expect(corruption("f", variant({ disk_consistent_lsn: "zz" })).message).toContain("disk_consistent_lsn");
    expect(corruption("f", variant({ ancestor_lsn: "FFFFFFFF/FFFFFFFF" })).message).toContain("ancestor_lsn");
    // Not an object at all.
    for (const body of ["null", "[]", "42", '"x"']) expect(corruption("f", sealed(body)).message, body).toContain("not a JSON object");
  });

  it("is one JSON shape with the remote index's metadata, checked by one decoder", () => {
    const j = JSON.parse(Buffer.from(encodeMetadata(meta)).toString("utf8").split("\n")[1]!) as Record<string, unknown>;
    const index = JSON.parse(Buffer.from(encodeIndexPart({ metadata: meta, layers: new Map() })).toString("utf8")) as Record<
      string,
      unknown
    >;
    expect({ format_version: 1, ...(index["metadata"] as object) }).toEqual(j);
    // The index's range of PostgreSQL versions holds for the local file too.
    for (const pg_version of [13, 18, 15.5]) {
      expect(corruption("f", sealed(JSON.stringify({ ...j, pg_version }))).message, String(pg_version)).toContain("pg_version");
      expect(() =>
        parseIndexPart("k", Buffer.from(JSON.stringify({ ...index, metadata: { ...(index["metadata"] as object), pg_version } }))),
      ).toThrow(IndexCorruptError);
    }
  });
});

describe("node config", () => {
  it("parses HOST:PORT, bracketed IPv6 and port 0", () => {
    expect(parseListen("127.0.0.1:9898")).toEqual({ host: "127.0.0.1", port: 9898 });
    expect(parseListen("localhost:0")).toEqual({ host: "localhost", port: 0 });
    expect(parseListen("[::1]:65535")).toEqual({ host: "::1", port: 65535 });
    expect(parseListen("my-host.example.com:80")).toEqual({ host: "my-host.example.com", port: 80 });
  });

  it("refuses anything else with the address in the message", () => {
    for (const bad of ["nope", ":80", "host:", "host:123456", "::1:80", "host:80:80", "host :80", "host:-1", "http://host:80"]) {
      expect(() => parseListen(bad), bad).toThrow(`invalid listen address '${bad}': expected HOST:PORT`);
    }
    expect(() => parseListen("host:65536")).toThrow("invalid port in 'host:65536'");
  });

  it("embedded defaults are enough; the workdir becomes absolute", () => {
    const w = join(dir, "w-defaults");
    const c = loadNodeConfig({ workdir: w });
    expect(c).toEqual({ ...DEFAULT_NODE_CONFIG, workdir: resolve(w) });
    expect(c.listen_http).toEqual({ host: "127.0.0.1", port: 9898 });
    expect(c.page_cache_size_bytes).toBe(64 * 1024 * 1024);
    // The defaults object itself is never modified by a load.
    loadNodeConfig({ workdir: w, listen: "0.0.0.0:1", tenant_config: { gc_horizon: 5 } });
    expect(DEFAULT_NODE_CONFIG.listen_http.port).toBe(9898);
    expect(DEFAULT_NODE_CONFIG.tenant_defaults.gc_horizon_bytes).toBe(DEFAULT_TENANT_CONF.gc_horizon_bytes);
  });

  it("merges pageserver.json over the defaults and the flags over the file", () => {
    const w = mkdtempSync(join(dir, "w-"));
    writeFileSync(
      join(w, "pageserver.json"),
      JSON.stringify({
        listen: "127.0.0.2:7000",
        page_cache_size: 8 * 1024 * 1024,
        flush_threads: "2",
        compaction_threads: 3,
        log_level: "debug",
        log_format: "pretty",
        listen_pg: "127.0.0.2:7001",
        max_concurrent_background_tasks: 2,
        concurrent_tenant_size_logical_size_queries: "3",
        tenant_config: { gc_period: "2h", compaction_threshold: 4 },
      }),
    );
    const fromFile = loadNodeConfig({ workdir: w });
    expect(fromFile.listen_http).toEqual({ host: "127.0.0.2", port: 7000 });
    expect(fromFile.page_cache_size_bytes).toBe(8 * 1024 * 1024);
    expect(fromFile.flush_threads).toBe(2);
    expect(fromFile.compaction_threads).toBe(3);
    expect(fromFile.gc_threads).toBe(1);
    expect(fromFile.log_level).toBe("debug");
    expect(fromFile.log_format).toBe("pretty");
    expect(fromFile.listen_pg).toEqual({ host: "127.0.0.2", port: 7001 });
    expect(fromFile.max_concurrent_background_tasks).toBe(2);
    expect(fromFile.concurrent_tenant_size_logical_size_queries).toBe(3);
    expect(DEFAULT_NODE_CONFIG.concurrent_tenant_size_logical_size_queries).toBe(1);
    expect(fromFile.auth_public_key).toBeNull();
    expect(fromFile.min_free_disk_bytes).toBe(0);
    expect(fromFile.tenant_defaults).toEqual({ ...DEFAULT_TENANT_CONF, gc_period_ms: 7_200_000, compaction_threshold: 4 });
    const flagged = loadNodeConfig({
      workdir: w,
      listen: "127.0.0.1:0",
      page_cache_size: "16777216",
      log_level: "warn",
      tenant_config: { gc_horizon: 0 },
    });
    expect(flagged.listen_http).toEqual({ host: "127.0.0.1", port: 0 });
    expect(flagged.page_cache_size_bytes).toBe(16 * 1024 * 1024);
    expect(flagged.log_level).toBe("warn");
    // Flag tenant settings apply on top of the file's.
    expect(flagged.tenant_defaults).toMatchObject({ gc_period_ms: 7_200_000, compaction_threshold: 4, gc_horizon_bytes: 0 });
  });

  it("refuses unknown keys, bad JSON, non-objects and bad values in pageserver.json, naming the file", () => {
    const w = mkdtempSync(join(dir, "w-"));
    const file = join(w, "pageserver.json");
    const refuses = (content: string, message: string): void => {
      writeFileSync(file, content);
      let err: unknown;
      try {
        loadNodeConfig({ workdir: w });
      } catch (e) {
        err = e;
      }
      expect(err, content).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message, content).toContain(message);
    };
    refuses('{"listen":"127.0.0.1:1","lsiten":"x"}', `${file}: unknown key 'lsiten'`);
    refuses('{"workdir":"/elsewhere"}', `${file}: unknown key 'workdir'`);
    refuses("{listen:", `${file}: `);
    refuses("[]", `${file}: expected a JSON object`);
    refuses("null", `${file}: expected a JSON object`);
    refuses("42", `${file}: expected a JSON object`);
    refuses('{"listen":"nope"}', "invalid listen address 'nope'");
    refuses('{"page_cache_size":0}', "page_cache_size: expected a positive integer, got 0");
    refuses('{"gc_threads":"two"}', 'gc_threads: expected a positive integer, got "two"');
    refuses('{"flush_threads":1.5}', "flush_threads: expected a positive integer, got 1.5");
    refuses('{"tenant_config":{"gc_horizon":-1}}', "gc_horizon: expected an integer >= 0");
    refuses('{"tenant_config":{"nope":1}}', "unknown tenant config key 'nope'");
    refuses('{"log_format":"xml"}', 'log_format: expected one of json, json-iso, pretty, got "xml"');
    refuses('{"http_server":"apache"}', 'http_server: expected one of auto, uws, node, got "apache"');
    refuses('{"min_free_disk_bytes":-1}', "min_free_disk_bytes: expected a non-negative integer, got -1");
    refuses('{"max_concurrent_background_tasks":0}', "max_concurrent_background_tasks: expected a positive integer, got 0");
    refuses(
      '{"concurrent_tenant_size_logical_size_queries":0}',
      "concurrent_tenant_size_logical_size_queries: expected a positive integer, got 0",
    );
    refuses('{"log_level":"verbose"}', 'log_level: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"');
  });

  it("refuses bad flag values too", () => {
    const w = join(dir, "w-flags");
    expect(() => loadNodeConfig({ workdir: w, listen: "nope" })).toThrow("invalid listen address 'nope': expected HOST:PORT");
    expect(() => loadNodeConfig({ workdir: w, page_cache_size: "-8192" })).toThrow("page_cache_size: expected a positive integer");
    expect(() => loadNodeConfig({ workdir: w, log_level: "loud" })).toThrow(InvalidArgumentError);
    expect(() => loadNodeConfig({ workdir: w, http_server: "UWS" })).toThrow('http_server: expected one of auto, uws, node, got "UWS"');
    expect(loadNodeConfig({ workdir: w }).http_server).toBe("auto");
    expect(loadNodeConfig({ workdir: w, http_server: "node" }).http_server).toBe("node");
  });
});
