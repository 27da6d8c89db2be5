/**
 * Reaching a node: its hops (ProxyJump hosts in order, then the node), each hop's handshake under one deadline that
 * stands still while a passphrase is typed, host key verification, login, and retries with backoff. A failure says
 * which hop failed and what to check.
 */
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, AuthHandlerMiddleware, ConnectConfig, ServerHostKeyAlgorithm } from 'ssh2';
import { shq } from '../shell/quote.js';
import { HostKeyRefusedError, NodeUnreachableError, RegenError } from '../../machines/errors.js';
import { authMethods, type PauseClock } from './auth.js';
import { hostKeyFiles, type Verdict } from './host-keys.js';
import { preferredHostKeyAlgorithms } from './known-hosts.js';
import type { Shared, SshTarget, SshTransportOptions } from './options.js';
import { defaultIdentityFiles, resolveHost } from './ssh-config.js';
import type { JumpHost, ResolvedHost } from './ssh-config.js';
import { dedupe, hostPort, withinDeadline } from './util.js';

export type Client = InstanceType<typeof ssh2.Client>;

/** One hop of a connection: where to connect and how to log in. */
export interface Hop {
  label: string;
  resolved: ResolvedHost;
  identityFiles: string[];
  explicitIdentities: boolean;
}

/** Why a connect attempt failed; `retry` says whether another attempt could help. */
export class ConnectFailure extends Error {
  constructor(
    message: string,
    readonly hint: string,
    readonly retry: boolean,
    /** The node answered with a host key regen must not trust: a preflight problem, not an unreachable node. */
    readonly untrusted = false,
  ) {
    super(message);
  }
}

/**
 * One node's connection, opened on first use and again after it drops (only before a command starts: the
 * transport never re-sends a command).
 */
export class NodeConnection {
  readonly node: string;
  readonly target: SshTarget;
  readonly #shared: Shared;
  #client: Client | null = null;
  #jumps: Client[] = [];
  #connecting: Promise<Client> | null = null;
  #closed = false;
  #user: string | null = null;
  #connections = 0;

  constructor(target: SshTarget, shared: Shared) {
    this.node = target.node;
    this.target = target;
    this.#shared = shared;
  }

  /** Login user on the node once connected (root or a sudoer). */
  get user(): string | null {
    return this.#user;
  }

  /** TCP connections opened so far to the node itself (jump hops not counted). */
  get connections(): number {
    return this.#connections;
  }

  /** The live connection to the node, or null when there is none. */
  get client(): Client | null {
    return this.#client;
  }

  ensure(signal?: AbortSignal): Promise<Client> {
    if (this.#closed) return Promise.reject(new NodeUnreachableError(this.node, `connection to ${this.node} was closed by regen`));
    if (this.#client !== null) return Promise.resolve(this.#client);
    if (this.#connecting === null) {
      this.#connecting = this.#connectWithRetry(signal).finally(() => {
        this.#connecting = null;
      });
    }
    return this.#connecting;
  }

  /** Abandon a connection that turned out dead or unresponsive (and its jump hops). */
  drop(client: Client): void {
    if (this.#client === client) {
      this.#client = null;
      for (const j of this.#jumps) j.end();
      this.#jumps = [];
    }
    client.end();
  }

  async close(): Promise<void> {
    this.#closed = true;
    const clients = [this.#client, ...[...this.#jumps].reverse()].filter((c): c is Client => c !== null);
    this.#client = null;
    this.#jumps = [];
    await Promise.all(clients.map((c) => endClient(c)));
  }

  async #connectWithRetry(signal?: AbortSignal): Promise<Client> {
    const o = this.#shared.opts;
    const attempts = Math.max(1, o.reconnect?.attempts ?? 3);
    const base = o.reconnect?.baseDelayMs ?? 200;
    const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const random = o.random ?? Math.random;
    let last: ConnectFailure | undefined;
    for (let i = 0; i < attempts; i++) {
      if (signal?.aborted === true) break;
      try {
        return await this.#connectChain();
      } catch (err) {
        last = err instanceof ConnectFailure ? err : new ConnectFailure(String(err), 'check the node and retry', false);
        if (!last.retry || i + 1 >= attempts) break;
        await sleep(Math.round(base * 2 ** i * (0.5 + random())));
      }
    }
    if (last === undefined) throw new RegenError('aborted', `connecting to ${this.node} aborted`, { node: this.node });
    if (last.untrusted) throw new HostKeyRefusedError(this.node, last.message, last.hint);
    throw new NodeUnreachableError(this.node, last.message, last.hint);
  }

  async #connectChain(): Promise<Client> {
    const hops = resolveHops(this.#shared, this.target);
    const opened: Client[] = [];
    try {
      let sock: Duplex | undefined;
      let via = '';
      for (let i = 0; i < hops.length; i++) {
        const hop = hops[i] as Hop;
        const prev = opened[opened.length - 1];
        if (prev !== undefined) sock = await forwardOutWithin(prev, hop, this.node, via, hopTimeoutMs(this.#shared.opts, hop));
        const client = await connectHop(this.#shared, this.node, hop, sock, via);
        opened.push(client);
        via = ` via ${hostPort(hop.resolved.hostName, hop.resolved.port)}`;
      }
      const last = hops[hops.length - 1] as Hop;
      return this.#adopt(opened, last.resolved.user);
    } catch (err) {
      for (const c of opened.reverse()) c.end();
      throw err;
    }
  }

  /** The chain is up: its last client is the node's connection, forgotten as soon as it or a hop goes. */
  #adopt(opened: Client[], user: string): Client {
    const target = opened[opened.length - 1] as Client;
    this.#connections++;
    this.#user = user;
    this.#client = target;
    this.#jumps = opened.slice(0, -1);
    const onGone = (): void => {
      if (this.#client === target) {
        this.#client = null;
        for (const j of this.#jumps) j.end();
        this.#jumps = [];
      }
    };
    target.on('close', onGone);
    target.on('end', onGone);
    for (const j of this.#jumps) j.on('close', onGone);
    return target;
  }
}

/** The hops of a node: jump hosts in order, then the node itself. */
export function resolveHops(s: Shared, target: SshTarget): Hop[] {
  const node = target.node;
  const ro = { home: s.home, localUser: s.localUser };
  const resolved = resolveHost(s.config, target.host, ro);
  if (target.port !== undefined) resolved.port = target.port;
  if (target.user !== undefined) resolved.user = target.user;
  if (resolved.proxyCommand !== undefined && resolved.proxyJump.length === 0) {
    throw new ConnectFailure(
      `${node}: ssh_config sets ProxyCommand for ${target.host}, which regen does not run`,
      'use ProxyJump instead of ProxyCommand in ssh_config for this host',
      false,
    );
  }
  const hop = (label: string, r: ResolvedHost, explicit: string[]): Hop => {
    const files = [...explicit, ...r.identityFiles];
    return {
      label,
      resolved: r,
      identityFiles: files.length > 0 ? dedupe(files) : defaultIdentityFiles(s.home),
      explicitIdentities: files.length > 0,
    };
  };
  const jumps = resolved.proxyJump.map((j: JumpHost) => {
    const r = resolveHost(s.config, j.host, ro);
    if (j.port !== undefined) r.port = j.port;
    if (j.user !== undefined) r.user = j.user;
    return hop(`jump host ${j.host}`, r, []);
  });
  return [...jumps, hop(node, resolved, target.identityFile === undefined ? [] : [target.identityFile])];
}

/** TCP connect + handshake + authentication of one hop (default 15 s, or ssh_config's ConnectTimeout). */
export function hopTimeoutMs(o: SshTransportOptions, hop: Hop): number {
  const r = hop.resolved;
  return o.connectTimeoutMs ?? o.readyTimeoutMs ?? (r.connectTimeoutSec !== undefined ? r.connectTimeoutSec * 1000 : 15_000);
}

/** One hop, over `sock` when it is reached through the previous hop. */
async function connectHop(s: Shared, node: string, hop: Hop, sock: Duplex | undefined, via: string): Promise<Client> {
  const r = hop.resolved;
  const keyHost = r.hostKeyAlias ?? r.hostName;
  const hs: Handshake = {
    s,
    hop,
    where: `${hop.label === node ? node : `${node}'s ${hop.label}`} at ${hostPort(r.hostName, r.port)}${via}`,
    keyHost,
    timeoutMs: hopTimeoutMs(s.opts, hop),
    knownTypes: [],
    verdict: undefined,
    lastError: undefined,
    tried: [],
    done: false,
  };
  hs.knownTypes = await s.policy.knownTypes(keyHost, r.port, hostKeyFiles(r, s.opts));
  return new Promise<Client>((resolve, reject) => handshake(hs, sock, resolve, reject));
}

/** One hop's attempt: its settings and what was learnt on the way, for the message if it fails. */
interface Handshake {
  s: Shared;
  hop: Hop;
  /** The hop in messages: the node (or its jump host), its address, and the hop it was reached through. */
  where: string;
  /** The name host keys are looked up under (HostKeyAlias, else HostName). */
  keyHost: string;
  timeoutMs: number;
  /** Key types known_hosts pins for the hop, asked for first. */
  knownTypes: string[];
  verdict: Verdict | undefined;
  lastError: (Error & { level?: string }) | undefined;
  tried: string[];
  done: boolean;
}

/** Our own deadline instead of ssh2's readyTimeout, so it can stand still while a passphrase is typed. */
class HandshakeClock {
  #timer: NodeJS.Timeout | undefined;
  timedOut = false;

  constructor(
    readonly ms: number,
    readonly expire: () => void,
    readonly finished: () => boolean,
  ) {}

  arm(): void {
    this.#timer = setTimeout(() => {
      this.timedOut = true;
      this.expire();
    }, this.ms);
  }

  readonly pause: PauseClock = (paused) => {
    clearTimeout(this.#timer);
    if (!paused && !this.finished()) this.arm();
  };

  stop(): void {
    clearTimeout(this.#timer);
  }
}

function handshake(hs: Handshake, sock: Duplex | undefined, resolve: (c: Client) => void, reject: (f: ConnectFailure) => void): void {
  const client = new ssh2.Client();
  const clock = new HandshakeClock(hs.timeoutMs, () => client.destroy(), () => hs.done);
  const fail = (f: ConnectFailure): void => {
    if (hs.done) return;
    hs.done = true;
    clock.stop();
    client.destroy();
    reject(f);
  };

  client.on('ready', () => {
    if (hs.done) return;
    hs.done = true;
    clock.stop();
    client.setNoDelay(hs.s.opts.noDelay ?? true);
    resolve(client);
  });
  client.on('error', (e: Error & { level?: string }) => {
    // Agent errors are followed by the next auth method; only the final close decides.
    if (e.level !== 'agent') hs.lastError = e;
    else hs.tried.push(`agent (${e.message})`);
  });
  client.on('close', () => {
    if (hs.done) return;
    fail(explainFailure(hs.where, hs.hop.resolved, hs.verdict, hs.lastError, clock.timedOut, hs.timeoutMs, hs.tried));
  });

  const config = connectConfig(hs, clock);
  if (sock !== undefined) config.sock = sock;
  clock.arm();
  try {
    client.connect(config);
  } catch (e) {
    fail(new ConnectFailure(`cannot connect to ${hs.where}: ${String(e)}`, 'check the target settings', false));
  }
}

function connectConfig(hs: Handshake, clock: HandshakeClock): ConnectConfig {
  const { s, hop } = hs;
  const o = s.opts;
  const r = hop.resolved;
  const methods = authMethods(hop, { keys: s.keys, agentSocket: o.agentSocket, passphrasePrompt: o.passphrasePrompt }, hs.tried, clock.pause);
  return {
    host: r.hostName,
    port: r.port,
    username: r.user,
    readyTimeout: 0,
    keepaliveInterval: o.keepaliveIntervalMs ?? (r.serverAliveIntervalSec !== undefined ? r.serverAliveIntervalSec * 1000 : 15_000),
    keepaliveCountMax: o.keepaliveCountMax ?? r.serverAliveCountMax ?? 3,
    algorithms: { serverHostKey: preferredHostKeyAlgorithms(hs.knownTypes) as ServerHostKeyAlgorithm[] },
    hostVerifier: hostVerifier(hs, clock),
    authHandler: ((methodsLeft, _partial, next) => {
      // ssh2 takes `false` for "no more methods"; its typings do not say so.
      const give = next as (m: AnyAuthMethod | false) => void;
      methods(methodsLeft).then(give, () => give(false));
    }) satisfies AuthHandlerMiddleware,
  };
}

/** The host key check, with the deadline paused while known_hosts is read (and maybe written). */
function hostVerifier(hs: Handshake, clock: HandshakeClock): (key: Buffer, verify: (ok: boolean) => void) => void {
  const { s, hop } = hs;
  const r = hop.resolved;
  return (key, verify) => {
    clock.pause(true);
    s.policy.verify(hop.label, hs.keyHost, r.port, key, hostKeyFiles(r, s.opts)).then(
      (v) => {
        hs.verdict = v;
        clock.pause(false);
        verify(v.ok);
      },
      (e: unknown) => {
        hs.verdict = { ok: false, message: `cannot read ${s.policy.file}: ${String(e)}`, hint: 'check --known-hosts' };
        clock.pause(false);
        verify(false);
      },
    );
  };
}

function explainFailure(
  where: string,
  r: ResolvedHost,
  verdict: Verdict | undefined,
  e: (Error & { level?: string; code?: string }) | undefined,
  timedOut: boolean,
  timeoutMs: number,
  tried: string[],
): ConnectFailure {
  if (verdict !== undefined && !verdict.ok) return new ConnectFailure(verdict.message, verdict.hint, false, true);
  if (timedOut) {
    return new ConnectFailure(
      `cannot reach ${where}: no SSH session within ${Math.round(timeoutMs / 1000)} s`,
      `check that the node is up and that ${hostPort(r.hostName, r.port)} is reachable from here (ssh -p ${r.port} ${r.user}@${r.hostName})`,
      true,
    );
  }
  if (e?.level === 'client-authentication') {
    const what = tried.length > 0 ? tried.join('; ') : 'no key (no agent, no identity file)';
    return new ConnectFailure(
      `cannot log in to ${where} as ${r.user}: authentication failed (tried: ${what})`,
      `make sure ${r.user}'s authorized_keys on the node holds one of these keys, load the key into ssh-agent (ssh-add), or name it with IdentityFile / the inventory's identityFile`,
      false,
    );
  }
  const msg = e?.message ?? 'connection closed';
  const code = e?.code ?? '';
  let hint = `check that sshd runs on the node and listens on ${r.port} (ssh -p ${r.port} ${shq(`${r.user}@${r.hostName}`)})`;
  if (code === 'ECONNREFUSED') hint = `nothing listens on ${hostPort(r.hostName, r.port)}: start sshd on the node or fix the port (inventory sshPort / ssh_config Port)`;
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') hint = `the name ${r.hostName} does not resolve: fix the inventory's sshHost or ssh_config HostName`;
  else if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') hint = `no route to ${r.hostName}: check the network path from here to the node`;
  const permanent = code === 'ENOTFOUND' || e?.level === 'handshake';
  return new ConnectFailure(`cannot reach ${where}: ${msg}`, hint, !permanent);
}

function forwardOut(via: Client, hop: Hop, node: string, viaText: string): Promise<Duplex> {
  const r = hop.resolved;
  return new Promise((resolve, reject) => {
    try {
      via.forwardOut('127.0.0.1', 0, r.hostName, r.port, (err, stream) => {
        if (err) {
          reject(
            new ConnectFailure(
              `cannot reach ${node}'s ${hop.label === node ? 'SSH port' : hop.label} at ${hostPort(r.hostName, r.port)}${viaText}: the jump host could not open the connection (${err.message})`,
              'check that the jump host can reach the node (and allows TCP forwarding: AllowTcpForwarding)',
              true,
            ),
          );
        } else {
          resolve(stream);
        }
      });
    } catch (e) {
      reject(new ConnectFailure(`jump connection${viaText} closed: ${String(e)}`, 'retry', true));
    }
  });
}

/** forwardOut through a jump host, bounded: a jump host that never answers the request is a failed hop. */
function forwardOutWithin(via: Client, hop: Hop, node: string, viaText: string, ms: number): Promise<Duplex> {
  const r = hop.resolved;
  return withinDeadline(
    forwardOut(via, hop, node, viaText),
    ms,
    () => new ConnectFailure(`cannot reach ${node} at ${hostPort(r.hostName, r.port)}${viaText}: the jump host did not open the connection within ${Math.round(ms / 1000)} s`, 'check the jump host', true),
  );
}

function endClient(c: Client): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (): void => {
      if (!done) {
        done = true;
        clearTimeout(t);
        resolve();
      }
    };
    // A peer that does not answer the disconnect must not hold up shutdown.
    const t = setTimeout(() => {
      c.destroy();
      finish();
    }, 2000);
    c.once('close', finish);
    try {
      c.end();
    } catch {
      finish();
    }
  });
}
