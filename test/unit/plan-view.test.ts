/**
 * The plan as printed by `regen plan` / `start --dry-run`, made against the fake cluster through the same machine
 * as a run: compact and verbose text, JSON with every step's exact scripts, and the problems that do not stop the
 * plan (an unreachable node, a node missing a tool) while the other nodes are still planned.
 */
import { describe, expect, it } from 'vitest';
import { makePlan, planJson, renderPlan } from '../../cli/plan-view.js';
import type { Inventory } from '../../machines/port.js';
import { openStore } from '../../store/store.js';
import { createFakeCluster, type FakeCluster, type FakeClusterOptions } from '../sim/fake-cluster.js';

const OPTIONS = { parallel: 2, maxUnitRounds: 3, revokeOldTokens: false };

function inventoryOf(cluster: FakeCluster, extra: Partial<Inventory> = {}): Inventory {
  return { cluster: 'prod', nodes: cluster.nodes.map((n) => ({ name: n, sshHost: n })), ...extra };
}

async function plan(opts: FakeClusterOptions, setup: (c: FakeCluster) => void = () => undefined, inv: Partial<Inventory> = {}) {
  const cluster = createFakeCluster({ seed: 'plan-view', ...opts });
  setup(cluster);
  const store = openStore(':memory:');
  try {
    const result = await makePlan({ port: cluster.port, store, inventory: inventoryOf(cluster, inv), options: OPTIONS });
    return { cluster, ...result };
  } finally {
    store.close();
  }
}

describe('regen plan', () => {
  it('compact view: leader first, servers then agents, every step with its command, warnings; nothing changed', async () => {
    const { cluster, context, problems } = await plan({ servers: 3, agents: 1, hostnameLoopback: true }, () => undefined, { directoryServer: 'mail2.example.com' });
    expect(problems).toEqual([]);
    expect(cluster.effects.log).toEqual([]);
    const text = renderPlan(context, { color: false });
    expect(text).toMatchSnapshot();
    // What the issue asks the plan to warn about.
    expect(text).toMatch(/`hostname -i` answers 127\.0\.1\.1 \(loopback\)/);
    expect(text).toMatch(/the leader is not the directory server \(mail2\.example\.com\)/);
    expect(text).toMatch(/the mesh has 3 servers: it has no quorum/);
    expect(text).not.toContain(cluster.secret);
  });

  it('--verbose adds the exact script of every step, placeholders for what the run decides, never a secret', async () => {
    const { cluster, context } = await plan({ servers: 1, agents: 1 });
    const text = renderPlan(context, { color: false, verbose: true });
    expect(text).toContain('exec service-discover setup-wizard --first-instance');
    expect(text).toContain('exec service-discover setup-wizard');
    expect(text).not.toContain('--password');
    expect(text).not.toContain('setup --wizard');
    expect(text).toContain('/var/backups/regen/<run id>');
    expect(text).toContain('echo <reset index> > /var/lib/service-discover/data/acl-bootstrap-reset');
    expect(text).toContain("<sha256 of the leader's new file>");
    expect(text).toMatch(/on mail1\.example\.com, stdin: the mesh secret/);
    expect(text).toMatch(/on a terminal: 10\.\S+, then the mesh secret \(one line\), twice/);
    expect(text).not.toContain(cluster.secret);
    expect(text).not.toContain('planned-run');
  });

  it('JSON: nodes with steps and scripts, warnings, problems', async () => {
    const { context, problems } = await plan({ servers: 1, agents: 2 });
    const json = planJson(context, problems);
    expect(json.leader).toBe('mail1.example.com');
    expect(json.backupDir).toBe('/var/backups/regen/<run id>');
    expect(json.nodes.map((n) => [n.name, n.role, n.kind])).toEqual([
      ['mail1.example.com', 'leader', 'server'],
      ['mail2.example.com', 'follower', 'agent'],
      ['mail3.example.com', 'follower', 'agent'],
    ]);
    const setup = json.nodes[1]?.steps.find((s) => s.step === 'follower.setup');
    expect(setup?.scripts[0]?.script).toContain('exec service-discover setup-wizard');
    expect(setup?.scripts[0]?.script).not.toContain('--first-instance');
    expect(setup?.scripts[0]?.stdin).toMatch(/^on a terminal: 10\.\S+, then the mesh secret/);
    expect(json.problems).toEqual([]);
  });

  it('an unreachable node is a problem of its own; the others are still planned', async () => {
    const { cluster, context, problems } = await plan({ servers: 1, agents: 2 }, (c) => c.faults.unreachable('mail3.example.com'));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ node: 'mail3.example.com', kind: 'unreachable' });
    expect(context?.nodes.map((n) => n.name)).toEqual(['mail1.example.com', 'mail2.example.com']);
    const text = renderPlan(context, { color: false, problems });
    expect(text).toMatch(/problems \(regen start refuses until they are fixed\):\n {2}✗ mail3\.example\.com: .*\(not planned\)\n {4}next: /);
    expect(text).toContain('mail1.example.com (leader, mesh server, current, service-discover 0.7.2 (setup-wizard), bind 10.0.0.11): backup →');
    expect(cluster.effects.log).toEqual([]);
  });

  it('25 nodes fit one screen: followers doing the same steps are one line, the downtime warning is said once', async () => {
    const { context } = await plan({ servers: 1, agents: 24 });
    const text = renderPlan(context, { color: false });
    const lines = text.trimEnd().split('\n');
    expect(lines.length).toBeLessThanOrEqual(40);
    expect(text).toContain('mail2.example.com…mail25.example.com (24 agents, current, service-discover 0.7.2 (setup-wizard)): backup → copy → stop → wipe → setup → verify\n');
    expect(text.split("The mesh is down from the leader's stop").length - 1).toBe(1);
    // The per-node commands are for --verbose only.
    expect(text).not.toContain('systemctl stop service-discover');
    const verbose = renderPlan(context, { color: false, verbose: true });
    for (let i = 2; i <= 25; i++) expect(verbose).toContain(`mail${i}.example.com  follower  agent  profile current  service-discover 0.7.2 (setup-wizard)  bind `);
    expect(verbose.split("The mesh is down from the leader's stop").length - 1).toBe(1);
  });

  it('an unreachable mesh server and a node missing a tool: both named, the rest planned', async () => {
    const nodes = [
      { name: 'mail1.example.com', kind: 'server' as const },
      { name: 'mail2.example.com', kind: 'server' as const },
      { name: 'mail3.example.com', kind: 'agent' as const, missingTools: ['gpg'] },
      { name: 'mail4.example.com', kind: 'agent' as const },
    ];
    const { context, problems } = await plan({ nodes }, (c) => c.faults.unreachable('mail2.example.com'));
    expect(problems.map((p) => p.node)).toEqual(['mail2.example.com', 'mail3.example.com']);
    expect(problems[1]?.message).toMatch(/missing gpg/);
    expect(context?.nodes.map((n) => n.name)).toEqual(['mail1.example.com', 'mail4.example.com']);
  });

  it('when no plan can be made (no leader), the problems are still printed', async () => {
    const { context, problems } = await plan({ servers: 1, agents: 1 }, (c) => c.faults.unreachable('mail1.example.com'));
    expect(context).toBeNull();
    const text = renderPlan(context, { color: false, problems });
    expect(text).toContain('No plan could be made');
    expect(text).toContain('mail1.example.com: ');
  });
});
