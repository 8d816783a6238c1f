/**
 * WorkdirLock: one pageserver per workdir. Two processes on one workdir would load the same
 * tenants and write the same files, so `start` takes `<workdir>/pageserver.pid` first and a
 * second process refuses to start, naming the holder's pid.
 *
 * The file holds the owner's pid. It is created with link(2) from a temp file, which fails
 * when the file exists, so of two processes racing for a free workdir exactly one wins. A
 * file whose pid is not a live process is stale (a crashed pageserver: kill -9, power loss)
 * and is taken over. A file holding this very process's pid is a Server of this process that
 * never stopped (a test's simulated crash): taken over too. Node has no flock(2), so unlike
 * Neon's lock this one can be fooled by a reused pid; the pid is also in the refusal message,
 * so an operator can check it.
 *
 * Invariant: while held, the file names this process; release() removes it only then.
 */
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConflictError } from "../types/errors.js";

export const WORKDIR_LOCK_FILE = "pageserver.pid";
/** Attempts at taking the lock (each: create, or find a stale holder and replace it). */
const MAX_LOCK_ATTEMPTS = 8;

/** True when `pid` names a live process (EPERM: it exists, owned by another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function holderOf(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  const pid = Number(text);
  // An unreadable file is what a crash between create and write leaves: stale.
  return Number.isSafeInteger(pid) && pid > 0 ? pid : 0;
}

export class WorkdirLock {
  readonly path: string;
  private held = false;

  private constructor(path: string) {
    this.path = path;
  }

  /** Take the lock of `workdir` (which exists), or throw a ConflictError naming the holder. */
  static acquire(workdir: string): WorkdirLock {
    const lock = new WorkdirLock(join(workdir, WORKDIR_LOCK_FILE));
    const temp = `${lock.path}.${process.pid}.___temp`;
    writeFileSync(temp, `${process.pid}\n`);
    try {
      for (let attempt = 0; attempt < MAX_LOCK_ATTEMPTS; attempt++) {
        try {
          linkSync(temp, lock.path);
          lock.held = true;
          return lock;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        }
        const holder = holderOf(lock.path);
        if (holder === null) continue; // released meanwhile: try again
        if (holder !== process.pid && holder !== 0 && alive(holder)) {
          throw new ConflictError(
            `workdir ${workdir} is in use by the pageserver with pid ${holder} (${WORKDIR_LOCK_FILE}); stop it first`,
          );
        }
        // Stale: replace it in one step (rename over it), then check that we are the holder.
        const mine = `${lock.path}.${process.pid}.stale.___temp`;
        writeFileSync(mine, `${process.pid}\n`);
        renameSync(mine, lock.path);
        if (holderOf(lock.path) === process.pid) {
          lock.held = true;
          return lock;
        }
      }
      throw new ConflictError(`workdir ${workdir}: ${WORKDIR_LOCK_FILE} kept changing under ${MAX_LOCK_ATTEMPTS} attempts to take it`);
    } finally {
      unlinkSync(temp);
    }
  }

  /** Give the lock back (only if the file still names this process). */
  release(): void {
    if (!this.held) return;
    this.held = false;
    if (holderOf(this.path) === process.pid) unlinkSync(this.path);
  }
}
