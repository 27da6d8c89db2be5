/**
 * --revoke-old-tokens keeps exactly the token of the new credentials. A management token minted after the new
 * bootstrap (by someone holding an old one) stops the run for the operator, named, and nothing is deleted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { bootstrapToken, policyCreate, tokenCreate, tokenList } from '../sim/model.js';
import { healthy } from '../sim/fake-cluster.js';
import { leaderSecrets } from '../sim/proof.js';
import { harness, Process, type Harness } from '../support/machine-harness.js';

const S1 = 'mail1.example.com';
let h: Harness | undefined;
afterEach(() => h?.cleanup());

const NODE_POLICIES = ['agent-mail2-example-com', 'server-mail1-example-com'];

/** The `server-*` / `agent-*` tokens, sorted by policy then age. */
function nodeTokens(hh: Harness, token: string): Array<{ id: string; policy: string; index: number; description: string }> {
  return tokenList(hh.cluster.world, S1, token)
    .filter((t) => t.Policies.some((p) => /^(server|agent)-/.test(p.Name)))
    .map((t) => ({ id: t.AccessorID, policy: t.Policies[0]?.Name ?? '', index: t.CreateIndex, description: t.Description }))
    .sort((a, b) => a.policy.localeCompare(b.policy) || a.index - b.index);
}

function managementTokens(hh: Harness, token: string): string[] {
  return tokenList(hh.cluster.world, S1, token)
    .filter((t) => t.Policies.some((p) => p.Name === 'global-management'))
    .map((t) => t.AccessorID);
}

describe('--revoke-old-tokens', () => {
  it('keeps the token of the new credentials and revokes the older management tokens', async () => {
    h = harness({ servers: 1, agents: 1, seed: 'harden-ok', runOptions: { revokeOldTokens: true } });
    const r = await h.start();
    expect(r.error).toBeNull();
    expect(r.state).toBe('done');
    const fresh = leaderSecrets(h.cluster.world, S1);
    if (fresh === null) throw new Error('no new credentials');
    const self = tokenList(h.cluster.world, S1, fresh.token).find((t) => t.Description === 'Bootstrap Token (Global Management)');
    expect(managementTokens(h, fresh.token)).toEqual([self?.AccessorID]);
    // The old server/agent tokens of the nodes set up again were replaced by their setup: revoked, listing empty.
    const listed = h.open().journal(r.context.runId, { step: 'harden.node-tokens', node: S1 });
    expect(listed).toHaveLength(1);
    expect((JSON.parse(listed[0]?.detail ?? '{}') as { result?: unknown[] }).result).toEqual([]);
    expect(nodeTokens(h, fresh.token).map((t) => t.policy)).toEqual(NODE_POLICIES);
  });

  it('a management token minted after the new bootstrap stops the run (exit 5), named; the new token survives', async () => {
    h = harness({ servers: 1, agents: 1, seed: 'harden-attack', runOptions: { revokeOldTokens: true } });
    const world = h.cluster.world;
    const stolen = bootstrapToken(world, S1, h.cluster.secret);
    const port = h.cluster.port;
    let minted = '';
    const attacked = {
      ...Object.fromEntries(Object.entries(port).map(([k, v]) => [k, typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(port) : v])),
      // Right after the reset, the holder of the old management token mints a newer one.
      selfAccessor: async (...a: Parameters<typeof port.selfAccessor>) => {
        if (minted === '') minted = tokenCreate(world, S1, stolen, ['global-management'], 'looks harmless').AccessorID;
        return port.selfAccessor(...a);
      },
    } as typeof port;
    const r = await h.start({ port: attacked });
    expect(r.state).toBe('needsOperator');
    expect(r.error?.kind).toBe('needs-operator');
    expect(r.error?.message).toContain(minted);
    expect(r.error?.message).toContain('created after the new bootstrap token');
    const fresh = leaderSecrets(world, S1);
    if (fresh === null) throw new Error('no new credentials');
    const left = managementTokens(h, fresh.token);
    expect(left).toContain(minted);
    expect(left).toHaveLength(3);
    expect(h.cluster.effects.count(S1, 'deleteToken')).toBe(0);
  });
});

/**
 * service-discover's setup makes a new `server-<host>` / `agent-<host>` token for the node's policy and never deletes
 * the old one (pkg/command/common.go CreateACLToken, 0.7.2): with --revoke-old-tokens the old token of each node
 * set up again goes; a node token of a node outside the run, or one made by hand, is only listed.
 */
describe('--revoke-old-tokens: the node tokens the re-setups replaced', () => {
  function oldMeshExtras(hh: Harness): { stranger: string; handMade: string } {
    const world = hh.cluster.world;
    const root = bootstrapToken(world, S1, hh.cluster.secret);
    // A node long gone from the inventory, and an operator's token on a node's policy with a description.
    policyCreate(world, S1, root, 'agent-mail9-example-com');
    const stranger = tokenCreate(world, S1, root, ['agent-mail9-example-com']).AccessorID;
    const handMade = tokenCreate(world, S1, root, ['server-mail1-example-com'], 'monitoring').AccessorID;
    return { stranger, handMade };
  }

  it('without the flag every old node token is kept', async () => {
    h = harness({ servers: 1, agents: 1, seed: 'node-tokens-keep' });
    const r = await h.start();
    expect(r.state).toBe('done');
    const fresh = leaderSecrets(h.cluster.world, S1);
    if (fresh === null) throw new Error('no new credentials');
    // One old, one new token per node: the setups did not delete the old ones.
    expect(nodeTokens(h, fresh.token).map((t) => t.policy)).toEqual([NODE_POLICIES[0], NODE_POLICIES[0], NODE_POLICIES[1], NODE_POLICIES[1]]);
    expect(h.cluster.effects.count(S1, 'deleteToken')).toBe(0);
  });

  it('with it the replaced tokens go, the new ones stay, a stranger\'s and a hand-made one are listed', async () => {
    h = harness({ servers: 1, agents: 1, seed: 'node-tokens-revoke', runOptions: { revokeOldTokens: true } });
    const { stranger, handMade } = oldMeshExtras(h);
    const fresh0 = bootstrapToken(h.cluster.world, S1, h.cluster.secret);
    const before = nodeTokens(h, fresh0).filter((t) => t.description === '' && NODE_POLICIES.includes(t.policy));
    expect(before).toHaveLength(2);
    const r = await h.start();
    expect(r.error).toBeNull();
    const fresh = leaderSecrets(h.cluster.world, S1);
    if (fresh === null) throw new Error('no new credentials');
    const after = nodeTokens(h, fresh.token);
    const kept = tokenList(h.cluster.world, S1, fresh.token).find((t) => t.Description === 'Bootstrap Token (Global Management)');
    const mine = after.filter((t) => t.description === '' && NODE_POLICIES.includes(t.policy));
    expect(mine.map((t) => t.policy)).toEqual(NODE_POLICIES);
    expect(mine.every((t) => t.index > (kept?.CreateIndex ?? Infinity))).toBe(true);
    for (const t of before) expect(after.some((x) => x.id === t.id)).toBe(false);
    expect(after.map((t) => t.id)).toEqual(expect.arrayContaining([stranger, handMade]));
    const listed = h.open().journal('run-1', { step: 'harden.node-tokens', node: S1 });
    const result = (JSON.parse(listed[0]?.detail ?? '{}') as { result?: Array<{ accessorId: string }> }).result ?? [];
    expect(result.map((t) => t.accessorId).sort()).toEqual([stranger, handMade].sort());
    // Every node still answers with its own (new) token: each agent's default token is one of those kept.
    expect(healthy(h.cluster, h.secret).ok).toBe(true);
  });

  for (const at of ['intent', 'outcome'] as const) {
    it(`a crash at the ${at} of the first revocation: resume probes it and revokes the rest, each once`, async () => {
      h = harness({ servers: 1, agents: 2, seed: `node-tokens-crash-${at}`, runOptions: { revokeOldTokens: true } });
      const store = h.open();
      const p = new Process(store, h.cluster.port);
      const started = h.start({
        store: p.storeView(),
        port: p.portView(),
        journalHooks: {
          afterWrite: (what, row) => {
            if (what === at && row.step === 'harden.node-tokens' && row.node.includes('#')) p.crash();
          },
        },
      });
      await expect(started).rejects.toThrow();
      const r = await h.resume('run-1');
      expect(r.error).toBeNull();
      expect(r.state).toBe('done');
      const fresh = leaderSecrets(h.cluster.world, S1);
      if (fresh === null) throw new Error('no new credentials');
      expect(nodeTokens(h, fresh.token).map((t) => t.policy)).toEqual(['agent-mail2-example-com', 'agent-mail3-example-com', 'server-mail1-example-com']);
      const rows = h.open().journal('run-1', { step: 'harden.node-tokens' }).filter((j) => j.node.includes('#'));
      const ids = new Set(rows.map((j) => j.node));
      expect(ids.size).toBe(3);
      // Each replaced token deleted exactly once; the interrupted one settled by its probe when its delete had run.
      expect(h.cluster.effects.count(S1, 'deleteToken')).toBe(1 + 3);
      if (at === 'outcome') expect(rows.filter((j) => j.probe !== null)).toHaveLength(0);
      else expect(rows.filter((j) => j.probe === 'not-done' || j.probe === 'done').length).toBeGreaterThanOrEqual(1);
    });
  }
});

