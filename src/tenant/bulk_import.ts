/**
 * BulkImport: an import of a whole data directory (everything at one LSN) written straight
 * into image layers, as Neon's import does, with memory bounded whatever the size.
 *
 * Why not the in-memory layer: an import's values all carry the same LSN, so its open layer
 * could never be frozen part way (the rest of the import would land below the next layer's
 * start) and would have to hold the whole import, with an in-memory index of every key;
 * flushed, it would become one L0 file as large as the database, rewritten by the first
 * compaction. Here the import is an external sort instead:
 *
 *   put(key, lsn, value) ─► spill file (ephemeral-file records) ─ every runSizeBytes ─►
 *     importRun job: sorted by key → one run file          (several runs in flight)
 *   finish() ─► importMerge jobs (≤ MAX_MERGE_FANIN runs each, in passes) → image layers
 *     at the import LSN tiling [KEY_MIN, KEY_MAX), cut at targetSizeBytes ─► adopt
 *   (an import of one run sorts it straight into the final layers)
 *
 * Memory: one spill file's write buffer here; a run's key list in a worker. Disk: the spill
 * and run files (about the import's size) until the final layers are written.
 *
 * Files: everything lives under <timeline>/import.___temp/ until adopt() moves the final
 * layers into the timeline directory; removing that directory is the commit point. A crash
 * before it leaves the directory behind, and Timeline.load then removes it together with any
 * layer already moved (the timeline is empty again, as before the import).
 *
 * Invariants: every put is at the import LSN; at most MAX_RUNS_AHEAD runs are being sorted
 * or wait to be (ready() holds the importer back); a key put twice keeps its later value.
 */
import { mkdirSync, rmSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import type { PageCacheApi } from "../cache/api.js";
import { EphemeralFile } from "../layers/ephemeral_file.js";
import { type LayerDesc, TEMP_SUFFIX } from "../layers/layer_name.js";
import { assert } from "../types/assert.js";
import { BadStateError, InvalidArgumentError } from "../types/errors.js";
import type { Key } from "../types/key.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import { isValueTag, type Value, type ValueTag } from "../types/value.js";
import type { JobRunner } from "../workers/jobs.js";

/** The temp directory of an import in progress, inside the timeline directory. */
export const IMPORT_TEMP_DIR = `import${TEMP_SUFFIX}`;
/** Runs one merge job reads at once (open files and buffers in the worker). */
export const MAX_MERGE_FANIN = 64;
/** Runs sorted or waiting to be before the importer is held back. */
const MAX_RUNS_AHEAD = 4;
/** Smallest run: a tiny checkpoint_distance must not make thousands of runs. */
export const MIN_RUN_BYTES = 1024 * 1024;
/** Bound on runs of one import (≈ 1 PiB at the smallest run size). */
const MAX_RUNS = 1 << 30;

export interface BulkImportDeps {
  cache: PageCacheApi;
  jobs: JobRunner;
  /** The tenant id: the owner of the jobs (fair queues). */
  owner: string;
  /** The import's temp directory (IMPORT_TEMP_DIR in the timeline directory). */
  tempDir: string;
  lsn: Lsn;
  runSizeBytes: number;
  targetSizeBytes: number;
  /** Puts the final layers (files in `dir`) into the timeline; prev is the record before lsn. */
  adopt: (layers: LayerDesc[], dir: string, prevRecordLsn: Lsn | null) => Promise<void>;
}

export class BulkImport {
  private readonly d: BulkImportDeps;
  private readonly runSize: number;
  private spill: EphemeralFile | null = null;
  private spills = 0;
  /** Run jobs in order of their spill files: each resolves to its run files. */
  private readonly runs: Promise<string[]>[] = [];
  private runsDone = 0;
  private wakeReady: (() => void) | null = null;
  private committed = false;
  private prevRecordLsn: Lsn | null = null;
  private state: "open" | "finishing" | "done" | "aborted" = "open";
  /** Values put, for the caller's report. */
  values = 0;

  constructor(deps: BulkImportDeps) {
    this.d = deps;
    this.runSize = Math.max(deps.runSizeBytes, MIN_RUN_BYTES);
    rmSync(deps.tempDir, { recursive: true, force: true });
    mkdirSync(deps.tempDir, { recursive: true });
  }

  put(key: Key, lsn: Lsn, value: Value): void {
    this.checkPut(lsn);
    if (value.length === 0) throw new InvalidArgumentError("empty value");
    const spill = this.spillFile();
    spill.append(key, lsn, value);
    this.putDone(spill);
  }

  /** put() of the value `tag ‖ payload` without building it (Timeline.putTagged). */
  putTagged(key: Key, lsn: Lsn, tag: ValueTag, payload: Uint8Array): void {
    this.checkPut(lsn);
    if (!isValueTag(tag)) throw new InvalidArgumentError(`invalid value tag ${tag}`);
    const spill = this.spillFile();
    spill.appendTagged(key, lsn, tag, payload);
    this.putDone(spill);
  }

  private checkPut(lsn: Lsn): void {
    if (this.state !== "open") throw new BadStateError(`bulk import is ${this.state}`);
    if (lsn !== this.d.lsn) throw new InvalidArgumentError(`bulk import at ${lsnToString(this.d.lsn)} got a value at ${lsnToString(lsn)}`);
  }

  private spillFile(): EphemeralFile {
    if (this.spill === null) this.spill = new EphemeralFile(this.d.cache, join(this.d.tempDir, `spill-${this.spills++}`));
    return this.spill;
  }

  private putDone(spill: EphemeralFile): void {
    this.values++;
    if (spill.sizeBytes >= this.runSize) this.sealRun();
  }

  /** The writer's commit: every value is put (the data is adopted by finish()). */
  finishWrite(lsn: Lsn, prevRecordLsn: Lsn | null): void {
    if (lsn !== this.d.lsn) throw new InvalidArgumentError(`bulk import at ${lsnToString(this.d.lsn)} finished at ${lsnToString(lsn)}`);
    this.committed = true;
    this.prevRecordLsn = prevRecordLsn;
  }

  /** Resolves when few enough runs are pending: the importer awaits it between chunks. */
  async ready(): Promise<void> {
    for (let i = 0; this.runs.length - this.runsDone > MAX_RUNS_AHEAD; i++) {
      assert(i < MAX_RUNS, "bulk import: ready() looped too often");
      await new Promise<void>((r) => (this.wakeReady = r));
    }
  }

  private sealRun(): void {
    const spill = this.spill!;
    this.spill = null;
    spill.flushToOs();
    spill.close(false);
    assert(this.runs.length < MAX_RUNS, "bulk import: too many runs");
    const runDir = join(this.d.tempDir, `run-${this.runs.length}`);
    mkdirSync(runDir);
    const p = this.d.jobs
      .importRun(
        {
          spillPath: spill.path,
          lengthBytes: spill.sizeBytes,
          outDir: runDir,
          lsn: this.d.lsn,
          final: false,
          targetSizeBytes: this.d.targetSizeBytes,
        },
        this.d.owner,
      )
      .then((res) => {
        unlinkSync(spill.path);
        return res.added.map((l) => join(runDir, l.fileName));
      })
      .finally(() => {
        this.runsDone++;
        const w = this.wakeReady;
        this.wakeReady = null;
        w?.();
      });
    // Awaited in finish() or abort(); until then a failure must not be an unhandled rejection.
    p.catch(() => undefined);
    this.runs.push(p);
  }

  /** Sort, merge and adopt everything put; then the timeline holds the import. */
  async finish(): Promise<LayerDesc[]> {
    if (this.state !== "open") throw new BadStateError(`bulk import is ${this.state}`);
    if (!this.committed) throw new BadStateError("bulk import finished before its write was committed");
    this.state = "finishing";
    const d = this.d;
    const finalDir = join(d.tempDir, "final");
    mkdirSync(finalDir);
    const task = { outDir: finalDir, lsn: d.lsn, targetSizeBytes: d.targetSizeBytes };
    let layers: LayerDesc[];
    if (this.runs.length === 0 && this.spill !== null) {
      // One run: sorted straight into the final layers.
      const spill = this.spill;
      this.spill = null;
      spill.flushToOs();
      spill.close(false);
      layers = (await d.jobs.importRun({ ...task, spillPath: spill.path, lengthBytes: spill.sizeBytes, final: true }, d.owner)).added;
    } else {
      if (this.spill !== null) this.sealRun();
      let runs = (await Promise.all(this.runs)).flat();
      for (let pass = 0; runs.length > MAX_MERGE_FANIN; pass++) {
        assert(pass < 64, "bulk import: too many merge passes");
        const next: Promise<string[]>[] = [];
        for (let i = 0; i < runs.length; i += MAX_MERGE_FANIN) {
          const group = runs.slice(i, i + MAX_MERGE_FANIN);
          const outDir = join(d.tempDir, `merge-${pass}-${i}`);
          mkdirSync(outDir);
          next.push(
            d.jobs.importMerge({ ...task, runs: group, outDir, final: false }, d.owner).then((res) => {
              for (const r of group) unlinkSync(r);
              return res.added.map((l) => join(outDir, l.fileName));
            }),
          );
        }
        runs = (await Promise.all(next)).flat();
      }
      // Zero runs (nothing put) still gives the final tiling: an empty import reads as empty.
      layers = (await d.jobs.importMerge({ ...task, runs, final: true }, d.owner)).added;
    }
    await d.adopt(layers, finalDir, this.prevRecordLsn);
    rmSync(d.tempDir, { recursive: true, force: true });
    this.state = "done";
    return layers;
  }

  /** Give up: wait for running jobs, remove every file of the import. */
  async abort(): Promise<void> {
    if (this.state === "done" || this.state === "aborted") return;
    this.state = "aborted";
    this.spill?.close(false);
    this.spill = null;
    await Promise.allSettled(this.runs);
    rmSync(this.d.tempDir, { recursive: true, force: true });
  }
}
