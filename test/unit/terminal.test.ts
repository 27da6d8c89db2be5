import { afterEach, describe, expect, it, vi } from 'vitest';
import { Redactor } from '../../adapters/secrets/redact.js';
import { MASK } from '../../adapters/secrets/secret.js';
import { validateEvent } from '../../adapters/terminal/events.js';
import type { ProgressEvent } from '../../adapters/terminal/events.js';
import { emptyLiveState, foldLiveState, jsonReporter, liveReporter, plainLine, plainReporter, renderLiveFrame } from '../../adapters/terminal/reporters.js';
import { formatDuration, stripAnsi, truncate, useColor } from '../../adapters/terminal/format.js';
import { renderLog, renderRuns, renderStatus } from '../../adapters/terminal/status.js';
import type { StatusView } from '../../adapters/terminal/status.js';
import type { AuditRow, RunRow } from '../../store/types.js';

const T0 = Date.UTC(2026, 10, 24, 12, 3, 4);
const RUN = 'r-20261124-1203';

/** A whole run of a three-node cluster, as the runner emits it. */
const EVENTS: ProgressEvent[] = [
  { type: 'run.started', runId: RUN, cluster: 'mail-prod', nodes: ['mail1.example.com', 'mail2.example.com', 'mail3.example.com'], at: T0 },
  { type: 'run.state', runId: RUN, state: 'preflight', at: T0 + 10 },
  { type: 'warning', runId: RUN, node: 'mail3.example.com', message: 'hostname -i answers 127.0.1.1; using 10.0.0.3', at: T0 + 500 },
  { type: 'run.state', runId: RUN, state: 'leader.check', at: T0 + 900, leader: 'mail2.example.com' },
  { type: 'step.started', runId: RUN, step: 'leader.setup', node: 'mail2.example.com', attempt: 1, at: T0 + 1000, command: 'service-discover setup 10.0.0.2 --first-instance' },
  { type: 'run.state', runId: RUN, state: 'leader.setup', at: T0 + 1000, downtimeStartedAt: T0 + 950 },
  { type: 'step.command', runId: RUN, step: 'leader.setup', node: 'mail2.example.com', command: 'systemctl is-active service-discover', at: T0 + 3000 },
  { type: 'step.finished', runId: RUN, step: 'leader.setup', node: 'mail2.example.com', attempt: 1, at: T0 + 4100, durationMs: 3100, outcome: 'done' },
  { type: 'step.started', runId: RUN, step: 'follower.join', node: 'mail1.example.com', attempt: 2, at: T0 + 5000 },
  {
    type: 'step.finished',
    runId: RUN,
    step: 'follower.join',
    node: 'mail1.example.com',
    attempt: 2,
    at: T0 + 65_000,
    durationMs: 60_000,
    outcome: 'failed',
    error: { kind: 'step-failed', name: 'CommandFailedError', message: 'setup of service-discover already performed', node: 'mail1.example.com', hint: `regen resume ${RUN}`, exitCode: 1 },
  },
  { type: 'step.finished', runId: RUN, step: 'follower.join', node: 'mail3.example.com', attempt: 1, at: T0 + 66_000, durationMs: 0, outcome: 'skipped' },
  { type: 'run.finished', runId: RUN, status: 'failed', at: T0 + 70_000, downtimeMs: 69_050 },
];

describe('event schema', () => {
  it('accepts every event the runner emits', () => {
    for (const e of EVENTS) expect(validateEvent(e), JSON.stringify(e)).toEqual({ ok: true, event: e });
    expect(validateEvent({ type: 'warning', message: 'plain' }).ok).toBe(true);
  });

  it.each([
    ['not an object', 'x', '$.type: must be one of run.started, step.started, step.command, step.finished, run.state, run.finished, warning, got undefined'],
    ['unknown type', { type: 'step.paused' }, '$.type: must be one of run.started, step.started, step.command, step.finished, run.state, run.finished, warning, got "step.paused"'],
    ['missing field', { type: 'run.state' }, '$.state: is required'],
    ['extra field', { type: 'warning', message: 'm', secret: 'x' }, '$.secret: is not allowed'],
    ['wrong outcome', { ...EVENTS[7], outcome: 'ok' }, '$.outcome: must be one of "done", "failed", "unknown", "skipped", got "ok"'],
    ['attempt zero', { ...EVENTS[4], attempt: 0 }, '$.attempt: must be at least 1, got 0'],
    ['fractional time', { ...EVENTS[1], at: 1.5 }, '$.at: must be integer, got number'],
    ['time as string', { ...EVENTS[0], at: '2026-11-24T12:03:04Z' }, '$.at: must be integer, got string'],
    ['empty node list', { ...EVENTS[0], nodes: [] }, '$.nodes: must have at least 1 item(s)'],
    ['empty node name', { ...EVENTS[0], nodes: ['a', ''] }, '$.nodes[1]: must not be empty'],
    ['running is not a final status', { ...EVENTS[11], status: 'running' }, '$.status: must be one of "done", "failed", "stopped", "needs-operator", "aborted", got "running"'],
    ['bad error record', { ...EVENTS[9], error: { kind: 'oops', name: 'E', message: 'm' } }, '$.error.kind: must be one of "usage", "preflight", "step-failed", "needs-operator", "lock-held", "divergence", "store", "aborted", "internal", got "oops"'],
    ['negative duration', { ...EVENTS[7], durationMs: -1 }, '$.durationMs: must be at least 0, got -1'],
  ])('rejects %s', (_what, value, message) => {
    const r = validateEvent(value);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors).toContain(message);
  });

  it('every line of the JSON reporter is a valid event, with secrets masked', () => {
    const r = new Redactor();
    r.add('Xk3p9Qa2');
    let out = '';
    const rep = jsonReporter((t) => (out += t), { redactor: r });
    for (const e of EVENTS) rep.event(e);
    rep.event({ type: 'warning', message: 'password Xk3p9Qa2 was in a log', at: T0 });
    rep.event({ type: 'step.command', runId: RUN, step: 's', node: 'n', command: 'setup --password="Xk3p9Qa2"', at: T0 });
    rep.close();
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(EVENTS.length + 2);
    for (const line of lines) expect(validateEvent(JSON.parse(line)).ok, line).toBe(true);
    expect(out).not.toContain('Xk3p9Qa2');
    expect(JSON.parse(lines.at(-2) ?? '').message).toBe(`password ${MASK} was in a log`);
  });
});

describe('plain reporter', () => {
  it('writes one line per event', () => {
    let out = '';
    const rep = plainReporter((t) => (out += t), { timeZone: 'utc', redactor: new Redactor() });
    for (const e of EVENTS) rep.event(e);
    expect(out).toMatchInlineSnapshot(`
      "12:03:04 run r-20261124-1203 started: cluster mail-prod, 3 nodes (mail1.example.com, mail2.example.com, mail3.example.com)
      12:03:04 state preflight
      12:03:04 warning mail3.example.com: hostname -i answers 127.0.1.1; using 10.0.0.3
      12:03:04 state leader.check (leader mail2.example.com)
      12:03:05 mail2.example.com leader.setup started: $ service-discover setup 10.0.0.2 --first-instance
      12:03:05 state leader.setup (mesh down)
      12:03:07 mail2.example.com leader.setup $ systemctl is-active service-discover
      12:03:08 mail2.example.com leader.setup done 3.1s
      12:03:09 mail1.example.com follower.join started (attempt 2)
      12:04:09 mail1.example.com follower.join failed 1m00s (attempt 2): setup of service-discover already performed (next: regen resume r-20261124-1203)
      12:04:10 mail3.example.com follower.join skipped 0.0s
      12:04:14 run r-20261124-1203 failed, mesh downtime 1m09s
      "
    `);
  });

  it('colours outcomes only when asked', () => {
    const finished = EVENTS[7] as ProgressEvent;
    expect(plainLine(finished, { timeZone: 'utc' })).toBe('12:03:08 mail2.example.com leader.setup done 3.1s');
    const coloured = plainLine(finished, { timeZone: 'utc', color: true }) ?? '';
    expect(coloured).toContain('\u001b[32mdone\u001b[39m');
    expect(stripAnsi(coloured)).toBe('12:03:08 mail2.example.com leader.setup done 3.1s');
  });

  it('masks secrets in what it writes', () => {
    const r = new Redactor();
    r.add('topsecret');
    let out = '';
    plainReporter((t) => (out += t), { redactor: r }).event({ type: 'warning', message: 'saw topsecret' });
    expect(out).toBe(`warning: saw ${MASK}\n`);
    let out2 = '';
    plainReporter((t) => (out2 += t), { redact: (t) => t.replace('saw', 'SAW') }).event({ type: 'warning', message: 'saw it' });
    expect(out2).toBe('warning: SAW it\n');
  });
});

describe('formatting helpers', () => {
  it.each([
    [0, '0.0s'],
    [400, '0.4s'],
    [3149, '3.1s'],
    [59_999, '59.9s'],
    [62_000, '1m02s'],
    [3_720_000, '1h02m'],
  ])('formatDuration(%i) = %s', (ms, text) => expect(formatDuration(ms)).toBe(text));

  it('decides colour from the stream and NO_COLOR', () => {
    expect(useColor({ isTTY: true }, {})).toBe(true);
    expect(useColor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(useColor({ isTTY: true }, { NO_COLOR: '' })).toBe(true);
    expect(useColor({ isTTY: false }, {})).toBe(false);
    expect(useColor({}, {})).toBe(false);
  });

  it('truncates by visible width, keeping escapes', () => {
    expect(truncate('abcdef', 4)).toBe('abc…');
    expect(truncate('abc', 4)).toBe('abc');
    const t = truncate('\u001b[32mabcdef\u001b[39m', 4);
    expect(stripAnsi(t)).toBe('abc…');
    expect(t.startsWith('\u001b[32m')).toBe(true);
  });
});

/** A terminal that records every write; columns as a real one reports. */
function fakeTerminal(columns = 120): { isTTY: true; columns: number; write: (t: string) => boolean; text: () => string } {
  let out = '';
  return { isTTY: true, columns, write: (t) => ((out += t), true), text: () => out };
}

const ESC = '\u001b';

/** Each frame starts after the previous one was erased; the last frame is what stays on screen. */
const ERASE = new RegExp(`${ESC}\\[\\d+F${ESC}\\[J|${ESC}\\[\\?25l`);
function frames(raw: string): string[] {
  return raw
    .split(ERASE)
    .map((f) => stripAnsi(f).split(`${ESC}[?25h`).join(''))
    .filter((f) => f.trim() !== '');
}

describe('live reporter', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('draws the nodes, leader first, with the running step, its command and the clocks', () => {
    vi.useFakeTimers();
    let now = T0;
    const term = fakeTerminal();
    const rep = liveReporter(term, { now: () => now, redactor: new Redactor(), env: {} });
    for (const e of EVENTS.slice(0, 7)) rep.event(e);
    now = T0 + 3500;
    vi.advanceTimersByTime(150);
    const shown = frames(term.text());
    expect(shown.length).toBeGreaterThanOrEqual(1);
    const frame = shown.at(-1) ?? '';
    const lines = frame.trimEnd().split('\n');
    expect(lines[0]).toBe(`regen ${RUN} · cluster mail-prod · state leader.setup · elapsed 3.5s · mesh down 2.5s`);
    expect(lines[1]).toMatch(/^ ★ mail2\.example\.com {2}leader {4}leader\.setup {5}… 2\.5s {2}\$ systemctl is-active service-discover$/);
    expect(lines[2]).toMatch(/^ {3}mail1\.example\.com {2}follower {2}· waiting$/);
    expect(lines[3]).toMatch(/^ {3}mail3\.example\.com {2}follower {2}· waiting$/);
    expect(lines[4]).toBe(' ! mail3.example.com: hostname -i answers 127.0.1.1; using 10.0.0.3');
    // Colour on a TTY without NO_COLOR.
    expect(term.text()).toContain('\u001b[');
    rep.close();
  });

  it('throttles redraws and keeps the final frame on close', () => {
    vi.useFakeTimers();
    let now = T0;
    const term = fakeTerminal(80);
    const rep = liveReporter(term, { now: () => now, intervalMs: 100, redactor: new Redactor(), env: { NO_COLOR: '1' } });
    for (const e of EVENTS) {
      rep.event(e);
      now = e.at ?? now;
    }
    // Twelve events in one instant are one frame, not twelve.
    vi.advanceTimersByTime(100);
    expect(frames(term.text())).toHaveLength(1);
    rep.close();
    const raw = term.text();
    expect(raw).not.toMatch(new RegExp(`${ESC}\\[3\\dm`));
    expect(raw.endsWith('\u001b[?25h')).toBe(true);
    const final = frames(raw).at(-1) ?? '';
    expect(final).toMatchInlineSnapshot(`
      "regen r-20261124-1203 · cluster mail-prod · state leader.setup · elapsed 1m10s
      mesh downtime 1m09s · failed
       ★ mail2.example.com  leader    leader.setup     ✓ 3.1s
         mail1.example.com  follower  follower.join    ✗ 1m00s  setup of service-dis…
         mail3.example.com  follower  follower.join    - 0.0s
       ! mail3.example.com: hostname -i answers 127.0.1.1; using 10.0.0.3
      "
    `);
    for (const line of final.trimEnd().split('\n')) expect([...line].length).toBeLessThanOrEqual(80 - 1);
  });

  it('ticks the clocks while a step runs', () => {
    vi.useFakeTimers();
    let now = T0;
    const term = fakeTerminal();
    const rep = liveReporter(term, { now: () => now, redactor: new Redactor(), env: {} });
    rep.event(EVENTS[0] as ProgressEvent);
    rep.event(EVENTS[4] as ProgressEvent);
    for (let i = 0; i < 5; i++) {
      now += 1000;
      vi.advanceTimersByTime(1000);
    }
    const shown = frames(term.text());
    expect(shown.length).toBeGreaterThanOrEqual(5);
    expect(shown.at(-1)).toContain('leader.setup     … 4.0s');
    rep.close();
  });

  it('treats a terminal reporting 0 columns as of unknown width, not as tiny', () => {
    const s = emptyLiveState();
    for (const e of EVENTS.slice(0, 5)) foldLiveState(s, e);
    const frame = renderLiveFrame(s, T0 + 2000, { columns: 0 });
    expect(frame[1]).toContain('$ service-discover setup 10.0.0.2');
    const narrow = renderLiveFrame(s, T0 + 2000, { columns: 40 });
    const leaderLine = narrow.find((l) => l.includes('mail2.example.com')) ?? '';
    expect(leaderLine.endsWith('…')).toBe(true);
    for (const l of narrow) expect([...l].length).toBeLessThanOrEqual(39);
  });

  it('falls back to plain lines when the stream is not a terminal', () => {
    let out = '';
    const rep = liveReporter({ write: (t: string) => (out += t) }, { redactor: new Redactor(), timeZone: 'utc' });
    rep.event(EVENTS[7] as ProgressEvent);
    rep.close();
    expect(out).toBe('12:03:08 mail2.example.com leader.setup done 3.1s\n');
  });
});

const VIEW: StatusView = {
  runId: RUN,
  cluster: 'mail-prod',
  status: 'failed',
  state: 'followers.join',
  leader: 'mail2.example.com',
  directoryServer: 'mail1.example.com',
  startedAt: T0,
  finishedAt: null,
  now: T0 + 302_000,
  downtimeStartedAt: T0 + 60_000,
  downtimeEndedAt: null,
  recoveries: 1,
  steps: ['backup', 'leader.reset', 'leader.setup', 'leader.verify', 'follower.join', 'final.verify'],
  nodes: [
    { name: 'mail2.example.com', role: 'leader', kind: 'server', cells: { backup: 'done', 'leader.reset': 'done', 'leader.setup': 'done', 'leader.verify': 'done', 'final.verify': 'pending' } },
    { name: 'mail1.example.com', role: 'follower', kind: 'server', cells: { backup: 'done', 'follower.join': 'failed', 'final.verify': 'pending' } },
    { name: 'mail3.example.com', role: 'follower', kind: 'agent', cells: { backup: 'skipped', 'follower.join': 'unknown', 'final.verify': 'pending' } },
    { name: 'mail4.example.com', role: null, kind: null, cells: { backup: 'running' } },
  ],
  lastError: {
    step: 'follower.join',
    node: 'mail1.example.com',
    at: T0 + 240_000,
    error: { kind: 'step-failed', name: 'CommandFailedError', message: 'service-discover setup exited 1: invalid binding address selected', hint: 'pass --bind mail1.example.com=10.0.0.1' },
  },
  next: [
    { command: `regen resume ${RUN} --bind mail1.example.com=10.0.0.1`, why: 'retry the join with the right address' },
    { command: `regen log ${RUN} --node mail1.example.com`, why: 'see what the node printed' },
  ],
};

describe('status rendering', () => {
  it('renders the header, the node × step matrix, the last error and the next command', () => {
    expect(renderStatus(VIEW, { timeZone: 'utc' })).toMatchInlineSnapshot(`
      "Run            r-20261124-1203
      Cluster        mail-prod
      Status         failed, state followers.join
      Leader         mail2.example.com (directory server: mail1.example.com)
      Started        2026-11-24 12:03:04 UTC
      Elapsed        5m02s
      Mesh downtime  4m02s so far
      Resumed        1 time

      Steps: 1 backup  2 leader.reset  3 leader.setup  4 leader.verify  5 follower.join  6 final.verify
      NODE               ROLE      KIND    1 2 3 4 5 6
      mail2.example.com  leader    server  ✓ ✓ ✓ ✓   ·
      mail1.example.com  follower  server  ✓       ✗ ·
      mail3.example.com  follower  agent   -       ? ·
      mail4.example.com  -         -       …
      (✓ done  ✗ failed  … running  · pending  ? unknown  - skipped)

      Last error (mail1.example.com follower.join, 12:07:04): service-discover setup exited 1: invalid binding address selected
        hint: pass --bind mail1.example.com=10.0.0.1

      Next:
        regen resume r-20261124-1203 --bind mail1.example.com=10.0.0.1    # retry the join with the right address
        regen log r-20261124-1203 --node mail1.example.com    # see what the node printed
      "
    `);
  });

  it('renders a finished run and a run before the downtime', () => {
    const done = renderStatus(
      { ...VIEW, status: 'done', state: 'done', finishedAt: T0 + 400_000, downtimeEndedAt: T0 + 390_000, directoryServer: 'mail2.example.com', lastError: null, next: [], recoveries: 0 },
      { timeZone: 'utc' },
    );
    expect(done).toContain('Leader         mail2.example.com (the directory server)\n');
    expect(done).toContain('Elapsed        6m40s (finished 2026-11-24 12:09:44 UTC)\n');
    expect(done).toContain('Mesh downtime  5m30s\n');
    expect(done).not.toContain('Last error');
    expect(done).not.toContain('Resumed');
    const early = renderStatus({ ...VIEW, status: 'running', leader: null, downtimeStartedAt: null, lastError: null, next: [] }, { timeZone: 'utc' });
    expect(early).toContain('Leader         not chosen yet\n');
    expect(early).toContain('Mesh downtime  not started\n');
  });

  it('colours the matrix only when asked', () => {
    expect(renderStatus(VIEW, { timeZone: 'utc' })).not.toContain('\u001b[');
    const coloured = renderStatus(VIEW, { timeZone: 'utc', color: true });
    expect(coloured).toContain('\u001b[31m✗\u001b[39m');
    expect(stripAnsi(coloured)).toBe(renderStatus(VIEW, { timeZone: 'utc' }));
  });

  it('renders the list of runs', () => {
    const row = (over: Partial<RunRow>): RunRow => ({
      id: RUN,
      cluster: 'mail-prod',
      status: 'done',
      state: 'done',
      machineVersion: '1',
      inventoryJson: '{}',
      optionsJson: '{}',
      leader: 'mail2.example.com',
      createdAt: T0,
      updatedAt: T0,
      finishedAt: T0 + 400_000,
      downtimeStartedAt: T0 + 60_000,
      downtimeEndedAt: T0 + 390_000,
      recoveries: 0,
      error: null,
      ...over,
    });
    const rows = [
      row({ id: 'r-2', status: 'running', state: 'followers', finishedAt: null, downtimeEndedAt: null, createdAt: T0 + 1_000_000, downtimeStartedAt: T0 + 1_010_000 }),
      row({}),
      row({ id: 'r-0', cluster: 'lab', status: 'aborted', state: 'confirm', leader: null, downtimeStartedAt: null, downtimeEndedAt: null }),
    ];
    expect(renderRuns(rows, { timeZone: 'utc', now: T0 + 1_030_000 })).toMatchInlineSnapshot(`
      "RUN              CLUSTER    STATUS   STATE      STARTED                  ELAPSED  DOWNTIME  LEADER
      r-2              mail-prod  running  followers  2026-11-24 12:19:44 UTC  30.0s    20.0s     mail2.example.com
      r-20261124-1203  mail-prod  done     done       2026-11-24 12:03:04 UTC  6m40s    5m30s     mail2.example.com
      r-0              lab        aborted  confirm    2026-11-24 12:03:04 UTC  6m40s    -         -
      "
    `);
    expect(renderRuns([])).toBe('No runs recorded.\n');
  });

  it('renders the command audit', () => {
    const a = (over: Partial<AuditRow>): AuditRow => ({
      id: 1,
      runId: RUN,
      node: 'mail2.example.com',
      at: T0,
      command: 'systemctl stop service-discover',
      exitCode: 0,
      durationMs: 412,
      outcome: 'completed',
      stdoutTail: '',
      stderrTail: '',
      ...over,
    });
    const rows = [
      a({}),
      a({ id: 2, at: T0 + 2000, command: 'consul acl bootstrap', exitCode: 1, durationMs: 90, stderrTail: 'Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed (reset index: 908))\n' }),
      a({ id: 3, node: 'mail1.example.com', at: T0 + 5000, command: 'service-discover setup 10.0.0.1 --wizard', exitCode: null, durationMs: 30_000, outcome: 'unknown' }),
      a({ id: 4, node: 'mail3.example.com', at: T0 + 6000, command: 'true', exitCode: null, durationMs: 5, outcome: 'unreachable', stdoutTail: 'a\nb' }),
    ];
    expect(renderLog(rows, { timeZone: 'utc' })).toMatchInlineSnapshot(`
      "12:03:04 mail2.example.com  exit 0      0.4s   $ systemctl stop service-discover
      12:03:06 mail2.example.com  exit 1      0.0s   $ consul acl bootstrap
          stderr| Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed (reset index: 908))
      12:03:09 mail1.example.com  unknown     30.0s  $ service-discover setup 10.0.0.1 --wizard
      12:03:10 mail3.example.com  unreachable 0.0s   $ true
          stdout| a
          stdout| b
      "
    `);
    expect(renderLog([])).toBe('No commands recorded.\n');
  });
});
