/**
 * The lab's simulated commands (test/lab/bin, compiled in dist/) run as real processes against real files, real
 * gpg and real agent processes, without namespaces: REGEN_LAB_NODE_JSON points each command at a node directory
 * laid out like the lab's, and each node's agent listens on its own loopback port (CONSUL_HTTP_ADDR).
 * The full lab (namespaces, sshd) runs the same commands in seeds.test.ts.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { labFault, shq, sshExec, type LabNode } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { sshTerminal } from './support/terminal.js';
import { skipOrFail } from './prereq.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(REPO, 'dist', 'test', 'lab', 'bin');
const COMMANDS = ['consul', 'service-discover', 'systemctl', 'carbonio-cli', 'agent'];

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (chown to service-discover, agents run as that user)';
  for (const u of ['service-discover', 'zextras']) {
    if (spawnSync('id', [u]).status !== 0) return `user ${u} missing (the lab's global setup creates it as root)`;
  }
  for (const t of ['/usr/bin/gpg', '/usr/bin/tar', '/usr/bin/setpriv']) if (!fs.existsSync(t)) return `${t} missing`;
  return null;
}

const skip = skipOrFail(skipReason());
if (skip) console.warn(`skipping simulated command tests: ${skip}`);

/** The compiled commands must be current: they are what runs. */
function assertBuilt(): void {
  const sources = [
    ...fs.readdirSync(path.join(REPO, 'test', 'lab', 'bin')).map((f) => path.join(REPO, 'test', 'lab', 'bin', f)),
    ...fs.readdirSync(path.join(REPO, 'test', 'sim')).map((f) => path.join(REPO, 'test', 'sim', f)),
  ].filter((f) => f.endsWith('.ts'));
  const newest = Math.max(...sources.map((f) => fs.statSync(f).mtimeMs));
  for (const c of COMMANDS) {
    const js = path.join(BIN, `${c}.js`);
    if (!fs.existsSync(js) || fs.statSync(js).mtimeMs < newest) throw new Error(`${js} missing or older than its sources: run \`npm run build\``);
  }
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function runProcess(argv: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], cwd: '/' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.end(opts.stdin ?? '');
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

interface SimNode {
  short: string;
  name: string;
  ip: string;
  kind: 'server' | 'agent';
  root: string;
  port: number;
}

/** A lab-shaped directory without namespaces: DIR/cluster, DIR/nodes/<short>/{lab,etc-zextras,var-lib-sd,…}. */
class SimLab {
  readonly dir: string;
  readonly nodes: SimNode[] = [];

  constructor(
    specs: Array<{ kind: 'server' | 'agent' }>,
    readonly profile: 'current' | 'legacy',
    ports: number[],
  ) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-simcmd-'));
    // Others (service-discover writing the reset file, zextras reading its mirror) must traverse it, as in a node.
    fs.chmodSync(this.dir, 0o755);
    fs.mkdirSync(path.join(this.dir, 'cluster'));
    specs.forEach((s, i) => {
      const short = `mail${i + 1}`;
      this.nodes.push({ short, name: `${short}.sim.test`, ip: `10.250.0.${i + 2}`, kind: s.kind, root: path.join(this.dir, 'nodes', short), port: ports[i] ?? 0 });
    });
    fs.writeFileSync(path.join(this.dir, 'cluster', 'preferred-leader'), `${this.nodes[0]?.name}\n`);
    const hosts = ['127.0.0.1 localhost', ...this.nodes.map((n) => `${n.ip} ${n.name} ${n.short}`)].join('\n');
    for (const n of this.nodes) {
      for (const d of ['lab', 'etc-zextras/service-discover', 'var-lib-sd/data', 'opt-zextras/conf', 'root-home', 'backups', 'bin']) {
        fs.mkdirSync(path.join(n.root, d), { recursive: true, mode: 0o755 });
      }
      spawnSync('chown', ['service-discover:service-discover', path.join(n.root, 'var-lib-sd'), path.join(n.root, 'var-lib-sd', 'data')]);
      fs.chmodSync(path.join(n.root, 'var-lib-sd', 'data'), 0o700);
      fs.writeFileSync(
        path.join(n.root, 'opt-zextras/conf/localconfig.xml'),
        `<localconfig>\n  <key name="zimbra_server_hostname">\n    <value>${n.name}</value>\n  </key>\n</localconfig>\n`,
      );
      fs.writeFileSync(path.join(n.root, 'hosts'), `${hosts}\n`);
      const nodeJson = {
        name: n.name,
        short: n.short,
        fqdn: n.name,
        ip: n.ip,
        kind: n.kind,
        profile,
        labDir: this.dir,
        clusterDir: path.join(this.dir, 'cluster'),
        nodesDir: path.join(this.dir, 'nodes'),
      };
      fs.writeFileSync(path.join(n.root, 'lab', 'node.json'), `${JSON.stringify(nodeJson)}\n`, { mode: 0o644 });
    }
  }

  node(short: string): SimNode {
    const n = this.nodes.find((x) => x.short === short);
    if (!n) throw new Error(`no ${short}`);
    return n;
  }

  env(n: SimNode, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      HOME: '/root',
      REGEN_LAB_NODE_JSON: path.join(n.root, 'lab', 'node.json'),
      REGEN_LAB_AGENT_ADDR: `127.0.0.1:${n.port}`,
      CONSUL_HTTP_ADDR: `127.0.0.1:${n.port}`,
      ...extra,
    };
  }

  /** Run a simulated command on a node (as root, or as `user` through setpriv). */
  run(short: string, command: string, args: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv; user?: string } = {}): Promise<Result> {
    const n = this.node(short);
    const js = path.join(BIN, `${command}.js`);
    const argv =
      opts.user === undefined
        ? [process.execPath, js, ...args]
        : ['setpriv', '--reuid', opts.user, '--regid', opts.user, '--init-groups', process.execPath, js, ...args];
    return runProcess(argv, { env: this.env(n, opts.env), stdin: opts.stdin });
  }

  /** The same on a terminal (script(1) allocates a pty): one merged output, \r\n as the terminal shows it. */
  async runTty(short: string, command: string, args: string[]): Promise<{ code: number | null; out: string }> {
    const n = this.node(short);
    const line = [process.execPath, path.join(BIN, `${command}.js`), ...args].map(shq).join(' ');
    const r = await runProcess(['script', '-qefc', line, '/dev/null'], { env: this.env(n) });
    return { code: r.code, out: r.stdout };
  }

  hostPath(short: string, sub: string): string {
    return path.join(this.node(short).root, sub);
  }

  agentPid(short: string): number {
    try {
      return Number(fs.readFileSync(this.hostPath(short, 'lab/agent.pid'), 'utf8').trim());
    } catch {
      return 0;
    }
  }

  /** Stop every agent this lab started, then remove the directory. */
  async destroy(): Promise<void> {
    for (const n of this.nodes) {
      const pid = this.agentPid(n.short);
      if (pid > 0 && fs.existsSync(`/proc/${pid}`) && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('agent.js')) {
        process.kill(pid, 'SIGKILL');
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function gpgList(file: string, password: string): { code: number; members: string[]; acl: Record<string, unknown> | null } {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-simcmd-gpg-'));
  try {
    const dec = spawnSync('gpg', ['--homedir', home, '--batch', '--pinentry-mode', 'loopback', '--passphrase-fd', '0', '-qdo', '-', file], {
      input: `${password}\n`,
    });
    if (dec.status !== 0) return { code: dec.status ?? -1, members: [], acl: null };
    const list = spawnSync('tar', ['-tf', '-'], { input: dec.stdout });
    const acl = spawnSync('tar', ['-xOf', '-', 'consul-acl-secret.json'], { input: dec.stdout });
    return {
      code: 0,
      members: list.stdout.toString().trim().split('\n'),
      acl: JSON.parse(acl.stdout.toString()) as Record<string, unknown>,
    };
  } finally {
    spawnSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent']);
    fs.rmSync(home, { recursive: true, force: true });
  }
}

function parseMembers(out: string): Array<{ node: string; status: string; type: string }> {
  return out
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => {
      const [node = '', , status = '', type = ''] = l.trim().split(/\s+/);
      return { node, status, type };
    });
}

describe.skipIf(skip !== null)('simulated commands over real files, gpg and agents', () => {
  let lab: SimLab;
  const secret = 'first-secret';

  beforeAll(async () => {
    assertBuilt();
    const ports = [await freePort(), await freePort(), await freePort()];
    // One server: with two, the leader's new CA would have no quorum until the other is re-set-up too.
    lab = new SimLab([{ kind: 'server' }, { kind: 'agent' }, { kind: 'agent' }], 'current', ports);
    // Without a terminal setup stops first, whatever else is wrong.
    const plain = await lab.run('mail1', 'service-discover', ['setup', '10.250.0.2', '--first-instance', `--password=${secret}`]);
    expect(plain).toMatchObject({ code: 1, stdout: '', stderr: 'service-discover: error: the provided file descriptor (0) is not a terminal\n' });
    const first = await lab.runTty('mail1', 'service-discover', ['setup', '10.250.0.2', '--first-instance', `--password=${secret}`]);
    expect(first).toEqual({ code: 0, out: '' });
    const second = await lab.runTty('mail2', 'service-discover', ['setup', '10.250.0.3', `--password=${secret}`]);
    expect(second).toEqual({ code: 0, out: '' });
    // The agent's --wizard reads nothing: it only silences the output; the address and password are its flags.
    const third = await lab.runTty('mail3', 'service-discover', ['setup', '--wizard', '10.250.0.4', `--password=${secret}`]);
    expect(third).toEqual({ code: 0, out: '' });
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  test('the credentials are a real armored OpenPGP message over a tar of exactly the four members', () => {
    const file = lab.hostPath('mail1', 'etc-zextras/service-discover/cluster-credentials.tar.gpg');
    expect(fs.readFileSync(file, 'utf8')).toMatch(/^-----BEGIN PGP MESSAGE-----/);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const opened = gpgList(file, secret);
    expect(opened.members).toEqual([
      'gossip-key',
      'consul-acl-secret.json',
      'var/lib/service-discover/consul-agent-ca.pem',
      'var/lib/service-discover/consul-agent-ca-key.pem',
    ]);
    expect(opened.acl).toMatchObject({ Description: 'Bootstrap Token (Global Management)' });
    expect(gpgList(file, 'wrong').code).not.toBe(0);
    expect(fs.readFileSync(lab.hostPath('mail1', 'var-lib-sd/password'), 'utf8')).toBe(secret);
    expect(fs.existsSync(lab.hostPath('mail3', 'var-lib-sd/password'))).toBe(false);
  });

  test('the agent runs as service-discover and answers the leader without a token', async () => {
    const pid = lab.agentPid('mail3');
    const uid = /Uid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    const sd = spawnSync('id', ['-u', 'service-discover']).stdout.toString().trim();
    expect(uid).toBe(sd);
    const res = await fetch(`http://127.0.0.1:${lab.node('mail3').port}/v1/status/leader`);
    expect(await res.text()).toBe('"10.250.0.2:8300"');
  });

  test('consul members: nothing and exit 2 without a token, everyone alive with the bootstrap token, 403 with a bogus one', async () => {
    const none = await lab.run('mail1', 'consul', ['members']);
    expect(none).toMatchObject({ code: 2, stdout: '', stderr: '' });
    const token = gpgList(lab.hostPath('mail1', 'etc-zextras/service-discover/cluster-credentials.tar.gpg'), secret).acl?.SecretID as string;
    const withEnv = await lab.run('mail3', 'consul', ['members'], { env: { CONSUL_HTTP_TOKEN: token } });
    expect(withEnv.code).toBe(0);
    expect(withEnv.stdout.split('\n')[0]).toMatch(/^Node\s+Address\s+Status\s+Type\s+Build\s+Protocol\s+DC\s+Partition\s+Segment$/);
    expect(parseMembers(withEnv.stdout)).toEqual([
      { node: 'agent-mail2-sim-test', status: 'alive', type: 'client' },
      { node: 'agent-mail3-sim-test', status: 'alive', type: 'client' },
      { node: 'server-mail1-sim-test', status: 'alive', type: 'server' },
    ]);
    const withFlag = await lab.run('mail2', 'consul', ['members', `-token=${token}`]);
    expect(parseMembers(withFlag.stdout)).toHaveLength(3);
    const bogus = await lab.run('mail1', 'consul', ['members', '-token', '11111111-2222-3333-4444-555555555555']);
    expect(bogus.code).toBe(1);
    expect(bogus.stderr.trim()).toBe('Error retrieving members: Unexpected response code: 403 (ACL not found)');
  });

  test('carbonio prov / zmprov gas service-discover list the mesh servers, for zextras only', async () => {
    const asZextras = await lab.run('mail3', 'carbonio-cli', ['prov', 'gas', 'service-discover'], { user: 'zextras' });
    expect(asZextras).toMatchObject({ code: 0, stdout: 'mail1.sim.test\n' });
    const zmprov = await lab.run('mail3', 'carbonio-cli', ['gas', 'service-discover'], { user: 'zextras' });
    expect(zmprov.stdout).toBe('mail1.sim.test\n');
    const asRoot = await lab.run('mail3', 'carbonio-cli', ['prov', 'gas', 'service-discover']);
    expect(asRoot.code).toBe(1);
  });

  test('systemctl knows only service-discover; is-active follows the agent', async () => {
    expect(await lab.run('mail2', 'systemctl', ['is-active', 'service-discover'])).toMatchObject({ code: 0, stdout: 'active\n' });
    const other = await lab.run('mail2', 'systemctl', ['stop', 'nginx']);
    expect(other).toMatchObject({ code: 5, stderr: 'Unit nginx.service could not be found.\n' });
    const before = lab.agentPid('mail2');
    expect((await lab.run('mail2', 'systemctl', ['restart', 'service-discover.service'])).code).toBe(0);
    expect(lab.agentPid('mail2')).not.toBe(before);
    expect(fs.existsSync(`/proc/${before}`) && !fs.readFileSync(`/proc/${before}/stat`, 'utf8').includes(') Z')).toBe(false);
  });

  test('setup pre-checks speak like service-discover; failNextSetup fires only after them, once', async () => {
    const already = await lab.runTty('mail2', 'service-discover', ['setup', '10.250.0.3', '--password=x']);
    expect(already).toEqual({ code: 1, out: 'service-discover: error: setup of service-discover already performed, manually reset and try again\r\n' });
    // kong's parse comes before the terminal check.
    const wizardOnServer = await lab.run('mail1', 'service-discover', ['setup', '--wizard']);
    expect(wizardOnServer.stderr).toBe('service-discover: error: unknown flag --wizard\n');
    const faults = lab.hostPath('mail3', 'lab/faults.json');
    fs.writeFileSync(faults, JSON.stringify({ failNextSetup: 'injected by the test' }));
    expect((await lab.runTty('mail3', 'service-discover', ['setup', '10.250.0.4', '--password=x'])).out).toMatch(/already performed/);
    expect(JSON.parse(fs.readFileSync(faults, 'utf8'))).toEqual({ failNextSetup: 'injected by the test' });
    expect((await lab.run('mail3', 'systemctl', ['stop', 'service-discover'])).code).toBe(0);
    fs.rmSync(lab.hostPath('mail3', 'etc-zextras/service-discover/main.json'));
    const failed = await lab.runTty('mail3', 'service-discover', ['setup', '10.250.0.4', `--password=${secret}`]);
    expect(failed).toEqual({ code: 1, out: 'service-discover: error: injected by the test\r\n' });
    expect(JSON.parse(fs.readFileSync(faults, 'utf8'))).toEqual({});
    const again = await lab.runTty('mail3', 'service-discover', ['setup', '10.250.0.4', `--password=${secret}`]);
    expect(again).toEqual({ code: 0, out: '' });
  });

  test('seed 000 by the commands: reset index, reset file as service-discover, stop, wipe, first instance, joins', async () => {
    const bootstrap = await lab.run('mail1', 'consul', ['acl', 'bootstrap']);
    expect(bootstrap.code).toBe(1);
    const m = /^Failed ACL bootstrapping: Unexpected response code: 403 \(Permission denied: ACL bootstrap no longer allowed \(reset index: (\d+)\)\)$/.exec(
      bootstrap.stderr.trim(),
    );
    expect(m, bootstrap.stderr).not.toBeNull();
    const index = Number(m?.[1]);
    const resetFile = lab.hostPath('mail1', 'var-lib-sd/data/acl-bootstrap-reset');

    // A wrong index is refused by the bootstrap inside setup, with both numbers.
    spawnSync('setpriv', ['--reuid', 'service-discover', '--regid', 'service-discover', '--init-groups', 'sh', '-c', `echo ${index - 1} > ${resetFile}`]);
    expect(fs.statSync(resetFile).uid).toBe(Number(spawnSync('id', ['-u', 'service-discover']).stdout.toString()));
    expect((await lab.run('mail1', 'systemctl', ['stop', 'service-discover'])).code).toBe(0);
    expect(await lab.run('mail1', 'systemctl', ['is-active', 'service-discover'])).toMatchObject({ code: 3, stdout: 'inactive\n' });
    const wipe = (short: string): void => {
      for (const f of ['config.json', 'main.json']) fs.rmSync(lab.hostPath(short, `etc-zextras/service-discover/${f}`), { force: true });
      for (const f of fs.readdirSync(lab.hostPath(short, 'var-lib-sd'))) if (f.endsWith('.pem')) fs.rmSync(lab.hostPath(short, `var-lib-sd/${f}`));
    };
    wipe('mail1');
    const wrong = await lab.runTty('mail1', 'service-discover', ['setup', '10.250.0.2', '--first-instance', '--password=second-secret']);
    expect(wrong.out.trim()).toBe(
      `service-discover: error: unable to create ACL bootstrap token: Failed ACL bootstrapping: Unexpected response code: 500 (Invalid bootstrap reset index (specified ${index - 1}, reset index: ${index}))`,
    );

    // The retry as one unit: right index, stop, wipe again, setup.
    spawnSync('setpriv', ['--reuid', 'service-discover', '--regid', 'service-discover', '--init-groups', 'sh', '-c', `echo ${index} > ${resetFile}`]);
    await lab.run('mail1', 'systemctl', ['stop', 'service-discover']);
    wipe('mail1');
    const ok = await lab.runTty('mail1', 'service-discover', ['setup', '10.250.0.2', '--first-instance', '--password=second-secret']);
    expect(ok).toEqual({ code: 0, out: '' });
    expect(fs.existsSync(resetFile)).toBe(false);

    const token = (await lab.run('mail1', 'service-discover', ['bootstrap-token'], { stdin: 'second-secret\n' })).stdout.trim();
    expect(token).toMatch(/^[0-9a-f-]{36}$/);
    const before = parseMembers((await lab.run('mail1', 'consul', ['members', `-token=${token}`])).stdout);
    expect(before.find((x) => x.node === 'server-mail1-sim-test')?.status).toBe('alive');
    // The seed's wipe keeps the gossip keyrings: the leader still gossips with the old key, so the two nodes not set
    // up yet (old CA, no RPC to this leader) are alive all the same. Alive is serf alone.
    expect(before.filter((x) => x.status === 'alive')).toHaveLength(3);

    for (const [short, ip] of [
      ['mail2', '10.250.0.3'],
      ['mail3', '10.250.0.4'],
    ] as const) {
      await lab.run(short, 'systemctl', ['stop', 'service-discover']);
      wipe(short);
      const r = await lab.runTty(short, 'service-discover', ['setup', ip, '--password=second-secret']);
      expect(r).toEqual({ code: 0, out: '' });
    }
    const after = parseMembers((await lab.run('mail2', 'consul', ['members'], { env: { CONSUL_HTTP_TOKEN: token } })).stdout);
    expect(after.map((x) => `${x.node} ${x.status} ${x.type}`)).toEqual([
      'agent-mail2-sim-test alive client',
      'agent-mail3-sim-test alive client',
      'server-mail1-sim-test alive server',
    ]);

    // The reset left the old management token valid; it can be listed and deleted with the new one.
    const list = await lab.run('mail1', 'consul', ['acl', 'token', 'list', '-format', 'json', `-token=${token}`]);
    const tokens = JSON.parse(list.stdout) as Array<{ AccessorID: string; Description: string }>;
    const mgmt = tokens.filter((t) => t.Description === 'Bootstrap Token (Global Management)');
    expect(mgmt).toHaveLength(2);
    const self = JSON.parse((await lab.run('mail1', 'consul', ['acl', 'token', 'read', '-self', '-format', 'json', `-token=${token}`])).stdout) as {
      AccessorID: string;
    };
    const old = mgmt.find((t) => t.AccessorID !== self.AccessorID);
    const del = await lab.run('mail1', 'consul', ['acl', 'token', 'delete', '-id', old?.AccessorID ?? '', `-token=${token}`]);
    expect(del).toMatchObject({ code: 0, stdout: `Token "${old?.AccessorID}" deleted successfully\n` });
    const peers = await lab.run('mail2', 'consul', ['operator', 'raft', 'list-peers', `-token=${token}`]);
    expect(peers.stdout).toMatch(/server-mail1-sim-test\s+\S+\s+10\.250\.0\.2:8300\s+leader\s+true/);
  });

  test('the shared state stays whole under many commands at once, and a dead holder’s lock is broken', async () => {
    const lock = path.join(lab.dir, 'cluster', 'state.lock');
    // A lock left by a process that no longer exists.
    const dead = spawnSync('true').pid ?? 999_999;
    fs.writeFileSync(lock, `${dead} 0 stale`);
    const runs = await Promise.all(
      Array.from({ length: 12 }, (_, i) => lab.run(lab.nodes[i % 3]?.short ?? 'mail1', 'systemctl', ['restart', 'service-discover'])),
    );
    expect(runs.map((r) => r.code)).toEqual(Array.from({ length: 12 }, () => 0));
    expect(fs.existsSync(lock)).toBe(false);
    const state = JSON.parse(fs.readFileSync(path.join(lab.dir, 'cluster', 'state.json'), 'utf8')) as { nodes: Record<string, { agent: unknown }> };
    expect(Object.values(state.nodes).every((n) => n.agent !== null)).toBe(true);
    for (const n of lab.nodes) expect(await lab.run(n.short, 'systemctl', ['is-active', 'service-discover'])).toMatchObject({ code: 0 });
  });
});

describe.skipIf(skip !== null)('the cluster state lock', () => {
  test('concurrent processes never lose an update', async () => {
    assertBuilt();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-simlock-'));
    try {
      const store = path.join(REPO, 'dist', 'test', 'sim', 'state-store.js');
      const script = `
        const { ClusterStateStore } = await import(${JSON.stringify(store)});
        const s = new ClusterStateStore(${JSON.stringify(dir)});
        for (let i = 0; i < 25; i++) s.update(() => ({ raftIndex: 0 }), (st) => { st.raftIndex += 1; });
      `;
      const runs = await Promise.all(
        Array.from({ length: 6 }, () => runProcess([process.execPath, '--input-type=module', '-e', script], { timeoutMs: 120_000 })),
      );
      for (const r of runs) expect(r.code, r.stderr).toBe(0);
      const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as { raftIndex: number };
      expect(state.raftIndex).toBe(150);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- the same commands inside a real lab node, reached over ssh as an operator would --------------------------

const labSkipped = labSkip();

describe.skipIf(labSkipped !== null)('inside lab nodes (namespaces, sshd)', () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'current', losePassword: true });

  test('an agent re-joins through setup-wizard on a terminal after hostname -i went to 127.0.1.1; the old forms fail', async () => {
    const lab = h.lab;
    const [server, agent] = lab.nodes as [LabNode, LabNode];
    const ssh = (node: LabNode, command: string, stdin?: string) => sshExec(lab, node.short, command, { stdin, timeoutMs: 120_000 });
    const notATerminal = 'service-discover: error: the provided file descriptor (0) is not a terminal\n';

    expect(await ssh(server, 'consul members')).toMatchObject({ code: 2, stdout: '' });
    expect((await ssh(server, "su - zextras -c 'carbonio prov gas service-discover'")).stdout).toBe(`${server.name}\n`);
    expect((await ssh(agent, 'wget -qO - http://127.0.0.1:8500/v1/status/leader')).stdout).toBe(`"${server.ip}:8300"`);
    expect((await ssh(server, 'test -e /var/lib/service-discover/password; echo $?')).stdout.trim()).toBe('1');

    await labFault(lab.dir, { kind: 'hostname-loopback', node: agent.short, on: true });
    expect((await ssh(agent, 'hostname -i')).stdout.trim()).toBe('127.0.1.1');
    await ssh(agent, 'systemctl stop service-discover && rm /etc/zextras/service-discover/config.json /etc/zextras/service-discover/main.json /var/lib/service-discover/*.pem');
    // The forms regen used before: a plain exec channel has no terminal, so every setup stops there first.
    expect(await ssh(agent, `service-discover setup ${agent.ip} --password=${h.secret}`)).toMatchObject({ code: 1, stderr: notATerminal });
    expect(await ssh(agent, 'service-discover setup --wizard', `${agent.ip}\n${h.secret}\n`)).toMatchObject({ code: 1, stderr: notATerminal });
    expect(await ssh(agent, 'service-discover setup-wizard', `${agent.ip}\n${h.secret}\n`)).toMatchObject({ code: 1, stderr: notATerminal });
    const naive = await sshTerminal(lab, agent.short, `service-discover setup $(hostname -i) --password=${h.secret}`);
    expect(naive).toMatchObject({ code: 1, out: 'service-discover: error: invalid binding address selected\r\n' });
    // On a terminal `setup --wizard` asks nothing: with neither address nor password it has nothing to set up.
    expect(await sshTerminal(lab, agent.short, 'service-discover setup --wizard')).toMatchObject({ code: 1, out: 'service-discover: error: missing arguments\r\n' });

    const dialog: Array<[string, string]> = [
      ['Specify the binding address for service discovery: ', agent.ip],
      ['Insert the cluster credential password: ', h.secret],
    ];
    await labFault(lab.dir, { kind: 'fail-next-setup', node: agent.short, message: 'disk full' });
    const injected = await sshTerminal(lab, agent.short, 'service-discover setup-wizard', dialog);
    expect(injected.code).toBe(1);
    expect(injected.out).toMatch(/service-discover: error: disk full\r\n$/);

    const wizard = await sshTerminal(lab, agent.short, 'service-discover setup-wizard', dialog);
    expect(wizard.code, wizard.out).toBe(0);
    // The address is echoed as typed; the password is not.
    expect(wizard.out).toMatch(new RegExp(`^eth0 ${agent.ip.replaceAll('.', '\\.')}/24.*\r\nSpecify the binding address for service discovery: ${agent.ip.replaceAll('.', '\\.')}\r\nInsert the cluster credential password: \r\n$`, 's'));
    expect(wizard.out).not.toContain(h.secret);
    const members = await ssh(
      agent,
      `export CONSUL_HTTP_TOKEN=$(gpg --batch --pinentry-mode loopback --passphrase-fd 0 -qdo - /etc/zextras/service-discover/cluster-credentials.tar.gpg | tar xOf - consul-acl-secret.json | jq .SecretID -r); consul members`,
      `${h.secret}\n`,
    );
    expect(parseMembers(members.stdout).map((m) => `${m.node} ${m.status} ${m.type}`)).toEqual([
      `agent-${agent.name.replaceAll('.', '-')} alive client`,
      `server-${server.name.replaceAll('.', '-')} alive server`,
    ]);
  });
});
