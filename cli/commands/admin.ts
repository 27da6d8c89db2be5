/**
 * regen unlock / regen abort: the explicit operator actions on the database. Neither touches a node.
 */
import { UsageError } from '../../machines/errors.js';
import { processAlive } from '../../store/process.js';
import { abortRun } from '../../machines/runner.js';
import type { Io } from '../io.js';
import { openRegenStore } from '../wiring.js';
import { EXIT } from '../exit-codes.js';

export async function unlock(o: { db: string | undefined; cluster: string }, io: Io): Promise<number> {
  const store = await openRegenStore(o.db, io.env);
  try {
    const lock = store.getLock(o.cluster);
    if (!lock) {
      io.err(`regen: cluster ${o.cluster} has no lock; nothing to do\n`);
      return EXIT.ok;
    }
    const alive = processAlive(lock.pid);
    const { hostname } = await import('node:os');
    if (alive && lock.host === hostname() && lock.pid !== process.pid) {
      throw new UsageError(
        `the lock of ${o.cluster} is held by pid ${lock.pid} on this host, which is still running (run ${lock.runId})`,
        `stop that process first (kill ${lock.pid}); regen unlock only removes locks of processes that are gone`,
      );
    }
    store.forceUnlock(o.cluster);
    io.err(`regen: removed the lock of ${o.cluster} (run ${lock.runId}, pid ${lock.pid} on ${lock.host}); continue with regen resume ${lock.runId}\n`);
    return EXIT.ok;
  } finally {
    store.close();
  }
}

export async function abort(o: { db: string | undefined; run: string | undefined }, io: Io): Promise<number> {
  const store = await openRegenStore(o.db, io.env);
  try {
    const run = o.run ? store.getRun(o.run) : store.latestUnfinishedRun();
    if (!run) throw new UsageError(o.run ? `no run ${o.run}` : 'no unfinished run to abort', 'regen runs lists the runs');
    abortRun(store, run.id);
    io.err(`regen: run ${run.id} marked aborted. No node was changed by this command; backups stay in /var/backups/regen/${run.id} on each node.\n`);
    return EXIT.ok;
  } finally {
    store.close();
  }
}
