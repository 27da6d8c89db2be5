/** Applies schema migrations: one transaction each, `user_version` bumped inside it. */
import type { Database } from 'better-sqlite3';
import { migrations as allMigrations, type Migration } from './migrations/index.js';

export function userVersion(db: Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Brings `db` up to `target` (default: the latest). Returns the versions applied.
 * The version is re-read inside each IMMEDIATE transaction, so two processes opening the same fresh file at once
 * do not both run a step: the second waits for the write lock, then sees the step done.
 */
export function migrate(db: Database, list: readonly Migration[] = allMigrations, target: number = list.length): number[] {
  const applied: number[] = [];
  for (const m of list) {
    if (m.version > target) break;
    if (applyOne(db, m)) applied.push(m.version);
  }
  return applied;
}

function applyOne(db: Database, m: Migration): boolean {
  const step = db.transaction(() => {
    if (userVersion(db) >= m.version) return false;
    m.up(db);
    if (m.foreignKeysOff === true) checkForeignKeys(db, m);
    db.pragma(`user_version = ${m.version}`);
    return true;
  });
  if (m.foreignKeysOff !== true) return step.immediate();
  const was = db.pragma('foreign_keys', { simple: true }) as number;
  db.pragma('foreign_keys = OFF');
  try {
    return step.immediate();
  } finally {
    db.pragma(`foreign_keys = ${was === 1 ? 'ON' : 'OFF'}`);
  }
}

/** A rebuilt table must leave every reference intact; a violation rolls the step back. */
function checkForeignKeys(db: Database, m: Migration): void {
  const bad = db.pragma('foreign_key_check') as unknown[];
  if (bad.length > 0) throw new Error(`migration "${m.name}" would leave ${bad.length} row(s) with a dangling reference; nothing was changed`);
}
