/**
 * A leader setup refused for a stale ACL reset index: consul's answer names the valid index; it is kept typed in
 * the journal's error record, and the next round's reset index is that one, read from the record (never by
 * parsing regen's own journal text).
 */
import { describe, expect, it } from 'vitest';
import { StaleResetIndexError } from '../../machines/errors.js';
import type { PlannedNode } from '../../machines/plan.js';
import * as steps from '../../machines/steps.js';
import { openStore } from '../../store/store.js';
import { createFakeCluster } from '../sim/fake-cluster.js';

const LEADER = 'mail1.example.com';

async function setUp() {
  const cluster = createFakeCluster({ servers: 1, agents: 0, seed: 'stale-index' });
  const store = openStore(':memory:');
  store.createRun({ id: 'r', cluster: 'c', machineVersion: 'v', inventoryJson: '{}', optionsJson: '{}' });
  let t = 0;
  const now = () => ++t;
  const d: steps.StepDeps = {
    port: cluster.port,
    store,
    runId: 'r',
    journal: { store, runId: 'r', now },
    secret: async () => {
      throw new Error('the secret is not needed to read the reset index');
    },
    sleep: async () => undefined,
    now,
    convergeTimeoutMs: 0,
  };
  const leader: PlannedNode = { name: LEADER, fqdn: LEADER, sshHost: LEADER, profile: 'current', bindAddress: '10.0.0.11', kind: 'server', role: 'leader', credentialsSha256Before: (await cluster.port.inspect(LEADER)).credentialsSha256 };
  return { cluster, store, d, leader };
}

describe('a stale ACL reset index', () => {
  it('is recorded as a typed error and named as the next round\'s index', async () => {
    const { cluster, store, d, leader } = await setUp();
    const { Secret } = await import('../../adapters/secrets/secret.js');
    d.secret = async () => new Secret('a-secret-of-this-run');
    cluster.faults.failNext(LEADER, 'setupLeader', 'Failed ACL bootstrapping: Unexpected response code: 500 (Invalid bootstrap reset index (specified 908, reset index: 950))');
    const err = await steps.setupLeader(d, leader, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StaleResetIndexError);
    expect((err as StaleResetIndexError).validResetIndex).toBe(950);
    const row = store.journal('r', { step: 'leader.setup' })[0];
    expect(JSON.parse(row?.detail ?? '{}').error).toMatchObject({ kind: 'step-failed', validResetIndex: 950 });

    const calls = cluster.calls.length;
    expect(await steps.readResetIndex(d, leader, 2)).toBe(950);
    // Named by the record: the leader was not asked.
    expect(cluster.calls.length).toBe(calls);
  });

  it('any other setup failure names no index: the next round asks the leader', async () => {
    const { cluster, d, leader } = await setUp();
    const { Secret } = await import('../../adapters/secrets/secret.js');
    d.secret = async () => new Secret('a-secret-of-this-run');
    cluster.faults.failNext(LEADER, 'setupLeader', 'setup exploded (reset index: 950)');
    const err = await steps.setupLeader(d, leader, 1).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'CommandFailedError', kind: 'step-failed' });
    expect(err).not.toBeInstanceOf(StaleResetIndexError);
    expect(await steps.readResetIndex(d, leader, 2)).toBe(908);
  });
});
