/**
 * Drives the recovery machine for one run: persists every transition synchronously (from the inspection stream,
 * so order holds), restores a run from its last snapshot, holds the cluster lock, and stops at the points where a
 * human is needed (confirmation, failure, needs-operator) or at the end.
 */
import { hostname } from 'node:os';
import { createActor, type Actor, type InspectionEvent, type Snapshot } from 'xstate';
import type { ProgressEvent } from './events.js';
import type { Secret } from './secret.js';
import type { RunStatus, Store } from '../store/types.js';
import { makeActors, type ActorHooks } from './actors.js';
import type { StepDeps } from './steps.js';
import type { JournalHooks } from './durable.js';
import type { ClusterGuard } from './cluster-run.js';
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
  /** The lock on the nodes and the journal's mirror there (machines/cluster-run.ts); absent: local state only. */
  cluster?: ClusterGuard;
}

export interface RunResult {
  runId: string;
  status: RunStatus;
  state: string;
  context: RegenContext;
  error: ErrorRecord | null;
}

const STOP_STATES = new Set(['done', 'aborted', 'failed', 'needsOperator']);

/** A run's status from its machine state; a failure of the `aborted` kind is the operator's stop (Ctrl-C), not a fault. */
export function statusOf(state: string, error: Pick<ErrorRecord, 'kind'> | null = null): RunStatus {
  if (state === 'done') return 'done';
  if (state === 'aborted') return 'aborted';
  if (state === 'failed') return error?.kind === 'aborted' ? 'stopped' : 'failed';
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
    await deps.cluster?.acquire({ runId, inventory: args.inventory, takeOver: false }); // cluster lock, before anything is recorded
    deps.store.createRun({ id: runId, cluster: args.inventory.cluster, machineVersion: MACHINE_VERSION, inventoryJson: JSON.stringify(args.inventory), optionsJson: JSON.stringify(args.options) });
    for (const n of args.inventory.nodes) {
      deps.store.upsertNode({ runId, name: n.name, sshHost: n.sshHost, role: null, kind: n.kind ?? null, profile: null, address: n.address ?? null, bindAddress: null, fqdn: null });
    }
  } catch (err) {
    await deps.cluster?.release();
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
  const recoveries = deps.store.incrementRecoveries(runId);
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

type Start = { input: { runId: string; inventory: Inventory; options: RunOptions }; snapshot?: Snapshot<unknown> };

/** What the units of one drive share. */
interface Drive {
  deps: RunDeps;
  store: Store;
  runId: string;
  cluster: string;
  now: () => number;
  emit: (e: RunEvent) => void;
  /** The leader as the machine last recorded it (the secret is read back from it). */
  leader: string | null;
}

/**
 * The lock heartbeat. If the lock is taken away (regen unlock by another operator), this run must not send
 * another command: `lost()` then says so, and every step checks it before its effect.
 */
function holdLock(d: Drive): { lost: () => boolean; stop: () => void } {
  let lost: unknown = null;
  const timer = setInterval(() => {
    try {
      d.store.heartbeat(d.cluster, d.runId);
    } catch (err) {
      if (err instanceof RegenError && err.kind === 'lock-held') lost ??= err;
    }
  }, d.deps.heartbeatMs ?? 5000);
  timer.unref();
  return { lost: () => lost !== null, stop: () => clearInterval(timer) };
}

/** The secret the operator gave, or, once the leader's setup is done, the one read back from the leader. */
function secretSource(d: Drive): () => Promise<Secret> {
  let cached: Secret | null = d.deps.secret;
  return async () => {
    if (cached) return cached;
    if (d.leader && leaderSetupDone(d.store, d.runId)) {
      const s = await d.deps.port.readMeshSecret(d.leader);
      if (s) {
        cached = s;
        return s;
      }
    }
    throw new NeedsOperatorError('the mesh secret is needed to go on, and it cannot be read back from the leader yet', {
      hint: 'regen resume --password-file FILE (or set REGEN_MESH_PASSWORD) with the secret this run started with',
    });
  };
}

/** Journal hooks turned into progress events (and the test's crash hook passed through). */
function journalEvents(d: Drive): JournalHooks {
  const { runId, emit } = d;
  return {
    ...(d.deps.journalHooks?.afterWrite ? { afterWrite: d.deps.journalHooks.afterWrite } : {}),
    onStart: (e) => emit({ type: 'step.started', runId, step: e.step, node: e.node, attempt: e.round, at: e.at }),
    onFinish: (e) =>
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
  };
}

/** Downtime bookkeeping: its start recorded once per run, announced once per process (a resume shows the clock). */
function downtimeStart(d: Drive): (at: number) => void {
  let announced = false;
  return (at) => {
    const run = d.store.getRun(d.runId);
    if (run && run.downtimeStartedAt === null) d.store.updateRun(d.runId, { downtimeStartedAt: at });
    if (announced) return;
    announced = true;
    d.emit({ type: 'run.state', runId: d.runId, state: STEPS.leaderStop.state, at, downtimeStartedAt: run?.downtimeStartedAt ?? at });
  };
}

function stepDeps(d: Drive, lock: { lost: () => boolean }): StepDeps {
  const { store, runId, now, deps } = d;
  return {
    port: deps.port,
    store,
    runId,
    secret: secretSource(d),
    sleep: deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms))),
    now,
    convergeTimeoutMs: deps.convergeTimeoutMs ?? 60_000,
    onDowntimeStart: downtimeStart(d),
    journal: { store, runId, now, shouldStop: () => lock.lost() || (deps.shouldStop?.() ?? false), hooks: journalEvents(d) },
  };
}

/** A persisted transition, as the machine's inspection stream delivers it. */
interface Persisted {
  seq: number;
  state: string;
  context: RegenContext;
}

/**
 * Records every transition of the actor: the transition, the run row and (once the plan is settled) the node
 * rows, in one transaction; then `afterPersist` (warnings, progress events, the test's crash hook).
 */
function transitionRecorder(d: Drive, machine: typeof recoveryMachine, afterPersist: (p: Persisted, previous: string | null) => void) {
  let lastState: string | null = null;
  let error: unknown = null;
  const inspect = (ev: InspectionEvent, self: () => unknown): void => {
    if (ev.type !== '@xstate.snapshot' || ev.actorRef !== self() || error) return;
    // Stopping the actor when this process is done is not a step of the procedure: its snapshot (status
    // "stopped") must never become the one a resume restores.
    const event = (ev.event as { type: string }).type;
    if (event === 'xstate.stop') return;
    const snap = ev.snapshot as unknown as { value: unknown; context: RegenContext };
    const state = stateString(snap.value);
    const ctx = snap.context;
    try {
      const planSettled = state !== lastState && (lastState === 'preflight' || lastState === 'leaderCheck');
      const seq = d.store.persistTransition(
        { runId: d.runId, fromState: lastState, event, toState: state, snapshot: JSON.stringify(machine.getPersistedSnapshot(ev.snapshot as never)), machineVersion: MACHINE_VERSION },
        { state, status: statusOf(state, ctx.error), leader: ctx.leader, error: ctx.error, ...(state === 'done' || state === 'aborted' ? { finishedAt: d.now() } : {}) },
        planSettled ? ctx.nodes.map((n) => nodeRow(d.runId, n)) : [],
      );
      d.leader = ctx.leader;
      const previous = lastState;
      lastState = state;
      afterPersist({ seq, state, context: ctx }, previous);
    } catch (err) {
      error ??= err;
    }
  };
  return { inspect, error: () => error };
}

function nodeRow(runId: string, n: RegenContext['nodes'][number]) {
  return { runId, name: n.name, sshHost: n.sshHost, role: n.role, kind: n.kind, profile: n.profile, address: n.bindAddress, bindAddress: n.bindAddress, fqdn: n.fqdn };
}

/** After each persisted transition: new warnings and a changed state become events; then the test's hook. */
function announce(d: Drive): (p: Persisted, previous: string | null) => void {
  const warned = new Set<string>();
  return ({ seq, state, context }, previous) => {
    for (const w of context.warnings as Warning[]) {
      const key = `${w.node ?? ''}|${w.message}`;
      if (warned.has(key)) continue;
      warned.add(key);
      d.emit({ type: 'warning', runId: d.runId, message: w.message, ...(w.node === undefined ? {} : { node: w.node }), at: d.now() });
    }
    if (state !== previous) d.emit({ type: 'run.state', runId: d.runId, state, at: d.now(), ...(context.leader ? { leader: context.leader } : {}) });
    d.deps.afterTransition?.(seq, state);
    d.deps.cluster?.afterPersist(); // the journal's mirror on the nodes (machines/mirror.ts)
  };
}

type RecoveryActor = Actor<typeof recoveryMachine>;

/** Resolves at the next point where the runner must act: a stop state, confirmation, an error, or a failed write. */
function nextStop(actor: RecoveryActor, failed: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = (): boolean => {
      const state = stateString(actor.getSnapshot().value);
      return failed() || STOP_STATES.has(state) || state === 'confirming' || actor.getSnapshot().status !== 'active';
    };
    if (check()) return resolve();
    const sub = actor.subscribe({
      next: () => {
        if (check()) {
          sub.unsubscribe();
          resolve();
        }
      },
      error: () => {
        sub.unsubscribe();
        resolve();
      },
      complete: () => {
        sub.unsubscribe();
        resolve();
      },
    });
  });
}

/** Runs the actor to its next stop; at the confirmation point, asks (when a confirm is given) and goes on or aborts. */
async function runToStop(d: Drive, actor: RecoveryActor, failed: () => boolean): Promise<void> {
  for (;;) {
    await nextStop(actor, failed);
    if (failed()) return;
    const snap = actor.getSnapshot();
    if (stateString(snap.value) !== 'confirming' || !d.deps.confirm) return;
    const ok = await d.deps.confirm(snap.context);
    actor.send(ok ? { type: 'CONFIRM' } : { type: 'ABORT', reason: 'the operator declined' });
  }
}

/** The result once the actor stopped: the status, the downtime's end, the closing event, the lock released. */
/** The locks this run holds, on the nodes and in the database. */
async function releaseLocks(d: Drive): Promise<void> {
  await d.deps.cluster?.release();
  d.store.releaseLock(d.cluster, d.runId);
}

async function finish(d: Drive, actor: RecoveryActor, persistError: unknown, actorError: unknown): Promise<RunResult> {
  const { store, runId, now } = d;
  if (persistError) {
    await releaseLocks(d);
    throw new StoreError(`could not record the run's progress: ${toErrorRecord(persistError).message}`, 'the database may be full or damaged; the journal holds everything up to this point: regen resume when fixed', persistError);
  }
  const snap = actor.getSnapshot();
  const state = stateString(snap.value);
  const status = actorError ? 'failed' : statusOf(state, snap.context.error);
  const error = actorError ? toErrorRecord(actorError) : snap.context.error;
  if (actorError) store.updateRun(runId, { status: 'failed', error });
  if (state === 'done' && store.getRun(runId)?.downtimeEndedAt === null) store.updateRun(runId, { downtimeEndedAt: now() });
  const run = store.getRun(runId);
  const downtimeMs = run?.downtimeStartedAt ? (run.downtimeEndedAt ?? now()) - run.downtimeStartedAt : undefined;
  if (status !== 'running') d.emit({ type: 'run.finished', runId, status, at: now(), ...(downtimeMs === undefined ? {} : { downtimeMs }) });
  await releaseLocks(d);
  return { runId, status, state, context: snap.context, error };
}

/**
 * One drive of the machine: hold the lock, provide the steps, record every transition, run to the next point
 * where a human is needed (asking for the confirmation on the way), then close the run's books.
 */
async function drive(deps: RunDeps, runId: string, start: Start, resumed: boolean): Promise<RunResult> {
  const d: Drive = {
    deps,
    store: deps.store,
    runId,
    cluster: start.input.inventory.cluster,
    now: deps.now ?? Date.now,
    emit: (e) => deps.onEvent?.(e),
    leader: (start.snapshot as { context?: RegenContext } | undefined)?.context?.leader ?? null,
  };
  deps.port.bindRun?.(runId);
  if (resumed) {
    // A resume takes the cluster lock over from its own run's dead process (machines/cluster-lock.ts).
    try {
      await deps.cluster?.acquire({ runId, inventory: start.input.inventory, takeOver: true });
    } catch (err) {
      d.store.releaseLock(d.cluster, runId);
      throw err;
    }
  }
  const lock = holdLock(d);
  const machine = recoveryMachine.provide({ actors: makeActors(stepDeps(d, lock), deps.actorHooks ?? {}) });
  const recorder = transitionRecorder(d, machine, announce(d));
  let actorError: unknown = null;
  const actor: RecoveryActor = createActor(machine, {
    input: start.input,
    ...(start.snapshot ? { snapshot: start.snapshot as never } : {}),
    inspect: (ev) => recorder.inspect(ev, () => actor),
  });
  // Every machine error is routed to failed/needsOperator; an error here is a bug, reported, never rethrown later.
  const guard = actor.subscribe({ error: (err) => (actorError ??= err) });
  d.emit({ type: 'run.started', runId, cluster: d.cluster, nodes: start.input.inventory.nodes.map((n) => n.name), at: d.now() });
  actor.start();
  // A restored failed/needsOperator run goes on from where it stopped.
  const initial = stateString(actor.getSnapshot().value);
  if (resumed && (initial === 'failed' || initial === 'needsOperator')) actor.send({ type: 'RETRY' });
  try {
    await runToStop(d, actor, () => recorder.error() !== null || actorError !== null);
  } catch (err) {
    await releaseLocks(d);
    throw err;
  } finally {
    guard.unsubscribe();
    actor.stop();
    lock.stop();
  }
  return finish(d, actor, recorder.error(), actorError);
}
