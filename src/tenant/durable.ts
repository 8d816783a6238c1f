/**
 * Durable small-file writes from the main thread, off its event loop (fs/promises runs in
 * libuv's pool): write a temp file, fsync it, rename over the target, fsync the directory.
 * After a crash the target is either the old or the new content, never a mix.
 *
 * Invariants:
 * - Every write has its own temp name (`<target>.<pid>.<n>.___temp`): two writers never share
 *   a temp file, so neither renames the other's half-written bytes into place. The name ends
 *   in TEMP_SUFFIX, so startup removes what a crash left (src/layers/layer_name.ts).
 * - One writer per file: writes (and removals) of one path run one after another, in call
 *   order, so the last call's content (or absence) is what stays on disk. The chain of a path is dropped once idle, so
 *   the map holds only paths being written.
 */
import { open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { TEMP_SUFFIX } from "../layers/layer_name.js";
import { assert } from "../types/assert.js";

/** Temp names of this process: `<pid>.<n>` is unique across processes and writes. */
let tempCounter = 0;
/** Per path, the tail of its write chain (only while some write of it is queued or running). */
const chains = new Map<string, Promise<void>>();

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A temp name beside `path`, unique to this write, ending in TEMP_SUFFIX. */
export function uniqueTempPath(path: string): string {
  tempCounter = (tempCounter + 1) % Number.MAX_SAFE_INTEGER;
  const tmp = `${path}.${process.pid}.${tempCounter}${TEMP_SUFFIX}`;
  assert(tmp.endsWith(TEMP_SUFFIX), "temp names end in TEMP_SUFFIX");
  return tmp;
}

/** Write `data` to `path` durably; writes of one path are serialized in call order. */
export function writeFileDurable(path: string, data: Uint8Array): Promise<void> {
  return enqueue(path, () => writeOnce(path, data));
}

/**
 * Remove `path` (if there) durably, after every write of it queued before: a write still in
 * flight never brings the file back after its removal.
 */
export function removeFileDurable(path: string): Promise<void> {
  return enqueue(path, async () => {
    await rm(path, { force: true });
    await fsyncDir(dirname(path));
  });
}

function enqueue(path: string, op: () => Promise<void>): Promise<void> {
  const prev = chains.get(path) ?? Promise.resolve();
  const p = prev.then(op);
  const tail = p.catch(() => undefined);
  chains.set(path, tail);
  void tail.then(() => {
    if (chains.get(path) === tail) chains.delete(path);
  });
  return p;
}

async function writeOnce(path: string, data: Uint8Array): Promise<void> {
  const tmp = uniqueTempPath(path);
  try {
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(dirname(path));
}
