/**
 * Election takes time: a lone server stands only after its election delay; until then an RPC that needs a leader is
 * held, then answered `500 (No cluster leader)`; service-discover's first-instance setup gives up on that answer.
 * regen's run finishes in one leader setup round when the election ends within the hold; past it, the setup alone
 * cannot succeed (each round restarts the unit, and the election with it).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { STEPS } from '../../machines/catalogue.js';
import { heldRpc, LEGACY_MODE_ERROR, setupBootstrapLoop, SETUP_TIMEOUT_ERROR, type Attempt } from '../sim/election.js';
import { createFakeCluster, healthy } from '../sim/fake-cluster.js';
import { CONFIG_JSON, currentLeader, MAIN_JSON, RESET_FILE, setup, SD_HOME, stopAgent } from '../sim/model.js';
import { SERF_KEYRINGS } from '../../machines/port.js';
import type { ElectionSettings } from '../sim/election.js';
import { harness, type Harness } from '../support/machine-harness.js';

const NO_LEADER = 'Failed ACL bootstrapping: Unexpected response code: 500 (No cluster leader)';

describe('the setup\'s bootstrap loop (firstsetup.go createACLBootstrapToken)', () => {
  const noLeaderUntil = (electedAt: number) => (t: number): Attempt<string> =>
    t >= electedAt ? { ok: true, value: 'token' } : { ok: false, error: NO_LEADER, retryAfterMs: electedAt };

  it('a leader elected within the hold answers the first call when the election ends', () => {
    const r = setupBootstrapLoop(0, (t) => heldRpc(t, 7000, noLeaderUntil(5000)));
    expect(r).toEqual({ outcome: { ok: true, value: 'token' }, endedAt: 5000 });
  });

  it('an election longer than 250 ms + the hold fails the setup on its first call (not the legacy-mode 500)', () => {
    const r = setupBootstrapLoop(0, (t) => heldRpc(t, 2000, noLeaderUntil(5000)));
    expect(r).toEqual({ outcome: { ok: false, error: NO_LEADER, retryAfterMs: 5000 }, endedAt: 2250 });
  });

  it('with no server about to stand (no quorum) the call is held for the whole hold, then refused', () => {
    const r = heldRpc(1000, 7000, (): Attempt<string> => ({ ok: false, error: NO_LEADER, retryAfterMs: Number.POSITIVE_INFINITY }));
    expect(r).toEqual({ outcome: { ok: false, error: NO_LEADER, retryAfterMs: Number.POSITIVE_INFINITY }, answeredAt: 8000 });
  });

  it('only the legacy-mode 500 is retried, every 250 ms, until the 30 s timeout', () => {
    const calls: number[] = [];
    const r = setupBootstrapLoop(0, (t) => {
      calls.push(t);
      return { outcome: { ok: false, error: LEGACY_MODE_ERROR }, answeredAt: t };
    });
    expect(r.outcome).toEqual({ ok: false, error: SETUP_TIMEOUT_ERROR });
    expect(r.endedAt).toBe(30_000);
    expect(calls.slice(0, 3)).toEqual([250, 500, 750]);
    expect(calls).toHaveLength(119);
  });
});

describe('the model: a lone voter leads only after its election delay', () => {
  it('a first-instance setup whose election outlasts the hold fails with No cluster leader, and the server leads later', () => {
    let t = 1_000_000;
    const { world, node, bind, elapsed } = wipeForTest(() => t, { delayMs: 12_000, holdMs: 2_000 });
    expect(() => setup(world, node, { bind, password: 'pw', firstInstance: true, uid: 0 })).toThrow(`unable to create ACL bootstrap token: ${NO_LEADER}`);
    expect(elapsed()).toBe(t + 2250);
    t += 11_000;
    expect(currentLeader(world)).toBeNull();
    t += 1_000;
    expect(currentLeader(world)).toBe(node);
  });

  it('with a delay inside the hold the setup succeeds, taking the election\'s time', () => {
    const t = 1_000_000;
    const { world, node, bind, elapsed } = wipeForTest(() => t, { delayMs: 5_000, holdMs: 7_000 });
    setup(world, node, { bind, password: 'pw', firstInstance: true, uid: 0 });
    expect(elapsed()).toBe(t + 5_000);
    stopAgent(world, node);
  });
});

/** A one-server mesh with its leader stopped and wiped as regen leaves it before the setup (reset file written). */
function wipeForTest(clock: () => number, election: ElectionSettings) {
  const cluster = createFakeCluster({ servers: 1, agents: 0, seed: 'election', clock: () => new Date(clock()) });
  const world = cluster.world;
  const node = cluster.preferredLeader;
  const fs = world.fs(node);
  stopAgent(world, node);
  for (const p of [MAIN_JSON, CONFIG_JSON, ...SERF_KEYRINGS, ...fs.list(SD_HOME).filter((f) => f.endsWith('.pem')).map((f) => `${SD_HOME}/${f}`)]) fs.remove(p);
  fs.write(RESET_FILE, String(world.state.acl.resetIndex), { owner: 'service-discover', group: 'service-discover', mode: 0o600 });
  world.election = election;
  let until = 0;
  world.elapse = (at) => {
    until = Math.max(until, at);
  };
  return { world, node, bind: '10.0.0.11', elapsed: () => until };
}

let h: Harness | undefined;
afterEach(() => h?.cleanup());

describe('regen against a slow election (fake cluster, time moved by regen\'s own sleeps)', () => {
  const run = async (election: ElectionSettings) => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    h = harness({ servers: 1, agents: 1, clock: () => new Date(t) });
    h.cluster.world.election = election;
    const r = await h.start({
      now: () => t,
      sleep: async (ms: number) => {
        t += ms;
      },
      convergeTimeoutMs: 60_000,
    });
    const leader = h.cluster.preferredLeader;
    const rounds = h.open().journal('run-1', { step: STEPS.leaderSetup.name, node: leader });
    return { r, leader, rounds };
  };

  it('an election inside the RPC hold (5 s of 7 s): one leader setup round, the setup itself waits for the leader', async () => {
    const { r, rounds } = await run({ delayMs: 5_000, holdMs: 7_000 });
    expect(r.error).toBeNull();
    expect(r.state).toBe('done');
    expect(rounds.map((x) => [x.attempt, x.outcome])).toEqual([[1, 'done']]);
    expect(healthy(h!.cluster, h!.secret)).toMatchObject({ ok: true });
  });

  it('an election past 250 ms + the hold: every round\'s setup meets No cluster leader, the run stops at leader.setup', async () => {
    const { r, rounds } = await run({ delayMs: 12_000, holdMs: 2_000 });
    expect(r.state).toBe('failed');
    expect(r.context.failedAt).toBe('leader.setup');
    expect(r.error?.message).toContain('500 (No cluster leader)');
    expect(rounds.map((x) => x.attempt)).toEqual([1, 2, 3]);
  });
});
