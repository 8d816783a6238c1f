/**
 * Rows of `npm run bench -- timeline` for the commit-time index (src/tenant/commit_times.ts)
 * at 10^6 commits (times not monotonic in LSN order, as PostgreSQL writes them):
 * - disk bytes per commit (header + sealed blocks + tail file, after a save); peer: the same
 *   entries in the earlier format, commit_times.json ({lsns, times_ms}) without its 8,192-entry
 *   bound (the bound is what made it inexact);
 * - memory bytes per commit once saved (directory + blocks not yet written); peer: two
 *   Float64Arrays (LSN, time) in memory, 16 bytes per commit;
 * - add() (the ingest path) commits/s; peer: the earlier index's add() (two JS arrays, thinned
 *   when full at 8,192 entries);
 * - lookup by time (the first record later than T, then the one before it), p50/p99 over random
 *   T with every block on disk (one pread of 8 kB per lookup); peer: the same answer from
 *   in-memory Float64Arrays (running maximum + binary search);
 * - load (a restart) of the 10^6-commit index, ms.
 * Every answer of ours is checked against the in-memory peer's.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CommitTimes } from "../src/tenant/commit_times.js";
import { type BenchRow, percentile, row } from "./harness.js";
import { asLsn } from "../src/types/lsn.js";

const N = 1_000_000;
const LOOKUPS = 20_000;

/** A row whose unit is a size (smaller is better): the harness's ratio assumes bigger is better for it. */
function sizeRow(name: string, unit: string, value: number, peer: string, peerValue: number): BenchRow {
  return { name, unit, value, peer, peer_value: peerValue, ratio: peerValue / value };
}

/** The earlier index's add(): two JS arrays, the older half thinned when full. */
class ThinningIndex {
  private lsns: number[] = [];
  private times: number[] = [];
  add(lsn: number, t: number): void {
    const n = this.lsns.length;
    if (n > 0 && lsn <= this.lsns[n - 1]!) return;
    if (n >= 8192) {
      const half = n >>> 1;
      const keepL: number[] = [];
      const keepT: number[] = [];
      for (let i = 0; i < half; i += 2) {
        keepL.push(this.lsns[i]!);
        keepT.push(this.times[i]!);
      }
      this.lsns.splice(0, half, ...keepL);
      this.times.splice(0, half, ...keepT);
    }
    this.lsns.push(lsn);
    this.times.push(t);
  }
}

export async function commitTimeBench(rows: BenchRow[]): Promise<void> {
  // A stream as PostgreSQL writes it: LSNs ~100-4000 bytes apart, times taken up to 5 ms before insertion.
  const lsns = new Float64Array(N);
  const times = new Float64Array(N);
  let seed = 12345;
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  let lsn = 0x1000000;
  let clock = 850_000_000_000_000;
  for (let i = 0; i < N; i++) {
    lsn += 100 + Math.floor(rnd() * 3900);
    clock += Math.floor(rnd() * 1000);
    lsns[i] = lsn;
    times[i] = clock - Math.floor(rnd() * 5000);
  }
  const runMax = new Float64Array(N);
  for (let i = 0, m = Number.NEGATIVE_INFINITY; i < N; i++) runMax[i] = m = Math.max(m, times[i]!);

  const dir = mkdtempSync(join(tmpdir(), "bench-commit-times-"));
  try {
    const c = new CommitTimes(dir);
    let t0 = performance.now();
    for (let i = 0; i < N; i++) c.add(asLsn(lsns[i]!), times[i]!);
    const addS = (performance.now() - t0) / 1000;
    const old = new ThinningIndex();
    t0 = performance.now();
    for (let i = 0; i < N; i++) old.add(lsns[i]!, times[i]!);
    const oldS = (performance.now() - t0) / 1000;
    rows.push(row("commit times: add() at 10^6 commits", "commits/s", N / addS, "earlier index (JS arrays, thinned at 8,192)", N / oldS));

    await c.save(asLsn(lsns[N - 1]!));
    const json = JSON.stringify({ version: 1, lsns: Array.from(lsns), times_ms: Array.from(times, (t) => t / 1000 + 946_684_800_000) });
    rows.push(
      sizeRow(
        "commit times: disk bytes per commit (10^6)",
        "B",
        c.diskBytes() / N,
        "commit_times.json format, unbounded",
        Buffer.byteLength(json) / N,
      ),
    );
    rows.push(sizeRow("commit times: memory bytes per commit once saved (10^6)", "B", c.memoryBytes / N, "2 Float64Arrays in memory", 16));

    t0 = performance.now();
    const loaded = new CommitTimes(dir);
    loaded.load(asLsn(lsns[N - 1]!));
    rows.push(row("commit times: load 10^6 commits (restart)", "ms", performance.now() - t0));

    const ours = new Float64Array(LOOKUPS);
    const peer = new Float64Array(LOOKUPS);
    const lo = times[0]!;
    const hi = times[N - 1]!;
    for (let i = 0; i < LOOKUPS; i++) {
      const t = lo + Math.floor(rnd() * (hi - lo));
      let a = performance.now();
      const p = loaded.probe(t, asLsn(Number.MAX_SAFE_INTEGER));
      ours[i] = (performance.now() - a) * 1000;
      a = performance.now();
      let l = 0;
      let h = N;
      while (l < h) {
        const m = (l + h) >>> 1;
        if (runMax[m]! > t) h = m;
        else l = m + 1;
      }
      peer[i] = (performance.now() - a) * 1000;
      const wantStop = l < N ? lsns[l]! : -1;
      const wantPrev = l > 0 && l < N ? lsns[l - 1]! : -1;
      if (p.stopLsn !== wantStop || p.prevLsn !== wantPrev)
        throw new Error(`commit-time lookup at ${t}: ${p.stopLsn}/${p.prevLsn}, want ${wantStop}/${wantPrev}`);
    }
    ours.sort();
    peer.sort();
    const PEER = "in-memory Float64Arrays (running max + binary search)";
    rows.push(row("commit times: lookup by time at 10^6 p50", "us", percentile(ours, 50), PEER, percentile(peer, 50)));
    rows.push(row("commit times: lookup by time at 10^6 p99", "us", percentile(ours, 99), PEER, percentile(peer, 99)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
