/**
 * What a run keeps on the cluster, for the runner: the cluster lock (cluster-lock.ts) and the mirror of its
 * journal (mirror.ts). The runner calls acquire() right after its local lock, afterPersist() after every persisted
 * transition and release() where it releases its local lock; the port it drives is `port` below, whose effects wait
 * for the mirror.
 */
import { writeFileSync } from 'node:fs';
import { ClusterLock } from './cluster-lock.js';
import { gatedPort, MirrorWriter } from './mirror.js';
import { RegenError } from './errors.js';
import type { Inventory, NodePort } from './port.js';
import type { Store } from '../store/types.js';

export interface ClusterGuard {
  acquire(a: { runId: string; inventory: Inventory; takeOver: boolean }): Promise<void>;
  afterPersist(): void;
  release(): Promise<void>;
}

export interface ClusterRun {
  guard: ClusterGuard;
  /** The port to drive the run with: every effect waits until the mirror holds its intent. */
  port: NodePort;
}

export function clusterRun(a: {
  port: NodePort;
  store: Store;
  redact?: (t: string) => string;
  heartbeatMs?: number;
  now?: () => number;
  /** Where to write the mirror's cost figures at release (bench/). */
  statsFile?: string;
  /** A new run: checked after the local lock, while the cluster lock is taken (a cluster left mid-procedure is refused). */
  precheck?: () => Promise<void>;
}): ClusterRun {
  let lock: ClusterLock | null = null;
  let writer: MirrorWriter | null = null;
  const now = a.now ?? Date.now;
  /** Wall time the run spent on the cluster state outside the effects' waits: the checks, the lock, the last write. */
  const own = { acquireMs: 0, precheckMs: 0, releaseMs: 0 };
  const precheck = async (): Promise<void> => {
    const t0 = now();
    try {
      await a.precheck?.();
    } finally {
      own.precheckMs += now() - t0;
    }
  };
  const guard: ClusterGuard = {
    async acquire({ runId, inventory, takeOver }) {
      const t0 = now();
      const l = new ClusterLock(a.port, inventory.nodes.map((n) => n.name), a.now);
      // The check reads the nodes while the lock is being taken; a refusal by the check gives the lock back.
      const [checked, locked] = await Promise.allSettled([takeOver ? undefined : precheck(), l.acquire(runId, inventory.cluster, { takeOver, ...(a.heartbeatMs === undefined ? {} : { heartbeatMs: a.heartbeatMs }) })]);
      if (checked.status === 'rejected') {
        if (locked.status === 'fulfilled') await l.release();
        throw checked.reason;
      }
      if (locked.status === 'rejected') throw locked.reason;
      lock = l;
      writer = new MirrorWriter({ port: a.port, store: a.store, runId, lock, ...(a.redact ? { redact: a.redact } : {}), ...(a.now ? { now: a.now } : {}) });
      own.acquireMs += now() - t0;
    },
    afterPersist() {
      writer?.kick();
    },
    async release() {
      const w = writer;
      const l = lock;
      const t0 = now();
      writer = null;
      lock = null;
      try {
        if (w && !l?.lost) {
          await w.flush();
          await w.drain();
        }
      } catch {
        // The last write is best effort: the next resume reads the highest sequence found, and probes the rest.
      } finally {
        await l?.release();
        own.releaseMs += now() - t0;
        if (w && a.statsFile) writeFileSync(a.statsFile, `${JSON.stringify({ ...w.stats, ...own })}\n`);
      }
    },
  };
  return { guard, port: gatedPort(a.port, () => writer) };
}

/**
 * `regen abort -i INVENTORY`: the run's record as the database now holds it (aborted) written to its mirror on the
 * nodes (every node of the inventory), under the run's cluster lock taken over for that one write and released after it, so that a
 * `regen resume --from-cluster` from another machine finds the run aborted instead of resuming it. A lock of another
 * run is refused (exit 6), as for a resume.
 */
export async function abortOnCluster(a: { port: NodePort; store: Store; runId: string; inventory: Inventory; redact?: (t: string) => string }): Promise<void> {
  const lock = new ClusterLock(a.port, a.inventory.nodes.map((n) => n.name));
  await lock.acquire(a.runId, a.inventory.cluster, { takeOver: true });
  try {
    // Every node of the inventory, not only the run's usual targets: no copy anywhere is left saying unfinished.
    const everyNode = (): string[] => a.inventory.nodes.map((n) => n.name);
    const writer = new MirrorWriter({ port: a.port, store: a.store, runId: a.runId, lock, targets: everyNode, ...(a.redact ? { redact: a.redact } : {}) });
    await writer.flush();
    await writer.drain();
  } catch (err) {
    throw new RegenError(err instanceof RegenError ? err.kind : 'unreachable', `run ${a.runId} is marked aborted in the database, but not in its mirror on the nodes: ${(err as Error).message}`, {
      hint: 'until regen abort -i INVENTORY succeeds, regen resume --from-cluster elsewhere would resume this run',
      cause: err,
    });
  } finally {
    await lock.release();
  }
}
