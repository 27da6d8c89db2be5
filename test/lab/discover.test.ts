/**
 * `regen discover` against a lab's directory node over real SSH: it lists every Carbonio server (`carbonio prov
 * gas`) and the mesh servers (`gas service-discover`), writes an inventory with each node's address and kind, and
 * that inventory is good for `regen plan` as it is.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';

const skip = labSkip();
const REGEN = join(repoRoot(), 'dist', 'cli', 'main.js');

function regen(lab: Lab, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [REGEN, ...args, '--ssh-config', lab.sshConfig, '--known-hosts', lab.knownHosts], {
    env: { ...process.env, NO_COLOR: '1' },
    input: '',
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(skip)('regen discover on a lab (2 servers, 2 agents)', () => {
  const h = withLab({ nodes: 4, servers: 2, profile: 'current' });

  it('writes an inventory with every node, its address and kind; regen plan takes it', () => {
    const lab = h.lab;
    const out = join(lab.dir, 'discovered.yaml');
    const d = regen(lab, ['discover', '--directory', lab.leader, '--cluster', 'x', '-o', out]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toContain(`wrote ${out} (4 nodes); review it, then: regen plan -i ${out}`);
    const text = readFileSync(out, 'utf8');
    expect(text).toMatch(/^# Discovered on mail1\.lab\.example: 4 Carbonio server\(s\), 2 mesh server\(s\)\./);
    const inv = parse(text) as { cluster: string; directoryServer: string; nodes: { name: string; address: string; kind: string }[] };
    expect(inv.cluster).toBe('x');
    expect(inv.directoryServer).toBe(lab.leader);
    expect(inv.nodes).toEqual(lab.nodes.map((n) => ({ name: n.name, address: n.ip, kind: n.kind })));

    const p = regen(lab, ['plan', '-i', out]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toContain('Plan for cluster x');
    expect(p.stdout).toContain(`leader: ${lab.leader} (${lab.nodes[0]?.ip})`);
    expect(p.stdout).toContain('nodes: 4 (2 mesh servers, 2 agents)');
  });

  it('a host that is not a Carbonio node, or not reachable, is named with what to do', () => {
    const lab = h.lab;
    const bad = regen(lab, ['discover', '--directory', 'no-such-host.invalid', '--cluster', 'x', '--connect-timeout', '3']);
    expect(bad.code).toBe(10);
    expect(bad.stderr).toMatch(/no-such-host\.invalid/);
    expect(bad.stderr).toMatch(/^next: /m);
  });
});
