/**
 * The lab: a simulated Carbonio Mesh of 1 to 30 nodes on this machine.
 *
 * Each node is a network namespace (veth to a lab bridge, its own address and loopback) plus a private mount and
 * UTS namespace (own hostname, /etc/hosts, /etc/zextras, /var/lib/service-discover, /opt/zextras, /root), whose
 * first process is a real OpenSSH sshd. Everything the lab makes is named after a hash of its directory, so `down`
 * can find and remove it even when lab.json was never written (a crash during `up`).
 *
 * The mesh itself (who leads, what setup does) is the simulation's: test/lab/bin/* run inside the nodes through
 * the sh wrappers this file installs.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as yamlStringify } from 'yaml';
import { shq } from '../../adapters/shell/quote.js';
import { ClusterStateStore } from '../sim/state-store.js';
import { DEFAULT_VERSION, credentialsInLdap, release } from '../sim/versions.js';
import { ELECTION_FILE, LAB_ELECTION, type ElectionSettings } from '../sim/election.js';
import { directoryDown, directoryUp, ldapMasterUrl } from './directory.js';

export type LabProfile = 'current' | 'legacy';
export type LabNodeKind = 'server' | 'agent';

export interface LabNode {
  /** FQDN, e.g. mail1.lab.example. */
  name: string;
  short: string;
  ip: string;
  kind: LabNodeKind;
  netns: string;
  /** The node's private files on the host: DIR/nodes/<short>. */
  root: string;
  /** pid of the node's sshd (its first process); 0 while stopped. */
  sshdPid: number;
  /** Host side of the node's veth pair. */
  veth: string;
}

export interface Lab {
  dir: string;
  cluster: string;
  profile: LabProfile;
  /** The service-discover release every node has (test/sim/versions.ts). */
  sdVersion: string;
  /** e.g. 198.18.7.0/24; the host is .1 on the bridge. */
  subnet: string;
  bridge: string;
  nodes: LabNode[];
  /** Preferred leader FQDN (the first server). */
  leader: string;
  /** Whether the initial mesh was brought up. */
  mesh: boolean;
  sshConfig: string;
  knownHosts: string;
  identityFile: string;
  inventory: string;
  secretFile: string;
}

export interface LabUpOptions {
  dir: string;
  nodes: number;
  servers: number;
  profile: LabProfile;
  /** Modelled service-discover release; default per profile (versions.ts DEFAULT_VERSION). */
  sdVersion?: string;
  /** Nodes and sshd only; no `service-discover setup`. */
  mesh?: boolean;
  /** After the mesh is up, delete /var/lib/service-discover/password on the servers (the incident scenario). */
  losePassword?: boolean;
  /** The mesh secret; generated when absent. */
  secret?: string;
  /** Domain of the node FQDNs. */
  domain?: string;
  /** Leave whatever was made when `up` fails, for inspection (`down` removes it later). */
  keepOnFailure?: boolean;
  /** Parallel node bring-up (default 8). */
  concurrency?: number;
  /** Election delay and RPC hold of the simulated servers (test/sim/election.ts; default LAB_ELECTION). */
  election?: Partial<ElectionSettings>;
  log?: (line: string) => void;
}

export interface ExecOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', ...(isCompiled() ? ['..'] : []));
const SSHD = '/usr/sbin/sshd';
/** Root's PATH on a Debian node (sshd's SUPERUSER_PATH). */
export const NODE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Where the lab keeps its subnet claims: tmpfs, so a reboot (which also drops every netns) forgets them. */
const CLAIMS = '/run/regen-lab/subnets';
const MAX_NODES = 30;
/** Paths bind-mounted inside every node: a lab dir or a repo under one of them would be invisible there. */
const SHADOWED = ['/etc/zextras', '/var/lib/service-discover', '/opt/zextras', '/root', '/var/backups', '/etc/regen-lab', '/usr/local/sbin', '/var/lib/regen'];

function isCompiled(): boolean {
  return fileURLToPath(import.meta.url).includes(`${path.sep}dist${path.sep}`);
}

/** The repository root (where dist/ lives), from either the .ts source or its compiled copy. */
export function repoRoot(): string {
  return REPO;
}

/** Names derived from the lab directory: stable across crashes, distinct between labs. */
export function labNames(dir: string): { hash: string; bridge: string; netnsPrefix: string; vethPrefix: string } {
  const hash = createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 8);
  return { hash, bridge: `rgb${hash}`, netnsPrefix: `rgn-${hash}-`, vethPrefix: `rgv${hash}` };
}

/** The code base's one POSIX sh quoter, re-exported for the lab's tests. */
export { shq };

/** Run a program to completion; never throws for a non-zero exit. */
export function run(
  argv: string[],
  opts: { stdin?: string | Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<ExecOutcome> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) return reject(new Error('run: empty argv'));
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd ?? '/' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString();
      resolve({
        code: code ?? (timedOut ? 124 : 128 + (signal ? (os_signals[signal] ?? 1) : 1)),
        stdout: Buffer.concat(out).toString(),
        stderr: timedOut ? `${stderr}\n(timed out after ${opts.timeoutMs ?? 60_000} ms: ${argv.join(' ')})` : stderr,
      });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.stdin ?? '');
  });
}
const os_signals: Record<string, number> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGHUP: 1 };

async function must(argv: string[], what: string, opts: Parameters<typeof run>[1] = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${argv.join(' ')}\n${r.stderr.trim()}`);
  return r.stdout;
}

async function pool<T>(items: T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        await fn(items[i] as T, i);
      } catch (e) {
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (errors.length > 0) throw errors[0];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The process exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0) but is gone for every purpose the lab has.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

function netnsInode(netns: string): number | null {
  try {
    return fs.statSync(`/run/netns/${netns}`).ino;
  } catch {
    return null;
  }
}

/** Processes per network namespace, in one pass over /proc. */
function processesByNetns(netnsNames: string[]): Map<string, number[]> {
  const byInode = new Map<string, string>();
  const result = new Map<string, number[]>();
  for (const ns of netnsNames) {
    result.set(ns, []);
    const ino = netnsInode(ns);
    if (ino !== null) byInode.set(`net:[${ino}]`, ns);
  }
  if (byInode.size === 0) return result;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ns = byInode.get(fs.readlinkSync(`/proc/${entry}/ns/net`));
      if (ns !== undefined) result.get(ns)?.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return result;
}

/** Every process whose network namespace is the node's: its sshd, sessions, agent and anything they started. */
export function processesInNetns(netns: string): number[] {
  return processesByNetns([netns]).get(netns) ?? [];
}

async function killAndWait(pids: number[], signal: NodeJS.Signals, waitMs: number): Promise<number[]> {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + waitMs;
  let alive = pids.filter(pidAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await sleep(20);
    alive = alive.filter(pidAlive);
  }
  return alive;
}

/** Kill every process in these namespaces; returns how many there were. */
async function killNetnsProcesses(...netnsNames: string[]): Promise<number> {
  let total = 0;
  // Bounded: a process may fork while we kill, so look again a few times.
  for (let round = 0; round < 5; round++) {
    const pids = [...processesByNetns(netnsNames).values()].flat();
    if (pids.length === 0) return total;
    if (round === 0) total = pids.length;
    const left = await killAndWait(pids, 'SIGKILL', 2_000);
    if (left.length > 0 && round === 4) throw new Error(`processes ${left.join(',')} in ${netnsNames.join(' ')} did not die`);
  }
  return total;
}

function waitForPort(host: string, port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const sock = net.connect({ host, port });
      sock.setTimeout(1_000);
      const retry = (why: string): void => {
        sock.destroy();
        if (!alive()) return reject(new Error(`${host}:${port}: the process serving it exited (${why})`));
        if (Date.now() > deadline) return reject(new Error(`${host}:${port} not reachable after ${timeoutMs} ms (${why})`));
        setTimeout(attempt, 25);
      };
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', (e) => retry(e.message));
      sock.once('timeout', () => retry('timeout'));
    };
    attempt();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Subnet claims: two labs must not route the same /24 through two bridges.

function claimSubnet(dir: string, hash: string): number {
  fs.mkdirSync(CLAIMS, { recursive: true });
  const start = parseInt(hash.slice(0, 4), 16) % 250;
  for (let k = 0; k < 250; k++) {
    const third = ((start + k) % 250) + 1;
    const file = path.join(CLAIMS, `198.18.${third}`);
    try {
      fs.writeFileSync(file, dir, { flag: 'wx' });
      return third;
    } catch {
      let owner = '';
      try {
        owner = fs.readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      if (owner === dir) return third;
      // Stale: the lab vanished without `down` (its directory deleted, no bridge left). A lab still being built
      // has its directory already, so it is never taken over.
      if (!fs.existsSync(owner) && !fs.existsSync(`/sys/class/net/${labNames(owner).bridge}`)) {
        fs.writeFileSync(file, dir);
        return third;
      }
    }
  }
  throw new Error('no free 198.18.x.0/24 subnet for a new lab (250 labs up?)');
}

function releaseSubnets(dir: string): void {
  if (!fs.existsSync(CLAIMS)) return;
  for (const f of fs.readdirSync(CLAIMS)) {
    const file = path.join(CLAIMS, f);
    try {
      if (fs.readFileSync(file, 'utf8') === dir) fs.rmSync(file, { force: true });
    } catch {
      // raced with another down
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Host preparation

async function ensureUser(name: string, home: string, shell: string): Promise<void> {
  const r = await run(['getent', 'passwd', name]);
  if (r.code === 0) return;
  const add = await run(['useradd', '--system', '--home-dir', home, '--no-create-home', '--shell', shell, name]);
  // Two labs starting together may race to create the user.
  if (add.code !== 0 && (await run(['getent', 'passwd', name])).code !== 0) {
    throw new Error(`useradd ${name} failed: ${add.stderr.trim()}`);
  }
}

async function userIds(name: string): Promise<{ uid: number; gid: number }> {
  const line = (await must(['getent', 'passwd', name], `getent passwd ${name}`)).trim();
  const parts = line.split(':');
  return { uid: Number(parts[2]), gid: Number(parts[3]) };
}

function checkPaths(dir: string): void {
  for (const p of [dir, REPO]) {
    for (const s of SHADOWED) {
      if (p === s || p.startsWith(`${s}/`)) {
        throw new Error(`${p} is under ${s}, which every lab node mounts over: use a directory elsewhere (e.g. /tmp)`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Files of a node

function hostsFile(lab: Pick<Lab, 'nodes'>, self: Pick<LabNode, 'name' | 'short' | 'ip'>, loopback: boolean): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const n of lab.nodes) {
    lines.push(n.name === self.name && loopback ? `${n.ip}\t${n.name}` : `${n.ip}\t${n.name} ${n.short}`);
  }
  // Like Debian's installer: the host name on 127.0.1.1, so `hostname -i` (which resolves the short name) answers
  // a loopback address. Only the short name: with the FQDN there too, getaddrinfo would sort 127.0.1.1 first for
  // it and setup's "zimbra_server_hostname must not resolve to loopback" would fail the node outright. The price:
  // `hostname -f` answers the short name while the fault is on.
  if (loopback) lines.push(`127.0.1.1\t${self.short}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Every lab node is a mailbox node: Carbonio's setup then writes `zimbra_zmprov_default_to_ldap` false, so
 * `zmprov` without `-l` goes through the node's own mailbox (carbonio-core-utils src/libexec/setup.pl).
 */
function localconfigXml(fqdn: string, ldapMasterUrl: string): string {
  const keys: Array<[string, string]> = [
    ['zimbra_server_hostname', fqdn],
    ['ldap_master_url', ldapMasterUrl],
    ['ldap_url', ldapMasterUrl],
    ['zimbra_ldap_userdn', 'uid=zimbra,cn=admins,cn=zimbra'],
    ['zimbra_ldap_password', 'lab-ldap-password'],
    ['zimbra_zmprov_default_to_ldap', 'false'],
  ];
  const body = keys.map(([k, v]) => `  <key name="${k}">\n    <value>${v}</value>\n  </key>\n`).join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n\n<localconfig>\n${body}</localconfig>\n`;
}

function sshdConfig(node: LabNode): string {
  const r = node.root;
  return `# sshd of lab node ${node.name}
ListenAddress ${node.ip}:22
HostKey ${r}/ssh/ssh_host_ed25519_key
PidFile ${r}/run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp /usr/lib/openssh/sftp-server
`;
}

function wrapper(entry: string): string {
  return `#!/bin/sh\nexec ${process.execPath} ${path.join(REPO, 'dist', 'test', 'lab', 'bin', entry)} "$@"\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// Lab state

export function labFile(dir: string): string {
  return path.join(path.resolve(dir), 'lab.json');
}

/** Read a lab written by labUp. */
export function loadLab(dir: string): Lab {
  const file = labFile(dir);
  if (!fs.existsSync(file)) throw new Error(`no lab in ${dir} (${file} missing): run \`npm run lab -- up --dir ${dir}\``);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Lab;
}

function saveLab(lab: Lab): void {
  const file = labFile(lab.dir);
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(lab, null, 2)}\n`);
  fs.renameSync(`${file}.tmp`, file);
}

export function findNode(lab: Lab, node: string): LabNode {
  const n = lab.nodes.find((x) => x.name === node || x.short === node || x.ip === node);
  if (!n) throw new Error(`no node ${node} in the lab (nodes: ${lab.nodes.map((x) => x.short).join(', ')})`);
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// up

/** Bring a lab up in opts.dir; on failure everything made so far is removed again. */
export async function labUp(opts: LabUpOptions): Promise<Lab> {
  const log = opts.log ?? (() => undefined);
  const dir = path.resolve(opts.dir);
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (network and mount namespaces, sshd on port 22)');
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > MAX_NODES) {
    throw new Error(`--nodes must be 1..${MAX_NODES}`);
  }
  if (!Number.isInteger(opts.servers) || opts.servers < 1 || opts.servers > opts.nodes) {
    throw new Error('--servers must be 1..--nodes');
  }
  checkPaths(dir);
  if (fs.existsSync(labFile(dir))) throw new Error(`a lab is already up in ${dir}: run \`down --dir ${dir}\` first`);
  const mesh = opts.mesh ?? true;
  if (mesh) assertSimulationBuilt(opts.profile);
  fs.mkdirSync(dir, { recursive: true });

  const t0 = Date.now();
  try {
    const lab = await build(dir, opts, mesh, log);
    log(`lab up in ${Date.now() - t0} ms: ${lab.nodes.length} nodes, bridge ${lab.bridge}, subnet ${lab.subnet}`);
    return lab;
  } catch (e) {
    if (!opts.keepOnFailure) await labDown(dir, { keepDir: true }).catch(() => undefined);
    throw e;
  }
}

/** The compiled simulated commands the wrappers exec: without them a node has no mesh. */
export function assertSimulationBuilt(profile: LabProfile): void {
  const bin = path.join(REPO, 'dist', 'test', 'lab', 'bin');
  const needed = ['consul', 'service-discover', 'systemctl', 'carbonio-cli', 'agent', 'dpkg-query'];
  const missing = needed.filter((n) => !fs.existsSync(path.join(bin, `${n}.js`)));
  if (missing.length > 0) {
    throw new Error(
      `simulated commands missing in ${bin}: ${missing.join(', ')} (${profile} profile). ` +
        'Run `npm run build`, or bring the lab up with --no-mesh.',
    );
  }
}

async function build(dir: string, opts: LabUpOptions, mesh: boolean, log: (l: string) => void): Promise<Lab> {
  const names = labNames(dir);
  const third = claimSubnet(dir, names.hash);
  const domain = opts.domain ?? 'lab.example';
  const nodes: LabNode[] = Array.from({ length: opts.nodes }, (_, i) => {
    const short = `mail${i + 1}`;
    return {
      name: `${short}.${domain}`,
      short,
      ip: `198.18.${third}.${i + 2}`,
      kind: i < opts.servers ? 'server' : 'agent',
      netns: `${names.netnsPrefix}${short}`,
      root: path.join(dir, 'nodes', short),
      sshdPid: 0,
      veth: `${names.vethPrefix}${i + 1}`,
    };
  });
  const first = nodes[0] as LabNode;
  const lab: Lab = {
    dir,
    cluster: `lab-${names.hash}`,
    profile: opts.profile,
    sdVersion: release(opts.sdVersion ?? DEFAULT_VERSION[opts.profile]).version,
    subnet: `198.18.${third}.0/24`,
    bridge: names.bridge,
    nodes,
    leader: first.name,
    mesh: false,
    sshConfig: path.join(dir, 'ssh_config'),
    knownHosts: path.join(dir, 'known_hosts'),
    identityFile: path.join(dir, 'id_ed25519'),
    inventory: path.join(dir, 'inventory.yaml'),
    secretFile: path.join(dir, 'secret'),
  };

  const tHost = Date.now();
  await Promise.all([
    ensureUser('service-discover', '/var/lib/service-discover', '/usr/sbin/nologin'),
    ensureUser('zextras', '/opt/zextras', '/bin/bash'),
  ]);
  for (const d of ['/etc/zextras', '/var/lib/service-discover', '/opt/zextras', '/etc/regen-lab', '/run/sshd']) {
    fs.mkdirSync(d, { recursive: true, mode: 0o755 });
  }
  const sd = await userIds('service-discover');
  const zx = await userIds('zextras');
  fs.mkdirSync(path.join(dir, 'cluster'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'nodes'), { recursive: true });
  // Read by the simulation when it creates the mesh state; afterwards state.json's preferredLeader rules.
  fs.writeFileSync(path.join(dir, 'cluster', 'preferred-leader'), `${lab.leader}\n`);

  // Keys: one client key for the whole lab, one host key per node, all generated at once.
  const secret = opts.secret ?? randomBytes(18).toString('base64url');
  fs.writeFileSync(lab.secretFile, secret, { mode: 0o600 });
  for (const n of nodes) fs.mkdirSync(path.join(n.root, 'ssh'), { recursive: true, mode: 0o700 });
  const keygen = (file: string, comment: string): Promise<string> =>
    must(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], 'ssh-keygen');
  await Promise.all([
    keygen(lab.identityFile, `regen-lab@${lab.cluster}`),
    ...nodes.map((n) => keygen(path.join(n.root, 'ssh', 'ssh_host_ed25519_key'), `root@${n.name}`)),
  ]);
  const clientPub = fs.readFileSync(`${lab.identityFile}.pub`, 'utf8');
  const clientKey = fs.readFileSync(lab.identityFile);
  const knownHosts = nodes
    .map((n) => {
      const [type, key] = fs.readFileSync(path.join(n.root, 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8').trim().split(/\s+/);
      return `${n.ip},${n.name},${n.short} ${type} ${key}`;
    })
    .join('\n');
  fs.writeFileSync(lab.knownHosts, `${knownHosts}\n`);

  for (const n of nodes) writeNodeFiles(lab, n, { sd, zx, clientPub, clientKey, knownHosts: `${knownHosts}\n` });
  writeClientFiles(lab);
  log(`host prepared in ${Date.now() - tHost} ms`);

  // Network: the bridge and every netns + veth in one `ip -batch` (sequential on purpose: concurrent first
  // `ip netns add` calls race to make /run/netns a shared mount), then each node's inside in parallel.
  const tNet = Date.now();
  const hostBatch = [
    `link add ${lab.bridge} type bridge`,
    `addr add 198.18.${third}.1/24 dev ${lab.bridge}`,
    `link set ${lab.bridge} up`,
    ...nodes.flatMap((n) => [
      `netns add ${n.netns}`,
      `link add ${n.veth} type veth peer name eth0 netns ${n.netns}`,
      `link set ${n.veth} master ${lab.bridge} up`,
    ]),
  ];
  await must(['ip', '-batch', '-'], 'creating the lab network', { stdin: `${hostBatch.join('\n')}\n` });
  await pool(nodes, opts.concurrency ?? 8, async (n) => {
    const inside = [`link set lo up`, `addr add ${n.ip}/24 dev eth0`, `link set eth0 up`];
    await must(['ip', '-n', n.netns, '-batch', '-'], `configuring ${n.netns}`, { stdin: `${inside.join('\n')}\n` });
  });
  log(`network in ${Date.now() - tNet} ms`);

  const tSshd = Date.now();
  await pool(nodes, opts.concurrency ?? 8, async (n) => {
    await startNodeInit(n);
  });
  saveLab(lab);
  log(`sshd on ${nodes.length} nodes in ${Date.now() - tSshd} ms`);

  if (mesh) {
    const tMesh = Date.now();
    await directoryUp(lab.dir, lab.subnet, REPO);
    await bringUpMesh(lab, secret, opts.concurrency ?? 8, log);
    lab.mesh = true;
    saveLab(lab);
    log(`mesh in ${Date.now() - tMesh} ms`);
  }
  // The mesh is brought up with instant elections; from now on servers take the lab's election delay.
  writeMode(path.join(dir, 'cluster', ELECTION_FILE), `${JSON.stringify({ ...LAB_ELECTION, ...opts.election })}\n`, 0o644);
  if (mesh) {
    if (opts.losePassword) {
      for (const n of nodes.filter((x) => x.kind === 'server')) {
        fs.rmSync(path.join(n.root, 'var-lib-sd', 'password'), { force: true });
      }
    }
  }
  return lab;
}

/** A file with exactly `mode`, whatever the umask of the process running the lab. */
function writeMode(file: string, data: string | Buffer, mode: number): void {
  fs.writeFileSync(file, data, { mode });
  fs.chmodSync(file, mode);
}

function writeNodeFiles(
  lab: Lab,
  n: LabNode,
  k: { sd: { uid: number; gid: number }; zx: { uid: number; gid: number }; clientPub: string; clientKey: Buffer; knownHosts: string },
): void {
  const r = n.root;
  const mk = (rel: string, mode = 0o755): string => {
    const p = path.join(r, rel);
    fs.mkdirSync(p, { recursive: true, mode });
    fs.chmodSync(p, mode);
    return p;
  };
  mk('etc-zextras/service-discover');
  mk('var-lib-sd', 0o755);
  mk('var-lib-sd/data', 0o700);
  fs.chownSync(path.join(r, 'var-lib-sd'), k.sd.uid, k.sd.gid);
  fs.chownSync(path.join(r, 'var-lib-sd', 'data'), k.sd.uid, k.sd.gid);
  mk('opt-zextras/bin');
  mk('opt-zextras/conf');
  writeMode(path.join(r, 'opt-zextras/conf/localconfig.xml'), localconfigXml(n.name, ldapMasterUrl(lab.subnet)), 0o640);
  fs.chownSync(path.join(r, 'opt-zextras/conf/localconfig.xml'), k.zx.uid, k.zx.gid);
  writeMode(path.join(r, 'opt-zextras/.profile'), 'PATH=/opt/zextras/bin:$PATH\nexport PATH\n', 0o644);
  fs.chownSync(path.join(r, 'opt-zextras'), k.zx.uid, k.zx.gid);
  mk('root-home', 0o700);
  mk('root-home/.ssh', 0o700);
  fs.writeFileSync(path.join(r, 'root-home/.ssh/authorized_keys'), k.clientPub, { mode: 0o600 });
  // Root on every node trusts the others (the seed's `scp root@LEADER:…` between nodes needs it).
  fs.writeFileSync(path.join(r, 'root-home/.ssh/id_ed25519'), k.clientKey, { mode: 0o600 });
  fs.writeFileSync(path.join(r, 'root-home/.ssh/id_ed25519.pub'), k.clientPub, { mode: 0o644 });
  fs.writeFileSync(path.join(r, 'root-home/.ssh/known_hosts'), k.knownHosts, { mode: 0o644 });
  fs.writeFileSync(path.join(r, 'root-home/.bashrc'), `PS1='root@\\h:\\w# '\n`);
  mk('backups');
  mk('regen-state', 0o700);
  mk('lab');
  mk('run', 0o755);
  mk('bin');
  const nodeJson = {
    name: n.name,
    short: n.short,
    fqdn: n.name,
    ip: n.ip,
    kind: n.kind,
    profile: lab.profile,
    sdVersion: lab.sdVersion,
    labDir: lab.dir,
    clusterDir: path.join(lab.dir, 'cluster'),
    nodesDir: path.join(lab.dir, 'nodes'),
  };
  writeMode(path.join(r, 'lab/node.json'), `${JSON.stringify(nodeJson, null, 2)}\n`, 0o644);
  const wrappers: Array<[string, string]> = [
    ['bin/consul', 'consul.js'],
    ['bin/service-discover', 'service-discover.js'],
    ['bin/systemctl', 'systemctl.js'],
    ['bin/dpkg-query', 'dpkg-query.js'],
    ['opt-zextras/bin/zmprov', 'carbonio-cli.js'],
  ];
  if (lab.profile === 'current') wrappers.push(['opt-zextras/bin/carbonio', 'carbonio-cli.js']);
  for (const [rel, entry] of wrappers) writeMode(path.join(r, rel), wrapper(entry), 0o755);
  writeMode(path.join(r, 'hosts'), hostsFile(lab, n, false), 0o644);
  fs.writeFileSync(path.join(r, 'ssh/sshd_config'), sshdConfig(n));
}

function writeClientFiles(lab: Lab): void {
  const hosts = lab.nodes
    .map(
      (n) => `Host ${n.name} ${n.short}
  HostName ${n.ip}
  Port 22
  User root
`,
    )
    .join('\n');
  fs.writeFileSync(
    lab.sshConfig,
    `# ssh -F ${lab.sshConfig} <node>
${hosts}
Host *
  IdentityFile ${lab.identityFile}
  IdentitiesOnly yes
  UserKnownHostsFile ${lab.knownHosts}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  ConnectTimeout 10
  ServerAliveInterval 5
  LogLevel ERROR
`,
  );
  const inventory = {
    cluster: lab.cluster,
    nodes: lab.nodes.map((n) => ({
      name: n.name,
      ssh: { host: n.ip, port: 22, user: 'root', identityFile: lab.identityFile },
      address: n.ip,
      kind: n.kind,
    })),
  };
  fs.writeFileSync(lab.inventory, `# regen inventory of lab ${lab.cluster} (profile ${lab.profile})\n${yamlStringify(inventory)}`);
  const table = lab.nodes.map((n) => `| ${n.name} | ${n.short} | ${n.ip} | ${n.kind} |`).join('\n');
  fs.writeFileSync(
    path.join(lab.dir, 'README.md'),
    `# Lab ${lab.cluster}

A simulated Carbonio Mesh (profile \`${lab.profile}\`): ${lab.nodes.length} nodes on bridge \`${lab.bridge}\`,
subnet ${lab.subnet} (this host is .1). Preferred leader: ${lab.leader}.

| FQDN | short | address | kind |
| --- | --- | --- | --- |
${table}

- Log in: \`ssh -F ${lab.sshConfig} ${lab.nodes[0]?.short ?? 'mail1'}\` (root, key ${lab.identityFile}, host keys in ${lab.knownHosts}).
- regen: \`--inventory ${lab.inventory}\`; the mesh secret is in ${lab.secretFile}.
- Each node's files are under nodes/<short>/ (etc-zextras = /etc/zextras, var-lib-sd = /var/lib/service-discover,
  opt-zextras = /opt/zextras, root-home = /root, lab = /etc/regen-lab); the shared mesh state is in cluster/.
- \`npm run lab -- status --dir ${lab.dir}\`, \`fault … --dir ${lab.dir}\`, \`down --dir ${lab.dir}\`.
`,
  );
}

/** Start the node's first process: new mount + UTS namespace in its netns, bind mounts, hostname, sshd. */
async function startNodeInit(n: LabNode): Promise<void> {
  const r = n.root;
  fs.rmSync(path.join(r, 'run', 'sshd.pid'), { force: true });
  const binds: Array<[string, string]> = [
    ['etc-zextras', '/etc/zextras'],
    ['var-lib-sd', '/var/lib/service-discover'],
    ['opt-zextras', '/opt/zextras'],
    ['root-home', '/root'],
    ['backups', '/var/backups'],
    ['regen-state', '/var/lib/regen'],
    ['lab', '/etc/regen-lab'],
    ['bin', '/usr/local/sbin'],
    ['hosts', '/etc/hosts'],
  ];
  const script = [
    'set -e',
    // regen's lock and mirrors (/var/lib/regen) are per node: the mount point is made once on the host.
    'mkdir -p /var/lib/regen',
    ...binds.map(([src, dst]) => `mount --bind ${shq(path.join(r, src))} ${dst}`),
    `hostname ${n.short}`,
    `exec ${SSHD} -D -f ${shq(path.join(r, 'ssh', 'sshd_config'))} -E ${shq(path.join(r, 'sshd.log'))}`,
  ].join('\n');
  const logFd = fs.openSync(path.join(r, 'init.log'), 'a');
  try {
    // `ip netns exec` and `unshare` (without --fork) exec in place: the pid we get is the sshd's.
    const child = spawn('ip', ['netns', 'exec', n.netns, 'unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c', script], {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      cwd: '/',
      env: { PATH: NODE_PATH, LANG: 'C.UTF-8' },
    });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start the init of ${n.name}`);
    n.sshdPid = child.pid;
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    await waitForPort(n.ip, 22, 15_000, () => !exited).catch((e: Error) => {
      const tail = readTail(path.join(r, 'init.log')) + readTail(path.join(r, 'sshd.log'));
      throw new Error(`${n.name}: sshd did not come up: ${e.message}\n${tail}`);
    });
  } finally {
    fs.closeSync(logFd);
  }
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-10).join('\n');
  } catch {
    return '';
  }
}

async function bringUpMesh(lab: Lab, secret: string, concurrency: number, log: (l: string) => void): Promise<void> {
  const leader = findNode(lab, lab.leader);
  const setup = async (n: LabNode, firstInstance: boolean): Promise<void> => {
    const argv = ['service-discover', 'setup', n.ip, ...(firstInstance ? ['--first-instance'] : []), `--password=${secret}`];
    // service-discover setup needs a terminal on stdin (pkg/term/term_unix.go): script(1) gives it one.
    const r = await nodeExec(lab, n.name, ['script', '-qefc', argv.map(shq).join(' '), '/dev/null'], { timeoutMs: 120_000 });
    if (r.code !== 0) {
      throw new Error(`${n.name}: service-discover setup${firstInstance ? ' --first-instance' : ''} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
    }
  };
  const t = Date.now();
  await setup(leader, true);
  log(`leader ${leader.name} set up in ${Date.now() - t} ms`);
  const credentials = path.join('etc-zextras', 'service-discover', 'cluster-credentials.tar.gpg');
  await pool(
    lab.nodes.filter((n) => n !== leader),
    concurrency,
    async (n) => {
      // service-discover before 0.1.7 (the legacy profile) does not fetch the credentials from LDAP: the
      // installation guide has the operator copy them from the first server before the setup.
      if (!credentialsInLdap(lab.sdVersion, lab.profile)) {
        const dst = path.join(n.root, credentials);
        fs.copyFileSync(path.join(leader.root, credentials), dst);
        fs.chmodSync(dst, 0o600);
      }
      await setup(n, false);
    },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// exec helpers

/** A live pid inside the node's namespaces: its sshd, or (sshd stopped) any process left in its netns. */
function anchorPid(n: LabNode): number {
  if (pidAlive(n.sshdPid) && cmdline(n.sshdPid).includes(n.root)) return n.sshdPid;
  const others = processesInNetns(n.netns);
  if (others[0] !== undefined) return others[0];
  throw new Error(`${n.name} has no running process (crashed or sshd stopped): \`fault restore ${n.short}\` or \`fault sshd-start ${n.short}\``);
}

/**
 * Run argv inside the node's namespaces (network, mount, UTS) as root with a login-like environment, bypassing
 * ssh. For lab plumbing and test set-up; what a person would type goes through sshExec.
 */
export async function nodeExec(
  lab: Lab,
  node: string,
  argv: string[],
  opts: { stdin?: string | Buffer; timeoutMs?: number } = {},
): Promise<ExecOutcome> {
  const n = findNode(lab, node);
  const pid = anchorPid(n);
  return run(
    ['nsenter', '-t', String(pid), '-n', '-m', '-u', '--', 'env', '-i', `PATH=${NODE_PATH}`, 'HOME=/root', 'USER=root', 'LOGNAME=root', 'LANG=C.UTF-8', ...argv],
    { stdin: opts.stdin, timeoutMs: opts.timeoutMs ?? 60_000 },
  );
}

/** Run a shell command on the node over real ssh with the lab's ssh_config (BatchMode: never prompts). */
export function sshExec(
  lab: Lab,
  node: string,
  command: string,
  opts: { stdin?: string | Buffer; timeoutMs?: number; sshOptions?: string[] } = {},
): Promise<ExecOutcome> {
  const n = findNode(lab, node);
  return run(['ssh', '-F', lab.sshConfig, '-o', 'BatchMode=yes', ...(opts.sshOptions ?? []), n.name, command], {
    stdin: opts.stdin,
    timeoutMs: opts.timeoutMs ?? 60_000,
  });
}

// ---------------------------------------------------------------------------------------------------------------
// down

export interface DownReport {
  killed: number;
  netns: string[];
  links: string[];
  strayMounts: string[];
}

/**
 * Remove every namespace, link, process and file the lab in `dir` made. Idempotent; works from the names alone,
 * so a lab that crashed before writing lab.json is cleaned too.
 */
export async function labDown(dir: string, opts: { keepDir?: boolean } = {}): Promise<DownReport> {
  const abs = path.resolve(dir);
  const names = labNames(abs);
  const report: DownReport = { killed: 0, netns: [], links: [], strayMounts: [] };

  const nsList = (await run(['ip', 'netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(/\s+/)[0] ?? '')
    .filter((ns) => ns.startsWith(names.netnsPrefix));

  // Processes first: a node's mount namespace (and the nsfs mounts it copied) dies with its last process.
  report.killed += await killNetnsProcesses(...nsList);
  if (await directoryDown(abs)) report.killed++;
  // An init that failed before joining its netns (or a lab.json pid whose netns is gone) is found by its cmdline.
  let lab: Lab | null = null;
  try {
    lab = loadLab(abs);
  } catch {
    lab = null;
  }
  for (const n of lab?.nodes ?? []) {
    if (pidAlive(n.sshdPid) && cmdline(n.sshdPid).includes(n.root)) {
      await killAndWait([n.sshdPid], 'SIGKILL', 2_000);
      report.killed++;
    }
  }

  // One `ip -batch` for the lot. Deleting a netns destroys its veth peer, but the kernel does that later, so the
  // host ends are deleted explicitly too (-force: one already gone must not stop the rest).
  const links = (fs.existsSync('/sys/class/net') ? fs.readdirSync('/sys/class/net') : []).filter(
    (l) => l.startsWith(names.vethPrefix) || l === names.bridge,
  );
  const batch = [
    ...links.filter((l) => l !== names.bridge).map((l) => `link del ${l}`),
    ...(links.includes(names.bridge) ? [`link del ${names.bridge}`] : []),
    ...nsList.map((ns) => `netns del ${ns}`),
  ];
  if (batch.length > 0) await run(['ip', '-force', '-batch', '-'], { stdin: `${batch.join('\n')}\n` });
  const leftNs = nsList.filter((ns) => fs.existsSync(`/run/netns/${ns}`));
  const leftLinks = links.filter((l) => fs.existsSync(`/sys/class/net/${l}`));
  // A veth whose netns was just deleted may vanish on its own a moment later.
  for (let i = 0; i < 50 && leftLinks.some((l) => fs.existsSync(`/sys/class/net/${l}`)); i++) await sleep(20);
  const stillLinks = leftLinks.filter((l) => fs.existsSync(`/sys/class/net/${l}`));
  if (leftNs.length > 0 || stillLinks.length > 0) {
    throw new Error(`down left ${[...leftNs, ...stillLinks].join(', ')} behind`);
  }
  report.netns = nsList;
  report.links = links;
  releaseSubnets(abs);

  report.strayMounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(`/run/netns/${names.netnsPrefix}`) || l.includes(` ${abs}/`) || l.includes(` ${abs} `));
  if (report.strayMounts.length > 0) {
    throw new Error(`mounts of the lab remain after down:\n${report.strayMounts.join('\n')}`);
  }

  if (fs.existsSync(abs)) {
    for (const f of ['lab.json', 'lab.json.tmp', 'nodes', 'cluster', 'ssh_config', 'known_hosts', 'id_ed25519', 'id_ed25519.pub', 'inventory.yaml', 'README.md', 'secret']) {
      fs.rmSync(path.join(abs, f), { recursive: true, force: true });
    }
    if (!opts.keepDir && fs.readdirSync(abs).length === 0) fs.rmdirSync(abs);
  }
  return report;
}

// ---------------------------------------------------------------------------------------------------------------
// status

export interface NodeStatus {
  name: string;
  short: string;
  ip: string;
  kind: LabNodeKind;
  sshd: boolean;
  agent: boolean;
  processes: number;
  rssKiB: number;
  hostnameLoopback: boolean;
}

export interface LabStatus {
  dir: string;
  cluster: string;
  profile: LabProfile;
  subnet: string;
  bridge: string;
  leader: string;
  mesh: boolean;
  nodes: NodeStatus[];
}

function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function agentPid(n: LabNode): number {
  try {
    const pid = Number(fs.readFileSync(path.join(n.root, 'lab', 'agent.pid'), 'utf8').trim());
    return pidAlive(pid) && processesInNetns(n.netns).includes(pid) ? pid : 0;
  } catch {
    return 0;
  }
}

export function labStatus(dir: string): LabStatus {
  const lab = loadLab(dir);
  return {
    dir: lab.dir,
    cluster: lab.cluster,
    profile: lab.profile,
    subnet: lab.subnet,
    bridge: lab.bridge,
    leader: preferredLeader(lab),
    mesh: lab.mesh,
    nodes: lab.nodes.map((n) => {
      const pids = processesInNetns(n.netns);
      return {
        name: n.name,
        short: n.short,
        ip: n.ip,
        kind: n.kind,
        sshd: pidAlive(n.sshdPid) && pids.includes(n.sshdPid),
        agent: agentPid(n) > 0,
        processes: pids.length,
        rssKiB: pids.reduce((s, p) => s + rssKiB(p), 0),
        hostnameLoopback: fs.readFileSync(path.join(n.root, 'hosts'), 'utf8').includes('127.0.1.1'),
      };
    }),
  };
}

function clusterStatePath(lab: Lab): string {
  return path.join(lab.dir, 'cluster', 'state.json');
}

/** The preferred leader as the simulation sees it (state.json), else lab.json's. */
export function preferredLeader(lab: Lab): string {
  try {
    const s = JSON.parse(fs.readFileSync(clusterStatePath(lab), 'utf8')) as { preferredLeader?: unknown };
    if (typeof s.preferredLeader === 'string') return s.preferredLeader;
  } catch {
    // no mesh state yet
  }
  try {
    return fs.readFileSync(path.join(lab.dir, 'cluster', 'preferred-leader'), 'utf8').trim() || lab.leader;
  } catch {
    return lab.leader;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// faults

export type LabFault =
  | { kind: 'latency'; node: string; key: string; ms: number }
  | { kind: 'fail-next-setup'; node: string; message?: string }
  | { kind: 'crash'; node: string }
  | { kind: 'restore'; node: string }
  | { kind: 'sshd-stop'; node: string }
  | { kind: 'sshd-start'; node: string }
  | { kind: 'leader'; node: string }
  | { kind: 'hostname-loopback'; node: string; on: boolean }
  | { kind: 'directory'; node: string; on: boolean; rejectBinds?: boolean }
  | { kind: 'mailbox'; node: string; on: boolean };

interface Faults {
  latencyMs?: Record<string, number>;
  failNextSetup?: string;
  mailboxDown?: boolean;
}

function editFaults(n: LabNode, edit: (f: Faults) => void): void {
  const file = path.join(n.root, 'lab', 'faults.json');
  let f: Faults = {};
  try {
    f = JSON.parse(fs.readFileSync(file, 'utf8')) as Faults;
  } catch {
    f = {};
  }
  edit(f);
  // Rename so a simulated command never reads a half-written file.
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(f, null, 2)}\n`);
  fs.renameSync(`${file}.tmp`, file);
}

/** Inject or clear a fault; returns a line saying what was done. */
export async function labFault(dir: string, fault: LabFault): Promise<string> {
  const lab = loadLab(dir);
  if (fault.kind === 'directory') {
    if (fault.on) await directoryUp(lab.dir, lab.subnet, REPO, { rejectBinds: fault.rejectBinds === true });
    else await directoryDown(lab.dir);
    return `directory ${ldapMasterUrl(lab.subnet)} ${fault.on ? (fault.rejectBinds === true ? 'up, refusing the nodes\' bind' : 'up') : 'down'}`;
  }
  const n = findNode(lab, fault.node);
  switch (fault.kind) {
    case 'latency': {
      editFaults(n, (f) => {
        f.latencyMs = { ...(f.latencyMs ?? {}) };
        if (fault.ms > 0) f.latencyMs[fault.key] = fault.ms;
        else delete f.latencyMs[fault.key];
      });
      return `${n.name}: "${fault.key}" now takes ${fault.ms} ms more`;
    }
    case 'mailbox': {
      editFaults(n, (f) => {
        if (fault.on) delete f.mailboxDown;
        else f.mailboxDown = true;
      });
      return `${n.name}: mailbox (admin SOAP service) ${fault.on ? 'up' : 'down'}`;
    }
    case 'fail-next-setup': {
      const message = fault.message ?? 'injected failure (lab fault fail-next-setup)';
      editFaults(n, (f) => {
        f.failNextSetup = message;
      });
      return `${n.name}: the next service-discover setup fails with "${message}"`;
    }
    case 'crash': {
      const agentWasRunning = agentPid(n) > 0;
      const count = await killNetnsProcesses(n.netns);
      fs.writeFileSync(path.join(n.root, 'crashed.json'), `${JSON.stringify({ agentWasRunning, at: new Date().toISOString() })}\n`);
      n.sshdPid = 0;
      saveLab(lab);
      return `${n.name}: crashed (${count} processes killed${agentWasRunning ? ', agent among them' : ''})`;
    }
    case 'restore': {
      if (pidAlive(n.sshdPid) && processesInNetns(n.netns).includes(n.sshdPid)) return `${n.name}: already running`;
      // Whatever survived a partial crash would keep the old mount namespace: start clean, as a reboot does.
      await killNetnsProcesses(n.netns);
      await startNodeInit(n);
      saveLab(lab);
      const crashedFile = path.join(n.root, 'crashed.json');
      let agentWasRunning = false;
      try {
        agentWasRunning = (JSON.parse(fs.readFileSync(crashedFile, 'utf8')) as { agentWasRunning?: boolean }).agentWasRunning === true;
      } catch {
        agentWasRunning = false;
      }
      fs.rmSync(crashedFile, { force: true });
      if (agentWasRunning) {
        const r = await nodeExec(lab, n.name, ['systemctl', 'start', 'service-discover']);
        if (r.code !== 0) throw new Error(`${n.name}: restored sshd, but systemctl start service-discover failed: ${r.stderr.trim()}`);
      }
      return `${n.name}: restored (sshd${agentWasRunning ? ' and service-discover' : ''})`;
    }
    case 'sshd-stop': {
      if (!(pidAlive(n.sshdPid) && cmdline(n.sshdPid).includes(n.root))) return `${n.name}: sshd already stopped`;
      // Like `systemctl stop ssh`: the listener goes, open sessions stay.
      const left = await killAndWait([n.sshdPid], 'SIGTERM', 5_000);
      if (left.length > 0) await killAndWait(left, 'SIGKILL', 2_000);
      n.sshdPid = 0;
      saveLab(lab);
      return `${n.name}: sshd stopped`;
    }
    case 'sshd-start': {
      if (pidAlive(n.sshdPid) && cmdline(n.sshdPid).includes(n.root)) return `${n.name}: sshd already running`;
      await startNodeInit(n);
      saveLab(lab);
      return `${n.name}: sshd started`;
    }
    case 'leader': {
      // The file is what the simulation reads when it creates the mesh state; once state.json exists, its field
      // rules, changed under the simulation's own lock so a running command does not overwrite it.
      fs.writeFileSync(path.join(lab.dir, 'cluster', 'preferred-leader'), `${n.name}\n`);
      const store = new ClusterStateStore(path.join(lab.dir, 'cluster'));
      if (store.read() !== null) {
        store.update(
          () => {
            throw new Error('state.json vanished');
          },
          (state) => {
            state.preferredLeader = n.name;
            // As a leadership transfer does: the leader steps down and the named server, as up to date as it, stands first.
            for (const node of Object.values(state.nodes)) if (node.raft) node.raft.leader = false;
          },
        );
      }
      return `${n.name}: now the preferred leader`;
    }
    case 'hostname-loopback': {
      // Written in place: /etc/hosts inside the node is a bind mount of this very inode.
      fs.writeFileSync(path.join(n.root, 'hosts'), hostsFile(lab, n, fault.on));
      return `${n.name}: hostname -i answers ${fault.on ? '127.0.1.1' : n.ip}`;
    }
  }
}
