/**
 * Carbonio's Ansible inventory on a lab: an INI shaped like carbonio-install-ansible's (its groups, hosts in
 * several groups, `[all:vars]`), with the mesh password beside it in `<inventory>_consulpassword`. `regen plan`
 * reads it (cluster named after the file, the master directory server as the leader hint) and `regen start`
 * takes the secret from the password file and runs to the end.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, sshExec, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';

const skip = labSkip();
const REGEN = join(repoRoot(), 'dist', 'cli', 'main.js');

function regen(lab: Lab, args: string[]): { code: number | null; stdout: string; stderr: string } {
  // The read-only commands take no connection options (and regen refuses options a command does not take).
  const connect = ['status', 'runs', 'log'].includes(args[0] ?? '') ? [] : ['--ssh-config', lab.sshConfig, '--known-hosts', lab.knownHosts];
  const r = spawnSync(process.execPath, [REGEN, ...args, ...connect, '--db', join(lab.dir, 'regen.db')], {
    // The secret must come from the _consulpassword file, not from the environment.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'REGEN_MESH_PASSWORD')), NO_COLOR: '1' },
    input: '',
    encoding: 'utf8',
    timeout: 180_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The lab's nodes in carbonio-install-ansible's groups: mail1 directory + mesh server, mail2 MTA + proxy, mail3 application. */
function ansibleInventory(lab: Lab): string {
  const [m1, m2, m3] = lab.nodes.map((n) => n.name);
  return [
    '# Carbonio inventory (carbonio-install-ansible)',
    '[all:vars]',
    'ansible_user=root',
    '',
    '[masterDirectoryServers]',
    m1,
    '',
    '[replicaDirectoryServers]',
    '',
    '[serviceDiscoverServers]',
    m1,
    '',
    '[dbsConnectorServers]',
    m1,
    '',
    '[mtaServers]',
    m2,
    '',
    '[proxyServers]',
    `${m2} webmailHostname=${m2}`,
    '',
    '[applicationServers]',
    m3,
    '',
    '[filesServers]',
    m3,
    '',
  ].join('\n');
}

describe.skipIf(skip)('Ansible INI inventory with <inventory>_consulpassword on a lab (1 server, 2 agents)', () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current' });

  it('plan reads it; start takes the secret from the _consulpassword file and finishes', () => {
    const lab = h.lab;
    const ini = join(lab.dir, 'lab.ini');
    const newSecret = 'ansible-consul-password-5150';
    writeFileSync(ini, ansibleInventory(lab));
    writeFileSync(`${ini}_consulpassword`, `${newSecret}\n`, { mode: 0o600 });

    const plan = regen(lab, ['plan', '-i', ini]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('Plan for cluster lab');
    expect(plan.stdout).toContain(`leader: ${lab.leader} (${lab.nodes[0]?.ip})`);
    expect(plan.stdout).toContain('nodes: 3 (1 mesh server, 2 agents)');

    // Never taken on its own (the installer leaves the current secret there): the operator names it.
    const implicit = regen(lab, ['start', '-i', ini, '--yes']);
    expect(implicit.code, implicit.stderr).toBe(2);
    expect(implicit.stderr).toContain('no mesh secret given');
    const run = regen(lab, ['start', '-i', ini, '--yes', '--password-from-inventory']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('done: every node is an alive member');
    expect(run.stderr + run.stdout).not.toContain(newSecret);
    const status = regen(lab, ['status', '--json']);
    expect((JSON.parse(status.stdout) as { cluster: string; status: string })).toMatchObject({ cluster: 'lab', status: 'done' });
  });

  it('the leader now holds the secret from the _consulpassword file', async () => {
    const r = await sshExec(h.lab, 'mail1', 'cat /var/lib/service-discover/password');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('ansible-consul-password-5150');
  });
});
