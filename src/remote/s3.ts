/**
 * S3: remote storage in an S3 bucket (AWS or any S3-compatible endpoint), via
 * @aws-sdk/client-s3. Key `a/b` is the object `<prefix>/a/b`.
 *
 * - Path-style addressing (self-hosted endpoints have no per-bucket DNS names).
 * - Credentials: the SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 *   AWS_SESSION_TOKEN, profiles, instance roles); nothing is read here.
 * - The SDK does not retry (maxAttempts 1): the upload queue owns retries and backoff, and
 *   a call's time stays bounded by its timeout.
 * - One PutObject per object, up to S3's single-PUT limit of 5 GiB (MAX_PUT_BYTES); layer
 *   files are far below it (compaction_target_size_bytes, 128 MiB by default), so there is no
 *   multipart upload. A larger object is a permanent error.
 * - Checksums only where S3 requires them (requestChecksumCalculation WHEN_REQUIRED), so a
 *   stream body goes out with a plain Content-Length, which every S3 clone understands.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Readable } from "node:stream";
import { assert } from "../types/assert.js";
import {
  abortError,
  callSignal,
  checkKey,
  checkPrefix,
  DEFAULT_TIMEOUT_MS,
  type ListOptions,
  MAX_LIST_KEYS,
  type PutOptions,
  type RemoteCallOptions,
  type RemoteObject,
  type RemoteStorage,
  RemoteStorageError,
} from "./remote_storage.js";

export const MAX_PUT_BYTES = 5 * 1024 * 1024 * 1024;
/** S3's limit on keys per DeleteObjects request. */
const DELETE_BATCH_KEYS = 1000;

export interface S3Config {
  bucket: string;
  /** Prefix inside the bucket, without leading or trailing '/'; "" for the bucket's root. */
  prefix: string;
  region: string;
  /** e.g. http://127.0.0.1:9000; null for AWS itself. */
  endpoint: string | null;
  timeout_ms?: number;
}

/** S3 error names that mean "this key does not exist". */
const NOT_FOUND_NAMES = new Set(["NoSuchKey", "NotFound"]);
/** S3 error names that no retry will fix, whatever their status. */
const PERMANENT_NAMES = new Set([
  "NoSuchBucket",
  "AccessDenied",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "InvalidBucketName",
  "EntityTooLarge",
  "InvalidArgument",
]);

export class S3Storage implements RemoteStorage {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly timeout_ms: number;

  constructor(cfg: S3Config) {
    this.bucket = cfg.bucket;
    this.prefix = cfg.prefix === "" ? "" : `${cfg.prefix}/`;
    this.timeout_ms = cfg.timeout_ms ?? DEFAULT_TIMEOUT_MS;
    this.description = `s3://${cfg.bucket}/${cfg.prefix}`;
    this.client = new S3Client({
      region: cfg.region,
      ...(cfg.endpoint === null ? {} : { endpoint: cfg.endpoint }),
      forcePathStyle: true,
      maxAttempts: 1,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: { connectionTimeout: 10_000 },
    });
  }

  close(): void {
    this.client.destroy();
  }

  async put(key: string, body: Uint8Array | Readable, opts: PutOptions): Promise<void> {
    checkKey(key);
    assert(Number.isSafeInteger(opts.size_bytes) && opts.size_bytes >= 0, "put: size_bytes must be a byte count");
    if (opts.size_bytes > MAX_PUT_BYTES) {
      throw new RemoteStorageError("permanent", key, `object of ${opts.size_bytes} bytes is over the single-PUT limit ${MAX_PUT_BYTES}`);
    }
    if (body instanceof Uint8Array && body.byteLength !== opts.size_bytes) {
      throw new RemoteStorageError("permanent", key, `body is ${body.byteLength} bytes, expected ${opts.size_bytes}`);
    }
    const signal = callSignal(opts, this.timeout_ms);
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: body, ContentLength: opts.size_bytes }),
        { abortSignal: signal },
      );
    } catch (e) {
      if (body instanceof Readable) body.destroy();
      throw this.classify(key, e, opts, signal);
    }
  }

  async get(key: string, opts?: RemoteCallOptions): Promise<Uint8Array> {
    checkKey(key);
    const signal = callSignal(opts, this.timeout_ms);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), { abortSignal: signal });
      assert(out.Body !== undefined, "GetObject without a body");
      const bytes = await out.Body.transformToByteArray();
      if (out.ContentLength !== undefined && bytes.byteLength !== out.ContentLength) {
        throw new RemoteStorageError("transient", key, `short read: ${bytes.byteLength} of ${out.ContentLength} bytes`);
      }
      return bytes;
    } catch (e) {
      throw this.classify(key, e, opts, signal);
    }
  }

  async getStream(key: string, opts?: RemoteCallOptions): Promise<{ stream: Readable; size_bytes: number }> {
    checkKey(key);
    const signal = callSignal(opts, this.timeout_ms);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), { abortSignal: signal });
      if (!(out.Body instanceof Readable) || out.ContentLength === undefined) {
        throw new RemoteStorageError("permanent", key, "GetObject answered without a stream body or a length");
      }
      return { stream: out.Body, size_bytes: out.ContentLength };
    } catch (e) {
      throw this.classify(key, e, opts, signal);
    }
  }

  async head(key: string, opts?: RemoteCallOptions): Promise<RemoteObject> {
    checkKey(key);
    const signal = callSignal(opts, this.timeout_ms);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), { abortSignal: signal });
      return { key, size_bytes: out.ContentLength ?? 0 };
    } catch (e) {
      throw this.classify(key, e, opts, signal);
    }
  }

  async list(prefix: string, opts?: ListOptions): Promise<RemoteObject[]> {
    checkPrefix(prefix);
    const max_keys = opts?.max_keys ?? MAX_LIST_KEYS;
    const signal = callSignal(opts, this.timeout_ms);
    const out: RemoteObject[] = [];
    let token: string | undefined;
    try {
      // Each page holds at least one key, so the loop ends within max_keys pages.
      for (let page = 0; page <= max_keys; page++) {
        const res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
          { abortSignal: signal },
        );
        for (const o of res.Contents ?? []) {
          if (o.Key === undefined || !o.Key.startsWith(this.prefix)) continue;
          if (out.length >= max_keys) throw new RemoteStorageError("permanent", prefix, `more than ${max_keys} keys under the prefix`);
          out.push({ key: o.Key.slice(this.prefix.length), size_bytes: o.Size ?? 0 });
        }
        if (res.IsTruncated !== true || res.NextContinuationToken === undefined) break;
        token = res.NextContinuationToken;
      }
    } catch (e) {
      throw this.classify(prefix, e, opts, signal);
    }
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return out;
  }

  async delete(keys: readonly string[], opts?: RemoteCallOptions): Promise<void> {
    for (const k of keys) checkKey(k);
    const signal = callSignal(opts, this.timeout_ms);
    for (let i = 0; i < keys.length; i += DELETE_BATCH_KEYS) {
      const batch = keys.slice(i, i + DELETE_BATCH_KEYS);
      try {
        const res = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((k) => ({ Key: this.prefix + k })), Quiet: true },
          }),
          { abortSignal: signal },
        );
        const failed = (res.Errors ?? []).filter((er) => er.Code !== "NoSuchKey");
        const [f] = failed;
        if (f !== undefined) {
          const kind = f.Code !== undefined && PERMANENT_NAMES.has(f.Code) ? "permanent" : "transient";
          throw new RemoteStorageError(
            kind,
            f.Key ?? batch[0]!,
            `${failed.length} of ${batch.length} deletions failed, first: ${f.Code}: ${f.Message}`,
          );
        }
      } catch (e) {
        throw this.classify(batch[0]!, e, opts, signal);
      }
    }
  }

  private classify(key: string, e: unknown, opts: RemoteCallOptions | undefined, signal: AbortSignal): RemoteStorageError {
    if (e instanceof RemoteStorageError) return e;
    const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const name = err?.name ?? "";
    const status = err?.$metadata?.httpStatusCode;
    const what = `${name}${status === undefined ? "" : ` (HTTP ${status})`}: ${err?.message ?? String(e)}`;
    if (signal.aborted) return abortError(key, opts, e);
    if (PERMANENT_NAMES.has(name)) return new RemoteStorageError("permanent", key, what, { cause: e });
    if (NOT_FOUND_NAMES.has(name) || status === 404) return new RemoteStorageError("not_found", key, what, { cause: e });
    // Any other error may heal: a 403 from clock skew (RequestTimeTooSkewed), an expired or
    // rotating token (ExpiredToken), throttling, timeouts, 5xx. Only PERMANENT_NAMES above are
    // known not to; even those the upload queue retries (backoff), attach fails on them.
    return new RemoteStorageError("transient", key, what, { cause: e });
  }
}
