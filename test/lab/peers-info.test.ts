/**
 * Consul reads data/raft/peers.json only where data/raft/peers.info exists (agent/consul/server.go setupRaft); the
 * lab's servers write the sentinel when they start, as Consul does. A mesh of two servers whose leader lost it:
 * regen refuses at the leader check, before anything changes (exit 3), and says what to do; done as it says, the
 * run ends healthy.
 */
import { describe, expect, it } from 'vitest';
import { sshExec } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { checkMesh, labArgs, newSecretFile, nodeFingerprint, regenSync } from './support/regen-cli.js';

const skip = labSkip();
const PEERS_INFO = '/var/lib/service-discover/data/raft/peers.info';

describe.skipIf(skip !== null)('a leader without data/raft/peers.info (2 servers + 1 agent)', () => {
  const h = withLab({ nodes: 3, servers: 2, profile: 'current' });

  it('regen start refuses, nothing changed; after the restart the hint names, the run ends healthy', async () => {
    const lab = h.lab;
    const had = await sshExec(lab, lab.leader, `test -e ${PEERS_INFO} && rm -f ${PEERS_INFO} && echo removed`);
    expect(had.stdout.trim(), 'the lab server wrote peers.info at its start').toBe('removed');
    const before = await Promise.all(lab.nodes.map((n) => nodeFingerprint(lab, n.name)));

    const { file, secret } = newSecretFile(lab);
    const r = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab)]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toContain(PEERS_INFO);
    expect(r.stderr).toContain('nothing was changed');
    expect(r.stderr).toContain('restart service-discover');
    expect(await Promise.all(lab.nodes.map((n) => nodeFingerprint(lab, n.name)))).toEqual(before);

    const restart = await sshExec(lab, lab.leader, `systemctl restart service-discover && test -e ${PEERS_INFO} && echo back`);
    expect(restart.stdout.trim(), restart.stderr).toBe('back');
    const again = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab)]);
    expect(again.code, again.stderr).toBe(0);
    expect((await checkMesh(lab, lab.leader, secret)).problems).toEqual([]);
  }, 300_000);
});
