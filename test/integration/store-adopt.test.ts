/**
 * regen adopts only its own database: a file with another application_id, another schema (a trigger that rewrites
 * a node's SSH host) or another owner is refused and left untouched; the -wal and -shm files are private; audit
 * rows are filed under the run the runner bound.
 */
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { StoreError } from '../../machines/errors.js';
import { migrate } from '../../store/migrate.js';
import { migrations } from '../../store/migrations/index.js';
import { REGEN_APPLICATION_ID } from '../../store/migrations/application-id.js';
import { openStore } from '../../store/store.js';
import { makeNodePort } from '../../cli/wiring.js';
import type { Io } from '../../cli/io.js';

const dir = mkdtempSync(join(tmpdir(), 'regen-adopt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** A database made with regen's first schema by hand, then changed by `tamper`. */
function prepared(tamper: (db: Database.Database) => void): string {
  const path = join(dir, `db${++n}.sqlite`);
  const db = new Database(path);
  migrate(db, migrations, 1);
  tamper(db);
  db.close();
  chmodSync(path, 0o600);
  return path;
}

function refused(path: string, pattern: RegExp): void {
  const before = readFileSync(path);
  let err: unknown = null;
  try {
    openStore(path).close();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(StoreError);
  expect((err as Error).message).toMatch(pattern);
  expect(readFileSync(path).equals(before)).toBe(true);
  expect(existsSync(`${path}-wal`)).toBe(false);
}

describe('a database regen did not create', () => {
  it('a trigger that rewrites ssh_host: refused, untouched', () => {
    const path = prepared((db) =>
      db.exec("CREATE TRIGGER steer AFTER INSERT ON nodes BEGIN UPDATE nodes SET ssh_host = 'attacker.example' WHERE rowid = new.rowid; END"),
    );
    refused(path, /not created by regen.*schema differs.*trigger steer/);
  });

  it('another application_id: refused, untouched', () => {
    refused(prepared((db) => db.pragma('application_id = 1234')), /application_id is 1234/);
  });

  it.skipIf(process.getuid?.() !== 0)("another user's file: refused, untouched", () => {
    const path = prepared(() => undefined);
    chownSync(path, 65534, 65534);
    refused(path, /belongs to uid 65534/);
  });

  it("regen's own first-schema database is adopted and gets regen's application_id", () => {
    const path = prepared(() => undefined);
    openStore(path).close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma('application_id', { simple: true })).toBe(REGEN_APPLICATION_ID);
    db.close();
    openStore(path).close();
  });
});

describe('file modes', () => {
  it('the database, -wal and -shm are 0600 even when they were wider', () => {
    const path = join(dir, 'modes.db');
    const s = openStore(path);
    s.createRun({ id: 'r', cluster: 'c', machineVersion: 'v', inventoryJson: '{}', optionsJson: '{}' });
    for (const p of [path, `${path}-wal`, `${path}-shm`]) chmodSync(p, 0o644);
    const again = openStore(path);
    try {
      expect([path, `${path}-wal`, `${path}-shm`].map((p) => (statSync(p).mode & 0o777).toString(8))).toEqual(['600', '600', '600']);
    } finally {
      again.close();
      s.close();
    }
  });
});

describe('audit rows go to the run that produced them', () => {
  it('resuming an older run files its commands under it, not under the newest unfinished run', async () => {
    const store = openStore(join(dir, 'audit.db'));
    for (const id of ['older', 'newer']) store.createRun({ id, cluster: 'c1', machineVersion: 'v', inventoryJson: '{}', optionsJson: '{}' });
    const io = { env: {}, isTTY: false, stdinIsTTY: false, stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough(), out: () => undefined, err: () => undefined, onInterrupt: () => () => undefined } as Io;
    const connect = { sshConfig: undefined, knownHosts: join(dir, 'kh'), acceptNewHostKeys: false, connectTimeoutS: 1, commandTimeoutS: 2 };
    const port = await makeNodePort({ cluster: 'c1', nodes: [{ name: 'n1', sshHost: '127.0.0.1', sshPort: 1, sshUser: 'root' }] }, connect, store, io);
    try {
      port.bindRun?.('older');
      await port.serviceActive('n1').catch(() => null);
      expect([store.listAudit('older').length > 0, store.listAudit('newer').length]).toEqual([true, 0]);
    } finally {
      await port.close();
      store.close();
    }
  });
});
