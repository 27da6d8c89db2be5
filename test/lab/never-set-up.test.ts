/**
 * A node that was never set up again, on the lab: regen is killed inside the agent's setup dialog (nothing written,
 * the intent journaled), then the node is tampered with so that the old verification would pass: its old
 * configuration and certificates put back from the run's backup, the new credentials file in place, the new
 * gossip key added to its keyring, the service started. It is `alive` to the leader and its credentials are the
 * leader's; yet the resumed run's probe does not take it for set up (RPC through its own agent, CA, keyring): the
 * node is set up again for real and proven back.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { labSkip, withLab } from './harness.js';
import { labFault, sshExec } from './lab.js';
import { checkProof } from './support/mesh-proof.js';
import { checkMesh, labArgs, newSecretFile, regenSync } from './support/regen-cli.js';
import { runRegen } from '../../bench/lib/regen-process.js';

const skip = labSkip();

describe.skipIf(skip !== null)('a node that was never set up again (1 server + 1 agent)', { timeout: 240_000 }, () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'current', losePassword: true });

  it('alive with the leader\'s credentials, it is still not taken for set up: resume sets it up and proves it', async () => {
    const lab = h.lab;
    const agent = lab.nodes.find((n) => n.kind !== 'server');
    if (agent === undefined) throw new Error('no agent');
    await labFault(lab.dir, { kind: 'latency', node: agent.name, key: 'service-discover setup-wizard password', ms: 4000 });
    const { file, secret } = newSecretFile(lab);
    const args = ['start', '-i', lab.inventory, '--password-file', file, '--yes', '--json', ...labArgs(lab)];
    const { killed } = await runRegen(args, {
      killAt: (e) => (e.type === 'step.started' && e.step === 'follower.setup' ? 1500 : false),
    });
    expect(killed).toBe(true);
    await labFault(lab.dir, { kind: 'latency', node: agent.name, key: 'service-discover setup-wizard password', ms: 0 });

    // The tampering: the old setup back from the run's backup, the new key added to its keyring, started.
    const tamper = [
      'set -e',
      'IFS= read -r P',
      'B=$(ls -d /var/backups/regen/*/ | head -n 1)',
      'for f in etc/zextras/service-discover/config.json etc/zextras/service-discover/main.json; do cp -a "$B$f" "/$f"; done',
      'cp -a "$B"var/lib/service-discover/*.pem /var/lib/service-discover/',
      "NEW=$(printf '%s\\n' \"$P\" | gpg --batch -q --pinentry-mode loopback --passphrase-fd 0 -d /etc/zextras/service-discover/cluster-credentials.tar.gpg | tar xOf - gossip-key)",
      'OLD=$(jq -r .encrypt /etc/zextras/service-discover/main.json)',
      'mkdir -p /var/lib/service-discover/data/serf',
      `printf '["%s","%s"]' "$NEW" "$OLD" > /var/lib/service-discover/data/serf/local.keyring`,
      'chown -R service-discover:service-discover /var/lib/service-discover/data/serf',
      'systemctl start service-discover',
    ].join('\n');
    const t = await sshExec(lab, agent.name, tamper, { stdin: `${secret}\n` });
    expect(t.code, t.stderr).toBe(0);
    // What the old verification looked at: alive, of the right type, credentials checksum the leader's.
    expect((await checkMesh(lab, lab.leader, secret)).problems).toEqual([]);
    // What the proof looks at: it fails on the tampered node.
    expect((await checkProof(lab, lab.leader, secret)).problems).toEqual(expect.arrayContaining([`${agent.name}: catalog check failed`, `${agent.name}: keyring check failed`]));

    expect(regenSync(['unlock', '--cluster', lab.cluster, ...labArgs(lab).slice(4)]).code).toBe(0);
    const resumed = regenSync(['resume', ...labArgs(lab)]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const db = new Database(join(lab.dir, 'regen.db'), { readonly: true });
    const rows = db.prepare(`SELECT attempt, outcome, probe FROM journal WHERE step = 'follower.setup' AND node = ? ORDER BY id`).all(agent.name) as Array<{ attempt: number; outcome: string | null; probe: string | null }>;
    db.close();
    // The interrupted setup was settled by its probe, which did not take the tampered node for set up.
    expect(rows[0]?.probe).toBe('not-done');
    expect(rows.at(-1)?.outcome).toBe('done');
    const proof = await checkProof(lab, lab.leader, secret);
    expect(proof.problems).toEqual([]);
  });
});
