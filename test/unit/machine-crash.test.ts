/**
 * Crash anywhere, in-process: the regen process dies at every persisted transition and at every journal write
 * (intent, probe, outcome), then a new process reopens the database file and resumes. Also a remote step whose
 * effect happened but whose answer was lost (crash-after-effect), at every remote step. After each: the run is
 * done, the mesh healthy, and every remote effect was applied exactly as often as in an uninterrupted run — the
 * probes settle interrupted steps, nothing is blindly repeated.
 */
import { describe, expect, it } from 'vitest';
import type { EffectMethod } from '../sim/fake-cluster.js';
import { healthy } from '../sim/fake-cluster.js';
import type { ErrorRecord } from '../../machines/errors.js';
import { harness, Process, type Harness } from '../support/machine-harness.js';

const EFFECTS: EffectMethod[] = ['backup', 'writeResetFile', 'stopService', 'startService', 'wipe', 'setupLeader', 'setupFollower', 'writeCredentials', 'deleteToken', 'writeRpcHold', 'removeRpcHold'];

type Topology = { name: string; servers: number; agents: number; profile: 'current' | 'legacy' };
const TOPOLOGIES: Topology[] = [
  { name: 'single server', servers: 1, agents: 0, profile: 'current' },
  { name: '1 server + 4 agents', servers: 1, agents: 4, profile: 'current' },
  { name: '1 server + 2 agents, legacy', servers: 1, agents: 2, profile: 'legacy' },
  { name: '3 mesh servers + 2 agents', servers: 3, agents: 2, profile: 'current' },
];

function effectCounts(h: Harness): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of h.cluster.nodes) for (const m of EFFECTS) out[`${n}:${m}`] = h.cluster.effects.count(n, m);
  return out;
}

async function baseline(t: Topology) {
  const h = harness({ servers: t.servers, agents: t.agents, profile: t.profile, parallel: 2 });
  let transitions = 0;
  let writes = 0;
  const r = await h.start({ afterTransition: () => void transitions++, journalHooks: { afterWrite: () => void writes++ } });
  expect(r.state).toBe('done');
  const counts = effectCounts(h);
  const calls = [...h.cluster.effects.log];
  h.cleanup();
  return { transitions, writes, counts, calls };
}

async function settleZombies(): Promise<void> {
  // Remote commands already running when the process died finish on their nodes.
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 1));
}

async function crashAndResume(t: Topology, crashAt: { transition?: number; write?: number }) {
  const h = harness({ servers: t.servers, agents: t.agents, profile: t.profile, parallel: 2 });
  try {
    const store = h.open();
    const p = new Process(store, h.cluster.port);
    let transitions = 0;
    let writes = 0;
    const started = h.start({
      store: p.storeView(),
      port: p.portView(),
      afterTransition: () => {
        if (++transitions === crashAt.transition) p.crash();
      },
      journalHooks: {
        afterWrite: () => {
          if (++writes === crashAt.write) p.crash();
        },
      },
    });
    await expect(started).rejects.toThrow();
    expect(p.dead).toBe(true);
    await settleZombies();
    // The dead process's connection is not closed: a killed process closes nothing. A new process opens its own
    // connection on the same file, same cluster. A crash after the last transition leaves a finished run.
    const resumes: { state: string; error: ErrorRecord | null }[] = [];
    for (let i = 0; i < 4 && h.open().getRun('run-1')?.status !== 'done'; i++) {
      const r = await h.resume('run-1');
      resumes.push({ state: r.state, error: r.error });
    }
    return { h, status: h.open().getRun('run-1')?.status ?? null, resumes };
  } catch (err) {
    h.cleanup();
    throw err;
  }
}

describe('crash at every transition and every journal write, then resume', () => {
  for (const t of TOPOLOGIES) {
    it(`${t.name}: every crash point ends healthy with effects applied as often as without a crash`, async () => {
      const base = await baseline(t);
      expect(base.transitions).toBeGreaterThan(10);
      expect(base.writes).toBeGreaterThan(10);
      const points = [
        ...Array.from({ length: base.transitions }, (_, i) => ({ transition: i + 1 })),
        ...Array.from({ length: base.writes }, (_, i) => ({ write: i + 1 })),
      ];
      let healthyRuns = 0;
      for (const at of points) {
        const { h, status, resumes } = await crashAndResume(t, at);
        try {
          expect(status, JSON.stringify({ at, resumes })).toBe('done');
          // A resume that did not finish says why: a resumable stop with its error, never a silent one.
          for (const r of resumes.slice(0, -1)) {
            expect(['failed', 'needsOperator'], JSON.stringify({ at, r })).toContain(r.state);
            expect(r.error?.message ?? '', JSON.stringify({ at, r })).not.toBe('');
          }
          expect(healthy(h.cluster, h.secret).problems, JSON.stringify(at)).toEqual([]);
          expect(effectCounts(h), JSON.stringify(at)).toEqual(base.counts);
          // The journal agrees with what happened: no intent is left without an outcome.
          const s = h.open();
          expect(s.openSteps('run-1')).toEqual([]);
          healthyRuns++;
        } finally {
          h.cleanup();
        }
      }
      expect(healthyRuns).toBe(points.length);
    }, 240_000);
  }
});

describe('crash-after-effect at every remote step (the effect happened, the answer was lost)', () => {
  for (const t of TOPOLOGIES) {
    it(`${t.name}: the probe settles it at once; nothing is applied twice`, async () => {
      const base = await baseline(t);
      const seen = new Set<string>();
      for (const { node, method } of base.calls) {
        const key = `${node}:${method}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const h = harness({ servers: t.servers, agents: t.agents, profile: t.profile, parallel: 2 });
        try {
          h.cluster.faults.crashAfterEffect(node, method);
          const r = await h.start();
          expect(r.state, `${key}: ${JSON.stringify(r.error)}`).toBe('done');
          expect(healthy(h.cluster, h.secret).ok).toBe(true);
          expect(effectCounts(h), key).toEqual(base.counts);
          const probed = h.open().journal('run-1', { node }).filter((j) => j.probe === 'done');
          expect(probed.length, key).toBeGreaterThanOrEqual(1);
        } finally {
          h.cleanup();
        }
      }
      expect(seen.size).toBeGreaterThanOrEqual(5);
    }, 120_000);

    it(`${t.name}: when the node stays silent after the lost answer, the run stops resumable and resume probes`, async () => {
      const base = await baseline(t);
      const leaderEffects = base.calls.filter((c) => c.node === base.calls[0]?.node);
      for (const { node, method } of leaderEffects) {
        const h = harness({ servers: t.servers, agents: t.agents, profile: t.profile, parallel: 2 });
        try {
          h.cluster.faults.crashAfterEffect(node, method);
          // Every call after the lost answer finds the node unreachable until the operator fixes the network.
          const port = h.cluster.port;
          let lost = false;
          const wrapped = new Proxy(port, {
            get(target, prop, receiver) {
              const v = Reflect.get(target, prop, receiver) as unknown;
              if (typeof v !== 'function') return v;
              return async (...args: unknown[]) => {
                if (lost && args[0] === node) throw Object.assign(new Error(`${node} unreachable`), { kind: 'preflight', node });
                try {
                  return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
                } catch (err) {
                  if ((err as Error).name === 'OutcomeUnknownError') lost = true;
                  throw err;
                }
              };
            },
          });
          const r = await h.start({ port: wrapped });
          expect(['failed', 'needsOperator'], `${method}`).toContain(r.state);
          const open = h.open().journal('run-1', { node }).filter((j) => j.outcome === 'unknown' || j.outcome === null);
          expect(open.length, method).toBeGreaterThanOrEqual(1);
          const resumed = await h.resume('run-1');
          expect(resumed.state, `${method}: ${JSON.stringify(resumed.error)}`).toBe('done');
          expect(effectCounts(h), method).toEqual(base.counts);
        } finally {
          h.cleanup();
        }
      }
    });
  }
});

describe('crash inside the transaction that records a transition with its run row and node rows', () => {
  const t = TOPOLOGIES[1] as Topology;
  it(`${t.name}: a kill between the run row and the node rows leaves none of the three; resume ends healthy`, async () => {
    const base = await baseline(t);
    const h = harness({ servers: t.servers, agents: t.agents, profile: t.profile, parallel: 2 });
    try {
      const store = h.open();
      const p = new Process(store, h.cluster.port);
      const view = p.storeView();
      let crashedAt: string | null = null;
      // The first transition that writes node rows (preflight planned the nodes): the process dies after the first row.
      view.persistTransition = (tr, run, nodes) => {
        if (nodes.length === 0) return store.persistTransition(tr, run, nodes);
        crashedAt = tr.toState;
        const dying = {
          *[Symbol.iterator]() {
            yield nodes[0];
            p.crash();
          },
          length: nodes.length,
        } as unknown as typeof nodes;
        return store.persistTransition(tr, run, dying);
      };
      await expect(h.start({ store: view, port: p.portView() })).rejects.toThrow();
      expect(crashedAt).toBe('leaderCheck');
      // All or none: the transition is not there, the run row and node rows are as before it.
      const s = h.open();
      expect(s.lastTransition('run-1')?.toState).toBe('preflight');
      expect(s.getRun('run-1')?.state).toBe('preflight');
      expect(s.listNodes('run-1').map((n) => n.profile)).toEqual(h.cluster.nodes.map(() => null));
      const r = await h.resume('run-1');
      expect(r.state, JSON.stringify(r.error)).toBe('done');
      expect(healthy(h.cluster, h.secret).problems).toEqual([]);
      expect(effectCounts(h)).toEqual(base.counts);
      expect(s.listNodes('run-1').filter((n) => n.role === 'leader').map((n) => n.name)).toEqual([h.cluster.preferredLeader]);
    } finally {
      h.cleanup();
    }
  });
});
