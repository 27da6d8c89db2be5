/**
 * The command functions' view of the terminal, so tests drive them without a process.
 */
import type { Readable, Writable } from 'node:stream';

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** stdout is a terminal (live view, colours). */
  isTTY: boolean;
  /** stdin is a terminal (prompts are possible). */
  stdinIsTTY: boolean;
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
  /** Registers a Ctrl-C handler; returns a function that removes it. */
  onInterrupt(handler: () => void): () => void;
}

export function processIo(): Io {
  return {
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
    isTTY: process.stdout.isTTY === true,
    stdinIsTTY: process.stdin.isTTY === true,
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    onInterrupt: (handler) => {
      process.on('SIGINT', handler);
      process.on('SIGTERM', handler);
      return () => {
        process.off('SIGINT', handler);
        process.off('SIGTERM', handler);
      };
    },
  };
}
