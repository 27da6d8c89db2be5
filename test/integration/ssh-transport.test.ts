/**
 * The ssh2 transport against ssh2's own in-process Server on 127.0.0.1. The server runs each exec with the
 * local /bin/sh (so the `timeout` wrapper is real) and lets a test misbehave on purpose: kill a channel,
 * drop the connection, pretend sudo wants a password.
 */
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { Connection, ParsedKey, ServerChannel } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HostKeyRefusedError, NodeUnreachableError, OutcomeUnknownError, PrivilegeError, RegenError } from '../../machines/errors.js';
import { fingerprintSha256, hostKeyFromBlob, readKnownHosts, type HostKey } from '../../adapters/ssh/known-hosts.js';
import type { AuditSink } from '../../adapters/ssh/remote.js';
import { SshPool, SshTransport, TailBuffer, shq, withinDeadline, wrapCommand, type SshPoolOptions, type SshTarget } from '../../adapters/ssh/transport.js';
import { parseSshConfig } from '../../adapters/ssh/ssh-config.js';
import { Secret } from '../../adapters/secrets/secret.js';

const { Server, utils } = ssh2;

interface TestServer {
  port: number;
  hostKey: HostKey;
  connections: number;
  commands: string[];
  clients: Connection[];
  channelsClosed: number;
  /** Commands running right now, and the most seen running at once. */
  openChannels: number;
  maxOpenChannels: number;
  /** Behaviour for a command, chosen by a marker word in it. */
  sudoNeedsPassword: boolean;
  close(): Promise<void>;
}

/**
 * An ed25519 key pair from ssh2. About one in five hundred of ssh2's keys has a 31-byte public key (a leading zero
 * byte dropped) that ssh2's own parser then refuses as malformed: such a pair is drawn again.
 */
function ed25519Pair(opts?: Parameters<typeof utils.generateKeyPairSync>[1]): { private: string; public: string } {
  for (let i = 0; i < 20; i++) {
    const pair = opts === undefined ? utils.generateKeyPairSync('ed25519') : utils.generateKeyPairSync('ed25519', opts);
    if (!(utils.parseKey(pair.public) instanceof Error)) return pair;
  }
  throw new Error('ssh2 made no well-formed ed25519 key in 20 draws');
}

function parsePublic(text: string): ParsedKey {
  const k = utils.parseKey(text);
  if (k instanceof Error) throw k;
  return Array.isArray(k) ? (k[0] as ParsedKey) : k;
}

async function startServer(users: Record<string, ParsedKey>, hostPrivate?: string): Promise<TestServer> {
  const hostKeyPair = hostPrivate === undefined ? ed25519Pair() : null;
  const privateKey = hostPrivate ?? hostKeyPair?.private ?? '';
  const hostPub = parsePublic(privateKey);
  const children = new Set<number>();
  const state: TestServer = {
    port: 0,
    hostKey: hostKeyFromBlob(hostPub.getPublicSSH()),
    connections: 0,
    commands: [],
    clients: [],
    channelsClosed: 0,
    openChannels: 0,
    maxOpenChannels: 0,
    sudoNeedsPassword: false,
    close: async () => undefined,
  };
  const server = new Server({ hostKeys: [privateKey] }, (client) => {
    state.connections++;
    state.clients.push(client);
    client.on('error', () => undefined);
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') {
        ctx.reject(['publickey']);
        return;
      }
      const allowed = users[ctx.username];
      if (allowed === undefined || ctx.key.algo !== allowed.type || !ctx.key.data.equals(allowed.getPublicSSH())) {
        ctx.reject(['publickey']);
        return;
      }
      if (ctx.signature !== undefined && ctx.blob !== undefined) {
        if (allowed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
          ctx.reject(['publickey']);
          return;
        }
      }
      ctx.accept();
    });
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', (accept, _reject, info) => {
          // A wedged sshd: the connection stays alive (keepalives are answered) but the exec is never answered.
          if (info.command.includes('NEVER-ANSWER')) return;
          const stream: ServerChannel = accept();
          state.commands.push(info.command);
          runCommand(state, client, stream, info.command, children);
        });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.close = async () => {
    for (const pid of children) killGroup(pid);
    for (const c of state.clients) c.end();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return state;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function runCommand(state: TestServer, client: Connection, stream: ServerChannel, command: string, children: Set<number>): void {
  let closed = false;
  stream.on('close', () => {
    closed = true;
    state.channelsClosed++;
  });
  if (state.sudoNeedsPassword && command.startsWith('sudo -n ')) {
    stream.stderr.write('sudo: a password is required\n');
    stream.exit(1);
    stream.end();
    return;
  }
  const child = spawn('sh', ['-c', command], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid !== undefined) children.add(pid);
  state.openChannels++;
  state.maxOpenChannels = Math.max(state.maxOpenChannels, state.openChannels);
  child.on('close', () => state.openChannels--);
  stream.pipe(child.stdin);
  child.stdin.on('error', () => undefined);
  // One write at a time, stdout and stderr alike, each after the last was taken: ssh2's Server keeps a single
  // pending chunk per channel, so a stderr write while stdout waits for window space would overwrite it (and its
  // callback), which ssh2 then reports by destroying the channel with no exit status. sshd has no such limit.
  const queue: Array<[NodeJS.WritableStream, Buffer]> = [];
  let writing = false;
  let exited: (() => void) | null = null;
  const pump = (): void => {
    if (writing || closed) return;
    const next = queue.shift();
    if (next === undefined) {
      child.stdout.resume();
      child.stderr.resume();
      exited?.();
      exited = null;
      return;
    }
    writing = true;
    next[0].write(next[1], () => {
      writing = false;
      pump();
    });
  };
  const send = (to: NodeJS.WritableStream, d: Buffer): void => {
    queue.push([to, d]);
    if (queue.length > 4) {
      child.stdout.pause();
      child.stderr.pause();
    }
    pump();
  };
  child.stdout.on('data', (d: Buffer) => {
    if (closed) return;
    send(stream, d);
    const text = d.toString();
    if (text.includes('KILL-CHANNEL')) stream.close();
    if (text.includes('DROP-CONNECTION')) client.end();
  });
  child.stderr.on('data', (d: Buffer) => {
    if (!closed) send(stream.stderr, d);
  });
  stream.on('close', () => {
    if (pid !== undefined) killGroup(pid);
  });
  child.on('close', (code, signal) => {
    if (pid !== undefined) children.delete(pid);
    if (closed) return;
    // The exit status follows the output, as sshd sends it.
    exited = () => {
      if (code !== null) stream.exit(code);
      else stream.exit(signal ?? 'KILL', false, '');
      stream.end();
    };
    if (!writing && queue.length === 0) {
      exited();
      exited = null;
    }
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

let dir: string;
let server: TestServer;
let userKey: { private: string; public: string };
let keyFile: string;
let knownHosts: string;
const open: Array<{ close(): Promise<void> }> = [];

function track<T extends { close(): Promise<void> }>(t: T): T {
  open.push(t);
  return t;
}

function baseOptions(extra: SshPoolOptions = {}): SshPoolOptions {
  return {
    knownHostsPath: knownHosts,
    sshConfigPath: null,
    agentSocket: null,
    home: dir,
    globalKnownHostsFiles: [],
    sleep: async () => undefined,
    ...extra,
  };
}

function target(extra: Partial<SshTarget> = {}): SshTarget {
  return { node: 'mx1', host: '127.0.0.1', port: server.port, user: 'root', identityFile: keyFile, ...extra };
}

function knownLine(s: TestServer): string {
  return `[127.0.0.1]:${s.port} ${s.hostKey.type} ${s.hostKey.base64}\n`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'regen-ssh2-'));
  userKey = ed25519Pair();
  keyFile = join(dir, 'id_ed25519');
  writeFileSync(keyFile, userKey.private, { mode: 0o600 });
  server = await startServer({ root: parsePublic(userKey.public), alice: parsePublic(userKey.public) });
  knownHosts = join(dir, 'known_hosts');
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
  writeFileSync(knownHosts, knownLine(server));
  server.sudoNeedsPassword = false;
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('shq and wrapCommand', () => {
  it('quotes words so sh gives them back unchanged', () => {
    const words = ["it's", 'a b', '$HOME', '`id`', '"q"', '', 'plain-word', "''", 'semi;colon', 'new\nline'];
    for (const w of words) {
      const out = execFileSync('sh', ['-c', `printf %s ${shq(w)}`], { encoding: 'utf8' });
      expect(out).toBe(w);
    }
  });

  it('wraps with timeout, and with sudo -n outside it for a non-root user', () => {
    expect(wrapCommand("echo 'x'", { timeoutSec: 10, killAfterSec: 5, sudo: false })).toBe(`timeout --kill-after=5 10 sh -c 'echo '\\''x'\\'''`);
    expect(wrapCommand('id -u', { timeoutSec: 3, killAfterSec: 5, sudo: true })).toBe(`sudo -n -- timeout --kill-after=5 3 sh -c 'id -u'`);
    const out = execFileSync('sh', ['-c', wrapCommand(`printf '%s|' "it's" $((1+2))`, { timeoutSec: 5, killAfterSec: 1, sudo: false })], {
      encoding: 'utf8',
    });
    expect(out).toBe("it's|3|");
  });
});

describe('SshTransport against ssh2 Server', () => {
  beforeAll(() => {
    writeFileSync(knownHosts, knownLine(server));
  });

  it('returns stdout, stderr and the exit code of each command', async () => {
    const t = track(new SshTransport(target(), baseOptions()));
    const r = await t.exec('echo out; echo err >&2; exit 3');
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
    expect((await t.exec('true')).code).toBe(0);
    // Root logs in directly: no sudo, but always the node-side timeout.
    expect(server.commands.at(-1)).toMatch(/^timeout --kill-after=5 \d+ sh -c true$/);
  });

  it('delivers stdin and never puts it on the command line or in the audit', async () => {
    const entries: Parameters<AuditSink>[0][] = [];
    const t = track(new SshTransport(target(), baseOptions({ audit: (e) => entries.push(e) })));
    const before = server.commands.length;
    const secret = 'mesh-secret-5f1d9c';
    const r = await t.exec('cat; echo', { stdin: secret });
    expect(r.stdout).toBe(`${secret}\n`);
    const sent = server.commands.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent.join('\n')).not.toContain(secret);
    expect(entries).toHaveLength(1);
    expect(entries[0]?.command).toBe('cat; echo');
    expect(entries[0]?.outcome).toBe('completed');
    // The command echoed it back, so only secretOutput keeps it out of the audit.
    expect(entries[0]?.stdoutTail).toContain(secret);
    await t.exec('cat', { stdin: secret, secretOutput: true });
    expect(entries[1]?.stdoutTail).toBe('(output withheld: 18 bytes)');
    expect(JSON.stringify(entries[1])).not.toContain(secret);
  });

  it('uses one TCP connection for many commands, sequential and concurrent', async () => {
    const before = server.connections;
    const t = track(new SshTransport(target(), baseOptions()));
    for (let i = 0; i < 5; i++) expect((await t.exec(`echo ${i}`)).stdout).toBe(`${i}\n`);
    const all = await Promise.all([1, 2, 3, 4].map((i) => t.exec(`echo c${i}`)));
    expect(all.map((r) => r.stdout)).toEqual(['c1\n', 'c2\n', 'c3\n', 'c4\n']);
    expect(server.connections - before).toBe(1);
    expect(t.connectionCount).toBe(1);
  });

  it('keeps at most maxSessions channels open on one connection; the others wait their turn', async () => {
    const t = track(new SshTransport(target(), baseOptions({ maxSessions: 2 })));
    await t.exec('true');
    server.maxOpenChannels = 0;
    const all = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => t.exec(`sleep 0.2; echo s${i}`)));
    expect(all.map((r) => r.stdout)).toEqual(['s1\n', 's2\n', 's3\n', 's4\n', 's5\n', 's6\n']);
    expect(server.maxOpenChannels).toBe(2);
    expect(t.connectionCount).toBe(1);
  });

  it('refuses an unknown host key and shows its SHA256 fingerprint', async () => {
    writeFileSync(knownHosts, '');
    const t = track(new SshTransport(target(), baseOptions()));
    const err = await t.exec('true').catch((e: unknown) => e);
    // The node answered: a refused host key is a preflight problem (exit 3), not an unreachable node.
    expect(err).toBeInstanceOf(HostKeyRefusedError);
    expect(err).toMatchObject({ kind: 'preflight' });
    const fp = fingerprintSha256(server.hostKey);
    expect((err as Error).message).toContain(fp);
    expect((err as Error).message).toContain('not in');
    expect((err as NodeUnreachableError).hint).toContain('--accept-new-host-keys');
    expect(readFileSync(knownHosts, 'utf8')).toBe('');
  });

  it('refuses a changed key even with --accept-new-host-keys', async () => {
    const other = parsePublic(ed25519Pair().public);
    const line = `[127.0.0.1]:${server.port} ssh-ed25519 ${other.getPublicSSH().toString('base64')}\n`;
    writeFileSync(knownHosts, line);
    const p = new SshPool(baseOptions({ acceptNewHostKeys: true }));
    track({ close: () => p.closeAll() });
    const err = await p.remote(target()).exec('true').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostKeyRefusedError);
    expect((err as Error).message).toContain('HOST KEY CHANGED');
    expect((err as Error).message).toContain(fingerprintSha256(server.hostKey));
    expect((err as NodeUnreachableError).hint).toContain('ssh-keygen -R');
    expect(readFileSync(knownHosts, 'utf8')).toBe(line);
    expect(p.acceptedHostKeys()).toEqual([]);
  });

  it('records a new key under --accept-new-host-keys, and the caller can list it', async () => {
    writeFileSync(knownHosts, '');
    const p = new SshPool(baseOptions({ acceptNewHostKeys: true, targets: [target()] }));
    track({ close: () => p.closeAll() });
    expect((await p.remote('mx1').exec('echo ok')).stdout).toBe('ok\n');
    expect(p.acceptedHostKeys()).toEqual([
      { node: 'mx1', name: `[127.0.0.1]:${server.port}`, type: 'ssh-ed25519', fingerprint: fingerprintSha256(server.hostKey), file: knownHosts },
    ]);
    const parsed = await readKnownHosts(knownHosts);
    expect(parsed.entries).toHaveLength(1);
    // Without the flag, the recorded key is now simply known.
    const t = track(new SshTransport(target(), baseOptions()));
    expect((await t.exec('echo again')).stdout).toBe('again\n');
  });

  it('a timeout is an unknown outcome, and the node-side timeout is set', async () => {
    const t = track(new SshTransport(target(), baseOptions()));
    const err = await t.exec('sleep 20', { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect((err as Error).message).toMatch(/timed out/);
    expect(server.commands.at(-1)).toContain('timeout --kill-after=5 3 sh -c');
    // The connection stays usable for the next command.
    expect((await t.exec('echo after')).stdout).toBe('after\n');
  });

  it('a channel the server kills mid-command is an unknown outcome', async () => {
    const t = track(new SshTransport(target(), baseOptions()));
    const err = await t.exec('echo KILL-CHANNEL; sleep 20').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
  });

  it('a connection dropped mid-command is an unknown outcome and the command is not re-sent', async () => {
    const t = track(new SshTransport(target(), baseOptions()));
    await t.exec('true');
    const before = server.commands.length;
    const err = await t.exec('echo DROP-CONNECTION; sleep 20').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(server.commands.length - before).toBe(1);
  });

  it('a refused port is unreachable, after bounded retries with growing jittered delays', async () => {
    const delays: number[] = [];
    const port = await freePort();
    const t = track(
      new SshTransport(
        target({ port }),
        baseOptions({ sleep: async (ms) => void delays.push(ms), random: () => 0.5, reconnect: { attempts: 3, baseDelayMs: 200 } }),
      ),
    );
    const err = await t.exec('true').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeUnreachableError);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    expect((err as Error).message).toContain('mx1');
    expect((err as NodeUnreachableError).hint).toMatch(/nothing listens/);
    expect(delays).toEqual([200, 400]);
  });

  it('jitter stays within ±50 % of the base delay', async () => {
    const delays: number[] = [];
    const port = await freePort();
    for (const r of [0, 0.999]) {
      const t = track(new SshTransport(target({ port }), baseOptions({ sleep: async (ms) => void delays.push(ms), random: () => r })));
      await t.exec('true').catch(() => undefined);
    }
    expect(delays).toEqual([100, 200, 300, 600]);
  });

  it('an authentication failure is unreachable, not retried, and says what was tried', async () => {
    const wrongKey = join(dir, 'id_wrong');
    writeFileSync(wrongKey, ed25519Pair().private, { mode: 0o600 });
    let sleeps = 0;
    const t = track(new SshTransport(target({ identityFile: wrongKey }), baseOptions({ sleep: async () => void sleeps++ })));
    const err = await t.exec('true').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeUnreachableError);
    expect((err as Error).message).toMatch(/authentication failed/);
    expect((err as Error).message).toContain(wrongKey);
    expect(sleeps).toBe(0);
  });

  it('reconnects when the server dropped the idle connection', async () => {
    const before = server.connections;
    const t = track(new SshTransport(target(), baseOptions()));
    await t.exec('true');
    const conn = server.clients.at(-1);
    conn?.end();
    await until('the client to notice the drop', () => !t.connected);
    expect((await t.exec('echo back')).stdout).toBe('back\n');
    expect(server.connections - before).toBe(2);
    expect(t.connectionCount).toBe(2);
  });

  it('an abort signal closes the channel and rejects with an unknown outcome', async () => {
    const t = track(new SshTransport(target(), baseOptions()));
    await t.exec('true');
    const closedBefore = server.channelsClosed;
    const ac = new AbortController();
    const pending = t.exec('sleep 20', { signal: ac.signal }).catch((e: unknown) => e);
    await until('the command to start', () => server.commands.at(-1)?.includes('sleep 20') === true);
    ac.abort();
    const err = await pending;
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect((err as Error).message).toMatch(/aborted/);
    await until('the server to see the channel close', () => server.channelsClosed > closedBefore);
  });

  it('an already aborted signal never starts the command', async () => {
    const t = track(new SshTransport(target(), baseOptions()));
    const before = server.commands.length;
    const err = await t.exec('true', { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegenError);
    expect((err as RegenError).kind).toBe('aborted');
    expect(server.commands.length).toBe(before);
  });

  it('a non-root user goes through sudo -n, and a sudo password prompt becomes a clear error', async () => {
    const t = track(new SshTransport(target({ user: 'alice' }), baseOptions()));
    const r = await t.exec('id -u');
    expect(server.commands.at(-1)).toMatch(/^sudo -n -- timeout /);
    expect(r.code).toBe(0);
    await t.exec('id -u', { root: false });
    expect(server.commands.at(-1)).toMatch(/^timeout /);
    server.sudoNeedsPassword = true;
    const err = await t.exec('id -u').catch((e: unknown) => e);
    // The node answered: a misconfigured sudo is a preflight problem (exit 3), not an unreachable node.
    expect(err).toBeInstanceOf(PrivilegeError);
    expect(err).toMatchObject({ kind: 'preflight' });
    expect((err as Error).message).toBe('user alice on node mx1 needs passwordless sudo for regen (or log in as root)');
  });

  it('asks for a key passphrase once and keeps the key across reconnects', async () => {
    const pair = ed25519Pair({ passphrase: 'open sesame', cipher: 'aes256-ctr', rounds: 16 });
    const encFile = join(dir, 'id_encrypted');
    writeFileSync(encFile, pair.private, { mode: 0o600 });
    const s2 = await startServer({ root: parsePublic(pair.public) });
    track(s2);
    writeFileSync(knownHosts, knownLine(s2));
    const asked: Array<[string, number]> = [];
    const answers = ['wrong', 'open sesame'];
    const t = track(
      new SshTransport(
        { node: 'mx2', host: '127.0.0.1', port: s2.port, user: 'root', identityFile: encFile },
        baseOptions({
          passphrasePrompt: async (path, attempt) => {
            asked.push([path, attempt]);
            return new Secret(answers.shift() ?? 'none', 'passphrase');
          },
        }),
      ),
    );
    expect((await t.exec('echo in')).stdout).toBe('in\n');
    expect(asked).toEqual([
      [encFile, 1],
      [encFile, 2],
    ]);
    s2.clients.at(-1)?.end();
    await until('the client to notice the drop', () => !t.connected);
    expect((await t.exec('echo again')).stdout).toBe('again\n');
    expect(asked).toHaveLength(2);
  });

  it('a pool hands out one Remote per node and closes them all', async () => {
    const p = new SshPool(baseOptions({ targets: [target(), target({ node: 'mx2' })] }));
    const a = p.remote('mx1');
    expect(p.remote('mx1')).toBe(a);
    expect(p.remote('mx2')).not.toBe(a);
    expect(() => p.remote('nope')).toThrow(/no SSH target/);
    await a.exec('true');
    expect(a.connected).toBe(true);
    await p.closeAll();
    expect(a.connected).toBe(false);
  });
});

describe('host keys: every file OpenSSH reads', () => {
  // The key blob built from node's own ed25519 key (RFC 8709 wire form: string "ssh-ed25519", string key).
  const otherKeyLine = (): string => {
    const raw = Buffer.from(generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x as string, 'base64url');
    const str = (b: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
    return `[127.0.0.1]:${server.port} ssh-ed25519 ${Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]).toString('base64')}\n`;
  };
  let n = 0;
  const file = (text: string): string => {
    const p = join(dir, `kh-${++n}`);
    writeFileSync(p, text);
    return p;
  };

  it('a key pinned only in the global known_hosts file is known', async () => {
    writeFileSync(knownHosts, '');
    const t = track(new SshTransport(target(), baseOptions({ globalKnownHostsFiles: [file(knownLine(server))] })));
    expect((await t.exec('echo ok')).stdout).toBe('ok\n');
    expect(readFileSync(knownHosts, 'utf8')).toBe('');
  });

  it('another key pinned only in the global file: refused as changed, even with --accept-new-host-keys', async () => {
    writeFileSync(knownHosts, '');
    const global = file(otherKeyLine());
    const p = new SshPool(baseOptions({ acceptNewHostKeys: true, globalKnownHostsFiles: [global] }));
    track({ close: () => p.closeAll() });
    const err = await p.remote(target()).exec('true').catch((e: unknown) => e);
    expect((err as Error).message).toContain('HOST KEY CHANGED');
    expect((err as Error).message).toContain(`${global}:1`);
    expect(readFileSync(knownHosts, 'utf8')).toBe('');
  });

  it('~/.ssh/known_hosts2 is read when no --known-hosts is given', async () => {
    const home = mkdtempSync(join(dir, 'home-'));
    execFileSync('mkdir', ['-p', join(home, '.ssh')]);
    writeFileSync(join(home, '.ssh', 'known_hosts2'), otherKeyLine());
    const p = new SshPool({ ...baseOptions({ acceptNewHostKeys: true, home }), knownHostsPath: undefined });
    track({ close: () => p.closeAll() });
    const err = await p.remote(target()).exec('true').catch((e: unknown) => e);
    expect((err as Error).message).toContain('HOST KEY CHANGED');
  });

  it("ssh_config's UserKnownHostsFile and GlobalKnownHostsFile are read", async () => {
    writeFileSync(knownHosts, '');
    const home = mkdtempSync(join(dir, 'home-'));
    for (const keyword of ['UserKnownHostsFile', 'GlobalKnownHostsFile']) {
      const config = parseSshConfig(`Host 127.0.0.1\n  ${keyword} ${file(otherKeyLine())}\n`);
      const p = new SshPool({ ...baseOptions({ acceptNewHostKeys: true, sshConfig: config, home }), knownHostsPath: undefined });
      track({ close: () => p.closeAll() });
      const err = await p.remote(target()).exec('true').catch((e: unknown) => e);
      expect([keyword, (err as Error).message]).toEqual([keyword, expect.stringContaining('HOST KEY CHANGED')]);
    }
  });

  it('--known-hosts replaces ssh_config\'s UserKnownHostsFile, as ssh -o UserKnownHostsFile does', async () => {
    writeFileSync(knownHosts, knownLine(server));
    const config = parseSshConfig(`Host 127.0.0.1\n  UserKnownHostsFile ${file(otherKeyLine())}\n`);
    const t = track(new SshTransport(target(), baseOptions({ sshConfig: config })));
    expect((await t.exec('echo ok')).stdout).toBe('ok\n');
  });

  it('@revoked in the global file is honoured', async () => {
    writeFileSync(knownHosts, knownLine(server));
    const global = file(`@revoked * ${server.hostKey.type} ${server.hostKey.base64}\n`);
    const t = track(new SshTransport(target(), baseOptions({ globalKnownHostsFiles: [global] })));
    const err = await t.exec('true').catch((e: unknown) => e);
    expect((err as Error).message).toContain(`@revoked in ${global}:1`);
  });

  it('HashKnownHosts yes in ssh_config: an accepted key is written hashed', async () => {
    writeFileSync(knownHosts, '');
    const config = parseSshConfig('Host *\n  HashKnownHosts yes\n');
    const p = new SshPool(baseOptions({ acceptNewHostKeys: true, sshConfig: config }));
    track({ close: () => p.closeAll() });
    await p.remote(target()).exec('true');
    expect(readFileSync(knownHosts, 'utf8')).toMatch(/^\|1\|[A-Za-z0-9+/=]+\|[A-Za-z0-9+/=]+ ssh-ed25519 /);
  });
});

describe('a hostile or wedged node cannot hang or crash regen', () => {
  beforeAll(() => {
    writeFileSync(knownHosts, knownLine(server));
  });

  it('an exec request that is never answered ends at the command deadline as an unknown outcome', async () => {
    const entries: Parameters<AuditSink>[0][] = [];
    const t = track(new SshTransport(target(), baseOptions({ audit: (e) => entries.push(e) })));
    const err = await t.exec('echo NEVER-ANSWER', { timeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect((err as Error).message).toMatch(/did not answer the request to start/);
    expect(entries.at(-1)?.outcome).toBe('unknown');
    // The next command gets a fresh connection and runs.
    expect((await t.exec('echo fine')).stdout).toBe('fine\n');
  });

  it('the tail buffer keeps exactly the last bytes across any chunking', () => {
    const b = new TailBuffer(10);
    for (const c of ['abc', 'defghijklmnop', 'q', 'rstuvwxyz']) b.push(Buffer.from(c));
    expect(b.text()).toBe('[regen: output cut, first 16 bytes dropped; last 10 bytes kept]\nqrstuvwxyz');
    const small = new TailBuffer(10);
    small.push(Buffer.from('short'));
    expect(small.text()).toBe('short');
  });

  it('a deadline rejects a promise that never settles, and lets one that does through', async () => {
    const never = new Promise<never>(() => undefined);
    await expect(withinDeadline(never, 20, () => new Error('too late'))).rejects.toThrow('too late');
    await expect(withinDeadline(Promise.resolve(7), 1000, () => new Error('x'))).resolves.toBe(7);
  });
});
