/**
 * Remote storage benchmark (issue 10, first part): the upload queue pushing layer files to
 * LocalFs and to S3 (s3rver on loopback, in its own process), and the raw backends.
 *
 *  - layer upload: FILES layer files of FILE_MIB each, scheduled at once on an UploadQueue
 *    (max_concurrent_uploads 4, CRC taken while uploading) and an index after them; MiB/s from
 *    the first schedule to waitUploaded().
 *  - layer download: the same objects read back with getStream() one after another; MiB/s.
 *  - index put: INDEX_PUTS sequential puts of a small index_part.json; p50 / p99 latency.
 *  - on-demand download: each layer as a read that meets it evicted downloads it
 *    (downloadLayer: length and CRC32C checked, temp file, fsync, rename); p50 / p99 latency.
 *
 *  - a pgbench tenant (`pgbench -i -s REMOTE_BENCH_SCALE`, 10): server A imports the shut-down
 *    datadir with remote storage on; "import + upload" runs from the import request until the
 *    bucket holds every layer and the index (MiB/s of layer bytes). Then a fresh server B
 *    attaches the tenant in generation 2 (lazy: the index only) and reads one page of
 *    pgbench_accounts through the page service: "attach to first page". Then GetPage of
 *    REMOTE_BENCH_READS random blocks, one at a time, each possibly downloading a layer.
 *
 * There is no peer: s3rver is a test double of S3, so its numbers say what this machine's
 * loopback and s3rver cost, not what AWS would do. REMOTE_BENCH_FILES and
 * REMOTE_BENCH_FILE_MIB shrink the run.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { deltaLayerName } from "../src/layers/layer_name.js";
import { downloadLayer } from "../src/remote/download.js";
import { encodeIndexPart, fileCrc32c } from "../src/remote/index_part.js";
import { layerKey } from "../src/remote/remote_path.js";
import type { RemoteStorage } from "../src/remote/remote_storage.js";
import { openRemoteStorage, parseRemoteStorageUrl } from "../src/remote/storage_url.js";
import { UploadQueue } from "../src/remote/upload_queue.js";
import type { TimelineMetadata } from "../src/tenant/metadata.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { KEY_MAX, KEY_MIN } from "../src/types/key.js";
import { PageServiceClient } from "../src/client/page_service_client.js";
import { LATEST_LSN } from "../src/protocol/pagestream.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import type { RelTag } from "../src/protocol/pagestream.js";
import type { TimelineId } from "../src/types/ids.js";
import { asLsn, parseLsn } from "../src/types/lsn.js";
import { PgInstance } from "../test/support/postgres.js";
import { rng } from "../test/support/rng.js";
import { TestS3 } from "../test/support/s3rver.js";
import { type BenchRow, percentile, row } from "./harness.js";

const FILES = Number(process.env["REMOTE_BENCH_FILES"] ?? 16);
const FILE_MIB = Number(process.env["REMOTE_BENCH_FILE_MIB"] ?? 8);
const INDEX_PUTS = 200;
const SCALE = Number(process.env["REMOTE_BENCH_SCALE"] ?? 10);
const READS = Number(process.env["REMOTE_BENCH_READS"] ?? 200);
const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" };

interface PgbenchData {
  dataDir: string;
  rel: RelTag;
  nblocks: number;
}

async function pgbenchData(): Promise<{ pg: PgInstance; data: PgbenchData }> {
  const pg = await PgInstance.start({});
  const init = await pg.run("pgbench", [
    "-i",
    "-s",
    String(SCALE),
    "-q",
    "-h",
    pg.host,
    "-p",
    String(pg.port),
    "-U",
    "postgres",
    "postgres",
  ]);
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
  await pg.psql("CHECKPOINT");
  const [dbOid, relnode, nblocks] = (
    await pg.psql(
      "SELECT d.oid, c.relfilenode, pg_relation_size(c.oid) / 8192 FROM pg_database d, pg_class c WHERE d.datname = 'postgres' AND c.relname = 'pgbench_accounts'",
    )
  )
    .split("|")
    .map(Number) as [number, number, number];
  await pg.stop();
  return { pg, data: { dataDir: pg.dataDir, rel: { spcnode: 1663, dbnode: dbOid, relnode, forknum: 0 }, nblocks } };
}

async function startServer(workdir: string, remoteUrl: string): Promise<Server> {
  const s = new Server(
    loadNodeConfig({
      workdir,
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      remote_storage: remoteUrl,
      log_level: "warn",
      import_pgdata_root: tmpdir(),
    }),
    pino({ level: "warn" }),
  );
  await s.start();
  return s;
}

async function pgbenchTenant(label: string, remoteUrl: string, data: PgbenchData, scratch: string): Promise<BenchRow[]> {
  const tenantId = generateTenantId();
  let timelineId = "";
  let lsn = 0;
  let layer_bytes = 0;
  let upload_s = 0;
  const a = await startServer(mkdtempSync(join(scratch, "a-")), remoteUrl);
  try {
    const t = await a.tenants.create(tenantId, QUIET);
    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${a.port}/v1/tenant/${tenantId}/timeline`, {
      method: "POST",
      body: JSON.stringify({ import_pgdata: data.dataDir }),
    });
    const body = (await res.json()) as Record<string, unknown>;
    if (res.status !== 201) throw new Error(`import: ${res.status} ${JSON.stringify(body)}`);
    timelineId = String(body["timeline_id"]);
    lsn = parseLsn(String(body["last_record_lsn"]));
    const tl = t.getTimeline(timelineId as TimelineId);
    await a.remote!.whenConnected();
    await a.remote!.clientOf(tl)!.waitUploaded();
    upload_s = (performance.now() - t0) / 1000;
    layer_bytes = tl.residentBytes();
  } finally {
    await a.stop();
  }
  const b = await startServer(mkdtempSync(join(scratch, "b-")), remoteUrl);
  try {
    const t1 = performance.now();
    await b.attachTenant(tenantId, 2);
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port: b.pgPort });
    try {
      const s = await c.pagestream(tenantId, timelineId as TimelineId, 2, { max_in_flight: 1 });
      const page = await s.getPage(data.rel, 0, LATEST_LSN, asLsn(lsn));
      const first_ms = performance.now() - t1;
      if (page.length !== 8192) throw new Error("first page: not 8192 bytes");
      const random = rng(0x7e_a7);
      const lat = new Float64Array(READS);
      for (let i = 0; i < READS; i++) {
        const r0 = performance.now();
        await s.getPage(data.rel, Math.floor(random() * data.nblocks), LATEST_LSN, asLsn(lsn));
        lat[i] = performance.now() - r0;
      }
      lat.sort();
      await s.close();
      return [
        row(
          `${label}: pgbench -s ${SCALE} tenant, import + upload (${(layer_bytes / MIB).toFixed(0)} MiB of layers)`,
          "MiB/s",
          layer_bytes / MIB / upload_s,
        ),
        row(`${label}: attach (generation 2, lazy) to the first page`, "ms", first_ms),
        row(`${label}: then GetPage of random blocks (downloads on demand) p50`, "ms", percentile(lat, 50)),
        row(`${label}: then GetPage of random blocks p99`, "ms", percentile(lat, 99)),
      ];
    } finally {
      c.close();
    }
  } finally {
    await b.stop();
  }
}
const MIB = 1024 * 1024;

function meta(dcl: number): TimelineMetadata {
  return {
    disk_consistent_lsn: asLsn(dcl),
    prev_record_lsn: null,
    ancestor_timeline_id: null,
    ancestor_lsn: asLsn(0),
    latest_gc_cutoff_lsn: asLsn(0),
    initdb_lsn: asLsn(0),
    pg_version: 15,
  };
}

async function measure(label: string, storage: RemoteStorage, files: { name: string; path: string }[]): Promise<BenchRow[]> {
  const tenant = generateTenantId();
  const timeline = generateTimelineId();
  const queue = new UploadQueue({
    storage,
    tenant_id: tenant,
    timeline_id: timeline,
    generation: 1,
    initial: null,
    log: pino({ level: "silent" }),
  });
  const t0 = performance.now();
  for (const f of files) queue.scheduleLayerUpload({ name: f.name, local_path: f.path, file_size: FILE_MIB * MIB, crc32c: null });
  queue.scheduleIndexUpload(meta(0x1000));
  await queue.waitUploaded();
  const upload_s = (performance.now() - t0) / 1000;
  await queue.shutdown();

  const t1 = performance.now();
  for (const f of files) {
    const { stream } = await storage.getStream(layerKey(tenant, timeline, f.name, 1));
    for await (const _ of stream) {
      // drain
    }
  }
  const download_s = (performance.now() - t1) / 1000;

  const fetched = mkdtempSync(join(tmpdir(), "bench-ondemand-"));
  const dl: number[] = [];
  try {
    for (const f of files) {
      const { crc32c, size_bytes } = await fileCrc32c(f.path);
      const s = performance.now();
      await downloadLayer(storage, layerKey(tenant, timeline, f.name, 1), join(fetched, f.name), {
        file_size: size_bytes,
        crc32c,
        generation: 1,
      });
      dl.push(performance.now() - s);
    }
  } finally {
    rmSync(fetched, { recursive: true, force: true });
  }
  dl.sort((a, b) => a - b);

  const idx = encodeIndexPart({ metadata: meta(0x2000), layers: new Map() });
  const lat: number[] = [];
  for (let i = 0; i < INDEX_PUTS; i++) {
    const s = performance.now();
    await storage.put(`tenants/${tenant}/timelines/${timeline}/index_part.json-00000001`, idx, { size_bytes: idx.byteLength });
    lat.push(performance.now() - s);
  }
  lat.sort((a, b) => a - b);
  const total_mib = files.length * FILE_MIB;
  return [
    row(`${label}: layer upload (${files.length} × ${FILE_MIB} MiB, 4 at once)`, "MiB/s", total_mib / upload_s),
    row(`${label}: layer download (getStream, one at a time)`, "MiB/s", total_mib / download_s),
    row(`${label}: on-demand layer download (${FILE_MIB} MiB, verified, durable) p50`, "ms", percentile(dl, 50)),
    row(`${label}: on-demand layer download p99`, "ms", percentile(dl, 99)),
    row(`${label}: index put p50`, "ms", percentile(lat, 50)),
    row(`${label}: index put p99`, "ms", percentile(lat, 99)),
  ];
}

export default async function run(): Promise<BenchRow[]> {
  const scratch = mkdtempSync(join(tmpdir(), "bench-remote-"));
  const s3 = new TestS3();
  try {
    const files: { name: string; path: string }[] = [];
    for (let i = 0; i < FILES; i++) {
      const name = deltaLayerName(
        { start: KEY_MIN, end: KEY_MAX },
        { start: asLsn((i + 1) * 0x1000), end: asLsn((i + 1) * 0x1000 + 0x800) },
      );
      const path = join(scratch, name);
      const bytes = Buffer.alloc(FILE_MIB * MIB);
      for (let o = 0; o < bytes.length; o += 4096) bytes.writeUInt32LE((i * 7919 + o) >>> 0, o);
      writeFileSync(path, bytes);
      files.push({ name, path });
    }
    const local = openRemoteStorage(parseRemoteStorageUrl(`file://${join(scratch, "bucket")}`));
    const rows = await measure("LocalFs", local, files);
    await s3.start();
    const remote = openRemoteStorage(parseRemoteStorageUrl(s3.url("bench")));
    try {
      rows.push(...(await measure("S3 (s3rver)", remote, files)));
    } finally {
      remote.close();
    }
    const { pg, data } = await pgbenchData();
    try {
      rows.push(...(await pgbenchTenant("LocalFs", `file://${join(scratch, "tenant-bucket")}`, data, scratch)));
      rows.push(...(await pgbenchTenant("S3 (s3rver)", s3.url("tenants"), data, scratch)));
    } finally {
      await pg.destroy();
    }
    return rows;
  } finally {
    await s3.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}
