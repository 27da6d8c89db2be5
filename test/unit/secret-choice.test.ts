/**
 * The new secret is the one the operator meant: a secret that still opens the leader's credentials is refused
 * before anything changes, and the leader regen regenerates on is a mesh server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { chooseLeader, type PlannedNode } from '../../machines/plan.js';
import { harness, type Harness } from '../support/machine-harness.js';

let h: Harness | undefined;
afterEach(() => {
  h?.cleanup();
  h = undefined;
});

describe('a reused secret', () => {
  it('the current secret given as the new one: refused (usage) before the confirmation, no node changed', async () => {
    h = harness({ servers: 1, agents: 2, newSecret: 'old-mesh-secret' });
    let asked = 0;
    const r = await h.start({ confirm: async () => ++asked > 0 });
    expect([r.status, r.error?.kind]).toEqual(['failed', 'usage']);
    expect(r.error?.message).toMatch(/opens the current credentials on mail1\.example\.com/);
    expect(r.error?.hint).toMatch(/--reuse-secret/);
    expect(asked).toBe(0);
    expect(['backup', 'stopService', 'wipe', 'writeResetFile'].map((m) => h?.cluster.effects.total(m as never))).toEqual([0, 0, 0, 0]);
  });

  it('--reuse-secret keeps it on purpose and the run finishes', async () => {
    h = harness({ servers: 1, agents: 1, newSecret: 'old-mesh-secret', runOptions: { reuseSecret: true } });
    const r = await h.start();
    expect(r.status).toBe('done');
  });

  it('a new secret that does not open the current credentials goes on', async () => {
    h = harness({ servers: 1, agents: 1 });
    const r = await h.start();
    expect(r.status).toBe('done');
    expect(h.cluster.calls.filter((c) => c.method === 'secretOpensCredentials')[0]?.node).toBe('mail1.example.com');
  });
});

describe('leader auto-detection', () => {
  const node = (name: string, ip: string): PlannedNode => ({
    name,
    fqdn: name,
    sshHost: name,
    profile: 'current',
    bindAddress: ip,
    kind: null,
    role: null,
    credentialsSha256Before: null,
  });

  it('the reported leader must be a mesh server, as --leader must', () => {
    const nodes = [node('mail1.example.com', '10.0.0.1'), node('mta1.example.com', '10.0.0.2')];
    const args = { nodes, meshServers: ['mail1.example.com'] };
    expect(chooseLeader({ ...args, leaderAddress: '10.0.0.1' }).leader).toBe('mail1.example.com');
    expect(() => chooseLeader({ ...args, leaderAddress: '10.0.0.2' })).toThrow(/mta1\.example\.com\) as leader, but the directory does not list it as a mesh server/);
  });
});
