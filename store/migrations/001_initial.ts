import type { Migration } from './migration.js';

/**
 * Runs and everything recorded under them. Child tables reference runs so a typo'd run id fails loudly instead of
 * leaving orphan rows; locks do not, because a lock may be taken before its run row exists and outlives it.
 */
const initial: Migration = {
  version: 1,
  name: 'initial',
  up(db) {
    db.exec(`
      CREATE TABLE runs (
        id                  TEXT    PRIMARY KEY,
        cluster             TEXT    NOT NULL,
        status              TEXT    NOT NULL CHECK (status IN ('running', 'failed', 'needs-operator', 'done', 'aborted')),
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
      CREATE INDEX runs_by_cluster ON runs (cluster, created_at);

      CREATE TABLE nodes (
        run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        ssh_host     TEXT NOT NULL,
        role         TEXT CHECK (role IN ('leader', 'follower')),
        kind         TEXT CHECK (kind IN ('server', 'agent')),
        profile      TEXT CHECK (profile IN ('current', 'legacy')),
        address      TEXT,
        bind_address TEXT,
        fqdn         TEXT,
        PRIMARY KEY (run_id, name)
      );

      CREATE TABLE transitions (
        run_id          TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        at              INTEGER NOT NULL,
        from_state      TEXT,
        event           TEXT    NOT NULL,
        to_state        TEXT    NOT NULL,
        snapshot        TEXT    NOT NULL,
        machine_version TEXT    NOT NULL,
        PRIMARY KEY (run_id, seq)
      );

      CREATE TABLE journal (
        id         INTEGER PRIMARY KEY,
        run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step       TEXT    NOT NULL,
        node       TEXT    NOT NULL,
        attempt    INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at   INTEGER,
        outcome    TEXT CHECK (outcome IN ('done', 'failed', 'unknown', 'skipped')),
        probe      TEXT CHECK (probe IN ('done', 'not-done', 'unknown')),
        detail     TEXT
      );
      CREATE INDEX journal_by_step ON journal (run_id, step, node);

      CREATE TABLE audit (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node        TEXT    NOT NULL,
        at          INTEGER NOT NULL,
        command     TEXT    NOT NULL,
        exit_code   INTEGER,
        duration_ms INTEGER NOT NULL,
        outcome     TEXT    NOT NULL CHECK (outcome IN ('completed', 'unreachable', 'unknown')),
        stdout_tail TEXT    NOT NULL,
        stderr_tail TEXT    NOT NULL
      );
      CREATE INDEX audit_by_node ON audit (run_id, node);

      CREATE TABLE backups (
        run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node       TEXT    NOT NULL,
        dir        TEXT    NOT NULL,
        path       TEXT    NOT NULL,
        sha256     TEXT    NOT NULL,
        size       INTEGER NOT NULL,
        mode       TEXT    NOT NULL,
        owner      TEXT    NOT NULL,
        group_name TEXT    NOT NULL,
        PRIMARY KEY (run_id, node, path)
      );

      CREATE TABLE locks (
        cluster      TEXT    PRIMARY KEY,
        run_id       TEXT    NOT NULL,
        pid          INTEGER NOT NULL,
        host         TEXT    NOT NULL,
        acquired_at  INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL
      );
    `);
  },
};

export default initial;
