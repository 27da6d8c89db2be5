/**
 * Before regen adopts a database file it did not just create: is it regen's? A foreign file with a trigger could
 * rewrite a stored node's SSH host, and resume would connect where the trigger says. The checks read only:
 * - the file belongs to the user running regen (root included: someone else's file is not adopted);
 * - SQLite's application_id is regen's, or 0 in a database of the first schema (written before the id existed);
 * - every table, index, trigger and view is exactly what regen's migrations create at that schema version.
 */
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { StoreError } from '../machines/errors.js';
import { migrate, userVersion } from './migrate.js';
import { REGEN_APPLICATION_ID } from './migrations/application-id.js';
import { migrations } from './migrations/index.js';

type SchemaRow = { type: string; name: string; tbl_name: string; sql: string | null };

function schemaOf(db: Database.Database): string[] {
  const rows = db.prepare<[], SchemaRow>("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all();
  return rows.map((r) => `${r.type} ${r.name} ${r.tbl_name} ${(r.sql ?? '').replace(/\s+/g, ' ')}`);
}

const expectedByVersion = new Map<number, string[]>();

/** The schema regen's migrations create up to `version`, from an in-memory database. */
export function expectedSchema(version: number): string[] {
  let s = expectedByVersion.get(version);
  if (s === undefined) {
    const mem = new Database(':memory:');
    try {
      migrate(mem, migrations, version);
      s = schemaOf(mem);
    } finally {
      mem.close();
    }
    expectedByVersion.set(version, s);
  }
  return s;
}

function foreign(path: string, why: string): StoreError {
  return new StoreError(
    `database ${path} was not created by regen (${why}); regen will not use it and changed nothing in it`,
    'pass --db with a path of your own (a new file is created there), or move this file aside',
  );
}

/** The owner check: a file another user could have prepared is not adopted. */
export function checkOwner(path: string): void {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  const owner = statSync(path).uid;
  if (owner !== uid) throw foreign(path, `it belongs to uid ${owner}, and regen runs as uid ${uid}`);
}

/** application_id and schema, over an open (read-only) connection. An empty file is a new database. */
export function checkRegenDatabase(db: Database.Database, path: string): void {
  const version = userVersion(db);
  const appId = db.pragma('application_id', { simple: true }) as number;
  const schema = schemaOf(db);
  if (version === 0 && appId === 0 && schema.length === 0) return;
  if (appId !== REGEN_APPLICATION_ID && !(appId === 0 && version === 1)) {
    throw foreign(path, `its SQLite application_id is ${appId}, not regen's ${REGEN_APPLICATION_ID}`);
  }
  if (version > migrations.length) return; // a newer regen's file: the caller says so
  const expected = expectedSchema(version);
  const extra = schema.filter((s) => !expected.includes(s));
  const missing = expected.filter((s) => !schema.includes(s));
  if (extra.length > 0 || missing.length > 0) {
    const first = (extra[0] ?? missing[0] ?? '').split(' ').slice(0, 2).join(' ');
    throw foreign(path, `its schema differs from regen's v${version}: ${extra.length} unexpected and ${missing.length} missing object(s), first ${first}`);
  }
}
