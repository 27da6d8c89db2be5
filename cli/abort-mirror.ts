/**
 * `regen abort RUN -i INVENTORY`: after the database, the run's mirror on the nodes says aborted too, so that
 * `regen resume --from-cluster` from another machine does not resume it (machines/cluster-run.ts).
 */
import { abortOnCluster } from '../machines/cluster-run.js';
import { UsageError } from '../machines/errors.js';
import type { RunRow, Store } from '../store/types.js';
import type { Io } from './io.js';
import type { ConnectOptions } from './main.js';
import { makeNodePort, sharedRedactor } from './wiring.js';

export async function abortMirror(run: RunRow, inventoryPath: string, connect: ConnectOptions, store: Store, io: Io): Promise<void> {
  const { loadInventory } = await import('../adapters/inventory/index.js');
  const inventory = loadInventory(inventoryPath, { format: 'auto' });
  if (inventory.cluster !== run.cluster) {
    throw new UsageError(`run ${run.id} is of cluster ${run.cluster}, and ${inventoryPath} describes cluster ${inventory.cluster}; its mirror was not changed`, `pass the inventory of cluster ${run.cluster}`);
  }
  const redactor = await sharedRedactor();
  const port = await makeNodePort(inventory, connect, store, io);
  try {
    await abortOnCluster({ port, store, runId: run.id, inventory, redact: (t) => redactor.redact(t) });
    io.err(`regen: run ${run.id} is marked aborted in its mirror on the nodes too; regen resume --from-cluster will not resume it\n`);
  } finally {
    await port.close();
  }
}
