/**
 * regen resume [RUN]: continue a run from its last persisted transition. Interrupted steps are probed on their
 * node, never blindly repeated; the leader and every node-bound step stay on the node recorded at the time.
 */
import { existsSync } from 'node:fs';
import { STEPS } from '../../machines/catalogue.js';
import { UsageError } from '../../machines/errors.js';
import type { Inventory } from '../../machines/port.js';
import { resumeRun, type RunDeps } from '../../machines/runner.js';
import type { Io } from '../io.js';
import type { ConnectOptions } from '../main.js';
import { makeNodePort, obtainSecret, openRegenStore, operate, type PortFactory } from '../wiring.js';

export interface ResumeOptions extends ConnectOptions {
  db: string | undefined;
  json: boolean;
  run: string | undefined;
  passwordFile: string | undefined;
  maxRecoveries: number;
  yes: boolean;
  makePort?: PortFactory;
  /** --from-cluster: import the run from the nodes' mirrors first (cli/from-cluster.ts); needs the inventory. */
  fromCluster?: { inventory: string };
  runDeps?: Partial<Pick<RunDeps, 'now' | 'sleep' | 'convergeTimeoutMs' | 'journalHooks' | 'afterTransition' | 'heartbeatMs'>>;
}

export async function resume(o: ResumeOptions, io: Io): Promise<number> {
  // Nothing to resume must not create a database as a side effect; --from-cluster imports into a new one.
  const { defaultDbPath } = await import('../../store/store.js');
  const path = o.db ?? defaultDbPath(io.env);
  if (o.fromCluster === undefined && path !== ':memory:' && !existsSync(path)) {
    throw new UsageError(`no run to resume: there is no database at ${path}`, 'regen start begins a run; --db or $REGEN_DB select another database');
  }
  const store = await openRegenStore(o.db, io.env);
  try {
    if (o.fromCluster) o = { ...o, run: await (await import('../from-cluster.js')).importFromCluster({ ...o, inventory: o.fromCluster.inventory }, store, io) };
    const run = o.run ? store.getRun(o.run) : store.latestUnfinishedRun();
    if (!run) {
      throw new UsageError(o.run ? `no run ${o.run} in ${store.path}` : `no unfinished run in ${store.path}`, 'regen runs lists the runs; --db selects another database');
    }
    // Once the leader is set up, the secret can be read back from it; before that it must be given again.
    const leaderSetUp = store.journal(run.id, { step: STEPS.leaderSetup.name }).some((r) => r.outcome === 'done' || r.outcome === 'skipped');
    const secret = await obtainSecret({ passwordFile: o.passwordFile, generate: false, io: { ...io, stdinIsTTY: leaderSetUp ? false : io.stdinIsTTY }, required: false, newSecret: false });
    if (!secret && !leaderSetUp && pastConfirmation(store, run.id)) {
      throw new UsageError(
        `run ${run.id} has not set up the leader yet, so the mesh secret must be given again (it is never stored)`,
        `regen resume ${run.id} --password-file FILE (the secret this run started with), or set REGEN_MESH_PASSWORD`,
      );
    }
    const inventory = JSON.parse(run.inventoryJson) as Inventory;
    const port0 = await (o.makePort ?? makeNodePort)(inventory, o, store, io);
    const cluster = await (await import('../cluster.js')).makeClusterRun(port0, store, io, o.runDeps?.heartbeatMs);
    const port = cluster.port;
    // A run that stopped at its confirmation asks again (nothing has changed yet).
    return await operate(
      io,
      { json: o.json, yes: o.yes },
      (ui) => resumeRun({ store, port, secret, maxRecoveries: o.maxRecoveries, ...o.runDeps, ...ui, cluster: cluster.guard }, run.id),
      () => port.close(),
    );
  } finally {
    store.close();
  }
}

function pastConfirmation(store: { listTransitions(runId: string): { event: string }[] }, runId: string): boolean {
  return store.listTransitions(runId).some((t) => t.event === 'CONFIRM');
}
