/**
 * WAL decode throughput: WalStreamDecoder over WAL written by a real PostgreSQL 15
 * (pgbench -i -s 5, then a bounded pgbench run), against pg_waldump --quiet over the same
 * LSN range (PostgreSQL's own xlogreader: page checks, CRC, DecodeXLogRecord, no printing).
 *
 * Ours: the WAL is read into memory first (ingest gets it from the network) and fed in
 * 128 KiB chunks, the size of a typical replication CopyData batch; each record is decoded
 * and dropped. Best of 5 runs. The peer is timed as a subprocess (its file reads hit the page
 * cache; its process start is a few ms against seconds of work), best of 3.
 *
 * Both must see the same records: pg_waldump --stats over the range must count exactly the
 * records we decode (every run, with and without images), or the bench fails.
 *
 * Rows: MB/s and records/s for both; ratio = ours / peer (higher is better). The image rows
 * (decode + restorePageImage of every full-page image, wal_compression = lz4) have no peer:
 * pg_waldump of PostgreSQL 15 does not restore images.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { WalStreamDecoder } from "../src/pg/wal/decoder.js";
import { restorePageImage } from "../src/pg/wal/image.js";
import { walFileName } from "../src/pg/wal/page.js";
import { type Lsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { PgInstance } from "../test/support/postgres.js";
import { type BenchRow, row } from "./harness.js";

const SEG = 16 << 20;
const CHUNK_BYTES = 128 * 1024;

function timeSubprocess(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile(cmd, args, { maxBuffer: 64 << 20 }, (err, _stdout, stderr) => {
      const ms = performance.now() - t0;
      if (err !== null) reject(new Error(`${cmd} failed: ${stderr}`));
      else resolve(ms);
    });
  });
}

function decodeOnce(wal: Uint8Array, start: Lsn, end: Lsn, withImages: boolean): { ms: number; records: number; images: number } {
  const page = new Uint8Array(8192);
  const t0 = performance.now();
  const dec = new WalStreamDecoder(start);
  let records = 0;
  let images = 0;
  const len = end - start;
  for (let off = 0; off < len; off += CHUNK_BYTES) {
    dec.feed(wal.subarray(off, Math.min(len, off + CHUNK_BYTES)));
    for (let r = dec.next(); r !== null; r = dec.next()) {
      records++;
      if (withImages) {
        for (const b of r.blocks) {
          if (b.image !== undefined) {
            restorePageImage(b, page);
            images++;
          }
        }
      }
    }
  }
  return { ms: performance.now() - t0, records, images };
}

export default async function run(): Promise<BenchRow[]> {
  const pg = await PgInstance.start({
    conf: { wal_level: "replica", wal_keep_size: "4GB", max_wal_size: "4GB", autovacuum: false, wal_compression: "lz4" },
  });
  try {
    const start = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
    const conn = ["-h", pg.host, "-p", String(pg.port), "-U", pg.user];
    await pg.runChecked("pgbench", ["-i", "-s", "5", "-q", ...conn, "postgres"]);
    await pg.psql("CHECKPOINT");
    await pg.runChecked("pgbench", ["-t", "3000", "-c", "2", "-j", "2", "-n", ...conn, "postgres"]);
    await pg.psql("CHECKPOINT");
    const endReported = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
    await pg.stop();

    const segStart = Math.floor(start / SEG) * SEG;
    const parts: Buffer[] = [];
    for (let s = segStart; s < endReported; s += SEG) parts.push(readFileSync(join(pg.walDir, walFileName(1, s / SEG, SEG))));
    const all = new Uint8Array(Buffer.concat(parts));
    const wal = all.subarray(start - segStart);
    // End at the last complete record at or before the reported insert position.
    const probe = new WalStreamDecoder(start);
    probe.feed(wal.subarray(0, endReported - start));
    while (probe.next() !== null) {}
    const end = probe.lsn;
    const mb = (end - start) / 1e6;

    // The peer's count of the same range: every run of ours must decode exactly these records.
    const stats = await pg.waldump(["--stats", "--start", lsnToString(start), "--end", lsnToString(end)]);
    const total = /^Total\s+(\d+)/m.exec(stats.stdout);
    if (stats.code !== 0 || total === null)
      throw new Error(`wal_decode bench: pg_waldump --stats gave no total: ${stats.stderr || stats.stdout.slice(0, 400)}`);
    const records = Number(total[1]);
    const checkCount = (r: { records: number }, what: string): void => {
      if (r.records !== records) {
        throw new Error(
          `wal_decode bench: ${what} decoded ${r.records} records in ${lsnToString(start)}..${lsnToString(end)}, pg_waldump counts ${records}`,
        );
      }
    };

    checkCount(decodeOnce(wal, start, end, false), "warm-up"); // warm-up (JIT)
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 5; i++) {
      const r = decodeOnce(wal, start, end, false);
      checkCount(r, "a timed run");
      best = Math.min(best, r.ms);
    }
    let bestImg = Number.POSITIVE_INFINITY;
    let images = 0;
    for (let i = 0; i < 3; i++) {
      const r = decodeOnce(wal, start, end, true);
      checkCount(r, "a run with images");
      images = r.images;
      bestImg = Math.min(bestImg, r.ms);
    }

    const waldump = join(pg.bindir, "pg_waldump");
    const args = ["--quiet", "--path", pg.walDir, "--start", lsnToString(start), "--end", lsnToString(end)];
    let peerBest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) peerBest = Math.min(peerBest, await timeSubprocess(waldump, args));

    const ours = mb / (best / 1000);
    const peer = mb / (peerBest / 1000);
    console.log(
      `WAL ${lsnToString(start)}..${lsnToString(end)}: ${mb.toFixed(1)} MB, ${records} records (= pg_waldump's count), ${images} images; ours ${best.toFixed(0)} ms (+images ${bestImg.toFixed(0)} ms), pg_waldump --quiet ${peerBest.toFixed(0)} ms`,
    );
    return [
      row("decode throughput", "MB/s", ours, "pg_waldump --quiet", peer),
      row("decode rate", "records/s", records / (best / 1000), "pg_waldump --quiet", records / (peerBest / 1000)),
      // pg_waldump (PG15) cannot restore images, so these rows have no peer.
      row("decode + restore every image", "MB/s", mb / (bestImg / 1000)),
      row("restore one image (lz4)", "us", ((bestImg - best) * 1000) / Math.max(1, images)),
      row("WAL volume", "MB", mb),
      row("records", "count", records),
    ];
  } finally {
    await pg.destroy();
  }
}
