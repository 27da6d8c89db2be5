/**
 * --revoke-old-tokens keeps exactly the token of the new credentials. A management token minted after the new
 * bootstrap (by someone holding an old one) stops the run for the operator, named, and nothing is deleted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { bootstrapToken, tokenCreate, tokenList } from '../sim/model.js';
import { leaderSecrets } from '../sim/proof.js';
import { harness, type Harness } from '../support/machine-harness.js';

const S1 = 'mail1.example.com';
let h: Harness | undefined;
afterEach(() => h?.cleanup());

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
    // The old agent/server tokens of the nodes set up again are listed in the journal, not revoked.
    const listed = h.open().journal(r.context.runId, { step: 'harden.node-tokens', node: S1 });
    expect(listed).toHaveLength(1);
    const detail = JSON.parse(listed[0]?.detail ?? '{}') as { result?: Array<{ policies: string[] }> };
    expect(detail.result?.map((t) => t.policies[0]).sort()).toEqual(['agent-mail2.example.com', 'server-mail1.example.com'].map((p) => p.replaceAll('.', '-')));
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
