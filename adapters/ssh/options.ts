/** Where a node is reached, the transport's settings, and what every connection of one run shares. */
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { InventoryNode } from '../../machines/port.js';
import { KeyCache, type PassphrasePrompt } from './auth.js';
import { HostKeyPolicy, readOnlyKnownHosts } from './host-keys.js';
import type { AuditSink } from './remote.js';
import { defaultSshConfigPath, loadSshConfig, type SshConfig } from './ssh-config.js';

/** Where to reach a node. Explicit values win over ssh_config, as on the ssh command line. */
export interface SshTarget {
  /** Inventory name: used in messages, the audit and as the pool key. */
  node: string;
  /** Address or ssh_config alias. */
  host: string;
  port?: number;
  user?: string;
  identityFile?: string;
}

export function targetFromInventory(n: InventoryNode): SshTarget {
  const t: SshTarget = { node: n.name, host: n.sshHost };
  if (n.sshPort !== undefined) t.port = n.sshPort;
  if (n.sshUser !== undefined) t.user = n.sshUser;
  if (n.identityFile !== undefined) t.identityFile = n.identityFile;
  return t;
}

export interface SshTransportOptions {
  /** known_hosts file to verify against and record into (default ~/.ssh/known_hosts). */
  knownHostsPath?: string;
  /** Record keys of hosts not in known_hosts instead of refusing them. Never accepts a changed key. */
  acceptNewHostKeys?: boolean;
  /** Write accepted keys hashed (`|1|…`), as HashKnownHosts yes does (also when ssh_config says so). */
  hashKnownHosts?: boolean;
  /** Global known_hosts files, read only (default /etc/ssh/ssh_known_hosts and …2, as OpenSSH). */
  globalKnownHostsFiles?: string[];
  /** ssh_config to honour (default ~/.ssh/config); null reads none. */
  sshConfigPath?: string | null;
  /** An already parsed config (wins over sshConfigPath). */
  sshConfig?: SshConfig;
  /** ssh-agent socket (default $SSH_AUTH_SOCK); null disables the agent. */
  agentSocket?: string | null;
  passphrasePrompt?: PassphrasePrompt;
  /** TCP connect + handshake + authentication, per hop (default 15 s; time spent in the passphrase prompt excluded). */
  connectTimeoutMs?: number;
  /** Same as connectTimeoutMs (ssh2's name for it). */
  readyTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Default per-command timeout when ExecOptions.timeoutMs is not given (default 10 min). */
  commandTimeoutMs?: number;
  /** Seconds the node's `timeout` waits after TERM before KILL. */
  remoteKillAfterSec?: number;
  /** Channels open at once on one connection (default 8, below OpenSSH's MaxSessions 10). */
  maxSessions?: number;
  /** Disable Nagle on the TCP socket (default true: a small exec round trip is ~4 ms instead of ~45 ms). */
  noDelay?: boolean;
  /** Connect attempts and backoff base: delay n is base·2^n, jittered ±50 %. */
  reconnect?: { attempts?: number; baseDelayMs?: number };
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
  audit?: AuditSink;
  home?: string;
  localUser?: string;
}

/** State shared by every connection of one pool (one run). */
export interface Shared {
  opts: SshTransportOptions;
  config: SshConfig;
  policy: HostKeyPolicy;
  keys: KeyCache;
  home: string;
  localUser: string;
}

export function isShared(opts: SshTransportOptions | Shared): opts is Shared {
  return 'policy' in opts && 'keys' in opts;
}

export function makeShared(opts: SshTransportOptions): Shared {
  const home = opts.home ?? homedir();
  let localUser = opts.localUser;
  if (localUser === undefined) {
    try {
      localUser = userInfo().username;
    } catch {
      localUser = process.env['USER'] ?? 'root';
    }
  }
  const configPath = opts.sshConfigPath === undefined ? defaultSshConfigPath(home) : opts.sshConfigPath;
  const config = opts.sshConfig ?? (configPath === null ? { blocks: [], warnings: [] } : loadSshConfig(configPath, { home }));
  const policy = new HostKeyPolicy({
    file: opts.knownHostsPath ?? join(home, '.ssh', 'known_hosts'),
    acceptNew: opts.acceptNewHostKeys === true,
    hash: opts.hashKnownHosts === true,
    readOnly: readOnlyKnownHosts(opts, home),
  });
  return { opts, config, policy, keys: new KeyCache(), home, localUser };
}
