/**
 * Names of tenants and timelines (issue 18): what an operator types instead of a 32-hex id.
 * The node keeps them per tenant in `<tenant dir>/names.json`,
 * `{"tenant": NAME|null, "timelines": {"<timeline_id>": NAME}}`, written durably (temp,
 * fsync, rename). Like the tenant's config.json, the file stays on the node: it is not
 * uploaded to remote storage, so a tenant attached from a bucket comes without names
 * (docs/http-api.md says so; PUT …/name sets them again).
 *
 * Invariants:
 * - A tenant name is unique on the node, a timeline name within its tenant: a new name is
 *   checked and held (reserve*, synchronously, before any await) until its creation or
 *   rename ends, so of two concurrent claims of one name exactly one proceeds and the other
 *   is a ConflictError (409).
 * - Entries of timelines that no longer exist are ignored (a deleted timeline frees its name)
 *   and dropped at the next write of the file.
 * - Writes of one tenant's file run one at a time, in call order (a promise chain per tenant).
 * - A name never reads as an id (32 lower-case hex characters): pagectl could not tell them apart.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileDurable } from "../layers/durable_file.js";
import type { Tenant } from "../tenant/tenant.js";
import { ConflictError, InvalidArgumentError } from "../types/errors.js";
import { isId, type TimelineId } from "../types/ids.js";

export const NAMES_FILE = "names.json";
const NAME_RE = /^[A-Za-z0-9_.-]{1,63}$/;

interface TenantNames {
  tenant: string | null;
  timelines: Map<string, string>;
  /** The last write of this tenant's file: the next one waits for it. */
  writing: Promise<void>;
}

/** A claimed name: let go of it when the creation or rename ends, whatever its outcome. */
export interface NameClaim {
  release(): void;
}

/** Checks a name the schema already let through: never an id. */
export function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new InvalidArgumentError(`invalid name '${name.slice(0, 80)}': 1..63 of A-Z a-z 0-9 _ . -`);
  if (isId(name)) throw new InvalidArgumentError(`invalid name '${name}': it reads as an id (32 hex characters)`);
}

export class NameBook {
  /** By Tenant object: a tenant deleted and created again (or attached) reads its own file. */
  private readonly byTenant = new WeakMap<Tenant, TenantNames>();
  /** Tenant names claimed by creations and renames under way. */
  private readonly claimedTenantNames = new Set<string>();
  /** Timeline names claimed, per tenant object. */
  private readonly claimedTimelineNames = new WeakMap<Tenant, Set<string>>();

  private load(t: Tenant): TenantNames {
    let n = this.byTenant.get(t);
    if (n !== undefined) return n;
    n = { tenant: null, timelines: new Map(), writing: Promise.resolve() };
    const path = join(t.dir, NAMES_FILE);
    let j: { tenant?: unknown; timelines?: unknown } | null = null;
    try {
      if (existsSync(path)) j = JSON.parse(readFileSync(path, "utf8")) as { tenant?: unknown; timelines?: unknown };
    } catch {
      // Written durably, the file is never torn: a bad one was edited by hand. Names are
      // labels: the tenant's lists must not fail for them (the next write replaces the file).
      j = null;
    }
    if (j !== null) {
      if (typeof j.tenant === "string") n.tenant = j.tenant;
      if (j.timelines !== null && typeof j.timelines === "object") {
        for (const [id, name] of Object.entries(j.timelines as Record<string, unknown>)) {
          if (isId(id) && typeof name === "string") n.timelines.set(id, name);
        }
      }
    }
    this.byTenant.set(t, n);
    return n;
  }

  tenantName(t: Tenant): string | null {
    return this.load(t).tenant;
  }

  timelineName(t: Tenant, id: TimelineId): string | null {
    return this.load(t).timelines.get(id) ?? null;
  }

  /** Hold `name` for a new tenant or a rename of `self`: ConflictError when another tenant of `all` has it. */
  claimTenantName(name: string, all: readonly Tenant[], self?: Tenant): NameClaim {
    checkName(name);
    // The message names no tenant: the caller may hold a token for one tenant only.
    if (all.some((t) => t !== self && this.tenantName(t) === name) || this.claimedTenantNames.has(name))
      throw new ConflictError(`tenant name '${name}' is taken on this node`);
    this.claimedTenantNames.add(name);
    return { release: () => this.claimedTenantNames.delete(name) };
  }

  /** Hold `name` for a new timeline of `t` or a rename of timeline `self`. */
  claimTimelineName(t: Tenant, name: string, self?: TimelineId): NameClaim {
    checkName(name);
    const live = new Set<string>(t.listTimelines().map((tl) => tl.timelineId));
    const names = this.load(t);
    const holder = [...names.timelines].find(([id, n]) => n === name && id !== self && live.has(id));
    let claimed = this.claimedTimelineNames.get(t);
    if (claimed === undefined) {
      claimed = new Set();
      this.claimedTimelineNames.set(t, claimed);
    }
    if (holder !== undefined || claimed.has(name))
      throw new ConflictError(
        `timeline name '${name}' is taken in tenant ${t.id}${holder === undefined ? "" : ` by timeline ${holder[0]}`}`,
      );
    claimed.add(name);
    const set = claimed;
    return { release: () => set.delete(name) };
  }

  async setTenantName(t: Tenant, name: string | null): Promise<void> {
    await this.update(t, (n) => {
      n.tenant = name;
    });
  }

  async setTimelineName(t: Tenant, id: TimelineId, name: string | null): Promise<void> {
    await this.update(t, (n) => {
      if (name === null) n.timelines.delete(id);
      else n.timelines.set(id, name);
    });
  }

  /** Change the names in memory once the file says so (durably), one write per tenant at a time. */
  private async update(t: Tenant, change: (n: TenantNames) => void): Promise<void> {
    const n = this.load(t);
    const run = n.writing.then(async () => {
      const next: TenantNames = { tenant: n.tenant, timelines: new Map(n.timelines), writing: n.writing };
      change(next);
      const live = new Set<string>(t.listTimelines().map((tl) => tl.timelineId));
      for (const id of [...next.timelines.keys()]) if (!live.has(id)) next.timelines.delete(id);
      const body = { tenant: next.tenant, timelines: Object.fromEntries(next.timelines) };
      await writeFileDurable(join(t.dir, NAMES_FILE), Buffer.from(JSON.stringify(body)));
      n.tenant = next.tenant;
      n.timelines = next.timelines;
    });
    // The chain goes on after a failed write; this call still reports its own failure.
    n.writing = run.catch(() => undefined);
    await run;
  }
}
