/**
 * regen end to end on the lab, as an operator runs it: the real command line, real sshd, ssh2, gpg, tar, sudo.
 * Every outcome is checked independently of regen over ssh (members with the new token, credentials checksums).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { labFault } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { checkProof } from './support/mesh-proof.js';
import { checkMesh, labArgs, newSecretFile, nodeFingerprint, regenKilledAt, regenSync } from './support/regen-cli.js';

const skip = labSkip();

function startArgs(lab: { inventory: string }, secretFile: string, extra: string[] = []): string[] {
  return ['start', '-i', lab.inventory, '--password-file', secretFile, '--yes', ...extra];
}

describe.skipIf(skip !== null)('regen start recovers the lab', () => {
  for (const topo of [
    { name: 'a single server', nodes: 1, servers: 1, profile: 'current' as const, parallel: 4 },
    { name: '1 mesh server + 2 agents', nodes: 3, servers: 1, profile: 'current' as const, parallel: 4 },
    { name: 'a 3-node legacy-profile cluster', nodes: 3, servers: 1, profile: 'legacy' as const, parallel: 4 },
    { name: '5 nodes, followers 2 at a time', nodes: 5, servers: 1, profile: 'current' as const, parallel: 2 },
    { name: '3 mesh servers + 2 agents (raft recovery on the leader)', nodes: 5, servers: 3, profile: 'current' as const, parallel: 2 },
    { name: '5 mesh servers + 5 agents', nodes: 10, servers: 5, profile: 'current' as const, parallel: 4 },
  ]) {
    describe(topo.name, () => {
      const h = withLab({ nodes: topo.nodes, servers: topo.servers, profile: topo.profile, losePassword: true });
      it('ends with every node an alive member of the right type and the leader\'s credentials everywhere', async () => {
        const lab = h.lab;
        const { file, secret } = newSecretFile(lab);
        const r = regenSync([...startArgs(lab, file, ['--parallel', String(topo.parallel)]), ...labArgs(lab)]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toMatch(/done: every node is an alive member/);
        const check = await checkMesh(lab, lab.leader, secret);
        expect(check.problems).toEqual([]);
        expect(check.members).toHaveLength(topo.nodes);
        if (topo.servers > 1) {
          // Checked independently: one leader, every server a voter, every node proven back.
          const proof = await checkProof(lab, lab.leader, secret);
          expect(proof).toEqual({ leaders: 1, voters: topo.servers, problems: [] });
        }
        // The new secret is what the leader keeps; the old one no longer opens the credentials.
        const old = await checkMesh(lab, lab.leader, h.secret);
        expect(old.problems.length).toBeGreaterThan(0);
        // Nothing secret on the terminal.
        expect(r.stdout + r.stderr).not.toContain(secret);
        const st = regenSync(['status', ...labArgs(lab).slice(4)]);
        expect(st.code).toBe(0);
        expect(st.stdout).toMatch(/done/);
        for (const n of lab.nodes) expect(st.stdout).toContain(n.name);
      }, 180_000);
    });
  }
});

describe.skipIf(skip !== null)('regen killed with SIGKILL while followers are set up, then resumed', () => {
  const h = withLab({ nodes: 4, servers: 1, profile: 'current', losePassword: true });
  it('resume completes and status shows done with the per-node view', async () => {
    const lab = h.lab;
    // Slow follower setups so the kill lands while they run on the nodes.
    for (const n of lab.nodes.filter((x) => x.kind === 'agent')) await labFault(lab.dir, { kind: 'latency', node: n.name, key: 'service-discover setup', ms: 1500 });
    const { file, secret } = newSecretFile(lab);
    const killed = await regenKilledAt([...startArgs(lab, file, ['--parallel', '2']), ...labArgs(lab)], (e) => e.type === 'step.started' && e.step === 'follower.setup');
    expect(killed.killed).toBe(true);
    expect(killed.signal).toBe('SIGKILL');
    // The journal holds intents without outcomes: the interrupted setups.
    const db = new Database(join(lab.dir, 'regen.db'), { readonly: true });
    const open = db.prepare('SELECT id, step, node FROM journal WHERE outcome IS NULL').all() as Array<{ id: number; step: string; node: string }>;
    db.close();
    expect(open.length).toBeGreaterThan(0);
    const before = regenSync(['status', ...labArgs(lab).slice(4)]);
    expect(before.stdout).toMatch(/regen unlock --cluster|regen resume/);

    const unlock = regenSync(['unlock', '--cluster', lab.cluster, ...labArgs(lab).slice(4)]);
    expect(unlock.code, unlock.stderr).toBe(0);
    // The secret is read back from the leader: the resume is given none.
    const resumed = regenSync(['resume', ...labArgs(lab)]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const check = await checkMesh(lab, lab.leader, secret);
    expect(check.problems).toEqual([]);
    const st = regenSync(['status', '--json', ...labArgs(lab).slice(4)]);
    const view = JSON.parse(st.stdout) as { status: string; nodes: Array<{ name: string; cells: Record<string, string> }> };
    expect(view.status).toBe('done');
    expect(view.nodes).toHaveLength(lab.nodes.length);
    for (const n of view.nodes.filter((x) => x.name !== lab.leader)) expect(n.cells['setup']).toBe('done');
    // Every step the kill interrupted was settled by its probe on resume, never blindly re-run.
    const db2 = new Database(join(lab.dir, 'regen.db'), { readonly: true });
    for (const o of open) {
      const row = db2.prepare('SELECT outcome, probe FROM journal WHERE id = ?').get(o.id) as { outcome: string | null; probe: string | null };
      expect(row.probe, `${o.step} on ${o.node}`).not.toBeNull();
      expect(row.outcome, `${o.step} on ${o.node}`).not.toBeNull();
    }
    db2.close();
  }, 180_000);
});

describe.skipIf(skip !== null)('a follower whose sshd is down at start', () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current' });
  it('preflight fails before anything on any node changed, naming the node', async () => {
    const lab = h.lab;
    const follower = lab.nodes.find((n) => n.kind === 'agent');
    if (!follower) throw new Error('no agent in the lab');
    const before = await Promise.all(lab.nodes.filter((n) => n !== follower).map((n) => nodeFingerprint(lab, n.name)));
    await labFault(lab.dir, { kind: 'sshd-stop', node: follower.name });
    try {
      const { file } = newSecretFile(lab);
      const r = regenSync([...startArgs(lab, file), ...labArgs(lab), '--connect-timeout', '3']);
      // An unreachable node: 10, as the README's table and regen plan say.
      expect(r.code).toBe(10);
      expect(r.stderr).toContain(follower.name);
      expect(r.stderr).toMatch(/nothing was changed/);
      const after = await Promise.all(lab.nodes.filter((n) => n !== follower).map((n) => nodeFingerprint(lab, n.name)));
      expect(after).toEqual(before);
    } finally {
      await labFault(lab.dir, { kind: 'sshd-start', node: follower.name });
    }
    const snapshot = await nodeFingerprint(lab, follower.name);
    expect(snapshot).toMatch(/cluster-credentials\.tar\.gpg/);
    expect(snapshot).not.toMatch(/backups\/regen/);
  });
});
