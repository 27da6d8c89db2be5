import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockHeldError, StoreError } from '../../machines/errors.js';
import { migrate, userVersion } from '../../store/migrate.js';
import { checkMigrationOrder, type Migration } from '../../store/migrations/migration.js';
import { latestVersion, migrations } from '../../store/migrations/index.js';
import { defaultDbPath, LockConflictError, openStore } from '../../store/store.js';
import { hintOf } from '../../cli/lock-advice.js';
import type { Store } from '../../store/types.js';

const PER_CHILD = 400;
const TABLES = ['audit', 'backups', 'journal', 'locks', 'nodes', 'runs', 'transitions'];

let dir: string;
const open: Store[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'regen-store-'));
});
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function store(path = ':memory:', opts: Parameters<typeof openStore>[1] = {}): Store {
  const s = openStore(path, opts);
  open.push(s);
  return s;
}

function newRun(s: Store, id = 'r1', cluster = 'c1') {
  return s.createRun({ id, cluster, machineVersion: 'm1', inventoryJson: '{"nodes":[]}', optionsJson: '{}' });
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

function tables(db: Database.Database): string[] {
  return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map(
    (r) => r.name,
  );
}

/** The owner-only mode regen gives its files (a test file made by hand has the umask's). */
function chmodOwn(path: string): void {
  chmodSync(path, 0o600);
}

/** A pid that existed and is gone: a child that has exited and been reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', ''], { timeout: 10_000 });
  expect(r.status).toBe(0);
  return r.pid;
}

/** A file database with enough rows to span many pages, closed (so everything is in the main file). */
function populatedDb(path: string): void {
  const s = openStore(path);
  newRun(s);
  for (let i = 0; i < 400; i++) {
    s.audit({ runId: 'r1', node: `n${i % 5}`, command: `cmd ${i} ${'x'.repeat(200)}`, exitCode: 0, durationMs: 1, outcome: 'completed', stdoutTail: 'out'.repeat(50), stderrTail: '' });
  }
  s.close();
}

describe('migrations', () => {
  it('each migration applies from empty and leaves user_version at its own version', () => {
    for (const m of migrations) {
      const db = new Database(':memory:');
      try {
        expect(migrate(db, migrations, m.version)).toEqual(migrations.filter((x) => x.version <= m.version).map((x) => x.version));
        expect(userVersion(db)).toBe(m.version);
      } finally {
        db.close();
      }
    }
  });

  it('the latest schema has every table', () => {
    const db = new Database(':memory:');
    try {
      migrate(db);
      expect(userVersion(db)).toBe(latestVersion);
      expect(tables(db)).toEqual(TABLES);
      const idx = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'journal_by_step'").get() as { sql: string } | undefined;
      expect(idx?.sql).toMatch(/\(run_id, step, node\)/);
    } finally {
      db.close();
    }
  });

  it('a failing migration leaves user_version and the schema as they were', () => {
    const broken: Migration = {
      version: 2,
      name: 'broken',
      up(db) {
        db.exec('CREATE TABLE half_done (x)');
        throw new Error('boom');
      },
    };
    const db = new Database(':memory:');
    try {
      expect(() => migrate(db, [...migrations.slice(0, 1), broken])).toThrow('boom');
      expect(userVersion(db)).toBe(1);
      expect(tables(db)).not.toContain('half_done');
    } finally {
      db.close();
    }
  });

  it('v3 upgrades a v2 file in place: a run failed by an operator stop becomes stopped, no child row is lost', () => {
    const path = join(dir, 'v2.db');
    const raw = new Database(path);
    migrate(raw, migrations, 2);
    const insertRun = raw.prepare(
      `INSERT INTO runs (id, cluster, status, state, machine_version, inventory_json, options_json, created_at, updated_at, error_json)
       VALUES (?, 'c1', 'failed', 'failed', 'm1', '{}', '{}', 1, 1, ?)`,
    );
    insertRun.run('ctrl-c', JSON.stringify({ kind: 'aborted', name: 'RegenError', message: 'stopped by the operator' }));
    insertRun.run('broke', JSON.stringify({ kind: 'step-failed', name: 'CommandFailedError', message: 'boom' }));
    for (const id of ['ctrl-c', 'broke']) {
      raw.prepare(`INSERT INTO nodes (run_id, name, ssh_host) VALUES (?, 'n1', 'h1')`).run(id);
      raw.prepare(`INSERT INTO journal (run_id, step, node, attempt, started_at) VALUES (?, 'leader.stop', 'n1', 1, 1)`).run(id);
      raw.prepare(`INSERT INTO transitions (run_id, seq, at, event, to_state, snapshot, machine_version) VALUES (?, 1, 1, 'e', 'failed', '{}', 'm1')`).run(id);
    }
    expect(() => raw.prepare(`UPDATE runs SET status = 'stopped' WHERE id = 'broke'`).run()).toThrow(/CHECK/);
    raw.close();
    chmodOwn(path);

    const s = store(path);
    expect(s.getRun('ctrl-c')?.status).toBe('stopped');
    expect(s.getRun('broke')?.status).toBe('failed');
    for (const id of ['ctrl-c', 'broke']) {
      expect(s.listNodes(id)).toHaveLength(1);
      expect(s.journal(id)).toHaveLength(1);
      expect(s.countTransitions(id)).toBe(1);
    }
    s.close();
    // The upgraded file passes the schema check of a database regen created at v3, and deletes still cascade.
    const again = store(path);
    expect(again.listRuns().map((r) => r.id)).toEqual(['ctrl-c', 'broke']);
    again.close();
    const check = new Database(path);
    try {
      expect(userVersion(check)).toBe(3);
      check.pragma('foreign_keys = ON');
      check.prepare(`DELETE FROM runs WHERE id = 'broke'`).run();
      expect(check.prepare(`SELECT COUNT(*) AS n FROM journal WHERE run_id = 'broke'`).get()).toEqual({ n: 0 });
      expect(tables(check)).toEqual(TABLES);
    } finally {
      check.close();
    }
  });

  it('a table rebuild that would leave a dangling reference rolls back, and foreign keys are on again', () => {
    const dangling: Migration = {
      version: 2,
      name: 'dangling',
      foreignKeysOff: true,
      up(db) {
        db.exec(`INSERT INTO journal (run_id, step, node, attempt, started_at) VALUES ('no-such-run', 's', 'n', 1, 1)`);
      },
    };
    const db = new Database(':memory:');
    try {
      db.pragma('foreign_keys = ON');
      expect(() => migrate(db, [...migrations.slice(0, 1), dangling])).toThrow(/dangling reference; nothing was changed/);
      expect(userVersion(db)).toBe(1);
      expect(db.prepare('SELECT COUNT(*) AS n FROM journal').get()).toEqual({ n: 0 });
      expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    } finally {
      db.close();
    }
  });

  it('the list must be numbered 1, 2, 3, … in order', () => {
    const m = (version: number): Migration => ({ version, name: `m${version}`, up: () => undefined });
    expect(() => checkMigrationOrder([m(1), m(2), m(3)])).not.toThrow();
    expect(() => checkMigrationOrder([m(2)])).toThrow(/expected 1/);
    expect(() => checkMigrationOrder([m(1), m(1)])).toThrow(/expected 2/);
    expect(() => checkMigrationOrder([m(1), m(3)])).toThrow(/expected 2/);
    expect(() => checkMigrationOrder([m(2), m(1)])).toThrow(/expected 1/);
  });
});

describe('opening', () => {
  it('creates a missing directory 0700 and the file 0600, in WAL mode with the pragmas set', () => {
    const path = join(dir, 'a', 'b', 'regen.db');
    const s = store(path);
    expect(s.path).toBe(path);
    expect(statSync(join(dir, 'a', 'b')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'a')).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    newRun(s);
    s.close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(userVersion(db)).toBe(latestVersion);
    } finally {
      db.close();
    }
  });

  it('tightens the mode of an existing database file', () => {
    const path = join(dir, 'regen.db');
    store(path).close();
    spawnSync('chmod', ['0644', path]);
    expect(statSync(path).mode & 0o777).toBe(0o644);
    store(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('re-opening a current database changes nothing', () => {
    const path = join(dir, 'regen.db');
    const s = store(path);
    newRun(s);
    s.close();
    const before = readFileSync(path);
    const again = store(path);
    expect(again.getRun('r1')?.cluster).toBe('c1');
    again.close();
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('refuses a database from a newer regen, unchanged', () => {
    const path = join(dir, 'regen.db');
    const s = store(path);
    newRun(s);
    s.close();
    // Back in rollback-journal mode, so that switching it to WAL would show in its bytes.
    const raw = new Database(path);
    raw.pragma('journal_mode = DELETE');
    raw.pragma(`user_version = ${latestVersion + 1}`);
    raw.close();
    const before = readFileSync(path);
    const err = catchError(() => openStore(path));
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).message).toBe(
      `database ${path} was written by a newer regen (schema v${latestVersion + 1}, this regen knows v${latestVersion})`,
    );
    expect((err as StoreError).hint).toBe('upgrade regen, or use another --db');
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(() => openStore(path, { readonly: true })).toThrow(/newer regen/);
  });

  it('refuses a file that is not a database, unchanged', () => {
    const path = join(dir, 'regen.db');
    writeFileSync(path, 'these are not the pages you are looking for\n'.repeat(200));
    const before = readFileSync(path);
    const err = catchError(() => openStore(path));
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).message).toMatch(/is damaged.*changed nothing/);
    expect((err as StoreError).hint).toMatch(/backup copy/);
    expect((err as StoreError).hint).toMatch(/move it aside/);
    expect((err as StoreError).hint).toContain('/var/backups/regen/<run>');
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('refuses a database whose middle pages were overwritten, unchanged', () => {
    const path = join(dir, 'regen.db');
    populatedDb(path);
    const size = statSync(path).size;
    expect(size).toBeGreaterThan(40 * 4096);
    const fd = openSync(path, 'r+');
    try {
      const junk = Buffer.alloc(4096 * 4, 0xa5);
      writeSync(fd, junk, 0, junk.length, Math.floor(size / 4096 / 2) * 4096);
    } finally {
      closeSync(fd);
    }
    const before = readFileSync(path);
    const err = catchError(() => openStore(path));
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).message).toMatch(/damaged/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('refuses a truncated database, unchanged', () => {
    const path = join(dir, 'regen.db');
    populatedDb(path);
    truncateSync(path, Math.floor(statSync(path).size / 2));
    const before = readFileSync(path);
    expect(() => openStore(path)).toThrow(/damaged/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('read-only: refuses a missing file without creating anything, reads an existing one', () => {
    const missing = join(dir, 'nowhere', 'regen.db');
    expect(() => openStore(missing, { readonly: true })).toThrow(StoreError);
    expect(existsSync(join(dir, 'nowhere'))).toBe(false);
    const path = join(dir, 'regen.db');
    newRun(store(path));
    const ro = store(path, { readonly: true });
    expect(ro.getRun('r1')?.status).toBe('running');
    const err = catchError(() => newRun(ro, 'r2'));
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).message).toMatch(/cannot write database/);
  });

  it('defaultDbPath: $REGEN_DB, then $XDG_STATE_HOME, then ~/.local/state', () => {
    expect(defaultDbPath({ REGEN_DB: '/x/y.db', XDG_STATE_HOME: '/s', HOME: '/h' })).toBe('/x/y.db');
    expect(defaultDbPath({ XDG_STATE_HOME: '/s', HOME: '/h' })).toBe('/s/regen/regen.db');
    expect(defaultDbPath({ HOME: '/h' })).toBe('/h/.local/state/regen/regen.db');
    expect(defaultDbPath({ REGEN_DB: '', XDG_STATE_HOME: 'relative', HOME: '/h' })).toBe('/h/.local/state/regen/regen.db');
  });
});

describe('runs and nodes', () => {
  it('creates, patches and finds unfinished runs newest first', () => {
    let t = 1_000;
    const s = store(':memory:', { now: () => t });
    const r1 = newRun(s, 'r1', 'c1');
    expect(r1).toMatchObject({ id: 'r1', status: 'running', createdAt: 1_000, recoveries: 0, error: null, leader: null });
    t = 2_000;
    newRun(s, 'r2', 'c2');
    t = 3_000;
    newRun(s, 'r3', 'c1');
    expect(s.latestUnfinishedRun()?.id).toBe('r3');
    expect(s.latestUnfinishedRun('c2')?.id).toBe('r2');
    s.updateRun('r3', { status: 'done', finishedAt: 3_500 });
    expect(s.latestUnfinishedRun('c1')?.id).toBe('r1');
    s.updateRun('r1', { status: 'aborted' });
    expect(s.latestUnfinishedRun('c1')).toBeNull();

    t = 4_000;
    s.updateRun('r2', { leader: 'mx1', error: { kind: 'step-failed', name: 'CommandFailedError', message: 'exit 1', node: 'mx1', exitCode: 1 } });
    s.updateRun('r2', { state: 'followers' });
    const r2 = s.getRun('r2');
    expect(r2).toMatchObject({ leader: 'mx1', state: 'followers', status: 'running', updatedAt: 4_000 });
    expect(r2?.error).toEqual({ kind: 'step-failed', name: 'CommandFailedError', message: 'exit 1', node: 'mx1', exitCode: 1 });
    s.updateRun('r2', { leader: null, error: null });
    expect(s.getRun('r2')).toMatchObject({ leader: null, error: null, state: 'followers' });
    expect(s.incrementRecoveries('r2')).toBe(1);
    expect(s.incrementRecoveries('r2')).toBe(2);
    expect(s.listRuns().map((r) => r.id)).toEqual(['r1', 'r2', 'r3']);
    expect(() => s.updateRun('nope', { status: 'done' })).toThrow(StoreError);
    expect(() => newRun(s, 'r1')).toThrow(/already exists/);
  });

  it('upserts nodes keeping inventory order', () => {
    const s = store();
    newRun(s);
    const base = { runId: 'r1', role: null, kind: null, profile: null, address: null, bindAddress: null, fqdn: null };
    s.upsertNode({ ...base, name: 'b', sshHost: 'b.example' });
    s.upsertNode({ ...base, name: 'a', sshHost: 'a.example' });
    s.upsertNode({ ...base, name: 'b', sshHost: 'b.example', role: 'leader', kind: 'server', profile: 'current', address: '10.0.0.2', bindAddress: '10.0.0.2', fqdn: 'b.example' });
    const nodes = s.listNodes('r1');
    expect(nodes.map((n) => n.name)).toEqual(['b', 'a']);
    expect(nodes[0]).toMatchObject({ role: 'leader', kind: 'server', profile: 'current', bindAddress: '10.0.0.2' });
  });
});

describe('transitions', () => {
  it('numbers transitions per run and returns the last', () => {
    const s = store(':memory:', { now: () => 42 });
    newRun(s, 'r1');
    newRun(s, 'r2');
    expect(s.lastTransition('r1')).toBeNull();
    const seqs = ['a', 'b', 'c'].map((to, i) =>
      s.appendTransition({ runId: 'r1', fromState: i === 0 ? null : 'x', event: `e${i}`, toState: to, snapshot: `{"v":${i}}`, machineVersion: 'm1' }),
    );
    expect(seqs).toEqual([1, 2, 3]);
    expect(s.appendTransition({ runId: 'r2', fromState: null, event: 'e', toState: 'z', snapshot: '{}', machineVersion: 'm1', at: 7 })).toBe(1);
    expect(s.lastTransition('r1')).toEqual({ runId: 'r1', seq: 3, at: 42, fromState: 'x', event: 'e2', toState: 'c', snapshot: '{"v":2}', machineVersion: 'm1' });
    expect(s.lastTransition('r2')?.at).toBe(7);
    expect(s.countTransitions('r1')).toBe(3);
    expect(s.listTransitions('r1').map((t) => [t.seq, t.toState, t.snapshot])).toEqual([
      [1, 'a', ''],
      [2, 'b', ''],
      [3, 'c', ''],
    ]);
    expect(s.listTransitions('r1', { withSnapshots: true }).map((t) => t.snapshot)).toEqual(['{"v":0}', '{"v":1}', '{"v":2}']);
    expect(() => s.appendTransition({ runId: 'ghost', fromState: null, event: 'e', toState: 'z', snapshot: '{}', machineVersion: 'm1' })).toThrow();
  });

  it('two stores on one file share the numbering', () => {
    const path = join(dir, 'regen.db');
    const a = store(path);
    const b = store(path);
    newRun(a);
    const got: number[] = [];
    for (let i = 0; i < 20; i++) {
      const s = i % 3 === 0 ? b : a;
      got.push(s.appendTransition({ runId: 'r1', fromState: null, event: `e${i}`, toState: 's', snapshot: '{}', machineVersion: 'm1' }));
    }
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(b.lastTransition('r1')?.event).toBe('e19');
  });

  it('two processes appending to one run at once get distinct consecutive seqs', async () => {
    const path = join(dir, 'regen.db');
    newRun(store(path));
    const storeModule = fileURLToPath(new URL('../../store/store.ts', import.meta.url));
    const script = join(dir, 'append.ts');
    // Each child opens the store, says "ready", and appends only once told to, so both append at the same time.
    writeFileSync(
      script,
      `import { openStore } from ${JSON.stringify(storeModule)};
       const s = openStore(process.argv[2]!);
       process.stdout.write('ready\\n');
       await new Promise((go) => process.stdin.once('data', go));
       const seqs: number[] = [];
       for (let i = 0; i < ${PER_CHILD}; i++) seqs.push(s.appendTransition({ runId: 'r1', fromState: null, event: process.argv[3]! + i, toState: 's', snapshot: '{}', machineVersion: 'm1' }));
       s.close();
       process.stdout.write(JSON.stringify(seqs) + '\\n');
       process.exit(0);`,
    );
    const viteNode = fileURLToPath(new URL('../../node_modules/.bin/vite-node', import.meta.url));
    const children = ['x', 'y'].map((tag) => {
      const child = spawn(viteNode, [script, path, tag], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 120_000 });
      let out = '';
      let err = '';
      let markReady: () => void = () => undefined;
      const ready = new Promise<void>((resolve) => (markReady = resolve));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.startsWith('ready\n')) markReady();
      });
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const done = new Promise<number[]>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', (code) => {
          markReady();
          if (code === 0) resolve(JSON.parse(out.split('\n')[1] ?? '') as number[]);
          else reject(new Error(`child ${tag} exited ${code}: ${err}${out}`));
        });
      });
      return { child, ready, done };
    });
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.child.stdin.end('go\n');
    const [x, y] = await Promise.all(children.map((c) => c.done));
    for (const seqs of [x!, y!]) expect([...seqs].sort((p, q) => p - q)).toEqual(seqs);
    expect([...x!, ...y!].sort((p, q) => p - q)).toEqual(Array.from({ length: 2 * PER_CHILD }, (_, i) => i + 1));
    const s = store(path);
    expect(s.countTransitions('r1')).toBe(2 * PER_CHILD);
    expect(s.lastTransition('r1')?.seq).toBe(2 * PER_CHILD);
  }, 150_000);
});

describe('journal, audit, backups', () => {
  it('an intent without outcome is an open step until it ends', () => {
    let t = 10;
    const s = store(':memory:', { now: () => t });
    newRun(s);
    const a = s.beginStep({ runId: 'r1', step: 'leader.setup', node: 'mx1', attempt: 1 });
    const b = s.beginStep({ runId: 'r1', step: 'follower.join', node: 'mx2', attempt: 1, at: 11 });
    expect(s.openSteps('r1').map((r) => r.id)).toEqual([a, b]);
    s.recordProbe(a, 'not-done');
    t = 20;
    s.endStep(a, 'done', { result: { sha256: 'abc' } });
    const open = s.openSteps('r1');
    expect(open.map((r) => r.id)).toEqual([b]);
    expect(open[0]).toMatchObject({ step: 'follower.join', node: 'mx2', attempt: 1, startedAt: 11, endedAt: null, outcome: null, probe: null, detail: null });
    const [row] = s.journal('r1', { step: 'leader.setup', node: 'mx1' });
    expect(row).toMatchObject({ id: a, outcome: 'done', probe: 'not-done', startedAt: 10, endedAt: 20 });
    expect(JSON.parse(row?.detail ?? 'null')).toEqual({ result: { sha256: 'abc' } });
    s.endStep(b, 'unknown');
    expect(s.openSteps('r1')).toEqual([]);
    expect(s.journal('r1').map((r) => r.outcome)).toEqual(['done', 'unknown']);
    expect(s.journal('r1', { node: 'mx2' }).map((r) => r.id)).toEqual([b]);
    expect(() => s.endStep(9_999, 'done')).toThrow(StoreError);
  });

  it('lists audit entries per node, newest N in order', () => {
    const s = store();
    newRun(s);
    for (let i = 0; i < 5; i++) {
      s.audit({ runId: 'r1', node: i % 2 ? 'b' : 'a', command: `c${i}`, exitCode: i, durationMs: i, outcome: 'completed', stdoutTail: '', stderrTail: '', at: i });
    }
    expect(s.listAudit('r1').map((a) => a.command)).toEqual(['c0', 'c1', 'c2', 'c3', 'c4']);
    expect(s.listAudit('r1', { node: 'a' }).map((a) => a.command)).toEqual(['c0', 'c2', 'c4']);
    expect(s.listAudit('r1', { limit: 2 }).map((a) => a.command)).toEqual(['c3', 'c4']);
    expect(s.listAudit('r1', { node: 'b', limit: 1 })[0]).toMatchObject({ command: 'c3', exitCode: 3, durationMs: 3, at: 3, node: 'b' });
  });

  it('records backups once per file', () => {
    const s = store();
    newRun(s);
    const f = { runId: 'r1', node: 'a', dir: '/var/backups/regen/r1', path: '/etc/zextras/service-discover/main.json', sha256: 'aa', size: 10, mode: '0600', owner: 'service-discover', group: 'service-discover' };
    s.recordBackup(f);
    s.recordBackup({ ...f, sha256: 'bb' });
    s.recordBackup({ ...f, node: 'b' });
    expect(s.listBackups('r1', 'a')).toEqual([{ ...f, sha256: 'bb' }]);
    expect(s.listBackups('r1').map((b) => b.node)).toEqual(['a', 'b']);
  });
});

describe('redaction', () => {
  const SECRET = 'hunter2';
  const MASK = '[MASKED]';

  /** The secret in every free-text field; names, ids and keys hold ordinary values (they are never redacted). */
  function writeEverything(s: Store): void {
    const r = 'run-1';
    const c = 'cluster-1';
    s.createRun({ id: r, cluster: c, machineVersion: 'v1', inventoryJson: JSON.stringify({ cluster: c }), optionsJson: JSON.stringify({ parallel: 2 }) });
    s.updateRun(r, { state: 'st', leader: 'l', error: { kind: 'internal', name: 'RegenError', message: `failed with ${SECRET}`, hint: SECRET, node: 'n1' } });
    s.upsertNode({ runId: r, name: 'n1', sshHost: 'h1', role: 'leader', kind: 'server', profile: 'current', address: '10.0.0.1', bindAddress: '10.0.0.1', fqdn: 'n1.example.com' });
    s.appendTransition({ runId: r, fromState: 'a', event: 'e', toState: 'b', snapshot: JSON.stringify({ context: { token: SECRET, leader: 'n1' } }), machineVersion: 'v1' });
    const id = s.beginStep({ runId: r, step: 'backup', node: 'n1', attempt: 1 });
    s.endStep(id, 'failed', { message: `bad "${SECRET}" \\ ${SECRET}`, nested: [{ deep: SECRET }] });
    s.audit({ runId: r, node: 'n1', command: `echo ${SECRET}`, exitCode: 1, durationMs: 1, outcome: 'completed', stdoutTail: SECRET, stderrTail: SECRET });
    s.recordBackup({ runId: r, node: 'n1', dir: '/b', path: '/p', sha256: 'f'.repeat(64), size: 1, mode: '0600', owner: 'root', group: 'root' });
    s.acquireLock({ cluster: c, runId: r, pid: process.pid, host: 'host-1' });
    s.heartbeat(c, r);
  }

  const count = (buf: Buffer, text: string) => {
    let n = 0;
    for (let i = buf.indexOf(text); i !== -1; i = buf.indexOf(text, i + 1)) n++;
    return n;
  };

  it('no free text reaches the database file or its WAL unredacted', () => {
    const path = join(dir, 'regen.db');
    const s = store(path);
    s.setRedactor((t) => t.split(SECRET).join(MASK));
    writeEverything(s);

    const run = s.getRun('run-1');
    expect(run?.error?.message).toBe(`failed with ${MASK}`);
    expect(s.journal('run-1')[0]?.detail).not.toContain(SECRET);

    const wal = readFileSync(`${path}-wal`);
    expect(count(wal, MASK)).toBeGreaterThan(8);
    expect(count(wal, SECRET)).toBe(0);
    expect(count(readFileSync(path), SECRET)).toBe(0);
    s.close();
    const db = readFileSync(path);
    expect(count(db, MASK)).toBeGreaterThan(8);
    expect(count(db, SECRET)).toBe(0);
  });

  it('without a redactor the same writes do reach the file (the check above can see them)', () => {
    const path = join(dir, 'regen.db');
    const s = store(path);
    writeEverything(s);
    expect(count(readFileSync(`${path}-wal`), SECRET)).toBeGreaterThan(8);
  });
});

describe('cluster lock', () => {
  const HOST = 'ops1';

  it('refuses a second run while the first holds the lock, saying who and since when', () => {
    let t = Date.UTC(2025, 0, 2, 3, 4, 5);
    const s = store(':memory:', { now: () => t });
    s.acquireLock({ cluster: 'c1', runId: 'A', pid: process.pid, host: HOST });
    s.acquireLock({ cluster: 'c1', runId: 'A', pid: process.pid, host: HOST });
    t += 90_000;
    const err = catchError(() => s.acquireLock({ cluster: 'c1', runId: 'B', pid: process.pid, host: HOST }));
    expect(err).toBeInstanceOf(LockHeldError);
    const e = err as LockHeldError;
    expect(e.message).toContain(`run A (pid ${process.pid} on ${HOST})`);
    expect(e.message).toContain('since 2025-01-02T03:04:05.000Z');
    expect(e.message).toContain('last heartbeat 1m 30s ago');
    expect(e.message).toMatch(/still running/);
    expect((err as LockConflictError).conflict).toMatchObject({ cluster: 'c1', holder: { runId: 'A', pid: process.pid, host: HOST }, holderAlive: true, heartbeatAgeMs: 90_000 });
    expect(hintOf(err)).toBe(`wait for run A to finish, or stop pid ${process.pid} first; regen unlock --cluster c1 only once it is gone`);
    expect(s.getLock('c1')).toMatchObject({ runId: 'A', pid: process.pid });
    // Another cluster is independent.
    s.acquireLock({ cluster: 'c2', runId: 'B', pid: process.pid, host: HOST });
    s.releaseLock('c1', 'B');
    expect(s.getLock('c1')?.runId).toBe('A');
    s.releaseLock('c1', 'A');
    expect(s.getLock('c1')).toBeNull();
  });

  it('reports a lock whose process is gone as stale, does not take it over, and forceUnlock clears it', () => {
    const s = store();
    const gone = deadPid();
    s.acquireLock({ cluster: 'c1', runId: 'A', pid: gone, host: HOST });
    const err = catchError(() => s.acquireLock({ cluster: 'c1', runId: 'B', pid: process.pid, host: HOST }));
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as LockHeldError).message).toMatch(/stale: the process that held it is gone/);
    expect((err as LockConflictError).conflict.holderAlive).toBe(false);
    expect(hintOf(err)).toBe('regen unlock --cluster c1');
    expect(s.getLock('c1')).toMatchObject({ runId: 'A', pid: gone });
    expect(s.forceUnlock('c1')).toMatchObject({ cluster: 'c1', runId: 'A', pid: gone, host: HOST });
    expect(s.forceUnlock('c1')).toBeNull();
    s.acquireLock({ cluster: 'c1', runId: 'B', pid: process.pid, host: HOST });
    expect(s.getLock('c1')?.runId).toBe('B');
  });

  it('lets a resume of the same run take over only when its old process is gone on this host', () => {
    let t = 1_000;
    const s = store(':memory:', { now: () => t });
    // Old process alive (our parent stands in for it): refused.
    s.acquireLock({ cluster: 'c1', runId: 'A', pid: process.ppid, host: HOST });
    expect(() => s.acquireLock({ cluster: 'c1', runId: 'A', pid: process.pid, host: HOST })).toThrow(/still running/);
    s.forceUnlock('c1');

    // Old process gone on this host: the resume takes it.
    const gone = deadPid();
    s.acquireLock({ cluster: 'c1', runId: 'A', pid: gone, host: HOST });
    t = 5_000;
    s.acquireLock({ cluster: 'c1', runId: 'A', pid: process.pid, host: HOST });
    expect(s.getLock('c1')).toEqual({ cluster: 'c1', runId: 'A', pid: process.pid, host: HOST, acquiredAt: 5_000, heartbeatAt: 5_000 });
    s.forceUnlock('c1');

    // Taken on another host: this host cannot tell, so refused, with the heartbeat age.
    s.acquireLock({ cluster: 'c1', runId: 'A', pid: gone, host: 'ops2' });
    t = 65_000;
    const err = catchError(() => s.acquireLock({ cluster: 'c1', runId: 'A', pid: process.pid, host: HOST }));
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as LockHeldError).message).toMatch(/on ops2.*last heartbeat 1m ago.*another host/);
    expect((err as LockConflictError).conflict.holderAlive).toBeUndefined();
    expect(hintOf(err)).toBe('if run A is no longer running on ops2: regen unlock --cluster c1');
    expect(s.getLock('c1')?.host).toBe('ops2');
  });

  it('heartbeats while held and fails once the lock was removed', () => {
    let t = 1_000;
    const s = store(':memory:', { now: () => t });
    s.acquireLock({ cluster: 'c1', runId: 'A', pid: process.pid, host: HOST });
    t = 2_000;
    s.heartbeat('c1', 'A');
    expect(s.getLock('c1')).toMatchObject({ acquiredAt: 1_000, heartbeatAt: 2_000 });
    s.forceUnlock('c1');
    expect(() => s.heartbeat('c1', 'A')).toThrow(LockHeldError);
  });

  it('a lock held through one store is seen by another on the same file', () => {
    const path = join(dir, 'regen.db');
    const a = store(path);
    const b = store(path);
    a.acquireLock({ cluster: 'c1', runId: 'A', pid: process.pid, host: HOST });
    expect(() => b.acquireLock({ cluster: 'c1', runId: 'B', pid: process.pid, host: HOST })).toThrow(LockHeldError);
  });
});
