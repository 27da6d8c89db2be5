/**
 * Opening the database: the file created owner-only, a file regen did not create refused before anything writes
 * to it (store/adopt.ts), the pragmas, the migrations, and SQLite failures turned into StoreErrors that say what
 * to do. The tables themselves are in one module per family (runs.ts, journal.ts, audit.ts, backups.ts, lock.ts).
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../machines/errors.js';
import { migrate, userVersion } from './migrate.js';
import { checkOwner, checkRegenDatabase } from './adopt.js';
import { latestVersion } from './migrations/index.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './types.js';

export interface OpenStoreOptions {
  /** Open for reading only: no directory or file is created, no migration runs. */
  readonly?: boolean;
  /** Clock in ms since epoch (tests pin it). */
  now?: () => number;
}

const BUSY_TIMEOUT_MS = 5_000;

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
