/**
 * Which secret the operator meant: one named source, never two, and a new secret that resists a guesser.
 */
import { UsageError } from '../../machines/errors.js';
import type { MeshSecret, MeshSecretSource, ObtainMeshSecretOptions } from './mesh-secret.js';

const ENV = 'REGEN_MESH_PASSWORD';
/** Below this length a new secret is refused unless --weak-secret. */
export const MIN_SECRET_LENGTH = 12;

/** Secrets a guesser tries first (compared case-insensitively, and with trailing digits and punctuation removed). */
const OBVIOUS = new Set([
  'password', 'passw0rd', 'p@ssw0rd', 'p@ssword', 'qwerty', 'qwertyuiop', 'letmein', 'welcome', 'changeme', 'admin',
  'administrator', 'root', 'secret', 'zextras', 'carbonio', 'consul', 'servicediscover', 'service-discover', 'mesh',
  'meshsecret', 'mesh-secret', 'default', 'iloveyou', 'abc', 'abcdef', 'abcdefgh', 'test', 'example', 'master',
  'dragon', 'monkey', 'trustno', 'zimbra', 'mailserver', 'postmaster',
]);

/** What the plan and the summary say about where the secret came from (never its value). */
export function describeSource(source: MeshSecretSource): string {
  const words: Record<MeshSecretSource, string> = {
    file: 'the --password-file file',
    env: `the environment (${ENV})`,
    inventory: "the inventory's _consulpassword file (--password-from-inventory)",
    prompt: 'the prompt',
    generated: 'generated (--generate-password)',
  };
  return words[source];
}

/** Two named sources at once are an error that names both: a leftover variable must not beat a flag silently. */
export function refuseConflicts(opts: ObtainMeshSecretOptions): void {
  const given: string[] = [];
  if (opts.passwordFile !== undefined) given.push('--password-file');
  if ((opts.env ?? process.env)[ENV] !== undefined) given.push(`the environment variable ${ENV}`);
  if (opts.ansibleInventory !== undefined) given.push('--password-from-inventory');
  if (opts.generate === true) given.push('--generate-password');
  if (given.length > 1) {
    throw new UsageError(
      `the mesh secret is given twice: ${given.join(' and ')}; regen will not guess which one you meant (nothing was changed)`,
      `keep exactly one of them${given.some((g) => g.includes(ENV)) ? ` (unset ${ENV} if it is a leftover)` : ''}`,
    );
  }
}

/** Is this new secret too easy to guess? Returns the reason, or null. */
export function weakness(value: string): string | null {
  if ([...value].length < MIN_SECRET_LENGTH) return `it is shorter than ${MIN_SECRET_LENGTH} characters`;
  const core = value.toLowerCase().replace(/[\d\s!@#$%^&*()_+=.,;:?-]+$/, '');
  if (OBVIOUS.has(core) || OBVIOUS.has(value.toLowerCase())) return 'it is in the list of obvious secrets';
  if (new Set(value).size <= 2) return 'it repeats one or two characters';
  return null;
}

/** A new secret that is weak is refused unless the operator said --weak-secret; an existing one is what it is. */
export function strong(found: MeshSecret, opts: ObtainMeshSecretOptions): MeshSecret {
  if ((opts.purpose ?? 'new') !== 'new' || opts.weakSecret === true) return found;
  const why = weakness(found.secret.reveal());
  if (why !== null) {
    throw new UsageError(
      `the new mesh secret from ${describeSource(found.source)} is weak: ${why} (nothing was changed)`,
      `use a longer random secret (or --generate-password); --weak-secret accepts it anyway`,
    );
  }
  return found;
}

/** The source a start would use, without reading it (the plan names it); conflicts are refused the same way. */
export function namedSource(opts: ObtainMeshSecretOptions): MeshSecretSource {
  refuseConflicts(opts);
  if (opts.passwordFile !== undefined) return 'file';
  if ((opts.env ?? process.env)[ENV] !== undefined) return 'env';
  if (opts.ansibleInventory !== undefined) return 'inventory';
  return opts.generate === true ? 'generated' : 'prompt';
}
