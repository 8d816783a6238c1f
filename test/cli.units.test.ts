/**
 * pagectl's pieces without a server: argument parsing (usage errors name the argument),
 * tables, the hexdump, and unpacking a base backup tar safely (nothing lands outside the
 * data directory; only files and directories).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tar from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { argHostPort, argLsn, argRel, argSettings, argTime, UsageError } from "../src/cli/args.js";
import { untar } from "../src/cli/endpoint.js";
import { hexdump } from "../src/cli/hexdump.js";
import { formatBytes, formatRecord, formatTable } from "../src/cli/table.js";

const dir = mkdtempSync(join(tmpdir(), "ps-cli-units-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A tar of `entries` (name, type, content). */
async function* tarOf(
  entries: { name: string; type?: "file" | "directory" | "symlink"; body?: string; linkname?: string }[],
): AsyncGenerator<Uint8Array> {
  const pack = tar.pack();
  for (const e of entries) {
    const type = e.type ?? "file";
    if (type === "file") pack.entry({ name: e.name, type }, e.body ?? "");
    else pack.entry({ name: e.name, type, linkname: e.linkname });
  }
  pack.finalize();
  for await (const chunk of pack) yield chunk as Uint8Array;
}

describe("arguments", () => {
  it("LSNs, times, relations, host:port, settings", () => {
    expect(argLsn("--lsn", "0/16b3748")).toBe("0/16B3748");
    expect(() => argLsn("--lsn", "16B3748")).toThrow(UsageError);
    expect(() => argLsn("--lsn", "1/2/3")).toThrow(/invalid --lsn '1\/2\/3'/);
    // RFC 3339 is passed on as written (microseconds kept); other forms become UTC ISO.
    expect(argTime("--at", "2026-01-02T03:04:05.123456+02:00")).toBe("2026-01-02T03:04:05.123456+02:00");
    expect(argTime("--at", "2026-01-02 03:04:05Z")).toBe("2026-01-02T03:04:05Z");
    expect(argTime("--at", "Jan 2, 2026 03:04:05 UTC")).toBe("2026-01-02T03:04:05.000Z");
    expect(() => argTime("--at", "yesterday-ish")).toThrow(/invalid --at/);
    expect(argRel("1663/5/16384")).toEqual({ spcnode: 1663, dbnode: 5, relnode: 16384, forknum: 0 });
    expect(argRel("1663/5/16384.vm").forknum).toBe(2);
    expect(argRel("1663/5/16384.3").forknum).toBe(3);
    expect(() => argRel("1663/5/16384.toast")).toThrow(/invalid fork/);
    expect(() => argRel("1663/5/4294967296")).toThrow(/relation oid/);
    expect(() => argRel("1663/5")).toThrow(UsageError);
    expect(argHostPort("--pg-server", "[::1]:6400")).toEqual({ host: "::1", port: 6400 });
    expect(() => argHostPort("--pg-server", "localhost")).toThrow(/host:port/);
    expect(() => argHostPort("--pg-server", "h:70000")).toThrow(/1\.\.65535/);
    expect(argSettings(["a=1", "b=true", "c=10m", "d=", "e=x=y", "f=-2.5"])).toEqual({ a: 1, b: true, c: "10m", d: "", e: "x=y", f: -2.5 });
    expect(() => argSettings(["=1"])).toThrow(/key=value/);
    expect(() => argSettings(["novalue"])).toThrow(/key=value/);
  });
});

describe("output", () => {
  it("tables align columns, numbers right; records align keys", () => {
    const t = formatTable(
      [
        { name: "a", size: 1, note: null },
        { name: "longer", size: 12345, note: "x" },
      ],
      [
        { header: "name", value: (r) => r.name },
        { header: "size", value: (r) => r.size, right: true },
        { header: "note", value: (r) => r.note },
      ],
    );
    expect(t.split("\n")).toEqual(["NAME     SIZE  NOTE", "a           1  -", "longer  12345  x"]);
    expect(formatRecord({ a: 1, long_key: { x: 1 } })).toBe('a         1\nlong_key  {"x":1}');
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(8192)).toBe("8.0 KiB");
    expect(formatBytes(3 * 1024 * 1024 * 1024)).toBe("3.0 GiB");
  });

  it("hexdump as hexdump -C: repeated lines collapse to *", () => {
    const page = new Uint8Array(8192);
    page.set([0x41, 0x42, 0x00, 0xff], 0);
    page[8191] = 1;
    const lines = hexdump(page).split("\n");
    expect(lines[0]).toBe("00000000  41 42 00 ff 00 00 00 00  00 00 00 00 00 00 00 00  |AB..............|");
    expect(lines[1]).toBe("00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|");
    expect(lines[2]).toBe("*");
    expect(lines[3]).toBe("00001ff0  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 01  |................|");
    expect(lines[4]).toBe("00002000");
    expect(lines).toHaveLength(5);
    expect(hexdump(new Uint8Array([0x61])).split("\n")[0]).toBe(`00000000  61${"   ".repeat(7)}  ${"   ".repeat(7)}    |a|`);
  });
});

describe("untar", () => {
  it("unpacks files and directories (0600 / 0700)", async () => {
    const root = mkdtempSync(join(dir, "ok-"));
    const r = await untar(
      tarOf([
        { name: "global/", type: "directory" },
        { name: "global/pg_control", body: "ctl" },
        { name: "base/1/1259", body: "x".repeat(10_000) },
        { name: "PG_VERSION", body: "15\n" },
      ]),
      root,
    );
    expect(r).toEqual({ files: 3, size_bytes: 3 + 10_000 + 3 });
    expect(readFileSync(join(root, "global/pg_control"), "utf8")).toBe("ctl");
    expect(readFileSync(join(root, "base/1/1259"), "utf8")).toHaveLength(10_000);
    expect(statSync(join(root, "PG_VERSION")).mode & 0o777).toBe(0o600);
    expect(statSync(join(root, "base/1")).mode & 0o777).toBe(0o700);
  });

  it("refuses entries outside the data directory, links and other types", async () => {
    for (const bad of [
      { name: "../escape", body: "x" },
      { name: "base/../../escape", body: "x" },
      { name: "/etc/escape", body: "x" },
    ]) {
      const root = mkdtempSync(join(dir, "bad-"));
      await expect(untar(tarOf([bad]), root)).rejects.toThrow(/outside the data directory/);
      expect(readdirSync(dir).filter((f) => f === "escape")).toEqual([]);
    }
    const root = mkdtempSync(join(dir, "link-"));
    await expect(untar(tarOf([{ name: "pg_tblspc/16400", type: "symlink", linkname: "/tmp" }]), root)).rejects.toThrow(
      /is a symlink: only files and directories/,
    );
  });

  it("a truncated archive is an error, not a short data directory", async () => {
    const root = mkdtempSync(join(dir, "trunc-"));
    const chunks: Uint8Array[] = [];
    for await (const c of tarOf([{ name: "big", body: "y".repeat(100_000) }])) chunks.push(c);
    const whole = Buffer.concat(chunks);
    async function* cut(): AsyncGenerator<Uint8Array> {
      yield whole.subarray(0, 50_000);
    }
    await expect(untar(cut(), root)).rejects.toThrow();
  });
});
