/**
 * `pagectl endpoint start --tablespace-mapping OLD=NEW` on an unpacked base backup (no
 * PostgreSQL needed): OLD parsed as pg_basebackup does (`\=` inside a name), found by original
 * location or OID in pageserver_tablespaces.json; the in-place directory moves to NEW and
 * pg_tblspc/<oid> becomes a symlink to it; what can't be done is refused before anything moves.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { applyTablespaceMappings, parseTablespaceMapping } from "../src/cli/endpoint.js";
import { encodeTablespacesFile, TABLESPACES_FILE } from "../src/types/tablespaces_file.js";

let dir = "";
afterEach(() => {
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
  dir = "";
});

/** A data directory with an in-place tablespace 16390 (originally in place) and 16391 (originally /srv/ts2). */
function backup(): string {
  dir = mkdtempSync(join(tmpdir(), "ps-tsmap-"));
  const pgdata = join(dir, "data");
  for (const oid of [16390, 16391]) {
    mkdirSync(join(pgdata, "pg_tblspc", String(oid), "PG_15_202209061", "5"), { recursive: true });
    writeFileSync(join(pgdata, "pg_tblspc", String(oid), "PG_15_202209061", "5", "16384"), `rel of ${oid}`);
  }
  writeFileSync(
    join(pgdata, TABLESPACES_FILE),
    encodeTablespacesFile([
      { oid: 16390, location: "" },
      { oid: 16391, location: "/srv/ts2" },
    ]),
  );
  return pgdata;
}

describe("--tablespace-mapping", () => {
  it("parses OLD=NEW as pg_basebackup does", () => {
    expect(parseTablespaceMapping("/srv/ts2=/data/ts2")).toEqual({ old: "/srv/ts2", new: "/data/ts2" });
    expect(parseTablespaceMapping("/srv/a\\=b=/data/x/../y")).toEqual({ old: "/srv/a=b", new: "/data/y" });
    for (const bad of ["/srv/ts2", "=/x", "/a=", "/a=/b=/c", "/a=relative"])
      expect(() => parseTablespaceMapping(bad), bad).toThrow(/--tablespace-mapping/);
  });

  it("moves a tablespace found by its original location or its OID and leaves a symlink", () => {
    const pgdata = backup();
    const done = applyTablespaceMappings(pgdata, [
      { old: "/srv/ts2", new: join(dir, "new2") },
      { old: "16390", new: join(dir, "a", "new1") },
    ]);
    expect(done).toEqual([
      { oid: 16391, from: "/srv/ts2", to: join(dir, "new2") },
      { oid: 16390, from: "", to: join(dir, "a", "new1") },
    ]);
    expect(readlinkSync(join(pgdata, "pg_tblspc", "16391"))).toBe(join(dir, "new2"));
    expect(readFileSync(join(pgdata, "pg_tblspc", "16391", "PG_15_202209061", "5", "16384"), "utf8")).toBe("rel of 16391");
    expect(readFileSync(join(dir, "a", "new1", "PG_15_202209061", "5", "16384"), "utf8")).toBe("rel of 16390");
  });

  it("refuses an unknown OLD, a non-empty NEW, one target twice, before moving anything", () => {
    const pgdata = backup();
    expect(() => applyTablespaceMappings(pgdata, [{ old: "/srv/nope", new: join(dir, "n") }])).toThrow(
      /has no tablespace \/srv\/nope \(it has: 16390 \(in place\), 16391 \(\/srv\/ts2\)\)/,
    );
    mkdirSync(join(dir, "full"));
    writeFileSync(join(dir, "full", "x"), "");
    expect(() => applyTablespaceMappings(pgdata, [{ old: "16391", new: join(dir, "full") }])).toThrow(/is not empty/);
    expect(() =>
      applyTablespaceMappings(pgdata, [
        { old: "16391", new: join(dir, "same") },
        { old: "16390", new: join(dir, "same") },
      ]),
    ).toThrow(/target of two tablespaces/);
    expect(existsSync(join(pgdata, "pg_tblspc", "16390", "PG_15_202209061", "5", "16384"))).toBe(true);
    expect(readlinkSync.bind(null, join(pgdata, "pg_tblspc", "16391"))).toThrow();
  });
});
