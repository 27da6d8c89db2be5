/**
 * OpenSSH known_hosts: parse, look a host key up, fingerprint it, record a new one.
 *
 * Understood: plain host lists (`a,b,[c]:2222`, with `*`, `?` and `!negation`), hashed entries
 * (`|1|salt|hash`, HMAC-SHA1 of the host name keyed by the salt), and the `@revoked` and `@cert-authority`
 * markers. regen does not authenticate with host certificates, so `@cert-authority` lines are ignored.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** A public host key as OpenSSH writes it: type name and the base64 of the wire blob. */
export interface HostKey {
  type: string;
  base64: string;
}

export type HostField = { kind: 'patterns'; patterns: string[] } | { kind: 'hashed'; salt: Buffer; hash: Buffer };

export interface KnownHostEntry {
  marker: 'revoked' | 'cert-authority' | null;
  host: HostField;
  key: HostKey;
  comment: string;
  /** 1-based line in the file, for messages that point the operator at it. */
  line: number;
  /** The file it was read from (set when several files are read together). */
  file?: string;
}

export interface ParsedKnownHosts {
  entries: KnownHostEntry[];
  /** Lines that could not be understood (OpenSSH skips them too); reported, never fatal. */
  invalidLines: number[];
}

export type HostKeyCheck =
  | { status: 'match'; entry: KnownHostEntry }
  /** The host is known with other keys: the server's key changed (or it is not the server we think). */
  | { status: 'mismatch'; known: KnownHostEntry[] }
  | { status: 'revoked'; entry: KnownHostEntry }
  | { status: 'unknown' };

/** The name OpenSSH looks a host up under: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

export function parseKnownHosts(text: string): ParsedKnownHosts {
  const entries: KnownHostEntry[] = [];
  const invalidLines: number[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] ?? '').trim();
    if (raw === '' || raw.startsWith('#')) continue;
    const fields = raw.split(/\s+/);
    let marker: KnownHostEntry['marker'] = null;
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else {
        invalidLines.push(i + 1);
        continue;
      }
    }
    const [hostText, type, base64, ...rest] = fields;
    const host = hostText === undefined ? null : parseHostField(hostText);
    if (host === null || type === undefined || base64 === undefined || !isKeyBlobOfType(base64, type)) {
      invalidLines.push(i + 1);
      continue;
    }
    entries.push({ marker, host, key: { type, base64 }, comment: rest.join(' '), line: i + 1 });
  }
  return { entries, invalidLines };
}

function parseHostField(text: string): HostField | null {
  if (text.startsWith('|1|')) {
    const parts = text.split('|');
    // ['', '1', salt, hash]
    if (parts.length !== 4 || !parts[2] || !parts[3]) return null;
    const salt = Buffer.from(parts[2], 'base64');
    const hash = Buffer.from(parts[3], 'base64');
    if (salt.length !== 20 || hash.length !== 20) return null;
    return { kind: 'hashed', salt, hash };
  }
  if (text.startsWith('|')) return null;
  const patterns = text.split(',').filter((p) => p !== '');
  return patterns.length === 0 ? null : { kind: 'patterns', patterns };
}

/** The blob's own type field must agree with the line's type: catches truncated or pasted-wrong lines. */
function isKeyBlobOfType(base64: string, type: string): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return false;
  try {
    return keyTypeOfBlob(Buffer.from(base64, 'base64')) === type;
  } catch {
    return false;
  }
}

/** Read the key type name that starts an SSH public key blob (RFC 4253 §6.6). */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) throw new Error('public key blob too short');
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || blob.length < 4 + len) throw new Error('malformed public key blob');
  return blob.subarray(4, 4 + len).toString('latin1');
}

/** A host key from the raw wire blob an SSH server sends (what ssh2's hostVerifier receives). */
export function hostKeyFromBlob(blob: Buffer): HostKey {
  return { type: keyTypeOfBlob(blob), base64: blob.toString('base64') };
}

/** `SHA256:…` exactly as `ssh-keygen -lf` and ssh print it (base64 without padding). */
export function fingerprintSha256(key: HostKey | Buffer): string {
  const blob = Buffer.isBuffer(key) ? key : Buffer.from(key.base64, 'base64');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** OpenSSH's wildcard match: `*` any run, `?` one character; case-insensitive (host names) unless asked. */
export function wildcardMatch(pattern: string, text: string, opts: { caseSensitive?: boolean } = {}): boolean {
  const p = opts.caseSensitive === true ? pattern : pattern.toLowerCase();
  const t = opts.caseSensitive === true ? text : text.toLowerCase();
  // Iterative glob with single-star backtracking: linear in practice, no regex built from input.
  let pi = 0;
  let ti = 0;
  let starP = -1;
  let starT = 0;
  while (ti < t.length) {
    const pc = p[pi];
    if (pc === '?' || (pc !== undefined && pc !== '*' && pc === t[ti])) {
      pi++;
      ti++;
    } else if (pc === '*') {
      starP = pi++;
      starT = ti;
    } else if (starP >= 0) {
      pi = starP + 1;
      ti = ++starT;
    } else {
      return false;
    }
  }
  while (p[pi] === '*') pi++;
  return pi === p.length;
}

/**
 * OpenSSH's pattern-list rule: the list matches when some positive pattern matches and no negated one does.
 */
export function matchPatternList(patterns: readonly string[], name: string): boolean {
  let matched = false;
  for (const pattern of patterns) {
    if (pattern.startsWith('!')) {
      if (wildcardMatch(pattern.slice(1), name)) return false;
    } else if (wildcardMatch(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

export function hashHostName(name: string, salt: Buffer): Buffer {
  return createHmac('sha1', salt).update(name).digest();
}

/** Does this entry's host field name `host` on `port`? */
export function entryMatchesHost(entry: KnownHostEntry, host: string, port: number): boolean {
  const name = knownHostsName(host, port);
  if (entry.host.kind === 'hashed') return hashHostName(name, entry.host.salt).equals(entry.host.hash);
  return matchPatternList(entry.host.patterns, name);
}

/** Compare the key a server offered with what known_hosts says about that host. */
export function checkHostKey(entries: readonly KnownHostEntry[], host: string, port: number, key: HostKey): HostKeyCheck {
  const forHost = entries.filter((e) => e.marker !== 'cert-authority' && entryMatchesHost(e, host, port));
  const revoked = forHost.find((e) => e.marker === 'revoked' && sameKey(e.key, key));
  if (revoked !== undefined) return { status: 'revoked', entry: revoked };
  const known = forHost.filter((e) => e.marker === null);
  const match = known.find((e) => sameKey(e.key, key));
  if (match !== undefined) return { status: 'match', entry: match };
  // A host known only under other key types counts as changed: the server is asked for the known types
  // first (see preferredHostKeyAlgorithms), so offering something else means it no longer has them.
  if (known.length > 0) return { status: 'mismatch', known };
  return { status: 'unknown' };
}

function sameKey(a: HostKey, b: HostKey): boolean {
  return a.type === b.type && Buffer.from(a.base64, 'base64').equals(Buffer.from(b.base64, 'base64'));
}

/** Key types already recorded for a host, so the handshake can ask for them first (as OpenSSH does). */
export function knownKeyTypes(entries: readonly KnownHostEntry[], host: string, port: number): string[] {
  const types: string[] = [];
  for (const e of entries) {
    if (e.marker === null && entryMatchesHost(e, host, port) && !types.includes(e.key.type)) types.push(e.key.type);
  }
  return types;
}

/** One known_hosts line for a host key, hashed (`|1|…`, as HashKnownHosts does) or plain. */
export function formatKnownHostsLine(host: string, port: number, key: HostKey, opts: { hash?: boolean; comment?: string } = {}): string {
  const name = knownHostsName(host, port);
  let hostField = name;
  if (opts.hash === true) {
    const salt = randomBytes(20);
    hostField = `|1|${salt.toString('base64')}|${hashHostName(name, salt).toString('base64')}`;
  }
  const comment = opts.comment === undefined || opts.comment === '' ? '' : ` ${opts.comment}`;
  return `${hostField} ${key.type} ${key.base64}${comment}`;
}

/** Read a known_hosts file; a missing file is an empty one (first connection on a fresh machine). */
export async function readKnownHosts(path: string): Promise<ParsedKnownHosts> {
  try {
    return parseKnownHosts(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], invalidLines: [] };
    throw err;
  }
}

/** The files OpenSSH reads besides the one regen records into: known_hosts2 and the global files. */
export function defaultKnownHostsFiles(home: string): { user: string[]; global: string[] } {
  return {
    user: [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2')],
    global: ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'],
  };
}

/**
 * Every entry of every file, each tagged with its file: a key pinned (or revoked) in any file OpenSSH reads is
 * pinned (or revoked) for regen too. Missing files are empty; the same file named twice is read once.
 */
export async function readKnownHostsFiles(files: readonly string[]): Promise<KnownHostEntry[]> {
  const out: KnownHostEntry[] = [];
  for (const file of [...new Set(files)]) {
    for (const e of (await readKnownHosts(file)).entries) out.push({ ...e, file });
  }
  return out;
}

/** Append an entry, creating the file (0600) and its directory (0700) as ssh would. */
export async function appendKnownHost(
  path: string,
  host: string,
  port: number,
  key: HostKey,
  opts: { hash?: boolean; comment?: string } = {},
): Promise<string> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let prefix = '';
  try {
    const st = await stat(path);
    if (st.size > 0) {
      const text = await readFile(path, 'utf8');
      if (!text.endsWith('\n')) prefix = '\n';
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const line = formatKnownHostsLine(host, port, key, opts);
  await appendFile(path, `${prefix}${line}\n`, { mode: 0o600 });
  return line;
}

/** Host key algorithms a client may offer, default order first (ssh2's own default). */
const HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
] as const;

/**
 * The host key algorithm list with the types known for this host first. Without this the server could
 * present an ed25519 key while known_hosts holds its (still valid) ECDSA key, and regen would cry "changed".
 */
export function preferredHostKeyAlgorithms(knownTypes: readonly string[]): string[] {
  const first: string[] = [];
  for (const type of knownTypes) {
    // An RSA key is one key whatever signature hash is negotiated.
    const algs = type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type];
    for (const a of algs) {
      if ((HOST_KEY_ALGORITHMS as readonly string[]).includes(a) && !first.includes(a)) first.push(a);
    }
  }
  return [...first, ...HOST_KEY_ALGORITHMS.filter((a) => !first.includes(a))];
}
