/**
 * Where the mesh secret comes from. It is never stored by regen: each source is read at the start of a run (a
 * resume reads it back from the leader instead), and the value is registered with the redactor at once.
 */
import { randomInt } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { RegenError, UsageError } from '../../machines/errors.js';
import { refuseConflicts, strong } from './secret-policy.js';
import { shq } from '../carbonio/shell.js';
import { Secret } from './secret.js';
import { redactor as processRedactor } from './redact.js';
import type { Redactor } from './redact.js';

export const MESH_SECRET_ENV = 'REGEN_MESH_PASSWORD';
/** Carbonio's Ansible keeps the mesh password beside the inventory under this suffix. */
export const ANSIBLE_PASSWORD_SUFFIX = '_consulpassword';
const GENERATED_LENGTH = 32;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const PROMPT_ATTEMPTS = 3;

export type MeshSecretSource = 'file' | 'env' | 'inventory' | 'prompt' | 'generated';

export interface ObtainMeshSecretOptions {
  passwordFile?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Path of Carbonio's Ansible inventory whose `<path>_consulpassword` the operator asked for
   * (--password-from-inventory). Never implied: the installer leaves the current secret there.
   */
  ansibleInventory?: string;
  /** Accept a new secret that is short or common (--weak-secret). */
  weakSecret?: boolean;
  prompt?: (question: string) => Promise<string>;
  /** Generate a random secret when no file, variable or Ansible password gives one (the prompt is skipped). */
  generate?: boolean;
  isTTY: boolean;
  /** A new secret is asked twice (typos would lock the mesh); the existing one once. Default: new. */
  purpose?: 'new' | 'existing';
  /** Where to register the secret; default the process-wide redactor. */
  redactor?: Redactor;
}

export interface MeshSecret {
  secret: Secret;
  source: MeshSecretSource;
}

const LABEL = 'mesh secret';

/**
 * The one source the operator named: --password-file, REGEN_MESH_PASSWORD, --password-from-inventory (Ansible's
 * `_consulpassword`) or --generate-password; else the prompt (TTY only). Two of them at once are an error naming
 * both, never a silent precedence. Null when none applies. A source that is given but unusable is an error, never
 * silently skipped: the operator meant it. A new secret that is weak is refused unless `weakSecret`.
 */
export async function obtainMeshSecret(opts: ObtainMeshSecretOptions): Promise<MeshSecret | null> {
  const found = await pick(opts);
  if (found !== null) (opts.redactor ?? processRedactor).add(found.secret, LABEL);
  return found;
}

async function pick(opts: ObtainMeshSecretOptions): Promise<MeshSecret | null> {
  refuseConflicts(opts);
  const purpose = opts.purpose ?? 'new';
  if (opts.passwordFile !== undefined) {
    const text = readPrivateFile(opts.passwordFile, '--password-file');
    return strong({ secret: checked(stripOneNewline(text), `the password file ${opts.passwordFile}`), source: 'file' }, opts);
  }
  const fromEnv = (opts.env ?? process.env)[MESH_SECRET_ENV];
  if (fromEnv !== undefined) {
    if (fromEnv === '') {
      throw new UsageError(`${MESH_SECRET_ENV} is set but empty`, `unset ${MESH_SECRET_ENV} or give it the mesh secret`);
    }
    return strong({ secret: checked(fromEnv, MESH_SECRET_ENV), source: 'env' }, opts);
  }
  if (opts.ansibleInventory !== undefined) {
    const path = `${opts.ansibleInventory}${ANSIBLE_PASSWORD_SUFFIX}`;
    if (!exists(path)) throw new UsageError(`--password-from-inventory: ${path} does not exist`, 'pass --password-file FILE, or drop --password-from-inventory');
    const secret = checked(parseAnsiblePasswordFile(readPrivateFile(path, 'the Ansible password file')), path);
    return strong({ secret, source: 'inventory' }, opts);
  }
  if (opts.generate === true) return { secret: generateMeshSecret(), source: 'generated' };
  if (opts.isTTY && opts.prompt !== undefined) {
    return strong({ secret: await ask(opts.prompt, purpose), source: 'prompt' }, opts);
  }
  return null;
}

export function generateMeshSecret(): Secret {
  let s = '';
  for (let i = 0; i < GENERATED_LENGTH; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return new Secret(s, LABEL);
}

async function ask(prompt: (q: string) => Promise<string>, purpose: 'new' | 'existing'): Promise<Secret> {
  if (purpose === 'existing') {
    const answer = await prompt('Current mesh secret: ');
    if (answer === '') throw new UsageError('no mesh secret was entered', 'run again and type the secret, or pass --password-file');
    return checked(answer, 'the answer');
  }
  let problem = '';
  for (let attempt = 1; attempt <= PROMPT_ATTEMPTS; attempt++) {
    const first = await prompt(`${problem}New mesh secret: `);
    if (first === '') {
      problem = 'The secret cannot be empty. ';
      continue;
    }
    const second = await prompt('Repeat the new mesh secret: ');
    if (first !== second) {
      problem = 'The two entries differ. ';
      continue;
    }
    return checked(first, 'the answer');
  }
  throw new UsageError(
    `no mesh secret after ${PROMPT_ATTEMPTS} attempts (${problem.trim().toLowerCase().replace(/\.$/, '')})`,
    'put the secret in a file (chmod 600) and pass --password-file <path>',
  );
}

/** The secret reaches gpg and service-discover as one line on stdin: a line break or NUL would cut it short. */
function checked(value: string, where: string): Secret {
  if (value.length === 0) throw new UsageError(`${where} is empty`, 'put the mesh secret in it (one line)');
  if (/[\r\n\0]/.test(value)) {
    throw new UsageError(`${where} holds more than one line`, 'the mesh secret is a single line; remove the extra lines');
  }
  return new Secret(value, LABEL);
}

function stripOneNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

/**
 * Ansible's password lookup writes `password[ salt=…][ ident=…]` and a newline, and strips trailing whitespace
 * when it reads; its alphabet has no spaces, so the markers cannot be part of the password.
 */
export function parseAnsiblePasswordFile(text: string): string {
  let content = text.replace(/\s+$/, '');
  for (const marker of [' ident=', ' salt=']) {
    const at = content.lastIndexOf(marker);
    if (at >= 0) content = content.slice(0, at);
  }
  return content;
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function readPrivateFile(path: string, what: string): string {
  let mode: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new UsageError(`${path} (${what}) is not a regular file`, 'pass the file that holds the mesh secret');
    mode = st.mode;
  } catch (err) {
    if (err instanceof RegenError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`${path} (${what}) ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(err)})`}`, 'check the path');
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new UsageError(
      `${path} (${what}) is readable or writable by group or others (mode ${octal}); a secret file must be private`,
      `chmod 600 ${shq(path)}`,
    );
  }
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${path} (${what}) cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'run as a user who can read it');
  }
}
