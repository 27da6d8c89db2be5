/**
 * Exit codes: the one table, mapped from error kinds in exactly one place (exitCodeFor). README.md lists it.
 */
import { RegenError, type ErrorKind } from '../machines/errors.js';

export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  preflight: 3,
  stepFailed: 4,
  needsOperator: 5,
  lockHeld: 6,
  divergence: 7,
  store: 8,
  aborted: 9,
  unreachable: 10,
} as const;

export const EXIT_DESCRIPTIONS: Record<keyof typeof EXIT, string> = {
  ok: 'done (or, for plan/status, the command itself worked)',
  internal: 'internal error (a bug: please report it with regen log output)',
  usage: 'bad command line or inventory; nothing was changed',
  preflight: 'preflight failed (unreachable node, missing tool, bad address); nothing was changed',
  stepFailed: 'a step failed; the run is recorded and resumable with regen resume',
  needsOperator: 'regen needs a decision from you (see the message); then regen resume',
  lockHeld: 'another regen run holds the lock for this cluster',
  divergence: 'the run was recorded by a different version of the procedure',
  store: 'the state database is damaged, newer than this regen, or not writable',
  aborted: 'stopped by the operator (Ctrl-C or declined confirmation); resumable unless aborted',
  unreachable: 'a node could not be reached; before the confirmation nothing was changed, after it the run is resumable once the node is back',
};

const BY_KIND: Record<ErrorKind, number> = {
  usage: EXIT.usage,
  preflight: EXIT.preflight,
  unreachable: EXIT.unreachable,
  'step-failed': EXIT.stepFailed,
  'needs-operator': EXIT.needsOperator,
  'lock-held': EXIT.lockHeld,
  divergence: EXIT.divergence,
  store: EXIT.store,
  aborted: EXIT.aborted,
  internal: EXIT.internal,
};

export function exitCodeForKind(kind: ErrorKind): number {
  return BY_KIND[kind];
}

export function exitCodeFor(err: unknown): number {
  return err instanceof RegenError ? exitCodeForKind(err.kind) : EXIT.internal;
}
