/**
 * The raft recovery needs Consul's peers.info beside peers.json. Consul (agent/consul/server.go setupRaft) reads
 * data/raft/peers.json only where data/raft/peers.info exists; where it is missing, Consul writes it and deletes
 * peers.json unread. The leader would then restart with its old configuration of several servers, all stopped, and
 * could not be elected alone: the setup's ACL bootstrap fails on "No cluster leader" with the mesh down.
 *
 * Consul writes the sentinel at every start where it is missing, so a running leader without it keeps its raft
 * state somewhere else (another data_dir) or had it removed: regen's picture of the node is wrong, and creating the
 * sentinel by hand would hide that. regen refuses instead, before anything changes, and again right before writing
 * peers.json.
 */
import { applies, STEPS } from './catalogue.js';
import { NeedsOperatorError, RegenError } from './errors.js';
import type { PlannedNode } from './plan.js';
import { PEERS_INFO_FILE, RAFT_DIR, type MeshKind, type NodePort } from './port.js';

function why(leader: string): string {
  return (
    `${leader} has no ${PEERS_INFO_FILE}: Consul reads the raft recovery file (peers.json) only where that file exists, ` +
    'and otherwise deletes it unread, so the leader could not be elected alone'
  );
}

function advice(leader: string): string {
  return (
    `check that service-discover keeps its raft data in ${RAFT_DIR} on ${leader}; if it does, restart service-discover there ` +
    '(Consul writes peers.info when it starts) and wait for a leader'
  );
}

/** At the leader check, when the run will need the raft recovery: refuse before anything changes. */
export async function refuseLeaderWithoutPeersInfo(port: Pick<NodePort, 'probePeersInfo'>, leader: string, kinds: Record<string, MeshKind>): Promise<void> {
  const meshServers = Object.values(kinds).filter((k) => k === 'server').length;
  if (!applies(STEPS.raftRecovery, { meshServers, revoke: false })) return;
  if (await port.probePeersInfo(leader)) return;
  throw new RegenError('preflight', `${why(leader)} (nothing was changed)`, { node: leader, hint: `${advice(leader)}, then run regen start again` });
}

/** Right before peers.json is written: the same check, for a sentinel removed since the leader check. */
export async function requirePeersInfo(port: Pick<NodePort, 'probePeersInfo'>, leader: PlannedNode): Promise<void> {
  if (await port.probePeersInfo(leader.name)) return;
  throw new NeedsOperatorError(`${why(leader.name)}; peers.json was not written`, { node: leader.name, hint: `${advice(leader.name)}, then regen resume` });
}
