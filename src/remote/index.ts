/**
 * src/remote: remote storage. The RemoteStorage interface and its backends (LocalFs, S3), the
 * storage URL, generations and object keys, index_part.json, the per-timeline upload queue
 * with Neon's ordering rules, the RemoteTimelineClient a timeline reports its layer changes
 * to, verified downloads (the ground of attach), the index-vs-bucket check, and the deletion
 * of a deleted timeline's or tenant's objects.
 */
export * from "./attach.js";
export * from "./download.js";
export * from "./generation.js";
export * from "./index_part.js";
export * from "./local_fs.js";
export * from "./remote_check.js";
export * from "./remote_delete.js";
export * from "./remote_path.js";
export * from "./remote_storage.js";
export * from "./remote_timeline_client.js";
export * from "./s3.js";
export * from "./storage_url.js";
export * from "./upload_queue.js";
