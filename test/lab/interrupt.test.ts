/**
 * Ctrl-C in a real terminal (tmux send-keys C-c, on a tmux server of our own) while the followers' setup runs on a
 * 1+2 lab (setup slowed by injected latency so the keys land during it):
 * - one Ctrl-C: regen says it stops after the command in flight, that command finishes and is journaled, the run
 *   stops resumable with exit 9 (status: failed, error aborted), and `regen resume` completes it;
 * - two: regen exits 9 at once (the table's "stopped by the operator"), the interrupted steps show as unknown, and `regen resume` probes them and
 *   completes.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateEvent } from '../../adapters/terminal/index.js';
import { labFault, repoRoot, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';

const skip = labSkip();
const REGEN = join(repoRoot(), 'dist', 'cli', 'main.js');
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function tmux(socket: string, args: string[]): string {
  const r = spawnSync('tmux', ['-S', socket, ...args], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A detached 160×40 pane that outlives the command (scroll-on-clear off: see live-view.test.ts). */
function startInPane(socket: string, session: string, cwd: string, command: string): void {
  tmux(socket, ['new-session', '-d', '-s', session, '-x', '160', '-y', '40', '-c', cwd, `${command}; echo REGEN_EXIT=$?; sleep 600`, ';', 'set-option', '-w', '-t', session, 'scroll-on-clear', 'off']);
}

async function waitForPane(socket: string, session: string, done: (screen: string) => boolean, timeoutMs = 90_000): Promise<string> {
  const every = 100;
  let screen = '';
  for (let i = 0; i < timeoutMs / every; i++) {
    screen = tmux(socket, ['capture-pane', '-p', '-t', session]);
    if (done(screen)) return screen;
    await new Promise((r) => setTimeout(r, every));
  }
  throw new Error(`the pane never reached the expected state; last screen:\n${screen}`);
}

function regen(lab: Lab, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [REGEN, ...args, '--db', join(lab.dir, 'regen.db')], { env: { ...process.env, NO_COLOR: '1' }, input: '', encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface StatusJson {
  runId: string;
  status: string;
  lastError: { error: { kind: string } } | null;
  nodes: { name: string; cells: Record<string, string> }[];
  next: { command: string }[];
}

function statusOf(lab: Lab, run?: string): StatusJson {
  const r = regen(lab, ['status', ...(run ? [run] : []), '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusJson;
}

const RUNNING_SETUP = /follower\.setup +… \d+\.\ds {2}\$ service-discover setup/;

describe.skipIf(skip)('Ctrl-C in a real terminal during the followers\' setup (1 server, 2 agents)', () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current' });
  const socket = () => join(h.dir, 'tmux.sock');
  beforeAll(async () => {
    for (const n of ['mail2', 'mail3']) await labFault(h.dir, { kind: 'latency', node: n, key: 'service-discover setup', ms: 3000 });
  });
  afterAll(() => {
    spawnSync('tmux', ['-S', socket(), 'kill-server'], { timeout: 10_000 });
  });

  const startCommand = (lab: Lab, secretFile: string) =>
    `NO_COLOR=1 ${q(process.execPath)} ${q(REGEN)} start -i ${q(lab.inventory)} --ssh-config ${q(lab.sshConfig)} --known-hosts ${q(lab.knownHosts)} --password-file ${q(secretFile)} --db ${q(join(lab.dir, 'regen.db'))} --yes`;
  const resumeArgs = (lab: Lab, run: string) => ['resume', run, '--ssh-config', lab.sshConfig, '--known-hosts', lab.knownHosts];

  it('one Ctrl-C: the setup in flight finishes and is journaled, exit 9, resumable; resume completes', { timeout: 180_000 }, async () => {
    const lab = h.lab;
    const secretFile = join(lab.dir, 'secret-once');
    writeFileSync(secretFile, 'interrupt-once-secret-777', { mode: 0o600 });
    startInPane(socket(), 'once', lab.dir, startCommand(lab, secretFile));
    const during = await waitForPane(socket(), 'once', (s) => RUNNING_SETUP.test(s));
    const inFlight = lab.nodes.filter((n) => new RegExp(`${n.name.replaceAll('.', '\\.')} +follower +follower\\.setup +…`).test(during)).map((n) => n.name);
    expect(inFlight.length).toBeGreaterThan(0);
    tmux(socket(), ['send-keys', '-t', 'once', 'C-c']);
    const end = await waitForPane(socket(), 'once', (s) => s.includes('REGEN_EXIT='));
    expect(end).toContain('regen: stopping after the command in flight (Ctrl-C again to stop at once');
    expect(end).toContain('REGEN_EXIT=9');
    expect(end).toMatch(/stopped by the operator at followers; the commands in flight finished and are journaled\. It is resumable\./);
    expect(end).not.toContain('interrupt-once-secret-777');

    const stopped = statusOf(h.lab);
    expect(stopped.status).toBe('stopped');
    expect(stopped.lastError?.error.kind).toBe('aborted');
    for (const name of inFlight) expect(stopped.nodes.find((n) => n.name === name)?.cells['setup']).toBe('done');
    expect(stopped.nodes.flatMap((n) => Object.values(n.cells))).not.toContain('unknown');
    expect(stopped.next.map((n) => n.command)).toContain(`regen resume ${stopped.runId}`);

    const resumed = regen(lab, resumeArgs(lab, stopped.runId));
    expect(resumed.code, resumed.stderr).toBe(0);
    const done = statusOf(h.lab, stopped.runId);
    expect(done.status).toBe('done');
    expect(done.nodes.every((n) => Object.values(n.cells).every((c) => c === 'done' || c === 'skipped'))).toBe(true);
  });

  it('two Ctrl-C: exit 9 at once, the steps in flight are unknown; resume probes them and completes', { timeout: 180_000 }, async () => {
    const lab = h.lab;
    const secretFile = join(lab.dir, 'secret-twice');
    writeFileSync(secretFile, 'interrupt-twice-secret-888', { mode: 0o600 });
    startInPane(socket(), 'twice', lab.dir, startCommand(lab, secretFile));
    const during = await waitForPane(socket(), 'twice', (s) => RUNNING_SETUP.test(s));
    const inFlight = lab.nodes.filter((n) => new RegExp(`${n.name.replaceAll('.', '\\.')} +follower +follower\\.setup +…`).test(during)).map((n) => n.name);
    expect(inFlight.length).toBeGreaterThan(0);
    tmux(socket(), ['send-keys', '-t', 'twice', 'C-c']);
    await waitForPane(socket(), 'twice', (s) => s.includes('regen: stopping after the command in flight'));
    tmux(socket(), ['send-keys', '-t', 'twice', 'C-c']);
    const end = await waitForPane(socket(), 'twice', (s) => s.includes('REGEN_EXIT='));
    expect(end).toContain('regen: stopped at once; regen resume will check the interrupted step on the node before going on');
    expect(end).toContain('REGEN_EXIT=9');

    const interrupted = statusOf(h.lab);
    expect(interrupted.status).toBe('running');
    for (const name of inFlight) expect(interrupted.nodes.find((n) => n.name === name)?.cells['setup']).toBe('unknown');
    // The process that held the lock is gone and was on this host: resume takes the lock over by itself.
    expect(interrupted.next.map((n) => n.command)).toEqual([`regen resume ${interrupted.runId}`]);

    const resumed = regen(lab, [...resumeArgs(lab, interrupted.runId), '--json']);
    expect(resumed.code, resumed.stderr + resumed.stdout.slice(-3000)).toBe(0);
    const lines = resumed.stdout.trim().split('\n');
    for (const l of lines) {
      const v = validateEvent(JSON.parse(l));
      expect(v.ok, `${l} ${JSON.stringify(v)}`).toBe(true);
      expect(l).not.toContain('interrupt-twice-secret-888');
    }
    const events = lines.map((l) => JSON.parse(l) as { type: string; step?: string; node?: string; outcome?: string });
    for (const name of inFlight) {
      expect(events.some((e) => e.type === 'step.finished' && e.step === 'follower.setup' && e.node === name && e.outcome === 'done')).toBe(true);
    }
    const done = statusOf(h.lab, interrupted.runId);
    expect(done.status).toBe('done');
  });
});
