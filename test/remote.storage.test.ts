/**
 * Remote storage backends (src/remote/local_fs.ts, src/remote/s3.ts): one suite run against
 * LocalFs in a temp dir and against S3 on an s3rver on loopback. put/get/head/list/delete,
 * string-prefix listing with pagination, 20 MiB objects as streams, missing keys (not_found),
 * aborted calls (cancelled), invalid keys, and S3 failure classification (no such bucket:
 * permanent; refused and unresponsive endpoints: transient). Plus the storage URL parser.
 */
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalFs } from "../src/remote/local_fs.js";
import { isRemoteError, type RemoteStorage, RemoteStorageError } from "../src/remote/remote_storage.js";
import { S3Storage } from "../src/remote/s3.js";
import { openRemoteStorage, parseRemoteStorageUrl } from "../src/remote/storage_url.js";
import { InvalidArgumentError } from "../src/types/errors.js";
import { TestS3 } from "./support/s3rver.js";

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

function pattern(size_bytes: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size_bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size_bytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, Math.min(i, size_bytes - 4));
  }
  return b;
}

/** A Readable yielding `bytes` in chunks of `chunk_bytes`. */
function chunked(bytes: Buffer, chunk_bytes: number): Readable {
  const parts: Buffer[] = [];
  for (let off = 0; off < bytes.length; off += chunk_bytes) parts.push(bytes.subarray(off, off + chunk_bytes));
  return Readable.from(parts);
}

async function drain(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const s3 = new TestS3();
let localRoot: string;
const backends: Record<string, RemoteStorage> = {};

beforeAll(async () => {
  localRoot = mkdtempSync(join(tmpdir(), "remote-localfs-"));
  await s3.start();
  backends["local"] = openRemoteStorage(parseRemoteStorageUrl(`file://${localRoot}`));
  backends["s3"] = openRemoteStorage(parseRemoteStorageUrl(s3.url("some/prefix")));
});

afterAll(async () => {
  backends["s3"]?.close();
  await s3.destroy();
  rmSync(localRoot, { recursive: true, force: true });
});

describe.each(["local", "s3"])("%s backend", (name) => {
  const st = (): RemoteStorage => backends[name]!;

  it("put, get, head, overwrite", async () => {
    await st().put("t/a/one", new Uint8Array([1, 2, 3]), { size_bytes: 3 });
    expect([...(await st().get("t/a/one"))]).toEqual([1, 2, 3]);
    expect(await st().head("t/a/one")).toEqual({ key: "t/a/one", size_bytes: 3 });
    await st().put("t/a/one", new Uint8Array([9, 8, 7, 6]), { size_bytes: 4 });
    expect([...(await st().get("t/a/one"))]).toEqual([9, 8, 7, 6]);
    await st().put("t/a/empty", new Uint8Array(0), { size_bytes: 0 });
    expect((await st().get("t/a/empty")).byteLength).toBe(0);
    expect((await st().head("t/a/empty")).size_bytes).toBe(0);
  });

  it("list matches by string prefix, recursively, sorted, with sizes", async () => {
    const keys = ["l/x/1", "l/x/2", "l/x/sub/3", "l/xy/4", "l/y/5", "l/x-6"];
    for (const [i, k] of keys.entries()) await st().put(k, new Uint8Array(i + 1), { size_bytes: i + 1 });
    expect((await st().list("l/x/")).map((o) => o.key)).toEqual(["l/x/1", "l/x/2", "l/x/sub/3"]);
    expect((await st().list("l/x")).map((o) => o.key)).toEqual(["l/x-6", "l/x/1", "l/x/2", "l/x/sub/3", "l/xy/4"]);
    expect(await st().list("l/y/")).toEqual([{ key: "l/y/5", size_bytes: 5 }]);
    expect(await st().list("l/none/")).toEqual([]);
    expect(await st().list("nothing-here")).toEqual([]);
    const all = (await st().list("")).map((o) => o.key);
    expect(all).toEqual([...all].sort());
    expect(all).toEqual(expect.arrayContaining(keys));
    const tooMany = await rejection(st().list("l/", { max_keys: 3 }));
    expect(isRemoteError(tooMany, "permanent")).toBe(true);
  });

  it("list pages past 1,000 keys", async () => {
    const n = 1005;
    const keys = Array.from({ length: n }, (_, i) => `many/k${String(i).padStart(5, "0")}`);
    for (let i = 0; i < n; i += 25) {
      await Promise.all(keys.slice(i, i + 25).map((k) => st().put(k, new Uint8Array(1), { size_bytes: 1 })));
    }
    const listed = await st().list("many/");
    expect(listed.length).toBe(n);
    expect(listed.map((o) => o.key)).toEqual(keys);
    await st().delete(keys);
    expect(await st().list("many/")).toEqual([]);
  });

  it("delete is idempotent and takes many keys", async () => {
    await st().put("d/1", new Uint8Array(1), { size_bytes: 1 });
    await st().put("d/2", new Uint8Array(1), { size_bytes: 1 });
    await st().delete(["d/1", "d/2", "d/never-existed"]);
    await st().delete(["d/1"]);
    await st().delete([]);
    expect(await st().list("d/")).toEqual([]);
  });

  it("missing keys are not_found", async () => {
    for (const call of [() => st().get("no/such"), () => st().head("no/such"), () => st().getStream("no/such")]) {
      const e = await rejection(call());
      expect(e).toBeInstanceOf(RemoteStorageError);
      expect((e as RemoteStorageError).kind).toBe("not_found");
      expect((e as RemoteStorageError).key).toBe("no/such");
    }
  });

  it("20 MiB objects: streamed put, get, getStream", async () => {
    const size = 20 * 1024 * 1024;
    const big = pattern(size, 42);
    await st().put("big/obj", chunked(big, 1024 * 1024 + 7), { size_bytes: size });
    expect((await st().head("big/obj")).size_bytes).toBe(size);
    expect(Buffer.from(await st().get("big/obj")).equals(big)).toBe(true);
    const { stream, size_bytes } = await st().getStream("big/obj");
    expect(size_bytes).toBe(size);
    expect((await drain(stream)).equals(big)).toBe(true);
    // Overwrite with a bytes body of another size: readers see the new object whole.
    const other = pattern(size - 12345, 7);
    await st().put("big/obj", other, { size_bytes: other.length });
    expect(Buffer.from(await st().get("big/obj")).equals(other)).toBe(true);
    await st().delete(["big/obj"]);
  });

  it("a body of the wrong size is refused and leaves the old object", async () => {
    await st().put("w/obj", new Uint8Array([1]), { size_bytes: 1 });
    const e = await rejection(st().put("w/obj", new Uint8Array([1, 2]), { size_bytes: 3 }));
    expect(isRemoteError(e, "permanent")).toBe(true);
    expect([...(await st().get("w/obj"))]).toEqual([1]);
    expect((await st().list("w/")).map((o) => o.key)).toEqual(["w/obj"]);
  });

  it("an aborted call is cancelled", async () => {
    const ac = new AbortController();
    ac.abort();
    const calls = [
      () => st().get("t/a/one", { signal: ac.signal }),
      () => st().put("t/a/x", new Uint8Array(1), { size_bytes: 1, signal: ac.signal }),
      () => st().list("t/", { signal: ac.signal }),
      () => st().delete(["t/a/one"], { signal: ac.signal }),
    ];
    for (const call of calls) expect(isRemoteError(await rejection(call()), "cancelled")).toBe(true);
    expect((await st().head("t/a/one")).size_bytes).toBe(4);
    const e = await rejection(st().head("t/a/x"));
    expect(isRemoteError(e, "not_found")).toBe(true);
  });

  it("invalid keys are refused before any I/O", async () => {
    for (const k of ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\\b", "x".repeat(1025)]) {
      expect(await rejection(st().get(k))).toBeInstanceOf(InvalidArgumentError);
      expect(await rejection(st().put(k, new Uint8Array(1), { size_bytes: 1 }))).toBeInstanceOf(InvalidArgumentError);
    }
    expect(await rejection(st().list("../"))).toBeInstanceOf(InvalidArgumentError);
  });
});

describe("LocalFs specifics", () => {
  it("temp files of a failed put are not listed, and keys can't name them", async () => {
    const fs = new LocalFs(localRoot);
    const body = Readable.from(
      (async function* () {
        yield Buffer.alloc(10);
        throw new Error("source failed");
      })(),
    );
    const e = await rejection(fs.put("tmp/obj", body, { size_bytes: 20 }));
    expect(e).toBeInstanceOf(RemoteStorageError);
    expect(await fs.list("tmp/")).toEqual([]);
    expect(await rejection(fs.get("tmp/obj.___rtemp"))).toBeInstanceOf(InvalidArgumentError);
  });

  it("a failed put leaves no temp file; a crash's leftovers go at the next listing once older than a put may run, a fresh one stays", async () => {
    const root = mkdtempSync(join(tmpdir(), "lfs-rtemp-"));
    try {
      const fs = new LocalFs(root, { timeout_ms: 60_000 });
      const body = Readable.from(
        (async function* () {
          yield Buffer.alloc(10);
          throw new Error("source failed");
        })(),
      );
      await rejection(fs.put("a/obj", body, { size_bytes: 20 }));
      expect(readdirSync(join(root, "a"))).toEqual([]);
      // What a kill -9 mid-put leaves: one old temp file, and one of a put still running.
      await fs.put("a/keep", new Uint8Array(3), { size_bytes: 3 });
      const stale = join(root, "a", "obj.0123456789ab.___rtemp");
      const fresh = join(root, "a", "obj.ba9876543210.___rtemp");
      writeFileSync(stale, "x");
      writeFileSync(fresh, "y");
      const old_s = (Date.now() - 120_000) / 1000;
      utimesSync(stale, old_s, old_s);
      expect((await fs.list("a/")).map((o) => o.key)).toEqual(["a/keep"]);
      expect(readdirSync(join(root, "a")).sort()).toEqual(["keep", "obj.ba9876543210.___rtemp"]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("needs an absolute root", () => {
    expect(() => new LocalFs("relative/dir")).toThrow(InvalidArgumentError);
  });
});

describe("S3 failure classification", () => {
  it("no such bucket is permanent", async () => {
    const st = new S3Storage({ bucket: "no-such-bucket", prefix: "", region: "us-east-1", endpoint: s3.endpoint });
    try {
      expect(isRemoteError(await rejection(st.put("k", new Uint8Array(1), { size_bytes: 1 })), "permanent")).toBe(true);
      expect(isRemoteError(await rejection(st.list("")), "permanent")).toBe(true);
    } finally {
      st.close();
    }
  });

  it("a 403 from clock skew or an expired token is transient (it heals); AccessDenied stays permanent", async () => {
    let code = "RequestTimeTooSkewed";
    let status = 403;
    const srv = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(status, { "content-type": "application/xml" });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected</Message></Error>`);
    });
    await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
    const port = (srv.address() as { port: number }).port;
    const st = new S3Storage({ bucket: "b-1", prefix: "", region: "us-east-1", endpoint: `http://127.0.0.1:${port}` });
    try {
      expect(isRemoteError(await rejection(st.put("k", new Uint8Array(1), { size_bytes: 1 })), "transient")).toBe(true);
      code = "ExpiredToken";
      status = 400;
      expect(isRemoteError(await rejection(st.put("k", new Uint8Array(1), { size_bytes: 1 })), "transient")).toBe(true);
      code = "AccessDenied";
      status = 403;
      expect(isRemoteError(await rejection(st.put("k", new Uint8Array(1), { size_bytes: 1 })), "permanent")).toBe(true);
    } finally {
      st.close();
      await new Promise<void>((res) => srv.close(() => res()));
    }
  });

  it("a refused connection is transient", async () => {
    // A port that was just free: nothing listens there.
    const port = await new Promise<number>((res) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => res(p));
      });
    });
    const st = new S3Storage({ bucket: "b-1", prefix: "", region: "us-east-1", endpoint: `http://127.0.0.1:${port}` });
    try {
      expect(isRemoteError(await rejection(st.get("k")), "transient")).toBe(true);
    } finally {
      st.close();
    }
  });

  it("an endpoint that never answers times out as transient", async () => {
    const sockets: Socket[] = [];
    const srv: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
    const port = (srv.address() as { port: number }).port;
    const st = new S3Storage({ bucket: "b-1", prefix: "", region: "us-east-1", endpoint: `http://127.0.0.1:${port}`, timeout_ms: 300 });
    try {
      const e = await rejection(st.get("k"));
      expect(isRemoteError(e, "transient")).toBe(true);
      expect(e.message).toContain("timed out");
    } finally {
      st.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => srv.close(() => res()));
    }
  });
});

describe("storage URL", () => {
  it("parses file and s3 URLs", () => {
    expect(parseRemoteStorageUrl("file:///var/lib/ps/remote")).toEqual({ kind: "local", root_path: "/var/lib/ps/remote", options: {} });
    expect(parseRemoteStorageUrl("file:///var/lib/ps/remote/")).toEqual({ kind: "local", root_path: "/var/lib/ps/remote", options: {} });
    expect(parseRemoteStorageUrl("s3://my-bucket")).toEqual({
      kind: "s3",
      bucket: "my-bucket",
      prefix: "",
      region: "us-east-1",
      endpoint: null,
      options: {},
    });
    expect(parseRemoteStorageUrl("s3://my-bucket/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1")).toEqual({
      kind: "s3",
      bucket: "my-bucket",
      prefix: "a/b",
      region: "eu-west-1",
      endpoint: "http://127.0.0.1:9000",
      options: {},
    });
    // The node's remote options ride along on either scheme.
    expect(parseRemoteStorageUrl("file:///r?detach_timeout_ms=5000&generation_check_interval_ms=0")).toEqual({
      kind: "local",
      root_path: "/r",
      options: { detach_timeout_ms: 5000, generation_check_interval_ms: 0 },
    });
    expect(parseRemoteStorageUrl("s3://bkt/p?generation_check_interval_ms=2500")).toMatchObject({
      options: { generation_check_interval_ms: 2500 },
    });
    expect(parseRemoteStorageUrl(`s3://bkt/p?endpoint=${encodeURIComponent("https://s3.example.com")}`)).toMatchObject({
      endpoint: "https://s3.example.com",
    });
  });

  it("refuses anything else with a clear error", () => {
    const cases: [string, string][] = [
      ["", "empty"],
      ["not a url", "not a URL"],
      ["http://host/x", "unsupported scheme"],
      ["file://host/x", "no host"],
      ["file:///", "filesystem root"],
      ["file:///a?x=1", "no query"],
      ["file:///a?detach_timeout_ms=0", "detach_timeout_ms must be an integer"],
      ["s3://bkt/x?generation_check_interval_ms=-1", "generation_check_interval_ms must be an integer"],
      ["file:///a/%zz", "percent-encoding"],
      ["s3://Bad_Bucket/x", "invalid bucket name"],
      ["s3://ab/x", "invalid bucket name"],
      ["s3://bkt:9000/x", "no port"],
      ["s3://user:pw@bkt/x", "credentials"],
      ["s3://bkt/x?endpoint=ftp://h", "http:// or https://"],
      ["s3://bkt/x?endpoint=nope", "not a URL"],
      ["s3://bkt/x?endpoint=http://h/path", "scheme://host"],
      ["s3://bkt/x?region=US EAST", "invalid region"],
      ["s3://bkt/x?bucket=other", "unknown parameter"],
      ["s3://bkt/a//b", "invalid prefix"],
      ["s3://bkt/x#frag", "fragment"],
    ];
    for (const [url, msg] of cases) {
      let err: unknown = null;
      try {
        parseRemoteStorageUrl(url);
      } catch (e) {
        err = e;
      }
      expect(err, url).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message, url).toContain(msg);
      expect((err as Error).message, url).toContain("expected file:///abs/path or s3://");
    }
  });
});
