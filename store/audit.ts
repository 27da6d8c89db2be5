/** The command audit: every remote command of a run, its exit and the tails of its output (redacted). */
import { prepare, type Tables } from './bind.js';
import type { AuditRow } from './types.js';

interface AuditRecord {
  id: number;
  run_id: string;
  node: string;
  at: number;
  command: string;
  exit_code: number | null;
  duration_ms: number;
  outcome: AuditRow['outcome'];
  stdout_tail: string;
  stderr_tail: string;
}

const toAudit = (r: AuditRecord): AuditRow => ({
  id: r.id,
  runId: r.run_id,
  node: r.node,
  at: r.at,
  command: r.command,
  exitCode: r.exit_code,
  durationMs: r.duration_ms,
  outcome: r.outcome,
  stdoutTail: r.stdout_tail,
  stderrTail: r.stderr_tail,
});

function statements(t: Tables) {
  const p = <R>(sql: string) => prepare<R>(t.db, sql);
  return {
    insertAudit: p(
      `INSERT INTO audit (run_id, node, at, command, exit_code, duration_ms, outcome, stdout_tail, stderr_tail)
       VALUES (@runId, @node, @at, @command, @exitCode, @durationMs, @outcome, @stdoutTail, @stderrTail)`,
    ),
    // The newest @limit entries (-1: all), oldest first.
    listAudit: p<AuditRecord>(
      `SELECT * FROM (SELECT * FROM audit WHERE run_id = @runId AND (@node IS NULL OR node = @node)
         ORDER BY id DESC LIMIT @limit) ORDER BY id`,
    ),
  };
}

export class AuditTable {
  readonly #t: Tables;
  readonly #q: ReturnType<typeof statements>;

  constructor(t: Tables) {
    this.#t = t;
    this.#q = statements(t);
  }

  audit(a: Omit<AuditRow, 'id' | 'at'> & { at?: number }): void {
    const { runId, node, command, exitCode, durationMs, outcome, stdoutTail, stderrTail } = a;
    this.#q.insertAudit.run(this.#t.b.bind({ runId, node, at: a.at ?? this.#t.now(), command, exitCode, durationMs, outcome, stdoutTail, stderrTail }));
  }

  listAudit(runId: string, opts: { node?: string; limit?: number } = {}): AuditRow[] {
    return this.#q.listAudit.all(this.#t.b.bind({ runId, node: opts.node ?? null, limit: opts.limit ?? -1 })).map(toAudit);
  }
}
