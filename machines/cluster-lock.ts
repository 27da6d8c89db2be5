/**
 * The cluster lock: one directory per node (/var/lib/regen/lock, made with an atomic `mkdir`), taken on every node
 * of the inventory before a run changes anything, in one fixed order (node names sorted: the first node alone,
 * then the others side by side), all or nothing. Two operators racing on the same cluster meet on the first node
 * of that order, so one of them gets nothing at all.
 *
 * The holder file names the run, the cluster, the operator's host and user, the pid and a heartbeat the run
 * refreshes every HEARTBEAT_MS. A random token, private to one process, guards every update: a heartbeat, a mirror
 * write or a release only acts while the node's lock still carries this process's token.
 *
 * Rules: a second run is refused (exit 6) naming the holder's run, host and last heartbeat; a resume of the same
 * run id takes the lock over (unless the holder is a live process on this very host); a lock whose heartbeat is
 * older than STALE_MS is reported as stale and is removed only by `regen unlock --cluster C -i INVENTORY`.
 */
import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { HostKeyRefusedError, LockHeldError, NodeUnreachableError, PrivilegeError, RegenError, UsageError } from './errors.js';
import type { NodePort } from './port.js';

/** How often a run refreshes its heartbeat on every node. */
export const HEARTBEAT_MS = 10_000;
/** A lock whose heartbeat is older than this is stale: 12 missed heartbeats, two minutes. */
export const STALE_MS = 120_000;

export interface LockHolder {
  format: 'regen-lock';
  version: 1;
  runId: string;
  cluster: string;
  host: string;
  user: string;
  pid: number;
  token: string;
  acquiredAt: number;
  heartbeatAt: number;
}

export function parseHolder(text: string | null): LockHolder | null {
  if (text === null || text === '') return null;
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    if (h.format !== 'regen-lock' || typeof h.runId !== 'string' || typeof h.token !== 'string' || typeof h.heartbeatAt !== 'number') return null;
    return h as LockHolder;
  } catch {
    return null;
  }
}

export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
}

/** One line naming who holds a node's lock. */
export function describeHolder(node: string, text: string | null, now: number): string {
  const h = parseHolder(text);
  if (h === null) return `${node}: locked by an unreadable holder (a take interrupted between mkdir and its first write?)`;
  const stale = now - h.heartbeatAt > STALE_MS ? ' (stale)' : '';
  return `${node}: locked by run ${h.runId} of cluster ${h.cluster} (pid ${h.pid}, ${h.user}@${h.host}), last heartbeat ${formatAge(now - h.heartbeatAt)}${stale}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

export class ClusterLock {
  readonly token = randomBytes(12).toString('hex');
  readonly #port: NodePort;
  readonly #order: string[];
  readonly #now: () => number;
  #holder: LockHolder | null = null;
  #taken: string[] = [];
  #timer: NodeJS.Timeout | null = null;
  /** The heartbeat in flight, if any: a release waits for it, so the two never cross on a node. */
  #beating: Promise<void> | null = null;
  #lost: RegenError | null = null;

  constructor(port: NodePort, nodes: string[], now: () => number = Date.now) {
    this.#port = port;
    this.#order = [...nodes].sort();
    this.#now = now;
  }

  /** Set when another process took the lock away (checked before every effect). */
  get lost(): RegenError | null {
    return this.#lost;
  }

  /** Takes the lock on every node in order; on any refusal or failure releases what it took and throws. */
  async acquire(runId: string, cluster: string, opts: { takeOver: boolean; heartbeatMs?: number }): Promise<void> {
    const at = this.#now();
    this.#holder = { format: 'regen-lock', version: 1, runId, cluster, host: hostname(), user: userInfo().username, pid: process.pid, token: this.token, acquiredAt: at, heartbeatAt: at };
    const text = JSON.stringify(this.#holder);
    // The first node of the order decides between runs racing for the cluster: only one of them can take it. The
    // others are then taken side by side; any refusal there still releases everything.
    const [first, ...rest] = this.#order;
    const take = async (node: string): Promise<void> => {
      const r = await this.#port.lockTake(node, this.token, text);
      if (r.taken || (await this.#takeOver(node, r.current, text, opts.takeOver))) this.#taken.push(node);
    };
    try {
      if (first !== undefined) await take(first);
      const settled = await Promise.allSettled(rest.map(take));
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (err) {
      await this.release();
      // A new run stopped here has changed nothing: a node it cannot reach, or whose host key or sudo it refuses, is
      // a preflight problem of that node (exit 10 or 3, as at inspection), said as such.
      const refused = err instanceof NodeUnreachableError || err instanceof HostKeyRefusedError || err instanceof PrivilegeError;
      if (!opts.takeOver && refused) {
        const kind = err instanceof NodeUnreachableError ? 'unreachable' : 'preflight';
        throw new RegenError(kind, `preflight could not take the cluster lock on ${err.node ?? 'a node'}; nothing was changed: ${err.message}`, {
          ...(err.node === undefined ? {} : { node: err.node }),
          hint: err.hint ?? 'make every node reachable over SSH (regen plan shows the same checks), then run regen start again',
          cause: err,
        });
      }
      throw err;
    }
    this.#timer = setInterval(() => {
      if (this.#beating !== null) return;
      this.#beating = this.#beat().finally(() => {
        this.#beating = null;
      });
    }, opts.heartbeatMs ?? HEARTBEAT_MS);
    this.#timer.unref();
  }

  async #takeOver(node: string, current: string | null, text: string, allowed: boolean): Promise<boolean> {
    const h = parseHolder(current);
    const me = this.#holder as LockHolder;
    const sameRun = h !== null && h.runId === me.runId && h.cluster === me.cluster;
    const liveHere = h !== null && h.host === me.host && h.pid !== process.pid && pidAlive(h.pid);
    if (allowed && sameRun && !liveHere && (await this.#port.lockUpdate(node, h.token, this.token, text))) return true;
    const now = this.#now();
    const deadHere = h !== null && h.host === me.host && !pidAlive(h.pid);
    const stale = h !== null && (deadHere || now - h.heartbeatAt > STALE_MS);
    const why = liveHere
      ? '; that process is still running on this host'
      : deadHere
        ? '; the process that held it is gone'
        : stale
          ? `; the lock is stale (no heartbeat for more than ${STALE_MS / 1000}s)`
          : '';
    throw new LockHeldError(
      `cluster ${me.cluster} is held on ${describeHolder(node, current, now)}${why}; nothing was changed`,
      stale
        ? `if run ${h?.runId ?? '?'} is no longer running on ${h?.host ?? '?'}: regen unlock --cluster ${me.cluster} -i INVENTORY`
        : `wait for run ${h?.runId ?? '?'} to finish; to continue that run from here: regen resume --from-cluster -i INVENTORY ${h?.runId ?? ''}`.trim(),
    );
  }

  async #beat(): Promise<void> {
    if (this.#holder === null || this.#lost) return;
    this.#holder = { ...this.#holder, heartbeatAt: this.#now() };
    const text = JSON.stringify(this.#holder);
    const results = await Promise.allSettled(this.#taken.map((n) => this.#port.lockUpdate(n, this.token, this.token, text)));
    const lostOn = this.#taken.filter((_n, i) => {
      const r = results[i];
      return r !== undefined && r.status === 'fulfilled' && !r.value;
    });
    if (lostOn.length > 0) {
      this.#lost = new LockHeldError(`run ${this.#holder.runId} no longer holds the cluster lock on ${lostOn.join(', ')} (taken over, or removed by regen unlock)`, 'stop this process; the run goes on from the process that holds the lock');
    }
  }

  /** Releases every node this process holds (best effort: an unreachable node keeps a lock that goes stale). */
  async release(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#beating !== null) await this.#beating;
    const taken = this.#taken;
    this.#taken = [];
    await Promise.allSettled(taken.map((n) => this.#port.lockRemove(n, this.token)));
  }
}

/** What `regen plan` and `regen unlock` read: the holder of each node's lock (nodes without one are left out). */
export async function readLocks(port: NodePort, nodes: string[]): Promise<Array<{ node: string; holder: string }>> {
  const out: Array<{ node: string; holder: string }> = [];
  await Promise.all(
    nodes.map(async (node) => {
      const t = await port.regenTraces(node).catch(() => null);
      if (t?.lock !== null && t?.lock !== undefined) out.push({ node, holder: t.lock });
    }),
  );
  return out.sort((a, b) => a.node.localeCompare(b.node));
}

/** `regen unlock -i`: removes stale cluster locks of `cluster`; a fresh one is refused (its run may still work). */
export async function unlockCluster(port: NodePort, nodes: string[], cluster: string, now = Date.now()): Promise<string[]> {
  const locks = await readLocks(port, nodes);
  const fresh = locks.filter((l) => {
    const h = parseHolder(l.holder);
    return h !== null && h.cluster === cluster && now - h.heartbeatAt <= STALE_MS && !(h.host === hostname() && !pidAlive(h.pid));
  });
  if (fresh.length > 0) {
    throw new UsageError(
      `the cluster lock is not stale: ${fresh.map((l) => describeHolder(l.node, l.holder, now)).join('; ')}`,
      `a lock is stale once its heartbeat is older than ${STALE_MS / 1000}s; stop that run, then try again`,
    );
  }
  const removed: string[] = [];
  for (const l of locks) {
    const h = parseHolder(l.holder);
    if (h !== null && h.cluster !== cluster) continue;
    if (await port.lockRemove(l.node, h?.token ?? '')) removed.push(describeHolder(l.node, l.holder, now));
  }
  return removed;
}
