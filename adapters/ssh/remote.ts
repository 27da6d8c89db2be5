import type { DialogOptions, DialogResult } from './pty-dialog.js';
/**
 * What the Carbonio adapter needs from a transport: run a command on one node.
 * SshTransport (adapters/ssh/pool.ts) implements it over ssh2; tests may implement it in memory.
 *
 * Outcomes (machines/errors.ts):
 * - resolves with { code, stdout, stderr } when the command ran to completion (any exit code);
 * - rejects NodeUnreachableError when the command never started (connect/auth/host-key failure);
 * - rejects OutcomeUnknownError when the connection dropped or the command timed out after it started.
 */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface ExecOptions {
  /** Written to the command's stdin, then stdin is closed. The only way a secret may reach a node. */
  stdin?: string | Buffer;
  /** Per-command timeout; also enforced on the node (`timeout` wrapper) so a hung command does not linger. */
  timeoutMs?: number;
  /** Aborting closes the channel (a stopped machine state stops its command). */
  signal?: AbortSignal;
  /** Run as root: prefix `sudo -n` when the login user is not root (default true). */
  root?: boolean;
  /**
   * stdout carries a secret or what a guesser needs (the password file, the encrypted credentials): the audit gets
   * only its size, and with 'digest' its sha256 too (for ciphertext; a password's hash would help a guesser).
   */
  secretOutput?: boolean | 'digest';
}

export interface Remote {
  readonly node: string;
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  /** The command on a pseudo-terminal, answered prompt by prompt (pty-dialog.ts); absent where no pty exists. */
  dialog?(command: string, opts: DialogOptions): Promise<DialogResult>;
  close(): Promise<void>;
}

/** Called after every command with a redacted copy (the command audit). */
export type AuditSink = (entry: {
  node: string;
  command: string;
  exitCode: number | null;
  durationMs: number;
  stdoutTail: string;
  stderrTail: string;
  outcome: 'completed' | 'unreachable' | 'unknown';
}) => void;
