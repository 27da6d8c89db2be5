/**
 * Row shapes and the Store interface. store/sqlite-store.ts implements it over better-sqlite3.
 * Every text that reaches the database passes through the store's redactor first (defence in depth:
 * callers already keep secrets out).
 */
import type { ErrorRecord } from '../machines/errors.js';

/** `stopped`: the operator stopped the run (Ctrl-C); it is resumable, as `failed` and `needs-operator` are. */
export type RunStatus = 'running' | 'failed' | 'stopped' | 'needs-operator' | 'done' | 'aborted';

export interface RunRow {
  id: string;
  cluster: string;
  status: RunStatus;
  /** Top-level machine state value as a string, e.g. "leader.setup" or "followers". */
  state: string;
  machineVersion: string;
  /** Inventory and options as JSON (never a secret). */
  inventoryJson: string;
  optionsJson: string;
  leader: string | null;
  createdAt: number; // ms since epoch
  updatedAt: number;
  finishedAt: number | null;
  /** Leader's service stopped (start of mesh downtime), ms since epoch. */
  downtimeStartedAt: number | null;
  downtimeEndedAt: number | null;
  /** How many times the run was resumed. */
  recoveries: number;
  error: ErrorRecord | null;
}

export interface NodeRow {
  runId: string;
  name: string;
  sshHost: string;
  role: 'leader' | 'follower' | null;
  kind: 'server' | 'agent' | null;
  profile: 'current' | 'legacy' | null;
  address: string | null;
  bindAddress: string | null;
  fqdn: string | null;
}

export interface TransitionRow {
  runId: string;
  seq: number;
  at: number;
  fromState: string | null;
  event: string;
  toState: string;
  /** Persisted XState snapshot (JSON text). */
  snapshot: string;
  machineVersion: string;
}

export type StepOutcome = 'done' | 'failed' | 'unknown' | 'skipped';
export type ProbeResult = 'done' | 'not-done' | 'unknown';

export interface JournalRow {
  id: number;
  runId: string;
  /** Step name as the code names it, e.g. "leader.setup", "follower.join". */
  step: string;
  node: string;
  attempt: number;
  startedAt: number;
  endedAt: number | null;
  /** null while the step is in flight (intent without outcome). */
  outcome: StepOutcome | null;
  /** Set when the step's probe ran (on resume after an unknown outcome, or before applying). */
  probe: ProbeResult | null;
  /** Redacted JSON detail: result summary or ErrorRecord. */
  detail: string | null;
}

export interface AuditRow {
  id: number;
  runId: string;
  node: string;
  at: number;
  command: string;
  exitCode: number | null;
  durationMs: number;
  outcome: 'completed' | 'unreachable' | 'unknown';
  stdoutTail: string;
  stderrTail: string;
}

export interface BackupRow {
  runId: string;
  node: string;
  dir: string;
  path: string;
  sha256: string;
  size: number;
  mode: string;
  owner: string;
  group: string;
}

export interface LockRow {
  cluster: string;
  runId: string;
  pid: number;
  host: string;
  acquiredAt: number;
  heartbeatAt: number;
}

/** The fields of a run a transition or a command may change. */
export type RunPatch = Partial<Pick<RunRow, 'status' | 'state' | 'leader' | 'finishedAt' | 'downtimeStartedAt' | 'downtimeEndedAt' | 'error'>>;

export interface Store {
  readonly path: string;
  close(): void;
  setRedactor(redact: (text: string) => string): void;

  createRun(run: { id: string; cluster: string; machineVersion: string; inventoryJson: string; optionsJson: string }): RunRow;
  getRun(id: string): RunRow | null;
  listRuns(): RunRow[];
  /** Latest run whose status is not done/aborted, optionally for one cluster. */
  latestUnfinishedRun(cluster?: string): RunRow | null;
  updateRun(id: string, patch: RunPatch): void;
  /** Adds one to the run's recoveries (a resume) and returns the new count. */
  incrementRecoveries(id: string): number;

  upsertNode(node: NodeRow): void;
  listNodes(runId: string): NodeRow[];

  /** Appends a transition; seq is assigned (1, 2, …) per run. Synchronous, so order holds. */
  appendTransition(t: Omit<TransitionRow, 'seq' | 'at'> & { at?: number }): number;
  /** A transition with the run row and node rows it changes, in one transaction; returns its seq. */
  persistTransition(t: Omit<TransitionRow, 'seq' | 'at'> & { at?: number }, run: RunPatch, nodes: readonly NodeRow[]): number;
  lastTransition(runId: string): TransitionRow | null;
  listTransitions(runId: string, opts?: { withSnapshots?: boolean }): TransitionRow[];
  countTransitions(runId: string): number;

  /** Intent row, committed before the remote effect. Returns its id. */
  beginStep(s: { runId: string; step: string; node: string; attempt: number; at?: number }): number;
  recordProbe(id: number, probe: ProbeResult): void;
  /** Outcome row (updates the intent). */
  endStep(id: number, outcome: StepOutcome, detail?: unknown, at?: number): void;
  journal(runId: string, filter?: { step?: string; node?: string }): JournalRow[];
  /** Intents without outcome. */
  openSteps(runId: string): JournalRow[];

  audit(a: Omit<AuditRow, 'id' | 'at'> & { at?: number }): void;
  listAudit(runId: string, opts?: { node?: string; limit?: number }): AuditRow[];

  recordBackup(b: BackupRow): void;
  listBackups(runId: string, node?: string): BackupRow[];

  /** Throws LockHeldError (with who holds it and how to unlock) if another run holds the cluster. */
  acquireLock(l: { cluster: string; runId: string; pid: number; host: string }): void;
  heartbeat(cluster: string, runId: string): void;
  releaseLock(cluster: string, runId: string): void;
  getLock(cluster: string): LockRow | null;
  /** Explicit takeover (regen unlock): removes whatever lock the cluster has; returns it. */
  forceUnlock(cluster: string): LockRow | null;
}
