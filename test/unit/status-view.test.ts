/**
 * `regen status` as the operator reads it: buildStatusView over a store filled the way a run fills it, rendered
 * (snapshots) for a finished run, a failed one with its error and next command, one stopped by Ctrl-C, and one
 * whose process died mid-step; `--watch` redraws until the run ends.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildStatusView, status } from '../../cli/commands/status.js';
import type { Io } from '../../cli/io.js';
import { renderStatus, type StatusView } from '../../adapters/terminal/index.js';
import type { ErrorRecord } from '../../machines/errors.js';
import { openStore } from '../../store/store.js';
import type { Store } from '../../store/types.js';

const LEADER = 'mail1.example.com';
const AGENTS = ['mail2.example.com', 'mail3.example.com'];
const LEADER_STEPS = ['backup', 'leader.reset-index', 'leader.reset-file', 'leader.stop', 'leader.wipe', 'leader.rpc-hold', 'leader.setup', 'leader.verify', 'leader.rpc-hold-remove'];
const FOLLOWER_STEPS = ['backup', 'follower.copy-credentials', 'follower.stop', 'follower.wipe', 'follower.setup', 'follower.verify'];
/** Every rendered time is shifted onto this instant, so the snapshots do not depend on when the test runs. */
const FIXED = Date.UTC(2025, 2, 14, 3, 0, 0);

let dir: string;
let store: Store;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'regen-status-'));
  store = openStore(join(dir, 'regen.db'));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A run of 1 server + 2 agents up to its followers, as the runner records it; returns its start time. */
function recordRun(id: string): number {
  store.createRun({ id, cluster: 'prod', machineVersion: 'test', inventoryJson: '{}', optionsJson: '{}' });
  const t0 = store.getRun(id)?.createdAt ?? 0;
  store.upsertNode({ runId: id, name: LEADER, sshHost: LEADER, role: 'leader', kind: 'server', profile: 'current', address: '10.0.0.11', bindAddress: '10.0.0.11', fqdn: LEADER });
  AGENTS.forEach((n, i) => store.upsertNode({ runId: id, name: n, sshHost: n, role: 'follower', kind: 'agent', profile: 'current', address: `10.0.0.1${i + 2}`, bindAddress: `10.0.0.1${i + 2}`, fqdn: n }));
  store.updateRun(id, { leader: LEADER, state: 'followers', status: 'running', downtimeStartedAt: t0 + 4_000 });
  let at = t0 + 1_000;
  const step = (node: string, s: string, outcome: 'done' | 'failed' | null = 'done') => {
    const jid = store.beginStep({ runId: id, step: s, node, attempt: 1, at });
    at += 700;
    if (outcome !== null) store.endStep(jid, outcome, undefined, at);
  };
  for (const s of LEADER_STEPS) step(LEADER, s);
  for (const n of AGENTS) step(n, 'backup');
  return t0;
}

function followersUpTo(id: string, last: string, outcome: 'done' | 'failed' | null, node = AGENTS[1] as string): void {
  const steps = FOLLOWER_STEPS.slice(1, FOLLOWER_STEPS.indexOf(last) + 1);
  for (const n of AGENTS) {
    for (const s of steps) {
      const jid = store.beginStep({ runId: id, step: s, node: n, attempt: 1 });
      const o = s === last && n === node ? outcome : 'done';
      if (o !== null) store.endStep(jid, o);
    }
  }
}

/** The view with every instant moved by the same amount onto FIXED. */
function rebased(v: StatusView, t0: number): StatusView {
  const at = (x: number | null) => (x === null ? null : x - t0 + FIXED);
  return {
    ...v,
    startedAt: FIXED,
    finishedAt: at(v.finishedAt),
    now: at(v.now) ?? FIXED,
    downtimeStartedAt: at(v.downtimeStartedAt),
    downtimeEndedAt: at(v.downtimeEndedAt),
    lastError: v.lastError === null ? null : { ...v.lastError, ...(v.lastError.at === undefined ? {} : { at: FIXED + 9_000 }) },
  };
}

function show(id: string, t0: number, nowOffset: number): { text: string; view: StatusView } {
  const run = store.getRun(id);
  if (!run) throw new Error('no run');
  const view = buildStatusView(store, run, t0 + nowOffset);
  return { text: renderStatus(rebased(view, t0), { color: false, timeZone: 'utc' }), view };
}

describe('regen status: the view built from the store', () => {
  it('a finished run', () => {
    const t0 = recordRun('run-done');
    followersUpTo('run-done', 'follower.verify', 'done');
    const jid = store.beginStep({ runId: 'run-done', step: 'final.verify', node: LEADER, attempt: 1 });
    store.endStep(jid, 'done');
    store.updateRun('run-done', { state: 'done', status: 'done', finishedAt: t0 + 12_500, downtimeEndedAt: t0 + 12_000 });
    const { text, view } = show('run-done', t0, 60_000);
    expect(view.next).toEqual([]);
    expect(text).toMatchSnapshot();
  });

  it('a failed run: the error on its node, and the exact command that continues', () => {
    const t0 = recordRun('run-failed');
    followersUpTo('run-failed', 'follower.setup', 'failed');
    const error: ErrorRecord = {
      kind: 'step-failed',
      name: 'CommandFailedError',
      message: 'service-discover setup failed on mail3.example.com (exit 1): invalid binding address selected',
      node: 'mail3.example.com',
      hint: 'set address: for mail3.example.com in the inventory to one of its interface addresses, then regen resume',
      exitCode: 1,
    };
    store.updateRun('run-failed', { state: 'failed', status: 'failed', error });
    const { text, view } = show('run-failed', t0, 20_000);
    expect(view.nodes.find((n) => n.name === 'mail3.example.com')?.cells['setup']).toBe('failed');
    expect(view.next.map((n) => n.command)).toEqual(['regen resume run-failed']);
    expect(text).toMatchSnapshot();
  });

  it('a hint that is a command is offered as the next command', () => {
    recordRun('run-secret');
    store.updateRun('run-secret', { state: 'needsOperator', status: 'needs-operator', error: { kind: 'needs-operator', name: 'NeedsOperatorError', message: 'the mesh secret is needed to go on', hint: 'regen resume --password-file FILE' } });
    const view = buildStatusView(store, store.getRun('run-secret') as NonNullable<ReturnType<Store['getRun']>>);
    expect(view.next.map((n) => n.command)).toEqual(['regen resume --password-file FILE', 'regen resume run-secret']);
  });

  it('a run stopped by Ctrl-C: resumable, the next command is resume', () => {
    const t0 = recordRun('run-stopped');
    followersUpTo('run-stopped', 'follower.setup', 'done');
    const error: ErrorRecord = { kind: 'aborted', name: 'RegenError', message: '2 follower(s) did not finish:\n  - mail2.example.com: stopped by the operator before follower.verify on mail2.example.com; nothing of that step was started\n  - mail3.example.com: stopped by the operator before follower.verify on mail3.example.com; nothing of that step was started', hint: 'regen resume' };
    store.updateRun('run-stopped', { state: 'failed', status: 'failed', error });
    const { text, view } = show('run-stopped', t0, 15_000);
    expect(view.next).toEqual([{ command: 'regen resume run-stopped', why: expect.stringMatching(/stopped by the operator/) as unknown as string }]);
    expect(text).toMatchSnapshot();
  });

  it('an interrupted run (its process died mid-step): the step is unknown; who holds the lock decides the advice', () => {
    const t0 = recordRun('run-died');
    followersUpTo('run-died', 'follower.setup', null, AGENTS[0]);
    // A pid that cannot exist: the process that held the lock is gone.
    store.acquireLock({ cluster: 'prod', runId: 'run-died', pid: 2 ** 31 - 2, host: hostname() });
    const { text, view } = show('run-died', t0, 30_000);
    expect(view.nodes.find((n) => n.name === 'mail2.example.com')?.cells['setup']).toBe('unknown');
    // Same host: resume takes the dead process's lock over by itself.
    expect(view.next.map((n) => n.command)).toEqual(['regen resume run-died']);
    expect(text).toMatchSnapshot();

    // Another host, heartbeat fresh: its process is taken to be running the run.
    store.forceUnlock('prod');
    store.acquireLock({ cluster: 'prod', runId: 'run-died', pid: 4242, host: 'laptop-of-someone-else' });
    const run = () => store.getRun('run-died') as NonNullable<ReturnType<Store['getRun']>>;
    expect(buildStatusView(store, run()).next.map((n) => n.command)).toEqual(['regen status run-died --watch']);
    // Another host, heartbeat stale: only the operator can tell whether it is gone, so unlock comes first.
    const db = new Database(join(dir, 'regen.db'));
    db.prepare('UPDATE locks SET heartbeat_at = ?').run(Date.now() - 10 * 60_000);
    db.close();
    expect(buildStatusView(store, run()).next.map((n) => n.command)).toEqual(['regen unlock --cluster prod', 'regen resume run-died']);
  });
});

function captureIo(): Io & { text: () => string } {
  let out = '';
  return {
    out: (t) => void (out += t),
    err: (t) => void (out += t),
    isTTY: false,
    stdinIsTTY: false,
    stdin: new PassThrough(),
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    env: {},
    onInterrupt: () => () => undefined,
    text: () => out,
  };
}

describe('regen status --watch', () => {
  it('redraws while the run is running and returns when it ends', async () => {
    recordRun('run-watched');
    // Held by this live process: the run is in progress.
    store.acquireLock({ cluster: 'prod', runId: 'run-watched', pid: process.pid, host: hostname() });
    const io = captureIo();
    let redraws = 0;
    const watching = status({ db: join(dir, 'regen.db'), json: true, run: 'run-watched', watch: true }, { ...io, out: (t) => (redraws++, io.out(t)) });
    // Let it draw a few times, then finish the run the way the runner does.
    for (let i = 0; i < 100 && redraws < 3; i++) await new Promise((r) => setTimeout(r, 100));
    expect(redraws).toBeGreaterThanOrEqual(3);
    store.updateRun('run-watched', { state: 'done', status: 'done', finishedAt: Date.now() });
    store.releaseLock('prod', 'run-watched');
    await expect(watching).resolves.toBe(0);
    const frames = io.text().trim().split('\n').map((l) => JSON.parse(l) as { status: string });
    expect(frames.at(0)?.status).toBe('running');
    expect(frames.at(-1)?.status).toBe('done');
  });
});
