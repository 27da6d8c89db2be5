/**
 * Bad input on the lab, each case with its message, its exit code, and the nodes compared before and after: what
 * preflight could have protected is left exactly as it was.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { findNode, labFault, nodeExec, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { ClusterStateStore } from '../sim/state-store.js';
import { connectArgs, resumeArgs, runRegen, startArgs, writeSecretFile } from '../../bench/lib/regen-process.js';
import { checkHealth, labState, nodeState, snapshotFiles } from '../../bench/lib/health.js';

const skip = labSkip();
const EXIT = { usage: 2, preflight: 3, stepFailed: 4, needsOperator: 5, store: 8 };

/** Replaces `consul acl bootstrap` on a node with a script (the rest of consul still works); returns the undo. */
function fakeBootstrap(lab: Lab, node: string, script: string): () => void {
  const file = join(findNode(lab, node).root, 'bin', 'consul');
  const original = fs.readFileSync(file, 'utf8');
  const real = original.split('\n').find((l) => l.startsWith('exec ')) ?? '';
  fs.writeFileSync(file, `#!/bin/sh\nif [ "$1" = acl ] && [ "$2" = bootstrap ]; then\n${script}\nfi\n${real}\n`, { mode: 0o755 });
  return () => fs.writeFileSync(file, original, { mode: 0o755 });
}

describe.skipIf(skip !== null)('bad input changes no node that preflight could protect', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current', losePassword: true });

  it('a malformed inventory: exit 2, the file and the problem named', async () => {
    const lab = h.lab;
    const before = await labState(lab);
    const bad = join(lab.dir, 'bad-inventory.yaml');
    fs.writeFileSync(bad, 'cluster: x\nnodes:\n  - name: a.example\n    ssh: { host: 1.2.3.4\n');
    const { file } = writeSecretFile(lab);
    const r = await runRegen(['start', '-i', bad, '--password-file', file, '--yes', ...connectArgs(lab, join(lab.dir, 'bad.db'))]);
    expect(r.code, r.stderr).toBe(EXIT.usage);
    expect(r.stderr).toContain('bad-inventory.yaml');
    const noNodes = join(lab.dir, 'no-nodes.yaml');
    fs.writeFileSync(noNodes, 'cluster: x\nnodes: []\n');
    const r2 = await runRegen(['start', '-i', noNodes, '--password-file', file, '--yes', ...connectArgs(lab, join(lab.dir, 'bad.db'))]);
    expect(r2.code, r2.stderr).toBe(EXIT.usage);
    expect(await labState(lab)).toEqual(before);
  });

  it('--leader naming a node the inventory does not have: exit 2, the known nodes listed', async () => {
    const lab = h.lab;
    const before = await labState(lab);
    const { file } = writeSecretFile(lab);
    const r = await runRegen(startArgs(lab, file, ['--leader', 'nosuch.lab.example'], join(lab.dir, 'leader.db')));
    expect(r.code, r.stderr).toBe(EXIT.usage);
    expect(r.stderr).toContain('--leader nosuch.lab.example is not a node of the inventory');
    expect(r.stderr).toContain(lab.leader);
    expect(await labState(lab)).toEqual(before);
  });

  it('an unknown and a changed host key: exit 3 before anything changed, the node and the key named', async () => {
    const lab = h.lab;
    const before = await labState(lab);
    const { file } = writeSecretFile(lab);
    const victim = lab.nodes[2];
    if (!victim) throw new Error('no third node');
    const lines = fs.readFileSync(lab.knownHosts, 'utf8').split('\n').filter((l) => l.trim());
    const unknown = join(lab.dir, 'kh-unknown');
    fs.writeFileSync(unknown, `${lines.filter((l) => !l.includes(victim.ip)).join('\n')}\n`);
    const r = await runRegen(['start', '-i', lab.inventory, '--password-file', file, '--yes', '--ssh-config', lab.sshConfig, '--known-hosts', unknown, '--db', join(lab.dir, 'kh.db')]);
    expect(r.code, r.stderr).toBe(EXIT.preflight);
    expect(r.stderr).toMatch(new RegExp(`${victim.name}.*host key .* is not in`));
    expect(r.stderr).toMatch(/nothing was changed/);

    const keyFile = join(lab.dir, 'other-key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile]);
    const otherKey = fs.readFileSync(`${keyFile}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
    const changed = join(lab.dir, 'kh-changed');
    fs.writeFileSync(changed, `${lines.map((l) => (l.includes(victim.ip) ? `${l.split(' ')[0]} ${otherKey}` : l)).join('\n')}\n`);
    const r2 = await runRegen(['start', '-i', lab.inventory, '--password-file', file, '--yes', '--ssh-config', lab.sshConfig, '--known-hosts', changed, '--db', join(lab.dir, 'kh.db')]);
    expect(r2.code, r2.stderr).toBe(EXIT.preflight);
    expect(r2.stderr).toContain(`HOST KEY CHANGED for ${victim.name}`);
    expect(await labState(lab)).toEqual(before);
  });

  it('a corrupted database file and a database from a newer version: exit 8, no node contacted', async () => {
    const lab = h.lab;
    const before = await labState(lab);
    const { file } = writeSecretFile(lab);
    const corrupt = join(lab.dir, 'corrupt.db');
    fs.writeFileSync(corrupt, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(4096, 0x5a)]));
    for (const args of [startArgs(lab, file, [], corrupt), resumeArgs(lab, file, [], corrupt), ['status', '--db', corrupt]]) {
      const r = await runRegen(args);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(EXIT.store);
      expect(r.stderr).toContain(corrupt);
    }
    const newer = join(lab.dir, 'newer.db');
    const db = new Database(newer);
    db.pragma('user_version = 999');
    db.close();
    const r = await runRegen(startArgs(lab, file, [], newer));
    expect(r.code, r.stderr).toBe(EXIT.store);
    expect(r.stderr).toMatch(/newer/);
    expect(await labState(lab)).toEqual(before);
  });

  it('unparseable `consul acl bootstrap` output: stops for the operator before the leader is touched', async () => {
    const lab = h.lab;
    const undo = fakeBootstrap(lab, lab.leader, "echo 'Error: a consul that answers in riddles ###'; exit 1");
    try {
      const before = await labState(lab);
      const { file } = writeSecretFile(lab);
      const r = await runRegen(startArgs(lab, file, [], join(lab.dir, 'riddle.db')));
      expect(r.code, r.stderr).toBe(EXIT.needsOperator);
      expect(r.stderr).toContain('riddles');
      expect(r.stderr).toMatch(/regen abort|regen resume/);
      // Backups were taken (they come first); nothing else changed.
      expect(await labState(lab)).toEqual(before);
    } finally {
      undo();
    }
  });

  it('a bootstrap that unexpectedly succeeds: the token is kept on the node only and the run stops safely', async () => {
    const lab = h.lab;
    const token = 'a1b2c3d4-0000-4000-8000-5ec7e7700000';
    const undo = fakeBootstrap(
      lab,
      lab.leader,
      `printf '{"AccessorID":"11111111-2222-4333-8444-555555555555","SecretID":"${token}","Description":"Bootstrap Token (Global Management)","Policies":[{"ID":"00000000-0000-0000-0000-000000000001","Name":"global-management"}],"Local":false,"CreateIndex":12,"ModifyIndex":12}\\n'; exit 0`,
    );
    try {
      const before = await labState(lab);
      const { file } = writeSecretFile(lab);
      const db = join(lab.dir, 'boot.db');
      const r = await runRegen([...startArgs(lab, file, [], db), '--json']);
      expect(r.code, r.stderr).toBe(EXIT.needsOperator);
      expect(r.stderr).toMatch(/never been bootstrapped/);
      const saved = /saved on the node only, in (\S+)/.exec(r.stderr)?.[1];
      expect(saved).toBeDefined();
      const onNode = await nodeExec(lab, lab.leader, ['cat', saved ?? '/nonexistent']);
      expect(onNode.stdout).toContain(token);
      const mode = await nodeExec(lab, lab.leader, ['stat', '-c', '%a %U', saved ?? '/nonexistent']);
      expect(mode.stdout.trim()).toBe('600 root');
      expect(r.stdout + r.stderr).not.toContain(token);
      const log = await runRegen(['log', '--json', '--db', db]);
      expect(log.stdout).not.toContain(token);
      for (const f of [db, `${db}-wal`]) if (fs.existsSync(f)) expect(fs.readFileSync(f).includes(token)).toBe(false);
      await nodeExec(lab, lab.leader, ['rm', '-f', saved ?? '/nonexistent']);
      expect(await labState(lab)).toEqual(before);
    } finally {
      undo();
    }
  });

  it("a node's disk full during backup: the run stops at the backup, naming the node, and nothing was removed", async () => {
    const lab = h.lab;
    const victim = lab.nodes[1];
    if (!victim) throw new Error('no second node');
    const mount = await nodeExec(lab, victim.name, ['sh', '-c', 'mount -t tmpfs -o size=12k tmpfs /var/backups && dd if=/dev/zero of=/var/backups/fill bs=1k count=12 2>/dev/null; df --output=avail /var/backups | tail -1']);
    expect(mount.stdout.trim()).toBe('0');
    try {
      const before = await labState(lab);
      const { file } = writeSecretFile(lab);
      const db = join(lab.dir, 'full.db');
      const r = await runRegen(startArgs(lab, file, [], db));
      expect(r.code, r.stderr).toBe(EXIT.stepFailed);
      expect(r.stderr).toContain(`backup on ${victim.name} failed`);
      expect(r.stderr).toMatch(/free space under \/var\/backups/);
      expect(await labState(lab)).toEqual(before);
      const st = await runRegen(['status', '--json', '--db', db]);
      expect((JSON.parse(st.stdout) as { state: string; status: string }).status).toBe('failed');
      await runRegen(['abort', '--db', db]);
    } finally {
      await nodeExec(lab, victim.name, ['umount', '/var/backups']);
    }
  });
});

describe.skipIf(skip !== null)('mistakes after the confirmation', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current', losePassword: true });

  it('a wrong mesh secret on resume: stops resumable with no follower changed, resumes with the right one', async () => {
    const lab = h.lab;
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab);
    const wrong = writeSecretFile(lab, 'wrong-secret', 'not-the-secret-the-leader-got');
    const db = join(lab.dir, 'regen.db');
    const killed = await runRegen([...startArgs(lab, file, [], db), '--json'], {
      killAt: (e) => (e.type === 'step.started' && e.step === 'follower.copy-credentials' ? 0 : false),
    });
    expect(killed.killed).toBe(true);
    const followers = lab.nodes.filter((n) => n.name !== lab.leader);
    const at = await Promise.all(followers.map((n) => nodeState(lab, n.name)));
    const r = await runRegen(resumeArgs(lab, wrong.file, [], db));
    expect(r.code, r.stderr).toBe(EXIT.stepFailed);
    expect(r.stderr).toMatch(/does not decrypt the leader's new credentials/);
    expect(r.stderr).toMatch(/no follower was changed/);
    expect(r.stderr).toContain('regen resume');
    expect(await Promise.all(followers.map((n) => nodeState(lab, n.name)))).toEqual(at);
    const ok = await runRegen(resumeArgs(lab, file, [], db));
    expect(ok.code, ok.stderr).toBe(0);
    expect((await checkHealth(lab, db, secret, before)).problems).toEqual([]);
  });

  it('the reset index changed after regen read it: the leader setup is retried with the index consul names', async () => {
    const lab = h.lab;
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab, 'secret-2');
    const db = join(lab.dir, 'reset.db');
    await labFault(lab.dir, { kind: 'latency', node: lab.leader, key: 'systemctl stop', ms: 1500 });
    let bumped = false;
    const r = await runRegen([...startArgs(lab, file, [], db), '--json'], {
      killAt: (e) => {
        if (!bumped && e.type === 'step.started' && e.step === 'leader.stop') {
          bumped = true;
          // Someone else resets the ACLs while the leader stops: the index regen wrote is stale.
          new ClusterStateStore(join(lab.dir, 'cluster')).update(
            () => {
              throw new Error('no mesh state');
            },
            (s) => {
              s.acl.resetIndex += 5;
            },
          );
        }
        return false;
      },
    });
    await labFault(lab.dir, { kind: 'latency', node: lab.leader, key: 'systemctl stop', ms: 0 });
    expect(bumped).toBe(true);
    expect(r.code, r.stderr).toBe(0);
    const rounds = r.events.filter((e) => e.type === 'step.finished' && e.step === 'leader.setup').map((e) => e['outcome']);
    expect(rounds).toEqual(['failed', 'done']);
    expect((await checkHealth(lab, db, secret, before)).problems).toEqual([]);
  });
});
