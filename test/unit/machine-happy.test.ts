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
      expect(healthy(h.cluster)).toMatchObject({ ok: true });
      expect(h.cluster.effects.count(h.cluster.nodes[0]!, 'setupLeader')).toBe(1);
    });

    it(`recovers 1 server + 4 agents (${profile})`, async () => {
      h = harness({ servers: 1, agents: 4, profile, parallel: 2 });
      const r = await h.start();
      expect(r.error).toBeNull();
      expect(r.state).toBe('done');
      expect(healthy(h.cluster)).toMatchObject({ ok: true });
      for (const n of h.cluster.agents) expect(h.cluster.effects.count(n, 'setupFollower')).toBe(1);
    });
  }
});
