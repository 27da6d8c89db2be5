/** One schema step. `up` runs inside the transaction that also sets `PRAGMA user_version` to `version`. */
import type { Database } from 'better-sqlite3';

export interface Migration {
  readonly version: number;
  readonly name: string;
  /**
   * The step rebuilds a table others reference: foreign keys are switched off around its transaction (the pragma
   * is a no-op inside one), and checked before it commits.
   */
  readonly foreignKeysOff?: boolean;
  up(db: Database): void;
}

/**
 * A gap or a repeat in the list would make `user_version` skip or re-run a step on some databases and not on
 * others, so the list must be exactly 1, 2, 3, … in order.
 */
export function checkMigrationOrder(list: readonly Migration[]): void {
  list.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`migration "${m.name}" has version ${m.version}, expected ${i + 1}: migrations must be numbered 1, 2, 3, … in order`);
    }
  });
}
