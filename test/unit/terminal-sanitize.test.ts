/**
 * Nothing a node prints can take over the operator's terminal: control characters in node output (ESC sequences,
 * OSC 52 clipboard writes, C1 CSI, carriage returns) are shown escaped in the plan, the live and plain views,
 * errors, `regen status` and `regen log`; regen's own colours are untouched.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { sanitize } from '../../adapters/terminal/sanitize.js';
import { emptyLiveState, foldLiveState, jsonReporter, plainLine, renderLiveFrame, renderLog } from '../../adapters/terminal/index.js';
import { makePlan, renderPlan } from '../../cli/plan-view.js';
import { reportError } from '../../cli/main.js';
import type { Io } from '../../cli/io.js';
import { RegenError } from '../../machines/errors.js';
import { openStore } from '../../store/store.js';
import { createFakeCluster } from '../sim/fake-cluster.js';

const OSC52 = '\u001b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\u0007';
const HOSTILE = `127.0.1.1 ${OSC52}\u001b[2J\u001b[1;1H\u009b31m\rfake line\u0008`;
/** What must never reach the terminal from a node: ESC, BEL, CSI (C1), CR, BS. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

describe('sanitize', () => {
  it('escapes every C0 and C1 control but the newline, visibly', () => {
    expect(sanitize(`a\u001b[2Jb\nc\u0007\u009b\r\t`)).toBe('a\\e[2Jb\nc\\x07\\x9b\\r\\t');
    expect(sanitize(HOSTILE)).not.toMatch(RAW_CONTROL);
    expect(sanitize('plain text, ünïcode ✓\n')).toBe('plain text, ünïcode ✓\n');
  });
});

describe('every view of node output', () => {
  const warning = { type: 'warning' as const, runId: 'r', node: 'mail1.example.com', message: HOSTILE, at: 0 };

  it('the plain view and the live view', () => {
    // eslint-disable-next-line no-control-regex
    expect(plainLine(warning, { color: true })).not.toMatch(/\u001b\]|\u0007|\u009b|\r/);
    const state = emptyLiveState();
    foldLiveState(state, { type: 'run.started', runId: 'r', cluster: 'c', nodes: ['mail1.example.com'], at: 0 });
    foldLiveState(state, { type: 'step.started', runId: 'r', step: 'backup', node: 'mail1.example.com', attempt: 1, at: 0, command: HOSTILE });
    foldLiveState(state, warning);
    const frame = renderLiveFrame(state, 1, { color: false, columns: 400 }).join('\n');
    expect(frame).not.toMatch(RAW_CONTROL);
  });

  it('JSON events keep no raw C1 and mean the same', () => {
    let line = '';
    jsonReporter((t) => (line += t)).event(warning);
    expect(line.trimEnd()).not.toMatch(RAW_CONTROL);
    expect((JSON.parse(line) as { message: string }).message).toBe(HOSTILE);
  });

  it('regen log', () => {
    const text = renderLog([{ id: 1, runId: 'r', node: 'mail1', at: 0, command: 'hostname -i', exitCode: 0, durationMs: 1, outcome: 'completed', stdoutTail: HOSTILE, stderrTail: OSC52 }] as never, { color: true });
    // eslint-disable-next-line no-control-regex
    expect(text.replace(/\u001b\[[0-9;]*m/g, '')).not.toMatch(RAW_CONTROL);
  });

  it('the plan', async () => {
    const cluster = createFakeCluster({ servers: 1, agents: 1, seed: 'sanitize' });
    const store = openStore(':memory:');
    try {
      const { context } = await makePlan({ port: cluster.port, store, inventory: { cluster: 'c', nodes: cluster.nodes.map((n) => ({ name: n, sshHost: n })) }, options: { parallel: 1, maxUnitRounds: 1, revokeOldTokens: false } });
      expect(context).not.toBeNull();
      const hostile = { ...context, warnings: [...(context?.warnings ?? []), { node: 'mail1.example.com', message: HOSTILE }] } as NonNullable<typeof context>;
      const text = renderPlan(hostile, { color: false, verbose: false, problems: [{ node: 'mail2.example.com', kind: 'preflight', message: OSC52 }] as never });
      expect(text).toContain('\\e]52;c;');
      expect(text).not.toMatch(RAW_CONTROL);
    } finally {
      store.close();
    }
  });

  it('errors on stderr', () => {
    let err = '';
    const io = { err: (t: string) => void (err += t), out: () => undefined, env: {}, isTTY: false, stdinIsTTY: false, stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough(), onInterrupt: () => () => undefined } as Io;
    reportError(new RegenError('step-failed', `setup failed: ${HOSTILE}`, { node: 'mail1', hint: OSC52 }), io);
    expect(err).not.toMatch(RAW_CONTROL);
  });
});
