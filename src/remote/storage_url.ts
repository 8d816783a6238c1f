/**
 * The remote storage URL (`--remote-storage`, config `remote_storage`) and the backend it opens:
 *
 *   file:///abs/path                                          LocalFs rooted at /abs/path
 *   s3://bucket[/prefix][?endpoint=http://host:port][&region=R]   S3 (region default us-east-1)
 *
 * Both take the node's remote options as query parameters too (NODE_OPTION_KEYS, integers in
 * milliseconds): detach_timeout_ms (bound on each wait of a detach) and
 * generation_check_interval_ms (at most one generation check per tenant this often before a
 * new flush position goes to a WAL source); src/main/remote/remote_timelines.ts uses them.
 *
 * Anything else is an InvalidArgumentError that says what was expected. Credentials never
 * appear in the URL (the AWS SDK reads them from the environment).
 */
import { InvalidArgumentError } from "../types/errors.js";
import { quoteInput } from "../types/ids.js";
import { LocalFs } from "./local_fs.js";
import { checkKey, type RemoteStorage } from "./remote_storage.js";
import { S3Storage } from "./s3.js";

/** The node's remote options carried in the URL (absent: the defaults of src/main/remote/remote_timelines.ts). */
export interface RemoteNodeOptions {
  detach_timeout_ms?: number;
  generation_check_interval_ms?: number;
}

export type RemoteStorageConfig =
  | { kind: "local"; root_path: string; options: RemoteNodeOptions }
  | { kind: "s3"; bucket: string; prefix: string; region: string; endpoint: string | null; options: RemoteNodeOptions };

const NODE_OPTION_KEYS = ["detach_timeout_ms", "generation_check_interval_ms"] as const;
/** A day: a longer wait is a typo, not a setting. */
const MAX_OPTION_MS = 86_400_000;

export const DEFAULT_S3_REGION = "us-east-1";
const MAX_URL_CHARS = 2048;
/** S3 bucket naming rules (lower-case letters, digits, '.', '-'; 3 to 63 characters). */
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION_RE = /^[a-z0-9-]{1,64}$/;

export function parseRemoteStorageUrl(text: string): RemoteStorageConfig {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(
      `invalid remote storage URL ${quoteInput(text)}: ${why} (expected file:///abs/path or s3://bucket/prefix?endpoint=http://host:port&region=R)`,
    );
  };
  if (typeof text !== "string" || text.length === 0) return bad("empty");
  if (text.length > MAX_URL_CHARS) return bad(`longer than ${MAX_URL_CHARS} characters`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return bad("not a URL");
  }
  if (url.hash !== "") bad("a fragment is not allowed");
  if (url.username !== "" || url.password !== "") bad("credentials don't belong in the URL (use the AWS_* environment variables)");
  const options: RemoteNodeOptions = {};
  for (const key of NODE_OPTION_KEYS) {
    const v = url.searchParams.get(key);
    if (v === null) continue;
    const n = /^\d{1,9}$/.test(v) ? Number(v) : Number.NaN;
    if (!(n >= (key === "detach_timeout_ms" ? 1 : 0) && n <= MAX_OPTION_MS))
      bad(`${key} must be an integer number of milliseconds up to ${MAX_OPTION_MS}`);
    options[key] = n;
    url.searchParams.delete(key);
  }
  if (url.protocol === "file:") {
    if (url.host !== "") bad("a file URL has no host: use three slashes, file:///abs/path");
    if ([...url.searchParams.keys()].length > 0) bad(`a file URL takes no query but ${NODE_OPTION_KEYS.join(", ")}`);
    const path = decodePath(url.pathname, bad);
    if (!path.startsWith("/") || path.includes("\0")) bad("the path must be absolute");
    const root_path = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
    if (root_path === "/") bad("refusing the filesystem root as remote storage");
    if (root_path.split("/").some((c) => c === "." || c === "..")) bad("'.' or '..' in the path");
    return { kind: "local", root_path, options };
  }
  if (url.protocol === "s3:") {
    const bucket = url.hostname;
    if (url.port !== "") bad("an s3 URL has no port (put the endpoint in ?endpoint=)");
    if (!BUCKET_RE.test(bucket) || bucket.includes("..")) bad(`invalid bucket name ${quoteInput(bucket)}`);
    const prefix = decodePath(url.pathname, bad).replace(/^\/+/, "").replace(/\/+$/, "");
    if (prefix !== "") {
      try {
        checkKey(prefix);
      } catch (e) {
        bad(`invalid prefix: ${(e as Error).message}`);
      }
    }
    let endpoint: string | null = null;
    let region = DEFAULT_S3_REGION;
    for (const [k, v] of url.searchParams) {
      if (k === "endpoint") {
        let ep: URL;
        try {
          ep = new URL(v);
        } catch {
          return bad(`endpoint ${quoteInput(v)} is not a URL`);
        }
        if (ep.protocol !== "http:" && ep.protocol !== "https:") bad("the endpoint must be http:// or https://");
        if (ep.pathname !== "/" || ep.search !== "" || ep.hash !== "") bad("the endpoint is scheme://host[:port] only");
        endpoint = `${ep.protocol}//${ep.host}`;
      } else if (k === "region") {
        if (!REGION_RE.test(v)) bad(`invalid region ${quoteInput(v)}`);
        region = v;
      } else {
        bad(`unknown parameter ${quoteInput(k)} (known: endpoint, region, ${NODE_OPTION_KEYS.join(", ")})`);
      }
    }
    return { kind: "s3", bucket, prefix, region, endpoint, options };
  }
  return bad(`unsupported scheme ${quoteInput(url.protocol)}`);
}

function decodePath(p: string, bad: (why: string) => never): string {
  try {
    return decodeURIComponent(p);
  } catch {
    return bad("malformed percent-encoding in the path");
  }
}

/** Opens the backend a parsed URL names. */
export function openRemoteStorage(cfg: RemoteStorageConfig, opts: { timeout_ms?: number } = {}): RemoteStorage {
  if (cfg.kind === "local") return new LocalFs(cfg.root_path, opts);
  return new S3Storage({ bucket: cfg.bucket, prefix: cfg.prefix, region: cfg.region, endpoint: cfg.endpoint, ...opts });
}
