/**
 * regen status / runs / log: read-only views of the database. They never connect to a node and never take the lock.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { applies, CATALOGUE, columnsForRole, statusColumns, stepEntry } from '../../machines/catalogue.js';
import { UsageError } from '../../machines/errors.js';
import { catalogStatus } from '../../machines/catalog-census.js';
import { processAlive } from '../../store/process.js';
import type { JournalRow, RunRow, Store } from '../../store/types.js';
import type { CellState, StatusView } from '../../adapters/terminal/index.js';
import type { Io } from '../io.js';
import { EXIT } from '../exit-codes.js';
import { sharedRedactor } from '../wiring.js';
import { jsonSafe } from '../../adapters/terminal/sanitize.js';

/** Matrix columns: the catalogue's status columns, in the order of the procedure. */
export const STATUS_COLUMNS: readonly string[] = statusColumns();
const LEADER_COLUMNS = columnsForRole('leader');
const FOLLOWER_COLUMNS = columnsForRole('follower');

function columnOf(step: string): string {
  return stepEntry(step)?.column ?? step;
}

/** The database, read-only; null when there is none yet (nothing was ever recorded there: not a damaged database). */
async function openForReading(db: string | undefined, env: NodeJS.ProcessEnv): Promise<Store | null> {
  const { openStore, defaultDbPath } = await import('../../store/store.js');
  const path = db ?? defaultDbPath(env);
  if (path !== ':memory:' && !existsSync(path)) return null;
  return openStore(path, { readonly: true });
}

async function noDatabase(db: string | undefined, env: NodeJS.ProcessEnv): Promise<UsageError> {
  const { defaultDbPath } = await import('../../store/store.js');
  return new UsageError(`no run recorded: there is no database at ${db ?? defaultDbPath(env)} yet`, 'regen start records its runs there; --db or $REGEN_DB select another database');
}

function holderAlive(store: Store, run: RunRow): boolean {
  const lock = store.getLock(run.cluster);
  if (!lock || lock.runId !== run.id) return false;
  if (lock.host !== hostname()) return Date.now() - lock.heartbeatAt < 30_000;
  return processAlive(lock.pid);
}

/** Build the status view of one run from the store (pure reads). */
export function buildStatusView(store: Store, run: RunRow, now = Date.now()): StatusView {
  const journal = store.journal(run.id);
  const nodes = store.listNodes(run.id);
  const alive = run.status === 'running' && holderAlive(store, run);
  const latest = new Map<string, JournalRow>();
  for (const r of journal) {
    const key = `${r.node}|${columnOf(r.step)}`;
    const prev = latest.get(key);
    if (!prev || r.id > prev.id) latest.set(key, r);
  }
  const cell = (r: JournalRow | undefined): CellState => {
    if (!r) return 'pending';
    if (r.outcome === 'done') return 'done';
    if (r.outcome === 'skipped') return 'skipped';
    if (r.outcome === 'failed') return 'failed';
    if (r.outcome === 'unknown') return 'unknown';
    // An intent without outcome: running if its process is alive, else interrupted (resume probes it).
    return alive ? 'running' : 'unknown';
  };
  const leader = run.leader;
  // The raft recovery column exists only for meshes of several servers.
  const shape = { meshServers: nodes.filter((n) => n.kind === 'server').length, revoke: true };
  const columns = STATUS_COLUMNS.filter((c) => CATALOGUE.some((e) => e.column === c && applies(e, shape)));
  const viewNodes = nodes
    .map((n) => {
      const role = n.role ?? (leader === null ? null : n.name === leader ? 'leader' : 'follower');
      const cols = role === 'leader' ? LEADER_COLUMNS : FOLLOWER_COLUMNS;
      const cells: Record<string, CellState> = {};
      for (const c of columns) if (cols.has(c) || role === null) cells[c] = cell(latest.get(`${n.name}|${c}`));
      return { name: n.name, role, kind: n.kind, cells };
    })
    .sort((a, b) => Number(b.role === 'leader') - Number(a.role === 'leader'));
  const failedRow = [...journal].reverse().find((r) => r.outcome === 'failed' || r.outcome === 'unknown');
  const next: StatusView['next'] = [];
  if (run.status === 'failed' || run.status === 'stopped' || run.status === 'needs-operator') {
    const hint = run.error?.hint;
    if (run.status === 'stopped' || run.error?.kind === 'aborted') {
      next.push({ command: `regen resume ${run.id}`, why: 'stopped by the operator; the commands in flight finished and are journaled' });
    } else {
      // A hint that is a command goes here as it is; one in words stays under the error (renderStatus shows it).
      if (hint !== undefined && /^regen [a-z]/.test(hint) && !/^regen resume\s*$/.test(hint) && !hint.includes(';')) next.push({ command: hint, why: 'what the error asks for' });
      next.push({ command: `regen resume ${run.id}`, why: 'continue from the last completed step (interrupted steps are checked first)' });
    }
  } else if (run.status === 'running' && !alive) {
    const lock = store.getLock(run.cluster);
    // resume takes over by itself the lock of a dead process of this run on this host; anything else needs unlock.
    if (lock && (lock.host !== hostname() || lock.runId !== run.id)) {
      next.push({ command: `regen unlock --cluster ${run.cluster}`, why: `the lock is held by run ${lock.runId} (pid ${lock.pid} on ${lock.host}); unlock only if that process is gone` });
    }
    const gone = lock && lock.runId === run.id && lock.host === hostname() ? ` (its process, pid ${lock.pid}, is gone: resume takes its lock over)` : '';
    next.push({ command: `regen resume ${run.id}`, why: `the run was interrupted${gone}; resume checks the interrupted step on its node` });
  } else if (run.status === 'running') {
    next.push({ command: `regen status ${run.id} --watch`, why: 'the run is in progress' });
  }
  const view: StatusView = {
    runId: run.id,
    cluster: run.cluster,
    status: run.status,
    state: run.state,
    leader,
    startedAt: run.createdAt,
    finishedAt: run.finishedAt,
    now,
    downtimeStartedAt: run.downtimeStartedAt,
    downtimeEndedAt: run.downtimeEndedAt,
    recoveries: run.recoveries,
    steps: [...columns],
    nodes: viewNodes,
    lastError: run.error
      ? {
          error: run.error,
          ...(run.error.node !== undefined ? { node: run.error.node } : failedRow ? { node: failedRow.node } : {}),
          ...(failedRow ? { step: failedRow.step, at: failedRow.endedAt ?? failedRow.startedAt } : {}),
        }
      : null,
    next,
    catalog: catalogStatus(journal),
  };
  return view;
}

function pickRun(store: Store, runId: string | undefined): RunRow {
  const run = runId ? store.getRun(runId) : (store.latestUnfinishedRun() ?? store.listRuns()[0] ?? null);
  if (!run) throw new UsageError(runId ? `no run ${runId} in ${store.path}` : `no run recorded in ${store.path}`, 'regen runs lists the runs; --db selects another database');
  return run;
}

export async function status(o: { db: string | undefined; json: boolean; run: string | undefined; watch: boolean }, io: Io): Promise<number> {
  const { renderStatus } = await import('../../adapters/terminal/status.js');
  const redactor = await sharedRedactor();
  const once = async (): Promise<RunRow> => {
    const store = await openForReading(o.db, io.env);
    if (store === null) throw await noDatabase(o.db, io.env);
    try {
      const run = pickRun(store, o.run);
      const view = buildStatusView(store, run);
      if (o.json) io.out(`${redactor.redact(jsonSafe(JSON.stringify({ type: 'status', ...view })))}\n`);
      else io.out(redactor.redact(renderStatus(view, { color: io.isTTY && !io.env['NO_COLOR'] })));
      return run;
    } finally {
      store.close();
    }
  };
  let run = await once();
  if (!o.watch) return EXIT.ok;
  // --watch: redraw every second until the run stops (bounded: a day at most) or Ctrl-C.
  let stop = false;
  const dispose = io.onInterrupt(() => (stop = true));
  try {
    for (let i = 0; i < 86_400 && !stop && run.status === 'running'; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      if (io.isTTY) io.out('\x1b[H\x1b[2J');
      run = await once();
    }
  } finally {
    dispose();
  }
  return EXIT.ok;
}

export async function runs(o: { db: string | undefined; json: boolean }, io: Io): Promise<number> {
  const { renderRuns } = await import('../../adapters/terminal/status.js');
  const store = await openForReading(o.db, io.env);
  // No database yet is no run yet, as an empty one: the same answer.
  if (store === null) {
    if (!o.json) io.out(renderRuns([], { color: false }));
    return EXIT.ok;
  }
  try {
    const rows = store.listRuns();
    if (o.json) for (const r of rows) io.out(`${jsonSafe(JSON.stringify({ type: 'run', ...r }))}\n`);
    else io.out(renderRuns(rows, { color: io.isTTY && !io.env['NO_COLOR'] }));
    return EXIT.ok;
  } finally {
    store.close();
  }
}

export async function log(o: { db: string | undefined; json: boolean; run: string | undefined; node: string | undefined; limit: number }, io: Io): Promise<number> {
  const { renderLog } = await import('../../adapters/terminal/status.js');
  const store = await openForReading(o.db, io.env);
  if (store === null) throw await noDatabase(o.db, io.env);
  try {
    const run = pickRun(store, o.run);
    const rows = store.listAudit(run.id, { ...(o.node === undefined ? {} : { node: o.node }), limit: o.limit });
    if (o.json) for (const r of rows) io.out(`${jsonSafe(JSON.stringify({ type: 'command', ...r }))}\n`);
    else io.out(renderLog(rows, { color: io.isTTY && !io.env['NO_COLOR'] }));
    return EXIT.ok;
  } finally {
    store.close();
  }
}
