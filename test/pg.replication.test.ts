/**
 * Physical replication client against a real PostgreSQL 15 (wal_level = replica; initdb's
 * pg_hba trusts replication connections from 127.0.0.1):
 * - message codecs ('w', 'k', 'r') with LSNs above 2^32;
 * - IDENTIFY_SYSTEM against pg_control_system(), slot creation (idempotent), READ_REPLICATION_SLOT;
 * - WalReceiver from the slot's restart_lsn: WAL decodes into records while the test writes
 *   (2000 inserts) up to pg_current_wal_insert_lsn() (cross-checked record for record with
 *   pg_waldump: the same rmgr, LSN, xl_prev and total length, in the same order); the flush
 *   LSN reported moves restart_lsn;
 *   killing the walsender makes it reconnect and continue with no gap and no duplicate byte
 *   (every onWal starts where the previous ended; the decoder checks the xl_prev chain);
 *   stop() ends it cleanly;
 * - backpressure: while onWal is pending nothing more is delivered, and the inbox never
 *   holds more than its bound plus what one socket read completes (one XLogData message of
 *   at most MAX_SEND_SIZE, and the rest of that 64 KiB read);
 * - a wrong expected system id is a typed error, with one connection attempt and no retry;
 * - BASE_BACKUP: sane start/end LSNs, and base.tar holds backup_label, PG_VERSION,
 *   base/<db>/ files and global/pg_control (last).
 * Waits are bounded by deadlines; nothing asserts on wall-clock durations.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  encodeStandbyStatus,
  parseReplicationMessage,
  ReplicationConnection,
  ReplicationError,
  startBaseBackup,
  WalConsumerError,
  WalReceiver,
} from "../src/pg/replication/index.js";
import { WalStreamDecoder } from "../src/pg/wal/decoder.js";
import { rmgrName } from "../src/pg/wal/rmgr_ids.js";
import { asLsn, type Lsn, lsnToString, parseLsn, writeLsnBE } from "../src/types/lsn.js";
import { PgInstance } from "./support/postgres.js";

const RM_HEAP_ID = 10;
const WAIT_DEADLINE_MS = 20_000;
/** The most WAL a walsender puts in one XLogData message (MAX_SEND_SIZE = XLOG_BLCKSZ * 16). */
const MAX_SEND_SIZE = 16 * 8192;
/** XLogData header inside CopyData: 'w', dataStart, walEnd, sendTime. */
const XLOGDATA_HEADER_BYTES = 25;
/** The most one socket read hands to pg's parser: libuv reads into a 64 KiB buffer. */
const SOCKET_READ_BYTES = 64 * 1024;

/** One record as pg_waldump prints it: "rmgr lsn prev total-length". */
function waldumpRecords(stdout: string): string[] {
  const out: string[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("rmgr:")) continue;
    const m = /^rmgr: (\S+)\s+len \(rec\/tot\):\s*\d+\/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+\/[0-9A-F]+), prev ([0-9A-F]+\/[0-9A-F]+),/.exec(
      line,
    );
    if (m === null) throw new Error(`unparsed pg_waldump line: ${line}`);
    out.push(`${m[1]} ${lsnToString(parseLsn(m[3]!))} ${lsnToString(parseLsn(m[4]!))} ${m[2]}`);
  }
  return out;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, deadline_ms = WAIT_DEADLINE_MS): Promise<void> {
  const until = Date.now() + deadline_ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("replication message codecs", () => {
  it("parses XLogData and keepalive, encodes status updates, all above 2^32", () => {
    const w = new Uint8Array(25 + 3);
    w[0] = 0x77;
    writeLsnBE(w, 1, parseLsn("1/2000028"));
    writeLsnBE(w, 9, parseLsn("A/FFFFFFF8"));
    writeLsnBE(w, 17, asLsn(0x0002_e0a1_b2c3_d4e5 - 0)); // a time beyond 2^32 µs
    w.set([1, 2, 3], 25);
    const mw = parseReplicationMessage(w);
    expect(mw.kind).toBe("xlogdata");
    if (mw.kind !== "xlogdata") throw new Error("unreachable");
    expect(lsnToString(mw.dataStart)).toBe("1/2000028");
    expect(lsnToString(mw.walEnd)).toBe("A/FFFFFFF8");
    expect(mw.sendTime_us).toBe(0x0002_e0a1_b2c3_d4e5);
    expect([...mw.data]).toEqual([1, 2, 3]);

    const k = new Uint8Array(18);
    k[0] = 0x6b;
    writeLsnBE(k, 1, parseLsn("2/10"));
    k[17] = 1;
    const mk = parseReplicationMessage(k);
    expect(mk).toEqual({ kind: "keepalive", walEnd: parseLsn("2/10"), sendTime_us: 0, replyRequested: true });

    const r = encodeStandbyStatus({
      write: parseLsn("3/4"),
      flush: parseLsn("5/6"),
      apply: asLsn(0),
      replyRequested: true,
      sendTime_us: 2 ** 40 + 7,
    });
    expect(r.length).toBe(34);
    expect(Buffer.from(r).toString("hex")).toBe(`72${"0000000300000004"}${"0000000500000006"}${"0000000000000000"}${"0000010000000007"}01`);
    expect(() => parseReplicationMessage(new Uint8Array([0x77, 0]))).toThrow(ReplicationError);
    expect(() => parseReplicationMessage(new Uint8Array([0x7a]))).toThrow(ReplicationError);
  });
});

describe("physical replication against PostgreSQL 15", () => {
  let pg: PgInstance;
  let connstr: string;
  let systemId: string;

  beforeAll(async () => {
    pg = await PgInstance.start({
      conf: { wal_level: "replica", max_wal_senders: 10, max_replication_slots: 10, wal_sender_timeout: "60s" },
    });
    connstr = pg.connectionString();
    systemId = await pg.psql("SELECT system_identifier FROM pg_control_system()");
  });

  afterAll(async () => {
    await pg?.destroy();
  });

  it("IDENTIFY_SYSTEM matches pg_control; slots are created idempotently and read back", async () => {
    const conn = await ReplicationConnection.connect({ connstr });
    try {
      const id = await conn.identifySystem();
      expect(id.systemId).toBe(systemId);
      expect(id.timeline).toBe(1);
      expect(id.dbName).toBeNull();
      const flush = parseLsn(await pg.psql("SELECT pg_current_wal_flush_lsn()"));
      expect(id.xlogPos).toBeGreaterThan(0);
      expect(id.xlogPos).toBeLessThanOrEqual(flush);
      expect(await conn.show("wal_segment_size")).toBe("16MB");

      expect(await conn.createPhysicalSlot("ps_idem")).toBe(true);
      expect(await conn.createPhysicalSlot("ps_idem")).toBe(false);
      const slot = await conn.readReplicationSlot("ps_idem");
      expect(slot.slotType).toBe("physical");
      expect(slot.restartTli).toBe(1);
      const sqlRestart = await pg.psql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ps_idem'");
      expect(slot.restartLsn).toBe(parseLsn(sqlRestart));
      expect(await conn.readReplicationSlot("ps_nosuch")).toEqual({ slotType: null, restartLsn: null, restartTli: null });
      expect(await conn.dropReplicationSlot("ps_idem")).toBe(true);
      expect(await conn.dropReplicationSlot("ps_idem")).toBe(false);
      // A server error is typed and leaves the connection usable.
      await expect(conn.command("START_REPLICATION SLOT ps_nosuch PHYSICAL 0/0")).rejects.toBeInstanceOf(ReplicationError);
      expect((await conn.identifySystem()).systemId).toBe(systemId);
    } finally {
      await conn.close();
    }
  });

  it("streams WAL that decodes, moves restart_lsn with the reported flush, survives a killed walsender, stops cleanly", async () => {
    const setup = await ReplicationConnection.connect({ connstr });
    await setup.createPhysicalSlot("ps_stream");
    const slot = await setup.readReplicationSlot("ps_stream");
    await setup.close();
    const start = slot.restartLsn!;
    expect(start).toBeGreaterThan(0);

    const decoder = new WalStreamDecoder(start, { systemId });
    let expectedNext: Lsn = start;
    let decodedEnd: Lsn = start;
    let records = 0;
    let heapRecords = 0;
    /** Every decoded record as waldumpRecords() prints it, in stream order. */
    const decodedList: string[] = [];
    let lastRecordLsn: Lsn | null = null;
    let flushTo: Lsn = start;
    const violations: string[] = [];

    const receiver = new WalReceiver(
      {
        connstr,
        slot_name: "ps_stream",
        start_lsn: start,
        expected_system_id: systemId,
        timeline: 1,
        status_interval_ms: 100,
        backoff_initial_ms: 20,
        backoff_max_ms: 200,
        max_consecutive_failures: 50,
        application_name: "ps_test_recv",
        max_buffered_bytes: 256 * 1024,
      },
      {
        onWal: async (lsn, bytes) => {
          if (lsn !== expectedNext) violations.push(`onWal at ${lsnToString(lsn)}, expected ${lsnToString(expectedNext)}`);
          expectedNext = asLsn(lsn + bytes.length);
          decoder.feed(bytes);
          for (let r = decoder.next(); r !== null; r = decoder.next()) {
            if (lastRecordLsn !== null && r.prev !== lastRecordLsn) violations.push(`xl_prev break at ${lsnToString(r.lsn)}`);
            lastRecordLsn = r.lsn;
            decodedEnd = r.endLsn;
            records++;
            decodedList.push(`${rmgrName(r.rmid)} ${lsnToString(r.lsn)} ${lsnToString(r.prev)} ${r.totLen}`);
            if (r.rmid === RM_HEAP_ID) heapRecords++;
          }
          // A slow consumer now and then: the receiver must wait, not drop or reorder.
          if (records % 500 === 0) await new Promise((r) => setTimeout(r, 5));
        },
        flushLsn: () => flushTo,
      },
    );
    receiver.start();
    try {
      await waitFor("streaming", () => receiver.state.state === "streaming");

      await pg.psql("CREATE TABLE t (id int, pad text); INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g;");
      const target1 = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
      await waitFor(`decoded WAL up to ${lsnToString(target1)}`, () => decodedEnd >= target1);
      expect(heapRecords).toBeGreaterThanOrEqual(2000);
      expect(violations).toEqual([]);
      // Cross-check with pg_waldump over the same range: the same records, one for one.
      const [ours, endAt] = [decodedList.slice(), decodedEnd];
      expect(ours.length).toBe(records);
      const dump = await pg.waldump(["-s", lsnToString(start), "-e", lsnToString(endAt)]);
      expect(dump.code, dump.stderr).toBe(0);
      const theirs = waldumpRecords(dump.stdout);
      expect(theirs.length).toBeGreaterThan(2000);
      const firstDiff = ours.findIndex((x, i) => x !== theirs[i]);
      expect(firstDiff === -1 ? null : `record ${firstDiff}: ours ${ours[firstDiff]}, pg_waldump ${theirs[firstDiff]}`).toBeNull();
      expect(ours).toEqual(theirs);

      // The flush we report becomes the slot's restart_lsn.
      flushTo = decodedEnd;
      await waitFor("restart_lsn to follow the reported flush", async () => {
        const r = await pg.psql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ps_stream'");
        return r === lsnToString(flushTo);
      });
      expect(receiver.state.last_reported_flush_lsn).toBe(flushTo);
      expect(receiver.state.status_updates_sent).toBeGreaterThan(0);

      // Kill the walsender: the receiver reconnects and continues where it was.
      const pid1 = Number(await pg.psql("SELECT pid FROM pg_stat_replication WHERE application_name = 'ps_test_recv'"));
      expect(pid1).toBeGreaterThan(0);
      const attemptsBefore = receiver.state.connect_attempts;
      // Writes before the kill may be in flight when the connection drops: the resend of
      // already-delivered bytes must be trimmed.
      await pg.psql("INSERT INTO t SELECT g, repeat('y', 100) FROM generate_series(1, 1000) g;");
      expect(await pg.psql(`SELECT pg_terminate_backend(${pid1})`)).toBe("t");
      await pg.psql("INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series(1, 1000) g;");
      const target2 = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
      await waitFor(`decoded WAL up to ${lsnToString(target2)} after the reconnect`, () => decodedEnd >= target2);
      await waitFor("a new walsender", async () => {
        const p = await pg.psql("SELECT pid FROM pg_stat_replication WHERE application_name = 'ps_test_recv'");
        return p !== "" && Number(p) !== pid1;
      });
      expect(receiver.state.connect_attempts).toBeGreaterThan(attemptsBefore);
      expect(receiver.state.state).toBe("streaming");
      expect(heapRecords).toBeGreaterThanOrEqual(4000);
      expect(violations).toEqual([]);
      expect(receiver.state.last_received_lsn).toBe(expectedNext);

      flushTo = decodedEnd;
      await waitFor("restart_lsn after the reconnect", async () => {
        const r = await pg.psql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ps_stream'");
        return r === lsnToString(flushTo);
      });
    } finally {
      await receiver.stop();
    }
    expect(receiver.state.state).toBe("stopped");
    await expect(receiver.finished).resolves.toBeUndefined();
    await waitFor(
      "the walsender to go",
      async () => (await pg.psql("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'ps_test_recv'")) === "0",
    );
    expect(await pg.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'ps_stream'")).toBe("f");
    await pg.psql("SELECT pg_drop_replication_slot('ps_stream')");
  });

  it("backpressure: while onWal is pending nothing more is read, and the buffer stays bounded", async () => {
    const max_buffered_bytes = 256 * 1024;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let blocked = true;
    // Start at the slot's reserved position, as the pageserver does on first attach.
    const setup = await ReplicationConnection.connect({ connstr });
    await setup.createPhysicalSlot("ps_bp");
    const start = (await setup.readReplicationSlot("ps_bp")).restartLsn!;
    await setup.close();
    let expectedNext: Lsn = start;
    let calls = 0;
    const receiver = new WalReceiver(
      {
        connstr,
        slot_name: "ps_bp",
        start_lsn: start,
        timeline: 1,
        status_interval_ms: 100,
        max_buffered_bytes,
        application_name: "ps_test_bp",
      },
      {
        onWal: async (lsn, bytes) => {
          calls++;
          if (lsn !== expectedNext) throw new Error(`onWal at ${lsnToString(lsn)}, expected ${lsnToString(expectedNext)}`);
          expectedNext = asLsn(lsn + bytes.length);
          if (blocked) await gate;
        },
        flushLsn: () => start,
      },
    );
    receiver.start();
    try {
      await pg.psql("CREATE TABLE bp (id int, pad text); INSERT INTO bp SELECT g, repeat('b', 200) FROM generate_series(1, 20000) g;");
      const target = parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()"));
      expect(target - start).toBeGreaterThan(16 * max_buffered_bytes);
      await waitFor("the inbox to fill up", () => receiver.state.buffered_bytes >= max_buffered_bytes);
      let maxSeen = 0;
      for (let i = 0; i < 20; i++) {
        maxSeen = Math.max(maxSeen, receiver.state.buffered_bytes);
        await new Promise((r) => setTimeout(r, 25));
      }
      // Paused at the bound. The push that crosses it is a message that may have arrived over
      // several reads; after it, only what the same socket read completes still arrives.
      expect(maxSeen).toBeLessThanOrEqual(max_buffered_bytes + XLOGDATA_HEADER_BYTES + MAX_SEND_SIZE + SOCKET_READ_BYTES);
      expect(calls).toBe(1);
      blocked = false;
      release();
      await waitFor("all WAL delivered after the release", () => expectedNext >= target);
      expect(receiver.state.state).toBe("streaming");
    } finally {
      blocked = false;
      release();
      await receiver.stop();
      await pg.psql("SELECT pg_drop_replication_slot('ps_bp')");
    }
  });

  it("a wrong expected system id fails with a typed error after one attempt", async () => {
    const receiver = new WalReceiver(
      {
        connstr,
        slot_name: "ps_wrong",
        start_lsn: parseLsn("0/1000000"),
        expected_system_id: "12345",
        timeline: 1,
        backoff_initial_ms: 10,
      },
      { onWal: () => {}, flushLsn: () => asLsn(0) },
    );
    receiver.start();
    const err = await receiver.finished.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ReplicationError);
    expect((err as ReplicationError).kind).toBe("system_id_mismatch");
    expect((err as ReplicationError).retryable).toBe(false);
    expect(receiver.state.state).toBe("failed");
    expect(receiver.state.connect_attempts).toBe(1);
    expect(receiver.state.last_error).toContain("12345");
    // It failed before creating the slot.
    expect(await pg.psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ps_wrong'")).toBe("0");
    await receiver.stop();
    expect(receiver.state.state).toBe("failed");
  });

  it("a timeline mismatch is a typed, non-retried error", async () => {
    const receiver = new WalReceiver(
      { connstr, slot_name: "ps_tli", start_lsn: parseLsn("0/1000000"), timeline: 2, backoff_initial_ms: 10 },
      { onWal: () => {}, flushLsn: () => asLsn(0) },
    );
    receiver.start();
    await expect(receiver.finished).rejects.toMatchObject({ kind: "timeline_mismatch", retryable: false });
    expect(receiver.state.connect_attempts).toBe(1);
  });

  it("a throwing consumer fails the receiver without a retry", async () => {
    const setup = await ReplicationConnection.connect({ connstr });
    await setup.createPhysicalSlot("ps_throw");
    const start = (await setup.readReplicationSlot("ps_throw")).restartLsn!;
    await setup.close();
    const receiver = new WalReceiver(
      { connstr, slot_name: "ps_throw", start_lsn: start, timeline: 1, backoff_initial_ms: 10 },
      {
        onWal: () => {
          throw new Error("disk full");
        },
        flushLsn: () => start,
      },
    );
    receiver.start();
    await pg.psql("SELECT pg_switch_wal(); CHECKPOINT;");
    await expect(receiver.finished).rejects.toBeInstanceOf(WalConsumerError);
    expect(receiver.state.state).toBe("failed");
    expect(receiver.state.connect_attempts).toBe(1);
    expect(receiver.state.last_error).toContain("disk full");
    await waitFor(
      "the walsender to go",
      async () => (await pg.psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ps_throw' AND active")) === "0",
    );
    await pg.psql("SELECT pg_drop_replication_slot('ps_throw')");
  });

  it("an unreachable source is retried a bounded number of times; stop() ends a backoff", async () => {
    // Port 1 on 127.0.0.1: connection refused at once.
    const dead = "postgresql://postgres@127.0.0.1:1/postgres";
    const states: string[] = [];
    const bounded = new WalReceiver(
      {
        connstr: dead,
        slot_name: "ps_dead",
        start_lsn: asLsn(0),
        timeline: 1,
        backoff_initial_ms: 1,
        backoff_max_ms: 4,
        max_consecutive_failures: 4,
      },
      { onWal: () => {}, flushLsn: () => asLsn(0), onStateChange: (s) => states.push(s.state) },
    );
    bounded.start();
    await expect(bounded.finished).rejects.toMatchObject({ kind: "connection" });
    expect(bounded.state.connect_attempts).toBe(4);
    expect(states.filter((s) => s === "backoff").length).toBe(3);
    expect(states[states.length - 1]).toBe("failed");

    const stopped = new WalReceiver(
      { connstr: dead, slot_name: "ps_dead", start_lsn: asLsn(0), timeline: 1, backoff_initial_ms: 60_000 },
      { onWal: () => {}, flushLsn: () => asLsn(0) },
    );
    stopped.start();
    await waitFor("backoff", () => stopped.state.state === "backoff");
    await stopped.stop();
    expect(stopped.state.state).toBe("stopped");
    expect(stopped.state.connect_attempts).toBe(1);
    await expect(stopped.finished).resolves.toBeUndefined();
  });

  it("BASE_BACKUP streams base.tar with PG_VERSION, base/<db>/ and global/pg_control, and sane LSNs", async () => {
    const dbOid = await pg.psql("SELECT oid FROM pg_database WHERE datname = 'postgres'");
    const before = parseLsn(await pg.psql("SELECT pg_current_wal_lsn()"));
    const conn = await ReplicationConnection.connect({ connstr, max_buffered_bytes: 256 * 1024 });
    try {
      const bb = await startBaseBackup(conn, { label: "ps 'test'" });
      expect(bb.timeline).toBe(1);
      expect(bb.startLsn).toBeGreaterThanOrEqual(before);
      expect(bb.tablespaces.every((t) => t.oid === null)).toBe(true);

      const tar = new TarReader();
      for await (const chunk of bb.archive) tar.push(chunk);
      tar.finish();
      const end = await bb.finished;
      expect(end.timeline).toBe(1);
      expect(end.endLsn).toBeGreaterThanOrEqual(bb.startLsn);
      expect(end.endLsn).toBeLessThanOrEqual(parseLsn(await pg.psql("SELECT pg_current_wal_insert_lsn()")));

      const names = tar.entries.map((e) => e.name);
      expect(names[0]).toBe("backup_label");
      const label = tar.entries[0]!.data.toString("utf8");
      expect(label).toContain(`START WAL LOCATION: ${lsnToString(bb.startLsn)} `);
      expect(label).toContain("LABEL: ps 'test'");
      expect(tar.entries.find((e) => e.name === "PG_VERSION")?.data.toString("utf8")).toBe("15\n");
      const files = tar.entries.filter((e) => e.type === "0");
      expect(files[files.length - 1]!.name).toBe("global/pg_control");
      expect(files[files.length - 1]!.data.length).toBe(8192);
      expect(files.filter((e) => e.name.startsWith(`base/${dbOid}/`)).length).toBeGreaterThan(100);
      expect(bb.archive_bytes).toBe(tar.totalBytes);
      // The connection is usable after the backup.
      expect((await conn.identifySystem()).systemId).toBe(systemId);
    } finally {
      await conn.close();
    }
  });
});

interface TarEntry {
  name: string;
  type: string;
  data: Buffer;
}

/** Just enough ustar to list base.tar: 512-byte headers, octal sizes, two zero end blocks. */
class TarReader {
  entries: TarEntry[] = [];
  totalBytes = 0;
  private parts: Buffer[] = [];

  push(chunk: Uint8Array): void {
    this.parts.push(Buffer.from(chunk));
    this.totalBytes += chunk.length;
  }

  finish(): void {
    const all = Buffer.concat(this.parts);
    expect(all.length % 512).toBe(0);
    let off = 0;
    let ended = false;
    while (off + 512 <= all.length) {
      const h = all.subarray(off, off + 512);
      off += 512;
      if (h.every((b) => b === 0)) {
        ended = true;
        break;
      }
      const name = h.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
      const size = Number.parseInt(h.subarray(124, 136).toString("ascii").replace(/\0.*$/s, "").trim() || "0", 8);
      const type = String.fromCharCode(h[156]!);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
      expect(Number.parseInt(h.subarray(148, 156).toString("ascii").replace(/\0.*$/s, "").trim(), 8)).toBe(sum);
      this.entries.push({ name, type, data: all.subarray(off, off + size) });
      off += Math.ceil(size / 512) * 512;
    }
    expect(ended).toBe(true);
  }
}
