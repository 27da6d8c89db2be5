/**
 * Progress events: what the runner tells the operator (the terminal reporters render them, `--json` prints them).
 * The machine owns their types; adapters/terminal publishes the JSON Schema and validates against it.
 * Times are milliseconds since the epoch, like the store's.
 */
import type { RunStatus, StepOutcome } from '../store/types.js';
import type { ErrorRecord } from './errors.js';

export interface RunStartedEvent {
  type: 'run.started';
  runId: string;
  cluster: string;
  /** Inventory node names, in inventory order. */
  nodes: string[];
  at: number;
}

export interface StepStartedEvent {
  type: 'step.started';
  runId: string;
  step: string;
  node: string;
  attempt: number;
  at: number;
  /** The first command the step runs, already free of secrets. */
  command?: string;
}

/** A further command inside a running step (a step such as the backup runs several). */
export interface StepCommandEvent {
  type: 'step.command';
  runId: string;
  step: string;
  node: string;
  command: string;
  at: number;
}

export interface StepFinishedEvent {
  type: 'step.finished';
  runId: string;
  step: string;
  node: string;
  attempt: number;
  at: number;
  durationMs: number;
  outcome: StepOutcome;
  error?: ErrorRecord;
}

export interface RunStateEvent {
  type: 'run.state';
  /** Machine state value as a string, e.g. "leader.setup". */
  state: string;
  runId?: string;
  at?: number;
  /** Once known: the recorded leader (the live view lists it first). */
  leader?: string;
  /** Once the leader's service stopped: start of the mesh downtime. */
  downtimeStartedAt?: number;
}

export interface RunFinishedEvent {
  type: 'run.finished';
  runId: string;
  status: Exclude<RunStatus, 'running'>;
  at: number;
  downtimeMs?: number;
}

export interface WarningEvent {
  type: 'warning';
  message: string;
  node?: string;
  runId?: string;
  at?: number;
}

export type ProgressEvent =
  | RunStartedEvent
  | StepStartedEvent
  | StepCommandEvent
  | StepFinishedEvent
  | RunStateEvent
  | RunFinishedEvent
  | WarningEvent;
