/**
 * Every path of the recovery machine.
 *
 * 1. The statechart alone: a breadth-first enumeration of every state reachable with every event the machine can
 *    receive (each actor's done, its step failure, its needs-operator error, CONFIRM, ABORT, RETRY), with pure
 *    transitions (getNextSnapshot: no actor runs). Properties checked on every path.
 * 2. The procedure against the fake cluster: every port call the uninterrupted run makes is made to fail, and to find
 *    its node unreachable; the run must stop in failed or needsOperator (or finish, where the procedure retries by
 *    itself), name the node, change nothing before the confirmation, and finish healthy on resume.
 */
import { describe, expect, it } from 'vitest';
import { getInitialSnapshot, getNextSnapshot } from 'xstate';
import { RESUMABLE_STATES, recoveryMachine, stateString, type RegenContext } from '../../machines/recovery.js';
import { healthy, type PortMethod } from '../sim/fake-cluster.js';
import { harness } from '../support/machine-harness.js';

const ACTORS = ['preflight', 'leaderCheck', 'backUpNodes', 'readResetIndex', 'writeResetFile', 'stopLeader', 'wipeLeader', 'writeRpcHold', 'setupLeader', 'verifyLeader', 'removeRpcHold', 'setUpFollowers', 'finalVerify', 'revokeOldTokens'];

function node(name: string) {
  return { name, fqdn: name, sshHost: name, profile: 'current', bindAddress: name === 'a' ? '10.0.0.1' : '10.0.0.2', kind: null, role: null, credentialsSha256Before: null };
}

const OUTPUTS: Record<string, unknown> = {
  preflight: { nodes: [node('a'), node('b')], warnings: [] },
  leaderCheck: { leader: 'a', leaderAddress: '10.0.0.1', kinds: { a: 'server', b: 'agent' }, warnings: [] },
  readResetIndex: 908,
  setupLeader: { credentialsSha256: 'f'.repeat(64) },
  setUpFollowers: { done: ['b'] },
  revokeOldTokens: { revoked: [] },
};

const EVENTS = [
  { type: 'CONFIRM' },
  { type: 'ABORT' },
  { type: 'RETRY' },
  ...ACTORS.map((id) => ({ type: `xstate.done.actor.${id}`, output: OUTPUTS[id] ?? null })),
  // A mesh of two servers takes the raft recovery path.
  { type: 'xstate.done.actor.leaderCheck', output: { leader: 'a', leaderAddress: '10.0.0.1', kinds: { a: 'server', b: 'server' }, warnings: [] } },
  { type: 'xstate.done.actor.writeRaftRecovery', output: null },
  { type: 'xstate.error.actor.writeRaftRecovery', error: { kind: 'step-failed', name: 'CommandFailedError', message: 'raft recovery failed' } },
  ...ACTORS.map((id) => ({ type: `xstate.error.actor.${id}`, error: { kind: 'step-failed', name: 'CommandFailedError', message: `${id} failed` } })),
  ...ACTORS.map((id) => ({ type: `xstate.error.actor.${id}`, error: { kind: 'needs-operator', name: 'NeedsOperatorError', message: `${id} unclear` } })),
  ...ACTORS.map((id) => ({ type: `xstate.error.actor.${id}`, error: { kind: 'unreachable', name: 'NodeUnreachableError', message: `${id} unreachable`, node: 'a' } })),
];

type Snap = ReturnType<typeof getInitialSnapshot<typeof recoveryMachine>>;
interface PathStep {
  event: string;
  state: string;
}

function key(s: Snap): string {
  const c = s.context as RegenContext;
  return JSON.stringify([stateString(s.value), c.failedAt, Math.min(c.round, 4), c.error?.kind ?? null, c.nodes.filter((n) => n.kind === 'server').length]);
}

/** Breadth-first: a shortest path to every distinct (state, failedAt, round≤4, error kind). */
function enumerate(revoke: boolean) {
  const input = {
    runId: 'r',
    inventory: { cluster: 'c', nodes: [{ name: 'a', sshHost: 'a' }, { name: 'b', sshHost: 'b' }] },
    options: { parallel: 1, maxUnitRounds: 2, revokeOldTokens: revoke },
  };
  const start = getInitialSnapshot(recoveryMachine, input as never);
  const seen = new Map<string, { snap: Snap; path: PathStep[] }>([[key(start), { snap: start, path: [] }]]);
  const queue = [key(start)];
  const edges: Array<{ from: string; event: (typeof EVENTS)[number]; to: Snap; path: PathStep[] }> = [];
  while (queue.length) {
    const k = queue.shift() as string;
    const { snap, path } = seen.get(k) as { snap: Snap; path: PathStep[] };
    if (snap.status !== 'active') continue;
    for (const ev of EVENTS) {
      const next = getNextSnapshot(recoveryMachine, snap, ev as never) as Snap;
      if (next === snap || (stateString(next.value) === stateString(snap.value) && key(next) === k)) continue;
      const p = [...path, { event: ev.type, state: stateString(next.value) }];
      edges.push({ from: stateString(snap.value), event: ev, to: next, path: p });
      const nk = key(next);
      if (!seen.has(nk)) {
        seen.set(nk, { snap: next, path: p });
        queue.push(nk);
      }
    }
  }
  return { seen, edges };
}

describe('the statechart, every reachable state', () => {
  for (const revoke of [false, true]) {
    const { seen, edges } = enumerate(revoke);
    const states = new Set([...seen.values()].map((v) => stateString(v.snap.value)));

    it(`reaches every state of the runbook (revoke old tokens: ${revoke})`, () => {
      const expected = ['preflight', 'leaderCheck', 'confirming', 'backup', ...RESUMABLE_STATES.filter((s) => s.startsWith('leader.')), 'followers', 'finalVerify', 'done', 'aborted', 'failed', 'needsOperator'];
      for (const s of expected) expect(states, s).toContain(s);
      expect(states.has('harden')).toBe(revoke);
      expect(seen.size).toBeGreaterThan(40);
    });

    it(`no path changes a node before the operator confirmed (revoke: ${revoke})`, () => {
      const changing = new Set(['backup', 'leader.resetIndex', 'leader.resetFile', 'leader.stop', 'leader.wipe', 'leader.raftRecovery', 'leader.setup', 'followers', 'harden']);
      for (const { path } of seen.values()) {
        const firstChange = path.findIndex((p) => changing.has(p.state));
        if (firstChange === -1) continue;
        expect(path.slice(0, firstChange + 1).some((p) => p.event === 'CONFIRM'), JSON.stringify(path)).toBe(true);
      }
    });

    it(`every failure is resumable where it happened, and a failed setup restarts its unit (revoke: ${revoke})`, () => {
      let checked = 0;
      for (const { snap } of seen.values()) {
        const state = stateString(snap.value);
        if (state !== 'failed' && state !== 'needsOperator') continue;
        const ctx = snap.context as RegenContext;
        expect(ctx.error, state).not.toBeNull();
        expect(RESUMABLE_STATES).toContain(ctx.failedAt);
        const after = getNextSnapshot(recoveryMachine, snap, { type: 'RETRY' });
        const target = stateString(after.value);
        if (ctx.failedAt === 'leader.setup' && ctx.error?.kind === 'step-failed') {
          expect(target).toBe('leader.resetIndex');
          expect((after.context as RegenContext).round).toBe(ctx.round + 1);
        } else {
          expect(target).toBe(ctx.failedAt);
          expect((after.context as RegenContext).round).toBe(ctx.round);
        }
        expect((after.context as RegenContext).error).toBeNull();
        const aborted = getNextSnapshot(recoveryMachine, snap, { type: 'ABORT' });
        expect(stateString(aborted.value)).toBe('aborted');
        checked++;
      }
      expect(checked).toBeGreaterThan(20);
    });

    it(`a failed leader setup is retried as a unit at most maxUnitRounds times by itself (revoke: ${revoke})`, () => {
      const setupFailures = edges.filter((e) => e.event.type === 'xstate.error.actor.setupLeader' && (e.event as { error: { kind: string } }).error.kind === 'step-failed');
      expect(setupFailures.length).toBeGreaterThan(0);
      // enumerate() runs with maxUnitRounds 2: a failure in round 1 starts round 2 by itself; from round 2 on
      // (an operator's RETRY starts round 3) a failure stops the run.
      const targets = new Set<string>();
      for (const e of setupFailures) {
        const round = (e.to.context as RegenContext).round;
        const target = stateString(e.to.value);
        targets.add(target);
        expect(['leader.resetIndex', 'failed'], JSON.stringify(e.path)).toContain(target);
        if (target === 'failed') expect(round, JSON.stringify(e.path)).toBeGreaterThanOrEqual(2);
        else expect(round, JSON.stringify(e.path)).toBe(2);
      }
      expect([...targets].sort()).toEqual(['failed', 'leader.resetIndex']);
    });
  }
});

describe('the procedure against the fake cluster: every port call fails once', () => {
  for (const topo of [
    { servers: 1, agents: 0, profile: 'current' as const },
    { servers: 1, agents: 3, profile: 'current' as const },
    { servers: 1, agents: 2, profile: 'legacy' as const },
    { servers: 3, agents: 1, profile: 'current' as const },
  ]) {
    it(`${topo.servers} server + ${topo.agents} agents (${topo.profile}): stops resumable naming the node, resume finishes healthy`, async () => {
      const base = harness({ ...topo, parallel: 2 });
      expect((await base.start()).state).toBe('done');
      const calls: Array<{ node: string; method: PortMethod }> = [];
      const seen = new Set<string>();
      for (const c of base.cluster.calls) {
        const k = `${c.node}:${c.method}`;
        if (!seen.has(k)) {
          seen.add(k);
          calls.push(c);
        }
      }
      base.cleanup();
      expect(calls.length).toBeGreaterThan(10);
      const outcomes = new Map<string, number>();
      for (const { node, method } of calls) {
        for (const fault of ['fail', 'unreachable'] as const) {
          const h = harness({ ...topo, parallel: 2 });
          try {
            if (fault === 'fail') h.cluster.faults.failNext(node, method, `injected failure of ${method}`);
            else h.cluster.faults.unreachable(node, method, { times: 1 });
            const r = await h.start();
            outcomes.set(r.state, (outcomes.get(r.state) ?? 0) + 1);
            if (r.state !== 'done') {
              expect(['failed', 'needsOperator'], `${fault} ${node} ${method}`).toContain(r.state);
              expect(r.error?.message ?? '', `${fault} ${node} ${method}`).toBeTruthy();
              // Nothing may change before the confirmation; the failure says where it happened.
              const failedBeforeConfirm = r.context.failedAt === 'preflight' || r.context.failedAt === 'leaderCheck';
              if (failedBeforeConfirm) expect(h.cluster.effects.log.length).toBe(0);
              const named = `${r.error?.node ?? ''} ${r.error?.message ?? ''}`;
              expect(named, `${fault} ${node} ${method}`).toContain(node);
              const resumed = await h.resume('run-1');
              expect(resumed.state, `${fault} ${node} ${method}: ${JSON.stringify(resumed.error)}`).toBe('done');
            }
            expect(healthy(h.cluster, h.secret).problems, `${fault} ${node} ${method}`).toEqual([]);
            // Setup is applied at most once more than without the fault (one more unit round).
            for (const n of h.cluster.nodes) {
              expect(h.cluster.effects.count(n, 'setupLeader') + h.cluster.effects.count(n, 'setupFollower')).toBeLessThanOrEqual(2);
            }
          } finally {
            h.cleanup();
          }
        }
      }
      expect(outcomes.get('failed') ?? 0).toBeGreaterThan(0);
    }, 180_000);
  }
});
