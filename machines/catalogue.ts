/**
 * The step catalogue: every remote step of the procedure, declared once. Everything that lists steps derives
 * from it: the statechart's order, the follower chain, the plan, the status columns, the live view's text, the
 * bench's latency keys and the health oracles. The command text behind each NodePort method is owned by
 * adapters/carbonio/commands.ts; the code of each step is in machines/steps.ts.
 *
 * Adding a step is one entry here (in its place in its chain), its function in steps.ts, and its command.
 * The order of the entries is the order of the procedure.
 */
import { RPC_HOLD_FILE, RPC_HOLD_TEXT, RPC_HOLD_TIMEOUT, type NodePort } from './port.js';

/**
 * Which nodes run a step: every node (before any change), the whole mesh as the leader's agent shows it (with the
 * backups, before any change), the leader, every other mesh server (while the leader recovers alone), each
 * follower, or the leader at the end.
 */
export type Chain = 'all' | 'mesh' | 'leader' | 'servers' | 'follower' | 'final' | 'harden';

/** A condition under which a step runs at all (absent: always). */
export type StepCondition = 'several-servers' | 'revoke';

export interface StepEntry {
  /** As journaled (and shown by regen log / status); never renamed: journals of earlier runs name it. */
  readonly name: string;
  readonly chain: Chain;
  /** The statechart state that runs it, as a dotted path (a follower step runs inside `followers`). */
  readonly state: string;
  /** NodePort methods that make the change (a read-only step lists the reads it makes). */
  readonly effect: readonly (keyof NodePort)[];
  /** NodePort methods that observe whether the change is there; empty: the step changes nothing. */
  readonly probe: readonly (keyof NodePort)[];
  /** The `regen status` column; null: not shown per node. */
  readonly column: string | null;
  /** One word or two, for a chain of steps on one line (the plan). */
  readonly short: string;
  /** What it amounts to on the node, as the runbook would type it (the live view's "now running"). */
  readonly command: string;
  /** What it changes, in words, for the plan. */
  readonly changes: string;
  /** Part of the mesh downtime (from the leader's stop until the last follower is set up again). */
  readonly downtime: boolean;
  readonly when?: StepCondition;
  /** The program the node runs for the effect (the name the lab's latency fault slows); null: a plain file op. */
  readonly program: string | null;
}

export const STEPS = {
  backup: {
    name: 'backup',
    chain: 'all',
    state: 'backup',
    effect: ['backup'],
    probe: ['probeBackup'],
    column: 'backup',
    short: 'backup',
    command: 'cp -a … /var/backups/regen/<run>/',
    changes: 'copies config.json, main.json, the credentials, *.pem, the password file and the gossip keyrings to the run\'s backup directory (owners, modes, sha256 kept)',
    downtime: false,
    program: null,
  },
  catalogBefore: {
    name: 'mesh.catalog-before',
    chain: 'mesh',
    state: 'backup',
    effect: ['readCatalog'],
    probe: [],
    column: null,
    short: 'catalog',
    command: 'curl 127.0.0.1:8500/v1/catalog/services, /v1/health/state/any',
    changes: 'nothing: records the services registered in the catalog and the health checks passing, as the leader\'s agent shows them ("not recorded" when it cannot)',
    downtime: false,
    program: 'curl',
  },
  resetIndex: {
    name: 'leader.reset-index',
    chain: 'leader',
    state: 'leader.resetIndex',
    effect: ['readResetIndex'],
    probe: [],
    column: 'reset-index',
    short: 'reset-index',
    command: 'consul acl bootstrap',
    changes: 'nothing: reads the ACL reset index from consul\'s refusal',
    downtime: false,
    program: 'consul acl bootstrap',
  },
  resetFile: {
    name: 'leader.reset-file',
    chain: 'leader',
    state: 'leader.resetFile',
    effect: ['writeResetFile'],
    probe: ['probeResetFile'],
    column: 'reset-file',
    short: 'reset-file',
    command: 'echo N > …/data/acl-bootstrap-reset',
    changes: 'writes that index to data/acl-bootstrap-reset (as service-discover)',
    downtime: false,
    program: null,
  },
  leaderStop: {
    name: 'leader.stop',
    chain: 'leader',
    state: 'leader.stop',
    effect: ['stopService'],
    probe: ['serviceActive'],
    column: 'stop',
    short: 'stop',
    command: 'systemctl stop service-discover',
    changes: 'stops service-discover: the mesh is down from here',
    downtime: true,
    program: 'systemctl stop',
  },
  leaderWipe: {
    name: 'leader.wipe',
    chain: 'leader',
    state: 'leader.wipe',
    effect: ['wipe'],
    probe: ['probeWipe'],
    column: 'wipe',
    short: 'wipe',
    command: 'rm config.json main.json *.pem data/serf/*.keyring',
    changes: 'removes config.json, main.json (where the release checks for it), the *.pem certificates and the gossip keyrings; all backed up',
    downtime: true,
    program: null,
  },
  stopServer: {
    name: 'mesh.stop-server',
    chain: 'servers',
    state: 'leader.raftRecovery',
    effect: ['stopService'],
    probe: ['serviceActive'],
    column: 'isolate',
    short: 'stop (raft)',
    command: 'systemctl stop service-discover',
    changes: 'stops every other mesh server (after its backup) before the leader restarts alone, so none can lead a rival cluster',
    downtime: true,
    when: 'several-servers',
    program: 'systemctl stop',
  },
  raftAside: {
    name: 'mesh.raft-aside',
    chain: 'servers',
    state: 'leader.raftRecovery',
    effect: ['moveRaftAside'],
    probe: ['probeRaftAside'],
    column: 'raft-aside',
    short: 'raft aside',
    command: 'mv data/raft → backup',
    changes: 'moves every other mesh server\'s data/raft into its backup, so it joins the new leader as a fresh voter',
    downtime: true,
    when: 'several-servers',
    program: null,
  },
  raftRecovery: {
    name: 'leader.raft-recovery',
    chain: 'leader',
    state: 'leader.raftRecovery',
    effect: ['writeRaftRecovery'],
    probe: ['probeRaftRecovery', 'probePeersInfo'],
    column: 'raft-recovery',
    short: 'raft-recovery',
    command: 'write data/raft/peers.json (this server alone)',
    changes: 'writes data/raft/peers.json naming the leader alone (Consul outage recovery; several mesh servers only); refused where data/raft/peers.info is missing, since Consul would delete peers.json unread',
    downtime: true,
    when: 'several-servers',
    program: null,
  },
  rpcHold: {
    name: 'leader.rpc-hold',
    chain: 'leader',
    state: 'leader.rpcHold',
    effect: ['writeRpcHold'],
    probe: ['probeRpcHold'],
    column: 'rpc-hold',
    short: 'rpc-hold',
    command: `write ${RPC_HOLD_FILE}`,
    changes: `drops in ${RPC_HOLD_TEXT.trim()} (service-discover, 0600): the consul the setup starts holds its first bootstrap call through a slow election (up to ${RPC_HOLD_TIMEOUT}) instead of answering No cluster leader after the default 7 s`,
    downtime: true,
    program: null,
  },
  leaderSetup: {
    name: 'leader.setup',
    chain: 'leader',
    state: 'leader.setup',
    effect: ['setupLeader'],
    probe: ['probeSetup'],
    column: 'setup',
    short: 'setup',
    command: 'service-discover setup-wizard --first-instance',
    changes: 'service-discover setup-wizard --first-instance on a terminal: new CA, certificates, bootstrap token, gossip key and credentials (the secret typed into its dialog, on no command line)',
    downtime: true,
    program: 'service-discover setup',
  },
  leaderVerify: {
    name: 'leader.verify',
    chain: 'leader',
    state: 'leader.verify',
    effect: ['members'],
    probe: [],
    column: 'verify',
    short: 'verify',
    command: 'consul members',
    changes: 'nothing: checks the node is back: alive and of the right type as the leader sees it, a catalog query through its own agent with the new token, its certificate and CA the leader\'s, its keyring the new key',
    downtime: true,
    program: 'consul members',
  },
  rpcHoldRemove: {
    name: 'leader.rpc-hold-remove',
    chain: 'leader',
    state: 'leader.rpcHoldRemove',
    effect: ['removeRpcHold'],
    probe: ['probeRpcHold'],
    column: 'rpc-hold-off',
    short: 'rpc-hold off',
    command: `rm ${RPC_HOLD_FILE}`,
    changes: `removes that drop-in; nothing restarts consul, so the ${RPC_HOLD_TIMEOUT} hold lives only in the process the setup started, and its next start takes the default again`,
    downtime: true,
    program: null,
  },
  copyCredentials: {
    name: 'follower.copy-credentials',
    chain: 'follower',
    state: 'followers',
    // The leader's file is read first (readCredentials); the change is the write on the follower.
    effect: ['writeCredentials'],
    probe: ['credentialsSha256'],
    column: 'copy-credentials',
    short: 'copy',
    command: 'copy cluster-credentials.tar.gpg',
    changes: 'copies the leader\'s new cluster-credentials.tar.gpg to the node (sha256 checked)',
    downtime: true,
    program: null,
  },
  followerStop: {
    name: 'follower.stop',
    chain: 'follower',
    state: 'followers',
    effect: ['stopService'],
    probe: ['serviceActive'],
    column: 'stop',
    short: 'stop',
    command: 'systemctl stop service-discover',
    changes: 'stops service-discover on the node',
    downtime: true,
    program: 'systemctl stop',
  },
  followerWipe: {
    name: 'follower.wipe',
    chain: 'follower',
    state: 'followers',
    effect: ['wipe'],
    probe: ['probeWipe'],
    column: 'wipe',
    short: 'wipe',
    command: 'rm config.json main.json *.pem data/serf/*.keyring',
    changes: 'removes config.json, main.json (where the release checks for it), the *.pem certificates and the gossip keyrings; all backed up',
    downtime: true,
    program: null,
  },
  followerSetup: {
    name: 'follower.setup',
    chain: 'follower',
    state: 'followers',
    effect: ['setupFollower'],
    probe: ['serviceActive', 'members'],
    column: 'setup',
    short: 'setup',
    command: 'service-discover setup-wizard',
    changes: 'service-discover setup-wizard on a terminal: joins the new mesh with the copied credentials (the secret typed into its dialog)',
    downtime: true,
    program: 'service-discover setup',
  },
  followerVerify: {
    name: 'follower.verify',
    chain: 'follower',
    state: 'followers',
    effect: ['members'],
    probe: [],
    column: 'verify',
    short: 'verify',
    command: 'consul members',
    changes: 'nothing: checks the node is back: alive and of the right type as the leader sees it, a catalog query through its own agent with the new token, its certificate and CA the leader\'s, its keyring the new key',
    downtime: true,
    program: 'consul members',
  },
  finalVerify: {
    name: 'final.verify',
    chain: 'final',
    state: 'finalVerify',
    effect: ['members', 'credentialsSha256'],
    probe: [],
    column: 'final',
    short: 'final check',
    command: 'consul members; sha256sum',
    changes: 'nothing: every node back (as each verify checks it), every credentials file equal to the leader\'s',
    downtime: false,
    program: 'consul members',
  },
  catalogAfter: {
    name: 'final.catalog',
    chain: 'final',
    state: 'finalVerify',
    effect: ['readCatalog'],
    probe: [],
    column: null,
    short: 'catalog compare',
    command: 'curl 127.0.0.1:8500/v1/catalog/services, /v1/health/state/any',
    changes: 'nothing: reads the catalog again with the new token; a service missing since the backup, or a check that passed then and fails now, is reported (regen status)',
    downtime: false,
    program: 'curl',
  },
  revoke: {
    name: 'harden.revoke',
    chain: 'harden',
    state: 'harden',
    effect: ['deleteToken'],
    probe: ['listTokens'],
    column: null,
    short: 'revoke',
    command: 'consul acl token delete',
    changes: 'keeps the token of the new credentials, deletes the older management tokens; a newer one stops the run (--revoke-old-tokens)',
    downtime: false,
    when: 'revoke',
    program: 'consul acl token delete',
  },
  nodeTokens: {
    name: 'harden.node-tokens',
    chain: 'harden',
    state: 'harden',
    effect: ['deleteToken'],
    probe: ['listTokens', 'members'],
    column: null,
    short: 'revoke replaced node tokens',
    command: 'consul acl token delete',
    changes: 'deletes the old server-*/agent-* token of each node set up again (its setup made a new one for the same policy and never deletes the old); any other old node token is only listed in the journal (regen log) (--revoke-old-tokens)',
    downtime: false,
    when: 'revoke',
    program: 'consul acl token delete',
  },
} as const satisfies Record<string, StepEntry>;

export type StepKey = keyof typeof STEPS;
export type StepName = (typeof STEPS)[StepKey]['name'];
/** The statechart states that run steps, as dotted paths. */
export type StepState = (typeof STEPS)[StepKey]['state'];
/** Keys of the steps of one chain, for tables that must name an implementation for each of them. */
export type ChainKey<C extends Chain> = { [K in StepKey]: (typeof STEPS)[K]['chain'] extends C ? K : never }[StepKey];

export interface CatalogueEntry extends StepEntry {
  readonly key: StepKey;
  readonly name: StepName;
  readonly state: StepState;
}

/** Every step, in the order of the procedure. */
export const CATALOGUE: readonly CatalogueEntry[] = (Object.keys(STEPS) as StepKey[]).map((key) => ({ key, ...(STEPS[key] as StepEntry) }) as CatalogueEntry);

export const STEP_NAMES: readonly StepName[] = CATALOGUE.map((e) => e.name);

export function chainOf(chain: Chain): CatalogueEntry[] {
  return CATALOGUE.filter((e) => e.chain === chain);
}

export function stepEntry(name: string): CatalogueEntry | undefined {
  return CATALOGUE.find((e) => e.name === name);
}

/** What decides whether a conditional step runs in a given run. */
export interface RunShape {
  meshServers: number;
  revoke: boolean;
}

export function applies(e: StepEntry, shape: RunShape): boolean {
  if (e.when === 'several-servers') return shape.meshServers > 1;
  if (e.when === 'revoke') return shape.revoke;
  return true;
}

/**
 * The steps one node goes through, in order: the backup, then its role's chain (the leader also runs the final
 * check; another mesh server is also isolated while the leader recovers alone).
 */
export function stepsForRole(role: 'leader' | 'follower', shape: RunShape, kind: 'server' | 'agent' | null = null): CatalogueEntry[] {
  const chains: Chain[] = role === 'leader' ? ['all', 'mesh', 'leader', 'final'] : kind === 'server' ? ['all', 'servers', 'follower'] : ['all', 'follower'];
  return CATALOGUE.filter((e) => chains.includes(e.chain) && applies(e, shape));
}

/** The statechart's next state after a step of the leader chain: conditional steps are guarded, in catalogue order. */
export function leaderStateAfter(state: StepState, end: string): { guard?: StepCondition; target: string }[] {
  const chain = chainOf('leader');
  const i = chain.findIndex((e) => e.state === state);
  if (i < 0) throw new Error(`${state} is not a state of the leader chain`);
  const out: { guard?: StepCondition; target: string }[] = [];
  for (const e of chain.slice(i + 1)) {
    const target = e.state.slice('leader.'.length);
    if (e.when === undefined) return [...out, { target }];
    out.push({ guard: e.when, target });
  }
  return [...out, { target: end }];
}

/**
 * The `regen status` columns, in the order of the procedure: each chain's columns in its own order, a column
 * of a later chain placed before the next column of its chain that is already there.
 */
export function statusColumns(): string[] {
  const cols: string[] = [];
  const chains = new Map<Chain, CatalogueEntry[]>();
  for (const e of CATALOGUE) chains.set(e.chain, [...(chains.get(e.chain) ?? []), e]);
  for (const e of CATALOGUE) {
    if (e.column === null || cols.includes(e.column)) continue;
    const mine = chains.get(e.chain) ?? [];
    const later = mine.slice(mine.indexOf(e) + 1).find((x) => x.column !== null && cols.includes(x.column));
    if (later?.column) cols.splice(cols.indexOf(later.column), 0, e.column);
    else cols.push(e.column);
  }
  return cols;
}

/** The status columns that apply to a node of this role. */
export function columnsForRole(role: 'leader' | 'follower'): Set<string> {
  return new Set(stepsForRole(role, { meshServers: 2, revoke: true }, 'server').flatMap((e) => (e.column === null ? [] : [e.column])));
}
