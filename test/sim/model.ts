/**
 * The semantics of a Carbonio Mesh (service-discover + Consul), as one pure module.
 *
 * Both simulations use it: the in-memory fake cluster of the unit tests (test/sim/fake-cluster.ts) and the lab's
 * on-node commands (test/lab/bin/*), so they cannot drift apart. Everything real (files, processes, gpg) comes in
 * through the small faces of `World`; the shared mesh state is plain JSON (`ClusterState`) that the caller loads
 * and saves around each operation.
 *
 * What it encodes is DESIGN.md §4 (service-discover v0.7.2 and Consul's acl_endpoint.go); texts are the real ones.
 */
import { createHash, randomBytes as nodeRandomBytes } from 'node:crypto';
import { bootstrapAlone, emptyRaft, hasRef, recoverFromPeers, settle, type RaftServer, type UpServer } from './raft.js';
import { heldRpc, INSTANT_ELECTION, nextStandAt, parseGoDuration, setupBootstrapLoop, type Attempt, type ElectionSettings } from './election.js';
import { canGossip, keyringAtStart, readKeyring } from './serf.js';
import type { MeshKind, Profile } from '../../machines/port.js';
import { credentialsInLdap, mainJsonRefusal } from './versions.js';
import {
  CONFIG_JSON,
  CREDENTIALS_FILE,
  MAIN_JSON,
  PASSWORD_FILE,
  RESET_FILE,
  SD_CONFIG_DIR,
  SD_DATA_DIR,
  SD_HOME,
} from '../../machines/port.js';

export { CONFIG_JSON, CREDENTIALS_FILE, MAIN_JSON, PASSWORD_FILE, RESET_FILE, SD_CONFIG_DIR, SD_DATA_DIR, SD_HOME };

export const LOCALCONFIG = '/opt/zextras/conf/localconfig.xml';
export const HOSTS_FILE = '/etc/hosts';
export const CA_PEM = `${SD_HOME}/consul-agent-ca.pem`;
export const CA_KEY = `${SD_HOME}/consul-agent-ca-key.pem`;
/** Outage recovery file: a server that starts with it takes exactly these raft peers, then deletes it. */
export const PEERS_JSON = `${SD_DATA_DIR}/raft/peers.json`;
/** What stands for a server's raft store on disk: without it the server starts with fresh raft state. */
export const RAFT_DB = `${SD_DATA_DIR}/raft/raft.db`;
/** Consul's sentinel beside peers.json (agent/consul/server.go setupRaft): only where it exists is peers.json read. */
export const PEERS_INFO = `${SD_DATA_DIR}/raft/peers.info`;
/** Consul keeps its node id in the data directory from its first start on. */
export const NODE_ID = `${SD_DATA_DIR}/node-id`;
export const SD_USER = 'service-discover';
export const CONSUL_BIN = '/usr/bin/consul';

/** Members of cluster-credentials.tar.gpg, in the order service-discover writes them. */
export const CREDENTIAL_MEMBERS = [
  'gossip-key',
  'consul-acl-secret.json',
  'var/lib/service-discover/consul-agent-ca.pem',
  'var/lib/service-discover/consul-agent-ca-key.pem',
] as const;

export const GLOBAL_MANAGEMENT_POLICY_ID = '00000000-0000-0000-0000-000000000001';
export const ANONYMOUS_TOKEN_ID = '00000000-0000-0000-0000-000000000002';
export const BOOTSTRAP_DESCRIPTION = 'Bootstrap Token (Global Management)';

// ---- faces ------------------------------------------------------------------------------------------------------

export interface FileStat {
  owner: string;
  group: string;
  mode: number;
  size: number;
}

export interface WriteOptions {
  owner?: string;
  group?: string;
  mode?: number;
}

/** A node's filesystem, addressed with the paths the node itself sees (/etc/zextras/…). */
export interface NodeFs {
  read(path: string): Buffer | null;
  /** Creates or truncates; missing parent directories are created. */
  write(path: string, data: Buffer | string, opts: WriteOptions): void;
  exists(path: string): boolean;
  /** True when something was removed. */
  remove(path: string): boolean;
  /** Names of the regular files directly in `dir` (empty when it does not exist). */
  list(dir: string): string[];
  mkdir(path: string, opts?: WriteOptions): void;
  chmod(path: string, mode: number): void;
  chown(path: string, owner: string, group: string): void;
  stat(path: string): FileStat | null;
}

/** The credentials tarball: pack/unpack with a password. A wrong password makes unpack return null. */
export interface CredentialsCrypto {
  pack(members: ReadonlyArray<{ name: string; data: Buffer }>, password: string): Buffer;
  unpack(blob: Buffer, password: string): Map<string, Buffer> | null;
}

/** Certificates: real X.509 in the lab (test/sim/openssl-tls.ts); without it, the cheap stand-in below. */
export interface TlsFace {
  ca(): { pem: string; key: string };
  cert(caPem: string, caKey: string, cn: string): { pem: string; key: string };
  /** `openssl verify -CAfile ca cert`. */
  verifies(caPem: string, certPem: string): boolean;
}

export interface NodeIdentity {
  /** FQDN, also the inventory name. */
  name: string;
  short: string;
  /** Which package the node has: service-discover-server or service-discover-agent. */
  kind: MeshKind;
  profile: Profile;
  /** Every interface address, loopback included (setup must skip `lo`). */
  interfaces: ReadonlyArray<{ name: string; address: string }>;
  /** e.g. "1.19.2"; null when `consul version` fails on the node. */
  consulVersion: string | null;
  /** The service-discover release (test/sim/versions.ts); absent: the profile's default. */
  sdVersion?: string;
}

export interface World {
  /** The shared mesh state; operations mutate it, the caller persists it. */
  state: ClusterState;
  nodes(): readonly NodeIdentity[];
  fs(node: string): NodeFs;
  crypto: CredentialsCrypto;
  tls?: TlsFace;
  /** Liveness face: is the node's agent process alive? (A registered agent whose process died is down.) */
  processRunning(node: string): boolean;
  /** Called once the model registered a start/stop, for faces that run a real agent process. */
  startProcess?(node: string): void;
  stopProcess?(node: string): void;
  now(): Date;
  randomBytes(n: number): Buffer;
  /** Election delay and RPC hold (election.ts); absent: instant elections, Consul's 7 s hold. */
  election?: ElectionSettings;
  /** The command being modelled takes until `atMs` (a held RPC, the setup's bootstrap loop); the lab waits it out. */
  elapse?(atMs: number): void;
}

// ---- shared state (plain JSON) ----------------------------------------------------------------------------------

export interface TokenRecord {
  accessorId: string;
  secretId: string;
  description: string;
  policies: string[];
  local: boolean;
  createIndex: number;
  modifyIndex: number;
  createTime: string;
  hash: string;
}

export interface PolicyRecord {
  id: string;
  name: string;
  createIndex: number;
}

export interface AgentRuntime {
  nodeName: string;
  server: boolean;
  bindAddr: string;
  /** Fingerprint of the CA the agent trusts; null when its own certificate is not signed by it (TLS broken). */
  trust: string | null;
  /** Fingerprint of the primary gossip key (the key itself stays in the node's files). */
  gossip: string;
  /** Fingerprints of every key of the node's keyring (absent in states written before keyrings were modelled). */
  gossipKeys?: string[];
  agentTokenAccessor: string | null;
  /** When the unit started (ms since the epoch): a server's election timer runs from then (election.ts). */
  startedAt?: number;
  /** `performance.rpc_hold_timeout` from the config dir as it was at the unit's start; absent: the world's default. */
  rpcHoldMs?: number;
}

export interface NodeRuntime {
  /** Registered while the unit runs; null when stopped. */
  agent: AgentRuntime | null;
  /** Raft configuration in the node's data dir (servers only). Not touched by the wipe. */
  raftPeers: string[];
  /** Term, configuration and log in the node's data/raft (servers; see raft.ts). */
  raft?: RaftServer;
}

export interface MemberRecord {
  node: string;
  nodeName: string;
  address: string;
  type: 'server' | 'client';
  /** Last stop was a graceful leave (clients leave on terminate, servers do not). */
  left: boolean;
}

export interface ClusterState {
  version: 1;
  raftIndex: number;
  acl: { bootstrapped: boolean; resetIndex: number };
  tokens: TokenRecord[];
  policies: PolicyRecord[];
  /** What the directory holds: the mesh servers (`gas service-discover`) and the uploaded credentials. */
  ldap: { meshServers: string[]; credentials: string | null };
  preferredLeader: string | null;
  nodes: Record<string, NodeRuntime>;
  members: Record<string, MemberRecord>;
}

export function emptyClusterState(preferredLeader: string | null = null): ClusterState {
  return {
    version: 1,
    raftIndex: 1,
    acl: { bootstrapped: false, resetIndex: 0 },
    tokens: [],
    policies: [{ id: GLOBAL_MANAGEMENT_POLICY_ID, name: 'global-management', createIndex: 1 }],
    ldap: { meshServers: [], credentials: null },
    preferredLeader,
    nodes: {},
    members: {},
  };
}

// ---- errors -----------------------------------------------------------------------------------------------------

/** A command failed: message is what it printed on stderr. */
export class SimError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'SimError';
    this.exitCode = exitCode;
  }
}

/** An HTTP API answer other than 200 from the local agent. */
export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** `500 (No cluster leader)`; `retryAfterMs`: when a server of the caller's group may stand (the hold retries then; never: Infinity). */
export class NoLeaderError extends ApiError {
  readonly retryAfterMs: number | undefined;
  constructor(retryAfterMs?: number) {
    super(500, 'No cluster leader');
    this.name = 'NoLeaderError';
    this.retryAfterMs = retryAfterMs;
  }
}

/** Nothing listens on 127.0.0.1:8500 (the unit is stopped). */
export class AgentDownError extends Error {
  constructor() {
    super('dial tcp 127.0.0.1:8500: connect: connection refused');
    this.name = 'AgentDownError';
  }
}

export const UNIT_FAILED =
  'Job for service-discover.service failed because the control process exited with error code.\n' +
  'See "systemctl status service-discover.service" and "journalctl -xeu service-discover.service" for details.';

// ---- small helpers ----------------------------------------------------------------------------------------------

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function defaultWorldClock(): Date {
  return new Date();
}

export function defaultRandomBytes(n: number): Buffer {
  return nodeRandomBytes(n);
}

function uuid(w: World): string {
  const h = w.randomBytes(16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function identity(w: World, node: string): NodeIdentity {
  const id = w.nodes().find((n) => n.name === node);
  if (id === undefined) throw new Error(`unknown node ${node}`);
  return id;
}

export function runtime(w: World, node: string): NodeRuntime {
  let rt = w.state.nodes[node];
  if (rt === undefined) {
    rt = { agent: null, raftPeers: [] };
    w.state.nodes[node] = rt;
  }
  return rt;
}

/** The agent of a node if its unit is active and its process alive. */
export function upAgent(w: World, node: string): AgentRuntime | null {
  const a = w.state.nodes[node]?.agent ?? null;
  return a !== null && w.processRunning(node) ? a : null;
}

function trustKey(a: AgentRuntime): string {
  return a.trust ?? `isolated:${a.nodeName}`;
}

/** Consul node name: `server-<host>` / `agent-<host>` with dots turned into dashes. */
export function consulNodeName(kind: MeshKind, host: string): string {
  return `${kind}-${host}`.replaceAll('.', '-');
}

function readJson(fs: NodeFs, path: string): Record<string, unknown> | null {
  const raw = fs.read(path);
  if (raw === null) return null;
  try {
    const v: unknown = JSON.parse(raw.toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Addresses /etc/hosts gives for a name (the lab and the fake resolve through it only). */
export function resolveHost(fs: NodeFs, host: string): string[] {
  const raw = fs.read(HOSTS_FILE);
  if (raw === null) return [];
  const out: string[] = [];
  for (const line of raw.toString('utf8').split('\n')) {
    const fields = line.replace(/#.*/, '').trim().split(/\s+/);
    const [ip, ...names] = fields;
    if (ip === undefined || ip === '') continue;
    if (names.some((n) => n.toLowerCase() === host.toLowerCase()) && !out.includes(ip)) out.push(ip);
  }
  return out;
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

export function localconfigHostname(fs: NodeFs): string | null {
  const raw = fs.read(LOCALCONFIG);
  if (raw === null) return null;
  const m = /<key\s+name="zimbra_server_hostname"\s*>\s*<value>([^<]*)<\/value>/.exec(raw.toString('utf8'));
  return m?.[1]?.trim() || null;
}

export function localconfigXml(hostname: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<localconfig>\n' +
    `  <key name="zimbra_server_hostname">\n    <value>${hostname}</value>\n  </key>\n</localconfig>\n`
  );
}

// ---- simulated certificates (content only matters for who signed what) -----------------------------------------

function pemBlock(label: string, body: Record<string, unknown>): string {
  const b64 = Buffer.from(JSON.stringify(body)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function pemBody(pem: Buffer | string): Record<string, unknown> | null {
  const m = /-----BEGIN [A-Z ]+-----\n([A-Za-z0-9+/=\n]+)-----END/.exec(pem.toString());
  if (m?.[1] === undefined) return null;
  try {
    const v: unknown = JSON.parse(Buffer.from(m[1].replaceAll('\n', ''), 'base64').toString('utf8'));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Fingerprint of a CA certificate (what servers compare to trust each other). */
export function caFingerprint(pem: Buffer | string): string {
  return sha256(pem).slice(0, 32);
}

function makeCa(w: World): { pem: string; key: string } {
  if (w.tls !== undefined) return w.tls.ca();
  const id = w.randomBytes(16).toString('hex');
  return {
    pem: pemBlock('CERTIFICATE', { kind: 'ca', id, cn: 'Consul Agent CA', at: w.now().toISOString() }),
    key: pemBlock('EC PRIVATE KEY', { kind: 'ca-key', id, k: w.randomBytes(16).toString('hex') }),
  };
}

function makeCert(w: World, caPem: Buffer, caKey: Buffer | null, cn: string): { pem: string; key: string } {
  if (w.tls !== undefined) {
    if (caKey === null) throw new SimError('==> CA key file consul-agent-ca-key.pem not found');
    return w.tls.cert(caPem.toString('utf8'), caKey.toString('utf8'), cn);
  }
  const serial = w.randomBytes(8).toString('hex');
  return {
    pem: pemBlock('CERTIFICATE', { kind: 'cert', issuer: caFingerprint(caPem), cn, serial }),
    key: pemBlock('EC PRIVATE KEY', { kind: 'key', serial }),
  };
}

/** Does the certificate chain to the CA? (openssl verify with real X.509, the issuer field with the stand-in) */
export function certChains(w: World, caPem: Buffer, certPem: Buffer): boolean {
  if (w.tls !== undefined) return w.tls.verifies(caPem.toString('utf8'), certPem.toString('utf8'));
  return certIssuer(certPem) === caFingerprint(caPem);
}

function certIssuer(pem: Buffer): string | null {
  const body = pemBody(pem);
  return body !== null && typeof body.issuer === 'string' ? body.issuer : null;
}

/** `consul tls cert create` picks the first free index: `-0` taken → `-1`. */
export function nextCertIndex(fs: NodeFs, prefix: 'dc1-server-consul' | 'dc1-client-consul', dir = SD_HOME): number {
  for (let i = 0; i < 1000; i++) if (!fs.exists(`${dir}/${prefix}-${i}.pem`)) return i;
  throw new SimError('==> too many certificates');
}

/** `consul tls ca create` run in `dir` (service-discover runs it in /var/lib/service-discover): refuses if the CA exists. */
export function tlsCaCreate(w: World, node: string, dir = SD_HOME): void {
  const fs = w.fs(node);
  if (fs.exists(`${dir}/consul-agent-ca.pem`)) throw new SimError('==> CA file consul-agent-ca.pem already exists');
  if (fs.exists(`${dir}/consul-agent-ca-key.pem`)) throw new SimError('==> CA key file consul-agent-ca-key.pem already exists');
  const ca = makeCa(w);
  fs.write(`${dir}/consul-agent-ca.pem`, ca.pem, { owner: 'root', group: 'root', mode: 0o644 });
  fs.write(`${dir}/consul-agent-ca-key.pem`, ca.key, { owner: 'root', group: 'root', mode: 0o600 });
}

/** `consul tls cert create -server|-client` in /var/lib/service-discover; returns the file name written. */
export function tlsCertCreate(
  w: World,
  node: string,
  kind: 'server' | 'client',
  caPem: Buffer | null = null,
  dir = SD_HOME,
  caKey: Buffer | null = null,
): string {
  const fs = w.fs(node);
  const ca = caPem ?? fs.read(`${dir}/consul-agent-ca.pem`);
  const key = caKey ?? fs.read(`${dir}/consul-agent-ca-key.pem`);
  if (ca === null) throw new SimError('==> CA file consul-agent-ca.pem not found');
  const prefix = kind === 'server' ? 'dc1-server-consul' : 'dc1-client-consul';
  const i = nextCertIndex(fs, prefix, dir);
  const cert = makeCert(w, ca, key, kind === 'server' ? 'server.dc1.consul' : 'client.dc1.consul');
  fs.write(`${dir}/${prefix}-${i}.pem`, cert.pem, { owner: 'root', group: 'root', mode: 0o644 });
  fs.write(`${dir}/${prefix}-${i}-key.pem`, cert.key, { owner: 'root', group: 'root', mode: 0o600 });
  return `${prefix}-${i}.pem`;
}

function strict(fs: NodeFs, path: string): void {
  // service-discover's SetStrictPermissions: 0600, owned by the service user.
  fs.chown(path, SD_USER, SD_USER);
  fs.chmod(path, 0o600);
}

// ---- leadership -------------------------------------------------------------------------------------------------

function nodeOrder(w: World): string[] {
  return w.nodes().map((n) => n.name);
}

/** Every node's raft state, created for the servers that run (the objects live in the shared state). */
function raftServers(w: World): Record<string, RaftServer> {
  const out: Record<string, RaftServer> = {};
  for (const n of nodeOrder(w)) {
    const rt = w.state.nodes[n];
    if (rt === undefined) continue;
    if (rt.raft === undefined && rt.agent?.server === true) rt.raft = emptyRaft();
    if (rt.raft !== undefined) out[n] = rt.raft;
  }
  return out;
}

function upServers(w: World): UpServer[] {
  return nodeOrder(w).flatMap((n) => {
    const a = upAgent(w, n);
    return a !== null && a.server ? [{ node: n, group: trustKey(a), gossip: a.gossip, ...(a.startedAt === undefined ? {} : { since: a.startedAt }) }] : [];
  });
}

/** Runs raft among the up servers (see raft.ts): servers reach each other over RPC only when they trust one CA. */
export function settleRaft(w: World): void {
  const up = upServers(w);
  const pref = w.state.preferredLeader;
  const order = pref === null ? nodeOrder(w) : [pref, ...nodeOrder(w).filter((n) => n !== pref)];
  const servers = raftServers(w);
  settle(servers, up, order, w.now().getTime(), w.election ?? INSTANT_ELECTION);
  for (const [n, r] of Object.entries(servers)) runtime(w, n).raftPeers = [...r.config];
}

/** Every server that believes it leads right now (more than one: two clusters run at once). */
export function raftLeaders(w: World): string[] {
  settleRaft(w);
  return nodeOrder(w).filter((n) => upAgent(w, n) !== null && w.state.nodes[n]?.raft?.leader === true);
}

/** The leader among the running servers that trust `trust` (raft decides, see raft.ts). */
function electedLeader(w: World, trust: string): string | null {
  settleRaft(w);
  return (
    nodeOrder(w).find((n) => {
      const a = upAgent(w, n);
      return a !== null && a.server && trustKey(a) === trust && w.state.nodes[n]?.raft?.leader === true;
    }) ?? null
  );
}

/** The leader as the node's own agent sees it (null when its agent is down or there is none). */
export function leaderFor(w: World, viewer: string): string | null {
  const a = upAgent(w, viewer);
  return a === null ? null : electedLeader(w, trustKey(a));
}

/** The leader of the mesh: the group the preferred leader trusts first, then any other. */
export function currentLeader(w: World): string | null {
  const trusts: string[] = [];
  const pref = w.state.preferredLeader;
  const order = pref === null ? nodeOrder(w) : [pref, ...nodeOrder(w).filter((n) => n !== pref)];
  for (const n of order) {
    const a = upAgent(w, n);
    if (a !== null && a.server && !trusts.includes(trustKey(a))) trusts.push(trustKey(a));
  }
  for (const t of trusts) {
    const l = electedLeader(w, t);
    if (l !== null) return l;
  }
  return null;
}

function requireLeader(w: World, viewer: string): string {
  if (upAgent(w, viewer) === null) throw new AgentDownError();
  const leader = leaderFor(w, viewer);
  // No server about to stand (none left, or no quorum): the RPC is held for the whole hold, then refused.
  if (leader === null) throw new NoLeaderError(electionDueFor(w, viewer) ?? Number.POSITIVE_INFINITY);
  return leader;
}

/** When a server of `viewer`'s group may stand for election, if none may yet (election.ts). */
export function electionDueFor(w: World, viewer: string): number | null {
  const a = upAgent(w, viewer);
  if (a === null) return null;
  const group = upServers(w).filter((u) => u.group === trustKey(a));
  return group.length === 0 ? null : nextStandAt(group, w.now().getTime(), w.election ?? INSTANT_ELECTION);
}

/** The world as of `atMs` (the model's instant evaluation of a later moment). */
export function worldAt(w: World, atMs: number): World {
  return Object.assign(Object.create(w) as World, { now: () => new Date(atMs) });
}

/** A write: the mesh-wide index moves; with `leader`, the entry goes into that leader's log and out to its followers. */
function raftWrite(w: World, leader: string | null = null, ref = 'write'): number {
  w.state.raftIndex += 1;
  const r = leader === null ? undefined : w.state.nodes[leader]?.raft;
  if (r !== undefined && r.leader) {
    r.log.push({ term: r.term, ref });
    settleRaft(w);
  }
  return w.state.raftIndex;
}

// ---- the unit ---------------------------------------------------------------------------------------------------

/** `systemctl start service-discover`: the agent reads its config; a broken config fails the unit. */
export function startAgent(w: World, node: string): void {
  const rt = runtime(w, node);
  if (upAgent(w, node) !== null) return;
  const fs = w.fs(node);
  const id = identity(w, node);
  const main = readJson(fs, MAIN_JSON);
  if (main === null) throw new SimError(UNIT_FAILED);
  const tls = ((main.tls as Record<string, unknown> | undefined)?.defaults ?? {}) as Record<string, unknown>;
  const caFile = typeof tls.ca_file === 'string' ? fs.read(tls.ca_file) : null;
  const certFile = typeof tls.cert_file === 'string' ? fs.read(tls.cert_file) : null;
  const keyFile = typeof tls.key_file === 'string' ? fs.exists(tls.key_file) : false;
  if (caFile === null || certFile === null || !keyFile || typeof main.encrypt !== 'string') {
    throw new SimError(UNIT_FAILED);
  }
  // consul builds its whole configuration before it starts anything: a config dir it refuses changes nothing.
  const rpcHoldMs = configRpcHold(fs);
  const cfg = readJson(fs, CONFIG_JSON);
  const lanAddresses = id.interfaces.filter((i) => i.name !== 'lo').map((i) => i.address);
  const bindAddr = typeof cfg?.bind_addr === 'string' ? cfg.bind_addr : (lanAddresses[0] ?? '127.0.0.1');
  const trust = certChains(w, caFile, certFile) ? caFingerprint(caFile) : null;
  const server = main.server === true;
  const nodeName = typeof main.node_name === 'string' ? main.node_name : id.short;

  if (server && !fs.exists(RAFT_DB)) {
    // data/raft gone (moved aside or never there): fresh raft state, as a new server has.
    rt.raft = emptyRaft();
    rt.raftPeers = [];
  }
  if (server) {
    fs.mkdir(SD_DATA_DIR, { owner: SD_USER, group: SD_USER, mode: 0o700 });
    fs.mkdir(`${SD_DATA_DIR}/raft`, { owner: SD_USER, group: SD_USER, mode: 0o700 });
    fs.write(RAFT_DB, 'raft', { owner: SD_USER, group: SD_USER, mode: 0o600 });
  }
  // Raft starts every server as a follower (raft.go runFollower): leadership is won again, after the election delay.
  if (server && rt.raft !== undefined) rt.raft.leader = false;
  if (server && !fs.exists(PEERS_INFO)) {
    // Consul writes the sentinel where it is missing and deletes any peers.json beside it, unread ("deleted
    // peers.json file (see peers.info for details)"): the recovery is silently skipped, the old configuration stays.
    fs.write(PEERS_INFO, PEERS_INFO_TEXT, { owner: SD_USER, group: SD_USER, mode: 0o755 });
    fs.remove(PEERS_JSON);
  } else if (server && fs.exists(PEERS_JSON)) {
    rt.raftPeers = peersFromRecoveryFile(w, fs.read(PEERS_JSON) ?? Buffer.alloc(0));
    recoverFromPeers((rt.raft ??= emptyRaft()), rt.raftPeers);
    fs.remove(PEERS_JSON);
  }
  fs.mkdir(SD_DATA_DIR, { owner: SD_USER, group: SD_USER, mode: 0o700 });
  if (!fs.exists(NODE_ID)) fs.write(NODE_ID, uuid(w), { owner: SD_USER, group: SD_USER, mode: 0o600 });
  const keys = keyringAtStart(fs, main.encrypt, server).map((k) => sha256(k).slice(0, 16));
  rt.agent = {
    nodeName,
    server,
    bindAddr,
    trust,
    gossip: keys[0] ?? '',
    gossipKeys: keys,
    agentTokenAccessor: null,
    startedAt: w.now().getTime(),
    ...(rpcHoldMs === null ? {} : { rpcHoldMs }),
  };
  w.startProcess?.(node);

  w.state.members[nodeName] = {
    node,
    nodeName,
    address: `${bindAddr}:8301`,
    type: server ? 'server' : 'client',
    left: false,
  };
  // Other entries for this node under an older name disappear from the catalog once it rejoins.
  for (const [name, m] of Object.entries(w.state.members)) if (m.node === node && name !== nodeName) delete w.state.members[name];

  if (server) joinRaft(w, node);
  // Catalog registration is a raft write whenever there is a leader to take it.
  const leader = leaderFor(w, node);
  if (leader !== null) raftWrite(w, leader, `catalog:${nodeName}`);
}

/**
 * `performance.rpc_hold_timeout` as consul builds it from its -config-dir at start (agent/config/builder.go): every
 * *.json file in lexical order, the last that sets it wins; a Go duration string. A file the service user cannot
 * read, that is no JSON object, or a value that is no duration fails the start, as consul refuses such a config.
 * (*.hcl files are read by consul too; the model parses none, so a value set only in HCL is not seen.)
 */
function configRpcHold(fs: NodeFs): number | null {
  let hold: number | null = null;
  for (const name of fs.list(SD_CONFIG_DIR).filter((f) => f.endsWith('.json')).sort()) {
    const path = `${SD_CONFIG_DIR}/${name}`;
    const st = fs.stat(path);
    if (st === null || !readableBy(st, SD_USER)) throw new SimError(UNIT_FAILED);
    const cfg = readJson(fs, path);
    if (cfg === null) throw new SimError(UNIT_FAILED);
    const perf = cfg.performance;
    if (perf === undefined) continue;
    if (typeof perf !== 'object' || perf === null || Array.isArray(perf)) throw new SimError(UNIT_FAILED);
    const v = (perf as Record<string, unknown>).rpc_hold_timeout;
    if (v === undefined) continue;
    const ms = typeof v === 'string' ? parseGoDuration(v) : null;
    if (ms === null) throw new SimError(UNIT_FAILED);
    hold = ms;
  }
  return hold;
}

/** Can `user` (whose primary group is named as the user) read a file with this owner, group and mode? */
function readableBy(st: FileStat, user: string): boolean {
  if (st.owner === user) return (st.mode & 0o400) !== 0;
  if (st.group === user) return (st.mode & 0o040) !== 0;
  return (st.mode & 0o004) !== 0;
}

/** How long `node`'s agent holds an RPC that finds no leader: its config dir's value at its start, else the default. */
export function rpcHoldFor(w: World, node: string): number {
  return upAgent(w, node)?.rpcHoldMs ?? (w.election ?? INSTANT_ELECTION).holdMs;
}

function joinRaft(w: World, node: string): void {
  const a = upAgent(w, node);
  if (a === null) return;
  // Fresh data and nobody to join in its trust group: a one-server raft (first instance).
  if (electedLeader(w, trustKey(a)) === null) {
    bootstrapAlone((runtime(w, node).raft ??= emptyRaft()), node);
    settleRaft(w);
  }
}

// The sentinel's text is Consul's help on peers.json; only its existence matters (os.Stat). Abridged here.
const PEERS_INFO_TEXT = 'As of Consul 0.7.0, the peers.json file is only used for recovery after an outage.\n';

function peersFromRecoveryFile(w: World, raw: Buffer): string[] {
  let entries: unknown;
  try {
    entries = JSON.parse(raw.toString('utf8'));
  } catch {
    return [];
  }
  if (!Array.isArray(entries)) return [];
  const peers: string[] = [];
  for (const e of entries) {
    const address = typeof e === 'object' && e !== null ? (e as Record<string, unknown>).address : undefined;
    const id = typeof e === 'object' && e !== null ? (e as Record<string, unknown>).id : undefined;
    if (typeof address !== 'string') continue;
    const ip = address.replace(/:\d+$/, '');
    const owner = w.nodes().find((n) => n.interfaces.some((i) => i.address === ip));
    // Raft protocol 3 identifies peers by node id: an entry whose id is not the node's own is ignored.
    const ownId = owner === undefined ? null : w.fs(owner.name).read(NODE_ID)?.toString('utf8').trim();
    if (ownId && id !== ownId) continue;
    if (owner !== undefined && !peers.includes(owner.name)) peers.push(owner.name);
  }
  return peers;
}

/** `systemctl stop service-discover`. */
export function stopAgent(w: World, node: string): void {
  const rt = runtime(w, node);
  const a = rt.agent;
  rt.agent = null;
  w.stopProcess?.(node);
  if (a === null) return;
  const m = w.state.members[a.nodeName];
  if (m !== undefined) m.left = !a.server;
}

export function serviceActive(w: World, node: string): boolean {
  return upAgent(w, node) !== null;
}

// ---- ACL --------------------------------------------------------------------------------------------------------

/** What consul (running as service-discover) reads from the reset file: 0 when absent, unreadable or garbage. */
function resetFileIndex(fs: NodeFs): number {
  const st = fs.stat(RESET_FILE);
  if (st === null) return 0;
  const readable =
    st.owner === SD_USER ? (st.mode & 0o400) !== 0 : st.group === SD_USER ? (st.mode & 0o040) !== 0 : (st.mode & 0o004) !== 0;
  if (!readable) return 0;
  const text = (fs.read(RESET_FILE) ?? Buffer.alloc(0)).toString('utf8').trim();
  return /^\d+$/.test(text) ? Number(text) : 0;
}

export interface BootstrapJson {
  AccessorID: string;
  SecretID: string;
  Description: string;
  Policies: Array<{ ID: string; Name: string }>;
  Local: boolean;
  CreateTime: string;
  Hash: string;
  CreateIndex: number;
  ModifyIndex: number;
}

function policyRefs(w: World, names: string[]): Array<{ ID: string; Name: string }> {
  return names.map((name) => ({ ID: w.state.policies.find((p) => p.name === name)?.id ?? '', Name: name }));
}

export function tokenJson(w: World, t: TokenRecord): BootstrapJson {
  return {
    AccessorID: t.accessorId,
    SecretID: t.secretId,
    Description: t.description,
    Policies: policyRefs(w, t.policies),
    Local: t.local,
    CreateTime: t.createTime,
    Hash: t.hash,
    CreateIndex: t.createIndex,
    ModifyIndex: t.modifyIndex,
  };
}

function newToken(w: World, leader: string, description: string, policies: string[]): TokenRecord {
  const accessorId = uuid(w);
  const index = raftWrite(w, leader, `token:${accessorId}`);
  const t: TokenRecord = {
    accessorId,
    secretId: uuid(w),
    description,
    policies,
    local: false,
    createIndex: index,
    modifyIndex: index,
    createTime: w.now().toISOString(),
    hash: w.randomBytes(32).toString('base64'),
  };
  w.state.tokens.push(t);
  return t;
}

/**
 * PUT /v1/acl/bootstrap as answered through `viewer`'s agent. The RPC is forwarded to the raft leader, so the reset
 * file is read there, at request time, and only once bootstrap is no longer allowed.
 */
export function aclBootstrap(w: World, viewer: string): BootstrapJson {
  const leader = requireLeader(w, viewer);
  const acl = w.state.acl;
  if (acl.bootstrapped) {
    const leaderFs = w.fs(leader);
    const specified = resetFileIndex(leaderFs);
    if (specified === 0) {
      throw new ApiError(403, `Permission denied: ACL bootstrap no longer allowed (reset index: ${acl.resetIndex})`);
    }
    if (specified !== acl.resetIndex) {
      throw new ApiError(500, `Invalid bootstrap reset index (specified ${specified}, reset index: ${acl.resetIndex})`);
    }
    // Consul removes the file before creating the token, whatever happens next.
    leaderFs.remove(RESET_FILE);
  }
  const t = newToken(w, leader, BOOTSTRAP_DESCRIPTION, ['global-management']);
  acl.bootstrapped = true;
  acl.resetIndex = t.createIndex;
  return tokenJson(w, t);
}

/** `consul acl bootstrap` error line, as the CLI prints it. */
export function bootstrapFailureText(err: unknown): string {
  if (err instanceof ApiError) return `Failed ACL bootstrapping: Unexpected response code: ${err.status} (${err.message})`;
  if (err instanceof AgentDownError) return `Failed ACL bootstrapping: Put "http://127.0.0.1:8500/v1/acl/bootstrap": ${err.message}`;
  return `Failed ACL bootstrapping: ${err instanceof Error ? err.message : String(err)}`;
}

/** Parse the reset index out of the 403 text (what an operator reads off the terminal). */
export function parseResetIndex(text: string): number | null {
  const m = /ACL bootstrap no longer allowed \(reset index: (\d+)\)/.exec(text);
  return m?.[1] === undefined ? null : Number(m[1]);
}

type Caller = TokenRecord | 'anonymous';

/** The tokens the leader's state holds: those whose creation is in its raft log (a truncated entry is lost). */
function liveTokens(w: World, leader: string): TokenRecord[] {
  const r = w.state.nodes[leader]?.raft;
  return r === undefined ? w.state.tokens : w.state.tokens.filter((t) => hasRef(r, `token:${t.accessorId}`));
}

function resolveToken(w: World, viewer: string, secretId: string | undefined): Caller {
  const leader = requireLeader(w, viewer);
  if (secretId === undefined || secretId === '' || secretId === 'anonymous') return 'anonymous';
  const t = liveTokens(w, leader).find((x) => x.secretId === secretId);
  if (t === undefined) throw new ApiError(403, 'ACL not found');
  return t;
}

function isManagement(c: Caller): boolean {
  return c !== 'anonymous' && c.policies.includes('global-management');
}

function canReadNodes(c: Caller): boolean {
  // global-management, or the server-/agent- policies service-discover creates (node_prefix "" read).
  return c !== 'anonymous' && c.policies.length > 0;
}

function requireManagement(c: Caller, permission: string): TokenRecord {
  if (c === 'anonymous' || !isManagement(c)) {
    const who = c === 'anonymous' ? ANONYMOUS_TOKEN_ID : c.accessorId;
    throw new ApiError(403, `Permission denied: token with AccessorID '${who}' lacks permission '${permission}'`);
  }
  return c;
}

export interface MemberJson {
  Name: string;
  Addr: string;
  Port: number;
  Status: 1 | 2 | 3 | 4;
  Tags: { role: 'consul' | 'node'; build: string; vsn: string; dc: string; segment: string };
}

export const MEMBER_STATUS = { 1: 'alive', 2: 'leaving', 3: 'left', 4: 'failed' } as const;

/** GET /v1/agent/members through `viewer`'s agent: only what the token may read (default deny). */
export function agentMembers(w: World, viewer: string, secretId?: string): MemberJson[] {
  if (upAgent(w, viewer) === null) throw new AgentDownError();
  const caller = resolveToken(w, viewer, secretId);
  if (!canReadNodes(caller)) return [];
  return memberView(w, viewer);
}

/** Every member as `viewer`'s agent sees it, ignoring ACLs: alive when running, same CA and same gossip key. */
export function memberView(w: World, viewer: string): MemberJson[] {
  const me = upAgent(w, viewer);
  if (me === null) throw new AgentDownError();
  const build = identity(w, viewer).consulVersion ?? '1.9.3';
  return Object.values(w.state.members)
    .sort((a, b) => a.nodeName.localeCompare(b.nodeName))
    .map((m) => {
      const a = upAgent(w, m.node);
      // Serf alone decides: a member is alive when it gossips with this agent, whatever its TLS or RPC.
      const alive = a !== null && a.nodeName === m.nodeName && canGossip(a.gossipKeys ?? [a.gossip], me.gossipKeys ?? [me.gossip]);
      const [ip = '', port = '8301'] = m.address.split(':');
      return {
        Name: m.nodeName,
        Addr: ip,
        Port: Number(port),
        Status: alive ? 1 : m.left ? 3 : 4,
        Tags: { role: m.type === 'server' ? 'consul' : 'node', build: `${build}:${build}`, vsn: '2', dc: 'dc1', segment: '' },
      };
    });
}

/**
 * GET /v1/catalog/nodes through `viewer`'s agent: an RPC to the servers, so it needs a leader that the agent reaches
 * over TLS (same CA) and a token that leader's state knows.
 */
export function catalogNodes(w: World, viewer: string, secretId?: string): string[] {
  if (upAgent(w, viewer) === null) throw new AgentDownError();
  const caller = resolveToken(w, viewer, secretId);
  if (!canReadNodes(caller)) return [];
  return Object.values(w.state.members)
    .map((m) => m.nodeName)
    .sort();
}

/**
 * GET /v1/operator/keyring (keyring:read, a management token here): the LAN pool's keys with how many of the
 * members this agent gossips with hold each (Consul agent/keyring.go ListKeys answers per pool; the WAN pool is
 * left out). The keys are read from each member's keyring file.
 */
export function keyringList(w: World, viewer: string, secretId?: string): Array<{ WAN: boolean; Keys: Record<string, number>; NumNodes: number }> {
  const me = upAgent(w, viewer);
  if (me === null) throw new AgentDownError();
  requireManagement(resolveToken(w, viewer, secretId), 'keyring:read');
  const keys: Record<string, number> = {};
  let numNodes = 0;
  for (const n of nodeOrder(w)) {
    const a = upAgent(w, n);
    if (a === null || !canGossip(a.gossipKeys ?? [a.gossip], me.gossipKeys ?? [me.gossip])) continue;
    numNodes += 1;
    for (const k of readKeyring(w.fs(n)) ?? []) keys[k] = (keys[k] ?? 0) + 1;
  }
  return [{ WAN: false, Keys: keys, NumNodes: numNodes }];
}

/** GET /v1/status/leader: `"IP:8300"` or `""`; needs no token. */
export function statusLeader(w: World, viewer: string): string {
  if (upAgent(w, viewer) === null) throw new AgentDownError();
  const l = leaderFor(w, viewer);
  const a = l === null ? null : upAgent(w, l);
  return a === null ? '' : `${a.bindAddr}:8300`;
}

/** GET /v1/status/peers. */
export function statusPeers(w: World, viewer: string): string[] {
  const leader = requireLeader(w, viewer);
  return (w.state.nodes[leader]?.raftPeers ?? []).map((p) => {
    const a = w.state.nodes[p]?.agent;
    const ip = a?.bindAddr ?? identity(w, p).interfaces.find((i) => i.name !== 'lo')?.address ?? '';
    return `${ip}:8300`;
  });
}

export interface RaftPeerJson {
  Node: string;
  ID: string;
  Address: string;
  Leader: boolean;
  Voter: boolean;
}

/** GET /v1/operator/raft/configuration (operator:read). */
export function raftConfiguration(w: World, viewer: string, secretId?: string): RaftPeerJson[] {
  const leader = requireLeader(w, viewer);
  requireManagement(resolveToken(w, viewer, secretId), 'operator:read');
  const peers = w.state.nodes[leader]?.raftPeers ?? [];
  return peers.map((p) => {
    const a = w.state.nodes[p]?.agent;
    const ip = a?.bindAddr ?? identity(w, p).interfaces.find((i) => i.name !== 'lo')?.address ?? '';
    return { Node: a?.nodeName ?? consulNodeName('server', p), ID: sha256(p).slice(0, 36), Address: `${ip}:8300`, Leader: p === leader, Voter: true };
  });
}

/** A token as /v1/acl/tokens lists it: the bootstrap JSON's fields without the SecretID. */
export type TokenListEntry = Omit<BootstrapJson, 'SecretID'>;

function listEntry(w: World, t: TokenRecord): TokenListEntry {
  const { SecretID: _secret, ...rest } = tokenJson(w, t);
  return rest;
}

/** GET /v1/acl/token/self. */
export function tokenSelf(w: World, viewer: string, secretId?: string): BootstrapJson {
  const c = resolveToken(w, viewer, secretId);
  if (c === 'anonymous') {
    return {
      AccessorID: ANONYMOUS_TOKEN_ID,
      SecretID: 'anonymous',
      Description: 'Anonymous Token',
      Policies: [],
      Local: false,
      CreateTime: new Date(0).toISOString(),
      Hash: '',
      CreateIndex: 1,
      ModifyIndex: 1,
    };
  }
  return tokenJson(w, c);
}

/** GET /v1/acl/tokens (acl:read). */
export function tokenList(w: World, viewer: string, secretId?: string): TokenListEntry[] {
  requireManagement(resolveToken(w, viewer, secretId), 'acl:read');
  return liveTokens(w, requireLeader(w, viewer)).map((t) => listEntry(w, t));
}

/** DELETE /v1/acl/token/<accessor> (acl:write). A reset leaves old tokens valid: this is how they go. */
export function tokenDelete(w: World, viewer: string, secretId: string | undefined, accessorId: string): void {
  const c = requireManagement(resolveToken(w, viewer, secretId), 'acl:write');
  if (accessorId === ANONYMOUS_TOKEN_ID) throw new ApiError(403, 'Permission denied: Delete operation not permitted on the anonymous token');
  if (accessorId === c.accessorId) throw new ApiError(403, "Permission denied: Deletion of the request's authorization token is not permitted");
  const leader = requireLeader(w, viewer);
  const i = w.state.tokens.findIndex((t) => t.accessorId === accessorId);
  if (i < 0 || !liveTokens(w, leader).some((t) => t.accessorId === accessorId)) throw new ApiError(500, 'Cannot find token to delete');
  w.state.tokens.splice(i, 1);
  raftWrite(w, leader, `token-delete:${accessorId}`);
}

/** PUT /v1/acl/policy (acl:write). */
export function policyCreate(w: World, viewer: string, secretId: string | undefined, name: string): PolicyRecord {
  requireManagement(resolveToken(w, viewer, secretId), 'acl:write');
  if (w.state.policies.some((p) => p.name === name)) {
    throw new ApiError(500, `Invalid Policy: A Policy with Name "${name}" already exists`);
  }
  const p: PolicyRecord = { id: uuid(w), name, createIndex: raftWrite(w, requireLeader(w, viewer), `policy:${name}`) };
  w.state.policies.push(p);
  return p;
}

/** PUT /v1/acl/token (acl:write). */
export function tokenCreate(w: World, viewer: string, secretId: string | undefined, policies: string[], description = ''): BootstrapJson {
  requireManagement(resolveToken(w, viewer, secretId), 'acl:write');
  for (const name of policies) {
    if (!w.state.policies.some((p) => p.name === name)) throw new ApiError(500, `Invalid Policy: No such policy with name "${name}"`);
  }
  return tokenJson(w, newToken(w, requireLeader(w, viewer), description, policies));
}

/** PUT /v1/agent/token/default (agent:write). */
export function setAgentToken(w: World, viewer: string, secretId: string | undefined, tokenSecret: string): void {
  const c = resolveToken(w, viewer, secretId);
  requireManagement(c, 'agent:write');
  const t = w.state.tokens.find((x) => x.secretId === tokenSecret);
  const a = upAgent(w, viewer);
  if (a !== null) a.agentTokenAccessor = t?.accessorId ?? null;
}

// ---- service-discover setup -------------------------------------------------------------------------------------

export interface SetupOptions {
  bind?: string | undefined;
  password?: string | undefined;
  firstInstance?: boolean;
  /** Effective uid of the caller. */
  uid: number;
  /** Runs after the pre-checks passed, before anything is written (the lab's failNextSetup knob). */
  afterPrechecks?: () => void;
}

/**
 * `preRun` (cmd/server and cmd/agent, command/setup: setup and setup-wizard alike, after the terminal check): `consul version` runs,
 * the caller is root, main.json is absent.
 */
export function setupPreRun(w: World, node: string, uid: number): void {
  const id = identity(w, node);
  if (id.consulVersion === null) throw new SimError('unable to execute consul binary: exit status 1');
  if (uid !== 0) throw new SimError('this command must be executed as root');
  const refusal = mainJsonRefusal(id.sdVersion, id.profile);
  if (refusal !== null && w.fs(node).exists(MAIN_JSON)) throw new SimError(refusal);
}

/** The pre-checks, in order; throws the first failure. Returns the zimbra hostname. */
export function setupPrechecks(w: World, node: string, o: SetupOptions): string {
  const id = identity(w, node);
  const fs = w.fs(node);
  setupPreRun(w, node, o.uid);
  if ((o.password ?? '') === '' && (o.bind ?? '') === '') throw new SimError('missing arguments');
  const bind = (o.bind ?? '').split('/')[0] ?? '';
  if (!id.interfaces.some((i) => i.name.toLowerCase() !== 'lo' && i.address === bind)) {
    throw new SimError('invalid binding address selected');
  }
  if (!fs.exists(LOCALCONFIG)) {
    throw new SimError(`unable to load localconfig: open ${LOCALCONFIG}: no such file or directory`);
  }
  const host = localconfigHostname(fs);
  if (host === null) throw new SimError(`unable to load localconfig: zimbra_server_hostname not found in ${LOCALCONFIG}`);
  const addrs = resolveHost(fs, host);
  if (addrs.length === 0) throw new SimError(`cannot resolve hostname '${host}'`);
  if (addrs.some(isLoopback)) {
    throw new SimError(`hostname '${host}' is resolving with loopback address, should resolve with LAN address`);
  }
  return host;
}

function mainJson(nodeName: string, server: boolean, gossipKey: string, certBase: string): string {
  const cfg = {
    acl: { enabled: true, default_policy: 'deny', down_policy: 'extend-cache', enable_token_persistence: true },
    ...(server ? { auto_encrypt: { allow_tls: true } } : {}),
    data_dir: SD_DATA_DIR,
    enable_local_script_checks: true,
    encrypt: gossipKey,
    log_level: 'INFO',
    node_name: nodeName,
    server,
    ui_config: { enabled: true },
    ports: { grpc: 8502, grpc_tls: 8503 },
    ...(server ? { connect: { enabled: true, ca_provider: '' } } : {}),
    tls: {
      defaults: {
        ca_file: CA_PEM,
        cert_file: `${SD_HOME}/${certBase}.pem`,
        key_file: `${SD_HOME}/${certBase}-key.pem`,
        verify_incoming: true,
        verify_outgoing: true,
      },
      internal_rpc: { verify_server_hostname: true },
    },
  };
  return JSON.stringify(cfg, null, 2);
}

function writeConfigs(w: World, node: string, main: string, bind: string): void {
  const fs = w.fs(node);
  fs.mkdir(SD_CONFIG_DIR, { owner: 'root', group: 'root', mode: 0o755 });
  fs.write(MAIN_JSON, main, { mode: 0o600 });
  strict(fs, MAIN_JSON);
  fs.write(CONFIG_JSON, JSON.stringify({ bind_addr: bind.split('/')[0] }, null, 2), { mode: 0o600 });
  strict(fs, CONFIG_JSON);
}

function addServiceInLdap(w: World, host: string): void {
  if (w.state.ldap.meshServers.includes(host)) return;
  w.state.ldap.meshServers.push(host);
  // The directory answers in its own stable order, not in the order servers happened to be set up.
  w.state.ldap.meshServers.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

/**
 * `service-discover setup BIND [--password=S] [--first-instance]` on `node` (server or agent per its package).
 * Success prints nothing. Throws SimError with the real message on failure; what was written before stays.
 */
export function setup(w: World, node: string, o: SetupOptions): void {
  const id = identity(w, node);
  if (id.kind === 'agent' && o.firstInstance === true) throw new SimError('service-discover: error: unknown flag --first-instance');
  const host = setupPrechecks(w, node, o);
  o.afterPrechecks?.();
  const bind = (o.bind ?? '').split('/')[0] ?? '';
  const password = o.password ?? '';
  if (o.firstInstance === true) firstInstance(w, node, host, bind, password);
  else join(w, node, host, bind, password);
}

function firstInstance(w: World, node: string, host: string, bind: string, password: string): void {
  const fs = w.fs(node);
  try {
    tlsCaCreate(w, node);
  } catch (e) {
    throw new SimError(`unable to create a valid CA with Consul: ${(e as Error).message}`);
  }
  strict(fs, CA_KEY);
  strict(fs, CA_PEM);
  const gossipKey = w.randomBytes(32).toString('base64');
  const certName = tlsCertCreate(w, node, 'server');
  strict(fs, `${SD_HOME}/${certName}`);
  strict(fs, `${SD_HOME}/${certName.replace(/\.pem$/, '-key.pem')}`);
  // The config always names `-0`: a leftover `-0` from an old CA stays in use (why the wipe removes *.pem).
  writeConfigs(w, node, mainJson(consulNodeName('server', host), true, gossipKey, 'dc1-server-consul-0'), bind);
  addServiceInLdap(w, host);
  startAgentOrFail(w, node);

  const bootstrap = setupBootstrap(w, node);
  agentToken(w, node, host, 'server', bootstrap.SecretID);

  const blob = w.crypto.pack(
    [
      { name: 'gossip-key', data: Buffer.from(gossipKey) },
      { name: 'consul-acl-secret.json', data: Buffer.from(JSON.stringify(bootstrap)) },
      { name: 'var/lib/service-discover/consul-agent-ca.pem', data: fs.read(CA_PEM) ?? Buffer.alloc(0) },
      { name: 'var/lib/service-discover/consul-agent-ca-key.pem', data: fs.read(CA_KEY) ?? Buffer.alloc(0) },
    ],
    password,
  );
  fs.write(CREDENTIALS_FILE, blob, { owner: 'root', group: 'root', mode: 0o600 });
  fs.chmod(CREDENTIALS_FILE, 0o600);
  writePassword(fs, password);
  // Uploading to the directory (carbonioMeshCredentials) came with v0.1.7; the older Zextras release (legacy
  // profile) has the operator copy the file by hand, as its runbook says.
  const id = identity(w, node);
  if (credentialsInLdap(id.sdVersion, id.profile)) w.state.ldap.credentials = blob.toString('base64');
}

/** `consul acl bootstrap` through `viewer`'s agent at `atMs`, as one attempt of a held RPC. */
export function bootstrapAttempt(w: World, viewer: string, atMs: number): Attempt<BootstrapJson> {
  try {
    return { ok: true, value: aclBootstrap(worldAt(w, atMs), viewer) };
  } catch (e) {
    const error = bootstrapFailureText(e);
    return e instanceof NoLeaderError && e.retryAfterMs !== undefined ? { ok: false, error, retryAfterMs: e.retryAfterMs } : { ok: false, error };
  }
}

/** firstsetup.go createACLBootstrapToken, from the unit's start (election.ts setupBootstrapLoop). */
function setupBootstrap(w: World, node: string): BootstrapJson {
  const hold = rpcHoldFor(w, node);
  const { outcome, endedAt } = setupBootstrapLoop(w.now().getTime(), (t) => heldRpc(t, hold, (at) => bootstrapAttempt(w, node, at)));
  w.elapse?.(endedAt);
  if (!outcome.ok) throw new SimError(outcome.error.startsWith('Failed ACL') ? `unable to create ACL bootstrap token: ${outcome.error}` : outcome.error);
  return outcome.value;
}

function writePassword(fs: NodeFs, password: string): void {
  fs.remove(PASSWORD_FILE);
  fs.write(PASSWORD_FILE, password, { owner: 'root', group: 'root', mode: 0o400 });
}

function startAgentOrFail(w: World, node: string): void {
  // systemd StartUnit(unit, "replace") over D-Bus (pkg/systemd/util.go, every tag v0.1.1 … 0.7.2): a no-op on an
  // active unit; nothing restarts it, which is why the runbooks stop the service first.
  try {
    startAgent(w, node);
  } catch (e) {
    throw new SimError(`unable to start service-discover.service: ${(e as Error).message}`);
  }
}

function agentToken(w: World, node: string, host: string, role: MeshKind, rootSecret: string): void {
  const name = consulNodeName(role, host);
  try {
    policyCreate(w, node, rootSecret, name);
  } catch {
    // service-discover ignores the policy command's outcome (it may exist from an earlier setup).
  }
  let token: BootstrapJson;
  try {
    token = tokenCreate(w, node, rootSecret, [name]);
  } catch (e) {
    const what = e instanceof ApiError ? `Unexpected response code: ${e.status} (${e.message})` : (e as Error).message;
    throw new SimError(`unable to create ACL token for policy ${name}: Failed to create new token: ${what}`);
  }
  setAgentToken(w, node, rootSecret, token.SecretID);
}

function join(w: World, node: string, host: string, bind: string, password: string): void {
  const fs = w.fs(node);
  const id = identity(w, node);
  let blob: Buffer | null;
  const viaLdap = credentialsInLdap(id.sdVersion, id.profile);
  if (viaLdap) {
    // Since v0.1.7 the join downloads the credentials first, so the runbook's copy is redundant but harmless.
    const uploaded = w.state.ldap.credentials;
    if (uploaded === null) {
      throw new SimError('unable to download credentials from LDAP: unable to download data from ldap: No such attribute');
    }
    blob = Buffer.from(uploaded, 'base64');
  } else {
    blob = localCredentials(fs);
  }
  const members = unpackCredentials(w, blob, password);
  const caPem = members.get('var/lib/service-discover/consul-agent-ca.pem');
  const gossip = members.get('gossip-key');
  const acl = members.get('consul-acl-secret.json');
  if (caPem === undefined || gossip === undefined || acl === undefined || !members.has('var/lib/service-discover/consul-agent-ca-key.pem')) {
    throw new SimError(`unable to read ${CREDENTIALS_FILE}: missing members`);
  }
  if (viaLdap) fs.write(CREDENTIALS_FILE, blob, { owner: 'root', group: 'root', mode: 0o600 });
  fs.write(CA_PEM, caPem, { mode: 0o600 });
  strict(fs, CA_PEM);
  const role: MeshKind = id.kind;
  // service-discover writes the CA key to a temporary file for `consul tls cert create`, then removes it.
  const certName = tlsCertCreate(w, node, role === 'server' ? 'server' : 'client', caPem, SD_HOME, members.get('var/lib/service-discover/consul-agent-ca-key.pem') ?? null);
  strict(fs, `${SD_HOME}/${certName}`);
  strict(fs, `${SD_HOME}/${certName.replace(/\.pem$/, '-key.pem')}`);
  const certBase = role === 'server' ? 'dc1-server-consul-0' : 'dc1-client-consul-0';
  writeConfigs(w, node, mainJson(consulNodeName(role, host), role === 'server', gossip.toString('utf8'), certBase), bind);
  if (role === 'server') addServiceInLdap(w, host);
  startAgentOrFail(w, node);
  let rootSecret: string;
  try {
    rootSecret = String((JSON.parse(acl.toString('utf8')) as { SecretID?: unknown }).SecretID ?? '');
  } catch {
    throw new SimError('unable to decode ACL Bootstrap token');
  }
  try {
    agentToken(w, node, host, role, rootSecret);
  } catch (e) {
    throw new SimError(`unable to create ACL policy for this ${role}: ${(e as Error).message}`);
  }
  if (role === 'server') writePassword(fs, password);
}

/** The node's cluster-credentials.tar.gpg, with service-discover's message when it is missing. */
function localCredentials(fs: NodeFs): Buffer {
  const blob = fs.read(CREDENTIALS_FILE);
  if (blob === null) {
    throw new SimError(`cannot find Cluster credential in ${CREDENTIALS_FILE}, please copy the file from the existing server or upload it to LDAP`);
  }
  return blob;
}

/** Decrypts the credentials; a wrong password fails as gpg does. */
function unpackCredentials(w: World, blob: Buffer, password: string): Map<string, Buffer> {
  const members = w.crypto.unpack(blob, password);
  if (members === null) throw new SimError(`unable to open ${CREDENTIALS_FILE}: openpgp: incorrect key`);
  return members;
}

/** `service-discover bootstrap-token`: the SecretID from the credentials, decrypted with the password. */
export function bootstrapToken(w: World, node: string, password: string): string {
  const members = unpackCredentials(w, localCredentials(w.fs(node)), password);
  const acl = members.get('consul-acl-secret.json');
  const secret = acl === undefined ? undefined : (JSON.parse(acl.toString('utf8')) as { SecretID?: unknown }).SecretID;
  if (typeof secret !== 'string') throw new SimError('unable to decode ACL Bootstrap token');
  return secret;
}

/** `carbonio prov gas service-discover` / `zmprov gas service-discover`: the mesh servers, one FQDN a line. */
export function meshServers(w: World): string[] {
  return [...w.state.ldap.meshServers];
}

/** `consul version` output. */
export function consulVersionText(w: World, node: string): string {
  const v = identity(w, node).consulVersion;
  if (v === null) throw new SimError('consul: error while loading shared libraries', 127);
  return `Consul v${v}\nRevision 0a1b2c3d\nBuild Date 2024-01-01T00:00:00Z\nProtocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)\n`;
}

/** Shift every raft index by `delta`: a fake cluster made "long ago" gets a realistic reset index. */
export function shiftIndices(state: ClusterState, delta: number): void {
  state.raftIndex += delta;
  if (state.acl.bootstrapped) state.acl.resetIndex += delta;
  for (const t of state.tokens) {
    t.createIndex += delta;
    t.modifyIndex += delta;
  }
  for (const p of state.policies) if (p.id !== GLOBAL_MANAGEMENT_POLICY_ID) p.createIndex += delta;
}
