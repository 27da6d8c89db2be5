/**
 * A command on a pseudo-terminal, driven prompt by prompt.
 *
 * `service-discover setup` and `setup-wizard` refuse a stdin that is not a terminal (pkg/term/term_unix.go), and
 * the wizard is the only way to hand a server its password without putting it on an argv. On a pty the command's
 * stdout and stderr are one stream; the terminal starts with echo off (the wizard itself echoes only what
 * `ReadLine` reads, never a password). Each expected prompt must appear within the step timeout; an answer goes on
 * the channel's stdin, followed by Enter (`\r`, what a terminal sends).
 *
 * Outcomes: resolves `{ code, transcript }` when the command exited (any code, prompts answered or not); rejects
 * OutcomeUnknownError when a prompt did not come in time, an unexpected prompt appeared, or the channel dropped —
 * the command was stopped and the step must be probed. The transcript is always redacted.
 */
import type { Client, ClientChannel, PseudoTtyOptions } from 'ssh2';
import { OutcomeUnknownError, NodeUnreachableError } from '../../machines/errors.js';
import { shq } from '../shell/quote.js';

export interface DialogStep {
  /** What the step answers, for the transcript ("bind address", "password"). */
  name: string;
  /** The prompt, matched against the end of the output received since the previous answer. */
  prompt: string;
  /** The answer, produced when the prompt is there (a secret is revealed only at that moment). */
  answer: () => string;
}

export interface DialogOptions {
  steps: DialogStep[];
  /** Longest wait for each prompt. */
  stepTimeoutMs: number;
  /** Longest wait for the exit after the last answer. */
  finishTimeoutMs: number;
  /** Masks every secret in a text (transcript, errors). */
  redact: (text: string) => string;
  signal?: AbortSignal;
  /** How long the output must stay quiet, ending in something that looks like a prompt, to call it unexpected. */
  quietMs?: number;
}

export interface DialogResult {
  code: number;
  /** Everything the terminal showed, redacted. */
  transcript: string;
  /** Steps whose prompt came and were answered. */
  answered: number;
  durationMs: number;
}

/** Echo off from the first byte: nothing sent is shown back before the program sets its own mode. */
export const DIALOG_PTY: PseudoTtyOptions = { term: 'dumb', rows: 24, cols: 200, modes: { ECHO: 0 } };

/**
 * The command as the node runs it on a pty: `timeout --foreground`, since a `timeout` in its own process group
 * would leave the command in the background of the terminal, stopped (SIGTTIN/SIGTTOU) on its first read or mode
 * change; `sudo -n` outside when the login user is not root.
 */
export function wrapDialogCommand(command: string, opts: { timeoutSec: number; killAfterSec: number; sudo: boolean }): string {
  const inner = `timeout --foreground --kill-after=${opts.killAfterSec} ${opts.timeoutSec} sh -c ${shq(command)}`;
  return opts.sudo ? `sudo -n -- ${inner}` : inner;
}

/** Opens the exec channel with a pty. */
export function openPtyChannel(client: Client, node: string, wrapped: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(wrapped, { pty: DIALOG_PTY }, (err, stream) => {
        if (err === undefined || err === null) {
          // A command that fails at once may exit in the same read as the exec reply, before the driver listens.
          stream.once('exit', (code: number | null) => earlyExits.set(stream, typeof code === 'number' ? code : null));
          resolve(stream);
        } else reject(new OutcomeUnknownError(node, `${node} did not start a command on a terminal: ${err.message}`));
      });
    } catch (e) {
      reject(new NodeUnreachableError(node, `connection to ${node} closed before the command could be sent: ${(e as Error).message}`, 'check the node and retry'));
    }
  });
}

const earlyExits = new WeakMap<object, number | null>();

const PROMPT_LIKE = /[:?]\s*$/;

/** The minimal channel the driver needs (ssh2's ClientChannel has it; tests give a fake). */
export interface DialogChannel {
  on(event: 'data', fn: (d: Buffer) => void): unknown;
  on(event: 'exit', fn: (code: number | null, signal?: string) => void): unknown;
  on(event: 'close', fn: () => void): unknown;
  on(event: 'error', fn: (e: Error) => void): unknown;
  write(data: string): unknown;
  signal?(name: string): unknown;
  close(): unknown;
}

/** Drives the channel through the steps (see the file comment for the outcomes). */
/** TERM, then close: closing the channel hangs up the terminal, which ends the command too. */
function hangUp(channel: DialogChannel): void {
  try {
    channel.signal?.('TERM');
  } catch {
    // Best effort.
  }
  try {
    channel.close();
  } catch {
    // Already gone.
  }
}

export function driveDialog(channel: DialogChannel, node: string, what: string, o: DialogOptions, now: () => number = Date.now): Promise<DialogResult> {
  const started = now();
  return new Promise<DialogResult>((resolve, reject) => {
    let out = '';
    let since = 0;
    let next = 0;
    let exitCode: number | null = null;
    let settled = false;
    let stepTimer: NodeJS.Timeout | undefined;
    let quietTimer: NodeJS.Timeout | undefined;
    const transcript = (): string => o.redact(out);
    const clear = (): void => {
      clearTimeout(stepTimer);
      clearTimeout(quietTimer);
      o.signal?.removeEventListener('abort', onAbort);
    };
    const stop = (why: string): void => {
      if (settled) return;
      settled = true;
      clear();
      hangUp(channel);
      const tail = transcript().slice(-400).replace(/\r/g, '');
      reject(new OutcomeUnknownError(node, `${why} during ${what} on ${node}; the step is probed. Terminal:\n${tail}`));
    };
    const arm = (): void => {
      clearTimeout(stepTimer);
      const step = o.steps[next];
      const ms = step === undefined ? o.finishTimeoutMs : o.stepTimeoutMs;
      const label = step === undefined ? 'no exit' : `no prompt for the ${step.name}`;
      stepTimer = setTimeout(() => stop(`${label} after ${Math.round(ms / 1000)} s`), ms);
    };
    const onAbort = (): void => stop('aborted');
    const look = (): void => {
      const step = o.steps[next];
      if (step === undefined || settled) return;
      const fresh = out.slice(since);
      if (fresh.endsWith(step.prompt)) {
        clearTimeout(quietTimer);
        next += 1;
        since = out.length;
        channel.write(`${step.answer()}\r`);
        arm();
        return;
      }
      clearTimeout(quietTimer);
      if (PROMPT_LIKE.test(fresh.replace(/\r?\n$/, 'x'))) {
        quietTimer = setTimeout(() => stop(`unexpected prompt (waiting for the ${step.name})`), o.quietMs ?? 1500);
      }
    };
    channel.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      look();
    });
    channel.on('exit', (code: number | null) => {
      exitCode = typeof code === 'number' ? code : null;
    });
    channel.on('error', () => {
      // Ends in 'close', where the outcome is decided.
    });
    channel.on('close', () => {
      if (settled) return;
      if (exitCode === null) exitCode = earlyExits.get(channel) ?? null;
      if (exitCode === null) {
        stop('connection dropped or terminal closed');
        return;
      }
      settled = true;
      clear();
      resolve({ code: exitCode, transcript: transcript(), answered: next, durationMs: now() - started });
    });
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted === true) onAbort();
    arm();
  });
}
