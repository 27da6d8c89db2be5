/**
 * The implementations of the machine's named actors, built from the run's dependencies (node port, journal,
 * the secret held in memory). The runner provides them with recoveryMachine.provide({ actors: makeActors(deps) }).
 */
import { compareCatalogAfter, recordCatalogBefore } from './catalog-census.js';
import { fromPromise, type InputFrom } from 'xstate';
import { chainOf, stepEntry, STEPS, type ChainKey } from './catalogue.js';
import { problemsMessage, RegenError, toErrorRecord, type Problem } from './errors.js';
import type { NodeFacts } from './port.js';
import { chooseLeader, planNodes, type PlannedNode } from './plan.js';
import { actorTypes } from './recovery.js';
import { isolateOtherServers, revokeOldTokens } from './mesh-steps.js';
import { removeRpcHold, writeRpcHold } from './rpc-hold.js';
import * as steps from './steps.js';
import { refuseReusedSecret } from './secret-reuse.js';
import { refuseLeaderWithoutPeersInfo } from './raft-sentinel.js';

export interface ActorHooks {
  /** A follower chain settled (for progress views). */
  onFollower?: (e: { node: string; outcome: 'done' | 'failed'; error?: string }) => void;
}

/** Run `fn` over `items` with at most `limit` at once; every item runs even if some fail. */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      try {
        results[i] = { status: 'fulfilled', value: await fn(items[i] as T) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

const INSPECT_PARALLEL = 16;

/** What each step of the follower chain runs; the chain's order is the catalogue's. */
type FollowerStep = (d: steps.StepDeps, leader: PlannedNode, node: PlannedNode, sha256: string, round: number) => Promise<unknown>;
const FOLLOWER_STEPS: Record<ChainKey<'follower'>, FollowerStep> = {
  copyCredentials: (d, leader, node, sha256, round) => steps.copyCredentials(d, leader, node, sha256, round),
  followerStop: (d, _leader, node, _sha256, round) => steps.stopService(d, node, STEPS.followerStop.name, round),
  followerWipe: (d, _leader, node, _sha256, round) => steps.wipeNode(d, node, STEPS.followerWipe.name, round),
  followerSetup: (d, leader, node, _sha256, round) => steps.setupFollower(d, leader, node, round),
  followerVerify: (d, leader, node, _sha256, round) => steps.verifyMember(d, leader, node, STEPS.followerVerify.name, round),
};

/**
 * One follower's chain; a failed join is retried as a unit (the whole chain) up to maxRounds. A resume
 * continues the journal's latest round, or starts a new one if that round's setup failed (it left main.json behind).
 */
async function followerChain(d: steps.StepDeps, leader: PlannedNode, node: PlannedNode, sha256: string, maxRounds: number): Promise<void> {
  const startRound = followerStartRound(d, node.name);
  for (let round = startRound; ; round++) {
    try {
      for (const e of chainOf('follower')) await FOLLOWER_STEPS[e.key as ChainKey<'follower'>](d, leader, node, sha256, round);
      return;
    } catch (err) {
      const retryable = err instanceof RegenError && err.kind === 'step-failed';
      if (!retryable || round >= Math.max(maxRounds, startRound)) throw err;
    }
  }
}

function followerStartRound(d: steps.StepDeps, node: string): number {
  const rows = d.store.journal(d.runId, { node }).filter((r) => stepEntry(r.step)?.chain === 'follower');
  const round = rows.reduce((m, r) => Math.max(m, r.attempt), 1);
  const setupRows = rows.filter((r) => r.attempt === round && r.step === STEPS.followerSetup.name);
  const lastSetup = setupRows.reduce<(typeof rows)[number] | undefined>((a, r) => (a === undefined || r.id > a.id ? r : a), undefined);
  return lastSetup?.outcome === 'failed' ? round + 1 : round;
}

/** A node's failure as a problem of a list, its message without the node's name in front. */
function problemOf(node: string, err: unknown): Problem {
  const e = toErrorRecord(err);
  const message = e.message.startsWith(`${node}: `) ? e.message.slice(node.length + 2) : e.message;
  return { node, kind: e.kind, message, ...(e.hint === undefined ? {} : { hint: e.hint }) };
}

function allStoppedByOperator(failed: { err: unknown }[]): boolean {
  return failed.every((f) => toErrorRecord(f.err).kind === 'aborted');
}

/** The step dependencies of one invoked actor: its port bound to the actor's abort signal, when the port can be. */
function boundTo(d: steps.StepDeps, signal: AbortSignal): steps.StepDeps {
  return d.port.withSignal === undefined ? d : { ...d, port: d.port.withSignal(signal) };
}

/** An actor's input, as the statechart declares it. */
type In<K extends keyof typeof actorTypes> = InputFrom<(typeof actorTypes)[K]>;

async function preflightActor(d: steps.StepDeps, input: In<'preflight'>) {
    const settled = await pool(input.inventory.nodes, INSPECT_PARALLEL, (n) => d.port.inspect(n.name));
    const failures = settled.flatMap((r, i) => (r.status === 'rejected' ? [problemOf(input.inventory.nodes[i]?.name ?? '?', r.reason)] : []));
    if (failures.length) {
      // An unreachable node is its own exit code (10), as regen plan says; other failures are preflight's (3).
      const kind = failures.some((f) => f.kind === 'unreachable') ? 'unreachable' : 'preflight';
      throw new RegenError(kind, problemsMessage(`preflight could not inspect ${failures.length} node(s); nothing was changed`, failures), {
        hint: 'make every node reachable over SSH (regen plan shows the same checks), then run regen start again',
        problems: failures,
      });
    }
    const facts = settled.map((r) => (r as PromiseFulfilledResult<NodeFacts>).value);
    return planNodes(input.inventory, facts);
}

async function leaderCheckActor(d: steps.StepDeps, input: In<'leaderCheck'>) {
    const nodes = input.nodes;
    let meshServers: string[] | null = null;
    const errors: string[] = [];
    for (const n of nodes) {
      try {
        meshServers = await d.port.meshServers(n.name, n.profile);
        break;
      } catch (err) {
        errors.push(`${n.name}: ${toErrorRecord(err).message}`);
      }
    }
    if (meshServers === null) {
      throw new RegenError('preflight', `no node could list the mesh servers:\n  - ${errors.join('\n  - ')}`, { hint: 'check that the directory (LDAP) is up and accepts the bind of zimbra_ldap_userdn / zimbra_ldap_password from localconfig (the same bind every service-discover setup makes)' });
    }
    const lower = new Set(meshServers.map((s) => s.toLowerCase()));
    const servers = nodes.filter((n) => lower.has(n.fqdn.toLowerCase()) || lower.has(n.name.toLowerCase()));
    let leaderAddress: string | null = null;
    const asked: string[] = [];
    for (const n of servers.length ? servers : nodes) {
      try {
        leaderAddress = await d.port.leaderAddress(n.name);
        if (leaderAddress !== null) break;
        asked.push(`${n.name}: no leader`);
      } catch (err) {
        asked.push(`${n.name}: ${toErrorRecord(err).message}`);
      }
    }
    if (leaderAddress === null && input.override === undefined && asked.some((a) => !a.endsWith(': no leader'))) {
      throw new RegenError('preflight', `could not ask the mesh for its leader:\n  - ${asked.join('\n  - ')}`, {
        hint: 'make the mesh servers reachable, or name the leader with --leader NODE; nothing was changed',
      });
    }
    const choice = chooseLeader({
      nodes,
      meshServers,
      leaderAddress,
      ...(input.override === undefined ? {} : { override: input.override }),
      ...(input.inventory.directoryServer === undefined ? {} : { directoryServer: input.inventory.directoryServer }),
    });
    await refuseReusedSecret(d, choice.leader, input.reuseSecret === true);
    await refuseLeaderWithoutPeersInfo(d.port, choice.leader, choice.kinds);
    return choice;
}

async function backUpNodesActor(d: steps.StepDeps, input: In<'backUpNodes'>) {
    const settled = await pool(input.nodes, INSPECT_PARALLEL, (n) => steps.backupNode(d, n));
    const failed = settled.flatMap((r, i) => (r.status === 'rejected' ? [{ node: input.nodes[i]?.name ?? '?', err: r.reason as unknown }] : []));
    if (failed.length === 1 && failed[0]) throw failed[0].err;
    if (failed.length) {
      const stopped = allStoppedByOperator(failed);
      throw new RegenError(stopped ? 'aborted' : 'step-failed', `backup ${stopped ? 'stopped' : 'failed'} on ${failed.length} node(s); nothing was removed anywhere:\n  - ${failed.map((f) => `${f.node}: ${toErrorRecord(f.err).message}`).join('\n  - ')}`, {
        hint: stopped ? 'regen resume' : 'free space or fix the nodes, then regen resume',
      });
    }
    // While the old mesh still runs: what its catalog holds, to compare after the run.
    const leader = input.nodes.find((n) => n.role === 'leader');
    if (leader !== undefined) await recordCatalogBefore(d, leader);
    return null;
}

async function setUpFollowersActor(d: steps.StepDeps, input: In<'setUpFollowers'>, hooks: ActorHooks) {
    // A wrong secret must stop the run before any follower is touched.
    if (!(await d.port.secretOpensCredentials(input.leader.name, await d.secret()))) {
      throw new RegenError('step-failed', `the mesh secret does not decrypt the leader's new credentials on ${input.leader.name}; no follower was changed`, {
        node: input.leader.name,
        hint: 'resume with the secret used for the leader\'s setup (--password-file FILE or REGEN_MESH_PASSWORD), or without one to read it from the leader',
      });
    }
    // Mesh servers first: they restore the quorum; agents after.
    const ordered = [...input.followers].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'server' ? -1 : 1));
    const settled = await pool(ordered, input.parallel, async (n) => {
      try {
        await followerChain(d, input.leader, n, input.credentialsSha256, input.maxRounds);
        hooks.onFollower?.({ node: n.name, outcome: 'done' });
      } catch (err) {
        hooks.onFollower?.({ node: n.name, outcome: 'failed', error: toErrorRecord(err).message });
        throw err;
      }
      return n.name;
    });
    const failed = settled.flatMap((r, i) => (r.status === 'rejected' ? [{ node: ordered[i]?.name ?? '?', err: r.reason as unknown }] : []));
    if (failed.length === 1 && failed[0]) throw failed[0].err;
    if (failed.length) {
      const needsOperator = failed.some((f) => toErrorRecord(f.err).kind === 'needs-operator');
      // A Ctrl-C stops every follower chain at its next step: that is one stop by the operator, not a failure.
      const stopped = allStoppedByOperator(failed);
      throw new RegenError(
        stopped ? 'aborted' : needsOperator ? 'needs-operator' : 'step-failed',
        `${failed.length} follower(s) did not finish:\n  - ${failed.map((f) => `${f.node}: ${toErrorRecord(f.err).message}`).join('\n  - ')}`,
        { hint: stopped ? 'regen resume' : 'regen status shows each node; fix what is named, then regen resume' },
      );
    }
    return { done: settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])) };
}

export function makeActors(base: steps.StepDeps, hooks: ActorHooks = {}): typeof actorTypes {
  return {
    preflight: fromPromise(({ input, signal }) => preflightActor(boundTo(base, signal), input)),

    leaderCheck: fromPromise(({ input, signal }) => leaderCheckActor(boundTo(base, signal), input)),

    backUpNodes: fromPromise(({ input, signal }) => backUpNodesActor(boundTo(base, signal), input)),

    readResetIndex: fromPromise(({ input, signal }) => steps.readResetIndex(boundTo(base, signal), input.leader, input.round)),
    writeResetFile: fromPromise(async ({ input, signal }) => {
      const d = boundTo(base, signal);
      await steps.writeResetFile(d, input.leader, input.index, input.round);
      return null;
    }),
    stopLeader: fromPromise(async ({ input, signal }) => {
      const d = boundTo(base, signal);
      await steps.stopService(d, input.leader, STEPS.leaderStop.name, input.round);
      return null;
    }),
    wipeLeader: fromPromise(async ({ input, signal }) => {
      const d = boundTo(base, signal);
      await steps.wipeNode(d, input.leader, STEPS.leaderWipe.name, input.round);
      return null;
    }),
    writeRaftRecovery: fromPromise(async ({ input, signal }) => {
      const d = boundTo(base, signal);
      await isolateOtherServers(d, input.servers ?? [], input.round);
      await steps.writeRaftRecovery(d, input.leader, input.round);
      return null;
    }),
    writeRpcHold: fromPromise(async ({ input, signal }) => {
      await writeRpcHold(boundTo(base, signal), input.leader, input.round);
      return null;
    }),
    setupLeader: fromPromise(({ input, signal }) => steps.setupLeader(boundTo(base, signal), input.leader, input.round)),
    verifyLeader: fromPromise(async ({ input, signal }) => {
      const d = boundTo(base, signal);
      await steps.verifyMember(d, input.leader, input.leader, STEPS.leaderVerify.name, input.round);
      return null;
    }),
    removeRpcHold: fromPromise(async ({ input, signal }) => {
      await removeRpcHold(boundTo(base, signal), input.leader, input.round);
      return null;
    }),

    setUpFollowers: fromPromise(({ input, signal }) => setUpFollowersActor(boundTo(base, signal), input, hooks)),

    finalVerify: fromPromise(async ({ input, signal }) => {
      const d = boundTo(base, signal);
      await steps.finalVerify(d, input.leader, input.nodes, input.credentialsSha256);
      await compareCatalogAfter(d, input.leader);
      return null;
    }),
    revokeOldTokens: fromPromise(({ input, signal }) => revokeOldTokens(boundTo(base, signal), input.leader, input.nodes)),
  };
}
