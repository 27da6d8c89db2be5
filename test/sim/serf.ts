/**
 * Serf's gossip keyring as Consul keeps it (agent/keyring.go): at the first start with an `encrypt` key the agent
 * writes `<data_dir>/serf/local.keyring` (and `remote.keyring` on a server, the WAN pool); from then on the file
 * wins over `encrypt` (Consul logs "keyring doesn't include key provided with -encrypt, using keyring"). The file is
 * a JSON array of base64 keys; the first is the primary one, used to encrypt (memberlist keyring.go).
 * `consul keyring -install/-use/-remove` change the file on every member that hears the query.
 */
import type { NodeFs } from './model.js';

export const SERF_DIR = '/var/lib/service-discover/data/serf';
export const LOCAL_KEYRING = `${SERF_DIR}/local.keyring`;
export const REMOTE_KEYRING = `${SERF_DIR}/remote.keyring`;

export function readKeyring(fs: NodeFs, path = LOCAL_KEYRING): string[] | null {
  const raw = fs.read(path);
  if (raw === null) return null;
  try {
    const v: unknown = JSON.parse(raw.toString('utf8'));
    return Array.isArray(v) && v.every((k) => typeof k === 'string') ? (v as string[]) : null;
  } catch {
    return null;
  }
}

export function writeKeyring(fs: NodeFs, keys: string[], server: boolean): void {
  const body = `${JSON.stringify(keys)}\n`;
  fs.mkdir(SERF_DIR, { owner: 'service-discover', group: 'service-discover', mode: 0o700 });
  fs.write(LOCAL_KEYRING, body, { owner: 'service-discover', group: 'service-discover', mode: 0o600 });
  if (server) fs.write(REMOTE_KEYRING, body, { owner: 'service-discover', group: 'service-discover', mode: 0o600 });
}

/**
 * The keys the agent gossips with once started: the persisted keyring when there is one (the `encrypt` key is then
 * ignored), else a keyring made of `encrypt` and written to the data dir.
 */
export function keyringAtStart(fs: NodeFs, encrypt: string, server: boolean): string[] {
  const existing = readKeyring(fs);
  if (existing !== null && existing.length > 0) return existing;
  writeKeyring(fs, [encrypt], server);
  return [encrypt];
}

/** Two agents gossip when the sender's primary key is one the receiver holds (memberlist decrypts with any key). */
export function canGossip(a: string[], b: string[]): boolean {
  const pa = a[0];
  const pb = b[0];
  return pa !== undefined && pb !== undefined && b.includes(pa) && a.includes(pb);
}
