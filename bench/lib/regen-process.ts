/**
 * The real regen command line as a child process: what an operator runs, killed the way a bad day kills it.
 * Shared by the crash sweep and the lab tests, so both judge regen from the outside only (exit code, stdout
 * events, stderr).
 */
import { spawn } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, type Lab } from '../../test/lab/lab.js';

export const REGEN = join(repoRoot(), 'dist', 'cli', 'main.js');

/** One line of `--json` output (adapters/terminal/events.schema.json); only the fields the harness reads. */
export interface RegenEvent {
  type: string;
  runId?: string;
  step?: string;
  node?: string;
  state?: string;
  status?: string;
  [k: string]: unknown;
}

export interface RegenOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  events: RegenEvent[];
  /** Set when the harness killed the process (SIGKILL). */
  killed: boolean;
  /** 1-based index of the event line that decided the kill. */
  killedAfterEvent: number | null;
  durationMs: number;
  pid: number;
}

export interface RunRegenOptions {
  env?: NodeJS.ProcessEnv;
  stdin?: string;
  /** Hard bound: the process is killed after this long (default 300 s). */
  timeoutMs?: number;
  /**
   * Called for every event line (1-based index): a number kills the process with SIGKILL that many ms later
   * (0: at once); false lets it go on. Only the first kill decision counts.
   */
  killAt?: (event: RegenEvent, index: number) => number | false;
  /** Called once the child exists (e.g. to take `ps` snapshots while it runs). */
  onSpawn?: (pid: number) => void;
}

/** Runs `node dist/cli/main.js ARGS`; never rejects for a non-zero exit. */
export function runRegen(args: string[], opts: RunRegenOptions = {}): Promise<RegenOutcome> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [REGEN, ...args], {
      env: { ...process.env, NO_COLOR: '1', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const events: RegenEvent[] = [];
    let stdout = '';
    let stderr = '';
    let pending = '';
    let killed = false;
    let killedAfterEvent: number | null = null;
    const kill = (): void => {
      killed = true;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(kill, opts.timeoutMs ?? 300_000);
    let killTimer: NodeJS.Timeout | null = null;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      pending += d.toString();
      for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        let event: RegenEvent;
        try {
          event = JSON.parse(line) as RegenEvent;
        } catch {
          continue;
        }
        if (typeof event.type !== 'string') continue;
        events.push(event);
        if (killedAfterEvent !== null || !opts.killAt) continue;
        const delay = opts.killAt(event, events.length);
        if (delay === false) continue;
        killedAfterEvent = events.length;
        if (delay <= 0) kill();
        else killTimer = setTimeout(kill, delay);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.stdin ?? '');
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      resolve({ code, signal, stdout, stderr, events, killed, killedAfterEvent, durationMs: Date.now() - t0, pid: child.pid ?? 0 });
    });
  });
}

/** The new mesh secret for a run, in a 0600 file inside the lab directory. */
export function writeSecretFile(lab: Lab, name = 'new-secret', secret = `regen-new-${Math.random().toString(36).slice(2, 14)}`): { file: string; secret: string } {
  const file = join(lab.dir, name);
  writeFileSync(file, secret, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { file, secret };
}

/** Flags that point regen at a lab: its ssh_config, known_hosts and a database in the lab directory. */
export function connectArgs(lab: Lab, db = join(lab.dir, 'regen.db')): string[] {
  return ['--ssh-config', lab.sshConfig, '--known-hosts', lab.knownHosts, '--db', db];
}

export function startArgs(lab: Lab, secretFile: string, extra: string[] = [], db?: string): string[] {
  return ['start', '-i', lab.inventory, '--password-file', secretFile, '--yes', ...connectArgs(lab, db), ...extra];
}

export function resumeArgs(lab: Lab, secretFile: string | null, extra: string[] = [], db?: string): string[] {
  return ['resume', '--yes', ...(secretFile === null ? [] : ['--password-file', secretFile]), ...connectArgs(lab, db), ...extra];
}
