/**
 * Raft as the mesh servers run it, reduced to what decides who leads and whose log survives.
 *
 * Each mesh server keeps its own term, configuration (the voters it knows) and log in its data dir
 * (`data/raft`); the shared state stores them per node (`NodeRuntime.raft`). Servers talk raft over TLS RPC
 * (port 8300), so two up servers reach each other only when they trust the same CA: the caller hands `settle` the
 * up servers with that group key. Rules and sources: test/sim/FIDELITY.md, section "Raft, serf, TLS, RPC".
 *
 * - A server that hears a higher term takes it; a leader with a lower term steps down (raft.go).
 * - A candidate wins with the votes of a majority of the configuration IT holds; a voter grants its vote only to a
 *   log at least as up to date as its own (last term, then length: raft.go requestVote).
 * - The leader forces its log on its followers: a follower's conflicting entries are truncated (raft.go
 *   appendEntries), and it takes the leader's configuration.
 * - The leader adds servers it meets over gossip as voters (Consul leader.go joinConsulServer).
 * - A leader writes a coordinate batch about every 5 s while it runs (Consul coordinate_endpoint.go batchUpdate):
 *   the log of a cluster grows while it runs, which is what makes a rival cluster's log win an election.
 */

import { INSTANT_ELECTION, nextStandAt, timerFired, type ElectionSettings } from './election.js';

export interface RaftEntry {
  term: number;
  /** What the entry carries: `token:<accessor>`, `barrier:<leader>`, `coordinate:<leader>`, `config:<leader>`… */
  ref: string;
}

export interface RaftServer {
  term: number;
  /** Voters, as inventory node names. Empty: a fresh data dir (no raft state). */
  config: string[];
  log: RaftEntry[];
  leader: boolean;
  /** When the leader last wrote a coordinate batch (ms since the epoch). */
  tickAt: number;
}

export interface UpServer {
  node: string;
  /** Who can reach whom over RPC: servers with the same key (the CA they trust). */
  group: string;
  /** Gossip key fingerprint: the leader only meets servers that share its key. */
  gossip: string;
  /** When its unit started (ms since the epoch): its election timer runs from then (election.ts). */
  since?: number;
}

/** Coordinate batches a leader writes at most per settle (bounds the log of a long-idle state). */
const MAX_TICKS = 20;
export const COORDINATE_PERIOD_MS = 5000;

export function emptyRaft(): RaftServer {
  return { term: 0, config: [], log: [], leader: false, tickAt: 0 };
}

function lastTerm(r: RaftServer): number {
  return r.log[r.log.length - 1]?.term ?? 0;
}

/** Raft's election restriction: is `c`'s log at least as up to date as `v`'s? */
export function upToDate(c: RaftServer, v: RaftServer): boolean {
  return lastTerm(c) > lastTerm(v) || (lastTerm(c) === lastTerm(v) && c.log.length >= v.log.length);
}

/** Outage recovery from peers.json: the configuration is replaced, term and log are kept (raft RecoverCluster). */
export function recoverFromPeers(r: RaftServer, peers: string[]): void {
  r.config = [...peers];
  r.leader = false;
}

/** A first instance that finds nobody: bootstraps a one-server configuration. */
export function bootstrapAlone(r: RaftServer, node: string): void {
  if (r.config.length === 0 && r.log.length === 0) {
    r.config = [node];
    r.log.push({ term: 1, ref: `config:${node}` });
    r.term = Math.max(r.term, 1);
  }
}

/** Appends to the leader's log and replicates to the followers it reaches at once (the write commits). */
export function append(servers: Record<string, RaftServer>, leader: string, ref: string, followers: string[]): void {
  const l = servers[leader];
  if (l === undefined) return;
  l.log.push({ term: l.term, ref });
  for (const f of followers) replicate(l, servers[f]);
}

/** Forces the leader's log on a follower: keeps the common prefix, truncates what conflicts, appends the rest. */
export function replicate(l: RaftServer, f: RaftServer | undefined): void {
  if (f === undefined || f === l) return;
  let i = 0;
  while (i < f.log.length && i < l.log.length && f.log[i]?.term === l.log[i]?.term && f.log[i]?.ref === l.log[i]?.ref) i++;
  f.log = [...f.log.slice(0, i), ...l.log.slice(i).map((e) => ({ ...e }))];
  f.config = [...l.config];
  f.term = l.term;
  f.leader = false;
}

export function hasRef(r: RaftServer | undefined, ref: string): boolean {
  return r !== undefined && r.log.some((e) => e.ref === ref);
}

/**
 * Brings every group of up servers to a stable state: terms met, stale leaders stepped down, one election held
 * where there is no leader, new servers added, logs replicated. `order` is the preference of who stands first
 * (the preferred leader, then the inventory order); servers with a higher term stand before it (they are the ones
 * whose election timer fired).
 */
export function settle(servers: Record<string, RaftServer>, up: UpServer[], order: string[], nowMs: number, election: ElectionSettings = INSTANT_ELECTION): void {
  const upNames = new Set(up.map((u) => u.node));
  for (const [n, r] of Object.entries(servers)) if (!upNames.has(n)) r.leader = false;
  const groups = new Map<string, UpServer[]>();
  for (const u of up) groups.set(u.group, [...(groups.get(u.group) ?? []), u]);
  for (const g of groups.values()) settleGroup(servers, g, order, nowMs, election);
}

function settleGroup(servers: Record<string, RaftServer>, g: UpServer[], order: string[], nowMs: number, election: ElectionSettings): void {
  const rs = g.map((u) => ({ u, r: servers[u.node] ?? (servers[u.node] = emptyRaft()) }));
  const before = new Map(rs.map(({ u, r }) => [u.node, r.term]));
  const top = Math.max(...rs.map(({ r }) => r.term));
  for (const { r } of rs) {
    if (r.term < top) r.leader = false;
    r.term = top;
  }
  const inGroup = (c: RaftServer): number => rs.filter(({ u }) => c.config.includes(u.node)).length;
  // A leader that cannot reach a quorum of its configuration steps down (raft.go checkLeaderLease).
  for (const { r } of rs) if (r.leader && inGroup(r) * 2 <= r.config.length) r.leader = false;
  let leader = rs.find(({ r }) => r.leader);
  if (leader === undefined) {
    // Nobody's election timer has fired yet (election.ts): no election, no term moves.
    if (nextStandAt(g, nowMs, election) !== null) return;
    const rank = (n: string): number => order.indexOf(n) + (order.includes(n) ? 0 : order.length);
    const candidates = [...rs].sort((a, b) => (before.get(b.u.node) ?? 0) - (before.get(a.u.node) ?? 0) || rank(a.u.node) - rank(b.u.node));
    leader = candidates.find(({ u, r }) => timerFired(u, nowMs, election) && wins(u.node, r, rs));
    if (leader === undefined) {
      // A failed election: every server that could stand bumps its term (as its election timer fires again).
      for (const { r } of rs) if (r.config.length > 0) r.term += 1;
      return;
    }
    for (const { r } of rs) r.term = top + 1;
    leader.r.leader = true;
    leader.r.tickAt = nowMs;
    leader.r.log.push({ term: leader.r.term, ref: `barrier:${leader.u.node}` });
  }
  lead(leader, rs, nowMs);
}

function wins(node: string, c: RaftServer, rs: Array<{ u: UpServer; r: RaftServer }>): boolean {
  if (!c.config.includes(node)) return false;
  const votes = rs.filter(({ u, r }) => c.config.includes(u.node) && upToDate(c, r)).length;
  return votes * 2 > c.config.length;
}

function lead(l: { u: UpServer; r: RaftServer }, rs: Array<{ u: UpServer; r: RaftServer }>, nowMs: number): void {
  const ticks = Math.min(MAX_TICKS, Math.floor((nowMs - l.r.tickAt) / COORDINATE_PERIOD_MS));
  for (let i = 0; i < ticks; i++) l.r.log.push({ term: l.r.term, ref: `coordinate:${l.u.node}` });
  if (ticks > 0) l.r.tickAt = nowMs;
  for (const { u } of rs) {
    if (!l.r.config.includes(u.node) && u.gossip === l.u.gossip) {
      l.r.config = [...l.r.config, u.node];
      l.r.log.push({ term: l.r.term, ref: `config:${l.u.node}` });
    }
  }
  for (const { u, r } of rs) if (u.node !== l.u.node && l.r.config.includes(u.node)) replicate(l.r, r);
}
