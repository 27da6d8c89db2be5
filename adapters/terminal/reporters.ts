/**
 * Reporters turn progress events into output. Every text they write passes through the redactor: events are
 * meant to be secret-free already, this is the second line of defence.
 */
import { redactor as processRedactor } from '../secrets/redact.js';
import type { Redactor } from '../secrets/redact.js';
import type { ProgressEvent, StepFinishedEvent } from './events.js';
import { formatClock, formatDuration, padEnd, palette, truncate, useColor, visibleWidth } from './format.js';
import type { Palette, TimeZoneChoice } from './format.js';
import { jsonSafe, sanitizeDeep } from './sanitize.js';

export interface Reporter {
  event(event: ProgressEvent): void;
  /** Flush and stop (the live view draws its final frame and keeps it). */
  close(): void;
  /**
   * Other output is about to be written (the plan, a prompt): the live view erases its frame and draws nothing
   * until resume(), then starts again below that output instead of drawing over it.
   */
  suspend?(): void;
  resume?(): void;
}

export type Write = (text: string) => void;

function masker(opts: Pick<ReporterOptions, 'redactor' | 'redact'>): (text: string) => string {
  if (opts.redact !== undefined) return opts.redact;
  const r = opts.redactor ?? processRedactor;
  return (text) => r.redact(text);
}

export interface ReporterOptions {
  /** The redactor to mask with (default: the process-wide one)... */
  redactor?: Redactor;
  /** ...or any masking function; wins over `redactor`. */
  redact?: (text: string) => string;
  timeZone?: TimeZoneChoice;
  color?: boolean;
}

/** NDJSON: one event per line, for `--json`. */
export function jsonReporter(write: Write, opts: Pick<ReporterOptions, 'redactor' | 'redact'> = {}): Reporter {
  const redact = masker(opts);
  return {
    event(event) {
      write(`${redact(jsonSafe(JSON.stringify(event)))}\n`);
    },
    close() {},
  };
}

function outcomeWord(e: StepFinishedEvent, c: Palette): string {
  switch (e.outcome) {
    case 'done':
      return c.green('done');
    case 'failed':
      return c.red('failed');
    case 'unknown':
      return c.yellow('unknown');
    case 'skipped':
      return c.dim('skipped');
  }
}

/** One line for an event, e.g. `12:03:04 mail2.example.com follower.join done 3.1s`; null for none. */
export function plainLine(raw: ProgressEvent, opts: { timeZone?: TimeZoneChoice; color?: boolean } = {}): string | null {
  const event = sanitizeDeep(raw);
  const c = palette(opts.color === true);
  const time = (at: number | undefined): string => (at === undefined ? '' : `${c.dim(formatClock(at, opts.timeZone))} `);
  const attempt = (n: number): string => (n > 1 ? ` (attempt ${n})` : '');
  switch (event.type) {
    case 'run.started':
      return `${time(event.at)}run ${event.runId} started: cluster ${event.cluster}, ${event.nodes.length} node${event.nodes.length === 1 ? '' : 's'} (${event.nodes.join(', ')})`;
    case 'step.started':
      return `${time(event.at)}${event.node} ${event.step} started${attempt(event.attempt)}${event.command === undefined ? '' : `: ${c.dim(`$ ${event.command}`)}`}`;
    case 'step.command':
      return `${time(event.at)}${event.node} ${event.step} ${c.dim(`$ ${event.command}`)}`;
    case 'step.finished': {
      let line = `${time(event.at)}${event.node} ${event.step} ${outcomeWord(event, c)} ${formatDuration(event.durationMs)}${attempt(event.attempt)}`;
      if (event.error !== undefined) {
        line += `: ${event.error.message}`;
        if (event.error.hint !== undefined) line += ` (next: ${event.error.hint})`;
      }
      return line;
    }
    case 'run.state': {
      const extra = [event.leader === undefined ? null : `leader ${event.leader}`, event.downtimeStartedAt === undefined ? null : 'mesh down'].filter((x) => x !== null);
      return `${time(event.at)}state ${c.bold(event.state)}${extra.length > 0 ? ` (${extra.join(', ')})` : ''}`;
    }
    case 'run.finished': {
      const status = event.status === 'done' ? c.green(event.status) : event.status === 'aborted' || event.status === 'stopped' ? c.yellow(event.status) : c.red(event.status);
      return `${time(event.at)}run ${event.runId} ${status}${event.downtimeMs === undefined ? '' : `, mesh downtime ${formatDuration(event.downtimeMs)}`}`;
    }
    case 'warning':
      return `${time(event.at)}${c.yellow('warning')}${event.node === undefined ? '' : ` ${event.node}`}: ${event.message}`;
  }
}

/** One line per event: logs, pipes, CI. */
export function plainReporter(write: Write, opts: ReporterOptions = {}): Reporter {
  const redact = masker(opts);
  return {
    event(event) {
      const line = plainLine(event, opts);
      if (line !== null) write(`${redact(line)}\n`);
    },
    close() {},
  };
}

// ---- live view ------------------------------------------------------------------------------------------------

export interface LiveStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface LiveReporterOptions extends ReporterOptions {
  /** Minimum time between frames (default 100 ms, about 10 frames a second). */
  intervalMs?: number;
  now?: () => number;
  env?: NodeJS.ProcessEnv;
}

interface NodeView {
  name: string;
  running: { step: string; attempt: number; startedAt: number; command?: string } | null;
  last: { step: string; outcome: StepFinishedEvent['outcome']; durationMs: number; message?: string } | null;
  finishedSteps: number;
  leaderSteps: boolean;
}

/** What the live view knows, folded from events; separate from drawing so a frame is a pure function of it. */
export interface LiveState {
  runId: string | null;
  cluster: string | null;
  state: string | null;
  leader: string | null;
  startedAt: number | null;
  downtimeStartedAt: number | null;
  finished: { status: string; at: number; downtimeMs?: number } | null;
  nodes: Map<string, NodeView>;
  warnings: string[];
}

export function emptyLiveState(): LiveState {
  return { runId: null, cluster: null, state: null, leader: null, startedAt: null, downtimeStartedAt: null, finished: null, nodes: new Map(), warnings: [] };
}

function nodeView(s: LiveState, name: string): NodeView {
  let n = s.nodes.get(name);
  if (n === undefined) {
    n = { name, running: null, last: null, finishedSteps: 0, leaderSteps: false };
    s.nodes.set(name, n);
  }
  return n;
}

export function foldLiveState(s: LiveState, raw: ProgressEvent): void {
  const e = sanitizeDeep(raw);
  switch (e.type) {
    case 'run.started':
      s.runId = e.runId;
      s.cluster = e.cluster;
      s.startedAt = e.at;
      for (const n of e.nodes) nodeView(s, n);
      break;
    case 'step.started': {
      const n = nodeView(s, e.node);
      n.running = { step: e.step, attempt: e.attempt, startedAt: e.at, ...(e.command === undefined ? {} : { command: e.command }) };
      if (e.step.startsWith('leader')) n.leaderSteps = true;
      break;
    }
    case 'step.command': {
      const n = nodeView(s, e.node);
      if (n.running !== null) n.running.command = e.command;
      else n.running = { step: e.step, attempt: 1, startedAt: e.at, command: e.command };
      break;
    }
    case 'step.finished': {
      const n = nodeView(s, e.node);
      n.running = null;
      n.last = { step: e.step, outcome: e.outcome, durationMs: e.durationMs, ...(e.error === undefined ? {} : { message: e.error.message }) };
      if (e.outcome === 'done') n.finishedSteps++;
      break;
    }
    case 'run.state':
      s.state = e.state;
      if (e.runId !== undefined) s.runId = e.runId;
      if (e.leader !== undefined) s.leader = e.leader;
      if (e.downtimeStartedAt !== undefined) s.downtimeStartedAt = e.downtimeStartedAt;
      break;
    case 'run.finished':
      s.finished = { status: e.status, at: e.at, ...(e.downtimeMs === undefined ? {} : { downtimeMs: e.downtimeMs }) };
      for (const n of s.nodes.values()) n.running = null;
      break;
    case 'warning':
      s.warnings.push(e.node === undefined ? e.message : `${e.node}: ${e.message}`);
      if (s.warnings.length > 3) s.warnings.shift();
      break;
  }
}

/** The frame's lines: header, the leader then the followers, the last warnings. */
export function renderLiveFrame(s: LiveState, now: number, opts: { color?: boolean; columns?: number } = {}): string[] {
  const c = palette(opts.color === true);
  // A pseudo-terminal may report 0 columns: that means unknown, not zero.
  const columns = opts.columns !== undefined && opts.columns > 0 ? opts.columns : 100;
  const width = Math.max(20, columns - 1);
  const head: string[] = [c.bold(`regen ${s.runId ?? ''}`.trim())];
  if (s.cluster !== null) head.push(`cluster ${s.cluster}`);
  if (s.state !== null) head.push(`state ${s.state}`);
  if (s.startedAt !== null) head.push(`elapsed ${formatDuration((s.finished?.at ?? now) - s.startedAt)}`);
  if (s.finished?.downtimeMs !== undefined) head.push(`mesh downtime ${formatDuration(s.finished.downtimeMs)}`);
  else if (s.downtimeStartedAt !== null) head.push(c.yellow(`mesh down ${formatDuration((s.finished?.at ?? now) - s.downtimeStartedAt)}`));
  if (s.finished !== null) head.push(s.finished.status === 'done' ? c.green(s.finished.status) : c.red(s.finished.status));
  // The header wraps between items rather than being cut: every item is something the operator watches.
  const lines: string[] = [];
  for (const item of head) {
    const last = lines.at(-1);
    if (last !== undefined && visibleWidth(last) + 3 + visibleWidth(item) <= width) lines[lines.length - 1] = `${last} · ${item}`;
    else lines.push(truncate(item, width));
  }

  const leader = s.leader ?? [...s.nodes.values()].find((n) => n.leaderSteps)?.name ?? null;
  const nodes = [...s.nodes.values()].sort((a, b) => Number(b.name === leader) - Number(a.name === leader));
  const nameWidth = Math.max(0, ...nodes.map((n) => n.name.length));
  for (const n of nodes) {
    const mark = n.name === leader ? c.cyan('★') : ' ';
    // Before the leader check nobody is a follower yet: calling them so would mislead during preflight.
    const role = leader === null ? '        ' : n.name === leader ? 'leader  ' : 'follower';
    let detail: string;
    if (n.running !== null) {
      const attempt = n.running.attempt > 1 ? ` (attempt ${n.running.attempt})` : '';
      detail = `${padEnd(n.running.step, 16)} ${c.cyan('…')} ${formatDuration(now - n.running.startedAt)}${attempt}`;
      if (n.running.command !== undefined) detail += `  ${c.dim(`$ ${n.running.command}`)}`;
    } else if (n.last !== null) {
      const sym = { done: c.green('✓'), failed: c.red('✗'), unknown: c.yellow('?'), skipped: c.dim('-') }[n.last.outcome];
      detail = `${padEnd(n.last.step, 16)} ${sym} ${formatDuration(n.last.durationMs)}`;
      if (n.last.message !== undefined) detail += `  ${c.red(n.last.message)}`;
    } else {
      detail = c.dim('· waiting');
    }
    lines.push(truncate(` ${mark} ${padEnd(n.name, nameWidth)}  ${c.dim(role)}  ${detail}`, width));
  }
  for (const w of s.warnings) lines.push(truncate(` ${c.yellow('!')} ${w}`, width));
  return lines;
}

const HIDE_CURSOR = '\u001b[?25l';
const SHOW_CURSOR = '\u001b[?25h';

/**
 * On a terminal, a view redrawn in place (throttled, ticking while a step runs so clocks move); elsewhere the
 * plain reporter. close() draws the final frame and leaves it on screen.
 */
export function liveReporter(stream: LiveStream, opts: LiveReporterOptions = {}): Reporter {
  const color = opts.color ?? useColor(stream, opts.env);
  if (stream.isTTY !== true) return plainReporter((t) => stream.write(t), { ...opts, color });
  const redact = masker(opts);
  const now = opts.now ?? Date.now;
  const interval = opts.intervalMs ?? 100;
  const state = emptyLiveState();
  let drawnLines = 0;
  let lastDraw = -Infinity;
  let timer: NodeJS.Timeout | null = null;
  let ticker: NodeJS.Timeout | null = null;
  let closed = false;
  let suspended = false;
  const restoreCursor = (): void => {
    stream.write(SHOW_CURSOR);
  };

  const draw = (): void => {
    timer = null;
    lastDraw = now();
    const lines = renderLiveFrame(state, lastDraw, { color, ...(stream.columns === undefined ? {} : { columns: stream.columns }) }).map(redact);
    // Up to the first line of the previous frame, clear below, write the new one in a single write.
    const up = drawnLines > 0 ? `\u001b[${drawnLines}F\u001b[J` : HIDE_CURSOR;
    stream.write(`${up}${lines.join('\n')}\n`);
    drawnLines = lines.length;
  };
  const schedule = (): void => {
    if (closed || suspended || timer !== null) return;
    const wait = Math.max(0, lastDraw + interval - now());
    timer = setTimeout(draw, wait);
    timer.unref();
  };
  const anyRunning = (): boolean => [...state.nodes.values()].some((n) => n.running !== null);
  const tick = (): void => {
    if (ticker === null && anyRunning()) {
      ticker = setInterval(() => {
        if (state.finished === null && (anyRunning() || state.downtimeStartedAt !== null)) schedule();
      }, interval);
      ticker.unref();
    }
  };
  process.once('exit', restoreCursor);

  return {
    event(event) {
      if (closed) return;
      foldLiveState(state, event);
      schedule();
      tick();
    },
    suspend() {
      if (closed || suspended) return;
      suspended = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      if (drawnLines > 0) stream.write(`\u001b[${drawnLines}F\u001b[J`);
      drawnLines = 0;
      restoreCursor();
    },
    resume() {
      if (!suspended) return;
      suspended = false;
      stream.write(HIDE_CURSOR);
      schedule();
    },
    close() {
      if (closed) return;
      closed = true;
      if (timer !== null) clearTimeout(timer);
      if (ticker !== null) clearInterval(ticker);
      draw();
      restoreCursor();
      process.removeListener('exit', restoreCursor);
    },
  };
}
