/**
 * WAL sources: a timeline that has a PostgreSQL source streams its WAL (physical replication
 * through a slot) into the WAL decoder and WalIngest, and reports disk_consistent_lsn (with
 * remote storage: remote_consistent_lsn) as the flush position, so the source keeps every
 * byte the pageserver has not made durable. After a restart streaming resumes at
 * last_record_lsn (= disk_consistent_lsn).
 *
 * The source of a timeline is persisted next to its metadata (wal_source.json, durable) with
 * the system identifier seen on first contact; a source with another system identifier is
 * refused. A source whose WAL needs redo we can't do natively yet must carry images for
 * those rmgrs (wal_consistency_checking, see checkSource).
 *
 * Reaching a source (connection strings, the probe of a new source, bootstrap) is
 * source_connect.ts. A source that fails to start later (at startup, or its server goes away) retries
 * with a bounded backoff and shows "retrying" with its error and the next attempt's time.
 *
 * A record that ingest can't take (an error from WalIngest or the decoder) stops the stream
 * with state "error", the reason in last_error and the next attempt's time; the attempt
 * restarts streaming at last_record_lsn (the failed record's pending changes were dropped;
 * any it had put early are put again at the same LSN) after a
 * backoff that doubles from INGEST_RETRY_INITIAL_MS up to INGEST_RETRY_MAX_MS and starts over
 * once ingest gets past the record. Each such failure counts in ingestErrors
 * (pageserver_wal_ingest_errors_total). Never a silent dead end.
 *
 * Backpressure: before each record, ingest asks the timeline's ingest gate; while it is
 * closed (frozen queue or L0 files over their limits) onWal waits, so the walreceiver reads
 * no more WAL and the source keeps it.
 *
 * Letting a source shut down: at a fast shutdown the source's walsender waits until the
 * flush position we report (disk_consistent_lsn) reaches the end of its WAL. So a shutdown
 * checkpoint record in the stream, or a stream idle for IDLE_FLUSH_MS, makes us freeze and
 * flush what is in memory and report the new position at once.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { checkpointLocation } from "../../pgdata/basebackup.js";
import { decodeControlFile, systemIdentifierString } from "../../pg/control.js";
import { DatadirSnapshot } from "../../pgdata/reader.js";
import { WalIngest } from "../../pgdata/walingest.js";
import { maskConninfo } from "../../pg/replication/conninfo.js";
import { WalConsumerError, WalReceiver, type WalReceiverState } from "../../pg/replication/walreceiver.js";
import { WalStreamDecoder } from "../../pg/wal/decoder.js";
import type { DecodedRecord } from "../../pg/wal/record.js";
import { RM_XLOG_ID, XLOG_CHECKPOINT_SHUTDOWN } from "../../pg/wal/rmgr_ids.js";
import { Backpressure } from "../../tenant/ingest_gate.js";
import { removeFileDurable, writeFileDurable } from "../../layers/durable_file.js";
import type { Timeline } from "../../tenant/timeline/index.js";
import { ConflictError } from "../../types/errors.js";
import { failpoint } from "../../types/failpoints.js";
import { type Lsn, lsnAdd, lsnMax, lsnToString, parseLsn } from "../../types/lsn.js";
import {
  type ConnstrPolicy,
  parseConnstr,
  probeSource,
  publicSourceError,
  type SourceInfo,
  type WalSourceConfig,
} from "./source_connect.js";

export const WAL_SOURCE_FILE = "wal_source.json";
/** A stream that brought no WAL for this long gets what it ingested flushed (see the header). */
export const IDLE_FLUSH_MS = 3000;
const IDLE_CHECK_MS = 1000;

export interface WalSourceStatus {
  connstr: string;
  slot_name: string;
  /** starting | connecting | streaming | retrying | error (ingest failed; retried) | failed | stopped */
  state: string;
  last_received_lsn: string | null;
  last_error: string | null;
  /** While retrying: when the next attempt starts (ISO time). */
  next_retry_at: string | null;
  records_ingested: number;
}

/** Retries of a source that could not start: 1 s, 2 s, … capped here. */
const START_RETRY_INITIAL_MS = 1_000;
const START_RETRY_MAX_MS = 60_000;
/** Retries of a stream whose ingest failed: 1 s, 2 s, … capped here. */
const INGEST_RETRY_INITIAL_MS = 1_000;
const INGEST_RETRY_MAX_MS = 60_000;

/** The system identifier in the timeline's pg_control at its last LSN; null if it has none. */
export async function timelineSystemId(tl: Timeline): Promise<string | null> {
  const control = await new DatadirSnapshot(tl, tl.lastRecordLsn).controlFile();
  return control === null ? null : systemIdentifierString(decodeControlFile(control));
}

export class TimelineWalSource {
  readonly timeline: Timeline;
  config: WalSourceConfig;
  private readonly log: Logger;
  private receiver: WalReceiver | null = null;
  private ingest: WalIngest | null = null;
  private decoder: WalStreamDecoder | null = null;
  private state_: WalReceiverState | null = null;
  /** A failure that ended the source (not retried): shown as state "failed". */
  private failure: string | null = null;
  /** A start that failed and will be retried: the error and when the next attempt starts. */
  private retry: { error: string; at_ms: number } | null = null;
  /**
   * The last ingest failure: its error, where ingest stood (last_record_lsn), and when the
   * stream restarts (null once it has). Cleared when ingest gets past that LSN.
   */
  private ingestFailure: { error: string; at_lsn: Lsn; retry_at_ms: number | null } | null = null;
  private ingestRetryDelay_ms = INGEST_RETRY_INITIAL_MS;
  private ingestRetryTimer: NodeJS.Timeout | null = null;
  /** Ingest failures of this source so far (each stopped the stream and was retried). */
  ingestErrors = 0;
  private stopped = false;
  private wakeRetry: (() => void) | null = null;
  private readonly consistentFrom: Lsn | null;
  /** Aborts a wait at the ingest gate when the source stops. */
  private stopSignal = new AbortController();
  private idleTimer: NodeJS.Timeout | null = null;
  private lastWal_ms = 0;
  private flushRequest: Promise<void> | null = null;

  /**
   * The flush position reported to the source: disk_consistent_lsn, or with remote storage
   * remote_consistent_lsn (the source keeps WAL until it is in the object store).
   */
  private readonly flushLsnOf: (tl: Timeline) => Lsn;

  constructor(timeline: Timeline, config: WalSourceConfig, log: Logger, flushLsnOf: (tl: Timeline) => Lsn = (tl) => tl.diskConsistentLsn) {
    this.flushLsnOf = flushLsnOf;
    this.timeline = timeline;
    this.config = config;
    this.log = log;
    this.consistentFrom = config.consistent_from_lsn ? parseLsn(config.consistent_from_lsn) : null;
  }

  static configPath(tl: Timeline): string {
    return join(tl.dir, WAL_SOURCE_FILE);
  }

  static load(tl: Timeline, policy: ConnstrPolicy): WalSourceConfig | null {
    const p = TimelineWalSource.configPath(tl);
    if (!existsSync(p)) return null;
    const j = JSON.parse(readFileSync(p, "utf8")) as WalSourceConfig;
    return {
      connstr: parseConnstr(j.connstr, policy),
      slot_name: String(j.slot_name),
      system_id: j.system_id ?? null,
      consistent_from_lsn: j.consistent_from_lsn ?? null,
    };
  }

  async persist(): Promise<void> {
    await writeFileDurable(TimelineWalSource.configPath(this.timeline), Buffer.from(JSON.stringify(this.config)));
  }

  /** Remove the persisted source, after any write of it still in flight (a stopped start's). */
  static remove(tl: Timeline): Promise<void> {
    return removeFileDurable(TimelineWalSource.configPath(tl));
  }

  /**
   * Check the source (or take the check a caller just made) and stream in the background.
   * Throws what the check throws; the caller decides whether to retry (startWithRetry).
   */
  async start(probed?: SourceInfo): Promise<void> {
    const info = probed ?? (await probeSource(this.config.connstr, this.config.system_id, this.log));
    if (this.stopped) return;
    if (this.config.system_id === null) {
      this.config.system_id = info.systemId;
      await this.persist();
    }
    const tl = this.timeline;
    const start = await streamStartLsn(tl);
    this.ingest = await WalIngest.open(tl);
    if (this.stopped) return;
    this.decoder = new WalStreamDecoder(start);
    this.failure = null;
    this.retry = null;
    this.stopSignal = new AbortController();
    const receiver = new WalReceiver(
      {
        connstr: this.config.connstr,
        slot_name: this.config.slot_name,
        start_lsn: start,
        expected_system_id: info.systemId,
        timeline: info.timeline,
        application_name: `pageserver_${tl.timelineId}`,
      },
      {
        onWal: (_startLsn, bytes) => this.onWal(bytes),
        flushLsn: () => this.flushLsnOf(tl),
        applyLsn: () => tl.lastRecordLsn,
        onStateChange: (s) => {
          const was = this.state_?.state;
          this.state_ = s;
          // Transitions an operator wants in the log: the stream lost (and why), and back.
          if (s.state === "backoff") {
            this.log.warn(
              { last_error: s.last_error, next_attempt_at_ms: s.next_attempt_at_ms, last_received_lsn: lsnToString(s.last_received_lsn) },
              "WAL stream lost; reconnecting",
            );
          } else if (s.state === "streaming" && was !== undefined && was !== "connecting") {
            this.log.info({ last_received_lsn: lsnToString(s.last_received_lsn) }, "WAL stream resumed");
          } else if (s.state === "streaming" && was === "connecting" && s.connect_attempts > 1) {
            this.log.info(
              { last_received_lsn: lsnToString(s.last_received_lsn), connect_attempts: s.connect_attempts },
              "WAL stream resumed",
            );
          }
        },
      },
    );
    this.receiver = receiver;
    receiver.start();
    this.lastWal_ms = performance.now();
    this.idleTimer = setInterval(() => this.checkIdle(), IDLE_CHECK_MS);
    this.idleTimer.unref();
    receiver.finished.catch((e: unknown) => {
      if (this.stopped || this.receiver !== receiver) return;
      if (e instanceof WalConsumerError) {
        this.onIngestFailure(e);
        return;
      }
      this.failure = e instanceof Error ? e.message : String(e);
      this.log.error({ err: e }, "WAL source stopped with an error");
    });
    this.log.info({ start_lsn: lsnToString(start), slot: this.config.slot_name }, "streaming WAL");
  }

  /**
   * Start, and while that fails, keep retrying with a bounded backoff (state "retrying" with
   * the error and the next attempt's time), until stop(). A source of another system is not
   * retried (state "failed"): only a new connstr fixes that.
   */
  async startWithRetry(): Promise<void> {
    let delay_ms = START_RETRY_INITIAL_MS;
    while (!this.stopped) {
      try {
        await this.start();
        return;
      } catch (e) {
        if (this.stopped) return;
        const error = e instanceof Error ? e.message : String(e);
        if (e instanceof ConflictError) {
          this.failure = error;
          this.log.error({ err: e }, "WAL source refused");
          return;
        }
        this.retry = { error, at_ms: Date.now() + delay_ms };
        this.log.warn({ err: e, retry_in_ms: delay_ms }, "WAL source could not start; retrying");
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay_ms);
          t.unref();
          this.wakeRetry = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wakeRetry = null;
        delay_ms = Math.min(delay_ms * 2, START_RETRY_MAX_MS);
      }
    }
  }

  /**
   * Ingest refused a record: the receiver has stopped. Show it ("error"), count it, and
   * start streaming again at last_record_lsn after the backoff.
   */
  private onIngestFailure(e: WalConsumerError): void {
    const tl = this.timeline;
    const delay_ms = this.ingestRetryDelay_ms;
    this.ingestErrors++;
    this.ingestFailure = { error: e.message, at_lsn: tl.lastRecordLsn, retry_at_ms: Date.now() + delay_ms };
    this.ingestRetryDelay_ms = Math.min(delay_ms * 2, INGEST_RETRY_MAX_MS);
    this.log.error(
      { err: e.cause ?? e, at_lsn: lsnToString(tl.lastRecordLsn), retry_in_ms: delay_ms },
      "WAL ingest failed; the stream restarts after a backoff",
    );
    this.receiver = null;
    if (this.idleTimer !== null) clearInterval(this.idleTimer);
    this.idleTimer = null;
    this.ingestRetryTimer = setTimeout(() => {
      this.ingestRetryTimer = null;
      if (this.stopped) return;
      if (this.ingestFailure !== null) this.ingestFailure.retry_at_ms = null;
      void this.startWithRetry();
    }, delay_ms);
    this.ingestRetryTimer.unref();
  }

  /** Ingest went past the record that failed: the failure is over and the backoff starts over. */
  private ingestProgressed(): void {
    const f = this.ingestFailure;
    if (f === null || f.retry_at_ms !== null || this.timeline.lastRecordLsn <= f.at_lsn) return;
    this.log.info({ last_record_lsn: lsnToString(this.timeline.lastRecordLsn) }, "WAL ingest got past the record that failed");
    this.ingestFailure = null;
    this.ingestRetryDelay_ms = INGEST_RETRY_INITIAL_MS;
  }

  /** Resolves once the receiver streams, false if it doesn't within `timeout_ms`. */
  async waitStreaming(timeout_ms: number): Promise<boolean> {
    const until = Date.now() + timeout_ms;
    while (Date.now() < until && !this.stopped) {
      if (this.state_?.state === "streaming") return true;
      if (this.failure !== null) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.state_?.state === "streaming";
  }

  private async onWal(bytes: Uint8Array): Promise<void> {
    await failpoint("walreceiver-before-ingest");
    const dec = this.decoder!;
    const ing = this.ingest!;
    const tl = this.timeline;
    this.lastWal_ms = performance.now();
    dec.feed(bytes);
    let shutdown = false;
    let records = 0;
    for (let rec = dec.next(); rec !== null; rec = dec.next()) {
      if (tl.ingestBackpressure() !== Backpressure.None) await tl.waitIngestCapacity(this.stopSignal.signal);
      // Synchronous unless the record's lookups need data fetched first (then it is ingested again).
      const applying = tl.applyRecord(ing, rec);
      if (applying !== undefined) await applying;
      records++;
      if (isShutdownCheckpoint(rec)) shutdown = true;
    }
    tl.metrics.walReceived(records, bytes.length);
    this.ingestProgressed();
    const from = this.consistentFrom;
    if (from !== null && tl.latestGcCutoffLsn < from && tl.lastRecordLsn >= from) {
      void tl.raiseGcCutoff(from).catch((e: unknown) => this.log.error({ err: e }, "could not record the consistent point"));
    }
    if (shutdown) {
      this.log.info({ lsn: lsnToString(tl.lastRecordLsn) }, "shutdown checkpoint from the source: flushing so it can stop");
      this.flushAndReport();
    }
  }

  /** Idle timer: a stream quiet for IDLE_FLUSH_MS gets its unflushed WAL flushed and reported. */
  private checkIdle(): void {
    const tl = this.timeline;
    if (performance.now() - this.lastWal_ms < IDLE_FLUSH_MS) return;
    if (tl.diskConsistentLsn >= tl.lastRecordLsn) return;
    this.flushAndReport();
  }

  /** Freeze and flush what is ingested, then tell the source at once (one request at a time). */
  private flushAndReport(): void {
    if (this.flushRequest !== null || this.receiver === null) return;
    const tl = this.timeline;
    this.flushRequest = tl
      .checkpoint()
      .then(() => this.receiver?.reportNow())
      .catch((e: unknown) => this.log.warn({ err: e }, "flush for the source failed"))
      .finally(() => {
        this.flushRequest = null;
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeRetry?.();
    if (this.ingestRetryTimer !== null) clearTimeout(this.ingestRetryTimer);
    this.ingestRetryTimer = null;
    const r = this.receiver;
    this.receiver = null;
    if (this.idleTimer !== null) clearInterval(this.idleTimer);
    this.idleTimer = null;
    // stop() marks the receiver stopping before it awaits anything; only then end a wait at
    // the ingest gate, so the receiver sees a stop and not a consumer failure.
    const stopped = r?.stop();
    this.stopSignal.abort();
    await stopped;
    await this.flushRequest;
  }

  /**
   * For the lag metrics: the source's WAL end as of its last message, and the end of what it
   * sent us; null before the first connection.
   */
  positions(): { serverWalEndLsn: Lsn; lastReceivedLsn: Lsn } | null {
    const s = this.receiver?.state ?? this.state_;
    return s === null ? null : { serverWalEndLsn: s.server_wal_end_lsn, lastReceivedLsn: s.last_received_lsn };
  }

  status(): WalSourceStatus {
    // The receiver's live state (last_received_lsn moves without a state change).
    const s = this.receiver?.state ?? this.state_;
    let state = s?.state ?? "starting";
    let nextRetry: number | null = null;
    const ingestFailure = this.ingestFailure;
    if (this.failure !== null) state = "failed";
    else if (ingestFailure !== null && ingestFailure.retry_at_ms !== null) {
      state = "error";
      nextRetry = ingestFailure.retry_at_ms;
    } else if (this.retry !== null) {
      state = "retrying";
      nextRetry = this.retry.at_ms;
    } else if (s?.state === "backoff") {
      state = "retrying";
      nextRetry = s.next_attempt_at_ms;
    }
    return {
      connstr: maskConninfo(this.config.connstr),
      slot_name: this.config.slot_name,
      state,
      last_received_lsn: s === null ? null : lsnToString(s.last_received_lsn),
      last_error: ((e) => (e === null ? null : publicSourceError(e)))(
        this.failure ?? ingestFailure?.error ?? this.retry?.error ?? s?.last_error ?? null,
      ),
      next_retry_at: nextRetry === null ? null : new Date(nextRetry).toISOString(),
      records_ingested: this.ingest?.records ?? 0,
    };
  }
}

function isShutdownCheckpoint(rec: DecodedRecord): boolean {
  return rec.rmid === RM_XLOG_ID && (rec.info & 0xf0) === XLOG_CHECKPOINT_SHUTDOWN;
}

/**
 * Where streaming starts: last_record_lsn, except for a branch that has no WAL of its own yet.
 * Its source is an endpoint started from our base backup at the branch point, whose WAL
 * begins with the synthetic checkpoint record; when that record had to move to the next page
 * (it did not fit), the bytes before it are not WAL, so start at that page.
 */
export async function streamStartLsn(tl: Timeline): Promise<Lsn> {
  const last = tl.lastRecordLsn;
  if (tl.ancestor === null || last !== tl.ancestorLsn) return last;
  const control = await new DatadirSnapshot(tl, last).controlFile();
  if (control === null) return last;
  const c = checkpointLocation(last, decodeControlFile(control).xlogSegSize);
  const page = lsnAdd(c, -(c % 8192));
  return lsnMax(page, last);
}
