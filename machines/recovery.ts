/**
 * The recovery statechart: the seeds' runbook as data. Read top to bottom it is the procedure:
 *
 *   preflight → leaderCheck → confirming → backup
 *     → leader: resetIndex → resetFile → stop → wipe → [raftRecovery] → rpcHold → setup → verify → rpcHoldRemove
 *       (wipe + regenerate retry as one unit; raftRecovery only with several mesh servers; rpcHold raises consul's
 *       RPC hold for the setup's start, machines/rpc-hold.ts)
 *     → followers (each: copy credentials → stop → wipe → setup → verify, N at a time)
 *     → finalVerify → [harden] → done
 *   (the leader and follower steps, and their order, come from machines/catalogue.ts)
 *   any step → failed (resumable: RETRY re-enters the step) | needsOperator (a human settles it, then RETRY)
 *
 * Every side effect is a named actor; machines/actors.ts provides the implementations and tests swap them with
 * machine.provide(). Context is plain JSON and never holds a secret.
 */
import { createHash } from 'node:crypto';
import { assign, fromPromise, setup } from 'xstate';
import type { ErrorRecord } from './errors.js';
import type { Inventory } from './port.js';
import type { LeaderChoice, PlannedNode, Warning } from './plan.js';
import { leaderStateAfter, STEP_NAMES, STEPS, type StepState } from './catalogue.js';

export interface RunOptions {
  /** Followers set up at once. */
  parallel: number;
  /** Attempts of the wipe + regenerate unit (per node) before the run stops. */
  maxUnitRounds: number;
  revokeOldTokens: boolean;
  /** Operator override of leader detection (inventory name). */
  leader?: string;
  /** Go on although the new secret opens the current credentials (--reuse-secret). */
  reuseSecret?: boolean;
}

export interface RegenInput {
  runId: string;
  inventory: Inventory;
  options: RunOptions;
}

export interface RegenContext {
  runId: string;
  cluster: string;
  inventory: Inventory;
  options: RunOptions;
  nodes: PlannedNode[];
  warnings: Warning[];
  leader: string | null;
  leaderAddress: string | null;
  round: number;
  resetIndex: number | null;
  credentialsSha256: string | null;
  /** Where RETRY goes: the state that failed (a dotted state path). */
  failedAt: string | null;
  error: ErrorRecord | null;
}

export type RegenEvent = { type: 'CONFIRM' } | { type: 'ABORT'; reason?: string } | { type: 'RETRY' };

export interface FollowersResult {
  done: string[];
}

/** A named actor slot; the runner fills it with machine.provide(). */
function slot<Out, In>(name: string) {
  return fromPromise<Out, In>(async () => {
    throw new Error(`actor ${name} was not provided (machine.provide)`);
  });
}

/** Actor names and their input/output types; implementations live in machines/actors.ts. */
export const actorTypes = {
  preflight: slot<{ nodes: PlannedNode[]; warnings: Warning[] }, { inventory: Inventory }>('preflight'),
  leaderCheck: slot<LeaderChoice, { nodes: PlannedNode[]; inventory: Inventory; override?: string; reuseSecret?: boolean }>('leaderCheck'),
  backUpNodes: slot<null, { nodes: PlannedNode[] }>('backUpNodes'),
  readResetIndex: slot<number, { leader: PlannedNode; round: number }>('readResetIndex'),
  writeResetFile: slot<null, { leader: PlannedNode; index: number; round: number }>('writeResetFile'),
  stopLeader: slot<null, { leader: PlannedNode; round: number }>('stopLeader'),
  wipeLeader: slot<null, { leader: PlannedNode; round: number }>('wipeLeader'),
  writeRaftRecovery: slot<null, { leader: PlannedNode; round: number; servers?: PlannedNode[] }>('writeRaftRecovery'),
  writeRpcHold: slot<null, { leader: PlannedNode; round: number }>('writeRpcHold'),
  setupLeader: slot<{ credentialsSha256: string }, { leader: PlannedNode; round: number }>('setupLeader'),
  verifyLeader: slot<null, { leader: PlannedNode; round: number }>('verifyLeader'),
  removeRpcHold: slot<null, { leader: PlannedNode; round: number }>('removeRpcHold'),
  setUpFollowers: slot<FollowersResult, { leader: PlannedNode; followers: PlannedNode[]; credentialsSha256: string; parallel: number; maxRounds: number }>(
    'setUpFollowers',
  ),
  finalVerify: slot<null, { leader: PlannedNode; nodes: PlannedNode[]; credentialsSha256: string }>('finalVerify'),
  revokeOldTokens: slot<{ revoked: string[] }, { leader: PlannedNode; nodes: PlannedNode[] }>('revokeOldTokens'),
};

type ErrorEvent = { error: unknown };

function errorRecordOf(e: unknown): ErrorRecord {
  if (e && typeof e === 'object' && 'kind' in e && 'message' in e) {
    const r = e as { kind: ErrorRecord['kind']; name?: string; message: string; node?: string; hint?: string; exitCode?: number | null; problems?: ErrorRecord['problems'] };
    const rec: ErrorRecord = { kind: r.kind, name: r.name ?? 'Error', message: r.message };
    if (r.node !== undefined) rec.node = r.node;
    if (r.problems !== undefined) rec.problems = r.problems;
    if (r.hint !== undefined) rec.hint = r.hint;
    if (r.exitCode !== undefined) rec.exitCode = r.exitCode;
    return rec;
  }
  if (e instanceof Error) return { kind: 'internal', name: e.name, message: e.message };
  return { kind: 'internal', name: 'Error', message: String(e) };
}

const leaderOf = (c: RegenContext): PlannedNode => {
  const n = c.nodes.find((x) => x.name === c.leader);
  if (!n) throw new Error('no leader recorded');
  return n;
};

type ResumableState = 'preflight' | 'leaderCheck' | StepState;

/** States RETRY may re-enter, as dotted paths; they are also the `failedAt` values. The step states come from the catalogue. */
export const RESUMABLE_STATES: readonly ResumableState[] = ['preflight', 'leaderCheck', ...new Set(Object.values(STEPS).map((e) => e.state))];

/** The leader chain's next state after `state`, in catalogue order; a conditional step is guarded by its condition. */
function leaderNext(state: StepState) {
  return leaderStateAfter(state, 'regenerated').map((t) => (t.guard === undefined ? { target: t.target } : { guard: t.guard, target: t.target }));
}

/** The next state when it is unconditional (a transition that also records the step's output). */
function leaderNextTarget(state: StepState): string {
  const [first, ...rest] = leaderStateAfter(state, 'regenerated');
  if (first === undefined || first.guard !== undefined || rest.length) throw new Error(`the step after ${state} is conditional; its transition must say what it records`);
  return first.target;
}

/** On error: needs-operator errors go to needsOperator, everything else to failed; both remember where. */
function onStepError(at: ResumableState) {
  return [
    { guard: 'needsOperator' as const, target: '#regen.needsOperator', actions: { type: 'recordFailure' as const, params: { at } } },
    { target: '#regen.failed', actions: { type: 'recordFailure' as const, params: { at } } },
  ];
}

// RETRY re-enters the state that failed. A failed leader setup leaves the node half set up and may have consumed
// the reset index, so it starts a new wipe + regenerate unit instead.
// An interrupted setup (outcome unknown) is re-entered instead, so its probe settles it first.
const retryTransitions = [
  { guard: 'setupFailed' as const, target: '#regen.leader.resetIndex', actions: 'startNewRound' as const },
  ...RESUMABLE_STATES.map((s) => ({
    guard: { type: 'failedAt' as const, params: { at: s } },
    target: `#regen.${s}`,
    actions: 'clearError' as const,
  })),
];

export const recoveryMachine = setup({
  types: {
    context: {} as RegenContext,
    events: {} as RegenEvent,
    input: {} as RegenInput,
  },
  actors: actorTypes,
  actions: {
    recordFailure: assign((args, params: { at: ResumableState }) => ({
      failedAt: params.at,
      error: errorRecordOf((args.event as unknown as ErrorEvent).error),
    })),
    clearError: assign({ error: null, failedAt: null }),
    startNewRound: assign({ error: null, failedAt: null, round: ({ context }) => context.round + 1, resetIndex: null }),
  },
  guards: {
    needsOperator: ({ event }) => errorRecordOf((event as unknown as ErrorEvent).error).kind === 'needs-operator',
    failedAt: ({ context }, params: { at: ResumableState }) => context.failedAt === params.at,
    setupFailed: ({ context }) => context.failedAt === STEPS.leaderSetup.state && context.error?.kind === 'step-failed',
    hasFollowers: ({ context }) => context.nodes.length > 1,
    // Named as the catalogue names the conditions of its steps.
    'several-servers': ({ context }) => context.nodes.filter((n) => n.kind === 'server').length > 1,
    revoke: ({ context }) => context.options.revokeOldTokens,
    canRetryLeaderUnit: ({ context, event }) => {
      const kind = errorRecordOf((event as unknown as ErrorEvent).error).kind;
      return kind === 'step-failed' && context.round < context.options.maxUnitRounds;
    },
  },
}).createMachine({
  id: 'regen',
  context: ({ input }) => ({
    runId: input.runId,
    cluster: input.inventory.cluster,
    inventory: input.inventory,
    options: input.options,
    nodes: [],
    warnings: [],
    leader: null,
    leaderAddress: null,
    round: 1,
    resetIndex: null,
    credentialsSha256: null,
    failedAt: null,
    error: null,
  }),
  initial: 'preflight',
  states: {
    preflight: {
      invoke: {
        id: 'preflight',
        src: 'preflight',
        input: ({ context }) => ({ inventory: context.inventory }),
        onDone: { target: 'leaderCheck', actions: assign({ nodes: ({ event }) => event.output.nodes, warnings: ({ event }) => event.output.warnings }) },
        onError: onStepError('preflight'),
      },
    },
    leaderCheck: {
      invoke: {
        id: 'leaderCheck',
        src: 'leaderCheck',
        input: ({ context }) => ({
          nodes: context.nodes,
          inventory: context.inventory,
          ...(context.options.leader === undefined ? {} : { override: context.options.leader }),
          ...(context.options.reuseSecret === true ? { reuseSecret: true } : {}),
        }),
        onDone: {
          target: 'confirming',
          actions: assign({
            leader: ({ event }) => event.output.leader,
            leaderAddress: ({ event }) => event.output.leaderAddress,
            nodes: ({ context, event }) =>
              context.nodes.map((n) => ({
                ...n,
                kind: event.output.kinds[n.name] ?? n.kind,
                role: n.name === event.output.leader ? ('leader' as const) : ('follower' as const),
              })),
            warnings: ({ context, event }) => [...context.warnings, ...event.output.warnings],
          }),
        },
        onError: onStepError('leaderCheck'),
      },
    },
    // Nothing has changed yet: the operator sees the plan and confirms the downtime (or passes --yes).
    confirming: {
      on: {
        CONFIRM: STEPS.backup.state,
        ABORT: 'aborted',
      },
    },
    backup: {
      invoke: {
        id: 'backUpNodes',
        src: 'backUpNodes',
        input: ({ context }) => ({ nodes: context.nodes }),
        onDone: 'leader',
        onError: onStepError(STEPS.backup.state),
      },
    },
    leader: {
      initial: 'resetIndex',
      states: {
        resetIndex: {
          invoke: {
            id: 'readResetIndex',
            src: 'readResetIndex',
            input: ({ context }) => ({ leader: leaderOf(context), round: context.round }),
            onDone: { target: leaderNextTarget(STEPS.resetIndex.state), actions: assign({ resetIndex: ({ event }) => event.output }) },
            onError: onStepError(STEPS.resetIndex.state),
          },
        },
        resetFile: {
          invoke: {
            id: 'writeResetFile',
            src: 'writeResetFile',
            input: ({ context }) => ({ leader: leaderOf(context), index: context.resetIndex ?? -1, round: context.round }),
            onDone: leaderNext(STEPS.resetFile.state),
            onError: onStepError(STEPS.resetFile.state),
          },
        },
        stop: {
          invoke: {
            id: 'stopLeader',
            src: 'stopLeader',
            input: ({ context }) => ({ leader: leaderOf(context), round: context.round }),
            onDone: leaderNext(STEPS.leaderStop.state),
            onError: onStepError(STEPS.leaderStop.state),
          },
        },
        wipe: {
          invoke: {
            id: 'wipeLeader',
            src: 'wipeLeader',
            input: ({ context }) => ({ leader: leaderOf(context), round: context.round }),
            onDone: leaderNext(STEPS.leaderWipe.state),
            onError: onStepError(STEPS.leaderWipe.state),
          },
        },
        raftRecovery: {
          invoke: {
            id: 'writeRaftRecovery',
            src: 'writeRaftRecovery',
            input: ({ context }) => ({
              leader: leaderOf(context),
              round: context.round,
              servers: context.nodes.filter((n) => n.kind === 'server' && n.name !== context.leader),
            }),
            onDone: leaderNext(STEPS.raftRecovery.state),
            onError: onStepError(STEPS.raftRecovery.state),
          },
        },
        rpcHold: {
          invoke: {
            id: 'writeRpcHold',
            src: 'writeRpcHold',
            input: ({ context }) => ({ leader: leaderOf(context), round: context.round }),
            onDone: leaderNext(STEPS.rpcHold.state),
            onError: onStepError(STEPS.rpcHold.state),
          },
        },
        setup: {
          invoke: {
            id: 'setupLeader',
            src: 'setupLeader',
            input: ({ context }) => ({ leader: leaderOf(context), round: context.round }),
            onDone: { target: leaderNextTarget(STEPS.leaderSetup.state), actions: assign({ credentialsSha256: ({ event }) => event.output.credentialsSha256 }) },
            onError: [{ guard: 'canRetryLeaderUnit', target: 'resetIndex', actions: 'startNewRound' }, ...onStepError(STEPS.leaderSetup.state)],
          },
        },
        verify: {
          invoke: {
            id: 'verifyLeader',
            src: 'verifyLeader',
            input: ({ context }) => ({ leader: leaderOf(context), round: context.round }),
            onDone: leaderNext(STEPS.leaderVerify.state),
            onError: onStepError(STEPS.leaderVerify.state),
          },
        },
        rpcHoldRemove: {
          invoke: {
            id: 'removeRpcHold',
            src: 'removeRpcHold',
            input: ({ context }) => ({ leader: leaderOf(context), round: context.round }),
            onDone: leaderNext(STEPS.rpcHoldRemove.state),
            onError: onStepError(STEPS.rpcHoldRemove.state),
          },
        },
        regenerated: { type: 'final' },
      },
      onDone: [{ guard: 'hasFollowers', target: 'followers' }, { target: 'finalVerify' }],
    },
    followers: {
      invoke: {
        id: 'setUpFollowers',
        src: 'setUpFollowers',
        input: ({ context }) => ({
          leader: leaderOf(context),
          followers: context.nodes.filter((n) => n.name !== context.leader),
          credentialsSha256: context.credentialsSha256 ?? '',
          parallel: context.options.parallel,
          maxRounds: context.options.maxUnitRounds,
        }),
        onDone: 'finalVerify',
        onError: onStepError(STEPS.followerSetup.state),
      },
    },
    finalVerify: {
      invoke: {
        id: 'finalVerify',
        src: 'finalVerify',
        input: ({ context }) => ({ leader: leaderOf(context), nodes: context.nodes, credentialsSha256: context.credentialsSha256 ?? '' }),
        onDone: [{ guard: 'revoke', target: 'harden' }, { target: 'done' }],
        onError: onStepError(STEPS.finalVerify.state),
      },
    },
    harden: {
      invoke: {
        id: 'revokeOldTokens',
        src: 'revokeOldTokens',
        input: ({ context }) => ({ leader: leaderOf(context), nodes: context.nodes }),
        onDone: 'done',
        onError: onStepError(STEPS.revoke.state),
      },
    },
    done: { type: 'final' },
    aborted: { type: 'final' },
    failed: {
      on: { RETRY: retryTransitions, ABORT: 'aborted' },
    },
    needsOperator: {
      on: { RETRY: retryTransitions, ABORT: 'aborted' },
    },
  },
});

export type RecoveryMachine = typeof recoveryMachine;

function stateIds(node: { key: string; states: Record<string, unknown> }, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, child] of Object.entries(node.states)) {
    const id = prefix ? `${prefix}.${k}` : k;
    out.push(id);
    out.push(...stateIds(child as { key: string; states: Record<string, unknown> }, id));
  }
  return out;
}

/**
 * Version of the procedure: its states and step names. A run recorded under another version is not resumed
 * (a divergence error), because its snapshot and journal would be read against a different procedure.
 */
export const MACHINE_VERSION = `recovery/2-${createHash('sha256')
  .update(JSON.stringify({ states: stateIds(recoveryMachine.root as never), steps: STEP_NAMES }))
  .digest('hex')
  .slice(0, 12)}`;

/** The top-level state of a snapshot value as a dotted string ("leader.setup"). */
export function stateString(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [k, v] = Object.entries(value as Record<string, unknown>)[0] ?? ['?', null];
    const rest = stateString(v);
    return rest ? `${k}.${rest}` : k;
  }
  return '';
}
