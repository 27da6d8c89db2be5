/**
 * `regen plan` on a 1+2 lab, through the real command line over real SSH: it prints the plan (snapshot, with the
 * lab's addresses and names normalised), warns about `hostname -i` answering loopback, still prints the plan when
 * a node's sshd is down and names that node, and changes nothing: every node's files and service state are the
 * same before and after.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { labFault, nodeExec, repoRoot, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';

const skip = labSkip();
const REGEN = join(repoRoot(), 'dist', 'cli', 'main.js');

function regen(lab: Lab, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [REGEN, ...args, '--ssh-config', lab.sshConfig, '--known-hosts', lab.knownHosts, '--connect-timeout', '5'], {
    env: { ...process.env, NO_COLOR: '1' },
    input: '',
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** sha256 of every file regen could touch, plus the unit's state: what "changes nothing" means on a node. */
async function fingerprint(lab: Lab, node: string): Promise<string> {
  const dirs = '/etc/zextras /var/lib/service-discover /var/backups /opt/zextras/conf';
  const r = await nodeExec(lab, node, ['sh', '-c', `find ${dirs} -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum; echo "service: $(systemctl is-active service-discover)"`]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

async function fingerprints(lab: Lab): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of lab.nodes) out[n.short] = await fingerprint(lab, n.short);
  return out;
}

/** Addresses and the lab's generated names differ per lab; the rest of the plan must not. */
function normalise(lab: Lab, text: string): string {
  let t = text.replaceAll(lab.cluster, '<cluster>');
  for (const n of lab.nodes) t = t.replaceAll(n.ip, `<ip of ${n.short}>`);
  return t;
}

describe.skipIf(skip)('regen plan on a lab (1 server, 2 agents)', () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current' });

  it('prints the plan, warns, names an unreachable node, and changes nothing anywhere', async () => {
    const lab = h.lab;
    const before = await fingerprints(lab);
    expect(before['mail1']).toContain('cluster-credentials.tar.gpg');
    expect(before['mail1']).toContain('service: active');

    const plain = regen(lab, ['plan', '-i', lab.inventory]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(normalise(lab, plain.stdout)).toMatchSnapshot();
    expect(plain.stdout).not.toContain(h.secret);

    const verbose = regen(lab, ['plan', '-i', lab.inventory, '--verbose']);
    expect(verbose.code, verbose.stderr).toBe(0);
    expect(verbose.stdout).toContain('exec service-discover setup-wizard --first-instance');
    expect(verbose.stdout).toContain(`on a terminal: ${lab.nodes[0]?.ip}, then the mesh secret (one line), twice`);
    expect(verbose.stdout).not.toContain('--password=');
    expect(verbose.stdout).not.toContain(h.secret);

    const json = regen(lab, ['start', '--dry-run', '-i', lab.inventory, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const lines = json.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const plan = (JSON.parse(lines[0] ?? '') as { type: string; plan: { leader: string; nodes: { name: string; steps: { step: string; scripts: unknown[] }[] }[] } });
    expect(plan.type).toBe('plan');
    expect(plan.plan.leader).toBe('mail1.lab.example');
    expect(plan.plan.nodes.map((n) => n.name)).toEqual(['mail1.lab.example', 'mail2.lab.example', 'mail3.lab.example']);
    expect(plan.plan.nodes[0]?.steps.every((s) => s.scripts.length > 0)).toBe(true);

    await labFault(h.dir, { kind: 'hostname-loopback', node: 'mail2', on: true });
    try {
      const warned = regen(lab, ['plan', '-i', lab.inventory]);
      expect(warned.code, warned.stderr).toBe(0);
      expect(warned.stdout).toMatch(/warnings:\n {2}! mail2\.lab\.example: `hostname -i` answers 127\.0\.1\.1 \(loopback\).*regen binds to /);
      expect(warned.stdout).toContain('mail2.lab.example, mail3.lab.example (2 agents, current, service-discover 0.7.2 (setup-wizard)): backup → copy → stop → wipe → setup → verify');
    } finally {
      await labFault(h.dir, { kind: 'hostname-loopback', node: 'mail2', on: false });
    }

    await labFault(h.dir, { kind: 'sshd-stop', node: 'mail3' });
    try {
      const down = regen(lab, ['plan', '-i', lab.inventory]);
      expect(down.code).toBe(10);
      expect(down.stdout).toContain(`mail1.lab.example (leader, mesh server, current, service-discover 0.7.2 (setup-wizard), bind ${lab.nodes[0]?.ip}): backup → `);
      expect(down.stdout).toContain(`mail2.lab.example (agent, current, service-discover 0.7.2 (setup-wizard), bind ${lab.nodes[1]?.ip}): backup → `);
      expect(down.stdout).toMatch(/problems \(regen start refuses until they are fixed\):\n {2}✗ mail3\.lab\.example: cannot reach .*\(not planned\)\n {4}next: .*sshd/);
      expect(down.stderr).toContain('the plan found 1 problem(s)');
    } finally {
      await labFault(h.dir, { kind: 'sshd-start', node: 'mail3' });
    }

    expect(await fingerprints(lab)).toEqual(before);
  });
});
