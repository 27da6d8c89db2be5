/**
 * What every concern of the Carbonio port shares: the `run` it is handed, and the helpers that turn an answer into
 * the errors of machines/errors.ts (a failed command, a token that could not be taken from the credentials).
 */
import { CommandFailedError, UsageError } from '../../machines/errors.js';
import { MASK, type Secret } from '../secrets/secret.js';
import type { ExecOptions, ExecResult } from '../ssh/remote.js';
import { tail, tokenProblem } from './parse.js';

/** One command on a node: the port's timeout and signal applied, its exit code and duration logged. */
export type Run = (node: string, what: string, command: string, execOpts?: ExecOptions) => Promise<ExecResult>;

/** Handed by createCarbonioPort to each concern's methods. */
export interface PortKit {
  run: Run;
  /** One line per notable event; never given a secret. */
  log: (line: string) => void;
}

/** The secret as one stdin line; a line break inside it would cut it short on the node. */
export function secretLine(secret: Secret): string {
  const value = secret.reveal();
  if (/[\r\n\0]/.test(value)) {
    throw new UsageError(`the ${secret.label} contains a line break or NUL, which service-discover cannot read`, 'choose a secret without line breaks');
  }
  return `${value}\n`;
}

/** Builders throw plain Errors on values they refuse to quote into a command; those are usage errors. */
export function build<T = string>(make: () => T): T {
  try {
    return make();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** A failure message from a command's own output; a secret the port holds is masked in it as well. */
export function failed(node: string, what: string, res: ExecResult, hint?: string, secret?: Secret): CommandFailedError {
  const [err, std] = [tail(res.stderr, 300), tail(res.stdout, 200)];
  let out = err !== '' && std !== '' ? `${err} | stdout: ${std}` : err + std;
  if (secret !== undefined) out = out.split(secret.reveal()).join(MASK);
  return new CommandFailedError(node, `${what} failed on ${node} (exit ${res.code})${out === '' ? '' : `: ${out}`}`, res.code, hint);
}

/** The error for a command that could not take the token from the node's credentials; null when it could. */
export function tokenFailure(node: string, what: string, res: ExecResult): CommandFailedError | null {
  const problem = tokenProblem(res.stdout);
  if (problem === null) return null;
  const gpgSaid = tail(res.stderr);
  switch (problem) {
    case 'no-credentials':
      return new CommandFailedError(node, `${what} on ${node}: there is no ${'cluster-credentials.tar.gpg'} to take the token from`, res.code, 'copy the credentials from the leader first');
    case 'bad-secret':
      return new CommandFailedError(
        node,
        `${what} on ${node}: token could not be read from credentials (wrong secret?)${gpgSaid === '' ? '' : `: ${gpgSaid}`}`,
        res.code,
        'check the mesh secret (--password-file FILE or REGEN_MESH_PASSWORD) against the leader’s credentials',
      );
    case 'no-token':
      return new CommandFailedError(node, `${what} on ${node}: the credentials decrypt but hold no consul-acl-secret.json SecretID`, res.code);
  }
}
