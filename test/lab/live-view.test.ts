/**
 * `regen start` in a real terminal (a tmux pane of fixed size, on its own tmux server) against a 1+2 lab: the live
 * view shows every node, the leader first, each step with its elapsed time and the command now running, followers
 * running side by side, and the downtime clock; its final frame stays on screen, drawn in place (one frame in the
 * whole scrollback). Then the confirmation: without --yes the plan and the prompt appear; a wrong cluster name
 * aborts with nothing changed on any node, the right one runs to the end.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { labFault, nodeExec, repoRoot, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';

const skip = labSkip();
const REGEN = join(repoRoot(), 'dist', 'cli', 'main.js');
const COLS = 160;
const ROWS = 40;

function tmux(socket: string, args: string[]): string {
  const r = spawnSync('tmux', ['-S', socket, ...args], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Start a command in a fresh detached session; the pane stays after it ends so its last screen can be read.
 * tmux (3.3+) pushes a screen erased from its top-left corner into the scrollback (scroll-on-clear); the live view
 * erases its frame that way when it starts at the top, which would look like a stale frame in the history.
 */
function startInPane(socket: string, session: string, cwd: string, command: string): void {
  tmux(socket, ['new-session', '-d', '-s', session, '-x', String(COLS), '-y', String(ROWS), '-c', cwd, `${command}; echo REGEN_EXIT=$?; sleep 600`, ';', 'set-option', '-w', '-t', session, 'scroll-on-clear', 'off']);
}

/** The pane as the operator sees it now (or with its scrollback). */
function capture(socket: string, session: string, history = false): string {
  return tmux(socket, ['capture-pane', '-p', '-t', session, ...(history ? ['-S', '-'] : [])]);
}

/** Capture every `everyMs` until `done` holds for a frame; bounded in count and time. */
async function framesUntil(socket: string, session: string, done: (frame: string) => boolean, o: { everyMs?: number; timeoutMs?: number } = {}): Promise<string[]> {
  const every = o.everyMs ?? 250;
  const limit = Math.ceil((o.timeoutMs ?? 90_000) / every);
  const frames: string[] = [];
  for (let i = 0; i < limit; i++) {
    const f = capture(socket, session);
    frames.push(f);
    if (done(f)) return frames;
    await new Promise((r) => setTimeout(r, every));
  }
  throw new Error(`the pane never reached the expected state; last frame:\n${frames.at(-1) ?? ''}`);
}

async function fingerprint(lab: Lab, node: string): Promise<string> {
  const r = await nodeExec(lab, node, ['sh', '-c', 'find /etc/zextras /var/lib/service-discover /var/backups -type f -print0 | sort -z | xargs -0 -r sha256sum; systemctl is-active service-discover']);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

function regenCommand(lab: Lab, secretFile: string, extra: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return `NO_COLOR=1 ${q(process.execPath)} ${q(REGEN)} start -i ${q(lab.inventory)} --ssh-config ${q(lab.sshConfig)} --known-hosts ${q(lab.knownHosts)} --password-file ${q(secretFile)} --db ${q(join(lab.dir, 'regen.db'))} ${extra}`;
}

describe.skipIf(skip)('regen start in a real terminal (tmux) on a lab (1 server, 2 agents)', () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current' });
  const socket = () => join(h.dir, 'tmux.sock');
  afterAll(() => {
    // Our own tmux server, on our own socket: ending it ends only the panes these tests started.
    spawnSync('tmux', ['-S', socket(), 'kill-server'], { timeout: 10_000 });
  });

  it('live view: every node, leader first, step + elapsed + command, followers in parallel, downtime clock; the final frame stays', { timeout: 120_000 }, async () => {
    const lab = h.lab;
    for (const n of lab.nodes) await labFault(h.dir, { kind: 'latency', node: n.short, key: 'service-discover setup', ms: 1500 });
    const secretFile = join(lab.dir, 'new-secret-live');
    writeFileSync(secretFile, 'live-view-new-secret-31337', { mode: 0o600 });
    try {
      startInPane(socket(), 'live', lab.dir, regenCommand(lab, secretFile, '--yes'));
      const frames = await framesUntil(socket(), 'live', (f) => f.includes('REGEN_EXIT='));
      const last = frames.at(-1) ?? '';
      expect(last).toContain('REGEN_EXIT=0');

      const nodeLines = (f: string) => f.split('\n').filter((l) => /^ [★ ] mail\d\.lab\.example {2}/.test(l));
      const live = frames.filter((f) => nodeLines(f).length === 3);
      expect(live.length).toBeGreaterThan(3);
      // Until the leader check no node has a role; from then on the leader is the first line.
      const withLeader = live.filter((f) => f.includes('★'));
      expect(withLeader.length).toBeGreaterThan(3);
      for (const f of live.filter((x) => !x.includes('★'))) expect(nodeLines(f).join('\n')).not.toMatch(/leader|follower/);
      for (const f of withLeader) expect(nodeLines(f)[0]).toMatch(/^ ★ mail1\.lab\.example {2}leader /);

      const all = live.join('\n');
      // The leader's setup, its elapsed time, and the command now running.
      expect(all).toMatch(/ ★ mail1\.lab\.example {2}leader {4}leader\.setup +… \d+\.\ds {2}\$ service-discover setup-wizard --first-instance/);
      // Both followers in their setup in one frame: they run side by side.
      expect(live.some((f) => nodeLines(f).filter((l) => /follower\.setup +… \d+\.\ds {2}\$ service-discover setup/.test(l)).length === 2)).toBe(true);
      // The downtime clock while the mesh is down, then the total.
      expect(all).toMatch(/state leader\.setup · elapsed \d+\.\ds · mesh down \d+\.\ds/);
      expect(last).toMatch(/state done · elapsed \d+\.\ds · mesh downtime \d+\.\ds · done/);
      expect(nodeLines(last)).toEqual([
        expect.stringMatching(/★ mail1\.lab\.example {2}leader {4}final\.catalog +✓/),
        expect.stringMatching(/mail2\.lab\.example {2}follower {2}follower\.verify +✓/),
        expect.stringMatching(/mail3\.lab\.example {2}follower {2}follower\.verify +✓/),
      ]);
      expect(last).toContain('done: every node is an alive member');
      // Drawn in place, below the plan and never over it: the whole scrollback holds one frame.
      const history = capture(socket(), 'live', true);
      expect(history.split('\n').filter((l) => /^regen \S+ · cluster /.test(l))).toHaveLength(1);
      expect(history.indexOf("The mesh is down from the leader's stop")).toBeGreaterThan(history.indexOf('Plan for cluster'));
      expect(history.indexOf("The mesh is down from the leader's stop")).toBeLessThan(history.search(/^regen \S+ · cluster /m));
      expect(history).not.toContain('live-view-new-secret-31337');
    } finally {
      for (const n of lab.nodes) await labFault(h.dir, { kind: 'latency', node: n.short, key: 'service-discover setup', ms: 0 });
    }
  });

  it('confirmation: the plan and the prompt; a wrong cluster name aborts with nothing changed, the right one runs', { timeout: 120_000 }, async () => {
    const lab = h.lab;
    const secretFile = join(lab.dir, 'new-secret-confirm');
    writeFileSync(secretFile, 'confirm-new-secret-4242', { mode: 0o600 });
    const prompt = `Type the cluster name (${lab.cluster}) to go on, anything else to abort: `;
    const before = await Promise.all(lab.nodes.map((n) => fingerprint(lab, n.short)));

    startInPane(socket(), 'declined', lab.dir, regenCommand(lab, secretFile, ''));
    const asked = (await framesUntil(socket(), 'declined', (f) => f.includes(prompt.trimEnd()))).at(-1) ?? '';
    const scrollback = capture(socket(), 'declined', true);
    expect(scrollback).toContain(`Plan for cluster ${lab.cluster} (run `);
    expect(scrollback).toMatch(/mail1\.lab\.example \(leader, mesh server, current, service-discover [\d.]+ \(setup-wizard\), bind [\d.]+\): backup → /);
    // Said once, at the end of the plan, right above the question.
    expect(asked).toContain("The mesh is down from the leader's stop until the last node is set up again.");
    expect(scrollback.split("The mesh is down from the leader's stop").length - 1).toBe(1);
    tmux(socket(), ['send-keys', '-t', 'declined', '-l', `${lab.cluster}-not`]);
    tmux(socket(), ['send-keys', '-t', 'declined', 'Enter']);
    const declined = (await framesUntil(socket(), 'declined', (f) => f.includes('REGEN_EXIT='))).at(-1) ?? '';
    expect(declined).toContain('REGEN_EXIT=9');
    expect(declined).toMatch(/aborted/);
    expect(await Promise.all(lab.nodes.map((n) => fingerprint(lab, n.short)))).toEqual(before);

    startInPane(socket(), 'confirmed', lab.dir, regenCommand(lab, secretFile, ''));
    await framesUntil(socket(), 'confirmed', (f) => f.includes(prompt.trimEnd()));
    tmux(socket(), ['send-keys', '-t', 'confirmed', '-l', lab.cluster]);
    tmux(socket(), ['send-keys', '-t', 'confirmed', 'Enter']);
    const confirmed = (await framesUntil(socket(), 'confirmed', (f) => f.includes('REGEN_EXIT='))).at(-1) ?? '';
    expect(confirmed).toContain('REGEN_EXIT=0');
    expect(confirmed).toContain('done: every node is an alive member');
    const after = await Promise.all(lab.nodes.map((n) => fingerprint(lab, n.short)));
    expect(after[0]).not.toEqual(before[0]);
  });
});
