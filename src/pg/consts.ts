/**
 * The build and format constants of PostgreSQL 15 (default build: 8 kB pages, 8 kB WAL
 * pages, 1 GiB relation segments) that more than one module needs: the one place each is
 * defined. Derived values are computed from their inputs the way the C headers compute them,
 * so a wrong input cannot leave a stale copy behind.
 *
 *   constant                     value   C name (header)
 *   BLCKSZ                       8192    BLCKSZ (pg_config.h)
 *   XLOG_BLCKSZ                  8192    XLOG_BLCKSZ (pg_config.h)
 *   RELSEG_SIZE                  131072  RELSEG_SIZE: blocks per 1 GiB segment file
 *   SLRU_PAGES_PER_SEGMENT       32      (slru.h)
 *   CLOG_XACTS_PER_PAGE          32768   2 status bits per xid (clog.c)
 *   MULTIXACT_OFFSETS_PER_PAGE   2048    one u32 offset per multixact (multixact.c)
 *   MULTIXACT_MEMBERS_PER_PAGE   1636    409 groups of 4 flag bytes + 4 xids (multixact.c)
 *   HEAPBLOCKS_PER_VM_PAGE       32672   2 bits per heap block after the page header (visibilitymap.c)
 *   FSM_SLOTS_PER_PAGE           4069    leaf nodes of one FSM page (fsm_internals.h)
 *   FSM_TREE_DEPTH               3       levels for 2^32 heap blocks (freespace.c)
 *
 * Nothing here depends on anything: src/pg modules import it, and src/pgdata re-exports a
 * few of these from keys.ts for its own callers.
 */

/** A relation page. */
export const BLCKSZ = 8192;
/** A WAL page. */
export const XLOG_BLCKSZ = 8192;
/** Blocks per relation segment file (1 GiB). */
export const RELSEG_SIZE = 131072;
/** MAXIMUM_ALIGNOF of the platforms PostgreSQL 15 runs on here (x86-64, aarch64). */
export const MAXIMUM_ALIGNOF = 8;
/** SizeOfPageHeaderData: the standard page header. */
export const SIZE_OF_PAGE_HEADER = 24;

// Forks (relpath.h)
export const MAIN_FORKNUM = 0;
export const FSM_FORKNUM = 1;
export const VISIBILITYMAP_FORKNUM = 2;
export const INIT_FORKNUM = 3;
export const MAX_FORKNUM = 3;

// Tablespaces (pg_tablespace.dat)
export const DEFAULTTABLESPACE_OID = 1663;
export const GLOBALTABLESPACE_OID = 1664;

// Transaction ids (transam.h)
export const INVALID_TRANSACTION_ID = 0;
export const BOOTSTRAP_TRANSACTION_ID = 1;
export const FROZEN_TRANSACTION_ID = 2;
export const FIRST_NORMAL_TRANSACTION_ID = 3;
/** multixact.h: 0 is InvalidMultiXactId. */
export const FIRST_MULTIXACT_ID = 1;

// SLRUs
export const SLRU_PAGES_PER_SEGMENT = 32;
export const CLOG_BITS_PER_XACT = 2;
export const CLOG_XACTS_PER_BYTE = 8 / CLOG_BITS_PER_XACT;
export const CLOG_XACTS_PER_PAGE = BLCKSZ * CLOG_XACTS_PER_BYTE;
/** sizeof(MultiXactOffset) */
const MULTIXACT_OFFSET_BYTES = 4;
export const MULTIXACT_OFFSETS_PER_PAGE = BLCKSZ / MULTIXACT_OFFSET_BYTES;
export const MULTIXACT_MEMBERS_PER_GROUP = 4;
/** One flag byte per member of a group, then the members' xids. */
export const MULTIXACT_FLAGBYTES_PER_GROUP = MULTIXACT_MEMBERS_PER_GROUP;
export const MULTIXACT_MEMBERGROUP_SIZE = 4 * MULTIXACT_MEMBERS_PER_GROUP + MULTIXACT_FLAGBYTES_PER_GROUP;
export const MULTIXACT_MEMBERGROUPS_PER_PAGE = Math.floor(BLCKSZ / MULTIXACT_MEMBERGROUP_SIZE);
export const MULTIXACT_MEMBERS_PER_PAGE = MULTIXACT_MEMBERGROUPS_PER_PAGE * MULTIXACT_MEMBERS_PER_GROUP;

// Visibility map (visibilitymap.c): the bitmap starts after the MAXALIGNed page header.
export const VM_BITS_PER_HEAPBLOCK = 2;
export const VM_MAPSIZE = BLCKSZ - SIZE_OF_PAGE_HEADER;
export const HEAPBLOCKS_PER_VM_PAGE = VM_MAPSIZE * (8 / VM_BITS_PER_HEAPBLOCK);

// Free space map (fsm_internals.h, freespace.c): a binary tree of u8 nodes per page after
// the page header and fp_next_slot (int).
export const FSM_NODES_PER_PAGE = BLCKSZ - SIZE_OF_PAGE_HEADER - 4;
export const FSM_NON_LEAF_NODES_PER_PAGE = BLCKSZ / 2 - 1;
export const FSM_SLOTS_PER_PAGE = FSM_NODES_PER_PAGE - FSM_NON_LEAF_NODES_PER_PAGE;
export const FSM_TREE_DEPTH = 3;

/** RELMAPPER_FILESIZE (relmapper.c): pg_filenode.map, also the payload of RelMap/UPDATE. */
export const RELMAPPER_FILESIZE = 512;
