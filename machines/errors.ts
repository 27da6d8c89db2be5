/**
 * The few error classes regen knows. Each carries what the operator should do next;
 * cli/exit-codes.ts maps them to exit codes in one place.
 */

export type ErrorKind =
  | 'usage' // bad flags, malformed inventory: nothing was touched
  | 'preflight' // a tool is missing or a check failed before any change
  | 'unreachable' // a node could not be reached (or stopped answering mid-step); resumable once it is back
  | 'step-failed' // a remote step failed; the run is resumable
  | 'needs-operator' // an ambiguity a human must settle (unknown outcome that a probe cannot settle, unexpected output)
  | 'lock-held' // another regen process holds the cluster lock
  | 'divergence' // the run was recorded by a different version of the procedure
  | 'store' // database damaged, from a newer version, unwritable
  | 'aborted' // the operator declined or interrupted
  | 'internal';

/** One of several problems an error is made of (preflight of many nodes), as data: callers never parse the message. */
export interface Problem {
  node?: string;
  kind: ErrorKind;
  /** Without the node's name (that is `node`). */
  message: string;
  hint?: string;
}

/** The message of an error made of problems: one line each, under a headline. */
export function problemsMessage(headline: string, problems: Problem[]): string {
  return `${headline}:\n  - ${problems.map((p) => `${p.node === undefined ? '' : `${p.node}: `}${p.message}`).join('\n  - ')}`;
}

export class RegenError extends Error {
  readonly kind: ErrorKind;
  /** The node the error is about, if any. */
  readonly node: string | undefined;
  /** What to do next, in the operator's words (a command or a flag). */
  readonly hint: string | undefined;
  /** The problems the message lists, when it lists several. */
  readonly problems: Problem[] | undefined;

  constructor(kind: ErrorKind, message: string, opts: { node?: string; hint?: string; cause?: unknown; problems?: Problem[] } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RegenError';
    this.kind = kind;
    this.node = opts.node;
    this.hint = opts.hint;
    this.problems = opts.problems;
  }
}

export class UsageError extends RegenError {
  constructor(message: string, hint?: string) {
    super('usage', message, hint === undefined ? {} : { hint });
    this.name = 'UsageError';
  }
}

export class LockHeldError extends RegenError {
  constructor(message: string, hint?: string) {
    super('lock-held', message, hint === undefined ? {} : { hint });
    this.name = 'LockHeldError';
  }
}

export class StoreError extends RegenError {
  constructor(message: string, hint?: string, cause?: unknown) {
    super('store', message, { ...(hint === undefined ? {} : { hint }), cause });
    this.name = 'StoreError';
  }
}

export class DivergenceError extends RegenError {
  constructor(message: string, hint?: string) {
    super('divergence', message, hint === undefined ? {} : { hint });
    this.name = 'DivergenceError';
  }
}

/** Transport outcome: the node could not be reached; the command never started. */
export class NodeUnreachableError extends RegenError {
  constructor(node: string, message: string, hint?: string) {
    super('unreachable', message, { node, ...(hint === undefined ? {} : { hint }) });
    this.name = 'NodeUnreachableError';
  }
}

/** The login user cannot run commands as root (no passwordless sudo, no sudo): the node is reached, and misconfigured. */
export class PrivilegeError extends RegenError {
  constructor(node: string, message: string, hint: string) {
    super('preflight', message, { node, hint });
    this.name = 'PrivilegeError';
  }
}

/** The node answered with a host key known_hosts does not vouch for (unknown, changed, revoked): regen will not talk to it. */
export class HostKeyRefusedError extends RegenError {
  constructor(node: string, message: string, hint: string) {
    super('preflight', message, { node, hint });
    this.name = 'HostKeyRefusedError';
  }
}

/** Transport outcome: the connection dropped (or timed out) while the command ran; its effect is unknown. */
export class OutcomeUnknownError extends RegenError {
  constructor(node: string, message: string) {
    super('needs-operator', message, { node });
    this.name = 'OutcomeUnknownError';
  }
}

/** A remote command ran and failed, or printed something regen does not understand. */
export class CommandFailedError extends RegenError {
  readonly exitCode: number | null;
  constructor(node: string, message: string, exitCode: number | null, hint?: string) {
    super('step-failed', message, { node, ...(hint === undefined ? {} : { hint }) });
    this.name = 'CommandFailedError';
    this.exitCode = exitCode;
  }
}

/**
 * The leader's setup was refused because the ACL reset index it wrote is stale (the ACLs were reset after regen
 * read it). Consul's answer names the valid index; it is kept, typed, in the journal for the next round.
 */
export class StaleResetIndexError extends CommandFailedError {
  constructor(
    node: string,
    message: string,
    exitCode: number | null,
    readonly validResetIndex: number,
  ) {
    super(node, message, exitCode, 'regen resume (the next round writes the index consul named)');
    this.name = 'StaleResetIndexError';
  }
}

/** The step needs a human: e.g. output regen does not understand, or a probe that cannot decide. */
export class NeedsOperatorError extends RegenError {
  constructor(message: string, opts: { node?: string; hint?: string } = {}) {
    super('needs-operator', message, opts);
    this.name = 'NeedsOperatorError';
  }
}

/** Plain-JSON form of an error, as kept in machine context and the store. */
export interface ErrorRecord {
  kind: ErrorKind;
  name: string;
  message: string;
  node?: string;
  hint?: string;
  exitCode?: number | null;
  problems?: Problem[];
  /** StaleResetIndexError: the index consul named as valid. */
  validResetIndex?: number;
}

export function toErrorRecord(err: unknown): ErrorRecord {
  if (err instanceof RegenError) {
    const rec: ErrorRecord = { kind: err.kind, name: err.name, message: err.message };
    if (err.node !== undefined) rec.node = err.node;
    if (err.hint !== undefined) rec.hint = err.hint;
    if (err instanceof CommandFailedError) rec.exitCode = err.exitCode;
    if (err instanceof StaleResetIndexError) rec.validResetIndex = err.validResetIndex;
    if (err.problems !== undefined) rec.problems = err.problems;
    return rec;
  }
  if (err instanceof Error) return { kind: 'internal', name: err.name, message: err.message };
  return { kind: 'internal', name: 'Error', message: String(err) };
}
