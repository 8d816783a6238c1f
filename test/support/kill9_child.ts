/**
 * The process the kill -9 test kills: loads (or creates) one tenant + timeline in the given
 * directory and ingests the deterministic schedule from where it left off, with a tiny
 * checkpoint_distance and constant compaction so that it is always flushing or compacting.
 * Prints "ready <lsn>" once, then "dcl <lsn>" lines as disk_consistent_lsn advances.
 * Bounded: stops by itself after MAX_STEPS steps or MAX_RUN_MS.
 *
 *   node --import tsx test/support/kill9_child.ts <dir> <tenant_id> <timeline_id>
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseTenantId, parseTimelineId } from "../../src/types/ids.js";
import { START_LSN, lsnOfStep, stepOfLsn, valueOfStep } from "./kill9_schedule.js";
import { TenantHarness } from "./tenant_harness.js";
import { asLsn } from "../../src/types/lsn.js";

const MAX_STEPS = 2_000_000;
const MAX_RUN_MS = 60_000;
const [dir, tid, tlid] = process.argv.slice(2);
const tenantId = parseTenantId(tid);
const timelineId = parseTimelineId(tlid);

const h = new TenantHarness({
  dir,
  tenantId,
  conf: { checkpoint_distance: 64 * 1024, compaction_threshold: 3, image_creation_threshold: 2, compaction_period: "50ms" },
});
const exists = existsSync(join(dir!, tenantId));
const tenant = exists ? h.load() : await h.create();
if (tenant.state !== "Active") {
  process.stdout.write(`broken ${tenant.brokenReason}\n`);
  process.exit(3);
}
const tl = exists ? tenant.getTimeline(timelineId) : await tenant.createTimeline({ timelineId, startLsn: START_LSN });
let step = stepOfLsn(tl.lastRecordLsn) + 1;
process.stdout.write(`ready ${tl.lastRecordLsn}\n`);
let lastDcl = tl.diskConsistentLsn;
const started = Date.now();
while (step < MAX_STEPS && Date.now() - started < MAX_RUN_MS) {
  for (let n = 0; n < 100; n++, step++) {
    const { key, value } = valueOfStep(step);
    const lsn = lsnOfStep(step);
    tl.put(key, asLsn(lsn), value);
    tl.finishWrite(asLsn(lsn));
  }
  if (tl.diskConsistentLsn !== lastDcl) {
    lastDcl = tl.diskConsistentLsn;
    process.stdout.write(`dcl ${lastDcl}\n`);
  }
  // Let flush and compaction results land; with frozen layers piling up, wait for them.
  await new Promise((r) => setTimeout(r, tl.frozenCount > 4 ? 20 : 0));
}
await h.close();
process.exit(0);
