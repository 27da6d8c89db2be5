/**
 * Durable steps: at-least-once execution, observe before act.
 *
 * Every remote effect is bracketed by an intent row (committed before the effect) and an outcome row (after).
 * When a step is entered again (an invoked actor restarted on resume, or a retry), the journal decides:
 * - a recorded `done` is returned as is: the effect is never applied twice;
 * - an intent without outcome, or an `unknown` outcome, is settled by the step's read-only probe
 *   (done → recorded as done; not done → applied again; unknown → the operator decides);
 * - otherwise the effect is applied under a new intent.
 * A dropped connection during the effect is an unknown outcome: the probe runs right away when the node answers,
 * and on resume when it does not.
 */
import { NeedsOperatorError, OutcomeUnknownError, RegenError, toErrorRecord, type ErrorRecord } from './errors.js';
import type { JournalRow, Store } from '../store/types.js';

export type Probe<T> = { state: 'done'; result: T } | { state: 'not-done' } | { state: 'unknown'; why: string };

export interface StepSpec<T> {
  /** Step name as journaled (one of STEP_NAMES). */
  step: string;
  node: string;
  /** Iteration of a retry unit (wipe + regenerate); 1 otherwise. */
  round?: number;
  /** Read-only: is the effect already present? */
  probe: () => Promise<Probe<T>>;
  /** The effect; returns a JSON-safe, secret-free result kept in the journal. */
  apply: () => Promise<T>;
  /** Probe before the first apply too (for effects that are not idempotent, e.g. setup). */
  probeFirst?: boolean;
}

export interface JournalHooks {
  /** Called after every journal write; tests use it to crash at that exact point. */
  afterWrite?: (what: 'intent' | 'outcome' | 'probe', row: { step: string; node: string; round: number }) => void;
  /** Progress reporting. */
  onStart?: (e: { step: string; node: string; round: number; at: number }) => void;
  onFinish?: (e: { step: string; node: string; round: number; at: number; durationMs: number; outcome: 'done' | 'failed' | 'unknown' | 'skipped'; error?: ErrorRecord }) => void;
}

export interface Journal {
  store: Store;
  runId: string;
  now: () => number;
  hooks?: JournalHooks;
  /** Checked before every effect: true stops the run before the next command (first Ctrl-C), resumable. */
  shouldStop?: () => boolean;
}

function latest(rows: JournalRow[]): JournalRow | undefined {
  return rows.reduce<JournalRow | undefined>((a, r) => (a === undefined || r.id > a.id ? r : a), undefined);
}

function parseDetail<T>(row: JournalRow): T {
  if (row.detail === null) return undefined as T;
  const d = JSON.parse(row.detail) as { result?: T };
  return d.result as T;
}

export async function durableStep<T>(j: Journal, spec: StepSpec<T>, reapplyLeft = 1): Promise<T> {
  const round = spec.round ?? 1;
  const key = { step: spec.step, node: spec.node, round };
  const rows = j.store.journal(j.runId, { step: spec.step, node: spec.node }).filter((r) => r.attempt === round);
  const last = latest(rows);
  const started = j.now();

  if (last && (last.outcome === 'done' || last.outcome === 'skipped')) return parseDetail<T>(last);

  if (last && (last.outcome === null || last.outcome === 'unknown')) {
    // Interrupted earlier: observe, never blindly repeat.
    const settled = await settleByProbe(j, spec, last, key, started);
    if (settled.done) return settled.result as T;
  } else if (spec.probeFirst) {
    const p = await spec.probe();
    if (p.state === 'done') {
      const id = j.store.beginStep({ runId: j.runId, step: spec.step, node: spec.node, attempt: round, at: started });
      j.store.recordProbe(id, 'done');
      j.store.endStep(id, 'skipped', { result: p.result, why: 'probe found the effect already present' }, j.now());
      j.hooks?.afterWrite?.('outcome', key);
      j.hooks?.onFinish?.({ ...key, at: j.now(), durationMs: j.now() - started, outcome: 'skipped' });
      return p.result;
    }
    if (p.state === 'unknown') throw new NeedsOperatorError(`${spec.step} on ${spec.node}: cannot tell whether it is needed: ${p.why}`, { node: spec.node });
  }

  if (j.shouldStop?.()) {
    throw new RegenError('aborted', `stopped by the operator before ${spec.step} on ${spec.node}; nothing of that step was started`, { node: spec.node, hint: 'regen resume' });
  }
  j.hooks?.onStart?.({ ...key, at: started });
  const id = j.store.beginStep({ runId: j.runId, step: spec.step, node: spec.node, attempt: round, at: started });
  j.hooks?.afterWrite?.('intent', key);
  try {
    const result = await spec.apply();
    j.store.endStep(id, 'done', { result }, j.now());
    j.hooks?.afterWrite?.('outcome', key);
    j.hooks?.onFinish?.({ ...key, at: j.now(), durationMs: j.now() - started, outcome: 'done' });
    return result;
  } catch (err) {
    if (err instanceof OutcomeUnknownError) {
      j.store.endStep(id, 'unknown', { error: toErrorRecord(err) }, j.now());
      j.hooks?.afterWrite?.('outcome', key);
      // The node may answer again right away (the transport reconnects): settle it now if we can.
      const row = j.store.journal(j.runId, { step: spec.step, node: spec.node }).find((r) => r.id === id);
      if (row) {
        let settled: { done: boolean; result?: T };
        try {
          settled = await settleByProbe(j, spec, row, key, started);
        } catch (probeErr) {
          if (probeErr instanceof RegenError && probeErr.kind === 'needs-operator') throw probeErr;
          throw new RegenError('unreachable', `${spec.step} on ${spec.node}: the connection dropped while it ran and the node does not answer yet; \`regen resume\` will check whether it took effect`, {
            node: spec.node,
            hint: 'regen resume',
            cause: err,
          });
        }
        if (settled.done) return settled.result as T;
        // The probe says it did not happen: apply once more under a new intent, then leave it to resume.
        if (reapplyLeft > 0) return durableStep(j, spec, reapplyLeft - 1);
        throw new RegenError('step-failed', `${spec.step} on ${spec.node}: the connection dropped twice while it ran and it did not take effect`, {
          node: spec.node,
          hint: 'check the network to the node, then regen resume',
        });
      }
    }
    j.store.endStep(id, 'failed', { error: toErrorRecord(err) }, j.now());
    j.hooks?.afterWrite?.('outcome', key);
    j.hooks?.onFinish?.({ ...key, at: j.now(), durationMs: j.now() - started, outcome: 'failed', error: toErrorRecord(err) });
    throw err;
  }
}

async function settleByProbe<T>(
  j: Journal,
  spec: StepSpec<T>,
  row: JournalRow,
  key: { step: string; node: string; round: number },
  started: number,
): Promise<{ done: boolean; result?: T }> {
  const p = await spec.probe();
  j.store.recordProbe(row.id, p.state);
  j.hooks?.afterWrite?.('probe', key);
  if (p.state === 'done') {
    j.store.endStep(row.id, 'done', { result: p.result, settledBy: 'probe' }, j.now());
    j.hooks?.afterWrite?.('outcome', key);
    j.hooks?.onFinish?.({ ...key, at: j.now(), durationMs: j.now() - started, outcome: 'done' });
    return { done: true, result: p.result };
  }
  if (p.state === 'unknown') {
    throw new NeedsOperatorError(
      `${spec.step} on ${spec.node} was interrupted and its probe cannot tell whether it took effect: ${p.why}`,
      { node: spec.node, hint: `check the node by hand (regen log shows the commands), then run regen resume` },
    );
  }
  if (row.outcome === null) j.store.endStep(row.id, 'unknown', { settledBy: 'probe', probe: 'not-done' }, j.now());
  return { done: false };
}
