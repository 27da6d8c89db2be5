/** The machine a benchmark ran on, for the report: figures mean little without it. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { MachineInfo } from './perf-figures.js';

function firstLine(argv: string[]): string | null {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return null;
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  if (r.error !== undefined || r.status !== 0) return null;
  // `ssh -V` answers on stderr.
  const text = r.stdout.trim() !== '' ? r.stdout : r.stderr;
  return text.split('\n')[0]?.trim() || null;
}

function osRelease(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(fs.readFileSync('/etc/os-release', 'utf8'));
    return m?.[1] ?? os.type();
  } catch {
    return os.type();
  }
}

export function machineInfo(loadAtStart: number): MachineInfo {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    nproc: os.availableParallelism(),
    memoryMiB: Math.round(os.totalmem() / 1024 / 1024),
    kernel: os.release(),
    os: osRelease(),
    node: process.version,
    ansible: firstLine(['ansible-playbook', '--version']),
    openssh: firstLine(['ssh', '-V']),
    loadAverage: { start: loadAtStart, end: os.loadavg()[0] ?? 0 },
  };
}
