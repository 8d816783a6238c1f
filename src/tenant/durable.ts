/**
 * Durable small-file writes from the main thread, off its event loop (fs/promises runs in
 * libuv's pool): write a temp file, fsync it, rename over the target, fsync the directory.
 * After a crash the target is either the old or the new content, never a mix.
 */
import { open, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { TEMP_SUFFIX } from "../layers/layer_name.js";

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function writeFileDurable(path: string, data: Uint8Array): Promise<void> {
  const tmp = path + TEMP_SUFFIX;
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}
