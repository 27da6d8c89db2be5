/**
 * The transport against a real OpenSSH sshd on 127.0.0.1 (and a second one as a ProxyJump host): what a
 * Carbonio node will actually run. Needs root (sshd, temporary users); skipped otherwise unless CI is set,
 * where a missing sshd is a failure.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostKeyRefusedError, NodeUnreachableError, PrivilegeError } from '../../machines/errors.js';
import { parseKnownHosts } from '../../adapters/ssh/known-hosts.js';
import { parseSshConfig } from '../../adapters/ssh/ssh-config.js';
import { OUTPUT_CAP_BYTES, SshPool, type SshPoolOptions } from '../../adapters/ssh/transport.js';
import type { AuditSink } from '../../adapters/ssh/remote.js';
import { skipOrFail } from '../lab/prereq.js';

const SSHD = '/usr/sbin/sshd';
const isRoot = process.getuid?.() === 0;
const inCi = process.env['CI'] === 'true' || process.env['CI'] === '1';
const haveSshd = existsSync(SSHD);

let skipReason: string | null = null;
if (!haveSshd && !inCi) skipReason = `${SSHD} not installed (apt-get install -y openssh-server)`;
else if (!isRoot && !inCi) skipReason = 'needs root to run sshd and create test users (CI not set)';
if (skipReason !== null) console.warn(`ssh-openssh tests skipped: ${skipReason}`);

// Under CI nothing here may skip: a missing sshd fails the file (a describe that never runs counts as skipped).
if (inCi && !haveSshd) throw new Error(`${SSHD} is missing: install openssh-server (apt-get install -y openssh-server)`);

interface Sshd {
  port: number;
  proc: ChildProcess;
  log: string;
  hostPub: string;
}

const started: ChildProcess[] = [];

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, proc: ChildProcess, log: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) throw new Error(`sshd exited ${proc.exitCode}: ${readIfAny(log)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection({ host: '127.0.0.1', port }, () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`sshd did not listen on ${port}: ${readIfAny(log)}`);
}

function readIfAny(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function keygen(path: string, comment: string): string {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  return readFileSync(`${path}.pub`, 'utf8').trim();
}

async function startSshd(dir: string, name: string, extra: string[] = []): Promise<Sshd> {
  const port = await freePort();
  const hostKey = join(dir, `${name}_host_ed25519`);
  const hostPub = keygen(hostKey, `${name}-host`);
  const cfg = join(dir, `${name}_sshd_config`);
  const log = join(dir, `${name}.log`);
  writeFileSync(
    cfg,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, `${name}.pid`)}`,
      `AuthorizedKeysFile ${join(dir, 'auth')}/%u`,
      // The temp dir sits under world-writable /tmp, which StrictModes would reject.
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      'AllowTcpForwarding yes',
      'MaxSessions 64',
      ...extra,
      '',
    ].join('\n'),
  );
  execFileSync(SSHD, ['-t', '-f', cfg]);
  const proc = spawn(SSHD, ['-D', '-f', cfg, '-E', log], { stdio: 'ignore' });
  started.push(proc);
  await waitForPort(port, proc, log);
  return { port, proc, log, hostPub };
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  process.kill(proc.pid, 'SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, 'SIGKILL');
}

function knownLine(s: Sshd): string {
  const [type, b64] = s.hostPub.split(' ');
  return `[127.0.0.1]:${s.port} ${type} ${b64}`;
}

describe.skipIf(skipReason !== null || !haveSshd)('SshTransport against OpenSSH sshd', () => {
  let dir: string;
  let home: string;
  let target: Sshd;
  let jump: Sshd;
  let clientKey: string;
  let agentKey: string;
  let agentSock: string;
  let agent: ChildProcess | undefined;
  let knownHosts: string;
  const users: string[] = [];
  const sudoersFiles: string[] = [];
  let userSkip: string | null = null;
  const pools: SshPool[] = [];

  const pool = (opts: SshPoolOptions): SshPool => {
    const p = new SshPool({ knownHostsPath: knownHosts, sshConfigPath: null, agentSocket: null, home, sleep: async () => undefined, ...opts });
    pools.push(p);
    return p;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regen-openssh-'));
    chmodSync(dir, 0o755);
    home = join(dir, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true });
    mkdirSync(join(dir, 'auth'), { mode: 0o755 });
    // sshd's privilege separation directory; a system path, left in place for other sshd users.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

    clientKey = join(dir, 'id_client');
    const clientPub = keygen(clientKey, 'client');
    agentKey = join(dir, 'id_agent');
    const agentPub = keygen(agentKey, 'agent');
    writeFileSync(join(dir, 'auth', 'root'), `${clientPub}\n${agentPub}\n`, { mode: 0o644 });

    target = await startSshd(dir, 'target');
    jump = await startSshd(dir, 'jump', ['LogLevel DEBUG1']);

    knownHosts = join(home, '.ssh', 'known_hosts');
    writeFileSync(knownHosts, `${knownLine(target)}\n${knownLine(jump)}\n`, { mode: 0o600 });
    execFileSync('ssh-keygen', ['-q', '-H', '-f', knownHosts], { stdio: 'ignore' });
    rmSync(`${knownHosts}.old`, { force: true });

    // Temporary users for the sudo cases, only where they can be removed again.
    try {
      execFileSync('sh', ['-c', 'command -v useradd && command -v userdel && command -v sudo'], { stdio: 'ignore' });
    } catch {
      userSkip = 'useradd/userdel/sudo not available';
    }
    if (userSkip === null && isRoot) {
      const tag = randomBytes(3).toString('hex');
      for (const [user, rule] of [
        [`rgn-ok-${tag}`, 'NOPASSWD: ALL'],
        [`rgn-pw-${tag}`, 'ALL'],
      ] as const) {
        execFileSync('useradd', ['-M', '-d', '/nonexistent', '-s', '/bin/sh', user]);
        users.push(user);
        // A locked account ("!") is refused by sshd without PAM; "*" means no password, not locked.
        execFileSync('usermod', ['-p', '*', user]);
        writeFileSync(join(dir, 'auth', user), `${clientPub}\n`, { mode: 0o644 });
        const sudoers = `/etc/sudoers.d/${user}`;
        writeFileSync(sudoers, `${user} ALL=(root) ${rule}\n`, { mode: 0o440 });
        sudoersFiles.push(sudoers);
      }
    } else if (userSkip === null) {
      userSkip = 'not root: cannot create temporary users';
    }
    userSkip = skipOrFail(userSkip);
  });

  afterAll(async () => {
    await Promise.all(pools.map((p) => p.closeAll()));
    if (agent !== undefined) await stop(agent);
    for (const p of started) await stop(p);
    for (const f of sudoersFiles) rmSync(f, { force: true });
    for (const u of users) {
      try {
        execFileSync('userdel', [u], { stdio: 'ignore' });
      } catch {
        // Reported by the next test run's useradd if it lingers; nothing else to do here.
      }
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('runs commands and feeds stdin as root, verified against a hashed known_hosts', async () => {
    expect(parseKnownHosts(readFileSync(knownHosts, 'utf8')).entries.every((e) => e.host.kind === 'hashed')).toBe(true);
    const p = pool({});
    const r = p.remote({ node: 'mx1', host: '127.0.0.1', port: target.port, user: 'root', identityFile: clientKey });
    const id = await r.exec('id -u; echo err >&2; exit 4');
    expect(id).toMatchObject({ code: 4, stdout: '0\n', stderr: 'err\n' });
    const secret = `s3cr3t-${randomBytes(4).toString('hex')}`;
    expect((await r.exec('cat', { stdin: secret })).stdout).toBe(secret);
    expect((await r.exec('tr a-z A-Z', { stdin: 'hello\n' })).stdout).toBe('HELLO\n');
  });

  it('100 MB of output: at most 1 MiB kept per stream, the tail, and the cut is recorded', async () => {
    const entries: Parameters<AuditSink>[0][] = [];
    const p = pool({ audit: (e) => entries.push(e) });
    const r = p.remote({ node: 'mx1', host: '127.0.0.1', port: target.port, user: 'root', identityFile: clientKey });
    const out = await r.exec("head -c 104857600 /dev/zero | tr '\\0' a; echo; echo LAST-LINE; head -c 3145728 /dev/zero | tr '\\0' b >&2; echo ERR-END >&2", { timeoutMs: 120_000 });
    expect(out.code).toBe(0);
    expect(out.stdout.endsWith('LAST-LINE\n')).toBe(true);
    expect(Buffer.byteLength(out.stdout)).toBeLessThan(OUTPUT_CAP_BYTES + 200);
    expect(out.stdout).toMatch(/^\[regen: output cut, first \d+ bytes dropped; last 1048576 bytes kept\]\n/);
    expect(out.stderr.endsWith('ERR-END\n')).toBe(true);
    expect(Buffer.byteLength(out.stderr)).toBeLessThan(OUTPUT_CAP_BYTES + 200);
    expect(entries.at(-1)?.stdoutTail).toMatch(/^\[regen: output cut/);
  }, 180_000);

  it('resolves a Host alias from ssh_config: HostName, Port, User, IdentityFile', async () => {
    const config = parseSshConfig(
      ['Host mesh-*', '  HostName 127.0.0.1', `  Port ${target.port}`, '  User root', `  IdentityFile ${clientKey}`, ''].join('\n'),
    );
    const p = pool({ sshConfig: config });
    const r = p.remote({ node: 'mesh-1', host: 'mesh-1' });
    expect((await r.exec('echo via-alias')).stdout).toBe('via-alias\n');
    expect(r.user).toBe('root');
  });

  it('reads ssh_config from a file path too', async () => {
    const path = join(dir, 'ssh_config');
    writeFileSync(path, `Host aliased\n  HostName 127.0.0.1\n  Port ${target.port}\n  User root\n  IdentityFile ${clientKey}\n`);
    const p = pool({ sshConfigPath: path });
    expect((await p.remote({ node: 'aliased', host: 'aliased' }).exec('echo file-config')).stdout).toBe('file-config\n');
  });

  it('goes through a ProxyJump host, each hop verified against known_hosts', async () => {
    const config = parseSshConfig(
      [
        'Host bastion',
        '  HostName 127.0.0.1',
        `  Port ${jump.port}`,
        '  User root',
        `  IdentityFile ${clientKey}`,
        'Host behind',
        '  HostName 127.0.0.1',
        `  Port ${target.port}`,
        '  User root',
        `  IdentityFile ${clientKey}`,
        '  ProxyJump bastion',
        '',
      ].join('\n'),
    );
    const p = pool({ sshConfig: config });
    const r = p.remote({ node: 'behind', host: 'behind' });
    expect((await r.exec('echo jumped')).stdout).toBe('jumped\n');
    // The jump sshd logs the forwarded connection: the command did not go straight to the target.
    const log = readFileSync(jump.log, 'utf8');
    expect(log).toMatch(new RegExp(`direct.tcpip.*port ${target.port}|target 127\\.0\\.0\\.1 port ${target.port}`));

    // A jump host whose key is not known is refused, and the message names it.
    const onlyTarget = join(dir, 'known_hosts_target_only');
    writeFileSync(onlyTarget, `${knownLine(target)}\n`);
    const p2 = pool({ sshConfig: config, knownHostsPath: onlyTarget });
    const err = await p2.remote({ node: 'behind', host: 'behind' }).exec('true').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostKeyRefusedError);
    expect((err as Error).message).toContain('jump host bastion');
    expect((err as Error).message).toContain(`127.0.0.1:${jump.port}`);
  });

  it('authenticates with ssh-agent through its socket', async () => {
    agentSock = join(dir, 'agent.sock');
    agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
    started.push(agent);
    for (let i = 0; i < 100 && !existsSync(agentSock); i++) await new Promise((r) => setTimeout(r, 50));
    execFileSync('ssh-add', ['-q', agentKey], { env: { ...process.env, SSH_AUTH_SOCK: agentSock }, stdio: 'ignore' });
    // No identity file anywhere (home has none): only the agent can log in.
    const p = pool({ agentSocket: agentSock });
    expect((await p.remote({ node: 'mx1', host: '127.0.0.1', port: target.port, user: 'root' }).exec('echo agent')).stdout).toBe('agent\n');
    const without = pool({});
    const err = await without.remote({ node: 'mx1', host: '127.0.0.1', port: target.port, user: 'root' }).exec('true').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeUnreachableError);
    expect((err as Error).message).toMatch(/authentication failed/);
  });

  it('a non-root user with passwordless sudo runs as root, stdin included', async (ctx) => {
    if (userSkip !== null) ctx.skip(userSkip);
    const user = users[0] ?? '';
    const p = pool({});
    const r = p.remote({ node: 'mx2', host: '127.0.0.1', port: target.port, user, identityFile: clientKey });
    expect((await r.exec('id -u')).stdout).toBe('0\n');
    expect((await r.exec('id -un', { root: false })).stdout).toBe(`${user}\n`);
    expect((await r.exec('cat', { stdin: 'through sudo' })).stdout).toBe('through sudo');
  });

  it('a non-root user whose sudo wants a password gets a clear error', async (ctx) => {
    if (userSkip !== null) ctx.skip(userSkip);
    const user = users[1] ?? '';
    const p = pool({});
    const r = p.remote({ node: 'mx3', host: '127.0.0.1', port: target.port, user, identityFile: clientKey });
    const err = await r.exec('id -u').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PrivilegeError);
    expect((err as Error).message).toBe(`user ${user} on node mx3 needs passwordless sudo for regen (or log in as root)`);
    expect((await r.exec('id -un', { root: false })).stdout).toBe(`${user}\n`);
  });
});
