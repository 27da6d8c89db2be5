/**
 * Running one command on a connected node: the `timeout`/`sudo` wrapper, the channel open bounded by the command's
 * deadline, bounded capture of its output, and the outcome (adapters/ssh/remote.ts): completed with an exit code,
 * never started (NodeUnreachableError), or unknown (OutcomeUnknownError) when regen did not see its end.
 */
import { createHash } from 'node:crypto';
import type { ClientChannel } from 'ssh2';
import { shq } from '../shell/quote.js';
import { NodeUnreachableError, OutcomeUnknownError, PrivilegeError, RegenError } from '../../machines/errors.js';
import type { Client, NodeConnection } from './connect.js';
import type { SshTransportOptions } from './options.js';
import { driveDialog, openPtyChannel, wrapDialogCommand, type DialogOptions, type DialogResult } from './pty-dialog.js';
import type { ExecOptions, ExecResult } from './remote.js';
import { aborted, firstLine, withinDeadline } from './util.js';

/**
 * The command as the node runs it: under `timeout` so it dies there even if regen is gone, and through
 * `sudo -n` when the login user is not root (sudo outside, so timeout can kill the whole process group).
 */
export function wrapCommand(command: string, opts: { timeoutSec: number; killAfterSec: number; sudo: boolean }): string {
  const inner = `timeout --kill-after=${opts.killAfterSec} ${opts.timeoutSec} sh -c ${shq(command)}`;
  return opts.sudo ? `sudo -n -- ${inner}` : inner;
}

type Outcome = 'completed' | 'unreachable' | 'unknown';
type Audit = (exitCode: number | null, stdout: string, stderr: string, outcome: Outcome) => void;

/** When the command started and how long it may take, on the transport's clock. */
interface Deadline {
  started: number;
  timeoutMs: number;
  now: () => number;
}

/** `command` on the node over `conn`: connected (again, once, if the connection is found dead before sending). */
export async function execCommand(conn: NodeConnection, o: SshTransportOptions, command: string, opts: ExecOptions): Promise<ExecResult> {
  const now = o.now ?? Date.now;
  const deadline: Deadline = { started: now(), timeoutMs: opts.timeoutMs ?? o.commandTimeoutMs ?? 600_000, now };
  const audit = auditFor(o, conn.node, command, opts, deadline);
  if (aborted(opts.signal)) throw notStarted(conn.node);
  const channel = await openCommand(conn, o, command, opts, deadline, audit);
  const left = Math.max(1, deadline.started + deadline.timeoutMs - now());
  return runChannel(channel, { node: conn.node, user: conn.user, command, opts, timeoutMs: left, started: deadline.started, now, audit });
}

/** `command` on a pseudo-terminal, answered prompt by prompt (adapters/ssh/pty-dialog.ts). */
export async function dialogCommand(conn: NodeConnection, o: SshTransportOptions, command: string, opts: DialogOptions): Promise<DialogResult> {
  const client = await conn.ensure(opts.signal);
  const budget = opts.stepTimeoutMs * opts.steps.length + opts.finishTimeoutMs;
  const wrapped = wrapDialogCommand(command, { timeoutSec: Math.ceil(budget / 1000) + 2, killAfterSec: o.remoteKillAfterSec ?? 5, sudo: conn.user !== 'root' });
  const channel = await openPtyChannel(client, conn.node, wrapped);
  return driveDialog(channel, conn.node, firstLine(command), opts, o.now ?? Date.now);
}

function notStarted(node: string): RegenError {
  return new RegenError('aborted', `command on ${node} not started: aborted`, { node });
}

/** The audit entry of this command; a sink that throws does not change the command's outcome. */
function auditFor(o: SshTransportOptions, node: string, command: string, opts: ExecOptions, d: Deadline): Audit {
  return (exitCode, stdout, stderr, outcome) => {
    if (o.audit === undefined) return;
    try {
      o.audit({
        node,
        command,
        exitCode,
        durationMs: d.now() - d.started,
        stdoutTail: opts.secretOutput === undefined || opts.secretOutput === false ? cutNote(stdout) + tail(stdout) : withheld(stdout, opts.secretOutput),
        stderrTail: cutNote(stderr) + tail(stderr),
        outcome,
      });
    } catch {
      // The command's outcome must reach the caller; the sink reports its own failures.
    }
  };
}

/** Connect, and if the connection turns out dead before the command is sent, connect again once. */
async function openCommand(conn: NodeConnection, o: SshTransportOptions, command: string, opts: ExecOptions, d: Deadline, audit: Audit): Promise<ClientChannel> {
  for (let attempt = 0; attempt < 2; attempt++) {
    let client: Client;
    try {
      client = await conn.ensure(opts.signal);
    } catch (err) {
      audit(null, '', err instanceof Error ? err.message : String(err), 'unreachable');
      throw err;
    }
    if (aborted(opts.signal)) throw notStarted(conn.node);
    const sudo = (opts.root ?? true) && conn.user !== 'root';
    const wrapped = wrapCommand(command, { timeoutSec: Math.ceil(d.timeoutMs / 1000) + 2, killAfterSec: o.remoteKillAfterSec ?? 5, sudo });
    try {
      return await openWithinDeadline(conn, client, wrapped, command, d);
    } catch (err) {
      if (err instanceof NotSent) {
        conn.drop(client);
        continue;
      }
      audit(null, '', err instanceof Error ? err.message : String(err), err instanceof OutcomeUnknownError ? 'unknown' : 'unreachable');
      throw err;
    }
  }
  const err = new NodeUnreachableError(conn.node, `connection to ${conn.node} closed before the command could be sent`, 'check the node and retry');
  audit(null, '', err.message, 'unreachable');
  throw err;
}

/**
 * The deadline runs from the start: an sshd that keeps the connection alive but never answers the exec request
 * must not leave the command pending forever. The node may have started it: the outcome is unknown.
 */
function openWithinDeadline(conn: NodeConnection, client: Client, wrapped: string, command: string, d: Deadline): Promise<ClientChannel> {
  const opening = openExec(conn, client, wrapped);
  const left = d.started + d.timeoutMs - d.now();
  return withinDeadline(opening, left, () => {
    conn.drop(client);
    return new OutcomeUnknownError(conn.node, `${conn.node} did not answer the request to start "${firstLine(command)}" within ${Math.round(d.timeoutMs / 1000)} s`);
  });
}

/** ssh2 refused to send the request (not connected): the command never left regen. */
class NotSent extends Error {}

/** Exit status that arrived before runChannel listened (see openExec). */
const earlyExits = new WeakMap<ClientChannel, { code: number | null; signal: string | null }>();

function openExec(conn: NodeConnection, client: Client, wrapped: string): Promise<ClientChannel> {
  const node = conn.node;
  return new Promise((resolve, reject) => {
    try {
      client.exec(wrapped, (err, stream) => {
        if (err === undefined || err === null) {
          // ssh2 may deliver a short command's whole life (data, exit-status, EOF) in the same read as the exec
          // reply, before runChannel's listeners exist: data waits in the stream's buffer, but an 'exit' event nobody
          // listens to is gone, and the command would look interrupted (seen with 24 commands at once on a node).
          stream.once('exit', (code: number | null, signal?: string) => {
            earlyExits.set(stream, { code: typeof code === 'number' ? code : null, signal: signal ?? null });
          });
          resolve(stream);
          return;
        }
        if (conn.client !== client) {
          // The connection died while the exec request was in flight: the node may have started it.
          reject(new OutcomeUnknownError(node, `connection to ${node} dropped while starting a command: ${err.message}`));
        } else {
          reject(new NodeUnreachableError(node, `${node} refused to start a command: ${err.message}`, 'check MaxSessions and the login shell of the SSH user on the node'));
        }
      });
    } catch {
      // ssh2 throws "Not connected" synchronously: nothing was sent.
      reject(new NotSent());
    }
  });
}

/** A started command: who runs it, and what to do with its end. */
interface RunContext {
  node: string;
  /** Login user when the channel opened. */
  user: string | null;
  command: string;
  opts: ExecOptions;
  /** Time left of the command's deadline. */
  timeoutMs: number;
  started: number;
  now: () => number;
  audit: Audit;
}

/** Follows an open channel to its end: the exit code, or an unknown outcome on timeout, abort or drop. */
function runChannel(channel: ClientChannel, ctx: RunContext): Promise<ExecResult> {
  return new Promise<ExecResult>((resolve, reject) => {
    new ChannelRun(channel, ctx, resolve, reject).start();
  });
}

class ChannelRun {
  #exitCode: number | null = null;
  #exitSignal: string | null = null;
  #settled = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #out = new TailBuffer(OUTPUT_CAP_BYTES);
  readonly #err = new TailBuffer(OUTPUT_CAP_BYTES);

  constructor(
    readonly channel: ClientChannel,
    readonly ctx: RunContext,
    readonly resolve: (r: ExecResult) => void,
    readonly reject: (e: Error) => void,
  ) {}

  start(): void {
    const { channel, ctx } = this;
    this.#timer = setTimeout(() => {
      this.#stop();
      this.#unknown(`command timed out after ${Math.round(ctx.timeoutMs / 1000)} s`);
    }, ctx.timeoutMs);
    ctx.opts.signal?.addEventListener('abort', this.#onAbort, { once: true });
    // Aborted while the channel was opening: the command may have started, so this is still "unknown".
    if (aborted(ctx.opts.signal)) this.#onAbort();

    channel.on('data', (d: Buffer) => this.#out.push(d));
    channel.stderr.on('data', (d: Buffer) => this.#err.push(d));
    channel.on('exit', (code: number | null, signal?: string) => {
      this.#exitCode = typeof code === 'number' ? code : null;
      this.#exitSignal = signal ?? null;
    });
    channel.on('error', () => {
      // Channel errors end in 'close'; the outcome is decided there.
    });
    channel.on('close', () => this.#closed());

    // EOF even without input, so a command that reads stdin does not wait for the timeout.
    if (ctx.opts.stdin !== undefined) channel.end(ctx.opts.stdin);
    else channel.end();
  }

  readonly #onAbort = (): void => {
    this.#stop();
    this.#unknown('command aborted');
  };

  #finish(fn: () => void): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timer);
    this.ctx.opts.signal?.removeEventListener('abort', this.#onAbort);
    fn();
  }

  #unknown(why: string): void {
    const { node, command, audit } = this.ctx;
    this.#finish(() => {
      audit(this.#exitCode, this.#out.text(), this.#err.text(), 'unknown');
      this.reject(new OutcomeUnknownError(node, `${why} on ${node}; whether "${firstLine(command)}" took effect is unknown`));
    });
  }

  #stop(): void {
    try {
      this.channel.signal('TERM');
    } catch {
      // Best effort: the node's `timeout` wrapper ends the command in any case.
    }
    try {
      this.channel.close();
    } catch {
      // The channel may already be gone with its connection.
    }
  }

  #closed(): void {
    const early = earlyExits.get(this.channel);
    if (this.#exitCode === null && this.#exitSignal === null && early !== undefined) {
      this.#exitCode = early.code;
      this.#exitSignal = early.signal;
    }
    if (this.#exitCode === null) {
      this.#unknown(this.#exitSignal !== null ? `command killed by signal ${this.#exitSignal}` : 'connection dropped or channel closed before the command finished');
      return;
    }
    const code = this.#exitCode;
    const errText = this.#err.text();
    const { audit, now, started } = this.ctx;
    this.#finish(() => {
      const refused = privilegeRefusal(this.ctx, code, errText);
      if (refused !== undefined) {
        audit(code, '', errText, 'unreachable');
        this.reject(refused);
        return;
      }
      const text = this.#out.text();
      audit(code, text, errText, 'completed');
      this.resolve({ code, stdout: text, stderr: errText, durationMs: now() - started });
    });
  }
}

/** sudo's own refusal, told apart from the command's exit: the command never ran. */
function privilegeRefusal(ctx: RunContext, code: number, errText: string): PrivilegeError | undefined {
  const { node, user, opts } = ctx;
  if (user === 'root' || !(opts.root ?? true)) return undefined;
  if (code === 1 && /^sudo: (a password is required|a terminal is required)/m.test(errText)) {
    return new PrivilegeError(
      node,
      `user ${user ?? '?'} on node ${node} needs passwordless sudo for regen (or log in as root)`,
      `add "${user ?? 'USER'} ALL=(root) NOPASSWD: ALL" to a file in /etc/sudoers.d on ${node}, or set the inventory's sshUser / ssh_config User to root`,
    );
  }
  if (code === 127 && /sudo: (command )?not found/.test(errText)) {
    return new PrivilegeError(node, `sudo is not installed on ${node} and user ${user ?? '?'} is not root`, `install sudo on ${node} or log in as root`);
  }
  return undefined;
}

/** What the audit keeps of a secret output: its size, and its sha256 when that reveals nothing (ciphertext). */
export function withheld(stdout: string, how: true | 'digest'): string {
  const bytes = Buffer.byteLength(stdout, 'utf8');
  const digest = how === 'digest' ? `, sha256 ${createHash('sha256').update(stdout, 'utf8').digest('hex')}` : '';
  return `(output withheld: ${bytes} bytes${digest})`;
}

const TAIL = 4096;

function tail(s: string): string {
  return s.length <= TAIL ? s : s.slice(s.length - TAIL);
}

/** The "output cut" line TailBuffer puts first, for an audit that keeps only the end of the text. */
function cutNote(text: string): string {
  if (!text.startsWith('[regen: output cut')) return '';
  const nl = text.indexOf('\n');
  return `${text.slice(0, nl < 0 ? text.length : nl)}\n…`;
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
