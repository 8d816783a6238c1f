/**
 * TenantManager: the node's tenants, loaded from `<workdir>/tenants` at startup and created
 * through the API. Every tenant found is listed at once (Loading) and loaded with a bound on
 * concurrency while the API already answers. A tenant that fails to load is kept as Broken
 * with its reason; the others serve. Tenant ids are validated before they become paths. A
 * tenant whose attach was cut short (src/remote/attach.ts marker) is Broken, never loaded.
 *
 * Creation reserves the id before its first await: of two concurrent creates of one id,
 * exactly one proceeds, the other is a ConflictError; a failed creation leaves nothing on
 * disk. A directory of the id already on disk is a ConflictError, left as it is; a new
 * tenant directory's parent is fsynced before the tenant exists. Deletion stops the tenant (no flush), drops it from the map, renames its directory
 * to a temp name (startup removes those) and removes it. Detach (Server.detachTenant) ends
 * the same way (forget), after the tenant flushed and the bucket holds everything. A deletion
 * or detach that fails before anything local went loads the tenant again (restore).
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { attachPending } from "../remote/attach.js";
import { fsyncDir } from "../layers/durable_file.js";
import { assert } from "../types/assert.js";
import { Tenant, type TenantDeps, TenantState } from "../tenant/tenant.js";
import { TEMP_SUFFIX } from "../layers/layer_name.js";
import { BadStateError, ConflictError, LimitReachedError, NotFoundError } from "../types/errors.js";
import { generateTenantId, isId, type TenantId } from "../types/ids.js";

/** Tenants loaded at once at startup (loads yield between tenants; remote attach will wait on I/O). */
const DEFAULT_LOAD_CONCURRENCY = 16;

export class TenantManager {
  private readonly tenants = new Map<TenantId, Tenant>();
  private readonly dir: string;
  private readonly deps: TenantDeps;
  private readonly maxTenants: number;
  private stopping = false;
  /** Ids being created or deleted right now. */
  private readonly creating = new Set<TenantId>();
  private readonly deleting = new Set<TenantId>();

  constructor(deps: TenantDeps, workdir: string, maxTenants: number) {
    this.deps = deps;
    this.maxTenants = maxTenants;
    this.dir = join(workdir, "tenants");
    mkdirSync(this.dir, { recursive: true });
  }

  /**
   * Find the tenants on disk (each listed at once, Loading) and load them, at most
   * `concurrency` at a time, yielding to the event loop between tenants so the API answers
   * meanwhile. Resolves when every tenant is Active or Broken.
   */
  async loadAll(concurrency = DEFAULT_LOAD_CONCURRENCY): Promise<void> {
    const found: Tenant[] = [];
    for (const name of readdirSync(this.dir)) {
      if (name.endsWith(TEMP_SUFFIX)) {
        rmSync(join(this.dir, name), { recursive: true, force: true });
        continue;
      }
      if (!isId(name)) {
        this.deps.log.warn({ dir: name }, "ignoring non-tenant directory");
        continue;
      }
      const t = Tenant.loading(this.deps, name as TenantId, join(this.dir, name));
      this.tenants.set(t.id, t);
      found.push(t);
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < found.length && !this.stopping) {
        const t = found[next++]!;
        await new Promise<void>((r) => setImmediate(r));
        if (this.stopping) break;
        const pending = attachPendingSafe(t.dir);
        if (pending !== null) {
          // Half attached: never loaded as if whole (it is attached again, resuming).
          t.setBroken(pending);
          continue;
        }
        t.loadFromDisk();
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, found.length) }, worker));
    const states = this.countByState();
    this.deps.log.info({ tenants: found.length, active: states["Active"], broken: states["Broken"] }, "tenants loaded");
  }

  async create(id: TenantId | undefined, config: Record<string, unknown> = {}): Promise<Tenant> {
    if (this.stopping) throw new BadStateError("pageserver is shutting down");
    const tid = id ?? generateTenantId();
    if (this.tenants.has(tid)) throw new ConflictError(`tenant ${tid} already exists`);
    if (this.creating.has(tid)) throw new ConflictError(`tenant ${tid} is being created`);
    if (this.tenants.size + this.creating.size >= this.maxTenants) {
      this.deps.log.warn({ max_tenants: this.maxTenants }, "tenant creation refused: max_tenants reached");
      throw new LimitReachedError(
        `this pageserver hosts its maximum of ${this.maxTenants} tenants; raise max_tenants in pageserver.json to host more`,
      );
    }
    this.creating.add(tid);
    const dir = join(this.dir, tid);
    try {
      // A directory of this id that no tenant owns (left by hand, or by a forget cut short)
      // may hold the only copy of something: refuse, never wipe. mkdir is the atomic check.
      try {
        mkdirSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        throw new ConflictError(
          `tenant directory ${tid} already exists on disk: remove it by hand to create the tenant anew, or attach it`,
        );
      }
      let t: Tenant;
      try {
        t = await Tenant.create(this.deps, tid, dir, config);
        // The new directory's entry in tenants/ is durable before the tenant is: a crash
        // after the reply never loses it.
        await fsyncDir(this.dir);
      } catch (e) {
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
      this.tenants.set(tid, t);
      return t;
    } finally {
      this.creating.delete(tid);
    }
  }

  /**
   * Delete a tenant: `beforeStop` runs first (the caller stops the tenant's WAL sources and
   * says what became of their slots), then the tenant stops without flushing and its
   * directory goes. A tenant still loading can't be deleted yet (BadStateError).
   */
  async delete<T>(id: TenantId, beforeStop: (t: Tenant) => Promise<T>): Promise<T> {
    const t = this.get(id);
    if (this.deleting.has(id)) throw new ConflictError(`tenant ${id} is being deleted`);
    if (t.state === TenantState.Loading || t.state === TenantState.Attaching)
      throw new BadStateError(`tenant ${id} is still ${t.state === TenantState.Loading ? "loading" : "attaching"}`);
    this.deleting.add(id);
    try {
      // No creation or background round starts on it while its sources stop.
      t.beginStopping();
      let r: T;
      try {
        r = await beforeStop(t);
      } catch (e) {
        // Nothing of it is deleted yet (its remote deletion failed): it serves again.
        await this.restore(t, { shutDown: false });
        throw e;
      }
      await t.shutdown(false);
      this.tenants.delete(id);
      const gone = `${t.dir}${TEMP_SUFFIX}`;
      renameSync(t.dir, gone);
      await rm(gone, { recursive: true, force: true });
      this.deps.log.info({ tenant_id: id }, "tenant deleted");
      return r;
    } finally {
      this.deleting.delete(id);
    }
  }

  /**
   * A tenant about to be attached: listed at once (Loading) while its data downloads. A tenant
   * whose attach failed (Broken, with its marker or no directory at all) may be attached again.
   */
  beginAttach(id: TenantId): Tenant {
    if (this.stopping) throw new BadStateError("pageserver is shutting down");
    if (this.creating.has(id) || this.deleting.has(id)) throw new ConflictError(`tenant ${id} is being created or deleted`);
    const existing = this.tenants.get(id);
    if (existing !== undefined) {
      const retry = existing.state === TenantState.Broken && (!existsSync(existing.dir) || attachPendingSafe(existing.dir) !== null);
      if (!retry) throw new ConflictError(`tenant ${id} already exists`);
      this.tenants.delete(id);
    }
    if (this.tenants.size + this.creating.size >= this.maxTenants) {
      throw new LimitReachedError(
        `this pageserver hosts its maximum of ${this.maxTenants} tenants; raise max_tenants in pageserver.json to host more`,
      );
    }
    const t = Tenant.attaching(this.deps, id, join(this.dir, id));
    this.tenants.set(id, t);
    return t;
  }

  /**
   * A detach or deletion that failed before anything local went: the tenant object (Stopping,
   * shut down or not) is replaced by the tenant loaded again from its directory (Active, or
   * Broken with the reason); its timelines connect to remote storage anew (onTimelineReady).
   * Never leaves a tenant Stopping until a restart.
   */
  async restore(t: Tenant, opts: { shutDown: boolean }): Promise<Tenant> {
    assert(this.tenants.get(t.id) === t, "restore: not this node's tenant object");
    if (!opts.shutDown) {
      try {
        await t.shutdown(true);
      } catch (e) {
        this.deps.log.warn({ tenant_id: t.id, err: e }, "shutdown before reloading the tenant failed");
      }
    }
    const fresh = Tenant.loading(this.deps, t.id, t.dir);
    this.tenants.set(t.id, fresh);
    fresh.loadFromDisk();
    this.deps.log.info({ tenant_id: t.id, state: fresh.state }, "tenant loaded again");
    return fresh;
  }

  /**
   * Drops a stopped tenant from this node: out of the list, its directory removed. The
   * directory is renamed to a temp name first, so a crash midway leaves only a temp
   * directory, which startup removes: never half a tenant.
   */
  async forget(id: TenantId): Promise<void> {
    const t = this.get(id);
    assert(
      t.state !== TenantState.Active && t.state !== TenantState.Loading && t.state !== TenantState.Attaching,
      `forget an ${t.state} tenant`,
    );
    this.tenants.delete(id);
    if (!existsSync(t.dir)) return;
    const tmp = join(this.dir, `${id}${TEMP_SUFFIX}`);
    await rename(t.dir, tmp);
    await fsyncDir(this.dir);
    await rm(tmp, { recursive: true, force: true });
  }

  get(id: TenantId): Tenant {
    const t = this.tenants.get(id);
    if (t === undefined) throw new NotFoundError(`tenant ${id} not found`);
    return t;
  }

  list(): Tenant[] {
    return [...this.tenants.values()];
  }

  countByState(): Record<string, number> {
    const out: Record<string, number> = { Active: 0, Attaching: 0, Broken: 0, Loading: 0, Stopping: 0 };
    for (const t of this.tenants.values()) out[t.state] = (out[t.state] ?? 0) + 1;
    return out;
  }

  async shutdown(flush: boolean): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.tenants.values()]
        .filter((t) => t.state !== TenantState.Broken && t.state !== TenantState.Loading && t.state !== TenantState.Attaching)
        .map((t) => t.shutdown(flush)),
    );
  }
}

/** Why a tenant directory must not load (an attach cut short there), or null. */
function attachPendingSafe(dir: string): string | null {
  try {
    const gen = attachPending(dir);
    return gen === null ? null : `an attach in generation ${gen} did not finish; attach the tenant again`;
  } catch (e) {
    return `unreadable attach marker: ${(e as Error).message}`;
  }
}
