/**
 * PostgreSQL 15 resource managers: ids, the names pg_waldump prints, and the names of their
 * info codes (the `*_identify` functions of src/backend/access/rmgrdesc), for messages such
 * as "cannot redo Heap/HOT_UPDATE at 0/16B3748".
 *
 *   xl_info bits:  7 6 5 4 | 3 2 1 0
 *                  rmgr op | XLR_INFO_MASK (0x0F): 0x01 SPECIAL_REL_UPDATE, 0x02 CHECK_CONSISTENCY
 *
 * Heap, Heap2 and BRIN keep their opcode in 0x70 and use 0x80 as INIT_PAGE ("+INIT");
 * Transaction uses 0x70 as the opcode and 0x80 as HAS_INFO. Everything else uses 0xF0.
 *
 * Valid ids are 0..21 (built-in) and 128..255 (custom; 128 is RM_EXPERIMENTAL_ID).
 * Nothing here sits on a hot path.
 */

export const RM_XLOG_ID = 0;
export const RM_XACT_ID = 1;
export const RM_SMGR_ID = 2;
export const RM_CLOG_ID = 3;
export const RM_DBASE_ID = 4;
export const RM_TBLSPC_ID = 5;
export const RM_MULTIXACT_ID = 6;
export const RM_RELMAP_ID = 7;
export const RM_STANDBY_ID = 8;
export const RM_HEAP2_ID = 9;
export const RM_HEAP_ID = 10;
export const RM_BTREE_ID = 11;
export const RM_HASH_ID = 12;
export const RM_GIN_ID = 13;
export const RM_GIST_ID = 14;
export const RM_SEQ_ID = 15;
export const RM_SPGIST_ID = 16;
export const RM_BRIN_ID = 17;
export const RM_COMMIT_TS_ID = 18;
export const RM_REPLORIGIN_ID = 19;
export const RM_GENERIC_ID = 20;
export const RM_LOGICALMSG_ID = 21;

export const RM_MAX_BUILTIN_ID = 21;
export const RM_MIN_CUSTOM_ID = 128;
export const RM_MAX_CUSTOM_ID = 255;

/** xl_info low nibble, owned by the WAL machinery rather than the rmgr. */
export const XLR_INFO_MASK = 0x0f;
export const XLR_RMGR_INFO_MASK = 0xf0;
export const XLR_SPECIAL_REL_UPDATE = 0x01;
export const XLR_CHECK_CONSISTENCY = 0x02;

/** XLOG (rmgr 0) info codes that the WAL decoder itself must recognise. */
export const XLOG_CHECKPOINT_SHUTDOWN = 0x00;
export const XLOG_CHECKPOINT_ONLINE = 0x10;
export const XLOG_NOOP = 0x20;
export const XLOG_NEXTOID = 0x30;
export const XLOG_SWITCH = 0x40;
export const XLOG_BACKUP_END = 0x50;
export const XLOG_PARAMETER_CHANGE = 0x60;
export const XLOG_RESTORE_POINT = 0x70;
export const XLOG_FPW_CHANGE = 0x80;
export const XLOG_END_OF_RECOVERY = 0x90;
export const XLOG_FPI_FOR_HINT = 0xa0;
export const XLOG_FPI = 0xb0;
export const XLOG_OVERWRITE_CONTRECORD = 0xd0;

/** Names as pg_waldump prints them in its "rmgr:" column (src/include/access/rmgrlist.h). */
const RMGR_NAMES: readonly string[] = [
  "XLOG",
  "Transaction",
  "Storage",
  "CLOG",
  "Database",
  "Tablespace",
  "MultiXact",
  "RelMap",
  "Standby",
  "Heap2",
  "Heap",
  "Btree",
  "Hash",
  "Gin",
  "Gist",
  "Sequence",
  "SPGist",
  "BRIN",
  "CommitTs",
  "ReplicationOrigin",
  "Generic",
  "LogicalMessage",
];

export function isValidRmgrId(rmid: number): boolean {
  return (rmid >= 0 && rmid <= RM_MAX_BUILTIN_ID) || (rmid >= RM_MIN_CUSTOM_ID && rmid <= RM_MAX_CUSTOM_ID);
}

/** "Heap", "Btree", … or "custom128" for custom rmgrs (pg_waldump prints those the same way). */
export function rmgrName(rmid: number): string {
  if (rmid >= 0 && rmid <= RM_MAX_BUILTIN_ID) return RMGR_NAMES[rmid]!;
  if (rmid >= RM_MIN_CUSTOM_ID && rmid <= RM_MAX_CUSTOM_ID) return `custom${rmid}`;
  return `invalid-rmgr-${rmid}`;
}

/** Opcode names indexed by (info & mask) >> 4; null where the code is unused. */
type InfoNames = readonly (string | null)[];

/** Per rmgr: how to mask xl_info, the opcode names, and whether 0x80 means "+INIT". */
interface RmgrInfoDesc {
  mask: number;
  names: InfoNames;
  initBit?: number;
}

const HEAP_NAMES: InfoNames = ["INSERT", "DELETE", "UPDATE", "TRUNCATE", "HOT_UPDATE", "HEAP_CONFIRM", "LOCK", "INPLACE"];

const HEAP2_NAMES: InfoNames = ["REWRITE", "PRUNE", "VACUUM", "FREEZE_PAGE", "VISIBLE", "MULTI_INSERT", "LOCK_UPDATED", "NEW_CID"];

const INFO_DESCS: Readonly<Record<number, RmgrInfoDesc>> = {
  [RM_XLOG_ID]: {
    mask: 0xf0,
    names: [
      "CHECKPOINT_SHUTDOWN",
      "CHECKPOINT_ONLINE",
      "NOOP",
      "NEXTOID",
      "SWITCH",
      "BACKUP_END",
      "PARAMETER_CHANGE",
      "RESTORE_POINT",
      "FPW_CHANGE",
      "END_OF_RECOVERY",
      "FPI_FOR_HINT",
      "FPI",
      null,
      "OVERWRITE_CONTRECORD",
    ],
  },
  [RM_XACT_ID]: {
    mask: 0x70,
    names: ["COMMIT", "PREPARE", "ABORT", "COMMIT_PREPARED", "ABORT_PREPARED", "ASSIGNMENT", "INVALIDATION"],
  },
  [RM_SMGR_ID]: { mask: 0xf0, names: [null, "CREATE", "TRUNCATE"] },
  [RM_CLOG_ID]: { mask: 0xf0, names: ["ZEROPAGE", "TRUNCATE"] },
  [RM_DBASE_ID]: { mask: 0xf0, names: ["CREATE_FILE_COPY", "CREATE_WAL_LOG", "DROP"] },
  [RM_TBLSPC_ID]: { mask: 0xf0, names: ["CREATE", "DROP"] },
  [RM_MULTIXACT_ID]: {
    mask: 0xf0,
    names: ["ZERO_OFF_PAGE", "ZERO_MEM_PAGE", "CREATE_ID", "TRUNCATE_ID"],
  },
  [RM_RELMAP_ID]: { mask: 0xf0, names: ["UPDATE"] },
  [RM_STANDBY_ID]: { mask: 0xf0, names: ["LOCK", "RUNNING_XACTS", "INVALIDATIONS"] },
  [RM_HEAP2_ID]: { mask: 0x70, names: HEAP2_NAMES, initBit: 0x80 },
  [RM_HEAP_ID]: { mask: 0x70, names: HEAP_NAMES, initBit: 0x80 },
  [RM_BTREE_ID]: {
    mask: 0xf0,
    names: [
      "INSERT_LEAF",
      "INSERT_UPPER",
      "INSERT_META",
      "SPLIT_L",
      "SPLIT_R",
      "INSERT_POST",
      "DEDUP",
      "DELETE",
      "UNLINK_PAGE",
      "UNLINK_PAGE_META",
      "NEWROOT",
      "MARK_PAGE_HALFDEAD",
      "VACUUM",
      "REUSE_PAGE",
      "META_CLEANUP",
    ],
  },
  [RM_HASH_ID]: {
    mask: 0xf0,
    names: [
      "INIT_META_PAGE",
      "INIT_BITMAP_PAGE",
      "INSERT",
      "ADD_OVFL_PAGE",
      "SPLIT_ALLOCATE_PAGE",
      "SPLIT_PAGE",
      "SPLIT_COMPLETE",
      "MOVE_PAGE_CONTENTS",
      "SQUEEZE_PAGE",
      "DELETE",
      "SPLIT_CLEANUP",
      "UPDATE_META_PAGE",
      "VACUUM_ONE_PAGE",
    ],
  },
  [RM_GIN_ID]: {
    mask: 0xf0,
    names: [
      null,
      "CREATE_PTREE",
      "INSERT",
      "SPLIT",
      "VACUUM_PAGE",
      "DELETE_PAGE",
      "UPDATE_META_PAGE",
      "INSERT_LISTPAGE",
      "DELETE_LISTPAGE",
      "VACUUM_DATA_LEAF_PAGE",
    ],
  },
  [RM_GIST_ID]: {
    mask: 0xf0,
    names: ["PAGE_UPDATE", "DELETE", "PAGE_REUSE", "PAGE_SPLIT", null, null, "PAGE_DELETE", "ASSIGN_LSN"],
  },
  [RM_SEQ_ID]: { mask: 0xf0, names: ["LOG"] },
  [RM_SPGIST_ID]: {
    mask: 0xf0,
    names: [null, "ADD_LEAF", "MOVE_LEAFS", "ADD_NODE", "SPLIT_TUPLE", "PICKSPLIT", "VACUUM_LEAF", "VACUUM_ROOT", "VACUUM_REDIRECT"],
  },
  [RM_BRIN_ID]: {
    mask: 0x70,
    names: ["CREATE_INDEX", "INSERT", "UPDATE", "SAMEPAGE_UPDATE", "REVMAP_EXTEND", "DESUMMARIZE"],
    initBit: 0x80,
  },
  [RM_COMMIT_TS_ID]: { mask: 0xf0, names: ["ZEROPAGE", "TRUNCATE"] },
  [RM_REPLORIGIN_ID]: { mask: 0xf0, names: ["SET", "DROP"] },
  [RM_GENERIC_ID]: { mask: 0xf0, names: ["Generic"] },
  [RM_LOGICALMSG_ID]: { mask: 0xf0, names: ["MESSAGE"] },
};

/**
 * The info code's name as pg_waldump identifies it ("INSERT+INIT", "COMMIT", …), or
 * "UNKNOWN (0xNN)" when the rmgr or the code is not one we know.
 */
export function infoName(rmid: number, info: number): string {
  const desc = INFO_DESCS[rmid];
  const unknown = `UNKNOWN (0x${info.toString(16).padStart(2, "0")})`;
  if (desc === undefined) return unknown;
  const name = desc.names[(info & desc.mask) >> 4];
  if (name === undefined || name === null) return unknown;
  if (desc.initBit !== undefined && (info & desc.initBit) !== 0) {
    // Only the opcodes that can initialize a page carry "+INIT" (heap INSERT/UPDATE/
    // HOT_UPDATE, heap2 MULTI_INSERT, BRIN INSERT/UPDATE); elsewhere the bit is unused.
    return `${name}+INIT`;
  }
  return name;
}

/** "Heap/INSERT+INIT": the rmgr and info of a record, for error messages and logs. */
export function describeRecordKind(rmid: number, info: number): string {
  return `${rmgrName(rmid)}/${infoName(rmid, info)}`;
}
