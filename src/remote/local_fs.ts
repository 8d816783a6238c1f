/**
 * LocalFs: remote storage in a local directory (the embedded default, and the twin of S3 in
 * tests). Key `a/b/c` is the file `<root>/a/b/c`.
 *
 * Invariants:
 * - put is atomic: the body goes to a unique temp file beside the target, is fsynced, renamed
 *   over the target, and the directory fsynced; a crash leaves the old object or the new one,
 *   plus at worst a temp file that list() never shows (its name ends in TEMP_MARK). A failed
 *   put removes its temp file; a crash's leftovers are removed by the next list() that walks
 *   their directory (at startup every timeline lists its prefix) once they are older than the
 *   call timeout: no put still running (of this node or another sharing the directory) can
 *   own them then.
 * - A key never names a temp file (checkKey + the TEMP_MARK check), so objects and temp files
 *   can't collide.
 * - delete is idempotent; list walks at most MAX_WALK_DIRS directories.
 */
import { randomBytes } from "node:crypto";
import type { Dirent } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { addAbortSignal, type Readable } from "node:stream";
import { fsyncDir } from "../layers/durable_file.js";
import { assert } from "../types/assert.js";
import { InvalidArgumentError } from "../types/errors.js";
import {
  abortError,
  type ListOptions,
  type PutOptions,
  type RemoteCallOptions,
  type RemoteObject,
  type RemoteStorage,
  RemoteStorageError,
  callSignal,
  checkKey,
  checkPrefix,
  DEFAULT_TIMEOUT_MS,
  MAX_LIST_KEYS,
} from "./remote_storage.js";

const TEMP_MARK = ".___rtemp";
const MAX_WALK_DIRS = 1_000_000;

/** fs error codes that no retry will fix. */
const PERMANENT_CODES = new Set(["EACCES", "EPERM", "EISDIR", "ENOTDIR", "ENAMETOOLONG", "EROFS", "EEXIST"]);

export class LocalFs implements RemoteStorage {
  readonly root: string;
  readonly description: string;
  private readonly timeout_ms: number;

  constructor(root: string, opts: { timeout_ms?: number } = {}) {
    if (!isAbsolute(root)) throw new InvalidArgumentError(`LocalFs root must be an absolute path: '${root}'`);
    this.root = root;
    this.description = `file://${root}`;
    this.timeout_ms = opts.timeout_ms ?? DEFAULT_TIMEOUT_MS;
  }

  private pathOf(key: string): string {
    checkKey(key);
    if (key.endsWith(TEMP_MARK)) throw new InvalidArgumentError(`remote key '${key}' ends in the reserved suffix ${TEMP_MARK}`);
    return join(this.root, key);
  }

  async put(key: string, body: Uint8Array | Readable, opts: PutOptions): Promise<void> {
    const path = this.pathOf(key);
    assert(Number.isSafeInteger(opts.size_bytes) && opts.size_bytes >= 0, "put: size_bytes must be a byte count");
    const signal = callSignal(opts, this.timeout_ms);
    const tmp = `${path}.${randomBytes(6).toString("hex")}${TEMP_MARK}`;
    try {
      signal.throwIfAborted();
      await mkdir(dirname(path), { recursive: true });
      const fh = await open(tmp, "w", 0o600);
      let written = 0;
      try {
        if (body instanceof Uint8Array) {
          signal.throwIfAborted();
          await fh.writeFile(body);
          written = body.byteLength;
        } else {
          // The signal also ends a source that stalls.
          for await (const chunk of addAbortSignal(signal, body) as AsyncIterable<Uint8Array>) {
            written += chunk.byteLength;
            if (written > opts.size_bytes) break;
            await fh.write(chunk);
          }
        }
        if (written !== opts.size_bytes) {
          throw new RemoteStorageError("permanent", key, `body is ${written} bytes, expected ${opts.size_bytes}`);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      signal.throwIfAborted();
      await rename(tmp, path);
      await fsyncDir(dirname(path));
    } catch (e) {
      if (!(body instanceof Uint8Array)) body.destroy();
      await rm(tmp, { force: true }).catch(() => undefined);
      throw this.classify(key, e, opts, signal);
    }
  }

  async get(key: string, opts?: RemoteCallOptions): Promise<Uint8Array> {
    const path = this.pathOf(key);
    const signal = callSignal(opts, this.timeout_ms);
    try {
      return await readFile(path, { signal });
    } catch (e) {
      throw this.classify(key, e, opts, signal);
    }
  }

  async getStream(key: string, opts?: RemoteCallOptions): Promise<{ stream: Readable; size_bytes: number }> {
    const path = this.pathOf(key);
    const signal = callSignal(opts, this.timeout_ms);
    try {
      signal.throwIfAborted();
      const fh = await open(path, "r");
      try {
        const st = await fh.stat();
        const stream = addAbortSignal(signal, fh.createReadStream());
        return { stream, size_bytes: st.size };
      } catch (e) {
        await fh.close();
        throw e;
      }
    } catch (e) {
      throw this.classify(key, e, opts, signal);
    }
  }

  async head(key: string, opts?: RemoteCallOptions): Promise<RemoteObject> {
    const path = this.pathOf(key);
    const signal = callSignal(opts, this.timeout_ms);
    try {
      signal.throwIfAborted();
      const st = await stat(path);
      if (!st.isFile()) throw new RemoteStorageError("not_found", key, "not an object (a directory)");
      return { key, size_bytes: st.size };
    } catch (e) {
      throw this.classify(key, e, opts, signal);
    }
  }

  async list(prefix: string, opts?: ListOptions): Promise<RemoteObject[]> {
    checkPrefix(prefix);
    const max_keys = opts?.max_keys ?? MAX_LIST_KEYS;
    const signal = callSignal(opts, this.timeout_ms);
    // Walk only the directory that holds the prefix's last complete component.
    const slash = prefix.lastIndexOf("/");
    const startRel = slash < 0 ? "" : prefix.slice(0, slash);
    const out: RemoteObject[] = [];
    const dirs: string[] = [startRel];
    let walked = 0;
    try {
      while (dirs.length > 0) {
        signal.throwIfAborted();
        walked++;
        if (walked > MAX_WALK_DIRS)
          throw new RemoteStorageError("permanent", prefix, `more than ${MAX_WALK_DIRS} directories under the prefix`);
        const rel = dirs.pop()!;
        let entries: Dirent[];
        try {
          entries = await readdir(join(this.root, rel), { withFileTypes: true });
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === "ENOENT" || code === "ENOTDIR") continue;
          throw e;
        }
        for (const ent of entries) {
          const k = rel === "" ? ent.name : `${rel}/${ent.name}`;
          if (ent.isDirectory()) {
            // Descend only where keys can still match the prefix.
            if (prefix.startsWith(`${k}/`) || k.startsWith(prefix)) dirs.push(k);
          } else if (ent.isFile() && ent.name.endsWith(TEMP_MARK)) {
            await this.removeStaleTemp(join(this.root, k));
          } else if (ent.isFile() && k.startsWith(prefix)) {
            if (out.length >= max_keys) throw new RemoteStorageError("permanent", prefix, `more than ${max_keys} keys under the prefix`);
            let size_bytes: number;
            try {
              size_bytes = (await stat(join(this.root, k))).size;
            } catch (e) {
              // Deleted since readdir: S3's listing would not show it either.
              if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
              throw e;
            }
            out.push({ key: k, size_bytes });
          }
        }
      }
    } catch (e) {
      throw this.classify(prefix, e, opts, signal);
    }
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return out;
  }

  /** A temp file older than any put may run (timeout_ms) is a crash's leftover: removed, best effort. */
  private async removeStaleTemp(path: string): Promise<void> {
    try {
      const st = await stat(path);
      if (Date.now() - st.mtimeMs <= this.timeout_ms) return;
      await unlink(path);
    } catch {
      // Gone already, or not ours to remove: a later listing tries again.
    }
  }

  async delete(keys: readonly string[], opts?: RemoteCallOptions): Promise<void> {
    const paths = keys.map((k) => this.pathOf(k));
    const signal = callSignal(opts, this.timeout_ms);
    const dirs = new Set<string>();
    for (let i = 0; i < paths.length; i++) {
      try {
        signal.throwIfAborted();
        await unlink(paths[i]!);
        dirs.add(dirname(paths[i]!));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw this.classify(keys[i]!, e, opts, signal);
      }
    }
    for (const d of dirs) await fsyncDir(d).catch(() => undefined);
  }

  close(): void {
    // Nothing held between calls.
  }

  private classify(key: string, e: unknown, opts: RemoteCallOptions | undefined, signal: AbortSignal): RemoteStorageError {
    if (e instanceof RemoteStorageError) return e;
    const err = e as NodeJS.ErrnoException;
    if (signal.aborted) return abortError(key, opts, e);
    if (err?.code === "ENOENT") return new RemoteStorageError("not_found", key, "no such object", { cause: e });
    if (err?.code !== undefined && PERMANENT_CODES.has(err.code)) {
      return new RemoteStorageError("permanent", key, `${err.code}: ${err.message}`, { cause: e });
    }
    return new RemoteStorageError("transient", key, err?.message ?? String(e), { cause: e });
  }
}
