/**
 * The SQLite journal (better-sqlite3): runs, nodes, machine transitions with snapshots, the step journal, the
 * command audit, backups and the cluster lock. Everything is synchronous, so a transition is on disk before the
 * machine moves on.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { LockHeldError, StoreError, type ErrorRecord } from '../machines/errors.js';
import { migrate, userVersion } from './migrate.js';
import { checkOwner, checkRegenDatabase } from './adopt.js';
import { latestVersion } from './migrations/index.js';
import type {
  AuditRow,
  BackupRow,
  JournalRow,
  LockRow,
  NodeRow,
  ProbeResult,
  RunRow,
  RunPatch,
  StepOutcome,
  Store,
  TransitionRow,
} from './types.js';
import { processAlive } from './process.js';

export interface OpenStoreOptions {
  /** Open for reading only: no directory or file is created, no migration runs. */
  readonly?: boolean;
  /** Clock in ms since epoch (tests pin it). */
  now?: () => number;
}

const BUSY_TIMEOUT_MS = 5_000;

/** The state a run has before its machine records a first transition. */
export const INITIAL_RUN_STATE = 'created';

/** `$REGEN_DB`, else `$XDG_STATE_HOME/regen/regen.db`, else `~/.local/state/regen/regen.db`. */
export function defaultDbPath(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env['REGEN_DB'];
  if (explicit !== undefined && explicit !== '') return explicit;
  const xdg = env['XDG_STATE_HOME'];
  // The XDG spec says a relative value is invalid and must be ignored.
  if (xdg !== undefined && xdg.startsWith('/')) return join(xdg, 'regen', 'regen.db');
  const home = env['HOME'] !== undefined && env['HOME'] !== '' ? env['HOME'] : homedir();
  return join(home, '.local', 'state', 'regen', 'regen.db');
}

export function openStore(path: string, opts: OpenStoreOptions = {}): Store {
  const readonly = opts.readonly === true;
  const memory = path === ':memory:';
  if (memory && readonly) throw new StoreError('a read-only store needs a database file, not :memory:');

  if (!memory) {
    const exists = existsSync(path);
    if (readonly && !exists) {
      throw new StoreError(`no database at ${path}`, 'nothing has been recorded there; check --db or $REGEN_DB');
    }
    // Checked over a separate read-only connection so that a database we refuse is never written to: the
    // read-write connection would switch it to WAL and migrate it, and closing it could checkpoint a WAL file.
    // (Reading a WAL database still leaves its -wal/-shm side files in place: they belong to whoever writes it.)
    // A read-only open writes nothing to protect, and quick_check reads every page (hundreds of ms on a long run's
    // database), so readers skip it: the version check below still runs, and damage they touch is still reported.
    if (exists && !readonly) inspectExisting(path);
    if (!readonly && !exists) createDbFile(path);
  }

  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly, fileMustExist: !memory });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('foreign_keys = ON');
    if (!readonly) {
      if (!memory) db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    const version = userVersion(db);
    if (version > latestVersion) throw newerDatabase(path, version);
    if (readonly) checkRegenDatabase(db, path);
    if (readonly) {
      if (version < latestVersion) {
        throw new StoreError(
          `database ${path} has schema v${version}, this regen needs v${latestVersion}`,
          'run a command that writes (e.g. without read-only) once so the database is upgraded',
        );
      }
    } else {
      migrate(db);
      if (!memory) restrictMode(path);
    }
    return guardStoreErrors(new SqliteStore(db, path, opts.now ?? Date.now), path);
  } catch (err) {
    db?.close();
    throw toOpenError(path, err);
  }
}

function createDbFile(path: string): void {
  const dir = dirname(path);
  try {
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    // An empty file is a valid empty database; creating it ourselves fixes its mode before SQLite writes to it
    // (the -wal and -shm files then inherit it).
    closeSync(openSync(path, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw new StoreError(`cannot create database ${path}: ${(err as Error).message}`, 'choose a writable place with --db or $REGEN_DB', err);
  }
}

/** The database and its -wal and -shm files (which hold the same data) are the owner's only. */
function restrictMode(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      if ((statSync(p).mode & 0o077) !== 0) chmodSync(p, 0o600);
    } catch {
      // Absent (no WAL yet), or not ours to chmod: the database still works.
    }
  }
}

/** Refuses a damaged or newer database without writing to it. */
function inspectExisting(path: string): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const version = userVersion(db);
    if (version > latestVersion) throw newerDatabase(path, version);
    checkOwner(path);
    checkRegenDatabase(db, path);
    const problems = (db.pragma('quick_check') as Array<Record<string, unknown>>).map((r) => String(Object.values(r)[0]));
    if (problems.length !== 1 || problems[0] !== 'ok') throw damagedDatabase(path, problems.slice(0, 3).join('; '));
  } catch (err) {
    throw toOpenError(path, err);
  } finally {
    db?.close();
  }
}

function newerDatabase(path: string, version: number): StoreError {
  return new StoreError(
    `database ${path} was written by a newer regen (schema v${version}, this regen knows v${latestVersion})`,
    'upgrade regen, or use another --db',
  );
}

function damagedDatabase(path: string, why: string, cause?: unknown): StoreError {
  return new StoreError(
    `database ${path} is damaged or is not a regen database (${why}); regen changed nothing in it`,
    `restore ${path} from a backup copy if you have one, or move it aside (with its -wal and -shm files, if any) and ` +
      'start again with a fresh database; the runs it recorded are then lost here, but every node keeps its own ' +
      'backup of the files regen replaced in /var/backups/regen/<run>',
    cause,
  );
}

function toOpenError(path: string, err: unknown): unknown {
  if (err instanceof StoreError) return err;
  if (err instanceof Database.SqliteError) {
    if (err.code === 'SQLITE_NOTADB' || err.code.startsWith('SQLITE_CORRUPT')) return damagedDatabase(path, err.message, err);
    return new StoreError(`cannot open database ${path}: ${err.message} (${err.code})`, 'check the path and its permissions, or use another --db', err);
  }
  if (err instanceof TypeError && /directory|open/i.test(err.message)) {
    return new StoreError(`cannot open database ${path}: ${err.message}`, 'check the path and its permissions, or use another --db', err);
  }
  return err;
}

/**
 * SQLite failures the operator can act on (busy past the timeout, disk full, file unwritable or damaged) become
 * StoreErrors, so they are reported as store problems with a next step rather than as internal errors.
 * Constraint violations stay as they are: they are bugs in the caller, not conditions of the database.
 */
function toRuntimeError(path: string, err: unknown): unknown {
  if (!(err instanceof Database.SqliteError)) return err;
  const code = err.code;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new StoreError(
      `database ${path} stayed locked by another process for more than ${BUSY_TIMEOUT_MS / 1_000} s`,
      'check for another regen process using the same --db, then retry',
      err,
    );
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) return damagedDatabase(path, err.message, err);
  if (code === 'SQLITE_FULL') return new StoreError(`database ${path}: the disk is full`, 'free some space, then resume the run', err);
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM') {
    return new StoreError(`cannot write database ${path}: ${err.message} (${code})`, 'check the file, its directory and their permissions, or use another --db', err);
  }
  return err;
}

function guardStoreErrors(store: SqliteStore, path: string): Store {
  for (const name of Object.getOwnPropertyNames(SqliteStore.prototype)) {
    const method = (SqliteStore.prototype as unknown as Record<string, unknown>)[name];
    if (name === 'constructor' || typeof method !== 'function') continue;
    Object.defineProperty(store, name, {
      value: (...args: unknown[]) => {
        try {
          return (method as (...a: unknown[]) => unknown).apply(store, args);
        } catch (err) {
          throw toRuntimeError(path, err);
        }
      },
    });
  }
  return store;
}


function formatAge(ms: number): string {
  if (ms < 1_000) return 'just now';
  const s = Math.floor(ms / 1_000);
  const parts: Array<[number, string]> = [
    [Math.floor(s / 86_400), 'd'],
    [Math.floor((s % 86_400) / 3_600), 'h'],
    [Math.floor((s % 3_600) / 60), 'm'],
    [s % 60, 's'],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  return (
    parts
      .slice(first, first + 2)
      .filter(([n]) => n > 0)
      .map(([n, u]) => `${n}${u}`)
      .join(' ') + ' ago'
  );
}

function shellWord(s: string): string {
  return /^[A-Za-z0-9._:@%+=,/-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// Row shapes as SQLite returns them.
interface RunRecord {
  id: string;
  cluster: string;
  status: RunRow['status'];
  state: string;
  machine_version: string;
  inventory_json: string;
  options_json: string;
  leader: string | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  downtime_started_at: number | null;
  downtime_ended_at: number | null;
  recoveries: number;
  error_json: string | null;
}
interface NodeRecord {
  run_id: string;
  name: string;
  ssh_host: string;
  role: NodeRow['role'];
  kind: NodeRow['kind'];
  profile: NodeRow['profile'];
  address: string | null;
  bind_address: string | null;
  fqdn: string | null;
}
interface TransitionRecord {
  run_id: string;
  seq: number;
  at: number;
  from_state: string | null;
  event: string;
  to_state: string;
  snapshot: string | null;
  machine_version: string;
}
interface JournalRecord {
  id: number;
  run_id: string;
  step: string;
  node: string;
  attempt: number;
  started_at: number;
  ended_at: number | null;
  outcome: StepOutcome | null;
  probe: ProbeResult | null;
  detail: string | null;
}
interface AuditRecord {
  id: number;
  run_id: string;
  node: string;
  at: number;
  command: string;
  exit_code: number | null;
  duration_ms: number;
  outcome: AuditRow['outcome'];
  stdout_tail: string;
  stderr_tail: string;
}
interface BackupRecord {
  run_id: string;
  node: string;
  dir: string;
  path: string;
  sha256: string;
  size: number;
  mode: string;
  owner: string;
  group_name: string;
}
interface LockRecord {
  cluster: string;
  run_id: string;
  pid: number;
  host: string;
  acquired_at: number;
  heartbeat_at: number;
}

type Params = Record<string, string | number | null>;

const toRun = (r: RunRecord): RunRow => ({
  id: r.id,
  cluster: r.cluster,
  status: r.status,
  state: r.state,
  machineVersion: r.machine_version,
  inventoryJson: r.inventory_json,
  optionsJson: r.options_json,
  leader: r.leader,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  finishedAt: r.finished_at,
  downtimeStartedAt: r.downtime_started_at,
  downtimeEndedAt: r.downtime_ended_at,
  recoveries: r.recoveries,
  error: r.error_json === null ? null : (JSON.parse(r.error_json) as ErrorRecord),
});
const toNode = (r: NodeRecord): NodeRow => ({
  runId: r.run_id,
  name: r.name,
  sshHost: r.ssh_host,
  role: r.role,
  kind: r.kind,
  profile: r.profile,
  address: r.address,
  bindAddress: r.bind_address,
  fqdn: r.fqdn,
});
const toTransition = (r: TransitionRecord): TransitionRow => ({
  runId: r.run_id,
  seq: r.seq,
  at: r.at,
  fromState: r.from_state,
  event: r.event,
  toState: r.to_state,
  snapshot: r.snapshot ?? '',
  machineVersion: r.machine_version,
});
const toJournal = (r: JournalRecord): JournalRow => ({
  id: r.id,
  runId: r.run_id,
  step: r.step,
  node: r.node,
  attempt: r.attempt,
  startedAt: r.started_at,
  endedAt: r.ended_at,
  outcome: r.outcome,
  probe: r.probe,
  detail: r.detail,
});
const toAudit = (r: AuditRecord): AuditRow => ({
  id: r.id,
  runId: r.run_id,
  node: r.node,
  at: r.at,
  command: r.command,
  exitCode: r.exit_code,
  durationMs: r.duration_ms,
  outcome: r.outcome,
  stdoutTail: r.stdout_tail,
  stderrTail: r.stderr_tail,
});
const toBackup = (r: BackupRecord): BackupRow => ({
  runId: r.run_id,
  node: r.node,
  dir: r.dir,
  path: r.path,
  sha256: r.sha256,
  size: r.size,
  mode: r.mode,
  owner: r.owner,
  group: r.group_name,
});
const toLock = (r: LockRecord): LockRow => ({
  cluster: r.cluster,
  runId: r.run_id,
  pid: r.pid,
  host: r.host,
  acquiredAt: r.acquired_at,
  heartbeatAt: r.heartbeat_at,
});

/** Names, ids, states and lookup keys: stored as they are (free text around them is redacted). */
const STRUCTURAL = new Set([
  'id', 'runId', 'cluster', 'node', 'name', 'nodes', 'sshHost', 'host', 'leader', 'fqdn', 'address', 'bindAddress',
  'leaderAddress', 'configuredBindAddress', 'kind', 'role', 'profile', 'step', 'state', 'status', 'outcome', 'event',
  'fromState', 'toState', 'machineVersion', 'path', 'dir', 'sha256', 'mode', 'owner', 'group', 'inventoryJson',
  'optionsJson', 'failedAt', 'type', 'value', 'sshUser', 'identityFile', 'directoryServer',
]);

class SqliteStore implements Store {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #now: () => number;
  #redact: (text: string) => string = (t) => t;
  readonly #q;

  constructor(db: Database.Database, path: string, now: () => number) {
    this.#db = db;
    this.path = path;
    this.#now = now;
    const p = <R>(sql: string) => db.prepare<[Params], R>(sql);
    this.#q = {
      insertRun: p(
        `INSERT INTO runs (id, cluster, status, state, machine_version, inventory_json, options_json, created_at, updated_at)
         VALUES (@id, @cluster, 'running', @state, @machineVersion, @inventoryJson, @optionsJson, @now, @now)`,
      ),
      getRun: p<RunRecord>('SELECT * FROM runs WHERE id = @id'),
      listRuns: p<RunRecord>('SELECT * FROM runs ORDER BY created_at, rowid'),
      latestUnfinished: p<RunRecord>(
        `SELECT * FROM runs WHERE status NOT IN ('done', 'aborted') AND (@cluster IS NULL OR cluster = @cluster)
         ORDER BY created_at DESC, rowid DESC LIMIT 1`,
      ),
      // One statement for every patch shape: a @set_x flag says whether x is in the patch (its value may be null).
      updateRun: p(
        `UPDATE runs SET
           status              = CASE WHEN @set_status THEN @status ELSE status END,
           state               = CASE WHEN @set_state THEN @state ELSE state END,
           leader              = CASE WHEN @set_leader THEN @leader ELSE leader END,
           finished_at         = CASE WHEN @set_finishedAt THEN @finishedAt ELSE finished_at END,
           downtime_started_at = CASE WHEN @set_downtimeStartedAt THEN @downtimeStartedAt ELSE downtime_started_at END,
           downtime_ended_at   = CASE WHEN @set_downtimeEndedAt THEN @downtimeEndedAt ELSE downtime_ended_at END,
           error_json          = CASE WHEN @set_error THEN @error ELSE error_json END,
           updated_at          = @now
         WHERE id = @id`,
      ),
      countRecovery: p<{ recoveries: number }>(
        'UPDATE runs SET recoveries = recoveries + 1, updated_at = @now WHERE id = @id RETURNING recoveries',
      ),
      touchRun: p('UPDATE runs SET updated_at = @now WHERE id = @id'),

      upsertNode: p(
        `INSERT INTO nodes (run_id, name, ssh_host, role, kind, profile, address, bind_address, fqdn)
         VALUES (@runId, @name, @sshHost, @role, @kind, @profile, @address, @bindAddress, @fqdn)
         ON CONFLICT (run_id, name) DO UPDATE SET ssh_host = excluded.ssh_host, role = excluded.role,
           kind = excluded.kind, profile = excluded.profile, address = excluded.address,
           bind_address = excluded.bind_address, fqdn = excluded.fqdn`,
      ),
      listNodes: p<NodeRecord>('SELECT * FROM nodes WHERE run_id = @runId ORDER BY rowid'),

      nextSeq: p<{ seq: number }>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM transitions WHERE run_id = @runId'),
      insertTransition: p(
        `INSERT INTO transitions (run_id, seq, at, from_state, event, to_state, snapshot, machine_version)
         VALUES (@runId, @seq, @at, @fromState, @event, @toState, @snapshot, @machineVersion)`,
      ),
      lastTransition: p<TransitionRecord>('SELECT * FROM transitions WHERE run_id = @runId ORDER BY seq DESC LIMIT 1'),
      listTransitions: p<TransitionRecord>(
        `SELECT run_id, seq, at, from_state, event, to_state, CASE WHEN @withSnapshots THEN snapshot END AS snapshot,
           machine_version
         FROM transitions WHERE run_id = @runId ORDER BY seq`,
      ),
      countTransitions: p<{ n: number }>('SELECT COUNT(*) AS n FROM transitions WHERE run_id = @runId'),

      beginStep: p(
        `INSERT INTO journal (run_id, step, node, attempt, started_at) VALUES (@runId, @step, @node, @attempt, @at)`,
      ),
      recordProbe: p('UPDATE journal SET probe = @probe WHERE id = @id'),
      endStep: p('UPDATE journal SET outcome = @outcome, detail = @detail, ended_at = @at WHERE id = @id'),
      journal: p<JournalRecord>(
        `SELECT * FROM journal WHERE run_id = @runId AND (@step IS NULL OR step = @step) AND (@node IS NULL OR node = @node)
         ORDER BY id`,
      ),
      openSteps: p<JournalRecord>('SELECT * FROM journal WHERE run_id = @runId AND outcome IS NULL ORDER BY id'),

      insertAudit: p(
        `INSERT INTO audit (run_id, node, at, command, exit_code, duration_ms, outcome, stdout_tail, stderr_tail)
         VALUES (@runId, @node, @at, @command, @exitCode, @durationMs, @outcome, @stdoutTail, @stderrTail)`,
      ),
      // The newest @limit entries (-1: all), oldest first.
      listAudit: p<AuditRecord>(
        `SELECT * FROM (SELECT * FROM audit WHERE run_id = @runId AND (@node IS NULL OR node = @node)
           ORDER BY id DESC LIMIT @limit) ORDER BY id`,
      ),

      upsertBackup: p(
        `INSERT INTO backups (run_id, node, dir, path, sha256, size, mode, owner, group_name)
         VALUES (@runId, @node, @dir, @path, @sha256, @size, @mode, @owner, @group)
         ON CONFLICT (run_id, node, path) DO UPDATE SET dir = excluded.dir, sha256 = excluded.sha256,
           size = excluded.size, mode = excluded.mode, owner = excluded.owner, group_name = excluded.group_name`,
      ),
      listBackups: p<BackupRecord>(
        'SELECT * FROM backups WHERE run_id = @runId AND (@node IS NULL OR node = @node) ORDER BY rowid',
      ),

      getLock: p<LockRecord>('SELECT * FROM locks WHERE cluster = @cluster'),
      insertLock: p(
        `INSERT INTO locks (cluster, run_id, pid, host, acquired_at, heartbeat_at)
         VALUES (@cluster, @runId, @pid, @host, @now, @now)`,
      ),
      takeOverLock: p(
        'UPDATE locks SET pid = @pid, host = @host, acquired_at = @now, heartbeat_at = @now WHERE cluster = @cluster AND run_id = @runId',
      ),
      heartbeat: p('UPDATE locks SET heartbeat_at = @now WHERE cluster = @cluster AND run_id = @runId'),
      releaseLock: p('DELETE FROM locks WHERE cluster = @cluster AND run_id = @runId'),
      deleteLock: p<LockRecord>('DELETE FROM locks WHERE cluster = @cluster RETURNING *'),
    };
  }

  /**
   * Free text goes through the redactor; names, ids and lookup keys do not (a short secret must not mask a node
   * name that resume then connects to, nor a run id a lookup must find). JSON is redacted value by value before
   * encoding, so escaping cannot hide a secret and the result stays valid JSON.
   */
  #bind(params: Record<string, string | number | boolean | null | undefined>): Params {
    const out: Params = {};
    for (const [k, v] of Object.entries(params)) {
      if (typeof v === 'string') out[k] = k === 'snapshot' ? this.#redactJsonText(v) : STRUCTURAL.has(k) ? v : this.#redact(v);
      else out[k] = typeof v === 'boolean' ? (v ? 1 : 0) : (v ?? null);
    }
    return out;
  }

  #json(value: unknown): string | null {
    const text = JSON.stringify(value, (key, v: unknown) => (typeof v === 'string' && !STRUCTURAL.has(key) ? this.#redact(v) : v)) as string | undefined;
    return text === undefined ? null : text;
  }

  /** A JSON text (a snapshot) redacted field by field; text that is not JSON is redacted whole. */
  #redactJsonText(text: string): string {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return this.#redact(text);
    }
    return this.#json(value) ?? text;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  setRedactor(redact: (text: string) => string): void {
    this.#redact = redact;
  }

  createRun(run: { id: string; cluster: string; machineVersion: string; inventoryJson: string; optionsJson: string }): RunRow {
    const params = this.#bind({ ...run, state: INITIAL_RUN_STATE, now: this.#now() });
    try {
      this.#q.insertRun.run(params);
    } catch (err) {
      if (err instanceof Database.SqliteError && err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new StoreError(`run ${run.id} already exists in ${this.path}`, 'use a new run id, or resume that run', err);
      }
      throw err;
    }
    return this.#mustGetRun(run.id);
  }

  getRun(id: string): RunRow | null {
    const r = this.#q.getRun.get(this.#bind({ id }));
    return r === undefined ? null : toRun(r);
  }

  #mustGetRun(id: string): RunRow {
    const r = this.getRun(id);
    if (r === null) throw new StoreError(`no run ${id} in ${this.path}`);
    return r;
  }

  listRuns(): RunRow[] {
    return this.#q.listRuns.all({}).map(toRun);
  }

  latestUnfinishedRun(cluster?: string): RunRow | null {
    const r = this.#q.latestUnfinished.get(this.#bind({ cluster: cluster ?? null }));
    return r === undefined ? null : toRun(r);
  }

  updateRun(
    id: string,
    patch: Partial<Pick<RunRow, 'status' | 'state' | 'leader' | 'finishedAt' | 'downtimeStartedAt' | 'downtimeEndedAt' | 'error'>>,
  ): void {
    const has = (k: keyof typeof patch) => Object.prototype.hasOwnProperty.call(patch, k) && patch[k] !== undefined;
    const res = this.#q.updateRun.run(
      this.#bind({
        id,
        now: this.#now(),
        set_status: has('status'),
        status: patch.status ?? null,
        set_state: has('state'),
        state: patch.state ?? null,
        set_leader: has('leader'),
        leader: patch.leader ?? null,
        set_finishedAt: has('finishedAt'),
        finishedAt: patch.finishedAt ?? null,
        set_downtimeStartedAt: has('downtimeStartedAt'),
        downtimeStartedAt: patch.downtimeStartedAt ?? null,
        set_downtimeEndedAt: has('downtimeEndedAt'),
        downtimeEndedAt: patch.downtimeEndedAt ?? null,
        set_error: has('error'),
        error: patch.error == null ? null : this.#json(patch.error),
      }),
    );
    if (res.changes === 0) throw new StoreError(`no run ${id} in ${this.path}`);
  }

  incrementRecoveries(id: string): number {
    const r = this.#q.countRecovery.get(this.#bind({ id, now: this.#now() }));
    if (r === undefined) throw new StoreError(`no run ${id} in ${this.path}`);
    return r.recoveries;
  }

  upsertNode(node: NodeRow): void {
    this.#q.upsertNode.run(this.#bind({ ...node }));
  }

  listNodes(runId: string): NodeRow[] {
    return this.#q.listNodes.all(this.#bind({ runId })).map(toNode);
  }

  appendTransition(t: Omit<TransitionRow, 'seq' | 'at'> & { at?: number }): number {
    // IMMEDIATE: the write lock is taken before seq is read, so another process appending to the same run
    // cannot read the same last seq.
    return this.#db
      .transaction(() => {
        const at = t.at ?? this.#now();
        const { seq } = this.#q.nextSeq.get(this.#bind({ runId: t.runId })) ?? { seq: 1 };
        this.#q.insertTransition.run(
          this.#bind({
            runId: t.runId,
            seq,
            at,
            fromState: t.fromState,
            event: t.event,
            toState: t.toState,
            snapshot: t.snapshot,
            machineVersion: t.machineVersion,
          }),
        );
        this.#q.touchRun.run(this.#bind({ id: t.runId, now: at }));
        return seq;
      })
      .immediate();
  }

  persistTransition(t: Omit<TransitionRow, 'seq' | 'at'> & { at?: number }, run: RunPatch, nodes: readonly NodeRow[]): number {
    // One IMMEDIATE transaction (the calls inside nest as savepoints): a kill leaves all three or none.
    return this.#db
      .transaction(() => {
        const seq = this.appendTransition(t);
        this.updateRun(t.runId, run);
        for (const n of nodes) this.upsertNode(n);
        return seq;
      })
      .immediate();
  }

  lastTransition(runId: string): TransitionRow | null {
    const r = this.#q.lastTransition.get(this.#bind({ runId }));
    return r === undefined ? null : toTransition(r);
  }

  listTransitions(runId: string, opts: { withSnapshots?: boolean } = {}): TransitionRow[] {
    return this.#q.listTransitions.all(this.#bind({ runId, withSnapshots: opts.withSnapshots === true })).map(toTransition);
  }

  countTransitions(runId: string): number {
    return this.#q.countTransitions.get(this.#bind({ runId }))?.n ?? 0;
  }

  beginStep(s: { runId: string; step: string; node: string; attempt: number; at?: number }): number {
    const res = this.#q.beginStep.run(
      this.#bind({ runId: s.runId, step: s.step, node: s.node, attempt: s.attempt, at: s.at ?? this.#now() }),
    );
    return Number(res.lastInsertRowid);
  }

  recordProbe(id: number, probe: ProbeResult): void {
    if (this.#q.recordProbe.run(this.#bind({ id, probe })).changes === 0) throw new StoreError(`no journal entry ${id}`);
  }

  endStep(id: number, outcome: StepOutcome, detail?: unknown, at?: number): void {
    const res = this.#q.endStep.run(
      this.#bind({ id, outcome, detail: detail === undefined ? null : this.#json(detail), at: at ?? this.#now() }),
    );
    if (res.changes === 0) throw new StoreError(`no journal entry ${id}`);
  }

  journal(runId: string, filter: { step?: string; node?: string } = {}): JournalRow[] {
    return this.#q.journal.all(this.#bind({ runId, step: filter.step ?? null, node: filter.node ?? null })).map(toJournal);
  }

  openSteps(runId: string): JournalRow[] {
    return this.#q.openSteps.all(this.#bind({ runId })).map(toJournal);
  }

  audit(a: Omit<AuditRow, 'id' | 'at'> & { at?: number }): void {
    this.#q.insertAudit.run(
      this.#bind({
        runId: a.runId,
        node: a.node,
        at: a.at ?? this.#now(),
        command: a.command,
        exitCode: a.exitCode,
        durationMs: a.durationMs,
        outcome: a.outcome,
        stdoutTail: a.stdoutTail,
        stderrTail: a.stderrTail,
      }),
    );
  }

  listAudit(runId: string, opts: { node?: string; limit?: number } = {}): AuditRow[] {
    return this.#q.listAudit
      .all(this.#bind({ runId, node: opts.node ?? null, limit: opts.limit ?? -1 }))
      .map(toAudit);
  }

  recordBackup(b: BackupRow): void {
    this.#q.upsertBackup.run(this.#bind({ ...b }));
  }

  listBackups(runId: string, node?: string): BackupRow[] {
    return this.#q.listBackups.all(this.#bind({ runId, node: node ?? null })).map(toBackup);
  }

  /**
   * Takes the cluster lock, or says who holds it. A lock is never taken over from another run, even a stale one:
   * only `regen unlock` (forceUnlock) removes it, so an operator decides.
   *
   * One exception: the same run, on the same host, whose recorded pid is gone. That is a resume of exactly the
   * run the lock was taken for, after its process died; the operator asked for that run by name, so the new
   * process takes the lock over. If the old pid still lives (the run is still being driven) or the lock was taken
   * on another host (where this host cannot tell whether the pid lives), the usual refusal applies.
   */
  acquireLock(l: { cluster: string; runId: string; pid: number; host: string }): void {
    if (!Number.isInteger(l.pid) || l.pid <= 0) throw new StoreError(`invalid pid ${l.pid} for the lock on ${l.cluster}`);
    this.#db
      .transaction(() => {
        const now = this.#now();
        const params = this.#bind({ ...l, now });
        const row = this.#q.getLock.get(params);
        if (row === undefined) {
          this.#q.insertLock.run(params);
          return;
        }
        const sameRun = row.run_id === params['runId'];
        const sameHost = row.host === params['host'];
        if (sameRun && sameHost && row.pid === l.pid) {
          this.#q.heartbeat.run(params);
          return;
        }
        const holderAlive = sameHost ? processAlive(row.pid) : undefined;
        if (sameRun && holderAlive === false) {
          this.#q.takeOverLock.run(params);
          return;
        }
        throw this.#lockHeld(toLock(row), l.cluster, now, holderAlive);
      })
      .immediate();
  }

  #lockHeld(row: LockRow, cluster: string, now: number, holderAlive: boolean | undefined): LockHeldError {
    const who =
      `cluster ${cluster} is locked by run ${row.runId} (pid ${row.pid} on ${row.host}) since ` +
      `${new Date(row.acquiredAt).toISOString()}, last heartbeat ${formatAge(now - row.heartbeatAt)}`;
    const unlock = `regen unlock --cluster ${shellWord(cluster)}`;
    if (holderAlive === false) {
      return new LockHeldError(`${who}; the lock looks stale: the process that held it is gone (it is not taken over automatically)`, unlock);
    }
    if (holderAlive === true) {
      return new LockHeldError(
        `${who}; that process is still running`,
        `wait for run ${row.runId} to finish, or stop pid ${row.pid} first; ${unlock} only once it is gone`,
      );
    }
    return new LockHeldError(
      `${who}; it was taken on another host, so whether it still runs cannot be checked from here`,
      `if run ${row.runId} is no longer running on ${row.host}: ${unlock}`,
    );
  }

  heartbeat(cluster: string, runId: string): void {
    const params = this.#bind({ cluster, runId, now: this.#now() });
    if (this.#q.heartbeat.run(params).changes > 0) return;
    const row = this.#q.getLock.get(params);
    throw new LockHeldError(
      `run ${runId} no longer holds the lock on cluster ${cluster}` +
        (row === undefined ? ' (it was removed, e.g. by regen unlock)' : ` (run ${row.run_id}, pid ${row.pid} on ${row.host} holds it now)`),
      'stop this process; resume the run once no other run drives the cluster',
    );
  }

  releaseLock(cluster: string, runId: string): void {
    this.#q.releaseLock.run(this.#bind({ cluster, runId }));
  }

  getLock(cluster: string): LockRow | null {
    const r = this.#q.getLock.get(this.#bind({ cluster }));
    return r === undefined ? null : toLock(r);
  }

  forceUnlock(cluster: string): LockRow | null {
    const r = this.#q.deleteLock.get(this.#bind({ cluster }));
    return r === undefined ? null : toLock(r);
  }
}
