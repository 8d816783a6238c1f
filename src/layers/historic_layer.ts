/**
 * HistoricLayer: a layer file known to a layer map, opened on first use. The descriptor comes
 * from the file name alone (startup builds maps from directory listings without opening
 * files); the file is opened, and its header checked, when a read first needs it.
 */
import { join } from "node:path";
import type { PageCacheApi } from "../cache/api.js";
import type { Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { openLayer, type PersistentLayer } from "./layer_file.js";
import type { LayerDesc } from "./layer_name.js";
import type { ReconstructState } from "./reconstruct_state.js";

export class HistoricLayer {
  readonly desc: LayerDesc;
  readonly dir: string;
  private readonly cache: PageCacheApi;
  private file: PersistentLayer | null = null;

  constructor(cache: PageCacheApi, dir: string, desc: LayerDesc) {
    this.cache = cache;
    this.dir = dir;
    this.desc = desc;
  }

  get path(): string {
    return join(this.dir, this.desc.fileName);
  }

  get isImage(): boolean {
    return this.desc.kind === "image";
  }

  open(): PersistentLayer {
    if (this.file === null) this.file = openLayer(this.cache, this.dir, this.desc);
    return this.file;
  }

  getValues(key: Key, lsnFloor: Lsn, lsnEnd: Lsn, state: ReconstructState): boolean {
    state.layersVisited++;
    return this.open().getValues(key, lsnFloor, lsnEnd, state);
  }

  close(): void {
    if (this.file !== null) {
      this.file.close();
      this.file = null;
    }
  }
}
