/**
 * Stopping the machine stops the remote command: each invoked actor binds the node port to its abort signal,
 * and the Carbonio port hands that signal to the command it runs (the SSH transport closes the channel on abort).
 */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createCarbonioPort } from '../../adapters/carbonio/port.js';
import type { ExecOptions, Remote } from '../../adapters/ssh/remote.js';
import { makeActors } from '../../machines/actors.js';
import type { NodePort } from '../../machines/port.js';
import type { PlannedNode } from '../../machines/plan.js';
import type { StepDeps } from '../../machines/steps.js';
import { openStore } from '../../store/store.js';
import { createFakeCluster } from '../sim/fake-cluster.js';

describe('the abort signal', () => {
  it('reaches the command the Carbonio port runs', async () => {
    const seen: (AbortSignal | undefined)[] = [];
    const remote = (node: string): Remote => ({
      node,
      exec: async (_command: string, opts?: ExecOptions) => {
        seen.push(opts?.signal);
        return { code: 0, stdout: '', stderr: '', durationMs: 1 };
      },
      close: async () => undefined,
    });
    const port = createCarbonioPort(remote);
    const ac = new AbortController();
    await port.withSignal?.(ac.signal).stopService('n1');
    await port.stopService('n1');
    expect(seen).toEqual([ac.signal, undefined]);
  });

  it('is aborted when the machine stops the actor running a step', async () => {
    const cluster = createFakeCluster({ servers: 1, seed: 'abort' });
    const signals: AbortSignal[] = [];
    const port: NodePort = {
      ...cluster.port,
      withSignal: (signal) => {
        signals.push(signal);
        // The stop never answers: only the abort can end it.
        return { ...cluster.port, stopService: () => new Promise<void>(() => undefined) };
      },
    };
    const store = openStore(':memory:');
    store.createRun({ id: 'r', cluster: 'c', machineVersion: 'v', inventoryJson: '{}', optionsJson: '{}' });
    const d: StepDeps = {
      port,
      store,
      runId: 'r',
      journal: { store, runId: 'r', now: Date.now },
      secret: async () => {
        throw new Error('no secret needed to stop a service');
      },
      sleep: async () => undefined,
      now: Date.now,
      convergeTimeoutMs: 0,
    };
    const leader: PlannedNode = { name: 'mail1.example.com', fqdn: 'mail1.example.com', sshHost: 'mail1.example.com', profile: 'current', bindAddress: '10.0.0.11', kind: 'server', role: 'leader', credentialsSha256Before: null };
    const actor = createActor(makeActors(d).stopLeader, { input: { leader, round: 1 } });
    actor.start();
    for (let i = 0; i < 5 && signals.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
    expect(signals).toHaveLength(1);
    expect(signals[0]?.aborted).toBe(false);
    actor.stop();
    expect(signals[0]?.aborted).toBe(true);
    store.close();
  });
});
