/**
 * Drives the recovery machine for one run: persists every transition synchronously (from the inspection stream,
 * so order holds), restores a run from its last snapshot, holds the cluster lock, and stops at the points where a
 * human is needed (confirmation, failure, needs-operator) or at the end.
 */
import { hostname } from 'node:os';
import { createActor, type Snapshot } from 'xstate';
import type { Secret } from '../adapters/secrets/secret.js';
import type { ProgressEvent } from '../adapters/terminal/events.js';
import type { RunStatus, Store } from '../store/types.js';
import { makeActors, type ActorHooks } from './actors.js';
import type { JournalHooks } from './durable.js';
import { DivergenceError, NeedsOperatorError, RegenError, StoreError, toErrorRecord, type ErrorRecord } from './errors.js';
import type { Inventory, NodePort } from './port.js';
import type { Warning } from './plan.js';
import { MACHINE_VERSION, recoveryMachine, stateString, type RegenContext, type RunOptions } from './recovery.js';
import { STEP_NAMES, STEPS } from './catalogue.js';

/** Progress events, in the shapes adapters/terminal publishes (events.schema.json). */
export type RunEvent = ProgressEvent;

export interface RunDeps {
  store: Store;
  port: NodePort;
  /** The secret the operator gave (start, or resume with a source); null on a resume without one. */
  secret: Secret | null;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  convergeTimeoutMs?: number;
  onEvent?: (e: RunEvent) => void;
  /** Asked at the confirmation point with the plan; true goes on, false aborts. Absent: stop there (plan mode). */
  confirm?: (ctx: RegenContext) => Promise<boolean>;
  /** Checked before every remote effect: true stops the run, resumable (first Ctrl-C). */
  shouldStop?: () => boolean;
  /** Test hook: called after every journal write and every persisted transition (crash injection). */
  journalHooks?: Pick<JournalHooks, 'afterWrite'>;
  afterTransition?: (seq: number, state: string) => void;
  /** Cap on resumes of one run. */
  maxRecoveries?: number;
  heartbeatMs?: number;
  actorHooks?: ActorHooks;
}

export interface RunResult {
  runId: string;
  status: RunStatus;
  state: string;
  context: RegenContext;
  error: ErrorRecord | null;
}

const STOP_STATES = new Set(['done', 'aborted', 'failed', 'needsOperator']);

export function statusOf(state: string): RunStatus {
  if (state === 'done') return 'done';
  if (state === 'aborted') return 'aborted';
  if (state === 'failed') return 'failed';
  if (state === 'needsOperator') return 'needs-operator';
  return 'running';
}

export function newRunId(now: number): string {
  const t = new Date(now).toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${t}-${Math.random().toString(36).slice(2, 6)}`;
}

/** Start a new run. The inventory and options are recorded (no secret); the lock is taken before anything else. */
export async function startRun(deps: RunDeps, args: { inventory: Inventory; options: RunOptions; runId?: string }): Promise<RunResult> {
  const now = deps.now ?? Date.now;
  const runId = args.runId ?? newRunId(now());
  // Take the lock before creating anything: a second run against the same cluster changes nothing.
  const lockArgs = { cluster: args.inventory.cluster, runId, pid: process.pid, host: hostname() };
  deps.store.acquireLock(lockArgs);
  try {
    deps.store.createRun({ id: runId, cluster: args.inventory.cluster, machineVersion: MACHINE_VERSION, inventoryJson: JSON.stringify(args.inventory), optionsJson: JSON.stringify(args.options) });
    for (const n of args.inventory.nodes) {
      deps.store.upsertNode({ runId, name: n.name, sshHost: n.sshHost, role: null, kind: n.kind ?? null, profile: null, address: n.address ?? null, bindAddress: null, fqdn: null });
    }
  } catch (err) {
    deps.store.releaseLock(args.inventory.cluster, runId);
    throw err;
  }
  return drive(deps, runId, { input: { runId, inventory: args.inventory, options: args.options } }, false);
}

/** Resume a run from its last persisted snapshot. */
export async function resumeRun(deps: RunDeps, runId: string): Promise<RunResult> {
  const run = deps.store.getRun(runId);
  if (!run) throw new RegenError('usage', `no run ${runId} in ${deps.store.path}`, { hint: 'regen runs lists the runs' });
  if (run.status === 'done' || run.status === 'aborted') {
    throw new RegenError('usage', `run ${runId} is ${run.status}; there is nothing to resume`, { hint: 'regen status ' + runId });
  }
  if (run.machineVersion !== MACHINE_VERSION) {
    throw new DivergenceError(
      `run ${runId} was recorded by procedure ${run.machineVersion}; this regen runs ${MACHINE_VERSION}, so its recorded steps may not mean the same thing`,
      'finish it with the regen version that started it; or abort it (regen abort) and start a new run: the nodes keep their state and backups',
    );
  }
  const known = new Set<string>(STEP_NAMES);
  const unknownSteps = [...new Set(deps.store.journal(runId).map((r) => r.step))].filter((s) => !known.has(s));
  if (unknownSteps.length) {
    throw new DivergenceError(`run ${runId} journaled steps this regen does not know: ${unknownSteps.join(', ')}`, 'finish it with the regen version that started it');
  }
  const last = deps.store.lastTransition(runId);
  // A process killed between recording the run and its first transition did nothing to any node: start it over.
  if (!last && deps.store.journal(runId).length > 0) throw new StoreError(`run ${runId} has no recorded transition to resume from`, 'abort it (regen abort) and start again');
  const max = deps.maxRecoveries ?? 20;
  const inventory = JSON.parse(run.inventoryJson) as Inventory;
  deps.store.acquireLock({ cluster: run.cluster, runId, pid: process.pid, host: hostname() });
  const recoveries = deps.store.countRecovery(runId);
  if (recoveries > max) {
    deps.store.releaseLock(run.cluster, runId);
    throw new RegenError('needs-operator', `run ${runId} has been resumed ${recoveries - 1} times (cap ${max})`, {
      hint: 'look at regen status and regen log to see what keeps failing; raise the cap with --max-recoveries N if you are sure',
    });
  }
  const input = { runId, inventory, options: JSON.parse(run.optionsJson) as RunOptions };
  if (!last) return drive(deps, runId, { input }, true);
  let snapshot: Snapshot<unknown>;
  try {
    snapshot = JSON.parse(last.snapshot) as Snapshot<unknown>;
  } catch (err) {
    deps.store.releaseLock(run.cluster, runId);
    throw new StoreError(`the last snapshot of run ${runId} is not valid JSON`, 'the database may be damaged; regen status shows what is recorded', err);
  }
  return drive(deps, runId, { snapshot, input }, true);
}

/** Abort a run that is not running: marks it aborted and releases its lock. Changes no node. */
export function abortRun(store: Store, runId: string, now = Date.now()): void {
  const run = store.getRun(runId);
  if (!run) throw new RegenError('usage', `no run ${runId}`, { hint: 'regen runs lists the runs' });
  store.acquireLock({ cluster: run.cluster, runId, pid: process.pid, host: hostname() });
  store.updateRun(runId, { status: 'aborted', finishedAt: now });
  store.releaseLock(run.cluster, runId);
}

function leaderSetupDone(store: Store, runId: string): boolean {
  return store.journal(runId, { step: STEPS.leaderSetup.name }).some((r) => r.outcome === 'done' || r.outcome === 'skipped');
}

async function drive(
  deps: RunDeps,
  runId: string,
  start: { input: { runId: string; inventory: Inventory; options: RunOptions }; snapshot?: Snapshot<unknown> },
  resumed: boolean,
): Promise<RunResult> {
  const { store, port } = deps;
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const emit = (e: RunEvent) => deps.onEvent?.(e);
  const cluster = start.input.inventory.cluster;
  // If the lock is taken away (regen unlock by another operator), this run must not send another command.
  let lockLost: unknown = null;
  const heartbeat = setInterval(() => {
    try {
      store.heartbeat(cluster, runId);
    } catch (err) {
      if (err instanceof RegenError && err.kind === 'lock-held') lockLost ??= err;
    }
  }, deps.heartbeatMs ?? 5000);
  heartbeat.unref();

  let leaderName: string | null = (start.snapshot as { context?: RegenContext } | undefined)?.context?.leader ?? null;
  let cachedSecret: Secret | null = deps.secret;
  const secret = async (): Promise<Secret> => {
    if (cachedSecret) return cachedSecret;
    if (leaderName && leaderSetupDone(store, runId)) {
      const s = await port.readMeshSecret(leaderName);
      if (s) {
        cachedSecret = s;
        return s;
      }
    }
    throw new NeedsOperatorError('the mesh secret is needed to go on, and it cannot be read back from the leader yet', {
      hint: 'regen resume --password-file FILE (or set REGEN_MESH_PASSWORD) with the secret this run started with',
    });
  };

  const stepDeps = {
    port,
    store,
    runId,
    secret,
    sleep,
    now,
    convergeTimeoutMs: deps.convergeTimeoutMs ?? 60_000,
    onDowntimeStart: (at: number) => {
      const run = store.getRun(runId);
      if (run && run.downtimeStartedAt === null) store.updateRun(runId, { downtimeStartedAt: at });
      emit({ type: 'run.state', runId, state: STEPS.leaderStop.state, at, downtimeStartedAt: run?.downtimeStartedAt ?? at });
    },
    journal: {
      store,
      runId,
      now,
      shouldStop: () => lockLost !== null || (deps.shouldStop?.() ?? false),
      hooks: {
        ...(deps.journalHooks?.afterWrite ? { afterWrite: deps.journalHooks.afterWrite } : {}),
        onStart: (e: { step: string; node: string; round: number; at: number }) => emit({ type: 'step.started', runId, step: e.step, node: e.node, attempt: e.round, at: e.at }),
        onFinish: (e: { step: string; node: string; round: number; at: number; durationMs: number; outcome: 'done' | 'failed' | 'unknown' | 'skipped'; error?: ErrorRecord }) =>
          emit({
            type: 'step.finished',
            runId,
            step: e.step,
            node: e.node,
            attempt: e.round,
            at: e.at,
            durationMs: e.durationMs,
            outcome: e.outcome,
            ...(e.error === undefined ? {} : { error: e.error }),
          }),
      },
    },
  };
  const machine = recoveryMachine.provide({ actors: makeActors(stepDeps, deps.actorHooks ?? {}) });

  let lastState: string | null = null;
  let persistError: unknown = null;
  let actorError: unknown = null;
  const warned = new Set<string>();

  const actor = createActor(machine, {
    input: start.input,
    ...(start.snapshot ? { snapshot: start.snapshot as never } : {}),
    inspect: (ev) => {
      if (ev.type !== '@xstate.snapshot' || ev.actorRef !== actor || persistError) return;
      // Stopping the actor when this process is done is not a step of the procedure: its snapshot (status
      // "stopped") must never become the one a resume restores.
      if ((ev.event as { type: string }).type === 'xstate.stop') return;
      const snap = ev.snapshot as unknown as { value: unknown; context: RegenContext };
      const state = stateString(snap.value);
      try {
        const seq = store.appendTransition({
          runId,
          fromState: lastState,
          event: (ev.event as { type: string }).type,
          toState: state,
          snapshot: JSON.stringify(machine.getPersistedSnapshot(ev.snapshot as never)),
          machineVersion: MACHINE_VERSION,
        });
        const ctx = snap.context;
        leaderName = ctx.leader;
        store.updateRun(runId, { state, status: statusOf(state), leader: ctx.leader, error: ctx.error, ...(state === 'done' || state === 'aborted' ? { finishedAt: now() } : {}) });
        if (state !== lastState && (lastState === 'preflight' || lastState === 'leaderCheck')) {
          for (const n of ctx.nodes) {
            store.upsertNode({ runId, name: n.name, sshHost: n.sshHost, role: n.role, kind: n.kind, profile: n.profile, address: n.bindAddress, bindAddress: n.bindAddress, fqdn: n.fqdn });
          }
        }
        for (const w of ctx.warnings as Warning[]) {
          const key = `${w.node ?? ''}|${w.message}`;
          if (!warned.has(key)) {
            warned.add(key);
            emit({ type: 'warning', runId, message: w.message, ...(w.node === undefined ? {} : { node: w.node }), at: now() });
          }
        }
        if (state !== lastState) emit({ type: 'run.state', runId, state, at: now(), ...(ctx.leader ? { leader: ctx.leader } : {}) });
        lastState = state;
        deps.afterTransition?.(seq, state);
      } catch (err) {
        persistError ??= err;
      }
    },
  });

  /** Resolves at the next point where the runner must act: a stop state, confirmation, an error, or persistence failure. */
  const nextStop = (): Promise<void> =>
    new Promise((resolve) => {
      const check = (): boolean => {
        const state = stateString(actor.getSnapshot().value);
        return persistError !== null || actorError !== null || STOP_STATES.has(state) || state === 'confirming' || actor.getSnapshot().status !== 'active';
      };
      if (check()) return resolve();
      // Every machine error is routed to failed/needsOperator; an error here is a bug, reported, never rethrown later.
      const sub = actor.subscribe({
        next: () => {
          if (check()) {
            sub.unsubscribe();
            resolve();
          }
        },
        error: (err) => {
          actorError ??= err;
          sub.unsubscribe();
          resolve();
        },
        complete: () => {
          sub.unsubscribe();
          resolve();
        },
      });
    });
  const guard = actor.subscribe({ error: (err) => (actorError ??= err) });

  emit({ type: 'run.started', runId, cluster, nodes: start.input.inventory.nodes.map((n) => n.name), at: now() });
  void resumed;
  actor.start();
  // A restored failed/needsOperator run goes on from where it stopped.
  const initialState = stateString(actor.getSnapshot().value);
  if (resumed && (initialState === 'failed' || initialState === 'needsOperator')) actor.send({ type: 'RETRY' });

  try {
    for (;;) {
      await nextStop();
      if (persistError || actorError) break;
      const snap = actor.getSnapshot();
      if (stateString(snap.value) === 'confirming' && deps.confirm) {
        const ok = await deps.confirm(snap.context);
        actor.send(ok ? { type: 'CONFIRM' } : { type: 'ABORT', reason: 'the operator declined' });
        continue;
      }
      break;
    }
  } catch (err) {
    store.releaseLock(cluster, runId);
    throw err;
  } finally {
    guard.unsubscribe();
    actor.stop();
    clearInterval(heartbeat);
  }

  if (persistError) {
    store.releaseLock(cluster, runId);
    throw new StoreError(`could not record the run's progress: ${toErrorRecord(persistError).message}`, 'the database may be full or damaged; the journal holds everything up to this point: regen resume when fixed', persistError);
  }
  const snap = actor.getSnapshot();
  const state = stateString(snap.value);
  const status = actorError ? 'failed' : statusOf(state);
  const error = actorError ? toErrorRecord(actorError) : snap.context.error;
  if (actorError) store.updateRun(runId, { status: 'failed', error });
  if (state === 'done') {
    const run = store.getRun(runId);
    if (run && run.downtimeEndedAt === null) store.updateRun(runId, { downtimeEndedAt: now() });
  }
  const run = store.getRun(runId);
  const downtimeMs = run?.downtimeStartedAt ? (run.downtimeEndedAt ?? now()) - run.downtimeStartedAt : undefined;
  if (status !== 'running') emit({ type: 'run.finished', runId, status, at: now(), ...(downtimeMs === undefined ? {} : { downtimeMs }) });
  store.releaseLock(cluster, runId);
  return { runId, status, state, context: snap.context, error };
}

