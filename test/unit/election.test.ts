/**
 * Election takes time: a lone server stands only after its election delay; until then an RPC that needs a leader is
 * held, then answered `500 (No cluster leader)`; service-discover's first-instance setup gives up on that answer.
 * regen's run finishes in one leader setup round when the election ends within the hold; past it, the setup alone
 * cannot succeed (each round restarts the unit, and the election with it). A drop-in in the config dir that sets
 * performance.rpc_hold_timeout, read when the unit starts, changes the hold; regen writes one (25 s) before the
 * leader's setup and removes it after the leader's verification (machines/rpc-hold.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { STEPS } from '../../machines/catalogue.js';
import { heldRpc, LEGACY_MODE_ERROR, parseGoDuration, setupBootstrapLoop, SETUP_TIMEOUT_ERROR, type Attempt } from '../sim/election.js';
import { createFakeCluster, healthy } from '../sim/fake-cluster.js';
import { CONFIG_JSON, currentLeader, MAIN_JSON, RESET_FILE, rpcHoldFor, SD_CONFIG_DIR, setup, SD_HOME, startAgent, stopAgent, UNIT_FAILED } from '../sim/model.js';
import { RPC_HOLD_FILE, RPC_HOLD_TEXT, SERF_KEYRINGS } from '../../machines/port.js';
import type { ElectionSettings } from '../sim/election.js';
import { harness, Process, type Harness } from '../support/machine-harness.js';

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

  it('a 12 s election with Consul\'s default 7 s hold fails the setup on its first call (no drop-in)', () => {
    const t = 1_000_000;
    const { world, node, bind, elapsed } = wipeForTest(() => t, { delayMs: 12_000, holdMs: 7_000 });
    expect(() => setup(world, node, { bind, password: 'pw', firstInstance: true, uid: 0 })).toThrow(`unable to create ACL bootstrap token: ${NO_LEADER}`);
    expect(elapsed()).toBe(t + 7_250);
  });

  it('the same election with regen\'s drop-in in the config dir: the hold is 25 s and the setup waits for the leader', () => {
    const t = 1_000_000;
    const { world, node, bind, elapsed } = wipeForTest(() => t, { delayMs: 12_000, holdMs: 7_000 });
    world.fs(node).write(RPC_HOLD_FILE, RPC_HOLD_TEXT, { owner: 'service-discover', group: 'service-discover', mode: 0o600 });
    setup(world, node, { bind, password: 'pw', firstInstance: true, uid: 0 });
    expect(rpcHoldFor(world, node)).toBe(25_000);
    expect(elapsed()).toBe(t + 12_000);
  });

  it('the hold is read when the unit starts: a drop-in written or removed while it runs changes nothing until a restart', () => {
    const t = 1_000_000;
    const { world, node, bind } = wipeForTest(() => t, { delayMs: 0, holdMs: 7_000 });
    setup(world, node, { bind, password: 'pw', firstInstance: true, uid: 0 });
    const fs = world.fs(node);
    fs.write(RPC_HOLD_FILE, RPC_HOLD_TEXT, { owner: 'service-discover', group: 'service-discover', mode: 0o600 });
    expect(rpcHoldFor(world, node)).toBe(7_000);
    stopAgent(world, node);
    startAgent(world, node);
    expect(rpcHoldFor(world, node)).toBe(25_000);
    fs.remove(RPC_HOLD_FILE);
    expect(rpcHoldFor(world, node)).toBe(25_000);
    stopAgent(world, node);
    startAgent(world, node);
    expect(rpcHoldFor(world, node)).toBe(7_000);
  });

  it('files are merged in lexical order, the last value wins; a file consul cannot read or a bad duration stops the unit', () => {
    const t = 1_000_000;
    const { world, node, bind } = wipeForTest(() => t, { delayMs: 0, holdMs: 7_000 });
    setup(world, node, { bind, password: 'pw', firstInstance: true, uid: 0 });
    const fs = world.fs(node);
    const sd = { owner: 'service-discover', group: 'service-discover', mode: 0o600 };
    const restart = () => {
      stopAgent(world, node);
      startAgent(world, node);
    };
    fs.write(RPC_HOLD_FILE, RPC_HOLD_TEXT, sd);
    fs.write(`${SD_CONFIG_DIR}/aa-early.json`, '{"performance":{"rpc_hold_timeout":"3s"}}', sd);
    restart();
    expect(rpcHoldFor(world, node)).toBe(25_000);
    fs.write(`${SD_CONFIG_DIR}/zzz-later.json`, '{"performance":{"rpc_hold_timeout":"1m30s"}}', sd);
    restart();
    expect(rpcHoldFor(world, node)).toBe(90_000);
    fs.remove(`${SD_CONFIG_DIR}/zzz-later.json`);
    // Written as root with umask 077: consul, running as service-discover, cannot read it and does not start.
    fs.write(RPC_HOLD_FILE, RPC_HOLD_TEXT, { owner: 'root', group: 'root', mode: 0o600 });
    stopAgent(world, node);
    expect(() => startAgent(world, node)).toThrow(UNIT_FAILED);
    // A number is no Go duration string.
    fs.write(RPC_HOLD_FILE, '{"performance":{"rpc_hold_timeout":25}}\n', sd);
    expect(() => startAgent(world, node)).toThrow(UNIT_FAILED);
    fs.write(RPC_HOLD_FILE, RPC_HOLD_TEXT, sd);
    startAgent(world, node);
    expect(rpcHoldFor(world, node)).toBe(25_000);
  });

  it('durations parse as Go\'s time.ParseDuration', () => {
    expect(parseGoDuration('25s')).toBe(25_000);
    expect(parseGoDuration('7s')).toBe(7_000);
    expect(parseGoDuration('1m30s')).toBe(90_000);
    expect(parseGoDuration('1.5s')).toBe(1_500);
    expect(parseGoDuration('250ms')).toBe(250);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('25')).toBeNull();
    expect(parseGoDuration('')).toBeNull();
    expect(parseGoDuration('5 s')).toBeNull();
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
  const run = async (election: ElectionSettings, adjust?: (cluster: Harness['cluster']) => void) => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    h = harness({ servers: 1, agents: 1, clock: () => new Date(t) });
    h.cluster.world.election = election;
    adjust?.(h.cluster);
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

  it('a 12 s election, past 250 ms + Consul\'s 7 s hold: the drop-in carries the setup through in one round, and is gone at the end', async () => {
    const written: boolean[] = [];
    const { r, rounds, leader } = await run({ delayMs: 12_000, holdMs: 7_000 }, (cluster) => {
      const setupLeader = cluster.port.setupLeader.bind(cluster.port);
      cluster.port.setupLeader = async (node, bind, secret) => {
        written.push(cluster.node(node).read(RPC_HOLD_FILE) === RPC_HOLD_TEXT);
        await setupLeader(node, bind, secret);
      };
    });
    expect(r.error).toBeNull();
    expect(r.state).toBe('done');
    expect(rounds.map((x) => [x.attempt, x.outcome])).toEqual([[1, 'done']]);
    expect(written).toEqual([true]);
    expect(h!.cluster.node(leader).exists(RPC_HOLD_FILE)).toBe(false);
    expect(h!.cluster.effects.count(leader, 'writeRpcHold')).toBe(1);
    expect(h!.cluster.effects.count(leader, 'removeRpcHold')).toBe(1);
    const steps = h!.open().journal('run-1', { node: leader }).map((x) => x.step);
    expect(steps.indexOf(STEPS.rpcHold.name)).toBeLessThan(steps.indexOf(STEPS.leaderSetup.name));
    expect(steps.indexOf(STEPS.rpcHoldRemove.name)).toBeGreaterThan(steps.indexOf(STEPS.leaderVerify.name));
    expect(healthy(h!.cluster, h!.secret)).toMatchObject({ ok: true });
  });

  it('an election past 250 ms + the raised 25 s hold: every round\'s setup meets No cluster leader (consul\'s answer, not the setup\'s timeout), the run stops at leader.setup', async () => {
    const { r, rounds, leader } = await run({ delayMs: 40_000, holdMs: 7_000 });
    expect(r.state).toBe('failed');
    expect(r.context.failedAt).toBe('leader.setup');
    expect(r.error?.message).toContain('500 (No cluster leader)');
    expect(rounds.map((x) => x.attempt)).toEqual([1, 2, 3]);
    // Stopped before the leader was verified: the drop-in stays for the resume's setup.
    expect(h!.cluster.node(leader).read(RPC_HOLD_FILE)).toBe(RPC_HOLD_TEXT);
  });

  it('a crash between the two steps: resume finds the drop-in by its probe, removes it once, and the run ends healthy', async () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    h = harness({ servers: 1, agents: 1, clock: () => new Date(t) });
    h.cluster.world.election = { delayMs: 12_000, holdMs: 7_000 };
    const time = { now: () => t, sleep: async (ms: number) => void (t += ms), convergeTimeoutMs: 60_000 };
    const leader = h.cluster.preferredLeader;
    const p = new Process(h.open(), h.cluster.port);
    const started = h.start({
      ...time,
      store: p.storeView(),
      port: p.portView(),
      // Dies right after the intent of the removal is journaled: the effect's outcome is unknown to the next process.
      journalHooks: { afterWrite: (what, row) => (what === 'intent' && row.step === STEPS.rpcHoldRemove.name ? p.crash() : undefined) },
    });
    await expect(started).rejects.toThrow();
    expect(h.cluster.node(leader).read(RPC_HOLD_FILE)).toBe(RPC_HOLD_TEXT);
    const r = await h.resume('run-1', time);
    expect(r.error).toBeNull();
    expect(r.state).toBe('done');
    const removal = h.open().journal('run-1', { step: STEPS.rpcHoldRemove.name, node: leader });
    // The dead process's intent: probed on resume (the file still there, so not done), then applied once.
    expect(removal.map((x) => [x.outcome, x.probe])).toEqual([
      ['unknown', 'not-done'],
      ['done', null],
    ]);
    expect(h.cluster.effects.count(leader, 'writeRpcHold')).toBe(1);
    expect(h.cluster.effects.count(leader, 'removeRpcHold')).toBe(1);
    expect(h.cluster.node(leader).exists(RPC_HOLD_FILE)).toBe(false);
    expect(h.open().journal('run-1', { step: STEPS.leaderSetup.name, node: leader }).map((x) => x.attempt)).toEqual([1]);
    expect(healthy(h.cluster, h.secret)).toMatchObject({ ok: true });
  });

  it('a crash after the drop-in was removed but before the answer: the probe settles it, nothing is removed twice', async () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    h = harness({ servers: 1, agents: 1, clock: () => new Date(t) });
    h.cluster.world.election = { delayMs: 12_000, holdMs: 7_000 };
    const leader = h.cluster.preferredLeader;
    h.cluster.faults.crashAfterEffect(leader, 'removeRpcHold');
    const r = await h.start({ now: () => t, sleep: async (ms: number) => void (t += ms), convergeTimeoutMs: 60_000 });
    expect(r.state).toBe('done');
    const removal = h.open().journal('run-1', { step: STEPS.rpcHoldRemove.name, node: leader });
    expect(removal.map((x) => [x.outcome, x.probe])).toEqual([['done', 'done']]);
    expect(h.cluster.effects.count(leader, 'removeRpcHold')).toBe(1);
    expect(healthy(h.cluster, h.secret)).toMatchObject({ ok: true });
  });
});
