/**
 * The SQLite journal (better-sqlite3): runs, nodes, machine transitions with snapshots, the step journal, the
 * command audit, backups and the cluster lock. Everything is synchronous, so a transition is on disk before the
 * machine moves on. Opening is store/open.ts; each table family has its own module; this is the entry point.
 */
export { defaultDbPath, openStore, type OpenStoreOptions } from './open.js';
export { INITIAL_RUN_STATE } from './runs.js';
export { LockConflictError, type LockConflict } from './lock.js';
