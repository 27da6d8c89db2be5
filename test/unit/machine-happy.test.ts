import { afterEach, describe, expect, it } from 'vitest';
import { healthy } from '../sim/fake-cluster.js';
import { harness, type Harness } from '../support/machine-harness.js';

let h: Harness | undefined;
afterEach(() => h?.cleanup());

describe('recovery machine against the fake cluster', () => {
  for (const profile of ['current', 'legacy'] as const) {
    it(`recovers a single server (${profile})`, async () => {
      h = harness({ servers: 1, agents: 0, profile });
      const r = await h.start();
      expect(r.error).toBeNull();
      expect(r.state).toBe('done');
      expect(healthy(h.cluster, h.secret)).toMatchObject({ ok: true });
      expect(h.cluster.effects.count(h.cluster.nodes[0]!, 'setupLeader')).toBe(1);
    });

    it(`recovers 1 server + 4 agents (${profile})`, async () => {
      h = harness({ servers: 1, agents: 4, profile, parallel: 2 });
      const r = await h.start();
      expect(r.error).toBeNull();
      expect(r.state).toBe('done');
      expect(healthy(h.cluster, h.secret)).toMatchObject({ ok: true });
      for (const n of h.cluster.agents) expect(h.cluster.effects.count(n, 'setupFollower')).toBe(1);
    });
  }

  it('recovers 3 mesh servers + 2 agents: the leader starts alone through raft recovery, the servers rejoin', async () => {
    h = harness({ servers: 3, agents: 2, parallel: 2 });
    const r = await h.start();
    expect(r.error).toBeNull();
    expect(r.state).toBe('done');
    expect(healthy(h.cluster, h.secret)).toMatchObject({ ok: true });
    const leader = h.cluster.leader() as string;
    expect(h.cluster.effects.count(leader, 'writeRaftRecovery')).toBe(1);
    // Consul consumed the recovery file when the leader started.
    expect(h.cluster.node(leader).exists('/var/lib/service-discover/data/raft/peers.json')).toBe(false);
  });

  it('without the raft recovery a 3-server leader cannot bootstrap (why the step exists)', async () => {
    h = harness({ servers: 3, agents: 0, parallel: 2 });
    const leader = h.cluster.preferredLeader;
    const port = h.cluster.port;
    // The same run, with the raft recovery turned into a no-op.
    const r = await h.start({ port: { ...bind(port), writeRaftRecovery: async () => undefined, probeRaftRecovery: async () => [`x`] } });
    expect(r.state).toBe('failed');
    expect(r.context.failedAt).toBe('leader.setup');
    expect(r.error?.message).toMatch(/leader/i);
    expect(h.cluster.calls.filter((c) => c.node === leader && c.method === 'setupLeader')).toHaveLength(3);
  });
});

function bind<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) {
    const v = (o as Record<string, unknown>)[k];
    out[k] = typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(o) : v;
  }
  return out as T;
}
