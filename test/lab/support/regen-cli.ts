/**
 * Running the real regen command line against a lab, and checking the mesh independently of regen over ssh.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, sshExec, type Lab } from '../lab.js';

export const REGEN = join(repoRoot(), 'dist', 'cli', 'main.js');

export interface RegenRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The new mesh secret a test gives regen, in a 0600 file inside the lab dir. */
export function newSecretFile(lab: Lab, secret = `new-secret-${Math.random().toString(36).slice(2, 12)}`): { file: string; secret: string } {
  const file = join(lab.dir, 'new-secret');
  writeFileSync(file, secret, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { file, secret };
}

/** Connection flags for a lab: its ssh_config and known_hosts, and a database in the lab dir. */
export function labArgs(lab: Lab, db = join(lab.dir, 'regen.db')): string[] {
  return ['--ssh-config', lab.sshConfig, '--known-hosts', join(lab.dir, 'known_hosts'), '--db', db];
}

export function regenSync(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): RegenRun {
  const r = spawnSync(process.execPath, [REGEN, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    input: opts.input ?? '',
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 180_000,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Starts regen with --json and kills it with SIGKILL when `killWhen` first matches an event line; resolves when
 * the process is gone.
 */
export function regenKilledAt(args: string[], killWhen: (event: { type: string; step?: string; node?: string; state?: string }) => boolean): Promise<RegenRun & { killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [REGEN, ...args, '--json'], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killed = false;
    let pending = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      pending += d.toString();
      let i: number;
      while ((i = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        try {
          if (!killed && killWhen(JSON.parse(line) as { type: string })) {
            killed = true;
            child.kill('SIGKILL');
          }
        } catch {
          /* not an event line */
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, killed });
    });
  });
}

export interface MeshCheck {
  members: Array<{ name: string; address: string; status: string; type: string }>;
  shas: Record<string, string | null>;
  problems: string[];
}

/**
 * Independently of regen: decrypt the leader's credentials on the leader with `secret`, list members with the
 * token, and read every node's credentials checksum.
 */
export async function checkMesh(lab: Lab, leader: string, secret: string): Promise<MeshCheck> {
  const cmd = [
    'export CONSUL_HTTP_TOKEN=$(gpg --batch -q --pinentry-mode loopback --passphrase-fd 0 -d /etc/zextras/service-discover/cluster-credentials.tar.gpg | tar xOf - consul-acl-secret.json | jq -r .SecretID)',
    'consul members',
  ].join('; ');
  const r = await sshExec(lab, leader, cmd, { stdin: secret });
  const members = r.stdout
    .split('\n')
    .slice(1)
    .filter((l) => l.trim())
    .map((l) => {
      const [name, address, status, type] = l.trim().split(/\s+/);
      return { name: name ?? '', address: address ?? '', status: status ?? '', type: type ?? '' };
    });
  const shas: Record<string, string | null> = {};
  for (const n of lab.nodes) {
    const s = await sshExec(lab, n.name, 'cat /etc/zextras/service-discover/cluster-credentials.tar.gpg 2>/dev/null | base64 -w0');
    shas[n.name] = s.stdout.trim() ? createHash('sha256').update(Buffer.from(s.stdout.trim(), 'base64')).digest('hex') : null;
  }
  const problems: string[] = [];
  if (r.code !== 0) problems.push(`consul members on ${leader} exited ${r.code}: ${r.stderr.slice(0, 200)}`);
  for (const n of lab.nodes) {
    const m = members.find((x) => x.address.startsWith(`${n.ip}:`));
    const want = n.kind === 'server' ? 'server' : 'client';
    if (!m) problems.push(`${n.name}: not a member`);
    else if (m.status !== 'alive' || m.type !== want) problems.push(`${n.name}: ${m.status} ${m.type}`);
    if (shas[n.name] !== shas[leader]) problems.push(`${n.name}: credentials differ from the leader's`);
  }
  return { members, shas, problems };
}

/** sha256 of every file regen may touch on a node, and whether the service runs: a fingerprint of the node's state. */
export async function nodeFingerprint(lab: Lab, node: string): Promise<string> {
  const r = await sshExec(
    lab,
    node,
    'find /etc/zextras /var/lib/service-discover /var/backups -type f ! -path "*/data/*" -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum; systemctl is-active service-discover',
  );
  return r.stdout;
}

export function spawnSyncOk(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
