/**
 * What every simulated command on a lab node shares: who am I (/etc/regen-lab/node.json), the fault knobs
 * (/etc/regen-lab/faults.json), and the model's World over real files, real gpg, real agent processes and the
 * locked cluster state in DIR/cluster.
 *
 * REGEN_LAB_NODE_JSON overrides where node.json is (tests run the commands outside a node with it); the node's
 * address then stands in for its interfaces, since the host's are not the node's.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MeshKind, Profile } from '../../../machines/port.js';
import { GpgCrypto } from '../../sim/gpg-crypto.js';
import { opensslTls } from '../../sim/openssl-tls.js';
import {
  SimError,
  SD_DATA_DIR,
  SD_USER,
  defaultRandomBytes,
  emptyClusterState,
  type ClusterState,
  type NodeIdentity,
  type World,
} from '../../sim/model.js';
import { RealFs } from '../../sim/real-fs.js';
import { release } from '../../sim/versions.js';
import { ClusterStateStore, pidAlive } from '../../sim/state-store.js';
import { BIND_REJECTED } from './directory-wire.js';
import { ELECTION_FILE, LAB_ELECTION, type ElectionSettings } from '../../sim/election.js';

export interface NodeJson {
  name: string;
  short: string;
  fqdn: string;
  ip: string;
  kind: MeshKind;
  profile: Profile;
  /** The service-discover release (test/sim/versions.ts); absent in labs made before releases were modelled. */
  sdVersion?: string;
  labDir: string;
  clusterDir: string;
  nodesDir: string;
}

export interface Faults {
  latencyMs?: Record<string, number>;
  failNextSetup?: string;
  /** The node's mailbox (the admin SOAP service `zmprov` without `-l` talks to) is down. */
  mailboxDown?: boolean;
}

export const CONSUL_VERSION: Record<Profile, string> = { current: '1.19.2', legacy: '1.9.3' };
/** What `carbonio prov gas service-discover` answers, mirrored where the zextras user can read it. */
export const LDAP_MIRROR = 'ldap-service-discover';
/** What `carbonio prov gas` answers (every Carbonio server: every node of the lab), beside it. */
export const LDAP_ALL_SERVERS_MIRROR = 'ldap-all-servers';

const BIN_DIR = path.dirname(fileURLToPath(import.meta.url));
const testMode = (): boolean => process.env.REGEN_LAB_NODE_JSON !== undefined;

export function nodeJsonPath(): string {
  return process.env.REGEN_LAB_NODE_JSON ?? '/etc/regen-lab/node.json';
}

export function loadSelf(): NodeJson {
  return JSON.parse(fs.readFileSync(nodeJsonPath(), 'utf8')) as NodeJson;
}

/** The node's /etc/regen-lab as reachable from here. */
export function selfLabDir(): string {
  return path.dirname(nodeJsonPath());
}

function labDirOf(self: NodeJson, short: string): string {
  return short === self.short ? selfLabDir() : path.join(self.nodesDir, short, 'lab');
}

// ---- faults -----------------------------------------------------------------------------------------------------

export function readFaults(): Faults {
  try {
    return JSON.parse(fs.readFileSync(path.join(selfLabDir(), 'faults.json'), 'utf8')) as Faults;
  } catch {
    return {};
  }
}

/** Sleep as the fault knobs say before acting: the longest matching command key, plus "*". */
export async function applyLatency(words: string[]): Promise<void> {
  const lat = readFaults().latencyMs ?? {};
  let ms = lat['*'] ?? 0;
  for (let n = words.length; n >= 1; n--) {
    const v = lat[words.slice(0, n).join(' ')];
    if (v !== undefined) {
      ms += v;
      break;
    }
  }
  if (ms > 0) await new Promise((r) => setTimeout(r, Math.min(ms, 600_000)));
}

/** Take (and remove) the failNextSetup knob. */
export function consumeFailNextSetup(): string | null {
  const file = path.join(selfLabDir(), 'faults.json');
  const f = readFaults();
  if (f.failNextSetup === undefined) return null;
  const message = f.failNextSetup;
  delete f.failNextSetup;
  fs.writeFileSync(`${file}.${process.pid}.tmp`, `${JSON.stringify(f, null, 2)}\n`);
  fs.renameSync(`${file}.${process.pid}.tmp`, file);
  return message;
}

// ---- the directory ----------------------------------------------------------------------------------------------

/**
 * A connection to the lab directory at host:port: null when it opens and the directory accepts the bind, 'bind' when
 * it refuses the credentials, else the connection error as Go's net package words it.
 */
export function reachable(host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let heard = '';
    let connected = false;
    const t = setTimeout(() => {
      s.destroy();
      resolve(connected ? null : 'i/o timeout');
    }, 5_000);
    s.on('connect', () => {
      connected = true;
    });
    s.on('data', (d: Buffer) => {
      heard += d.toString('utf8');
    });
    s.once('close', () => {
      clearTimeout(t);
      if (connected) resolve(heard.startsWith(BIND_REJECTED) ? 'bind' : null);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code === 'ECONNREFUSED' ? 'connect: connection refused' : e.message);
    });
  });
}

/** The space-separated URLs of a localconfig key, none when the key is absent. */
export function localconfigUrls(xml: string, key: string): string[] {
  const m = new RegExp(`<key name="${key}">\\s*<value>([^<]*)</value>`).exec(xml);
  return (m?.[1] ?? '').split(/\s+/).filter((u) => u !== '');
}

/**
 * go-ldap's connect as service-discover uses it: the first URL that accepts a connection is bound to, and its bind
 * result is final; only connection errors move on to the next URL, the last one kept.
 */
export async function firstReachableLdap(
  urls: string[],
): Promise<{ ok: true } | { ok: false; bind: true } | { ok: false; bind: false; host: string; port: number; error: string }> {
  let last: { ok: false; bind: false; host: string; port: number; error: string } = { ok: false, bind: false, host: '', port: 0, error: 'no ldap URL' };
  for (const u of urls) {
    const m = /^ldaps?:\/\/([^:/]+)(?::(\d+))?/.exec(u);
    if (m === null) continue;
    const [host, port] = [m[1] ?? '', Number(m[2] ?? 389)];
    const error = await reachable(host, port);
    if (error === null) return { ok: true };
    if (error === 'bind') return { ok: false, bind: true };
    last = { ok: false, bind: false, host, port, error };
  }
  return last;
}

// ---- the world --------------------------------------------------------------------------------------------------

function allNodes(self: NodeJson): NodeJson[] {
  const out: NodeJson[] = [];
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(self.nodesDir).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  } catch {
    entries = [];
  }
  for (const short of entries) {
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(labDirOf(self, short), 'node.json'), 'utf8')) as NodeJson);
    } catch {
      // Not a node directory.
    }
  }
  if (!out.some((n) => n.name === self.name)) out.push(self);
  return out;
}

function interfacesOf(self: NodeJson, n: NodeJson): NodeIdentity['interfaces'] {
  if (n.name === self.name && !testMode()) {
    const list: Array<{ name: string; address: string }> = [];
    for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
      for (const a of addrs ?? []) if (a.family === 'IPv4') list.push({ name, address: a.address });
    }
    return list;
  }
  return [
    { name: 'lo', address: '127.0.0.1' },
    { name: 'eth0', address: n.ip },
  ];
}

export function agentPidFile(self: NodeJson, short: string): string {
  return path.join(labDirOf(self, short), 'agent.pid');
}

/** Kernel start time of a process (field 22 of /proc/<pid>/stat): with the pid, an identity that survives exec. */
function startTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

export function agentPid(self: NodeJson, short: string): number {
  try {
    const pid = Number(fs.readFileSync(agentPidFile(self, short), 'utf8').trim());
    if (!pidAlive(pid)) return 0;
    // A recycled pid is not our agent; the start time recorded at spawn tells, even before the child has exec'd.
    const recorded = fs.readFileSync(`${agentPidFile(self, short)}.start`, 'utf8').trim();
    return recorded === startTime(pid) ? pid : 0;
  } catch {
    return 0;
  }
}

function initialState(self: NodeJson): ClusterState {
  let preferred: string | null = null;
  try {
    preferred = fs.readFileSync(path.join(self.clusterDir, 'preferred-leader'), 'utf8').trim() || null;
  } catch {
    preferred = null;
  }
  return emptyClusterState(preferred);
}

/** Where the agent listens / the consul CLI connects (CONSUL_HTTP_ADDR, as real consul reads it). */
export function agentAddress(): { host: string; port: number } {
  const raw = process.env.REGEN_LAB_AGENT_ADDR ?? process.env.CONSUL_HTTP_ADDR ?? '127.0.0.1:8500';
  const m = /^(?:https?:\/\/)?([^:/]+):(\d+)/.exec(raw);
  return m?.[1] !== undefined && m[2] !== undefined ? { host: m[1], port: Number(m[2]) } : { host: '127.0.0.1', port: 8500 };
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

function spawnAgent(self: NodeJson): void {
  const labDir = selfLabDir();
  const log = fs.openSync(path.join(labDir, 'agent.log'), 'a');
  try {
    const agentJs = path.join(BIN_DIR, 'agent.js');
    // consul runs as service-discover; dac_override lets it reach the lab's state the way the real one reaches
    // its raft data (the lab directory itself is root's).
    const argv =
      process.getuid?.() === 0
        ? [
            'setpriv',
            '--reuid',
            SD_USER,
            '--regid',
            SD_USER,
            '--init-groups',
            '--inh-caps',
            '+dac_override',
            '--ambient-caps',
            '+dac_override',
            process.execPath,
            agentJs,
          ]
        : [process.execPath, agentJs];
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log], cwd: '/', env: process.env });
    child.unref();
    if (child.pid === undefined) throw new SimError('unable to start the agent');
    fs.writeFileSync(`${agentPidFile(self, self.short)}.start`, `${startTime(child.pid) ?? ''}\n`);
    fs.writeFileSync(agentPidFile(self, self.short), `${child.pid}\n`);
  } finally {
    fs.closeSync(log);
  }
}

function killAgent(self: NodeJson): void {
  const pid = agentPid(self, self.short);
  if (pid > 0) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 200 && pidAlive(pid); i++) Atomics.wait(sleeper, 0, 0, 25);
    if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 80 && pidAlive(pid); i++) Atomics.wait(sleeper, 0, 0, 25);
  }
  fs.rmSync(agentPidFile(self, self.short), { force: true });
  fs.rmSync(`${agentPidFile(self, self.short)}.start`, { force: true });
}

function writeLdapMirror(self: NodeJson, nodes: NodeJson[], state: ClusterState): void {
  const mesh = state.ldap.meshServers.map((s) => `${s}\n`).join('');
  const all = nodes.map((n) => `${n.fqdn}\n`).join('');
  for (const [n, name, text] of nodes.flatMap((n) => [[n, LDAP_MIRROR, mesh] as const, [n, LDAP_ALL_SERVERS_MIRROR, all] as const])) {
    const file = path.join(labDirOf(self, n.short), name);
    let current: string | null = null;
    try {
      current = fs.readFileSync(file, 'utf8');
    } catch {
      current = null;
    }
    if (current === text) continue;
    fs.writeFileSync(`${file}.${process.pid}.tmp`, text, { mode: 0o644 });
    fs.chmodSync(`${file}.${process.pid}.tmp`, 0o644);
    fs.renameSync(`${file}.${process.pid}.tmp`, file);
  }
}

/**
 * Run model work on the locked cluster state, as this node. Agent processes are started and stopped only for
 * this node (the model only starts the local unit).
 */
export function withWorld<T>(fn: (w: World, self: NodeJson) => T): T {
  let until = 0;
  try {
    return lockedWorld(fn, (t) => {
      until = Math.max(until, t);
    });
  } finally {
    // What the modelled command took (a held RPC, setup's bootstrap loop) is waited out with the lock released.
    sleepSync(until - Date.now());
  }
}

function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(ms, 120_000));
}

/** The lab's election delay and RPC hold: `DIR/cluster/election.json` (`lab up --election-delay-ms`). */
export function labElection(self: NodeJson = loadSelf()): ElectionSettings {
  try {
    const v = JSON.parse(fs.readFileSync(path.join(self.clusterDir, ELECTION_FILE), 'utf8')) as Partial<ElectionSettings>;
    return {
      delayMs: typeof v.delayMs === 'number' ? v.delayMs : LAB_ELECTION.delayMs,
      holdMs: typeof v.holdMs === 'number' ? v.holdMs : LAB_ELECTION.holdMs,
    };
  } catch {
    return LAB_ELECTION;
  }
}

function lockedWorld<T>(fn: (w: World, self: NodeJson) => T, elapse: (atMs: number) => void): T {
  const self = loadSelf();
  const nodes = allNodes(self);
  const store = new ClusterStateStore(self.clusterDir);
  const crypto = new GpgCrypto();
  const identities: NodeIdentity[] = nodes.map((n) => ({
    name: n.name,
    short: n.short,
    kind: n.kind,
    profile: n.profile,
    interfaces: interfacesOf(self, n),
    consulVersion: n.sdVersion === undefined ? (CONSUL_VERSION[n.profile] ?? CONSUL_VERSION.current) : release(n.sdVersion).consul,
    ...(n.sdVersion === undefined ? {} : { sdVersion: n.sdVersion }),
  }));
  const shortOf = (name: string): string => nodes.find((n) => n.name === name)?.short ?? name.split('.')[0] ?? name;
  const files = new Map<string, RealFs>();
  return store.update(
    () => initialState(self),
    (state) => {
      const w: World = {
        state,
        nodes: () => identities,
        fs: (node) => {
          let f = files.get(node);
          if (f === undefined) {
            f = new RealFs(path.join(self.nodesDir, shortOf(node)));
            files.set(node, f);
          }
          return f;
        },
        crypto,
        tls: opensslTls,
        processRunning: (node) => agentPid(self, shortOf(node)) > 0,
        startProcess: (node) => {
          if (node !== self.name) throw new Error(`cannot start the agent of ${node} from ${self.name}`);
          spawnAgent(self);
        },
        stopProcess: (node) => {
          if (node !== self.name) throw new Error(`cannot stop the agent of ${node} from ${self.name}`);
          killAgent(self);
        },
        now: () => new Date(),
        randomBytes: defaultRandomBytes,
        election: labElection(self),
        elapse,
      };
      try {
        return fn(w, self);
      } finally {
        writeLdapMirror(self, nodes, state);
      }
    },
  );
}

/** Wait (bounded) until the local agent accepts connections, after a start. */
export async function waitForAgent(timeoutMs = 10_000): Promise<boolean> {
  const { host, port } = agentAddress();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

/** Run a command's main: errors print like the real tool and set the exit code. */
export function runMain(name: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof SimError) {
        process.stderr.write(`${e.message}\n`);
        process.exitCode = e.exitCode;
      } else {
        process.stderr.write(`${name}: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exitCode = 1;
      }
    },
  );
}

export { SD_DATA_DIR };
