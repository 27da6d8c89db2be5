/**
 * The node tokens a re-setup replaced. service-discover's setup (server first instance, server join, agent join;
 * pkg/command/common.go `CreateACLToken` at 0.7.2, cli/lib/command/common.go at v0.1.1 … 0.1.11) creates the
 * policy named after the Consul node (`server-<host>` / `agent-<host>`, dots as dashes, `ConsulNodeName`; a policy
 * that already exists makes `acl policy create` fail, which setup ignores), then a new token with that policy
 * alone and no description (`consul acl token create -policy-name NAME`), and makes it the agent's default token
 * (`consul acl set-agent-token default`). It never deletes a token. So after a node is set up again its old token
 * still exists, still valid (the reset keeps every token), and nothing uses it: that is the token replaced.
 *
 * A token is taken as replaced only when all of these hold: its only policy is the Consul node name of a node of
 * this run (read from the leader's members list, matched on the bind address), it has no description, it was
 * created before the run's new bootstrap token, and that same policy has a token created after it (the
 * re-setup's). Anything else that looks like a node token is listed, never deleted.
 */
import { STEPS } from './catalogue.js';
import { durableStep } from './durable.js';
import type { PlannedNode } from './plan.js';
import type { Member, TokenInfo } from './port.js';
import type { Secret } from './secret.js';
import type { StepDeps } from './steps.js';

export interface NodeTokenEntry {
  accessorId: string;
  description: string;
  policies: string[];
}

export interface NodeTokenVerdict {
  /** Old tokens of nodes set up again, each replaced by the newer token of the same policy. */
  replaced: NodeTokenEntry[];
  /** Other `server-*` / `agent-*` tokens created before the new bootstrap: listed for the operator. */
  listed: NodeTokenEntry[];
}

const NODE_POLICY = /^(server|agent)-/;

function entry(t: TokenInfo): NodeTokenEntry {
  return { accessorId: t.accessorId, description: t.description, policies: t.policies };
}

/** The Consul node names (= policy names) of the run's nodes, as the leader's members list shows them. */
export function nodePolicies(members: readonly Member[], nodes: readonly PlannedNode[]): Set<string> {
  const out = new Set<string>();
  for (const n of nodes) {
    const m = members.find((x) => x.address.split(':')[0] === n.bindAddress);
    if (m !== undefined && NODE_POLICY.test(m.name)) out.add(m.name);
  }
  return out;
}

/**
 * Pure: which old node tokens were replaced. `keep` is the run's new bootstrap token (every setup of this run
 * came after it). The same answer after any of the replaced tokens is gone, so a resume recomputes it.
 */
export function judgeNodeTokens(tokens: readonly TokenInfo[], keep: TokenInfo, policies: ReadonlySet<string>): NodeTokenVerdict {
  const replaced: NodeTokenEntry[] = [];
  const listed: NodeTokenEntry[] = [];
  for (const t of tokens) {
    if (t.accessorId === keep.accessorId || t.createIndex >= keep.createIndex) continue;
    if (!t.policies.some((p) => NODE_POLICY.test(p))) continue;
    const [policy] = t.policies;
    const madeBySetup = t.policies.length === 1 && t.description === '' && policy !== undefined;
    const renewed =
      madeBySetup &&
      policies.has(policy) &&
      tokens.some((n) => n.createIndex > keep.createIndex && n.policies.length === 1 && n.policies[0] === policy && n.description === '');
    (renewed ? replaced : listed).push(entry(t));
  }
  return { replaced, listed };
}

/** Journal node name of one revocation; the leader's name alone is the listing. */
function revocationKey(leader: PlannedNode, accessorId: string): string {
  return `${leader.name}#${accessorId}`;
}

/**
 * `harden.node-tokens` (with --revoke-old-tokens): revokes the replaced node tokens one by one, each a durable
 * step whose probe is the token list (gone = done), and lists the others in the journal. A revocation that was
 * begun by an earlier process is settled by its probe first, so a resume never deletes blindly.
 */
export async function revokeReplacedNodeTokens(
  d: StepDeps,
  leader: PlannedNode,
  nodes: readonly PlannedNode[],
  secret: Secret,
  keep: TokenInfo,
): Promise<{ revoked: string[]; listed: NodeTokenEntry[] }> {
  const step = STEPS.nodeTokens.name;
  const gone = async (accessorId: string): Promise<boolean> => !(await d.port.listTokens(leader.name, secret)).some((t) => t.accessorId === accessorId);
  const revoke = async (accessorId: string): Promise<void> => {
    await durableStep<null>(d.journal, {
      step,
      node: revocationKey(leader, accessorId),
      probe: async () => ((await gone(accessorId)) ? { state: 'done', result: null } : { state: 'not-done' }),
      apply: async () => {
        await d.port.deleteToken(leader.name, secret, accessorId);
        return null;
      },
    });
  };

  const prefix = revocationKey(leader, '');
  const begun = d.store
    .journal(d.runId, { step })
    .filter((r) => r.node.startsWith(prefix))
    .map((r) => r.node.slice(prefix.length));
  const policies = nodePolicies(await d.port.members(leader.name, secret), nodes);
  const verdict = judgeNodeTokens(await d.port.listTokens(leader.name, secret), keep, policies);
  const revoked = [...new Set([...begun, ...verdict.replaced.map((t) => t.accessorId)])];
  for (const id of revoked) await revoke(id);

  const listed = await durableStep<NodeTokenEntry[]>(d.journal, {
    step,
    node: leader.name,
    probe: async () => ({ state: 'not-done' }),
    apply: async () => judgeNodeTokens(await d.port.listTokens(leader.name, secret), keep, policies).listed,
  });
  return { revoked, listed };
}
