/**
 * The lab's faults on a running mesh, observed the way regen or an operator would: over ssh, with the mesh's own
 * commands and API.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { labFault, labStatus, loadLab, sshExec } from './lab.js';
import type { Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { sshTerminal } from './support/terminal.js';

const skip = labSkip();

const CREDENTIALS = '/etc/zextras/service-discover/cluster-credentials.tar.gpg';

/** `consul members` on `node` with the bootstrap token taken from the credentials: node name → status. */
async function members(lab: Lab, node: string): Promise<Map<string, string>> {
  const secret = fs.readFileSync(lab.secretFile, 'utf8');
  const r = await sshExec(
    lab,
    node,
    `export CONSUL_HTTP_TOKEN=$(gpg --batch --pinentry-mode loopback --passphrase-fd 0 -qdo - ${CREDENTIALS} | tar xOf - consul-acl-secret.json | jq -r .SecretID); consul members`,
    { stdin: `${secret}\n` },
  );
  expect(r.code, r.stderr).toBe(0);
  const byIp = new Map<string, string>();
  for (const line of r.stdout.trim().split('\n').slice(1)) {
    const [, address = '', status = ''] = line.trim().split(/\s+/);
    const ip = address.split(':')[0] ?? '';
    const n = lab.nodes.find((x) => x.ip === ip);
    if (n) byIp.set(n.short, status);
  }
  return byIp;
}

/** The seed's wipe on a follower, then its setup with `bind`. */
async function rejoin(lab: Lab, node: string, bind: string): Promise<{ code: number; out: string }> {
  const secret = fs.readFileSync(lab.secretFile, 'utf8');
  const wipe = await sshExec(
    lab,
    node,
    'systemctl stop service-discover && rm -f /etc/zextras/service-discover/config.json /etc/zextras/service-discover/main.json /var/lib/service-discover/*.pem',
  );
  expect(wipe.code, wipe.stderr).toBe(0);
  // At a terminal (`ssh -tt`), as setup needs one; the lab's own secret on the command line, as the seeds type it.
  const r = await sshTerminal(lab, node, `service-discover setup ${bind} --password='${secret.trim()}'`);
  return { code: r.code ?? -1, out: r.out.trim() };
}

describe.skipIf(skip)('lab faults on a mesh (1 server, 2 agents)', { timeout: 120_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current' });

  it('starts with every member alive and every agent running', async () => {
    expect([...(await members(h.lab, 'mail1')).values()]).toEqual(['alive', 'alive', 'alive']);
    expect(labStatus(h.dir).nodes.map((n) => n.agent)).toEqual([true, true, true]);
  });

  it('crash takes the agent down with the node; restore brings both back', async () => {
    await labFault(h.dir, { kind: 'crash', node: 'mail2' });
    expect(labStatus(h.dir).nodes[1]).toMatchObject({ sshd: false, agent: false, processes: 0 });
    expect((await members(h.lab, 'mail1')).get('mail2')).not.toBe('alive');
    await labFault(h.dir, { kind: 'restore', node: 'mail2' });
    expect(labStatus(h.dir).nodes[1]).toMatchObject({ sshd: true, agent: true });
    expect((await members(loadLab(h.dir), 'mail1')).get('mail2')).toBe('alive');
  });

  it('fail-next-setup fails exactly one setup, with the message given', async () => {
    await labFault(h.dir, { kind: 'fail-next-setup', node: 'mail3', message: 'injected: disk full' });
    const failed = await rejoin(h.lab, 'mail3', h.lab.nodes[2]?.ip ?? '');
    expect(failed.code).not.toBe(0);
    expect(failed.out).toContain('injected: disk full');
    const ok = await rejoin(h.lab, 'mail3', h.lab.nodes[2]?.ip ?? '');
    expect(ok).toEqual({ code: 0, out: '' });
    expect((await members(h.lab, 'mail1')).get('mail3')).toBe('alive');
  });

  it('hostname-loopback makes the seed\'s `setup $(hostname -i)` fail; the node address works', async () => {
    await labFault(h.dir, { kind: 'hostname-loopback', node: 'mail2', on: true });
    try {
      const bad = await rejoin(h.lab, 'mail2', '$(hostname -i)');
      expect(bad.code).not.toBe(0);
      expect(bad.out).toContain('invalid binding address selected');
      const good = await rejoin(h.lab, 'mail2', h.lab.nodes[1]?.ip ?? '');
      expect(good).toEqual({ code: 0, out: '' });
    } finally {
      await labFault(h.dir, { kind: 'hostname-loopback', node: 'mail2', on: false });
    }
    expect((await members(h.lab, 'mail1')).get('mail2')).toBe('alive');
  });
});

describe.skipIf(skip)('lab leadership (3 servers)', { timeout: 120_000 }, () => {
  const h = withLab({ nodes: 3, servers: 3, profile: 'current' });

  it('moves the leader where `leader NODE` says', async () => {
    const ask = async (node: string): Promise<string> => (await sshExec(h.lab, node, 'wget -qO- http://127.0.0.1:8500/v1/status/leader')).stdout.trim();
    expect(await ask('mail3')).toBe(`"${h.lab.nodes[0]?.ip}:8300"`);
    await labFault(h.dir, { kind: 'leader', node: 'mail2' });
    for (const n of ['mail1', 'mail2', 'mail3']) expect(await ask(n)).toBe(`"${h.lab.nodes[1]?.ip}:8300"`);
    expect(labStatus(h.dir).leader).toBe('mail2.lab.example');
  });
});
