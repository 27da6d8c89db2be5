/**
 * The lab's shared mesh state: DIR/cluster/state.json, changed only under DIR/cluster/state.lock.
 *
 * Many simulated commands run at once (parallel setups, agents answering HTTP), each a separate process, so the
 * lock is a file created with O_EXCL holding the owner's pid. A holder that died (kill -9, a crashed node) leaves a
 * lock whose pid is gone: the next taker breaks it. Waiting is bounded; the lock is held only for the model's
 * synchronous work, never while a fault's latency sleeps.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ClusterState } from './model.js';

const WAIT_LIMIT_MS = 60_000;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** A pid that exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name, is the state.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export class ClusterStateStore {
  readonly dir: string;
  readonly file: string;
  readonly lockFile: string;

  constructor(clusterDir: string) {
    this.dir = clusterDir;
    this.file = path.join(clusterDir, 'state.json');
    this.lockFile = path.join(clusterDir, 'state.lock');
  }

  /** Run `fn` on the state under the lock; whatever it changed is saved even when it throws (effects persist). */
  update<T>(init: () => ClusterState, fn: (state: ClusterState) => T): T {
    const token = this.#lock();
    try {
      const state = this.#load() ?? init();
      const before = JSON.stringify(state);
      try {
        return fn(state);
      } finally {
        if (JSON.stringify(state) !== before) this.#save(state);
      }
    } finally {
      this.#unlock(token);
    }
  }

  /** A consistent snapshot without taking the lock (saves are atomic renames). */
  read(): ClusterState | null {
    return this.#load();
  }

  #load(): ClusterState | null {
    try {
      return JSON.parse(fs.readFileSync(this.file, 'utf8')) as ClusterState;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  #save(state: ClusterState): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
    fs.renameSync(tmp, this.file);
  }

  #lock(): string {
    const token = `${process.pid} ${Date.now()} ${Math.random().toString(36).slice(2)}`;
    const deadline = Date.now() + WAIT_LIMIT_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        fs.writeFileSync(this.lockFile, token, { flag: 'wx', mode: 0o644 });
        return token;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      this.#breakIfStale();
      if (Date.now() > deadline) throw new Error(`cluster state lock ${this.lockFile} still held after ${WAIT_LIMIT_MS} ms`);
      sleepSync(Math.min(2 + attempt, 25));
    }
  }

  #breakIfStale(): void {
    let held: string;
    try {
      held = fs.readFileSync(this.lockFile, 'utf8');
    } catch {
      return;
    }
    const pid = Number(held.split(' ')[0]);
    // An empty file is a taker between create and write: not stale.
    if (held === '' || pidAlive(pid)) return;
    const aside = `${this.lockFile}.${process.pid}.stale`;
    try {
      fs.renameSync(this.lockFile, aside);
    } catch {
      return;
    }
    const moved = fs.readFileSync(aside, 'utf8');
    if (moved !== held) {
      // Another waiter re-took the lock between our read and rename: give it back if nobody took it since.
      try {
        fs.linkSync(aside, this.lockFile);
      } catch {
        // Someone else holds it now; the rare double hold ends with that holder.
      }
    }
    fs.rmSync(aside, { force: true });
  }

  #unlock(token: string): void {
    try {
      if (fs.readFileSync(this.lockFile, 'utf8') === token) fs.unlinkSync(this.lockFile);
    } catch {
      // Already broken by someone who thought this process dead; nothing to release.
    }
  }
}
