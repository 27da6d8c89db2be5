/**
 * The real transport: Remote over ssh2, one connection per node, reused for every command.
 *
 * Outcomes follow adapters/ssh/remote.ts: a command that never started is NodeUnreachableError, one that
 * ran to its end resolves with its exit code, and one whose end regen did not see (timeout, dropped
 * connection, killed channel, abort) is OutcomeUnknownError, which the caller settles with a probe.
 * Reconnecting happens only before a command starts; a command is never re-sent by the transport.
 */
import { createHash } from 'node:crypto';
import { driveDialog, openPtyChannel, wrapDialogCommand, type DialogOptions, type DialogResult } from './pty-dialog.js';
import { readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, AuthHandlerMiddleware, AuthenticationType, ClientChannel, ConnectConfig, ParsedKey, ServerHostKeyAlgorithm } from 'ssh2';
import { shq } from '../shell/quote.js';
import { HostKeyRefusedError, NodeUnreachableError, OutcomeUnknownError, PrivilegeError, RegenError } from '../../machines/errors.js';
import type { InventoryNode } from '../../machines/port.js';
import type { Secret } from '../secrets/secret.js';
import {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  hostKeyFromBlob,
  knownHostsName,
  knownKeyTypes,
  preferredHostKeyAlgorithms,
  defaultKnownHostsFiles,
  readKnownHostsFiles,
} from './known-hosts.js';
import type { AuditSink, ExecOptions, ExecResult, Remote } from './remote.js';
import { defaultIdentityFiles, defaultSshConfigPath, loadSshConfig, resolveHost } from './ssh-config.js';
import type { JumpHost, ResolvedHost, SshConfig } from './ssh-config.js';

type Client = InstanceType<typeof ssh2.Client>;

/** Where to reach a node. Explicit values win over ssh_config, as on the ssh command line. */
export interface SshTarget {
  /** Inventory name: used in messages, the audit and as the pool key. */
  node: string;
  /** Address or ssh_config alias. */
  host: string;
  port?: number;
  user?: string;
  identityFile?: string;
}

export function targetFromInventory(n: InventoryNode): SshTarget {
  const t: SshTarget = { node: n.name, host: n.sshHost };
  if (n.sshPort !== undefined) t.port = n.sshPort;
  if (n.sshUser !== undefined) t.user = n.sshUser;
  if (n.identityFile !== undefined) t.identityFile = n.identityFile;
  return t;
}

/** Asks the operator for a key file's passphrase (the CLI wires a hidden prompt); null or '' = skip this key. */
export type PassphrasePrompt = (keyPath: string, attempt: number) => Promise<Secret | string | null | undefined>;

export interface SshTransportOptions {
  /** known_hosts file to verify against and record into (default ~/.ssh/known_hosts). */
  knownHostsPath?: string;
  /** Record keys of hosts not in known_hosts instead of refusing them. Never accepts a changed key. */
  acceptNewHostKeys?: boolean;
  /** Write accepted keys hashed (`|1|…`), as HashKnownHosts yes does (also when ssh_config says so). */
  hashKnownHosts?: boolean;
  /** Global known_hosts files, read only (default /etc/ssh/ssh_known_hosts and …2, as OpenSSH). */
  globalKnownHostsFiles?: string[];
  /** ssh_config to honour (default ~/.ssh/config); null reads none. */
  sshConfigPath?: string | null;
  /** An already parsed config (wins over sshConfigPath). */
  sshConfig?: SshConfig;
  /** ssh-agent socket (default $SSH_AUTH_SOCK); null disables the agent. */
  agentSocket?: string | null;
  passphrasePrompt?: PassphrasePrompt;
  /** TCP connect + handshake + authentication, per hop (default 15 s; time spent in the passphrase prompt excluded). */
  connectTimeoutMs?: number;
  /** Same as connectTimeoutMs (ssh2's name for it). */
  readyTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Default per-command timeout when ExecOptions.timeoutMs is not given (default 10 min). */
  commandTimeoutMs?: number;
  /** Seconds the node's `timeout` waits after TERM before KILL. */
  remoteKillAfterSec?: number;
  /** Channels open at once on one connection (default 8, below OpenSSH's MaxSessions 10). */
  maxSessions?: number;
  /** Disable Nagle on the TCP socket (default true: a small exec round trip is ~4 ms instead of ~45 ms). */
  noDelay?: boolean;
  /** Connect attempts and backoff base: delay n is base·2^n, jittered ±50 %. */
  reconnect?: { attempts?: number; baseDelayMs?: number };
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
  audit?: AuditSink;
  home?: string;
  localUser?: string;
}

export interface AcceptedHostKey {
  node: string;
  /** The known_hosts name the key was recorded under (`host` or `[host]:port`). */
  name: string;
  type: string;
  fingerprint: string;
  file: string;
}

type Verdict = { ok: true } | { ok: false; message: string; hint: string };

/**
 * Host key decisions for every connection of a run: one known_hosts file, one opt-in, one list of what was
 * accepted. Decisions are serialized so two connections to a new jump host append it once.
 */
export class HostKeyPolicy {
  readonly file: string;
  readonly acceptNew: boolean;
  readonly hash: boolean;
  readonly #accepted: AcceptedHostKey[] = [];
  /** Files read besides `file` (known_hosts2, the global files): a key pinned in any of them is pinned. */
  readonly #readOnly: string[];
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: { file: string; acceptNew?: boolean; hash?: boolean; readOnly?: string[] }) {
    this.file = opts.file;
    this.acceptNew = opts.acceptNew === true;
    this.hash = opts.hash === true;
    this.#readOnly = opts.readOnly ?? [];
  }

  #files(extra: HostKeyFiles): string[] {
    return [this.file, ...this.#readOnly, ...(extra.files ?? [])];
  }

  accepted(): AcceptedHostKey[] {
    return this.#accepted.map((a) => ({ ...a }));
  }

  async knownTypes(host: string, port: number, extra: HostKeyFiles = {}): Promise<string[]> {
    return knownKeyTypes(await readKnownHostsFiles(this.#files(extra)), host, port);
  }

  verify(node: string, host: string, port: number, blob: Buffer, extra: HostKeyFiles = {}): Promise<Verdict> {
    const run = this.#queue.then(() => this.#verify(node, host, port, blob, extra));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #verify(node: string, host: string, port: number, blob: Buffer, extra: HostKeyFiles): Promise<Verdict> {
    let key;
    try {
      key = hostKeyFromBlob(blob);
    } catch {
      return { ok: false, message: `${node} (${hostPort(host, port)}) sent a malformed host key`, hint: 'check that the address points at an SSH server' };
    }
    const fp = fingerprintSha256(blob);
    const name = knownHostsName(host, port);
    const entries = await readKnownHostsFiles(this.#files(extra));
    const check = checkHostKey(entries, host, port, key);
    switch (check.status) {
      case 'match':
        return { ok: true };
      case 'revoked':
        return {
          ok: false,
          message: `host key of ${node} (${hostPort(host, port)}) is marked @revoked in ${check.entry.file ?? this.file}:${check.entry.line}: ${key.type} ${fp}`,
          hint: 'the node must get a new host key; regen will not connect with a revoked one',
        };
      case 'mismatch': {
        const was = check.known.map((e) => `${e.key.type} ${fingerprintSha256(e.key)} (${e.file ?? this.file}:${e.line})`).join(', ');
        return {
          ok: false,
          message:
            `HOST KEY CHANGED for ${node} (${hostPort(host, port)}): it offers ${key.type} ${fp}, known_hosts has ${was}. ` +
            'Someone could be intercepting the connection, or the host key was replaced.',
          hint: `if the change is expected, check the new fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), remove the old entry with: ssh-keygen -R ${shq(name)} -f ${shq(this.file)}, then accept the new key (--accept-new-host-keys never replaces a changed key)`,
        };
      }
      case 'unknown': {
        if (!this.acceptNew) {
          return {
            ok: false,
            message: `host key of ${node} (${hostPort(host, port)}) is not in ${this.file}: ${key.type} ${fp}`,
            hint: `compare it with the node's key (ssh-keygen -lf /etc/ssh/ssh_host_${shortType(key.type)}_key.pub on the node); to accept it, connect once with ssh ${port === 22 ? '' : `-p ${port} `}${shq(host)}, or run regen with --accept-new-host-keys`,
          };
        }
        await appendKnownHost(this.file, host, port, key, { hash: this.hash || extra.hash === true });
        this.#accepted.push({ node, name, type: key.type, fingerprint: fp, file: this.file });
        return { ok: true };
      }
    }
  }
}

/** Per-host additions from ssh_config: its UserKnownHostsFile / GlobalKnownHostsFile, HashKnownHosts. */
export interface HostKeyFiles {
  files?: string[];
  hash?: boolean;
}

function shortType(type: string): string {
  if (type === 'ssh-ed25519') return 'ed25519';
  if (type.startsWith('ecdsa')) return 'ecdsa';
  if (type === 'ssh-rsa') return 'rsa';
  return '*';
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export { shq };

/**
 * The command as the node runs it: under `timeout` so it dies there even if regen is gone, and through
 * `sudo -n` when the login user is not root (sudo outside, so timeout can kill the whole process group).
 */
export function wrapCommand(command: string, opts: { timeoutSec: number; killAfterSec: number; sudo: boolean }): string {
  const inner = `timeout --kill-after=${opts.killAfterSec} ${opts.timeoutSec} sh -c ${shq(command)}`;
  return opts.sudo ? `sudo -n -- ${inner}` : inner;
}

/** Keys parsed (and passphrases asked) once per process, not once per node or reconnect. */
class KeyCache {
  readonly #keys = new Map<string, Promise<ParsedKey | string>>();

  /** A parsed private key, or a reason it cannot be used. */
  get(path: string, prompt: PassphrasePrompt | undefined, pauseClock: (paused: boolean) => void): Promise<ParsedKey | string> {
    let p = this.#keys.get(path);
    if (p === undefined) {
      p = this.#load(path, prompt, pauseClock);
      this.#keys.set(path, p);
    }
    return p;
  }

  async #load(path: string, prompt: PassphrasePrompt | undefined, pauseClock: (paused: boolean) => void): Promise<ParsedKey | string> {
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (err) {
      return `${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
    }
    let parsed = firstKey(ssh2.utils.parseKey(data));
    if (!(parsed instanceof Error)) return parsed.isPrivateKey() ? parsed : `${path}: not a private key`;
    if (!/passphrase/i.test(parsed.message)) return `${path}: ${parsed.message}`;
    if (prompt === undefined) return `${path}: encrypted and no passphrase prompt is available (load it into ssh-agent)`;
    for (let attempt = 1; attempt <= 3; attempt++) {
      pauseClock(true);
      let answer: Secret | string | null | undefined;
      try {
        answer = await prompt(path, attempt);
      } finally {
        pauseClock(false);
      }
      const passphrase = typeof answer === 'string' ? answer : (answer?.reveal() ?? '');
      if (passphrase === '') return `${path}: no passphrase given`;
      parsed = firstKey(ssh2.utils.parseKey(data, passphrase));
      if (!(parsed instanceof Error)) return parsed;
    }
    return `${path}: wrong passphrase`;
  }
}

function firstKey(k: ParsedKey | ParsedKey[] | Error): ParsedKey | Error {
  return Array.isArray(k) ? (k[0] ?? new Error('no key in file')) : k;
}

/** State shared by every connection of one pool (one run). */
interface Shared {
  opts: SshTransportOptions;
  config: SshConfig;
  policy: HostKeyPolicy;
  keys: KeyCache;
  home: string;
  localUser: string;
}

function makeShared(opts: SshTransportOptions): Shared {
  const home = opts.home ?? homedir();
  let localUser = opts.localUser;
  if (localUser === undefined) {
    try {
      localUser = userInfo().username;
    } catch {
      localUser = process.env['USER'] ?? 'root';
    }
  }
  const configPath = opts.sshConfigPath === undefined ? defaultSshConfigPath(home) : opts.sshConfigPath;
  const config = opts.sshConfig ?? (configPath === null ? { blocks: [], warnings: [] } : loadSshConfig(configPath, { home }));
  const policy = new HostKeyPolicy({
    file: opts.knownHostsPath ?? join(home, '.ssh', 'known_hosts'),
    acceptNew: opts.acceptNewHostKeys === true,
    hash: opts.hashKnownHosts === true,
    readOnly: readOnlyKnownHosts(opts, home),
  });
  return { opts, config, policy, keys: new KeyCache(), home, localUser };
}

/** One hop of a connection: where to connect and how to log in. */
interface Hop {
  label: string;
  resolved: ResolvedHost;
  identityFiles: string[];
  explicitIdentities: boolean;
}

/** Why a connect attempt failed; `retry` says whether another attempt could help. */
class ConnectFailure extends Error {
  constructor(
    message: string,
    readonly hint: string,
    readonly retry: boolean,
    /** The node answered with a host key regen must not trust: a preflight problem, not an unreachable node. */
    readonly untrusted = false,
  ) {
    super(message);
  }
}

const TAIL = 4096;

function tail(s: string): string {
  return s.length <= TAIL ? s : s.slice(s.length - TAIL);
}

/**
 * One node's connection and the Remote over it. Commands run concurrently as channels of one connection.
 */
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

export class SshTransport implements Remote {
  readonly node: string;
  readonly target: SshTarget;
  readonly #shared: Shared;
  #client: Client | null = null;
  #jumps: Client[] = [];
  #connecting: Promise<Client> | null = null;
  #closed = false;
  #user: string | null = null;
  #connections = 0;
  readonly #sessions: Slots;

  constructor(target: SshTarget, opts: SshTransportOptions | Shared = {}) {
    this.node = target.node;
    this.target = target;
    this.#shared = 'policy' in opts && 'keys' in opts ? opts : makeShared(opts);
    this.#sessions = new Slots(this.#shared.opts.maxSessions ?? 8);
  }

  /** Login user on the node once connected (root or a sudoer). */
  get user(): string | null {
    return this.#user;
  }

  /** TCP connections opened so far to the node itself (jump hops not counted). */
  get connectionCount(): number {
    return this.#connections;
  }

  get connected(): boolean {
    return this.#client !== null;
  }

  acceptedHostKeys(): AcceptedHostKey[] {
    return this.#shared.policy.accepted();
  }

  /** Open the connection now (preflight), so reachability and host keys are settled before any step. */
  async connect(signal?: AbortSignal): Promise<void> {
    await this.#ensure(signal);
  }

  /**
   * sshd refuses sessions beyond its MaxSessions (OpenSSH's default is 10) on one connection, and a leader serves
   * every parallel follower's reads: commands beyond maxSessions wait for a free channel instead.
   */
  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    await this.#sessions.acquire();
    try {
      return await this.#execNow(command, opts);
    } finally {
      this.#sessions.release();
    }
  }

  /** `command` on a pseudo-terminal, answered prompt by prompt (adapters/ssh/pty-dialog.ts). */
  async dialog(command: string, opts: DialogOptions): Promise<DialogResult> {
    await this.#sessions.acquire();
    try {
      const o = this.#shared.opts;
      const client = await this.#ensure(opts.signal);
      const budget = opts.stepTimeoutMs * opts.steps.length + opts.finishTimeoutMs;
      const wrapped = wrapDialogCommand(command, { timeoutSec: Math.ceil(budget / 1000) + 2, killAfterSec: o.remoteKillAfterSec ?? 5, sudo: this.#user !== 'root' });
      const channel = await openPtyChannel(client, this.node, wrapped);
      return await driveDialog(channel, this.node, firstLine(command), opts, o.now ?? Date.now);
    } finally {
      this.#sessions.release();
    }
  }

  async #execNow(command: string, opts: ExecOptions): Promise<ExecResult> {
    const o = this.#shared.opts;
    const now = o.now ?? Date.now;
    const started = now();
    const timeoutMs = opts.timeoutMs ?? o.commandTimeoutMs ?? 600_000;
    const audit = (exitCode: number | null, stdout: string, stderr: string, outcome: 'completed' | 'unreachable' | 'unknown'): void => {
      if (o.audit === undefined) return;
      try {
        o.audit({
          node: this.node,
          command,
          exitCode,
          durationMs: now() - started,
          stdoutTail: opts.secretOutput === undefined || opts.secretOutput === false ? cutNote(stdout) + tail(stdout) : withheld(stdout, opts.secretOutput),
          stderrTail: cutNote(stderr) + tail(stderr),
          outcome,
        });
      } catch {
        // The command's outcome must reach the caller; the sink reports its own failures.
      }
    };

    if (aborted(opts.signal)) {
      throw new RegenError('aborted', `command on ${this.node} not started: aborted`, { node: this.node });
    }

    // Connect, and if the connection turns out dead before the command is sent, connect again once.
    let client: Client | undefined;
    let channel: ClientChannel | undefined;
    for (let attempt = 0; attempt < 2 && channel === undefined; attempt++) {
      try {
        client = await this.#ensure(opts.signal);
      } catch (err) {
        audit(null, '', err instanceof Error ? err.message : String(err), 'unreachable');
        throw err;
      }
      if (aborted(opts.signal)) {
        throw new RegenError('aborted', `command on ${this.node} not started: aborted`, { node: this.node });
      }
      const sudo = (opts.root ?? true) && this.#user !== 'root';
      const wrapped = wrapCommand(command, {
        timeoutSec: Math.ceil(timeoutMs / 1000) + 2,
        killAfterSec: o.remoteKillAfterSec ?? 5,
        sudo,
      });
      try {
        // The deadline runs from here: an sshd that keeps the connection alive but never answers the exec request
        // must not leave the command pending forever. The node may have started it: the outcome is unknown.
        const opening = this.#openExec(client, wrapped);
        const left = started + timeoutMs - now();
        channel = await withinDeadline(opening, left, () => {
          this.#drop(client as Client);
          return new OutcomeUnknownError(this.node, `${this.node} did not answer the request to start "${firstLine(command)}" within ${Math.round(timeoutMs / 1000)} s`);
        });
      } catch (err) {
        if (err instanceof NotSent) {
          this.#drop(client);
          continue;
        }
        const outcome = err instanceof OutcomeUnknownError ? 'unknown' : 'unreachable';
        audit(null, '', err instanceof Error ? err.message : String(err), outcome);
        throw err;
      }
    }
    if (channel === undefined || client === undefined) {
      const err = new NodeUnreachableError(this.node, `connection to ${this.node} closed before the command could be sent`, 'check the node and retry');
      audit(null, '', err.message, 'unreachable');
      throw err;
    }
    return this.#run(channel, command, opts, Math.max(1, started + timeoutMs - now()), started, audit);
  }

  #openExec(client: Client, wrapped: string): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      try {
        client.exec(wrapped, (err, stream) => {
          if (err === undefined || err === null) {
            // ssh2 may deliver a short command's whole life (data, exit-status, EOF) in the same read as the exec
            // reply, before #run's listeners exist: data waits in the stream's buffer, but an 'exit' event nobody
            // listens to is gone, and the command would look interrupted (seen with 24 commands at once on a node).
            stream.once('exit', (code: number | null, signal?: string) => {
              earlyExits.set(stream, { code: typeof code === 'number' ? code : null, signal: signal ?? null });
            });
            resolve(stream);
            return;
          }
          if (this.#client !== client) {
            // The connection died while the exec request was in flight: the node may have started it.
            reject(new OutcomeUnknownError(this.node, `connection to ${this.node} dropped while starting a command: ${err.message}`));
          } else {
            reject(new NodeUnreachableError(this.node, `${this.node} refused to start a command: ${err.message}`, 'check MaxSessions and the login shell of the SSH user on the node'));
          }
        });
      } catch {
        // ssh2 throws "Not connected" synchronously: nothing was sent.
        reject(new NotSent());
      }
    });
  }

  #run(
    channel: ClientChannel,
    command: string,
    opts: ExecOptions,
    timeoutMs: number,
    started: number,
    audit: (exitCode: number | null, stdout: string, stderr: string, outcome: 'completed' | 'unreachable' | 'unknown') => void,
  ): Promise<ExecResult> {
    const now = this.#shared.opts.now ?? Date.now;
    const node = this.node;
    const user = this.#user;
    return new Promise<ExecResult>((resolve, reject) => {
      let exitCode: number | null = null;
      let exitSignal: string | null = null;
      let settled = false;
      const outCap = new TailBuffer(OUTPUT_CAP_BYTES);
      const errCap = new TailBuffer(OUTPUT_CAP_BYTES);
      const stdout = (): string => outCap.text();
      const stderr = (): string => errCap.text();

      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const unknown = (why: string): void =>
        finish(() => {
          audit(exitCode, stdout(), stderr(), 'unknown');
          reject(new OutcomeUnknownError(node, `${why} on ${node}; whether "${firstLine(command)}" took effect is unknown`));
        });
      const stop = (): void => {
        try {
          channel.signal('TERM');
        } catch {
          // Best effort: the node's `timeout` wrapper ends the command in any case.
        }
        try {
          channel.close();
        } catch {
          // The channel may already be gone with its connection.
        }
      };

      const timer = setTimeout(() => {
        stop();
        unknown(`command timed out after ${Math.round(timeoutMs / 1000)} s`);
      }, timeoutMs);
      const onAbort = (): void => {
        stop();
        unknown('command aborted');
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      // Aborted while the channel was opening: the command may have started, so this is still "unknown".
      if (aborted(opts.signal)) onAbort();

      channel.on('data', (d: Buffer) => outCap.push(d));
      channel.stderr.on('data', (d: Buffer) => errCap.push(d));
      channel.on('exit', (code: number | null, signal?: string) => {
        exitCode = typeof code === 'number' ? code : null;
        exitSignal = signal ?? null;
      });
      channel.on('error', () => {
        // Channel errors end in 'close'; the outcome is decided there.
      });
      channel.on('close', () => {
        const early = earlyExits.get(channel);
        if (exitCode === null && exitSignal === null && early !== undefined) {
          exitCode = early.code;
          exitSignal = early.signal;
        }
        if (exitCode === null) {
          unknown(exitSignal !== null ? `command killed by signal ${exitSignal}` : 'connection dropped or channel closed before the command finished');
          return;
        }
        const code = exitCode;
        const errText = stderr();
        finish(() => {
          if (user !== 'root' && (opts.root ?? true) && code === 1 && /^sudo: (a password is required|a terminal is required)/m.test(errText)) {
            audit(code, '', errText, 'unreachable');
            reject(
              new PrivilegeError(
                node,
                `user ${user ?? '?'} on node ${node} needs passwordless sudo for regen (or log in as root)`,
                `add "${user ?? 'USER'} ALL=(root) NOPASSWD: ALL" to a file in /etc/sudoers.d on ${node}, or set the inventory's sshUser / ssh_config User to root`,
              ),
            );
            return;
          }
          if (user !== 'root' && (opts.root ?? true) && code === 127 && /sudo: (command )?not found/.test(errText)) {
            audit(code, '', errText, 'unreachable');
            reject(new PrivilegeError(node, `sudo is not installed on ${node} and user ${user ?? '?'} is not root`, `install sudo on ${node} or log in as root`));
            return;
          }
          const text = stdout();
          audit(code, text, errText, 'completed');
          resolve({ code, stdout: text, stderr: errText, durationMs: now() - started });
        });
      });

      // EOF even without input, so a command that reads stdin does not wait for the timeout.
      if (opts.stdin !== undefined) channel.end(opts.stdin);
      else channel.end();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const clients = [this.#client, ...[...this.#jumps].reverse()].filter((c): c is Client => c !== null);
    this.#client = null;
    this.#jumps = [];
    await Promise.all(clients.map((c) => endClient(c)));
  }

  #drop(client: Client): void {
    if (this.#client === client) {
      this.#client = null;
      for (const j of this.#jumps) j.end();
      this.#jumps = [];
    }
    client.end();
  }

  #ensure(signal?: AbortSignal): Promise<Client> {
    if (this.#closed) return Promise.reject(new NodeUnreachableError(this.node, `connection to ${this.node} was closed by regen`));
    if (this.#client !== null) return Promise.resolve(this.#client);
    if (this.#connecting === null) {
      this.#connecting = this.#connectWithRetry(signal).finally(() => {
        this.#connecting = null;
      });
    }
    return this.#connecting;
  }

  async #connectWithRetry(signal?: AbortSignal): Promise<Client> {
    const o = this.#shared.opts;
    const attempts = Math.max(1, o.reconnect?.attempts ?? 3);
    const base = o.reconnect?.baseDelayMs ?? 200;
    const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const random = o.random ?? Math.random;
    let last: ConnectFailure | undefined;
    for (let i = 0; i < attempts; i++) {
      if (signal?.aborted === true) break;
      try {
        return await this.#connectChain();
      } catch (err) {
        last = err instanceof ConnectFailure ? err : new ConnectFailure(String(err), 'check the node and retry', false);
        if (!last.retry || i + 1 >= attempts) break;
        await sleep(Math.round(base * 2 ** i * (0.5 + random())));
      }
    }
    if (last === undefined) throw new RegenError('aborted', `connecting to ${this.node} aborted`, { node: this.node });
    if (last.untrusted) throw new HostKeyRefusedError(this.node, last.message, last.hint);
    throw new NodeUnreachableError(this.node, last.message, last.hint);
  }

  /** The hops of this node: jump hosts in order, then the node itself. */
  #hops(): Hop[] {
    const s = this.#shared;
    const ro = { home: s.home, localUser: s.localUser };
    const resolved = resolveHost(s.config, this.target.host, ro);
    if (this.target.port !== undefined) resolved.port = this.target.port;
    if (this.target.user !== undefined) resolved.user = this.target.user;
    if (resolved.proxyCommand !== undefined && resolved.proxyJump.length === 0) {
      throw new ConnectFailure(
        `${this.node}: ssh_config sets ProxyCommand for ${this.target.host}, which regen does not run`,
        'use ProxyJump instead of ProxyCommand in ssh_config for this host',
        false,
      );
    }
    const hop = (label: string, r: ResolvedHost, explicit: string[]): Hop => {
      const files = [...explicit, ...r.identityFiles];
      return {
        label,
        resolved: r,
        identityFiles: files.length > 0 ? dedupe(files) : defaultIdentityFiles(s.home),
        explicitIdentities: files.length > 0,
      };
    };
    const jumps = resolved.proxyJump.map((j: JumpHost) => {
      const r = resolveHost(s.config, j.host, ro);
      if (j.port !== undefined) r.port = j.port;
      if (j.user !== undefined) r.user = j.user;
      return hop(`jump host ${j.host}`, r, []);
    });
    return [...jumps, hop(this.node, resolved, this.target.identityFile === undefined ? [] : [this.target.identityFile])];
  }

  async #connectChain(): Promise<Client> {
    const hops = this.#hops();
    const opened: Client[] = [];
    try {
      let sock: Duplex | undefined;
      let via = '';
      for (let i = 0; i < hops.length; i++) {
        const hop = hops[i] as Hop;
        const prev = opened[opened.length - 1];
        if (prev !== undefined) sock = await forwardOutWithin(prev, hop, this.node, via, hopTimeoutMs(this.#shared.opts, hop));
        const client = await this.#connectOne(hop, sock, via);
        opened.push(client);
        via = ` via ${hostPort(hop.resolved.hostName, hop.resolved.port)}`;
      }
      const target = opened[opened.length - 1] as Client;
      const last = hops[hops.length - 1] as Hop;
      this.#connections++;
      this.#user = last.resolved.user;
      this.#client = target;
      this.#jumps = opened.slice(0, -1);
      const onGone = (): void => {
        if (this.#client === target) {
          this.#client = null;
          for (const j of this.#jumps) j.end();
          this.#jumps = [];
        }
      };
      target.on('close', onGone);
      target.on('end', onGone);
      for (const j of this.#jumps) j.on('close', onGone);
      return target;
    } catch (err) {
      for (const c of opened.reverse()) c.end();
      throw err;
    }
  }

  #connectOne(hop: Hop, sock: Duplex | undefined, via: string): Promise<Client> {
    const s = this.#shared;
    const o = s.opts;
    const r = hop.resolved;
    const where = `${hop.label === this.node ? this.node : `${this.node}'s ${hop.label}`} at ${hostPort(r.hostName, r.port)}${via}`;
    const keyHost = r.hostKeyAlias ?? r.hostName;
    const connectTimeoutMs = o.connectTimeoutMs ?? o.readyTimeoutMs ?? (r.connectTimeoutSec !== undefined ? r.connectTimeoutSec * 1000 : 15_000);

    return (async () => {
      const knownTypes = await s.policy.knownTypes(keyHost, r.port, hostKeyFiles(r, s.opts));
      return new Promise<Client>((resolve, reject) => {
        const client = new ssh2.Client();
        let hostKeyVerdict: Verdict | undefined;
        let lastError: (Error & { level?: string }) | undefined;
        const tried: string[] = [];
        let done = false;

        // Our own deadline instead of ssh2's readyTimeout, so it can stand still while a passphrase is typed.
        let timer: NodeJS.Timeout | undefined;
        let timedOut = false;
        const arm = (): void => {
          timer = setTimeout(() => {
            timedOut = true;
            client.destroy();
          }, connectTimeoutMs);
        };
        const pause = (paused: boolean): void => {
          clearTimeout(timer);
          if (!paused && !done) arm();
        };

        const fail = (f: ConnectFailure): void => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          client.destroy();
          reject(f);
        };

        client.on('ready', () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          client.setNoDelay(o.noDelay ?? true);
          resolve(client);
        });
        client.on('error', (e: Error & { level?: string }) => {
          // Agent errors are followed by the next auth method; only the final close decides.
          if (e.level !== 'agent') lastError = e;
          else tried.push(`agent (${e.message})`);
        });
        client.on('close', () => {
          if (done) return;
          fail(this.#explain(where, r, hostKeyVerdict, lastError, timedOut, connectTimeoutMs, tried));
        });

        const methods = this.#authMethods(hop, tried, pause);
        const config: ConnectConfig = {
          host: r.hostName,
          port: r.port,
          username: r.user,
          readyTimeout: 0,
          keepaliveInterval: o.keepaliveIntervalMs ?? (r.serverAliveIntervalSec !== undefined ? r.serverAliveIntervalSec * 1000 : 15_000),
          keepaliveCountMax: o.keepaliveCountMax ?? r.serverAliveCountMax ?? 3,
          algorithms: { serverHostKey: preferredHostKeyAlgorithms(knownTypes) as ServerHostKeyAlgorithm[] },
          hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
            pause(true);
            s.policy.verify(hop.label, keyHost, r.port, key, hostKeyFiles(r, s.opts)).then(
              (v) => {
                hostKeyVerdict = v;
                pause(false);
                verify(v.ok);
              },
              (e: unknown) => {
                hostKeyVerdict = { ok: false, message: `cannot read ${s.policy.file}: ${String(e)}`, hint: 'check --known-hosts' };
                pause(false);
                verify(false);
              },
            );
          },
          authHandler: ((methodsLeft, _partial, next) => {
            // ssh2 takes `false` for "no more methods"; its typings do not say so.
            const give = next as (m: AnyAuthMethod | false) => void;
            methods(methodsLeft).then(give, () => give(false));
          }) satisfies AuthHandlerMiddleware,
        };
        if (sock !== undefined) config.sock = sock;
        arm();
        try {
          client.connect(config);
        } catch (e) {
          fail(new ConnectFailure(`cannot connect to ${where}: ${String(e)}`, 'check the target settings', false));
        }
      });
    })();
  }

  /** Auth methods in ssh's order: agent keys, then identity files (asking for passphrases as needed). */
  #authMethods(hop: Hop, tried: string[], pause: (paused: boolean) => void): (left: AuthenticationType[] | null) => Promise<AnyAuthMethod | false> {
    const s = this.#shared;
    const r = hop.resolved;
    const agentSock = r.identityAgent !== undefined ? r.identityAgent : s.opts.agentSocket !== undefined ? s.opts.agentSocket : (process.env['SSH_AUTH_SOCK'] ?? null);
    const queue: Array<{ kind: 'agent'; sock: string } | { kind: 'file'; path: string }> = [];
    if (agentSock !== null && agentSock !== '' && !(r.identitiesOnly && hop.explicitIdentities)) queue.push({ kind: 'agent', sock: agentSock });
    for (const path of hop.identityFiles) queue.push({ kind: 'file', path });
    return async (left) => {
      while (queue.length > 0) {
        const m = queue.shift();
        if (m === undefined) break;
        if (left !== null && !left.includes('publickey')) {
          tried.push(`server allows only ${left.join(', ')}`);
          return false;
        }
        if (m.kind === 'agent') {
          tried.push(`agent ${m.sock}`);
          return { type: 'agent', username: r.user, agent: m.sock };
        }
        // Default identity files that do not exist are silently skipped, as ssh does.
        const key = await s.keys.get(m.path, s.opts.passphrasePrompt, pause);
        if (typeof key === 'string') {
          if (hop.explicitIdentities || !key.endsWith('ENOENT')) tried.push(key);
          continue;
        }
        tried.push(m.path);
        return { type: 'publickey', username: r.user, key };
      }
      return false;
    };
  }

  #explain(
    where: string,
    r: ResolvedHost,
    verdict: Verdict | undefined,
    e: (Error & { level?: string; code?: string }) | undefined,
    timedOut: boolean,
    timeoutMs: number,
    tried: string[],
  ): ConnectFailure {
    if (verdict !== undefined && !verdict.ok) return new ConnectFailure(verdict.message, verdict.hint, false, true);
    if (timedOut) {
      return new ConnectFailure(
        `cannot reach ${where}: no SSH session within ${Math.round(timeoutMs / 1000)} s`,
        `check that the node is up and that ${hostPort(r.hostName, r.port)} is reachable from here (ssh -p ${r.port} ${r.user}@${r.hostName})`,
        true,
      );
    }
    if (e?.level === 'client-authentication') {
      const what = tried.length > 0 ? tried.join('; ') : 'no key (no agent, no identity file)';
      return new ConnectFailure(
        `cannot log in to ${where} as ${r.user}: authentication failed (tried: ${what})`,
        `make sure ${r.user}'s authorized_keys on the node holds one of these keys, load the key into ssh-agent (ssh-add), or name it with IdentityFile / the inventory's identityFile`,
        false,
      );
    }
    const msg = e?.message ?? 'connection closed';
    const code = e?.code ?? '';
    let hint = `check that sshd runs on the node and listens on ${r.port} (ssh -p ${r.port} ${shq(`${r.user}@${r.hostName}`)})`;
    if (code === 'ECONNREFUSED') hint = `nothing listens on ${hostPort(r.hostName, r.port)}: start sshd on the node or fix the port (inventory sshPort / ssh_config Port)`;
    else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') hint = `the name ${r.hostName} does not resolve: fix the inventory's sshHost or ssh_config HostName`;
    else if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') hint = `no route to ${r.hostName}: check the network path from here to the node`;
    const permanent = code === 'ENOTFOUND' || e?.level === 'handshake';
    return new ConnectFailure(`cannot reach ${where}: ${msg}`, hint, !permanent);
  }
}

class NotSent extends Error {}

/** Exit status that arrived before #run listened (see #openExec). */
const earlyExits = new WeakMap<ClientChannel, { code: number | null; signal: string | null }>();

/** A function, not an inline check, so TypeScript does not assume the flag cannot change across awaits. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

function firstLine(s: string): string {
  const line = s.split('\n', 1)[0] ?? '';
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

function forwardOut(via: Client, hop: Hop, node: string, viaText: string): Promise<Duplex> {
  const r = hop.resolved;
  return new Promise((resolve, reject) => {
    try {
      via.forwardOut('127.0.0.1', 0, r.hostName, r.port, (err, stream) => {
        if (err) {
          reject(
            new ConnectFailure(
              `cannot reach ${node}'s ${hop.label === node ? 'SSH port' : hop.label} at ${hostPort(r.hostName, r.port)}${viaText}: the jump host could not open the connection (${err.message})`,
              'check that the jump host can reach the node (and allows TCP forwarding: AllowTcpForwarding)',
              true,
            ),
          );
        } else {
          resolve(stream);
        }
      });
    } catch (e) {
      reject(new ConnectFailure(`jump connection${viaText} closed: ${String(e)}`, 'retry', true));
    }
  });
}

function endClient(c: Client): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (): void => {
      if (!done) {
        done = true;
        clearTimeout(t);
        resolve();
      }
    };
    // A peer that does not answer the disconnect must not hold up shutdown.
    const t = setTimeout(() => {
      c.destroy();
      finish();
    }, 2000);
    c.once('close', finish);
    try {
      c.end();
    } catch {
      finish();
    }
  });
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

/** What the audit keeps of a secret output: its size, and its sha256 when that reveals nothing (ciphertext). */
export function withheld(stdout: string, how: true | 'digest'): string {
  const bytes = Buffer.byteLength(stdout, 'utf8');
  const digest = how === 'digest' ? `, sha256 ${createHash('sha256').update(stdout, 'utf8').digest('hex')}` : '';
  return `(output withheld: ${bytes} bytes${digest})`;
}

/** What OpenSSH reads besides the recording file: ~/.ssh/known_hosts2 (default setup only) and the global files. */
function readOnlyKnownHosts(opts: SshTransportOptions, home: string): string[] {
  const defaults = defaultKnownHostsFiles(home);
  return [...(opts.knownHostsPath === undefined ? defaults.user : []), ...(opts.globalKnownHostsFiles ?? defaults.global)];
}

/** ssh_config's files for this host; --known-hosts replaces its UserKnownHostsFile, as `ssh -o` would. */
function hostKeyFiles(r: ResolvedHost, o: SshTransportOptions): HostKeyFiles {
  const user = o.knownHostsPath === undefined ? r.userKnownHostsFiles : [];
  return { files: [...user, ...r.globalKnownHostsFiles], hash: r.hashKnownHosts };
}

/** Captured stdout and stderr are each capped here; the tail is kept (errors and markers come last). */
export const OUTPUT_CAP_BYTES = 1024 * 1024;

/**
 * The last `cap` bytes of a stream, in bounded memory, and whether anything was cut. A node printing without end
 * must not grow regen's memory until Buffer.toString throws inside a listener and the process dies.
 */
export class TailBuffer {
  #chunks: Buffer[] = [];
  #size = 0;
  #dropped = 0;
  constructor(readonly cap: number) {}

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (this.#size <= this.cap * 2) return;
    const all = Buffer.concat(this.#chunks);
    const keep = all.subarray(all.length - this.cap);
    this.#dropped += all.length - keep.length;
    this.#chunks = [Buffer.from(keep)];
    this.#size = keep.length;
  }

  get droppedBytes(): number {
    return this.#dropped + Math.max(0, this.#size - this.cap);
  }

  /** The kept tail, preceded by a line saying how much was cut when output went past the cap. */
  text(): string {
    const all = Buffer.concat(this.#chunks);
    const keep = all.length > this.cap ? all.subarray(all.length - this.cap) : all;
    const cut = this.droppedBytes;
    const body = keep.toString('utf8');
    return cut === 0 ? body : `[regen: output cut, first ${cut} bytes dropped; last ${keep.length} bytes kept]\n${body}`;
  }
}

/** Settles with `p`, or rejects with `onTimeout()` once `ms` have passed (the late result is ignored). */
export function withinDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function hopTimeoutMs(o: SshTransportOptions, hop: Hop): number {
  const r = hop.resolved;
  return o.connectTimeoutMs ?? o.readyTimeoutMs ?? (r.connectTimeoutSec !== undefined ? r.connectTimeoutSec * 1000 : 15_000);
}

/** forwardOut through a jump host, bounded: a jump host that never answers the request is a failed hop. */
function forwardOutWithin(via: Client, hop: Hop, node: string, viaText: string, ms: number): Promise<Duplex> {
  const r = hop.resolved;
  return withinDeadline(
    forwardOut(via, hop, node, viaText),
    ms,
    () => new ConnectFailure(`cannot reach ${node} at ${hostPort(r.hostName, r.port)}${viaText}: the jump host did not open the connection within ${Math.round(ms / 1000)} s`, 'check the jump host', true),
  );
}

/** The "output cut" line TailBuffer puts first, for an audit that keeps only the end of the text. */
function cutNote(text: string): string {
  if (!text.startsWith('[regen: output cut')) return '';
  const nl = text.indexOf('\n');
  return `${text.slice(0, nl < 0 ? text.length : nl)}\n…`;
}
