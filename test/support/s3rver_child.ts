/**
 * s3rver in its own process, for TestS3 (test/support/s3rver.ts). Runs under
 * `node --openssl-legacy-provider`: s3rver 3.7.1 makes ListObjectsV2 continuation tokens with
 * DES, which OpenSSL 3 only offers through its legacy provider.
 *
 * Also works around an s3rver bug: DeleteObjects deletes its keys concurrently, and each
 * deletion then removes its directory if empty; when the last keys of a directory go together
 * the removals race and the request fails with HTTP 500. Real S3 has no directories; here the
 * per-object deletions run one at a time.
 *
 * And a second one: a PUT whose client gave up (a pageserver stopping an upload before it
 * deletes the prefix) is still written by s3rver after the deletion removed its directory,
 * and the ENOENT of that write is an unhandled 'error' event that kills the process. Real S3
 * has no directories and simply drops the aborted PUT: here that one error is logged and
 * the server goes on; any other uncaught error still ends the process.
 *
 *   node --openssl-legacy-provider --import tsx test/support/s3rver_child.ts <dir> <port> <bucket>
 *
 * Prints "listening <port>" once serving; exits when its stdin closes (the test process is
 * gone) or on SIGTERM/SIGKILL.
 */
import { createRequire } from "node:module";

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  store: { deleteObject(bucket: string, key: string): Promise<void> };
}
type S3rverCtor = new (opts: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverInstance;

const S3rver = createRequire(import.meta.url)("s3rver") as S3rverCtor;
const [dir, port, bucket] = process.argv.slice(2);

const inst = new S3rver({
  address: "127.0.0.1",
  port: Number(port),
  silent: process.env["S3RVER_LOG"] === undefined,
  directory: dir!,
  configureBuckets: [{ name: bucket! }],
});
const store = inst.store;
const deleteOne = store.deleteObject.bind(store);
let tail: Promise<void> = Promise.resolve();
store.deleteObject = (b: string, k: string): Promise<void> => {
  const p = tail.then(() => deleteOne(b, k));
  tail = p.catch(() => undefined);
  return p;
};
process.on("uncaughtException", (e: NodeJS.ErrnoException) => {
  if (e.code === "ENOENT" && typeof e.path === "string" && e.path.startsWith(dir!)) {
    process.stderr.write(`s3rver: a write raced a deletion of its directory (dropped, as S3 drops an aborted PUT): ${e.message}\n`);
    return;
  }
  process.stderr.write(`s3rver: uncaught ${e.stack ?? String(e)}\n`);
  process.exit(1);
});
const addr = await inst.run();
process.stdout.write(`listening ${addr.port}\n`);
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
