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
import { STEPS } from './catalogue.js';
import { durableStep } from './durable.js';
import { NeedsOperatorError } from './errors.js';
import { revokeReplacedNodeTokens, type NodeTokenEntry } from './node-tokens.js';
import type { Secret } from './secret.js';
import type { PlannedNode } from './plan.js';
import type { StepDeps } from './steps.js';

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
    step: STEPS.stopServer.name,
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
    step: STEPS.raftAside.name,
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

export interface HardenReport {
  /** AccessorID of the new bootstrap token, the one kept. */
  kept: string;
  revoked: string[];
  /** Old `server-*` / `agent-*` tokens replaced by the re-setup of a node of this run, revoked (node-tokens.ts). */
  revokedNodeTokens: string[];
  /** Other old `server-*` / `agent-*` tokens (created before the new bootstrap), listed for the operator. */
  oldNodeTokens: NodeTokenEntry[];
}

/**
 * `--revoke-old-tokens`: keeps exactly the token whose AccessorID is in the new credentials (read on the leader
 * with `consul acl token read -self`, the token this very call uses, so it is never deleted) and revokes the older
 * management tokens, then the node tokens the re-setups replaced (node-tokens.ts). A management token created after
 * the new one stops the run for the operator, named: it is never kept silently and never deleted unasked.
 */
export async function revokeOldTokens(d: StepDeps, leader: PlannedNode, nodes: readonly PlannedNode[]): Promise<HardenReport> {
  const secret = await d.secret();
  const keep = await d.port.selfAccessor(leader.name, secret);
  const tokens = await d.port.listTokens(leader.name, secret);
  const kept = tokens.find((t) => t.accessorId === keep);
  if (kept === undefined) {
    throw new NeedsOperatorError(`the token of the new credentials (${keep}) is not in the leader's token list`, {
      node: leader.name,
      hint: 'check the mesh by hand (consul acl token list); nothing was revoked',
    });
  }
  const mgmt = tokens.filter((t) => t.accessorId !== keep && t.policies.includes('global-management'));
  const newer = mgmt.filter((t) => t.createIndex > kept.createIndex);
  if (newer.length > 0) {
    const names = newer.map((t) => `${t.accessorId} ("${t.description}", created ${t.createTime}, index ${t.createIndex})`);
    throw new NeedsOperatorError(`management token(s) created after the new bootstrap token: ${names.join('; ')}. Someone holding an old management token may have minted them`, {
      node: leader.name,
      hint: 'find out who created them; delete them by hand (consul acl token delete -id ID) if they are not yours, then regen resume; nothing was revoked',
    });
  }
  const revoked: string[] = [];
  for (const t of mgmt) {
    await durableStep<null>(d.journal, {
      step: STEPS.revoke.name,
      node: `${leader.name}#${t.accessorId}`,
      probe: async () =>
        (await d.port.listTokens(leader.name, secret)).some((x) => x.accessorId === t.accessorId) ? { state: 'not-done' } : { state: 'done', result: null },
      apply: async () => {
        await d.port.deleteToken(leader.name, secret, t.accessorId);
        return null;
      },
    });
    revoked.push(t.accessorId);
  }
  // The node tokens the re-setups replaced go too; any other old node token is listed in the journal (`regen
  // log`): an AccessorID is not secret.
  const nodeTokens = await revokeReplacedNodeTokens(d, leader, nodes, secret, kept);
  const oldNodeTokens = nodeTokens.listed;
  return { kept: keep, revoked, revokedNodeTokens: nodeTokens.revoked, oldNodeTokens };
}

/** The leader's CA fingerprint, as the leader itself shows it (the reference every node's CA must equal). */
export async function leaderCaSha256(d: StepDeps, leader: PlannedNode, secret: Secret): Promise<string | null> {
  // The leader's CA does not change once it is set up: ask it once per process and leader.
  const key = `${d.runId}:${leader.name}`;
  const known = leaderCas.get(d)?.get(key);
  if (known !== undefined) return known;
  const ca = (await d.port.proveNode(leader.name, secret)).caSha256;
  if (ca !== null) leaderCas.set(d, new Map([...(leaderCas.get(d) ?? new Map<string, string>()), [key, ca]]));
  return ca;
}

const leaderCas = new WeakMap<StepDeps, Map<string, string>>();

/**
 * Why `node` is not proven back, or null when it is: an RPC through its own agent with the new token works, its
 * certificate verifies against its CA, that CA is the leader's, and its keyring is exactly the new gossip key.
 * `alive` in the members list proves none of this (serf alone decides it).
 */
export async function whyNotBack(d: StepDeps, node: PlannedNode, secret: Secret, leaderCa: string | null): Promise<string | null> {
  const p = await d.port.proveNode(node.name, secret);
  if (p.rpcError !== null) return `RPC through its own agent fails: ${p.rpcError}`;
  if (p.caSha256 === null || p.caSha256 !== leaderCa) return "its CA is not the leader's";
  if (!p.certVerifies) return 'its certificate does not verify against the CA (openssl verify)';
  if (!p.keyringExact) return 'its gossip keyring is not exactly the new key';
  return null;
}
