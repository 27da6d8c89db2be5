/**
 * Drives the recovery machine against the in-memory fake cluster with a real SQLite file, and simulates a crash of
 * the regen process: from the crash on, every store write and every new port call of the old process fails (a
 * dead process writes nothing), while a remote command already running finishes on its node, as it would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret } from '../../adapters/secrets/secret.js';
import type { Inventory, NodePort } from '../../machines/port.js';
import type { RunOptions } from '../../machines/recovery.js';
import { resumeRun, startRun, type RunDeps, type RunResult } from '../../machines/runner.js';
import { openStore } from '../../store/store.js';
import type { Store } from '../../store/types.js';
import { createFakeCluster, type FakeCluster, type FakeClusterOptions } from '../sim/fake-cluster.js';

export class SimulatedCrash extends Error {
  constructor() {
    super('simulated crash of the regen process');
    this.name = 'SimulatedCrash';
  }
}

/** A process that can die: wraps the store and port so that after crash() nothing more gets through. */
export class Process {
  dead = false;
  constructor(
    readonly store: Store,
    readonly port: NodePort,
  ) {}
  crash(): never {
    this.dead = true;
    throw new SimulatedCrash();
  }
  storeView(): Store {
    return guard(this.store, () => this.dead);
  }
  portView(): NodePort {
    return guard(this.port, () => this.dead);
  }
}

function guard<T extends object>(target: T, dead: () => boolean): T {
  const out: Record<string | symbol, unknown> = {};
  const keys = new Set<string>();
  for (let o: object | null = target; o && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const k of Object.getOwnPropertyNames(o)) if (k !== 'constructor') keys.add(k);
  }
  for (const key of keys) {
    const v = (target as Record<string, unknown>)[key];
    out[key] =
      typeof v === 'function'
        ? (...args: unknown[]) => {
            if (dead()) throw new SimulatedCrash();
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          }
        : v;
  }
  Object.defineProperty(out, 'path', { get: () => (target as { path?: string }).path });
  return out as T;
}

export function inventoryOf(cluster: FakeCluster, name = 'lab'): Inventory {
  return { cluster: name, nodes: cluster.nodes.map((n) => ({ name: n, sshHost: n })) };
}

export const FAST: Pick<RunDeps, 'sleep' | 'convergeTimeoutMs' | 'heartbeatMs'> = {
  sleep: async () => undefined,
  convergeTimeoutMs: 0,
  heartbeatMs: 60_000,
};

export interface Harness {
  dir: string;
  dbPath: string;
  cluster: FakeCluster;
  inventory: Inventory;
  secret: Secret;
  options: RunOptions;
  open(): Store;
  start(extra?: Partial<RunDeps>): Promise<RunResult>;
  resume(runId: string, extra?: Partial<RunDeps>): Promise<RunResult>;
  cleanup(): void;
}

export function harness(opts: FakeClusterOptions & { parallel?: number; newSecret?: string; runOptions?: Partial<RunOptions> } = {}): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'regen-machine-'));
  const dbPath = join(dir, 'regen.db');
  const cluster = createFakeCluster(opts);
  const inventory = inventoryOf(cluster);
  const secret = new Secret(opts.newSecret ?? 'new-mesh-secret-0123456789', 'mesh secret');
  const options: RunOptions = { parallel: opts.parallel ?? 2, maxUnitRounds: 3, revokeOldTokens: false, ...opts.runOptions };
  const stores: Store[] = [];
  const open = () => {
    const s = openStore(dbPath);
    stores.push(s);
    return s;
  };
  return {
    dir,
    dbPath,
    cluster,
    inventory,
    secret,
    options,
    open,
    start: (extra = {}) => startRun({ store: open(), port: cluster.port, secret, ...FAST, confirm: async () => true, ...extra }, { inventory, options, runId: 'run-1' }),
    resume: (runId, extra = {}) => resumeRun({ store: open(), port: cluster.port, secret, ...FAST, confirm: async () => true, ...extra }, runId),
    cleanup: () => {
      for (const s of stores) {
        try {
          s.close();
        } catch {
          /* already closed */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
