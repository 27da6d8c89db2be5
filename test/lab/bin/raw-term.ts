/**
 * The lab side of `term.New` (pkg/term/term_unix.go): refuse a stdin that is not a terminal, else put it in raw
 * mode as Go's `term.MakeRaw` does (no echo, no line editing, no output processing: `stty raw -echo` clears OPOST
 * too, which Node's own raw mode keeps) and restore it afterwards.
 */
import { spawnSync } from 'node:child_process';
import * as tty from 'node:tty';
import { NOT_A_TERMINAL, type TermIo } from '../../sim/setup-dialog.js';
import { SimError } from '../../sim/model.js';

export function requireTerminal(): void {
  if (!tty.isatty(0)) throw new SimError(`service-discover: error: ${NOT_A_TERMINAL}`, 1);
}

function stty(args: string[]): string {
  const r = spawnSync('stty', args, { stdio: ['inherit', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new SimError(`service-discover: error: stty ${args.join(' ')}: ${r.stderr.trim()}`, 1);
  return r.stdout.trim();
}

export interface RawTerminal {
  io: TermIo;
  /** `terminal.Close`: the saved mode back, stdin released. */
  close(): void;
}

export function openRawTerminal(): RawTerminal {
  const saved = stty(['-g']);
  stty(['raw', '-echo']);
  const queue: number[] = [];
  const waiters: Array<(b: number | null) => void> = [];
  let ended = false;
  const onData = (chunk: Buffer): void => {
    for (const b of chunk) {
      const w = waiters.shift();
      if (w !== undefined) w(b);
      else queue.push(b);
    }
  };
  const onEnd = (): void => {
    ended = true;
    for (const w of waiters.splice(0)) w(null);
  };
  process.stdin.on('data', onData);
  process.stdin.on('end', onEnd);
  process.stdin.on('error', onEnd);
  process.stdin.resume();
  const io: TermIo = {
    write: (bytes) => {
      process.stdout.write(bytes);
    },
    readByte: () => {
      const b = queue.shift();
      if (b !== undefined) return Promise.resolve(b);
      if (ended) return Promise.resolve(null);
      return new Promise((resolve) => waiters.push(resolve));
    },
  };
  let closed = false;
  return {
    io,
    close: () => {
      if (closed) return;
      closed = true;
      process.stdin.off('data', onData);
      process.stdin.pause();
      try {
        stty([saved]);
      } catch {
        // The terminal may be gone with its session.
      }
      process.stdin.destroy();
      onEnd();
    },
  };
}
