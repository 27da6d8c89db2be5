/**
 * The peers of the benchmark, each run against a lab as a child process: the runbook scripted over OpenSSH, the
 * same steps as an Ansible playbook, and regen.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import type { Lab } from '../../test/lab/lab.js';
import { leaderOf, timedRun } from './perf-lab.js';
import type { Timed } from './perf-lab.js';

export interface PeerRun {
  timed: Timed;
  /** regen only. */
  cpuMs?: number | null;
  peakRssKiB?: number | null;
  downtimeSelfMs?: number | null;
  remoteCommands?: number | null;
  /** regen only: the largest persisted snapshot of the run (to build the status benchmark's database). */
  largestSnapshot?: string | null;
  db?: string;
}

export function followersOf(lab: Lab): string[] {
  const leader = leaderOf(lab);
  return lab.nodes.filter((n) => n.name !== leader.name).map((n) => n.name);
}

export async function runManual(repo: string, lab: Lab, secretFile: string, timeoutMs: number): Promise<PeerRun> {
  const script = path.join(repo, 'bench', 'peers', 'manual.sh');
  const timed = await timedRun(['bash', script, lab.dir, secretFile, leaderOf(lab).name, ...followersOf(lab)], { timeoutMs });
  return { timed };
}

/** Inventory, configuration and vars for one Ansible run, in `work`. */
export function writeAnsibleFiles(lab: Lab, work: string, secretFile: string, forks: number): { inventory: string; cfg: string; vars: string } {
  fs.mkdirSync(work, { recursive: true, mode: 0o700 });
  const leader = leaderOf(lab);
  const inventory = path.join(work, 'inventory.ini');
  const common = [
    'ansible_user=root',
    `ansible_ssh_private_key_file=${lab.identityFile}`,
    `ansible_ssh_common_args='-F ${lab.sshConfig}'`,
    'ansible_python_interpreter=/usr/bin/python3',
  ];
  fs.writeFileSync(
    inventory,
    ['[leader]', leader.name, '', '[followers]', ...followersOf(lab), '', '[all:vars]', ...common, ''].join('\n'),
  );
  const cfg = path.join(work, 'ansible.cfg');
  // What an administrator tuning for speed would set: forks for the followers' play, pipelining (one ssh round trip
  // per task instead of several), no fact gathering (the playbook does not need facts), OpenSSH's ControlPersist
  // (Ansible's default) for connection reuse.
  fs.writeFileSync(
    cfg,
    [
      '[defaults]',
      `forks = ${forks}`,
      'host_key_checking = True',
      'gathering = explicit',
      'retry_files_enabled = False',
      'interpreter_python = /usr/bin/python3',
      `local_tmp = ${path.join(work, 'tmp')}`,
      '',
      '[ssh_connection]',
      'pipelining = True',
      `control_path_dir = ${path.join(work, 'cp')}`,
      '',
    ].join('\n'),
  );
  const vars = path.join(work, 'vars.yml');
  const secret = fs.readFileSync(secretFile, 'utf8');
  fs.writeFileSync(vars, `mesh_secret: ${JSON.stringify(secret)}\ncredentials_dir: ${JSON.stringify(path.join(work, 'credentials'))}\n`, { mode: 0o600 });
  return { inventory, cfg, vars };
}

export async function runAnsible(repo: string, lab: Lab, work: string, secretFile: string, forks: number, timeoutMs: number): Promise<PeerRun> {
  const f = writeAnsibleFiles(lab, work, secretFile, forks);
  const env = { ...process.env, ANSIBLE_CONFIG: f.cfg, ANSIBLE_NOCOLOR: '1', ANSIBLE_HOME: path.join(work, 'home') };
  const timed = await timedRun(['ansible-playbook', '-i', f.inventory, path.join(repo, 'bench', 'peers', 'playbook.yml'), '-e', `@${f.vars}`], {
    env,
    timeoutMs,
    cwd: work,
  });
  return { timed };
}

/** `/usr/bin/time -f` output: elapsed, user, system seconds, max RSS KiB. */
function parseGnuTime(file: string): { cpuMs: number; rssKiB: number } | null {
  try {
    const last = fs.readFileSync(file, 'utf8').trim().split('\n').pop() ?? '';
    const m = /^TIME (\S+) (\S+) (\d+)$/.exec(last);
    if (!m) return null;
    return { cpuMs: (Number(m[1]) + Number(m[2])) * 1000, rssKiB: Number(m[3]) };
  } catch {
    return null;
  }
}

export function regenArgs(repo: string, lab: Lab, db: string, secretFile: string): string[] {
  return [
    process.execPath,
    path.join(repo, 'dist', 'cli', 'main.js'),
    'start',
    '-i',
    lab.inventory,
    '--ssh-config',
    lab.sshConfig,
    '--known-hosts',
    lab.knownHosts,
    '--password-file',
    secretFile,
    '--db',
    db,
    '--yes',
    '--json',
  ];
}

export function readRegenDb(db: string): Pick<PeerRun, 'downtimeSelfMs' | 'remoteCommands' | 'largestSnapshot'> {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const run = d.prepare('SELECT id, downtime_started_at AS s, downtime_ended_at AS e FROM runs ORDER BY created_at DESC LIMIT 1').get() as
      | { id: string; s: number | null; e: number | null }
      | undefined;
    if (run === undefined) return { downtimeSelfMs: null, remoteCommands: null, largestSnapshot: null };
    const count = d.prepare('SELECT count(*) AS c FROM audit WHERE run_id = ?').get(run.id) as { c: number };
    const snap = d.prepare('SELECT snapshot FROM transitions WHERE run_id = ? ORDER BY length(snapshot) DESC LIMIT 1').get(run.id) as
      | { snapshot: string }
      | undefined;
    return {
      downtimeSelfMs: run.s !== null && run.e !== null ? run.e - run.s : null,
      remoteCommands: count.c,
      largestSnapshot: snap?.snapshot ?? null,
    };
  } finally {
    d.close();
  }
}

export async function runRegen(
  repo: string,
  lab: Lab,
  work: string,
  secretFile: string,
  parallel: number | null,
  timeoutMs: number,
): Promise<PeerRun> {
  fs.mkdirSync(work, { recursive: true, mode: 0o700 });
  const db = path.join(work, 'regen.db');
  const timeFile = path.join(work, 'time.txt');
  const argv = [
    '/usr/bin/time',
    '-f',
    'TIME %U %S %M',
    '-o',
    timeFile,
    ...regenArgs(repo, lab, db, secretFile),
    ...(parallel === null ? [] : ['--parallel', String(parallel)]),
  ];
  const timed = await timedRun(argv, { timeoutMs, stdoutFile: path.join(work, 'events.ndjson'), cwd: repo });
  const usage = parseGnuTime(timeFile);
  return {
    timed,
    cpuMs: usage?.cpuMs ?? null,
    peakRssKiB: usage?.rssKiB ?? null,
    db,
    ...(fs.existsSync(db) ? readRegenDb(db) : {}),
  };
}
