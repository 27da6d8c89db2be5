/**
 * The secret the operator meant, a database regen did not create, and host keys pinned where OpenSSH pins them, on
 * a lab: each refusal with its exit code, and the nodes compared before and after.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { labSkip, withLab } from './harness.js';
import { connectArgs, runRegen, writeSecretFile } from '../../bench/lib/regen-process.js';
import { labState } from '../../bench/lib/health.js';
import { migrate } from '../../store/migrate.js';
import { migrations } from '../../store/migrations/index.js';

const skip = labSkip();
const EXIT = { usage: 2, preflight: 3, store: 8 };

describe.skipIf(skip !== null)('security refusals on a lab (1 server, 1 agent)', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'current' });

  it('the current secret given as the new one: exit 2, no node changed', async () => {
    const lab = h.lab;
    const before = await labState(lab);
    const current = writeSecretFile(lab, 'current-secret', h.secret);
    const r = await runRegen(['start', '-i', lab.inventory, '--password-file', current.file, '--yes', ...connectArgs(lab, join(lab.dir, 'reuse.db'))]);
    expect(r.code, r.stderr).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/opens the current credentials on .*--reuse-secret/s);
    expect(r.stderr).not.toContain(h.secret);
    expect(await labState(lab)).toEqual(before);
  });

  it('conflicting and weak secrets: exit 2 before any node is contacted', async () => {
    const lab = h.lab;
    const both = await runRegen(['start', '-i', lab.inventory, '--generate-password', '--yes', ...connectArgs(lab, join(lab.dir, 'conflict.db'))], {
      env: { REGEN_MESH_PASSWORD: 'left-over-from-yesterday-42' },
    });
    expect(both.code, both.stderr).toBe(EXIT.usage);
    expect(both.stderr).toMatch(/REGEN_MESH_PASSWORD and --generate-password/);
    const weak = writeSecretFile(lab, 'weak-secret', 'changeme');
    const w = await runRegen(['start', '-i', lab.inventory, '--password-file', weak.file, '--yes', ...connectArgs(lab, join(lab.dir, 'weak.db'))]);
    expect(w.code, w.stderr).toBe(EXIT.usage);
    expect(w.stderr).toMatch(/weak: it is shorter than 12 characters/);
    expect(w.stderr).toMatch(/--weak-secret/);
  });

  it('a key pinned only in a global known_hosts file: a different key is refused even with --accept-new-host-keys', async () => {
    const lab = h.lab;
    const before = await labState(lab);
    const keyFile = join(lab.dir, 'impostor-key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile]);
    const impostor = fs.readFileSync(`${keyFile}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
    const pinned = fs.readFileSync(lab.knownHosts, 'utf8').split('\n').filter((l) => l.trim()).map((l) => `${l.split(' ')[0]} ${impostor}`);
    const global = join(lab.dir, 'global_known_hosts');
    fs.writeFileSync(global, `${pinned.join('\n')}\n`);
    const config = join(lab.dir, 'ssh_config_global');
    // The lab's own config names its known_hosts files; this one names only the global file.
    const own = fs.readFileSync(lab.sshConfig, 'utf8').split('\n').filter((l) => !/^\s*(User|Global)KnownHostsFile\b/i.test(l));
    fs.writeFileSync(config, `${own.join('\n')}\nHost *\n  GlobalKnownHostsFile ${global}\n`);
    const empty = join(lab.dir, 'known_hosts_empty');
    fs.writeFileSync(empty, '');
    const secret = writeSecretFile(lab);
    const r = await runRegen(['start', '-i', lab.inventory, '--password-file', secret.file, '--yes', '--accept-new-host-keys', '--ssh-config', config, '--known-hosts', empty, '--db', join(lab.dir, 'global.db')]);
    expect(r.code, r.stderr).toBe(EXIT.preflight);
    expect(r.stderr).toContain('HOST KEY CHANGED');
    expect(fs.readFileSync(empty, 'utf8')).toBe('');
    expect(await labState(lab)).toEqual(before);
  });

  it('a foreign database with a trigger: exit 8, the file untouched, no node contacted', async () => {
    const lab = h.lab;
    const path = join(lab.dir, 'foreign.db');
    const db = new Database(path);
    migrate(db, migrations, 1);
    db.exec("CREATE TRIGGER steer AFTER INSERT ON nodes BEGIN UPDATE nodes SET ssh_host = 'attacker.example' WHERE rowid = new.rowid; END");
    db.close();
    fs.chmodSync(path, 0o600);
    const bytes = fs.readFileSync(path);
    const secret = writeSecretFile(lab);
    const r = await runRegen(['start', '-i', lab.inventory, '--password-file', secret.file, '--yes', ...connectArgs(lab, path)]);
    expect(r.code, r.stderr).toBe(EXIT.store);
    expect(r.stderr).toMatch(/not created by regen/);
    expect(fs.readFileSync(path).equals(bytes)).toBe(true);
  });
});
