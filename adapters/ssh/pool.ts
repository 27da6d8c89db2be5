/**
 * The Remotes of a run: one SshTransport per node, each one connection reused for every command, with at most
 * maxSessions channels open on it at once; SshPool hands them out by node name.
 */
import { NodeConnection } from './connect.js';
import { dialogCommand, execCommand } from './exec.js';
import type { AcceptedHostKey } from './host-keys.js';
import { isShared, makeShared, type Shared, type SshTarget, type SshTransportOptions } from './options.js';
import type { DialogOptions, DialogResult } from './pty-dialog.js';
import type { ExecOptions, ExecResult, Remote } from './remote.js';

/** A counting semaphore (FIFO). */
export class Slots {
  #free: number;
  readonly #waiting: Array<() => void> = [];
  constructor(size: number) {
    this.#free = Math.max(1, size);
  }
  acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

/** One node's connection and the Remote over it. Commands run concurrently as channels of one connection. */
export class SshTransport implements Remote {
  readonly node: string;
  readonly target: SshTarget;
  readonly #shared: Shared;
  readonly #conn: NodeConnection;
  readonly #sessions: Slots;

  constructor(target: SshTarget, opts: SshTransportOptions | Shared = {}) {
    this.node = target.node;
    this.target = target;
    this.#shared = isShared(opts) ? opts : makeShared(opts);
    this.#conn = new NodeConnection(target, this.#shared);
    this.#sessions = new Slots(this.#shared.opts.maxSessions ?? 8);
  }

  /** Login user on the node once connected (root or a sudoer). */
  get user(): string | null {
    return this.#conn.user;
  }

  /** TCP connections opened so far to the node itself (jump hops not counted). */
  get connectionCount(): number {
    return this.#conn.connections;
  }

  get connected(): boolean {
    return this.#conn.client !== null;
  }

  acceptedHostKeys(): AcceptedHostKey[] {
    return this.#shared.policy.accepted();
  }

  /** Open the connection now (preflight), so reachability and host keys are settled before any step. */
  async connect(signal?: AbortSignal): Promise<void> {
    await this.#conn.ensure(signal);
  }

  /**
   * sshd refuses sessions beyond its MaxSessions (OpenSSH's default is 10) on one connection, and a leader serves
   * every parallel follower's reads: commands beyond maxSessions wait for a free channel instead.
   */
  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    await this.#sessions.acquire();
    try {
      return await execCommand(this.#conn, this.#shared.opts, command, opts);
    } finally {
      this.#sessions.release();
    }
  }

  /** `command` on a pseudo-terminal, answered prompt by prompt (adapters/ssh/pty-dialog.ts). */
  async dialog(command: string, opts: DialogOptions): Promise<DialogResult> {
    await this.#sessions.acquire();
    try {
      return await dialogCommand(this.#conn, this.#shared.opts, command, opts);
    } finally {
      this.#sessions.release();
    }
  }

  async close(): Promise<void> {
    await this.#conn.close();
  }
}

/** Open a node's connection now and return its Remote. */
export async function connectNode(target: SshTarget, opts: SshTransportOptions = {}, signal?: AbortSignal): Promise<SshTransport> {
  const t = new SshTransport(target, opts);
  await t.connect(signal);
  return t;
}

/**
 * The connections of one run: one per node, created on first use, sharing the known_hosts decisions,
 * the parsed ssh_config and the unlocked keys.
 */
export interface SshPoolOptions extends SshTransportOptions {
  /** The nodes this pool may reach, so callers can ask for a Remote by node name. */
  targets?: SshTarget[];
}

export class SshPool {
  readonly #shared: Shared;
  readonly #targets = new Map<string, SshTarget>();
  readonly #remotes = new Map<string, SshTransport>();

  constructor(opts: SshPoolOptions = {}) {
    this.#shared = makeShared(opts);
    for (const t of opts.targets ?? []) this.#targets.set(t.node, t);
  }

  /** The node's Remote (by node name or target); nothing connects until its first command. */
  remote(node: string | SshTarget): SshTransport {
    const target = typeof node === 'string' ? this.#targets.get(node) : node;
    if (target === undefined) throw new Error(`no SSH target for node ${String(node)}`);
    let r = this.#remotes.get(target.node);
    if (r === undefined) {
      this.#targets.set(target.node, target);
      r = new SshTransport(target, this.#shared);
      this.#remotes.set(target.node, r);
    }
    return r;
  }

  async connect(target: string | SshTarget, signal?: AbortSignal): Promise<SshTransport> {
    const r = this.remote(target);
    await r.connect(signal);
    return r;
  }

  /** Host keys recorded under --accept-new-host-keys during this run. */
  acceptedHostKeys(): AcceptedHostKey[] {
    return this.#shared.policy.accepted();
  }

  get knownHostsFile(): string {
    return this.#shared.policy.file;
  }

  /** Config warnings (unsupported Match criteria, …) for a verbose listing. */
  configWarnings(): string[] {
    return [...this.#shared.config.warnings];
  }

  async closeAll(): Promise<void> {
    const all = [...this.#remotes.values()];
    this.#remotes.clear();
    await Promise.all(all.map((r) => r.close()));
  }
}
