/**
 * `regen status`, `regen runs` and `regen log` as text. Pure: plain data in, a string out. The CLI builds the
 * view from the store and writes the result through the redactor.
 */
import type { ErrorRecord } from '../../machines/errors.js';
import type { AuditRow, RunRow, RunStatus } from '../../store/types.js';
import { formatClock, formatDateTime, formatDuration, padEnd, palette } from './format.js';
import type { TimeZoneChoice } from './format.js';
import { sanitizeDeep } from './sanitize.js';
import { renderCatalog } from './catalog-status.js';
import type { CatalogStatus } from '../../machines/catalog-census.js';

export type CellState = 'done' | 'failed' | 'running' | 'pending' | 'unknown' | 'skipped';

export interface StatusNode {
  name: string;
  role: 'leader' | 'follower' | null;
  kind: 'server' | 'agent' | null;
  /** Step name → state; a step absent here does not apply to the node (shown blank). */
  cells: Record<string, CellState>;
}

export interface StatusView {
  runId: string;
  cluster: string;
  status: RunStatus;
  /** Machine state value, e.g. "followers.join". */
  state: string;
  leader: string | null;
  directoryServer?: string | null;
  startedAt: number;
  finishedAt: number | null;
  /** The time the view was taken (elapsed and downtime are measured to it while the run is unfinished). */
  now: number;
  downtimeStartedAt: number | null;
  downtimeEndedAt: number | null;
  recoveries?: number;
  /** Step names in procedure order: the matrix's columns. */
  steps: string[];
  nodes: StatusNode[];
  lastError: { step?: string; node?: string; at?: number; error: ErrorRecord } | null;
  /** What to do next, each an exact command with the reason. */
  next: Array<{ command: string; why: string }>;
  /** The catalog before the wipe and its comparison after the run (machines/catalog-census.ts). */
  catalog?: CatalogStatus;
}

export interface RenderOptions {
  color?: boolean;
  timeZone?: TimeZoneChoice;
}

const SYMBOL: Record<CellState, string> = { done: '✓', failed: '✗', running: '…', pending: '·', unknown: '?', skipped: '-' };

export function renderStatus(raw: StatusView, opts: RenderOptions = {}): string {
  const view = sanitizeDeep(raw);
  const c = palette(opts.color === true);
  const tz = opts.timeZone ?? 'local';
  const end = view.finishedAt ?? view.now;
  const statusText =
    view.status === 'done' ? c.green(view.status) : view.status === 'running' ? c.cyan(view.status) : view.status === 'aborted' || view.status === 'stopped' ? c.yellow(view.status) : c.red(view.status);

  let downtime = 'not started';
  if (view.downtimeStartedAt !== null) {
    const until = view.downtimeEndedAt ?? end;
    downtime = `${formatDuration(until - view.downtimeStartedAt)}${view.downtimeEndedAt === null ? (view.finishedAt === null ? ' so far' : ' (mesh not restored)') : ''}`;
  }
  let leader = view.leader ?? 'not chosen yet';
  if (view.leader !== null && view.directoryServer !== undefined && view.directoryServer !== null) {
    leader += view.leader === view.directoryServer ? ' (the directory server)' : ` (directory server: ${view.directoryServer})`;
  }
  const header: Array<[string, string]> = [
    ['Run', view.runId],
    ['Cluster', view.cluster],
    ['Status', `${statusText}, state ${view.state}`],
    ['Leader', leader],
    ['Started', formatDateTime(view.startedAt, tz)],
    ['Elapsed', formatDuration(end - view.startedAt) + (view.finishedAt === null ? '' : ` (finished ${formatDateTime(view.finishedAt, tz)})`)],
    ['Mesh downtime', downtime],
  ];
  if (view.recoveries !== undefined && view.recoveries > 0) header.push(['Resumed', `${view.recoveries} time${view.recoveries === 1 ? '' : 's'}`]);
  const labelWidth = Math.max(...header.map(([k]) => k.length)) + 2;
  const out = header.map(([k, v]) => `${padEnd(`${k}`, labelWidth)}${v}`);

  out.push('');
  out.push(`Steps: ${view.steps.map((s, i) => `${i + 1} ${s}`).join('  ')}`);
  const nameWidth = Math.max(4, ...view.nodes.map((n) => n.name.length));
  const colWidth = Math.max(...view.steps.map((_, i) => String(i + 1).length));
  const cols = view.steps.map((_, i) => String(i + 1).padStart(colWidth)).join(' ');
  out.push(`${padEnd('NODE', nameWidth)}  ${padEnd('ROLE', 8)}  ${padEnd('KIND', 6)}  ${cols}`);
  for (const n of view.nodes) {
    const cells = view.steps
      .map((s) => {
        const st = n.cells[s];
        if (st === undefined) return ' '.repeat(colWidth);
        const sym = SYMBOL[st].padStart(colWidth);
        return st === 'done' ? c.green(sym) : st === 'failed' ? c.red(sym) : st === 'unknown' ? c.yellow(sym) : st === 'running' ? c.cyan(sym) : c.dim(sym);
      })
      .join(' ');
    out.push(`${padEnd(n.name, nameWidth)}  ${padEnd(n.role ?? '-', 8)}  ${padEnd(n.kind ?? '-', 6)}  ${cells}`.trimEnd());
  }
  out.push(c.dim(`(${(Object.keys(SYMBOL) as CellState[]).map((k) => `${SYMBOL[k]} ${k}`).join('  ')})`));

  out.push(...renderCatalog(view.catalog, c));
  if (view.lastError !== null) {
    const e = view.lastError;
    const where = [e.node ?? e.error.node, e.step].filter((x) => x !== undefined).join(' ');
    out.push('');
    out.push(`${c.red('Last error')}${where === '' ? '' : ` (${where}${e.at === undefined ? '' : `, ${formatClock(e.at, tz)}`})`}: ${e.error.message}`);
    if (e.error.hint !== undefined) out.push(`  hint: ${e.error.hint}`);
  }
  if (view.next.length > 0) {
    out.push('');
    out.push(c.bold('Next:'));
    for (const n of view.next) out.push(`  ${n.command}${n.why === '' ? '' : `    ${c.dim(`# ${n.why}`)}`}`);
  }
  return `${out.join('\n')}\n`;
}

/** A table of runs, newest first as given. */
export function renderRuns(raw: RunRow[], opts: RenderOptions & { now?: number } = {}): string {
  const rows = sanitizeDeep(raw);
  if (rows.length === 0) return 'No runs recorded.\n';
  const c = palette(opts.color === true);
  const tz = opts.timeZone ?? 'local';
  const now = opts.now ?? Date.now();
  const table = rows.map((r) => {
    const end = r.finishedAt ?? now;
    const down = r.downtimeStartedAt === null ? '-' : formatDuration((r.downtimeEndedAt ?? end) - r.downtimeStartedAt);
    return [r.id, r.cluster, r.status, r.state, formatDateTime(r.createdAt, tz), formatDuration(end - r.createdAt), down, r.leader ?? '-'];
  });
  const head = ['RUN', 'CLUSTER', 'STATUS', 'STATE', 'STARTED', 'ELAPSED', 'DOWNTIME', 'LEADER'];
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => (row[i] ?? '').length)));
  const fmt = (row: string[], colorStatus: boolean): string =>
    row
      .map((cell, i) => {
        const padded = padEnd(cell, widths[i] ?? 0);
        if (!colorStatus || i !== 2) return padded;
        return cell === 'done' ? c.green(padded) : cell === 'running' ? c.cyan(padded) : cell === 'aborted' || cell === 'stopped' ? c.yellow(padded) : c.red(padded);
      })
      .join('  ')
      .trimEnd();
  return `${[fmt(head, false), ...table.map((row) => fmt(row, true))].join('\n')}\n`;
}

/** The command audit: what ran where, how it ended, and the tail of what it printed. */
export function renderLog(raw: AuditRow[], opts: RenderOptions = {}): string {
  const rows = sanitizeDeep(raw);
  if (rows.length === 0) return 'No commands recorded.\n';
  const c = palette(opts.color === true);
  const tz = opts.timeZone ?? 'local';
  const nodeWidth = Math.max(...rows.map((r) => r.node.length));
  const out: string[] = [];
  for (const r of rows) {
    const result =
      r.outcome === 'unreachable' ? c.red('unreachable') : r.outcome === 'unknown' ? c.yellow('unknown') : r.exitCode === 0 ? c.green('exit 0') : c.red(`exit ${r.exitCode ?? '?'}`);
    out.push(`${c.dim(formatClock(r.at, tz))} ${padEnd(r.node, nodeWidth)}  ${padEnd(result, 11)} ${padEnd(formatDuration(r.durationMs), 6)} $ ${r.command}`);
    for (const [label, text] of [['stdout', r.stdoutTail], ['stderr', r.stderrTail]] as const) {
      const t = text.trimEnd();
      if (t === '') continue;
      for (const line of t.split('\n')) out.push(c.dim(`    ${label}| ${line}`));
    }
  }
  return `${out.join('\n')}\n`;
}
