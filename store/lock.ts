/**
 * The cluster lock in the database: one row per cluster, with the run, pid and host that hold it and a heartbeat.
 * A refusal is a typed conflict (who holds it, and whether that process still lives); cli/ words the advice.
 */
import { LockHeldError, StoreError } from '../machines/errors.js';
import { prepare, type Tables } from './bind.js';
import { processAlive } from './process.js';
import type { LockRow } from './types.js';

interface LockRecord {
  cluster: string;
  run_id: string;
  pid: number;
  host: string;
  acquired_at: number;
  heartbeat_at: number;
}

const toLock = (r: LockRecord): LockRow => ({
  cluster: r.cluster,
  runId: r.run_id,
  pid: r.pid,
  host: r.host,
  acquiredAt: r.acquired_at,
  heartbeatAt: r.heartbeat_at,
});

/** Why a lock was refused, as data. */
export interface LockConflict {
  cluster: string;
  holder: LockRow;
  /** The holder's process: alive or gone on this host; undefined when it was taken on another host. */
  holderAlive: boolean | undefined;
  /** Time since the holder's last heartbeat, ms. */
  heartbeatAgeMs: number;
}

/** The cluster is locked by another run (or by a live process of the same run). */
export class LockConflictError extends LockHeldError {
  readonly conflict: LockConflict;
  constructor(conflict: LockConflict) {
    super(conflictMessage(conflict));
    this.name = 'LockConflictError';
    this.conflict = conflict;
  }
}

export function formatAge(ms: number): string {
  if (ms < 1_000) return 'just now';
  const s = Math.floor(ms / 1_000);
  const parts: Array<[number, string]> = [
    [Math.floor(s / 86_400), 'd'],
    [Math.floor((s % 86_400) / 3_600), 'h'],
    [Math.floor((s % 3_600) / 60), 'm'],
    [s % 60, 's'],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  const shown = parts.slice(first, first + 2).filter(([n]) => n > 0);
  return `${shown.map(([n, u]) => `${n}${u}`).join(' ')} ago`;
}

function conflictMessage(c: LockConflict): string {
  const h = c.holder;
  const who =
    `cluster ${c.cluster} is locked by run ${h.runId} (pid ${h.pid} on ${h.host}) since ` +
    `${new Date(h.acquiredAt).toISOString()}, last heartbeat ${formatAge(c.heartbeatAgeMs)}`;
  if (c.holderAlive === false) return `${who}; the lock looks stale: the process that held it is gone (it is not taken over automatically)`;
  if (c.holderAlive === true) return `${who}; that process is still running`;
  return `${who}; it was taken on another host, so whether it still runs cannot be checked from here`;
}

function statements(t: Tables) {
  const p = <R>(sql: string) => prepare<R>(t.db, sql);
  return {
    getLock: p<LockRecord>('SELECT * FROM locks WHERE cluster = @cluster'),
    insertLock: p(
      `INSERT INTO locks (cluster, run_id, pid, host, acquired_at, heartbeat_at)
       VALUES (@cluster, @runId, @pid, @host, @now, @now)`,
    ),
    takeOverLock: p(
      'UPDATE locks SET pid = @pid, host = @host, acquired_at = @now, heartbeat_at = @now WHERE cluster = @cluster AND run_id = @runId',
    ),
    heartbeat: p('UPDATE locks SET heartbeat_at = @now WHERE cluster = @cluster AND run_id = @runId'),
    releaseLock: p('DELETE FROM locks WHERE cluster = @cluster AND run_id = @runId'),
    deleteLock: p<LockRecord>('DELETE FROM locks WHERE cluster = @cluster RETURNING *'),
  };
}

export class LockTable {
  readonly #t: Tables;
  readonly #q: ReturnType<typeof statements>;

  constructor(t: Tables) {
    this.#t = t;
    this.#q = statements(t);
  }

  /**
   * Takes the cluster lock, or throws a LockConflictError saying who holds it. A lock is never taken over from
   * another run, even a stale one: only `regen unlock` (forceUnlock) removes it, so an operator decides.
   *
   * One exception: the same run, on the same host, whose recorded pid is gone. That is a resume of exactly the
   * run the lock was taken for, after its process died; the operator asked for that run by name, so the new
   * process takes the lock over. If the old pid still lives (the run is still being driven) or the lock was taken
   * on another host (where this host cannot tell whether the pid lives), the usual refusal applies.
   */
  acquireLock(l: { cluster: string; runId: string; pid: number; host: string }): void {
    if (!Number.isInteger(l.pid) || l.pid <= 0) throw new StoreError(`invalid pid ${l.pid} for the lock on ${l.cluster}`);
    this.#t.db.transaction(() => this.#acquire(l)).immediate();
  }

  #acquire(l: { cluster: string; runId: string; pid: number; host: string }): void {
    const now = this.#t.now();
    const params = this.#t.b.bind({ ...l, now });
    const row = this.#q.getLock.get(params);
    if (row === undefined) {
      this.#q.insertLock.run(params);
      return;
    }
    const sameRun = row.run_id === params['runId'];
    const sameHost = row.host === params['host'];
    if (sameRun && sameHost && row.pid === l.pid) {
      this.#q.heartbeat.run(params);
      return;
    }
    const holderAlive = sameHost ? processAlive(row.pid) : undefined;
    if (sameRun && holderAlive === false) {
      this.#q.takeOverLock.run(params);
      return;
    }
    throw new LockConflictError({ cluster: l.cluster, holder: toLock(row), holderAlive, heartbeatAgeMs: now - row.heartbeat_at });
  }

  heartbeat(cluster: string, runId: string): void {
    const params = this.#t.b.bind({ cluster, runId, now: this.#t.now() });
    if (this.#q.heartbeat.run(params).changes > 0) return;
    const row = this.#q.getLock.get(params);
    throw new LockHeldError(
      `run ${runId} no longer holds the lock on cluster ${cluster}` +
        (row === undefined ? ' (it was removed, e.g. by regen unlock)' : ` (run ${row.run_id}, pid ${row.pid} on ${row.host} holds it now)`),
      'stop this process; resume the run once no other run drives the cluster',
    );
  }

  releaseLock(cluster: string, runId: string): void {
    this.#q.releaseLock.run(this.#t.b.bind({ cluster, runId }));
  }

  getLock(cluster: string): LockRow | null {
    const r = this.#q.getLock.get(this.#t.b.bind({ cluster }));
    return r === undefined ? null : toLock(r);
  }

  forceUnlock(cluster: string): LockRow | null {
    const r = this.#q.deleteLock.get(this.#t.b.bind({ cluster }));
    return r === undefined ? null : toLock(r);
  }
}
