/**
 * Host key decisions: whether the key a node offers is the one known_hosts pins, and recording new keys when the
 * operator opted in. A changed or revoked key is never accepted.
 */
import { shq } from '../shell/quote.js';
import {
  appendKnownHost,
  checkHostKey,
  defaultKnownHostsFiles,
  fingerprintSha256,
  hostKeyFromBlob,
  knownHostsName,
  knownKeyTypes,
  readKnownHostsFiles,
  type HostKey,
  type HostKeyCheck,
} from './known-hosts.js';
import type { ResolvedHost } from './ssh-config.js';
import { hostPort } from './util.js';

export interface AcceptedHostKey {
  node: string;
  /** The known_hosts name the key was recorded under (`host` or `[host]:port`). */
  name: string;
  type: string;
  fingerprint: string;
  file: string;
}

export type Verdict = { ok: true } | { ok: false; message: string; hint: string };

/** Per-host additions from ssh_config: its UserKnownHostsFile / GlobalKnownHostsFile, HashKnownHosts. */
export interface HostKeyFiles {
  files?: string[];
  hash?: boolean;
}

/** The key a node offered, and where it was offered. */
interface Offer {
  node: string;
  host: string;
  port: number;
  key: HostKey;
  fp: string;
}

/**
 * Host key decisions for every connection of a run: one known_hosts file, one opt-in, one list of what was
 * accepted. Decisions are serialized so two connections to a new jump host append it once.
 */
export class HostKeyPolicy {
  readonly file: string;
  readonly acceptNew: boolean;
  readonly hash: boolean;
  readonly #accepted: AcceptedHostKey[] = [];
  /** Files read besides `file` (known_hosts2, the global files): a key pinned in any of them is pinned. */
  readonly #readOnly: string[];
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: { file: string; acceptNew?: boolean; hash?: boolean; readOnly?: string[] }) {
    this.file = opts.file;
    this.acceptNew = opts.acceptNew === true;
    this.hash = opts.hash === true;
    this.#readOnly = opts.readOnly ?? [];
  }

  #files(extra: HostKeyFiles): string[] {
    return [this.file, ...this.#readOnly, ...(extra.files ?? [])];
  }

  accepted(): AcceptedHostKey[] {
    return this.#accepted.map((a) => ({ ...a }));
  }

  async knownTypes(host: string, port: number, extra: HostKeyFiles = {}): Promise<string[]> {
    return knownKeyTypes(await readKnownHostsFiles(this.#files(extra)), host, port);
  }

  verify(node: string, host: string, port: number, blob: Buffer, extra: HostKeyFiles = {}): Promise<Verdict> {
    const run = this.#queue.then(() => this.#verify(node, host, port, blob, extra));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #verify(node: string, host: string, port: number, blob: Buffer, extra: HostKeyFiles): Promise<Verdict> {
    let key;
    try {
      key = hostKeyFromBlob(blob);
    } catch {
      return { ok: false, message: `${node} (${hostPort(host, port)}) sent a malformed host key`, hint: 'check that the address points at an SSH server' };
    }
    const offer: Offer = { node, host, port, key, fp: fingerprintSha256(blob) };
    const entries = await readKnownHostsFiles(this.#files(extra));
    const check = checkHostKey(entries, host, port, key);
    switch (check.status) {
      case 'match':
        return { ok: true };
      case 'revoked':
        return this.#revoked(offer, check);
      case 'mismatch':
        return this.#changed(offer, check);
      case 'unknown':
        return this.#unknown(offer, extra);
    }
  }

  #revoked(o: Offer, check: Extract<HostKeyCheck, { status: 'revoked' }>): Verdict {
    return {
      ok: false,
      message: `host key of ${o.node} (${hostPort(o.host, o.port)}) is marked @revoked in ${check.entry.file ?? this.file}:${check.entry.line}: ${o.key.type} ${o.fp}`,
      hint: 'the node must get a new host key; regen will not connect with a revoked one',
    };
  }

  #changed(o: Offer, check: Extract<HostKeyCheck, { status: 'mismatch' }>): Verdict {
    const name = knownHostsName(o.host, o.port);
    const was = check.known.map((e) => `${e.key.type} ${fingerprintSha256(e.key)} (${e.file ?? this.file}:${e.line})`).join(', ');
    return {
      ok: false,
      message:
        `HOST KEY CHANGED for ${o.node} (${hostPort(o.host, o.port)}): it offers ${o.key.type} ${o.fp}, known_hosts has ${was}. ` +
        'Someone could be intercepting the connection, or the host key was replaced.',
      hint: `if the change is expected, check the new fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), remove the old entry with: ssh-keygen -R ${shq(name)} -f ${shq(this.file)}, then accept the new key (--accept-new-host-keys never replaces a changed key)`,
    };
  }

  async #unknown(o: Offer, extra: HostKeyFiles): Promise<Verdict> {
    if (!this.acceptNew) {
      return {
        ok: false,
        message: `host key of ${o.node} (${hostPort(o.host, o.port)}) is not in ${this.file}: ${o.key.type} ${o.fp}`,
        hint: `compare it with the node's key (ssh-keygen -lf /etc/ssh/ssh_host_${shortType(o.key.type)}_key.pub on the node); to accept it, connect once with ssh ${o.port === 22 ? '' : `-p ${o.port} `}${shq(o.host)}, or run regen with --accept-new-host-keys`,
      };
    }
    await appendKnownHost(this.file, o.host, o.port, o.key, { hash: this.hash || extra.hash === true });
    this.#accepted.push({ node: o.node, name: knownHostsName(o.host, o.port), type: o.key.type, fingerprint: o.fp, file: this.file });
    return { ok: true };
  }
}

function shortType(type: string): string {
  if (type === 'ssh-ed25519') return 'ed25519';
  if (type.startsWith('ecdsa')) return 'ecdsa';
  if (type === 'ssh-rsa') return 'rsa';
  return '*';
}

/** What OpenSSH reads besides the recording file: ~/.ssh/known_hosts2 (default setup only) and the global files. */
export function readOnlyKnownHosts(opts: { knownHostsPath?: string; globalKnownHostsFiles?: string[] }, home: string): string[] {
  const defaults = defaultKnownHostsFiles(home);
  return [...(opts.knownHostsPath === undefined ? defaults.user : []), ...(opts.globalKnownHostsFiles ?? defaults.global)];
}

/** ssh_config's files for this host; --known-hosts replaces its UserKnownHostsFile, as `ssh -o` would. */
export function hostKeyFiles(r: ResolvedHost, o: { knownHostsPath?: string }): HostKeyFiles {
  const user = o.knownHostsPath === undefined ? r.userKnownHostsFiles : [];
  return { files: [...user, ...r.globalKnownHostsFiles], hash: r.hashKnownHosts };
}
