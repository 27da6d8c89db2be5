/**
 * An admin at a terminal: `ssh -tt NODE COMMAND`, waiting for each prompt before typing the answer and Enter (`\r`,
 * what a keyboard sends). Bounded: every prompt must come within the step timeout, the exit within the last.
 */
import { spawn } from 'node:child_process';
import type { Lab } from '../lab.js';

export interface TerminalRun {
  code: number | null;
  /** What the terminal showed (stdout and stderr are one stream on a pty). */
  out: string;
  /** Prompts that came and were answered. */
  answered: number;
}

export function sshTerminal(
  lab: Lab,
  node: string,
  command: string,
  answers: Array<[prompt: string, answer: string]> = [],
  opts: { stepTimeoutMs?: number } = {},
): Promise<TerminalRun> {
  const stepMs = opts.stepTimeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', ['-tt', '-F', lab.sshConfig, '-o', 'BatchMode=yes', node, command], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let since = 0;
    let next = 0;
    let timer: NodeJS.Timeout;
    const arm = (): void => {
      clearTimeout(timer);
      const what = answers[next]?.[0] ?? 'the exit';
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`no ${JSON.stringify(what)} within ${stepMs} ms from \`${command}\` on ${node}; terminal:\n${out}`));
      }, stepMs);
    };
    const look = (): void => {
      const a = answers[next];
      if (a === undefined || !out.slice(since).endsWith(a[0])) return;
      next += 1;
      since = out.length;
      child.stdin.write(`${a[1]}\r`);
      arm();
    };
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      look();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, answered: next });
    });
    arm();
  });
}
