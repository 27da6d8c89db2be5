/** The step journal: an intent row committed before each remote effect, then its probe and its outcome. */
import { StoreError } from '../machines/errors.js';
import { prepare, type Tables } from './bind.js';
import type { JournalRow, ProbeResult, StepOutcome } from './types.js';

interface JournalRecord {
  id: number;
  run_id: string;
  step: string;
  node: string;
  attempt: number;
  started_at: number;
  ended_at: number | null;
  outcome: StepOutcome | null;
  probe: ProbeResult | null;
  detail: string | null;
}

const toJournal = (r: JournalRecord): JournalRow => ({
  id: r.id,
  runId: r.run_id,
  step: r.step,
  node: r.node,
  attempt: r.attempt,
  startedAt: r.started_at,
  endedAt: r.ended_at,
  outcome: r.outcome,
  probe: r.probe,
  detail: r.detail,
});

function statements(t: Tables) {
  const p = <R>(sql: string) => prepare<R>(t.db, sql);
  return {
    beginStep: p(`INSERT INTO journal (run_id, step, node, attempt, started_at) VALUES (@runId, @step, @node, @attempt, @at)`),
    recordProbe: p('UPDATE journal SET probe = @probe WHERE id = @id'),
    endStep: p('UPDATE journal SET outcome = @outcome, detail = @detail, ended_at = @at WHERE id = @id'),
    journal: p<JournalRecord>(
      `SELECT * FROM journal WHERE run_id = @runId AND (@step IS NULL OR step = @step) AND (@node IS NULL OR node = @node)
       ORDER BY id`,
    ),
    openSteps: p<JournalRecord>('SELECT * FROM journal WHERE run_id = @runId AND outcome IS NULL ORDER BY id'),
  };
}

export class JournalTable {
  readonly #t: Tables;
  readonly #q: ReturnType<typeof statements>;

  constructor(t: Tables) {
    this.#t = t;
    this.#q = statements(t);
  }

  beginStep(s: { runId: string; step: string; node: string; attempt: number; at?: number }): number {
    const res = this.#q.beginStep.run(this.#t.b.bind({ runId: s.runId, step: s.step, node: s.node, attempt: s.attempt, at: s.at ?? this.#t.now() }));
    return Number(res.lastInsertRowid);
  }

  recordProbe(id: number, probe: ProbeResult): void {
    if (this.#q.recordProbe.run(this.#t.b.bind({ id, probe })).changes === 0) throw new StoreError(`no journal entry ${id}`);
  }

  endStep(id: number, outcome: StepOutcome, detail?: unknown, at?: number): void {
    const { b, now } = this.#t;
    const res = this.#q.endStep.run(b.bind({ id, outcome, detail: detail === undefined ? null : b.json(detail), at: at ?? now() }));
    if (res.changes === 0) throw new StoreError(`no journal entry ${id}`);
  }

  journal(runId: string, filter: { step?: string; node?: string } = {}): JournalRow[] {
    return this.#q.journal.all(this.#t.b.bind({ runId, step: filter.step ?? null, node: filter.node ?? null })).map(toJournal);
  }

  openSteps(runId: string): JournalRow[] {
    return this.#q.openSteps.all(this.#t.b.bind({ runId })).map(toJournal);
  }
}
