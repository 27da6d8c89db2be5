/**
 * What setNoDelay buys on an exec round trip: one OpenSSH sshd on loopback, two SshTransports to it in the same
 * process (one with setNoDelay(true), regen's default, one with Nagle left on), the same small command run on
 * each in alternating rounds, so both see the same machine load. Reports medians and the ratio; no threshold.
 *
 *   npm run build && sudo node dist/bench/nodelay.js [--rounds 50] [--out bench/results]
 *
 * Root is needed to run sshd and to add the throwaway login user (shell /bin/sh) it logs in as; without useradd
 * it logs in as root, whose shell may read startup files on every exec (the same cost on both sides).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SshTransport } from '../adapters/ssh/transport.js';

const SSHD = '/usr/sbin/sshd';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function keygen(path: string): string {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'regen-bench', '-f', path]);
  return readFileSync(`${path}.pub`, 'utf8').trim();
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port }, () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/**
 * A throwaway login user whose shell is /bin/sh, so an exec costs what the transport costs and not what root's
 * shell startup files cost; root when useradd is missing. Removed again by dropUser.
 */
function benchUser(dir: string): string {
  const name = `rgnb${process.pid % 100_000}`;
  try {
    execFileSync('useradd', ['-M', '-d', dir, '-s', '/bin/sh', name], { stdio: 'ignore' });
  } catch {
    return 'root';
  }
  try {
    // A locked account ("!") is refused by sshd without PAM; "*" means no password, not locked.
    execFileSync('usermod', ['-p', '*', name], { stdio: 'ignore' });
    return name;
  } catch {
    dropUser(name);
    return 'root';
  }
}

function dropUser(name: string): void {
  if (name !== 'root') execFileSync('userdel', [name], { stdio: 'ignore' });
}

/** sshd on 127.0.0.1 accepting the bench user with the bench's key; returns its port, host key line and process. */
async function startSshd(dir: string, user: string, clientPub: string): Promise<{ port: number; knownHosts: string; proc: ChildProcess }> {
  const port = await freePort();
  const hostPub = keygen(join(dir, 'host_ed25519'));
  mkdirSync(join(dir, 'auth'), { mode: 0o755 });
  writeFileSync(join(dir, 'auth', user), `${clientPub}\n`, { mode: 0o644 });
  const cfg = join(dir, 'sshd_config');
  const lines = [`Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_ed25519')}`, `PidFile ${join(dir, 'sshd.pid')}`];
  lines.push(`AuthorizedKeysFile ${join(dir, 'auth')}/%u`, 'StrictModes no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no');
  lines.push('PubkeyAuthentication yes', 'PermitRootLogin prohibit-password', 'UsePAM no', 'MaxSessions 64', '');
  writeFileSync(cfg, lines.join('\n'));
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
  execFileSync(SSHD, ['-t', '-f', cfg]);
  const proc = spawn(SSHD, ['-D', '-f', cfg, '-E', join(dir, 'sshd.log')], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !(await listening(port)); i++) {
    if (proc.exitCode !== null) throw new Error(`sshd exited ${proc.exitCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const [type, b64] = hostPub.split(' ');
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${type} ${b64}\n`);
  return { port, knownHosts, proc };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function timed(t: SshTransport, command: string): Promise<number> {
  const t0 = performance.now();
  await t.exec(command, { root: false });
  return performance.now() - t0;
}

interface Side {
  label: string;
  noDelay: boolean;
  transport: SshTransport;
  ms: number[];
}

/** Alternating rounds of the same command on both transports (warmed up first: the connect is not measured). */
async function measure(sides: Side[], command: string, rounds: number): Promise<void> {
  for (const s of sides) await s.transport.exec(command, { root: false });
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? sides : [...sides].reverse();
    for (const s of order) s.ms.push(await timed(s.transport, command));
  }
}

function report(sides: Side[], command: string, rounds: number, user: string): { markdown: string; json: Record<string, unknown> } {
  const [on, off] = sides as [Side, Side];
  const med = (s: Side) => quantile(s.ms, 0.5);
  const ratio = med(off) / med(on);
  const rows = sides.map((s) => `| ${s.label} | ${med(s).toFixed(2)} | ${quantile(s.ms, 0.9).toFixed(2)} | ${Math.min(...s.ms).toFixed(2)} |`);
  const markdown = [
    `# Exec round trip with and without setNoDelay`,
    '',
    `OpenSSH sshd on loopback, one reused connection per side, \`${command}\` as ${user}, ${rounds} times on each, alternating.`,
    '',
    '| socket | median ms | p90 ms | min ms |',
    '| --- | ---: | ---: | ---: |',
    ...rows,
    '',
    `Nagle on / setNoDelay(true), medians: **${ratio.toFixed(2)}×**`,
    '',
  ].join('\n');
  const json = { command, user, rounds, ratioMedian: ratio, sides: sides.map((s) => ({ label: s.label, noDelay: s.noDelay, ms: s.ms })), connections: [on.transport.connectionCount, off.transport.connectionCount] };
  return { markdown, json };
}

async function main(): Promise<void> {
  const rounds = Number(arg('rounds', '50'));
  const out = arg('out', '');
  const command = arg('command', 'true');
  if (process.getuid?.() !== 0) throw new Error('run as root: the benchmark starts sshd and logs in as root');
  const dir = mkdtempSync(join(tmpdir(), 'regen-nodelay-'));
  chmodSync(dir, 0o755); // sshd reads the login user's authorized keys as that user
  let sshd: ChildProcess | undefined;
  const sides: Side[] = [];
  const user = benchUser(dir);
  try {
    const key = join(dir, 'id_client');
    const s = await startSshd(dir, user, keygen(key));
    sshd = s.proc;
    for (const [label, noDelay] of [['setNoDelay(true)', true], ['Nagle on', false]] as const) {
      const opts = { knownHostsPath: s.knownHosts, sshConfigPath: null, agentSocket: null, home: dir, noDelay };
      sides.push({ label, noDelay, transport: new SshTransport({ node: 'bench', host: '127.0.0.1', port: s.port, user, identityFile: key }, opts), ms: [] });
    }
    await measure(sides, command, rounds);
    const r = report(sides, command, rounds, user);
    process.stdout.write(r.markdown);
    if (out !== '') {
      mkdirSync(out, { recursive: true });
      writeFileSync(join(out, 'nodelay.md'), r.markdown);
      writeFileSync(join(out, 'nodelay.json'), `${JSON.stringify(r.json, null, 2)}\n`);
    }
  } finally {
    for (const side of sides) await side.transport.close();
    if (sshd?.pid !== undefined && sshd.exitCode === null) process.kill(sshd.pid, 'SIGTERM');
    dropUser(user);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`nodelay: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
