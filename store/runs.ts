/** The runs table family: runs, their nodes, and the machine transitions with their snapshots. */
import Database from 'better-sqlite3';
import { StoreError, type ErrorRecord } from '../machines/errors.js';
import { prepare, type Tables } from './bind.js';
import type { NodeRow, RunPatch, RunRow, TransitionRow } from './types.js';

/** The state a run has before its machine records a first transition. */
export const INITIAL_RUN_STATE = 'created';

// Row shapes as SQLite returns them.
interface RunRecord {
  id: string;
  cluster: string;
  status: RunRow['status'];
  state: string;
  machine_version: string;
  inventory_json: string;
  options_json: string;
  leader: string | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  downtime_started_at: number | null;
  downtime_ended_at: number | null;
  recoveries: number;
  error_json: string | null;
}
interface NodeRecord {
  run_id: string;
  name: string;
  ssh_host: string;
  role: NodeRow['role'];
  kind: NodeRow['kind'];
  profile: NodeRow['profile'];
  address: string | null;
  bind_address: string | null;
  fqdn: string | null;
}
interface TransitionRecord {
  run_id: string;
  seq: number;
  at: number;
  from_state: string | null;
  event: string;
  to_state: string;
  snapshot: string | null;
  machine_version: string;
}

const toRun = (r: RunRecord): RunRow => ({
  id: r.id,
  cluster: r.cluster,
  status: r.status,
  state: r.state,
  machineVersion: r.machine_version,
  inventoryJson: r.inventory_json,
  optionsJson: r.options_json,
  leader: r.leader,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  finishedAt: r.finished_at,
  downtimeStartedAt: r.downtime_started_at,
  downtimeEndedAt: r.downtime_ended_at,
  recoveries: r.recoveries,
  error: r.error_json === null ? null : (JSON.parse(r.error_json) as ErrorRecord),
});
const toNode = (r: NodeRecord): NodeRow => ({
  runId: r.run_id,
  name: r.name,
  sshHost: r.ssh_host,
  role: r.role,
  kind: r.kind,
  profile: r.profile,
  address: r.address,
  bindAddress: r.bind_address,
  fqdn: r.fqdn,
});
const toTransition = (r: TransitionRecord): TransitionRow => ({
  runId: r.run_id,
  seq: r.seq,
  at: r.at,
  fromState: r.from_state,
  event: r.event,
  toState: r.to_state,
  snapshot: r.snapshot ?? '',
  machineVersion: r.machine_version,
});

function runStatements(db: Database.Database) {
  const p = <R>(sql: string) => prepare<R>(db, sql);
  return {
    insertRun: p(
      `INSERT INTO runs (id, cluster, status, state, machine_version, inventory_json, options_json, created_at, updated_at)
       VALUES (@id, @cluster, 'running', @state, @machineVersion, @inventoryJson, @optionsJson, @now, @now)`,
    ),
    getRun: p<RunRecord>('SELECT * FROM runs WHERE id = @id'),
    listRuns: p<RunRecord>('SELECT * FROM runs ORDER BY created_at, rowid'),
    latestUnfinished: p<RunRecord>(
      `SELECT * FROM runs WHERE status NOT IN ('done', 'aborted') AND (@cluster IS NULL OR cluster = @cluster)
       ORDER BY created_at DESC, rowid DESC LIMIT 1`,
    ),
    // One statement for every patch shape: a @set_x flag says whether x is in the patch (its value may be null).
    updateRun: p(
      `UPDATE runs SET
         status              = CASE WHEN @set_status THEN @status ELSE status END,
         state               = CASE WHEN @set_state THEN @state ELSE state END,
         leader              = CASE WHEN @set_leader THEN @leader ELSE leader END,
         finished_at         = CASE WHEN @set_finishedAt THEN @finishedAt ELSE finished_at END,
         downtime_started_at = CASE WHEN @set_downtimeStartedAt THEN @downtimeStartedAt ELSE downtime_started_at END,
         downtime_ended_at   = CASE WHEN @set_downtimeEndedAt THEN @downtimeEndedAt ELSE downtime_ended_at END,
         error_json          = CASE WHEN @set_error THEN @error ELSE error_json END,
         updated_at          = @now
       WHERE id = @id`,
    ),
    incrementRecoveries: p<{ recoveries: number }>(
      'UPDATE runs SET recoveries = recoveries + 1, updated_at = @now WHERE id = @id RETURNING recoveries',
    ),
    touchRun: p('UPDATE runs SET updated_at = @now WHERE id = @id'),
  };
}

function nodeAndTransitionStatements(db: Database.Database) {
  const p = <R>(sql: string) => prepare<R>(db, sql);
  return {
    upsertNode: p(
      `INSERT INTO nodes (run_id, name, ssh_host, role, kind, profile, address, bind_address, fqdn)
       VALUES (@runId, @name, @sshHost, @role, @kind, @profile, @address, @bindAddress, @fqdn)
       ON CONFLICT (run_id, name) DO UPDATE SET ssh_host = excluded.ssh_host, role = excluded.role,
         kind = excluded.kind, profile = excluded.profile, address = excluded.address,
         bind_address = excluded.bind_address, fqdn = excluded.fqdn`,
    ),
    listNodes: p<NodeRecord>('SELECT * FROM nodes WHERE run_id = @runId ORDER BY rowid'),
    nextSeq: p<{ seq: number }>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM transitions WHERE run_id = @runId'),
    insertTransition: p(
      `INSERT INTO transitions (run_id, seq, at, from_state, event, to_state, snapshot, machine_version)
       VALUES (@runId, @seq, @at, @fromState, @event, @toState, @snapshot, @machineVersion)`,
    ),
    lastTransition: p<TransitionRecord>('SELECT * FROM transitions WHERE run_id = @runId ORDER BY seq DESC LIMIT 1'),
    listTransitions: p<TransitionRecord>(
      `SELECT run_id, seq, at, from_state, event, to_state, CASE WHEN @withSnapshots THEN snapshot END AS snapshot,
         machine_version
       FROM transitions WHERE run_id = @runId ORDER BY seq`,
    ),
    countTransitions: p<{ n: number }>('SELECT COUNT(*) AS n FROM transitions WHERE run_id = @runId'),
  };
}

export class RunTables {
  readonly #t: Tables;
  readonly #q: ReturnType<typeof runStatements> & ReturnType<typeof nodeAndTransitionStatements>;

  constructor(t: Tables) {
    this.#t = t;
    this.#q = { ...runStatements(t.db), ...nodeAndTransitionStatements(t.db) };
  }

  createRun(run: { id: string; cluster: string; machineVersion: string; inventoryJson: string; optionsJson: string }): RunRow {
    const params = this.#t.b.bind({ ...run, state: INITIAL_RUN_STATE, now: this.#t.now() });
    try {
      this.#q.insertRun.run(params);
    } catch (err) {
      if (err instanceof Database.SqliteError && err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new StoreError(`run ${run.id} already exists in ${this.#t.path}`, 'use a new run id, or resume that run', err);
      }
      throw err;
    }
    const r = this.getRun(run.id);
    if (r === null) throw new StoreError(`no run ${run.id} in ${this.#t.path}`);
    return r;
  }

  getRun(id: string): RunRow | null {
    const r = this.#q.getRun.get(this.#t.b.bind({ id }));
    return r === undefined ? null : toRun(r);
  }

  listRuns(): RunRow[] {
    return this.#q.listRuns.all({}).map(toRun);
  }

  latestUnfinishedRun(cluster?: string): RunRow | null {
    const r = this.#q.latestUnfinished.get(this.#t.b.bind({ cluster: cluster ?? null }));
    return r === undefined ? null : toRun(r);
  }

  updateRun(id: string, patch: RunPatch): void {
    const has = (k: keyof RunPatch) => Object.prototype.hasOwnProperty.call(patch, k) && patch[k] !== undefined;
    const res = this.#q.updateRun.run(
      this.#t.b.bind({
        id,
        now: this.#t.now(),
        set_status: has('status'),
        status: patch.status ?? null,
        set_state: has('state'),
        state: patch.state ?? null,
        set_leader: has('leader'),
        leader: patch.leader ?? null,
        set_finishedAt: has('finishedAt'),
        finishedAt: patch.finishedAt ?? null,
        set_downtimeStartedAt: has('downtimeStartedAt'),
        downtimeStartedAt: patch.downtimeStartedAt ?? null,
        set_downtimeEndedAt: has('downtimeEndedAt'),
        downtimeEndedAt: patch.downtimeEndedAt ?? null,
        set_error: has('error'),
        error: patch.error == null ? null : this.#t.b.json(patch.error),
      }),
    );
    if (res.changes === 0) throw new StoreError(`no run ${id} in ${this.#t.path}`);
  }

  incrementRecoveries(id: string): number {
    const r = this.#q.incrementRecoveries.get(this.#t.b.bind({ id, now: this.#t.now() }));
    if (r === undefined) throw new StoreError(`no run ${id} in ${this.#t.path}`);
    return r.recoveries;
  }

  upsertNode(node: NodeRow): void {
    this.#q.upsertNode.run(this.#t.b.bind({ ...node }));
  }

  listNodes(runId: string): NodeRow[] {
    return this.#q.listNodes.all(this.#t.b.bind({ runId })).map(toNode);
  }

  appendTransition(t: Omit<TransitionRow, 'seq' | 'at'> & { at?: number }): number {
    // IMMEDIATE: the write lock is taken before seq is read, so another process appending to the same run
    // cannot read the same last seq.
    const { b, now } = this.#t;
    return this.#t.db
      .transaction(() => {
        const at = t.at ?? now();
        const { seq } = this.#q.nextSeq.get(b.bind({ runId: t.runId })) ?? { seq: 1 };
        const row = { runId: t.runId, seq, at, fromState: t.fromState, event: t.event, toState: t.toState, snapshot: t.snapshot, machineVersion: t.machineVersion };
        this.#q.insertTransition.run(b.bind(row));
        this.#q.touchRun.run(b.bind({ id: t.runId, now: at }));
        return seq;
      })
      .immediate();
  }

  persistTransition(t: Omit<TransitionRow, 'seq' | 'at'> & { at?: number }, run: RunPatch, nodes: readonly NodeRow[]): number {
    // One IMMEDIATE transaction (the calls inside nest as savepoints): a kill leaves all three or none.
    return this.#t.db
      .transaction(() => {
        const seq = this.appendTransition(t);
        this.updateRun(t.runId, run);
        for (const n of nodes) this.upsertNode(n);
        return seq;
      })
      .immediate();
  }

  lastTransition(runId: string): TransitionRow | null {
    const r = this.#q.lastTransition.get(this.#t.b.bind({ runId }));
    return r === undefined ? null : toTransition(r);
  }

  listTransitions(runId: string, opts: { withSnapshots?: boolean } = {}): TransitionRow[] {
    return this.#q.listTransitions.all(this.#t.b.bind({ runId, withSnapshots: opts.withSnapshots === true })).map(toTransition);
  }

  countTransitions(runId: string): number {
    return this.#q.countTransitions.get(this.#t.b.bind({ runId }))?.n ?? 0;
  }
}
