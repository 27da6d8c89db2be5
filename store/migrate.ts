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
    const ran = db
      .transaction(() => {
        if (userVersion(db) >= m.version) return false;
        m.up(db);
        db.pragma(`user_version = ${m.version}`);
        return true;
      })
      .immediate();
    if (ran) applied.push(m.version);
  }
  return applied;
}
