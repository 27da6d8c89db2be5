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

/** What each code means: `regen --help` prints it, and README.md's table says the same (a test compares them). */
export const EXIT_DESCRIPTIONS: Record<keyof typeof EXIT, string> = {
  ok: 'done (for plan/status: the command worked)',
  internal: 'internal error (a bug; run with REGEN_DEBUG=1 for the stack)',
  usage: 'bad command line or inventory, or nothing to act on (no such run, no database yet); nothing was changed',
  preflight: 'preflight failed (missing tool, no root or no passwordless sudo, refused host key, bad address); nothing was changed',
  stepFailed: 'a step failed; the run is recorded, regen resume continues',
  needsOperator: 'regen needs a decision from you (see the message: which address to bind, which node leads, an unclear outcome), then regen resume or start again',
  lockHeld: 'another regen process holds the lock for this cluster',
  divergence: 'the run was recorded by a different version of the procedure',
  store: 'the state database is damaged, newer than this regen, or not writable',
  aborted: 'stopped by the operator (Ctrl-C once or twice, or the confirmation declined)',
  unreachable: 'a node could not be reached; before the confirmation nothing changed, after it the run is resumable',
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
