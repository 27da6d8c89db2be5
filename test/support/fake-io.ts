/**
 * An Io for calling the command functions in-process: what they print is collected, stdin is a stream that may
 * carry one typed answer (the confirmation), and no terminal is claimed unless asked for.
 */
import { PassThrough } from 'node:stream';
import type { Io } from '../../cli/io.js';

export type FakeIo = Io & { stdoutText: () => string; stderrText: () => string };

export function fakeIo(env: NodeJS.ProcessEnv = {}, o: { stdinIsTTY?: boolean; answer?: string } = {}): FakeIo {
  let out = '';
  let err = '';
  const stdin = new PassThrough();
  if (o.answer !== undefined) stdin.end(`${o.answer}\n`);
  return {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    isTTY: false,
    stdinIsTTY: o.stdinIsTTY ?? false,
    stdin,
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    env,
    onInterrupt: () => () => undefined,
    stdoutText: () => out,
    stderrText: () => err,
  };
}
