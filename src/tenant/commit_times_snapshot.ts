/**
 * The commit-time index in remote storage (docs/storage.md "Commit-time index in remote
 * storage"):
 * snapshot() frames
 * both files as they are durably (after the saves and trims before it) into one object the
 * upload queue puts before the index_part.json that names it; writeCommitTimesSnapshot()
 * lays such an object down as the two files of a timeline directory being attached, and the
 * timeline's load() then checks every seal and the chain as for its own files.
 *
 *
 *   snapshot: magic u32 'PSCR' | version u16 | flags u16 (1: has tail) | main length u32 |
 *             CRC32C u32 of what follows | `commit_times` | `commit_times.tail` (if flagged)
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { crc32c } from "@node-rs/crc32";
import { BLOCK_SIZE } from "../layers/block_seal.js";
import { removeFileDurable, writeFileDurable } from "../layers/durable_file.js";
import { readU16BE, readU32BE, writeU16BE, writeU32BE } from "../types/bytes.js";
import { CorruptionError } from "../types/errors.js";
import { COMMIT_TIMES_FILE, COMMIT_TIMES_LEGACY_FILE, COMMIT_TIMES_TAIL_FILE, MAX_BLOCKS } from "./commit_time_format.js";

const SNAP_MAGIC = 0x50534352; // 'PSCR'
const SNAP_VERSION = 1;
const SNAP_HAS_TAIL = 1;
const SNAP_HEADER_BYTES = 16;
/** A snapshot larger than this is refused (2^24 blocks is the index's own bound). */
export const MAX_SNAPSHOT_BYTES = SNAP_HEADER_BYTES + (MAX_BLOCKS + 2) * BLOCK_SIZE;

/** One object of the two files as they are durably (CommitTimes.snapshot). */
export function encodeSnapshot(main: Uint8Array, tail: Uint8Array | null): Uint8Array {
  const out = new Uint8Array(SNAP_HEADER_BYTES + main.length + (tail?.length ?? 0));
  out.set(main, SNAP_HEADER_BYTES);
  if (tail !== null) out.set(tail, SNAP_HEADER_BYTES + main.length);
  writeU32BE(out, 0, SNAP_MAGIC);
  writeU16BE(out, 4, SNAP_VERSION);
  writeU16BE(out, 6, tail === null ? 0 : SNAP_HAS_TAIL);
  writeU32BE(out, 8, main.length);
  writeU32BE(out, 12, crc32c(out.subarray(SNAP_HEADER_BYTES)) >>> 0);
  return out;
}

/**
 * Lay a snapshot (CommitTimes.snapshot, downloaded as `name`) down as the index files of
 * timeline directory `dir`, replacing any there. A snapshot that is not whole (framing, size,
 * CRC32C) is a CorruptionError and leaves no index files (the timeline starts it empty). The
 * blocks are checked when the timeline loads them (seals, chain; entries above its
 * disk_consistent_lsn dropped).
 */
export async function writeCommitTimesSnapshot(dir: string, name: string, bytes: Uint8Array): Promise<void> {
  await removeCommitTimesFiles(dir);
  const bad = (why: string): never => {
    throw new CorruptionError(name, 0, `commit-time snapshot: ${why}`);
  };
  if (bytes.length < SNAP_HEADER_BYTES || bytes.length > MAX_SNAPSHOT_BYTES) bad(`${bytes.length} bytes`);
  if (readU32BE(bytes, 0) !== SNAP_MAGIC || readU16BE(bytes, 4) !== SNAP_VERSION) bad("not a snapshot of version 1");
  const hasTail = (readU16BE(bytes, 6) & SNAP_HAS_TAIL) !== 0;
  const mainLen = readU32BE(bytes, 8);
  if (mainLen < BLOCK_SIZE || mainLen % BLOCK_SIZE !== 0 || SNAP_HEADER_BYTES + mainLen + (hasTail ? BLOCK_SIZE : 0) !== bytes.length)
    bad("lengths do not add up");
  if (crc32c(bytes.subarray(SNAP_HEADER_BYTES)) >>> 0 !== readU32BE(bytes, 12)) bad("CRC32C mismatch");
  const main = bytes.subarray(SNAP_HEADER_BYTES, SNAP_HEADER_BYTES + mainLen);
  // The tail first: a directory with `commit_times` but no tail holds only whole blocks.
  if (hasTail) await writeFileDurable(join(dir, COMMIT_TIMES_TAIL_FILE), bytes.subarray(SNAP_HEADER_BYTES + mainLen));
  await writeFileDurable(join(dir, COMMIT_TIMES_FILE), main);
}

/** Remove the index files of timeline directory `dir` (before a snapshot is laid down). */
export async function removeCommitTimesFiles(dir: string): Promise<void> {
  for (const f of [COMMIT_TIMES_FILE, COMMIT_TIMES_TAIL_FILE, COMMIT_TIMES_LEGACY_FILE]) {
    if (existsSync(join(dir, f))) await removeFileDurable(join(dir, f));
  }
}
