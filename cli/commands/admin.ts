/**
 * regen unlock / regen abort: the explicit operator actions on the database. With -i, each also acts on regen's own
 * state on the nodes (/var/lib/regen): the stale cluster lock, the run's mirror; neither touches the mesh.
 */
import { UsageError } from '../../machines/errors.js';
import { processAlive } from '../../store/process.js';
import { abortRun } from '../../machines/runner.js';
import type { Io } from '../io.js';
import { makeNodePort, openRegenStore } from '../wiring.js';
import type { ConnectOptions } from '../main.js';
import type { Store } from '../../store/types.js';
import { EXIT } from '../exit-codes.js';

export async function unlock(o: { db: string | undefined; cluster: string; inventory?: string; connect?: ConnectOptions }, io: Io): Promise<number> {
  const store = await openRegenStore(o.db, io.env);
  try {
    if (o.inventory !== undefined && o.connect !== undefined) await unlockNodes(o.cluster, o.inventory, o.connect, store, io);
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

/** The cluster lock on the nodes: removed only when stale (machines/cluster-lock.ts). */
async function unlockNodes(cluster: string, inventoryPath: string, connect: ConnectOptions, store: Store, io: Io): Promise<void> {
  const { loadInventory } = await import('../../adapters/inventory/index.js');
  const { unlockCluster } = await import('../../machines/cluster-lock.js');
  const inventory = loadInventory(inventoryPath, { format: 'auto' });
  const port = await makeNodePort(inventory, connect, store, io);
  try {
    const removed = await unlockCluster(port, inventory.nodes.map((n) => n.name), cluster);
    io.err(removed.length === 0 ? `regen: no cluster lock of ${cluster} on the nodes\n` : `regen: removed the cluster lock on the nodes:\n  - ${removed.join('\n  - ')}\n`);
  } finally {
    await port.close();
  }
}

export async function abort(o: { db: string | undefined; run: string | undefined; inventory?: string; connect?: ConnectOptions }, io: Io): Promise<number> {
  const store = await openRegenStore(o.db, io.env);
  try {
    const run = o.run ? store.getRun(o.run) : store.latestUnfinishedRun();
    if (!run) throw new UsageError(o.run ? `no run ${o.run}` : 'no unfinished run to abort', 'regen runs lists the runs');
    abortRun(store, run.id);
    io.err(`regen: run ${run.id} marked aborted. No node was changed by this command; backups stay in /var/backups/regen/${run.id} on each node.\n`);
    if (o.inventory !== undefined && o.connect !== undefined) {
      await (await import('../abort-mirror.js')).abortMirror(run, o.inventory, o.connect, store, io);
    } else {
      io.err(`regen: its mirror on the nodes still shows it unfinished, so regen resume --from-cluster from another machine would resume it; regen abort ${run.id} -i INVENTORY marks it aborted there too\n`);
    }
    return EXIT.ok;
  } finally {
    store.close();
  }
}
