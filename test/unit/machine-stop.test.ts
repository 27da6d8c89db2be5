/**
 * A run the operator stops (the first Ctrl-C: shouldStop turns true) is recorded as `stopped`, not `failed`: the
 * run row, the result, the closing event and `regen status` all say so, and a resume finishes it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildStatusView } from '../../cli/commands/status.js';
import { exitFor } from '../../cli/wiring.js';
import { EXIT } from '../../cli/exit-codes.js';
import type { RunEvent } from '../../machines/runner.js';
import { healthy } from '../sim/fake-cluster.js';
import { harness, type Harness } from '../support/machine-harness.js';

let h: Harness | undefined;
afterEach(() => h?.cleanup());

describe('a run stopped by the operator', () => {
  it('is recorded as stopped (not failed), says so in status, exits 9, and resumes to a healthy mesh', async () => {
    h = harness({ servers: 1, agents: 2 });
    const store = h.open();
    let stopNow = false;
    const events: RunEvent[] = [];
    const r1 = await h.start({
      store,
      journalHooks: { afterWrite: (what, row) => void (what === 'outcome' && row.step === 'leader.wipe' && (stopNow = true)) },
      shouldStop: () => stopNow,
      onEvent: (e) => events.push(e),
    });
    expect(r1.error?.kind).toBe('aborted');
    expect(r1.status).toBe('stopped');
    expect(exitFor(r1)).toBe(EXIT.aborted);
    const run = store.getRun('run-1');
    expect(run?.status).toBe('stopped');
    expect(events.filter((e) => e.type === 'run.finished').map((e) => (e as { status: string }).status)).toEqual(['stopped']);
    const view = buildStatusView(store, run!);
    expect(view.status).toBe('stopped');
    expect(view.next.map((n) => n.command)).toEqual(['regen resume run-1']);
    // Still an unfinished run: resume and the cluster views find it.
    expect(store.latestUnfinishedRun()?.id).toBe('run-1');

    const r2 = await h.resume('run-1');
    expect(r2.status).toBe('done');
    expect(healthy(h.cluster, h.secret).ok).toBe(true);
    expect(h.cluster.effects.count(r1.context.leader as string, 'wipe')).toBe(1);
  });

  it('a step that fails on a node is still failed, not stopped', async () => {
    h = harness({ servers: 1, agents: 2 });
    const store = h.open();
    h.cluster.faults.failNext(h.cluster.nodes[0]!, 'stopService', 'boom');
    const r = await h.start({ store, shouldStop: () => false });
    expect(r.error?.kind).toBe('step-failed');
    expect(r.status).toBe('failed');
    expect(store.getRun('run-1')?.status).toBe('failed');
  });
});
