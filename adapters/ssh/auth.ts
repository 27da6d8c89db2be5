/**
 * Logging in: the public key methods in ssh's order (the agent, then identity files), private keys parsed once per
 * process, and a key file's passphrase asked of the operator only when it is needed.
 */
import { readFile } from 'node:fs/promises';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, AuthenticationType, ParsedKey } from 'ssh2';
import type { Secret } from '../secrets/secret.js';
import type { Hop } from './connect.js';

/** Asks the operator for a key file's passphrase (the CLI wires a hidden prompt); null or '' = skip this key. */
export type PassphrasePrompt = (keyPath: string, attempt: number) => Promise<Secret | string | null | undefined>;

/** Stops the connect deadline while the operator types (true) and restarts it afterwards (false). */
export type PauseClock = (paused: boolean) => void;

/** Keys parsed (and passphrases asked) once per process, not once per node or reconnect. */
export class KeyCache {
  readonly #keys = new Map<string, Promise<ParsedKey | string>>();

  /** A parsed private key, or a reason it cannot be used. */
  get(path: string, prompt: PassphrasePrompt | undefined, pauseClock: PauseClock): Promise<ParsedKey | string> {
    let p = this.#keys.get(path);
    if (p === undefined) {
      p = this.#load(path, prompt, pauseClock);
      this.#keys.set(path, p);
    }
    return p;
  }

  async #load(path: string, prompt: PassphrasePrompt | undefined, pauseClock: PauseClock): Promise<ParsedKey | string> {
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (err) {
      return `${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
    }
    const parsed = firstKey(ssh2.utils.parseKey(data));
    if (!(parsed instanceof Error)) return parsed.isPrivateKey() ? parsed : `${path}: not a private key`;
    if (!/passphrase/i.test(parsed.message)) return `${path}: ${parsed.message}`;
    if (prompt === undefined) return `${path}: encrypted and no passphrase prompt is available (load it into ssh-agent)`;
    return unlock(path, data, prompt, pauseClock);
  }
}

/** Up to three passphrase attempts; the connect deadline stands still while the operator types. */
async function unlock(path: string, data: Buffer, prompt: PassphrasePrompt, pauseClock: PauseClock): Promise<ParsedKey | string> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    pauseClock(true);
    let answer: Secret | string | null | undefined;
    try {
      answer = await prompt(path, attempt);
    } finally {
      pauseClock(false);
    }
    const passphrase = typeof answer === 'string' ? answer : (answer?.reveal() ?? '');
    if (passphrase === '') return `${path}: no passphrase given`;
    const parsed = firstKey(ssh2.utils.parseKey(data, passphrase));
    if (!(parsed instanceof Error)) return parsed;
  }
  return `${path}: wrong passphrase`;
}

function firstKey(k: ParsedKey | ParsedKey[] | Error): ParsedKey | Error {
  return Array.isArray(k) ? (k[0] ?? new Error('no key in file')) : k;
}

/** What the login may use besides the hop's own settings. */
export interface AuthSources {
  keys: KeyCache;
  /** ssh-agent socket (default $SSH_AUTH_SOCK); null disables the agent. */
  agentSocket?: string | null | undefined;
  passphrasePrompt?: PassphrasePrompt | undefined;
}

type AuthStep = { kind: 'agent'; sock: string } | { kind: 'file'; path: string };

/**
 * Auth methods in ssh's order: agent keys, then identity files (asking for passphrases as needed). What was tried
 * is appended to `tried`, for the message when every method fails.
 */
export function authMethods(hop: Hop, src: AuthSources, tried: string[], pause: PauseClock): (left: AuthenticationType[] | null) => Promise<AnyAuthMethod | false> {
  const r = hop.resolved;
  const agentSock = r.identityAgent !== undefined ? r.identityAgent : src.agentSocket !== undefined ? src.agentSocket : (process.env['SSH_AUTH_SOCK'] ?? null);
  const queue: AuthStep[] = [];
  if (agentSock !== null && agentSock !== '' && !(r.identitiesOnly && hop.explicitIdentities)) queue.push({ kind: 'agent', sock: agentSock });
  for (const path of hop.identityFiles) queue.push({ kind: 'file', path });
  return async (left) => {
    while (queue.length > 0) {
      const m = queue.shift();
      if (m === undefined) break;
      if (left !== null && !left.includes('publickey')) {
        tried.push(`server allows only ${left.join(', ')}`);
        return false;
      }
      if (m.kind === 'agent') {
        tried.push(`agent ${m.sock}`);
        return { type: 'agent', username: r.user, agent: m.sock };
      }
      // Default identity files that do not exist are silently skipped, as ssh does.
      const key = await src.keys.get(m.path, src.passphrasePrompt, pause);
      if (typeof key === 'string') {
        if (hop.explicitIdentities || !key.endsWith('ENOENT')) tried.push(key);
        continue;
      }
      tried.push(m.path);
      return { type: 'publickey', username: r.user, key };
    }
    return false;
  };
}
