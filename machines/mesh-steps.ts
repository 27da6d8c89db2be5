/**
 * Steps for a mesh with several servers (Consul's raft outage recovery, agent/consul/server.go setupRaft): before
 * the leader restarts alone from peers.json, every other mesh server is stopped (after its backup) and its
 * data/raft is moved into that node's backup directory. Stopped, the others cannot elect a rival leader with the
 * old CA; without their old raft data, they join the new leader as fresh voters and cannot bring back an old log
 * or a higher term that would truncate the new one (the new bootstrap token, the new agent tokens).
 *
 *   step               effect (NodePort)              probe
 *   mesh.stop-server   stopService                    serviceActive
 *   mesh.raft-aside    moveRaftAside(runId)           probeRaftAside: data/raft gone
 *
 * Each step has the shape of a durableStep (name, node, probe, apply).
 */
import { durableStep } from './durable.js';
import { NeedsOperatorError } from './errors.js';
import type { PlannedNode } from './plan.js';
import type { StepDeps } from './steps.js';

export const MESH_STEP_NAMES = ['mesh.stop-server', 'mesh.raft-aside'] as const;

/** The mesh servers other than the leader, in plan order. */
export function otherServers(nodes: readonly PlannedNode[], leader: PlannedNode): PlannedNode[] {
  return nodes.filter((n) => n.kind === 'server' && n.name !== leader.name);
}

async function requireBackup(d: StepDeps, node: PlannedNode): Promise<void> {
  if (d.store.listBackups(d.runId, node.name).length > 0) return;
  if (await d.port.probeBackup(node.name, d.runId)) return;
  throw new NeedsOperatorError(`refusing to stop ${node.name} for the raft recovery: its backup for this run is missing or does not verify`, {
    node: node.name,
    hint: 'regen resume (the backup step runs again)',
  });
}

export async function stopOtherServer(d: StepDeps, node: PlannedNode, round: number): Promise<void> {
  await requireBackup(d, node);
  await durableStep<null>(d.journal, {
    step: 'mesh.stop-server',
    node: node.name,
    round,
    probe: async () => ((await d.port.serviceActive(node.name)) ? { state: 'not-done' } : { state: 'done', result: null }),
    apply: async () => {
      await d.port.stopService(node.name);
      return null;
    },
  });
}

export async function moveRaftAside(d: StepDeps, node: PlannedNode, round: number): Promise<void> {
  await durableStep<null>(d.journal, {
    step: 'mesh.raft-aside',
    node: node.name,
    round,
    probe: async () => ((await d.port.probeRaftAside(node.name, d.runId)) === 'present' ? { state: 'not-done' } : { state: 'done', result: null }),
    apply: async () => {
      await d.port.moveRaftAside(node.name, d.runId);
      return null;
    },
  });
}

/** Every other server stopped first (none may lead a rival cluster), then each one's raft data set aside. */
export async function isolateOtherServers(d: StepDeps, servers: readonly PlannedNode[], round: number): Promise<void> {
  for (const s of servers) await stopOtherServer(d, s, round);
  for (const s of servers) await moveRaftAside(d, s, round);
}
