/**
 * An in-memory Carbonio Mesh behind the NodePort (machines/port.ts), built on the shared model (./model.ts).
 *
 * It starts from the incident scenario: a healthy mesh whose ACL bootstrap was done long ago and whose bootstrap
 * token is lost (it lives only in the credentials file). Tests inject transport faults per node and per port
 * method, and count how often each change was applied (`effects`), to check the machine's at-least-once logic.
 */
import { DEFAULT_VERSION, packageVersion } from './versions.js';
import { createHash } from 'node:crypto';
import type {
  BackupFile,
  BackupManifest,
  Member,
  MeshKind,
  NodeFacts,
  NodePort,
  Profile,
  ResetIndexReading,
  SetupProbe,
  TokenInfo,
  NodeProof,
} from '../../machines/port.js';
import { BACKUP_ROOT, RAFT_DIR, RPC_HOLD_FILE, RPC_HOLD_TEXT, SERF_KEYRINGS, UNHASHED } from '../../machines/port.js';
import { fakeStateMethods } from './fake-cluster-state.js';
import { meshProblems } from './proof.js';
import { catalogServices, healthStateAny, registerService } from './catalog.js';
import { CommandFailedError, NodeUnreachableError, OutcomeUnknownError } from '../../machines/errors.js';
import { Secret } from '../../adapters/secrets/secret.js';
import { FakeCrypto } from './fake-crypto.js';
import { MemFs } from './mem-fs.js';
import {
  AgentDownError,
  ApiError,
  CONFIG_JSON,
  CREDENTIALS_FILE,
  HOSTS_FILE,
  LOCALCONFIG,
  MAIN_JSON,
  MEMBER_STATUS,
  NODE_ID,
  PASSWORD_FILE,
  PEERS_JSON,
  PEERS_INFO,
  RESET_FILE,
  SD_CONFIG_DIR,
  SD_DATA_DIR,
  SD_HOME,
  SD_USER,
  SimError,
  aclBootstrap,
  agentMembers,
  bootstrapFailureText,
  currentLeader,
  defaultRandomBytes,
  emptyClusterState,
  identity,
  localconfigXml,
  parseResetIndex,
  resolveHost,
  serviceActive,
  setup,
  sha256,
  shiftIndices,
  startAgent,
  statusLeader,
  stopAgent,
  tokenDelete,
  tokenList,
  tokenSelf,
  catalogNodes,
  certChains,
  keyringList,
  CA_PEM,
  type ClusterState,
  type MemberJson,
  type NodeIdentity,
  type World,
} from './model.js';

/** Port methods a fault can target. */
export type PortMethod = Exclude<keyof NodePort, 'close'>;

/** Port methods that change a node (what `effects` counts). */
export type EffectMethod =
  | 'backup'
  | 'writeResetFile'
  | 'writeRaftRecovery'
  | 'moveRaftAside'
  | 'stopService'
  | 'startService'
  | 'wipe'
  | 'setupLeader'
  | 'setupFollower'
  | 'writeCredentials'
  | 'deleteToken'
  | 'writeRpcHold'
  | 'removeRpcHold';

const EFFECT_METHODS: ReadonlySet<string> = new Set<EffectMethod>([
  'backup',
  'writeResetFile',
  'writeRaftRecovery',
  'moveRaftAside',
  'stopService',
  'startService',
  'wipe',
  'setupLeader',
  'setupFollower',
  'writeCredentials',
  'deleteToken',
  'writeRpcHold',
  'removeRpcHold',
]);

export interface FakeNodeSpec {
  /** FQDN (also the inventory name). */
  name: string;
  kind: MeshKind;
  profile?: Profile;
  ip?: string;
  /** e.g. "1.19.2"; null: `consul version` fails on this node. */
  consulVersion?: string | null;
  /** Tools inspect() reports missing. */
  missingTools?: string[];
}

export interface FakeClusterOptions {
  /** Explicit nodes; otherwise `servers` mesh servers then `agents` agents named mail1.example.com, mail2… */
  nodes?: FakeNodeSpec[];
  servers?: number;
  agents?: number;
  /** Profile of every node not given one (default current). */
  profile?: Profile;
  /** Preferred leader (default: the first server). */
  leader?: string;
  /** The mesh secret the cluster was set up with (default "old-mesh-secret"). */
  secret?: string;
  /** /var/lib/service-discover/password deleted on the servers. */
  passwordLost?: boolean;
  /** /etc/hosts maps the short hostname to 127.0.1.1, so `hostname -i` answers it (Debian's default). */
  hostnameLoopback?: boolean;
  /** Reset index the long-ago bootstrap left (default 908, as in the runbooks). */
  resetIndex?: number;
  /** The ACL system was never bootstrapped (readResetIndex will bootstrap it). */
  neverBootstrapped?: boolean;
  /** Seed for every random value (token ids, keys, salts): same seed, same cluster. */
  seed?: string;
  clock?: () => Date;
}

export interface FaultOptions {
  /** How many calls the fault hits (default 1; unreachable defaults to every call until cleared). */
  times?: number;
}

export interface FakeFaults {
  /** The next call(s) fail with CommandFailedError; nothing is applied. */
  failNext(node: string, method: PortMethod, message?: string, opts?: FaultOptions & { exitCode?: number }): void;
  /** The next call(s) never settle until release(). */
  hang(node: string, method: PortMethod, opts?: FaultOptions): void;
  /** The next call(s) apply their effect, then reject OutcomeUnknownError (the caller never hears back). */
  crashAfterEffect(node: string, method: PortMethod, opts?: FaultOptions): void;
  /** Calls reject NodeUnreachableError, nothing applied; `method` omitted or '*' = every method. */
  unreachable(node: string, method?: PortMethod | '*', opts?: FaultOptions): void;
  /** Drop the faults of one node, or of all nodes. Hung calls stay hung. */
  clear(node?: string): void;
  /**
   * Settle every hung call: 'complete' runs it now (as a slow command finally finishing); 'unknown' rejects it
   * OutcomeUnknownError without applying anything (a timeout before the command started its work).
   */
  release(outcome?: 'complete' | 'unknown'): number;
  /** Calls hung right now. */
  readonly pending: number;
}

export interface FakeEffects {
  count(node: string, method: EffectMethod): number;
  total(method: EffectMethod): number;
  /** Every applied change in order. */
  readonly log: ReadonlyArray<{ node: string; method: EffectMethod }>;
  reset(): void;
}

export interface FakeNode {
  readonly name: string;
  readonly identity: NodeIdentity;
  readonly fs: MemFs;
  /** Text of a file on the node, null if absent. */
  read(path: string): string | null;
  exists(path: string): boolean;
  /** The unit is active and its process alive. */
  active(): boolean;
  /** The agent process dies (no systemctl): the unit stays "active" in the state, but the node is down. */
  kill(): void;
}

export interface FakeCluster {
  port: NodePort;
  faults: FakeFaults;
  effects: FakeEffects;
  /** The model's world (state + faces), for tests that drive the model directly. */
  world: World;
  readonly state: ClusterState;
  /** The secret the cluster was originally set up with. */
  readonly secret: string;
  /** sha256 of the leader's credentials file as the cluster was created (before any regeneration). */
  readonly genesisCredentialsSha256: string;
  readonly nodes: readonly string[];
  readonly servers: readonly string[];
  readonly agents: readonly string[];
  /** The preferred leader chosen at creation. */
  readonly preferredLeader: string;
  /** Who leads right now (null: no leader). */
  leader(): string | null;
  node(name: string): FakeNode;
  /** Port calls in order, including failed and faulted ones. */
  readonly calls: ReadonlyArray<{ node: string; method: PortMethod }>;
}

/** Where readResetIndex leaves a fresh bootstrap token when the cluster was never bootstrapped. */
export const BOOTSTRAP_SAVE_PATH = '/root/regen-acl-bootstrap.json';

function seededRandom(seed: string): (n: number) => Buffer {
  let counter = 0;
  return (n) => {
    const chunks: Buffer[] = [];
    let len = 0;
    while (len < n) {
      const c = createHash('sha256').update(`${seed}:${counter++}`).digest();
      chunks.push(c);
      len += c.length;
    }
    return Buffer.concat(chunks).subarray(0, n);
  };
}

function defaultNodes(opts: FakeClusterOptions): FakeNodeSpec[] {
  const servers = opts.servers ?? 1;
  const agents = opts.agents ?? 0;
  const specs: FakeNodeSpec[] = [];
  for (let i = 1; i <= servers + agents; i++) {
    specs.push({ name: `mail${i}.example.com`, kind: i <= servers ? 'server' : 'agent' });
  }
  return specs;
}

interface Rule {
  node: string;
  method: PortMethod | '*';
  kind: 'fail' | 'hang' | 'crash' | 'unreachable';
  remaining: number;
  message: string;
  exitCode: number;
}

interface Hung {
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  node: string;
  method: PortMethod;
}

/** Build the incident scenario: a healthy mesh, bootstrapped long ago, bootstrap token lost. */
export function createFakeCluster(opts: FakeClusterOptions = {}): FakeCluster {
  const specs = opts.nodes ?? defaultNodes(opts);
  if (specs.length === 0) throw new Error('a fake cluster needs at least one node');
  const servers = specs.filter((s) => s.kind === 'server').map((s) => s.name);
  if (servers.length === 0) throw new Error('a fake cluster needs at least one mesh server');
  const preferredLeader = opts.leader ?? servers[0] ?? '';
  if (!servers.includes(preferredLeader)) throw new Error(`leader ${preferredLeader} is not a mesh server`);
  const secret = opts.secret ?? 'old-mesh-secret';
  const random = opts.seed === undefined ? undefined : seededRandom(opts.seed);
  const randomBytes = random ?? defaultRandomBytes;
  const clock = opts.clock ?? (() => new Date());

  const identities: NodeIdentity[] = specs.map((s, i) => ({
    name: s.name,
    short: s.name.split('.')[0] ?? s.name,
    kind: s.kind,
    profile: s.profile ?? opts.profile ?? 'current',
    interfaces: [
      { name: 'lo', address: '127.0.0.1' },
      { name: 'eth0', address: s.ip ?? `10.0.0.${11 + i}` },
    ],
    consulVersion: s.consulVersion === undefined ? ((s.profile ?? opts.profile) === 'legacy' ? '1.9.3' : '1.19.2') : s.consulVersion,
  }));
  const lan = (id: NodeIdentity): string => id.interfaces.find((x) => x.name !== 'lo')?.address ?? '';

  const files = new Map<string, MemFs>();
  for (const id of identities) {
    const fs = new MemFs();
    const hosts = ['127.0.0.1\tlocalhost'];
    if (opts.hostnameLoopback === true) hosts.push(`127.0.1.1\t${id.short}`);
    for (const other of identities) {
      // With the Debian default the short name is only on the 127.0.1.1 line, so `hostname -i` answers that.
      const names = other === id && opts.hostnameLoopback === true ? other.name : `${other.name} ${other.short}`;
      hosts.push(`${lan(other)}\t${names}`);
    }
    fs.write(HOSTS_FILE, `${hosts.join('\n')}\n`, { owner: 'root', group: 'root', mode: 0o644 });
    fs.write(LOCALCONFIG, localconfigXml(id.name), { owner: 'zextras', group: 'zextras', mode: 0o640 });
    fs.mkdir(SD_HOME, { owner: SD_USER, group: SD_USER, mode: 0o750 });
    fs.mkdir(SD_CONFIG_DIR, { owner: 'root', group: 'root', mode: 0o755 });
    files.set(id.name, fs);
  }

  const dead = new Set<string>();
  const world: World = {
    state: emptyClusterState(preferredLeader),
    nodes: () => identities,
    fs: (node) => {
      const fs = files.get(node);
      if (fs === undefined) throw new Error(`unknown node ${node}`);
      return fs;
    },
    crypto: new FakeCrypto(randomBytes),
    processRunning: (node) => !dead.has(node),
    startProcess: (node) => {
      dead.delete(node);
    },
    now: clock,
    randomBytes,
  };

  // Genesis, the way the lab does it: first instance on the leader, then every other node joins.
  setup(world, preferredLeader, { bind: lan(identity(world, preferredLeader)), password: secret, firstInstance: true, uid: 0 });
  const order = [...servers.filter((n) => n !== preferredLeader), ...specs.filter((s) => s.kind === 'agent').map((s) => s.name)];
  for (const n of order) {
    if (identity(world, n).profile === 'legacy') {
      // The older release has no directory download: the file was copied by hand at install time.
      const blob = world.fs(preferredLeader).read(CREDENTIALS_FILE);
      if (blob !== null) world.fs(n).write(CREDENTIALS_FILE, blob, { owner: 'root', group: 'root', mode: 0o600 });
    }
    setup(world, n, { bind: lan(identity(world, n)), password: secret, uid: 0 });
  }
  shiftIndices(world.state, (opts.resetIndex ?? 908) - world.state.acl.resetIndex);
  // Years of catalog writes since then: each node's agent registered its Carbonio service.
  world.state.raftIndex += 1234;
  for (const sp of specs) registerService(world, sp.name, `carbonio-${identity(world, sp.name).short}`);
  if (opts.neverBootstrapped === true) {
    world.state.acl = { bootstrapped: false, resetIndex: 0 };
    world.state.tokens = world.state.tokens.filter((t) => !t.policies.includes('global-management'));
  }
  if (opts.passwordLost === true) for (const n of servers) world.fs(n).remove(PASSWORD_FILE);
  const genesisBlob = world.fs(preferredLeader).read(CREDENTIALS_FILE);
  if (genesisBlob === null) throw new Error('genesis left no credentials on the leader');
  const genesisCredentialsSha256 = sha256(genesisBlob);

  // ---- faults and effects ---------------------------------------------------------------------------------------
  let rules: Rule[] = [];
  const hung: Hung[] = [];
  const effectLog: Array<{ node: string; method: EffectMethod }> = [];
  const calls: Array<{ node: string; method: PortMethod }> = [];

  const addRule = (r: Omit<Rule, 'remaining'>, times: number | undefined, dflt: number): void => {
    rules.push({ ...r, remaining: times ?? dflt });
  };

  const faults: FakeFaults = {
    failNext(node, method, message = 'simulated command failure', o = {}) {
      addRule({ node, method, kind: 'fail', message, exitCode: o.exitCode ?? 1 }, o.times, 1);
    },
    hang(node, method, o = {}) {
      addRule({ node, method, kind: 'hang', message: '', exitCode: 0 }, o.times, 1);
    },
    crashAfterEffect(node, method, o = {}) {
      addRule({ node, method, kind: 'crash', message: '', exitCode: 0 }, o.times, 1);
    },
    unreachable(node, method = '*', o = {}) {
      addRule({ node, method, kind: 'unreachable', message: '', exitCode: 0 }, o.times, Number.POSITIVE_INFINITY);
    },
    clear(node) {
      rules = node === undefined ? [] : rules.filter((r) => r.node !== node);
    },
    release(outcome = 'complete') {
      const waiting = hung.splice(0, hung.length);
      for (const h of waiting) {
        if (outcome === 'unknown') h.reject(new OutcomeUnknownError(h.node, `${h.method} on ${h.node}: timed out`));
        else h.run().then(h.resolve, h.reject);
      }
      return waiting.length;
    },
    get pending() {
      return hung.length;
    },
  };

  const effects: FakeEffects = {
    count: (node, method) => effectLog.filter((e) => e.node === node && e.method === method).length,
    total: (method) => effectLog.filter((e) => e.method === method).length,
    get log() {
      return effectLog;
    },
    reset: () => {
      effectLog.length = 0;
    },
  };

  const takeRule = (node: string, method: PortMethod): Rule | null => {
    const precedence: Rule['kind'][] = ['unreachable', 'fail', 'hang', 'crash'];
    for (const kind of precedence) {
      const r = rules.find((x) => x.kind === kind && x.node === node && (x.method === method || x.method === '*') && x.remaining > 0);
      if (r !== undefined) {
        r.remaining -= 1;
        rules = rules.filter((x) => x.remaining > 0);
        return r;
      }
    }
    return null;
  };

  const toPortError = (node: string, e: unknown): unknown => {
    if (e instanceof SimError) return new CommandFailedError(node, e.message, e.exitCode);
    if (e instanceof CommandFailedError || e instanceof NodeUnreachableError || e instanceof OutcomeUnknownError) return e;
    if (e instanceof ApiError || e instanceof AgentDownError) return new CommandFailedError(node, e.message, 1);
    return e;
  };

  /** Runs one port call through the fault rules; `body` is synchronous model work. */
  const call = <T>(node: string, method: PortMethod, body: () => T): Promise<T> => {
    calls.push({ node, method });
    if (!files.has(node)) {
      return Promise.reject(new NodeUnreachableError(node, `ssh: Could not resolve hostname ${node}: Name or service not known`));
    }
    const rule = takeRule(node, method);
    const apply = async (): Promise<T> => {
      await Promise.resolve();
      let out: T;
      try {
        out = body();
      } catch (e) {
        throw toPortError(node, e);
      }
      if (EFFECT_METHODS.has(method)) effectLog.push({ node, method: method as EffectMethod });
      return out;
    };
    if (rule === null) return apply();
    switch (rule.kind) {
      case 'unreachable':
        return Promise.reject(new NodeUnreachableError(node, `ssh: connect to host ${node} port 22: Connection timed out`));
      case 'fail':
        return Promise.reject(new CommandFailedError(node, rule.message, rule.exitCode));
      case 'crash':
        return apply().then(
          () => {
            throw new OutcomeUnknownError(node, `${method} on ${node}: connection lost while the command ran`);
          },
          (e: unknown) => {
            // The command itself failed; the caller still never hears it.
            throw new OutcomeUnknownError(node, `${method} on ${node}: connection lost (${(e as Error).message})`);
          },
        );
      case 'hang':
        return new Promise<T>((resolve, reject) => {
          hung.push({ run: apply, resolve: resolve as (v: unknown) => void, reject, node, method });
        });
    }
  };

  // ---- the port -------------------------------------------------------------------------------------------------
  const fsOf = (node: string): MemFs => files.get(node) as MemFs;
  const credentialsSha = (node: string): string | null => {
    const b = fsOf(node).read(CREDENTIALS_FILE);
    return b === null ? null : sha256(b);
  };
  const bindOf = (node: string): string | null => {
    const raw = fsOf(node).read(CONFIG_JSON);
    if (raw === null) return null;
    try {
      const v = (JSON.parse(raw.toString('utf8')) as { bind_addr?: unknown }).bind_addr;
      return typeof v === 'string' ? v : null;
    } catch {
      return null;
    }
  };
  /** What `gpg -d … | tar xOf - consul-acl-secret.json | jq -r .SecretID` gives on the node. */
  const tokenFromCredentials = (node: string, s: Secret): string => {
    const blob = fsOf(node).read(CREDENTIALS_FILE);
    if (blob === null) throw new SimError(`gpg: can't open '${CREDENTIALS_FILE}': No such file or directory`, 2);
    const members = world.crypto.unpack(blob, s.reveal());
    if (members === null) throw new SimError('gpg: decryption failed: Bad session key', 2);
    const acl = members.get('consul-acl-secret.json');
    const id = acl === undefined ? undefined : (JSON.parse(acl.toString('utf8')) as { SecretID?: unknown }).SecretID;
    if (typeof id !== 'string') throw new SimError('tar: consul-acl-secret.json: Not found in archive', 2);
    return id;
  };
  const consulError = (prefix: string, url: string, e: unknown): SimError => {
    if (e instanceof ApiError) return new SimError(`${prefix}: Unexpected response code: ${e.status} (${e.message})`);
    if (e instanceof AgentDownError) return new SimError(`${prefix}: Get "${url}": ${e.message}`);
    return e instanceof Error ? new SimError(e.message) : new SimError(String(e));
  };
  const pemFiles = (node: string): string[] =>
    fsOf(node)
      .list(SD_HOME)
      .filter((f) => f.endsWith('.pem'))
      .map((f) => `${SD_HOME}/${f}`);
  const wipeTargets = (node: string, profile: Profile): string[] => {
    const fs = fsOf(node);
    const listed = profile === 'current' ? [CONFIG_JSON, MAIN_JSON].filter((p) => fs.exists(p)) : [];
    return [...listed, ...pemFiles(node), ...SERF_KEYRINGS.filter((p) => fs.exists(p))];
  };
  const backupDir = (runId: string): string => `${BACKUP_ROOT}/${runId}`;
  const readManifest = (node: string, runId: string): BackupManifest | null => {
    const fs = fsOf(node);
    const raw = fs.read(`${backupDir(runId)}/manifest.json`);
    if (raw === null) return null;
    let m: BackupManifest;
    try {
      m = JSON.parse(raw.toString('utf8')) as BackupManifest;
    } catch {
      return null;
    }
    for (const f of m.files) {
      const copy = fs.read(`${m.dir}${f.path}`);
      if (copy === null || (f.sha256 === UNHASHED ? copy.length !== f.size : sha256(copy) !== f.sha256)) return null;
    }
    return m;
  };
  const toMember = (m: MemberJson): Member => ({
    name: m.Name,
    address: `${m.Addr}:${m.Port}`,
    status: MEMBER_STATUS[m.Status] ?? 'unknown',
    type: m.Tags.role === 'consul' ? 'server' : 'client',
  });

  const port: NodePort = {
    inspect: (node) =>
      call(node, 'inspect', (): NodeFacts => {
        const id = identity(world, node);
        const fs = fsOf(node);
        const spec = specs.find((s) => s.name === node);
        const short = resolveHost(fs, id.short);
        return {
          node,
          hostname: id.short,
          fqdn: id.name,
          profile: id.profile,
          privileged: true,
          addresses: id.interfaces.filter((i) => i.name !== 'lo').map((i) => i.address),
          hostnameAddresses: short.length > 0 ? short : resolveHost(fs, id.name),
          missingTools: [...(spec?.missingTools ?? [])],
          serviceActive: serviceActive(world, node),
          hasMainJson: fs.exists(MAIN_JSON),
          hasConfigJson: fs.exists(CONFIG_JSON),
          credentialsSha256: credentialsSha(node),
          configuredBindAddress: bindOf(node),
          consulVersion: id.consulVersion === null ? null : `Consul v${id.consulVersion}`,
          serviceDiscoverPackage: packageVersion(id.sdVersion ?? DEFAULT_VERSION[id.profile]),
        };
      }),

    meshServers: (node, profile) =>
      call(node, 'meshServers', () => {
        const id = identity(world, node);
        if (profile === 'current' && id.profile === 'legacy') throw new SimError('-bash: line 1: carbonio: command not found', 127);
        return [...world.state.ldap.meshServers];
      }),

    leaderAddress: (node) =>
      call(node, 'leaderAddress', () => {
        if (!serviceActive(world, node)) {
          throw new SimError('wget: unable to connect to 127.0.0.1:8500: Connection refused', 4);
        }
        const leader = statusLeader(world, node);
        return leader === '' ? null : leader.replace(/:\d+$/, '');
      }),

    members: (node, s) =>
      call(node, 'members', () => {
        const token = tokenFromCredentials(node, s);
        try {
          return agentMembers(world, node, token).map(toMember);
        } catch (e) {
          throw consulError('Error retrieving members', 'http://127.0.0.1:8500/v1/agent/members?segment=_all', e);
        }
      }),

    readMeshSecret: (node) =>
      call(node, 'readMeshSecret', () => {
        const raw = fsOf(node).read(PASSWORD_FILE);
        return raw === null || raw.length === 0 ? null : new Secret(raw.toString('utf8'), 'mesh secret');
      }),

    secretOpensCredentials: (node, s) =>
      call(node, 'secretOpensCredentials', () => {
        const blob = fsOf(node).read(CREDENTIALS_FILE);
        return blob !== null && world.crypto.unpack(blob, s.reveal()) !== null;
      }),

    readCredentials: (node) =>
      call(node, 'readCredentials', () => {
        const b = fsOf(node).read(CREDENTIALS_FILE);
        return b === null ? null : { bytes: b, sha256: sha256(b) };
      }),

    proveNode: (node, s) =>
      call(node, 'proveNode', (): NodeProof => {
        const fs = fsOf(node);
        const members = world.crypto.unpack(fs.read(CREDENTIALS_FILE) ?? Buffer.alloc(0), s.reveal());
        if (members === null) throw new SimError('regen:bad-secret', 3);
        const token = tokenFromCredentials(node, s);
        let rpcError: string | null = null;
        try {
          catalogNodes(world, node, token);
        } catch (e) {
          rpcError = consulError('Error listing nodes', 'http://127.0.0.1:8500/v1/catalog/nodes', e).message;
        }
        const ca = fs.read(CA_PEM);
        const cert = fs.read(`${SD_HOME}/dc1-server-consul-0.pem`) ?? fs.read(`${SD_HOME}/dc1-client-consul-0.pem`);
        const key = members.get('gossip-key')?.toString('utf8');
        let keys: string[] = [];
        try {
          keys = Object.keys(keyringList(world, node, token)[0]?.Keys ?? {});
        } catch {
          keys = [];
        }
        return {
          rpcError,
          caSha256: ca === null ? null : sha256(ca),
          certVerifies: ca !== null && cert !== null && certChains(world, ca, cert),
          keyringExact: key !== undefined && keys.length === 1 && keys[0] === key,
        };
      }),

    readCatalog: (node, s) =>
      call(node, 'readCatalog', () => {
        const token = s === null ? undefined : tokenFromCredentials(node, s);
        try {
          const services = Object.keys(catalogServices(world, node, token)).sort();
          const checks = healthStateAny(world, node, token).map((c) => ({ node: c.Node, checkId: c.CheckID, status: c.Status }));
          return { services, checks };
        } catch (e) {
          throw consulError('curl: (22) The requested URL returned error', 'http://127.0.0.1:8500/v1/catalog/services', e);
        }
      }),

    selfAccessor: (node, s) =>
      call(node, 'selfAccessor', () => {
        try {
          return tokenSelf(world, node, tokenFromCredentials(node, s)).AccessorID;
        } catch (e) {
          throw consulError('Error reading token', 'http://127.0.0.1:8500/v1/acl/token/self', e);
        }
      }),

    listTokens: (node, s) =>
      call(node, 'listTokens', (): TokenInfo[] => {
        const token = tokenFromCredentials(node, s);
        try {
          return tokenList(world, node, token).map((t) => ({
            accessorId: t.AccessorID,
            description: t.Description,
            policies: t.Policies.map((p) => p.Name),
            createIndex: t.CreateIndex,
            createTime: t.CreateTime,
          }));
        } catch (e) {
          throw consulError('Failed to retrieve the token list', 'http://127.0.0.1:8500/v1/acl/tokens', e);
        }
      }),

    readResetIndex: (node) =>
      call(node, 'readResetIndex', (): ResetIndexReading => {
        try {
          const json = aclBootstrap(world, node);
          fsOf(node).write(BOOTSTRAP_SAVE_PATH, JSON.stringify(json, null, 2), { owner: 'root', group: 'root', mode: 0o600 });
          return { kind: 'bootstrapped', savedTo: BOOTSTRAP_SAVE_PATH };
        } catch (e) {
          const text = bootstrapFailureText(e);
          const index = e instanceof ApiError && e.status === 403 ? parseResetIndex(text) : null;
          if (index !== null) return { kind: 'index', index };
          throw new SimError(text);
        }
      }),

    backup: (node, runId) =>
      call(node, 'backup', (): BackupManifest => {
        const existing = readManifest(node, runId);
        if (existing !== null) return existing;
        const fs = fsOf(node);
        const dir = backupDir(runId);
        const sources = [CONFIG_JSON, MAIN_JSON, ...pemFiles(node), CREDENTIALS_FILE, PASSWORD_FILE, ...SERF_KEYRINGS].filter((p) => fs.exists(p));
        const out: BackupFile[] = [];
        for (const path of sources) {
          const data = fs.read(path) ?? Buffer.alloc(0);
          const st = fs.stat(path);
          if (st === null) continue;
          fs.write(`${dir}${path}`, data, { owner: st.owner, group: st.group, mode: st.mode });
          out.push({
            path,
            // As the node's backup script: the password file is compared, never hashed.
            sha256: path === PASSWORD_FILE ? UNHASHED : sha256(data),
            size: data.length,
            mode: `0${st.mode.toString(8).padStart(3, '0')}`,
            owner: st.owner,
            group: st.group,
          });
        }
        const manifest: BackupManifest = { dir, files: out };
        fs.write(`${dir}/manifest.json`, JSON.stringify(manifest, null, 2), { owner: 'root', group: 'root', mode: 0o600 });
        return manifest;
      }),

    probeBackup: (node, runId) => call(node, 'probeBackup', () => readManifest(node, runId)),

    writeResetFile: (node, index) =>
      call(node, 'writeResetFile', () => {
        const fs = fsOf(node);
        if (!fs.exists(SD_DATA_DIR)) throw new SimError(`bash: line 1: ${RESET_FILE}: No such file or directory`);
        // `echo N > file` as service-discover with umask 022.
        fs.write(RESET_FILE, `${index}\n`, { owner: SD_USER, group: SD_USER, mode: 0o644 });
      }),

    probeResetFile: (node) =>
      call(node, 'probeResetFile', () => {
        const raw = fsOf(node).read(RESET_FILE);
        if (raw === null) return null;
        const t = raw.toString('utf8').trim();
        return /^\d+$/.test(t) ? Number(t) : null;
      }),

    writeRaftRecovery: (node, bindAddress) =>
      call(node, 'writeRaftRecovery', () => {
        const fs = fsOf(node);
        const id = fs.read(NODE_ID);
        if (id === null) throw new SimError(`${NODE_ID}: No such file or directory`);
        const body = `[{"id":"${id.toString('utf8').trim()}","address":"${bindAddress}:8300","non_voter":false}]\n`;
        fs.write(PEERS_JSON, body, { owner: SD_USER, group: SD_USER, mode: 0o644 });
      }),

    probeRaftRecovery: (node) =>
      call(node, 'probeRaftRecovery', () => {
        const raw = fsOf(node).read(PEERS_JSON);
        if (raw === null) return null;
        return (JSON.parse(raw.toString('utf8')) as Array<{ address: string }>).map((e) => e.address);
      }),

    probePeersInfo: (node) => call(node, 'probePeersInfo', () => fsOf(node).exists(PEERS_INFO)),

    moveRaftAside: (node, runId) =>
      call(node, 'moveRaftAside', () => {
        if (serviceActive(world, node)) throw new SimError('regen:running');
        const fs = fsOf(node);
        for (const f of fs.list(RAFT_DIR)) {
          const data = fs.read(`${RAFT_DIR}/${f}`) ?? Buffer.alloc(0);
          fs.write(`${backupDir(runId)}${RAFT_DIR}/${f}`, data, { owner: SD_USER, group: SD_USER, mode: 0o600 });
          fs.remove(`${RAFT_DIR}/${f}`);
        }
      }),
    probeRaftAside: (node, runId) =>
      call(node, 'probeRaftAside', () => {
        const fs = fsOf(node);
        if (fs.list(RAFT_DIR).length > 0) return 'present' as const;
        return fs.list(`${backupDir(runId)}${RAFT_DIR}`).length > 0 ? ('aside' as const) : ('none' as const);
      }),

    // The drop-in as adapters/carbonio/rpc-hold.ts writes it; the model reads it when the unit starts (startAgent).
    writeRpcHold: (node) =>
      call(node, 'writeRpcHold', () => {
        const fs = fsOf(node);
        if (!fs.exists(SD_CONFIG_DIR)) throw new SimError(`regen:no-config-dir`);
        fs.write(RPC_HOLD_FILE, RPC_HOLD_TEXT, { owner: SD_USER, group: SD_USER, mode: 0o600 });
      }),
    probeRpcHold: (node) => call(node, 'probeRpcHold', () => fsOf(node).read(RPC_HOLD_FILE)?.toString('utf8') ?? null),
    removeRpcHold: (node) =>
      call(node, 'removeRpcHold', () => {
        fsOf(node).remove(RPC_HOLD_FILE);
      }),

    stopService: (node) => call(node, 'stopService', () => stopAgent(world, node)),
    startService: (node) => call(node, 'startService', () => startAgent(world, node)),
    serviceActive: (node) => call(node, 'serviceActive', () => serviceActive(world, node)),

    wipe: (node, profile) =>
      call(node, 'wipe', () => {
        for (const p of wipeTargets(node, profile)) fsOf(node).remove(p);
      }),
    probeWipe: (node, profile) => call(node, 'probeWipe', () => wipeTargets(node, profile).length === 0),

    setupLeader: (node, bind, s) =>
      call(node, 'setupLeader', () => setup(world, node, { bind, password: s.reveal(), firstInstance: true, uid: 0 })),

    setupFollower: (node, bind, s, kind) =>
      call(node, 'setupFollower', () => {
        // Agents get `--wizard` (password on stdin); the server package has no such flag.
        if (kind === 'agent' && identity(world, node).kind === 'server') {
          throw new SimError('service-discover: error: unknown flag --wizard');
        }
        setup(world, node, { bind, password: s.reveal(), uid: 0 });
      }),

    probeSetup: (node) =>
      call(node, 'probeSetup', (): SetupProbe => {
        const fs = fsOf(node);
        return {
          hasMainJson: fs.exists(MAIN_JSON),
          hasConfigJson: fs.exists(CONFIG_JSON),
          configuredBindAddress: bindOf(node),
          credentialsSha256: credentialsSha(node),
          serviceActive: serviceActive(world, node),
          hasPasswordFile: fs.exists(PASSWORD_FILE),
        };
      }),

    writeCredentials: (node, bytes, expected) =>
      call(node, 'writeCredentials', () => {
        const fs = fsOf(node);
        fs.write(CREDENTIALS_FILE, bytes, { owner: 'root', group: 'root', mode: 0o600 });
        fs.chown(CREDENTIALS_FILE, 'root', 'root');
        fs.chmod(CREDENTIALS_FILE, 0o600);
        const got = sha256(fs.read(CREDENTIALS_FILE) ?? Buffer.alloc(0));
        if (got !== expected) throw new SimError(`${CREDENTIALS_FILE}: FAILED (sha256 ${got}, expected ${expected})`);
      }),

    credentialsSha256: (node) => call(node, 'credentialsSha256', () => credentialsSha(node)),

    deleteToken: (node, s, accessorId) =>
      call(node, 'deleteToken', () => {
        const token = tokenFromCredentials(node, s);
        try {
          tokenDelete(world, node, token, accessorId);
        } catch (e) {
          throw consulError(`Failed to delete token ${accessorId}`, 'http://127.0.0.1:8500/v1/acl/token', e);
        }
      }),

    ...fakeStateMethods(call, fsOf, (node) => serviceActive(world, node)),

    close: () => Promise.resolve(),
  };

  const nodeHandle = (name: string): FakeNode => {
    const fs = files.get(name);
    if (fs === undefined) throw new Error(`unknown node ${name}`);
    return {
      name,
      identity: identity(world, name),
      fs,
      read: (path) => fs.read(path)?.toString('utf8') ?? null,
      exists: (path) => fs.exists(path),
      active: () => serviceActive(world, name),
      kill: () => {
        dead.add(name);
      },
    };
  };

  return {
    port,
    faults,
    effects,
    world,
    get state() {
      return world.state;
    },
    secret,
    genesisCredentialsSha256,
    nodes: specs.map((s) => s.name),
    servers,
    agents: specs.filter((s) => s.kind === 'agent').map((s) => s.name),
    preferredLeader,
    leader: () => currentLeader(world),
    node: nodeHandle,
    calls,
  };
}

export interface HealthReport {
  ok: boolean;
  leader: string | null;
  problems: string[];
}

/**
 * The mesh is consistent: exactly one server leads and every node is proven back (test/sim/proof.ts: RPC through
 * its own agent with the current token, certificate and CA the leader's, keyring exactly the current key), and
 * every credentials file is the leader's. True of the cluster as created, too: it says nothing of a regeneration.
 */
export function meshConsistent(cluster: FakeCluster): HealthReport {
  const w = cluster.world;
  const { leader, problems } = meshProblems(w, cluster.nodes);
  if (leader === null) return { ok: false, leader, problems };
  const leaderSha = cluster.node(leader).fs.read(CREDENTIALS_FILE);
  const expectedSha = leaderSha === null ? null : sha256(leaderSha);
  for (const name of cluster.nodes) {
    const b = cluster.node(name).fs.read(CREDENTIALS_FILE);
    if (b === null || sha256(b) !== expectedSha) problems.push(`${name}: credentials differ from the leader's`);
  }
  return { ok: problems.length === 0, leader, problems };
}

/**
 * The credentials were regenerated, and the mesh runs on them: consistent (above), the leader's credentials are
 * not the ones the cluster was created with, `newSecret` opens them, and the bootstrap token inside is accepted by
 * the leader's ACL system. False for a cluster regen never touched. Reads the model only (no port call is logged).
 */
export function healthy(cluster: FakeCluster, newSecret: Secret | string): HealthReport {
  const base = meshConsistent(cluster);
  if (base.leader === null) return base;
  const problems = [...base.problems];
  const secret = typeof newSecret === 'string' ? newSecret : newSecret.reveal();
  const blob = cluster.node(base.leader).fs.read(CREDENTIALS_FILE);
  if (blob !== null && sha256(blob) === cluster.genesisCredentialsSha256) problems.push(`${base.leader}: credentials unchanged since the cluster was created`);
  const members = blob === null ? null : cluster.world.crypto.unpack(blob, secret);
  if (blob !== null && members === null) problems.push(`${base.leader}: the new secret does not open the credentials`);
  const acl = members?.get('consul-acl-secret.json');
  const token = acl === undefined ? undefined : (JSON.parse(acl.toString('utf8')) as { SecretID?: unknown }).SecretID;
  if (members !== null && typeof token !== 'string') problems.push(`${base.leader}: no bootstrap token in the credentials`);
  // The leader's setup-time drop-in (machines/rpc-hold.ts) must not outlive the run on any node.
  for (const n of cluster.nodes) if (cluster.node(n).exists(RPC_HOLD_FILE)) problems.push(`${n}: regen's ${RPC_HOLD_FILE} is still there`);
  if (typeof token === 'string') {
    try {
      tokenList(cluster.world, base.leader, token);
    } catch (e) {
      problems.push(`${base.leader}: the bootstrap token in the credentials does not work: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { ok: problems.length === 0, leader: base.leader, problems };
}
