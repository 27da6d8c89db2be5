import type { Migration } from './migration.js';

/**
 * A run the operator stopped (Ctrl-C) gets its own status, `stopped`, instead of `failed`: nothing went wrong on
 * a node, and `regen runs` should say so. SQLite cannot change a CHECK constraint in place, so `runs` is rebuilt
 * (SQLite's documented procedure: new table, copy, drop, rename, with foreign keys off so the drop does not
 * cascade to the rows that reference runs; migrate() checks the foreign keys before it commits).
 */
const stoppedStatus: Migration = {
  version: 3,
  name: 'stopped status',
  foreignKeysOff: true,
  up(db) {
    db.exec(`
      CREATE TABLE runs_v3 (
        id                  TEXT    PRIMARY KEY,
        cluster             TEXT    NOT NULL,
        status              TEXT    NOT NULL CHECK (status IN ('running', 'failed', 'stopped', 'needs-operator', 'done', 'aborted')),
        state               TEXT    NOT NULL,
        machine_version     TEXT    NOT NULL,
        inventory_json      TEXT    NOT NULL,
        options_json        TEXT    NOT NULL,
        leader              TEXT,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        finished_at         INTEGER,
        downtime_started_at INTEGER,
        downtime_ended_at   INTEGER,
        recoveries          INTEGER NOT NULL DEFAULT 0,
        error_json          TEXT
      );
      INSERT INTO runs_v3 (id, cluster, status, state, machine_version, inventory_json, options_json, leader, created_at,
                           updated_at, finished_at, downtime_started_at, downtime_ended_at, recoveries, error_json)
        SELECT id, cluster,
               CASE WHEN status = 'failed' AND json_extract(error_json, '$.kind') = 'aborted' THEN 'stopped' ELSE status END,
               state, machine_version, inventory_json, options_json, leader, created_at, updated_at, finished_at,
               downtime_started_at, downtime_ended_at, recoveries, error_json
        FROM runs;
      DROP TABLE runs;
      ALTER TABLE runs_v3 RENAME TO runs;
      CREATE INDEX runs_by_cluster ON runs (cluster, created_at);
    `);
  },
};

export default stoppedStatus;
