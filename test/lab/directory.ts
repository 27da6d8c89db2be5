/**
 * The lab's directory endpoint (bin/directory.ts): started with the lab, stopped by `down` and by
 * `fault directory down`. Its pid is in DIR/directory.pid.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

export const LDAP_PORT = 389;

/** The host's address on the lab bridge, where the directory listens. */
export function directoryHost(subnet: string): string {
  return subnet.replace(/\.0\/24$/, '.1');
}

export function ldapMasterUrl(subnet: string): string {
  return `ldap://${directoryHost(subnet)}:${LDAP_PORT}`;
}

function pidFile(dir: string): string {
  return path.join(dir, 'directory.pid');
}

function readPid(dir: string): number {
  try {
    return Number(fs.readFileSync(pidFile(dir), 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

function ours(pid: number, dir: string): boolean {
  try {
    return pid > 0 && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

function listening(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port: LDAP_PORT });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function rejectsBinds(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--reject-binds');
  } catch {
    return false;
  }
}

/**
 * Start the listener (bounded wait until it accepts); a running one in the same mode is kept. `rejectBinds`: it
 * refuses the nodes' credentials (the bind service-discover's setup and `zmprov -l` make after connecting).
 */
export async function directoryUp(dir: string, subnet: string, repo: string, opts: { rejectBinds?: boolean } = {}): Promise<void> {
  const running = readPid(dir);
  if (ours(running, dir)) {
    if (rejectsBinds(running) === (opts.rejectBinds === true)) return;
    await directoryDown(dir);
  }
  const host = directoryHost(subnet);
  const js = path.join(repo, 'dist', 'test', 'lab', 'bin', 'directory.js');
  // The lab dir on the command line lets down (and only down of this lab) recognise it.
  const args = [js, host, String(LDAP_PORT), `--lab=${dir}`, ...(opts.rejectBinds === true ? ['--reject-binds'] : [])];
  const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore' });
  child.unref();
  fs.writeFileSync(pidFile(dir), `${child.pid ?? 0}\n`);
  for (let i = 0; i < 100 && !(await listening(host)); i++) await new Promise((r) => setTimeout(r, 20));
}

/** Stop the listener if it is this lab's. */
export async function directoryDown(dir: string): Promise<boolean> {
  const pid = readPid(dir);
  fs.rmSync(pidFile(dir), { force: true });
  if (!ours(pid, dir)) return false;
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && ours(pid, dir); i++) await new Promise((r) => setTimeout(r, 20));
  return true;
}
