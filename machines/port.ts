/**
 * The node port: everything the recovery machine may ask of a node, as one typed interface.
 *
 * The machine never talks to a node any other way. Two implementations exist:
 * - adapters/carbonio: shell commands over SSH plus parsers of their output (real clusters and the lab);
 * - test/sim/fake-cluster: an in-memory mesh with the same semantics (unit tests of the machine).
 *
 * Every operation that changes a node has a read-only probe next to it (named `probe…` or documented as the
 * probe), so an interrupted step is observed, never blindly repeated.
 *
 * Transport outcomes are errors from machines/errors.ts:
 * - NodeUnreachableError: the command never started;
 * - OutcomeUnknownError: the connection dropped or timed out while the command ran (probe on resume);
 * - CommandFailedError: the command ran and failed (message says what it printed, redacted);
 * - NeedsOperatorError: output regen does not understand.
 */
import type { Secret } from './secret.js';

/** seed 000 (Carbonio: `carbonio prov`, wipe removes config.json, main.json, *.pem) or seed 002 (Zextras: `zmprov`, wipe removes *.pem). */
export type Profile = 'current' | 'legacy';

/** Mesh role of a node in Consul terms: a mesh server (raft voter) or an agent (client). */
export type MeshKind = 'server' | 'agent';

/** A node as the inventory describes it. `name` is the inventory key (usually the FQDN). */
export interface InventoryNode {
  name: string;
  /** Address or alias to reach the node over SSH (resolved through ssh_config). */
  sshHost: string;
  sshPort?: number;
  sshUser?: string;
  identityFile?: string;
  /** The node's mesh address (bind address for setup) if the inventory names it. */
  address?: string;
  /** Mesh role if the inventory names it; otherwise detected (server iff listed by `gas service-discover`). */
  kind?: MeshKind;
}

export interface Inventory {
  /** Cluster name, used for the lock and typed by the operator to confirm. */
  cluster: string;
  nodes: InventoryNode[];
  /** Operator override of leader detection (inventory name). */
  leader?: string;
  /** The directory server named by the inventory (a hint: the leader is often, not always, this node). */
  directoryServer?: string;
  /** Operator override: plan nodes whose service-discover release regen was not tested against. */
  allowUntestedVersion?: boolean;
}

/** What a read-only inspection of a node tells (preflight). */
export interface NodeFacts {
  node: string;
  /** `hostname -s` and `hostname -f`. */
  hostname: string;
  fqdn: string;
  /** Detected from what the node has (`carbonio` command present → current; only `zmprov` → legacy). */
  profile: Profile | null;
  /** Commands run as root (directly or through passwordless sudo). */
  privileged: boolean;
  /** IPv4 addresses of non-loopback interfaces, in interface order. */
  addresses: string[];
  /** What `hostname -i` answers, split on spaces (a hint only; Debian often answers 127.0.1.1). */
  hostnameAddresses: string[];
  /** Required tools that are missing (service-discover, consul, gpg, tar, systemctl, sudo|runuser). */
  missingTools: string[];
  /** `systemctl is-active service-discover` says active. */
  serviceActive: boolean;
  /** Files present in /etc/zextras/service-discover: main.json, config.json, cluster-credentials.tar.gpg. */
  hasMainJson: boolean;
  hasConfigJson: boolean;
  /** sha256 (hex) of cluster-credentials.tar.gpg, null if absent. */
  credentialsSha256: string | null;
  /** `bind_addr` from config.json, null if absent or unreadable. */
  configuredBindAddress: string | null;
  /** `consul version` first line, e.g. "Consul v1.9.3"; null if it failed. */
  consulVersion: string | null;
  /** The service-discover package's version (dpkg-query / rpm), e.g. "0.7.2-1"; null if no package manager knew it. */
  serviceDiscoverPackage: string | null;
  /**
   * The directory as setup reaches it (`ldap_master_url` in localconfig.xml, a TCP connection from the node):
   * `ok`/`unreachable` with the URL tried last, `none` without the key; absent when not checked.
   */
  directory?: { state: 'ok' | 'unreachable' | 'none'; url: string | null };
}

/** Result of reading the ACL reset index with `consul acl bootstrap`. */
export type ResetIndexReading =
  | { kind: 'index'; index: number }
  /**
   * The bootstrap succeeded: the cluster was never bootstrapped. The new management token was written, on the node
   * only, to `savedTo` (root, 0600); it never left the node.
   */
  | { kind: 'bootstrapped'; savedTo: string };

export interface BackupFile {
  /** Absolute path of the original. */
  path: string;
  /** UNHASHED for the password file: an unsalted hash of a password is what a guesser needs. */
  sha256: string;
  size: number;
  /** Octal mode string, e.g. "0600". */
  mode: string;
  owner: string;
  group: string;
}

export interface BackupManifest {
  /** Run-specific directory on the node, e.g. /var/backups/regen/<runId>. */
  dir: string;
  files: BackupFile[];
}

/** What is on a node after a setup (read-only probe of setupLeader / setupFollower). */
export interface SetupProbe {
  hasMainJson: boolean;
  hasConfigJson: boolean;
  configuredBindAddress: string | null;
  credentialsSha256: string | null;
  serviceActive: boolean;
  /** Servers only: /var/lib/service-discover/password exists. */
  hasPasswordFile: boolean;
}

export interface Member {
  /** Consul node name, e.g. "server-mail-example-com". */
  name: string;
  /** "IP:8301" */
  address: string;
  status: 'alive' | 'leaving' | 'left' | 'failed' | 'unknown';
  /** `unknown`: a member without a role tag (consul's command/members prints it so). */
  type: 'server' | 'client' | 'unknown';
}

export interface TokenInfo {
  accessorId: string;
  description: string;
  /** Policy names. */
  policies: string[];
  createIndex: number;
  /** ISO time. */
  createTime: string;
}

/** What a node shows of itself with its own credentials (proveNode): the proof it is back, not gossip alone. */
export interface NodeProof {
  /** null when `consul catalog nodes` through its own agent with its credentials' token worked; else what it said. */
  rpcError: string | null;
  /** sha256 of its consul-agent-ca.pem; null when absent. */
  caSha256: string | null;
  /** `openssl verify` of its own certificate against that CA passed. */
  certVerifies: boolean;
  /** `consul keyring -list` shows exactly the gossip key of its credentials. */
  keyringExact: boolean;
}

/** The catalog as one agent answers it (GET /v1/catalog/services, GET /v1/health/state/any). */
export interface CatalogView {
  /** Service names registered anywhere in the mesh. */
  services: string[];
  /** Every health check: its node, CheckID and status (passing, warning or critical). */
  checks: Array<{ node: string; checkId: string; status: string }>;
}

export interface NodePort {
  // ---- read-only ----------------------------------------------------------------------------------------------
  /** Preflight inspection of one node. Throws NodeUnreachableError if it cannot be reached. */
  inspect(node: string): Promise<NodeFacts>;
  /** FQDNs of the mesh servers, from `carbonio prov -l gas service-discover` (current) or `zmprov -l gas service-discover` (legacy), run as zextras: `-l` reads the directory, so a mailbox that is down does not matter. */
  meshServers(node: string, profile: Profile): Promise<string[]>;
  /** Leader from `GET 127.0.0.1:8500/v1/status/leader` on that node: the IP (port stripped), or null when there is none. */
  leaderAddress(node: string): Promise<string | null>;
  /** Members as seen with the bootstrap token taken from the node's own credentials file (decrypted on the node with the secret, sent on stdin). */
  members(node: string, secret: Secret): Promise<Member[]>;
  /** The mesh secret from /var/lib/service-discover/password (servers, after setup); null if absent. */
  readMeshSecret(node: string): Promise<Secret | null>;
  /** Does the secret decrypt the node's cluster-credentials.tar.gpg? (runs gpg on the node; secret on stdin) */
  secretOpensCredentials(node: string, secret: Secret): Promise<boolean>;
  /** Bytes of cluster-credentials.tar.gpg (it is encrypted; regen keeps only its sha256). Null if absent. */
  readCredentials(node: string): Promise<{ bytes: Buffer; sha256: string } | null>;
  /** Read-only proof that the node is back (RPC with the new token, CA, certificate, keyring); secret on stdin. */
  proveNode(node: string, secret: Secret): Promise<NodeProof>;
  /** AccessorID of the token in the node's credentials (`consul acl token read -self`); an AccessorID is not secret. */
  selfAccessor(node: string, secret: Secret): Promise<string>;
  /**
   * The catalog's services and health checks through the node's own agent: with the token of its credentials
   * (secret on stdin), or with none (null: the agent's default token answers). Throws when it cannot be read.
   */
  readCatalog(node: string, secret: Secret | null): Promise<CatalogView>;
  /** Management tokens visible with the new bootstrap token (harden step). */
  listTokens(node: string, secret: Secret): Promise<TokenInfo[]>;

  // ---- reset index (reads, but see ResetIndexReading: an unbootstrapped cluster gets bootstrapped) ------------
  readResetIndex(node: string): Promise<ResetIndexReading>;

  // ---- changes, each with its probe ---------------------------------------------------------------------------
  /** Copy the files the wipe removes into `/var/backups/regen/<runId>` keeping owner and mode. Idempotent. */
  backup(node: string, runId: string): Promise<BackupManifest>;
  /** Probe: the complete manifest if the backup of this run exists and every file's checksum matches, else null. */
  probeBackup(node: string, runId: string): Promise<BackupManifest | null>;

  /** Write the index to <data_dir>/acl-bootstrap-reset as user service-discover. */
  writeResetFile(node: string, index: number): Promise<void>;
  /** Probe: the index in the reset file, or null if there is none. */
  probeResetFile(node: string): Promise<number | null>;

  /**
   * Consul's outage recovery for a mesh of several servers: write <data_dir>/raft/peers.json naming only this node
   * (its data/node-id and bindAddress:8300), as user service-discover, so that its restart with the new CA forms a
   * one-server raft and can elect itself; the other servers rejoin it when they are set up again. Consul deletes the
   * file once it has read it.
   */
  writeRaftRecovery(node: string, bindAddress: string): Promise<void>;
  /** Probe: the peers.json content's addresses, or null when there is no such file. */
  probeRaftRecovery(node: string): Promise<string[] | null>;
  /**
   * Read-only: whether <data_dir>/raft/peers.info exists. Consul reads peers.json only where it does; where it is
   * missing, Consul writes it and deletes peers.json unread (agent/consul/server.go setupRaft).
   */
  probePeersInfo(node: string): Promise<boolean>;

  /**
   * Move a stopped mesh server's data/raft into the run's backup directory, so that it joins the new leader as a
   * fresh voter (probe: probeRaftAside).
   */
  moveRaftAside(node: string, runId: string): Promise<void>;
  /** Probe: `present` while data/raft exists; `aside` when the backup holds it; `none` when there never was any. */
  probeRaftAside(node: string, runId: string): Promise<'present' | 'aside' | 'none'>;

  /** `systemctl stop service-discover` (probe: inspect().serviceActive / serviceActive()). */
  stopService(node: string): Promise<void>;
  startService(node: string): Promise<void>;
  serviceActive(node: string): Promise<boolean>;

  /** Remove what the profile's wipe removes: current → config.json, main.json, *.pem; legacy → *.pem. */
  wipe(node: string, profile: Profile): Promise<void>;
  /** Probe: true when nothing the wipe removes is left. */
  probeWipe(node: string, profile: Profile): Promise<boolean>;

  /** `service-discover setup BIND --first-instance`, secret kept off the command line where possible. */
  setupLeader(node: string, bindAddress: string, secret: Secret): Promise<void>;
  /** `service-discover setup BIND` (join) for a mesh server or an agent, secret kept off the command line where possible. */
  setupFollower(node: string, bindAddress: string, secret: Secret, kind: MeshKind): Promise<void>;
  /** Probe of either setup. */
  probeSetup(node: string): Promise<SetupProbe>;

  /** Write cluster-credentials.tar.gpg (root, 0600) and check the sha256 on the node afterwards. */
  writeCredentials(node: string, bytes: Buffer, sha256: string): Promise<void>;
  /** Probe: sha256 of the node's credentials file, null if absent. */
  credentialsSha256(node: string): Promise<string | null>;

  /** Delete one ACL token (harden step); probe: listTokens no longer has it. */
  deleteToken(node: string, secret: Secret, accessorId: string): Promise<void>;

  // ---- regen's own state on the node (machines/cluster-lock.ts, machines/mirror.ts) ---------------------------
  /** Atomic `mkdir` of the lock directory; taken → the holder and token are written; else the current holder text. */
  lockTake(node: string, token: string, holder: string): Promise<{ taken: boolean; current: string | null }>;
  /** Replace the holder (and token) only while the lock's token is `expectToken`; false when it is not. */
  lockUpdate(node: string, expectToken: string, token: string, holder: string): Promise<boolean>;
  /** Remove the lock only while its token is `expectToken`; false when it is not (or there is no lock). */
  lockRemove(node: string, expectToken: string): Promise<boolean>;
  /**
   * Write the run's mirror (tmp + rename, root only) while this node's lock token is `token`; 'lock-lost' when
   * another token holds it (nothing written).
   */
  mirrorWrite(node: string, runId: string, text: string, token: string): Promise<'written' | 'lock-lost'>;
  /** Probe: the lock holder, the mirror files and the traces a run leaves (backups, reset file, wiped config, unit). */
  regenTraces(node: string): Promise<RegenTraces>;

  /** Release connections. */
  close(): Promise<void>;

  /** The run the following commands belong to (their audit rows are filed under it); set by the runner. */
  bindRun?(runId: string): void;
  /**
   * The same port, its commands bound to `signal`: aborting it stops the command in flight (the machine passes
   * the signal of the invoked actor, so stopping the machine stops the remote command). Optional: a port
   * without it runs its commands to the end.
   */
  withSignal?(signal: AbortSignal): NodePort;

  // ---- the leader's RPC hold for its setup (machines/rpc-hold.ts) ------------------------------------------------
  /** Write RPC_HOLD_FILE with RPC_HOLD_TEXT (service-discover, 0600), replacing any other content. */
  writeRpcHold(node: string): Promise<void>;
  /** Probe of both: RPC_HOLD_FILE's text, null when there is no such file. */
  probeRpcHold(node: string): Promise<string | null>;
  /** Remove RPC_HOLD_FILE (nothing to do when it is gone). */
  removeRpcHold(node: string): Promise<void>;
}

/** What a node holds of regen's runs (read-only). */
export interface RegenTraces {
  /** Text of the lock holder file, null when there is no lock. */
  lock: string | null;
  /** Mirror files: run id (from the file name) and text. */
  mirrors: Array<{ runId: string; text: string }>;
  /** Run ids with a backup directory under /var/backups/regen. */
  backupRuns: string[];
  resetFile: boolean;
  hasMainJson: boolean;
  hasConfigJson: boolean;
  serviceActive: boolean;
}

/** regen's root-only directory on every node: the cluster lock and the run mirrors. */
export const REGEN_STATE_DIR = '/var/lib/regen';
export const LOCK_DIR = `${REGEN_STATE_DIR}/lock`;
export const MIRROR_DIR = `${REGEN_STATE_DIR}/runs`;

/** The files the wipe removes, per profile (also what the backup keeps). */
export const SD_CONFIG_DIR = '/etc/zextras/service-discover';
export const SD_HOME = '/var/lib/service-discover';
export const SD_DATA_DIR = '/var/lib/service-discover/data';
export const RESET_FILE = `${SD_DATA_DIR}/acl-bootstrap-reset`;
export const PEERS_FILE = `${SD_DATA_DIR}/raft/peers.json`;
export const PEERS_INFO_FILE = `${SD_DATA_DIR}/raft/peers.info`;
export const NODE_ID_FILE = `${SD_DATA_DIR}/node-id`;
/** A server's raft state (term, configuration, log). */
export const RAFT_DIR = `${SD_DATA_DIR}/raft`;
/** Serf's persisted gossip keyrings (LAN; WAN on servers): they win over `encrypt` once they exist. */
export const SERF_KEYRINGS = [`${SD_DATA_DIR}/serf/local.keyring`, `${SD_DATA_DIR}/serf/remote.keyring`] as const;
export const CREDENTIALS_FILE = `${SD_CONFIG_DIR}/cluster-credentials.tar.gpg`;
export const MAIN_JSON = `${SD_CONFIG_DIR}/main.json`;
export const CONFIG_JSON = `${SD_CONFIG_DIR}/config.json`;
export const PASSWORD_FILE = `${SD_HOME}/password`;
/**
 * regen's drop-in raising consul's RPC hold for the leader's setup (machines/rpc-hold.ts). Named to sort after
 * config.json, main.json and the carbonio-*.hcl service definitions, so no other file of the directory wins over it;
 * the wipe never names it.
 */
export const RPC_HOLD_FILE = `${SD_CONFIG_DIR}/zz-regen-rpc-hold.json`;
/**
 * 25 s: the setup's first bootstrap call goes out 250 ms after the unit started and its loop gives up at 30 s. A hold
 * of 25 s answers that first call with the token for any election up to 25.25 s; a longer one still ends in consul's
 * own `No cluster leader` (at 25.25 s, before the loop's 30 s), so the failure names its cause instead of the setup's
 * generic timeout, and the 4.75 s left cover the call's own time.
 */
export const RPC_HOLD_TIMEOUT = '25s';
/** The drop-in's whole content: performance.rpc_hold_timeout as a Go duration string. */
export const RPC_HOLD_TEXT = `{"performance":{"rpc_hold_timeout":"${RPC_HOLD_TIMEOUT}"}}\n`;
export const BACKUP_ROOT = '/var/backups/regen';
/** The sha256 recorded for a backed-up file that must not be hashed (the password file): only size is kept. */
export const UNHASHED = '-';
