/**
 * Pure parsers of what the commands in commands.ts print. Each is strict: a shape it does not know is a
 * NeedsOperatorError carrying the output's tail (the caller's redactor masks known secrets before it is stored or
 * shown), never a guess.
 */
import { NeedsOperatorError } from '../../machines/errors.js';
import type {
  BackupFile,
  BackupManifest,
  Member,
  NodeFacts,
  ResetIndexReading,
  SetupProbe,
  TokenInfo,
} from '../../machines/port.js';
import { INSPECTED_TOOLS, MANIFEST_HEADER, isIPv4 } from './commands.js';
import { PASSWORD_FILE, SD_CONFIG_DIR, SD_HOME, SERF_KEYRINGS, UNHASHED } from '../../machines/port.js';

const TAIL = 400;
const SHA256 = /^[0-9a-f]{64}$/;
const UUID_ANYWHERE = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/** Last characters of an output, on one line, for an error message. */
export function tail(text: string, max = TAIL): string {
  const t = text.trim();
  const cut = t.length > max ? `…${t.slice(-max)}` : t;
  return cut.replace(/\s*\n\s*/g, ' | ');
}

function unexpected(what: string, output: string, node?: string, hint?: string): NeedsOperatorError {
  const shown = tail(output);
  const message = `${what}${node === undefined ? '' : ` on ${node}`}: unexpected output${shown === '' ? ' (empty)' : `: ${shown}`}`;
  return new NeedsOperatorError(message, { ...(node === undefined ? {} : { node }), ...(hint === undefined ? {} : { hint }) });
}

function lines(text: string): string[] {
  return text.split(/\r?\n/);
}

// ---- inspect ---------------------------------------------------------------------------------------------------

const SINGLE_KEYS = [
  'hostname_s',
  'hostname_f',
  'uid',
  'hostname_i',
  'service',
  'main_json',
  'config_json',
  'credentials',
  'credentials_sha256',
  'bind_addr',
  'consul_version',
  'sd_package',
  'directory',
  'profile',
  'end',
] as const;
type SingleKey = (typeof SINGLE_KEYS)[number];

/** One `ip -4 -o addr show` line → interface and address, or null for lines that carry no IPv4 address. */
export function parseIpAddrLine(line: string): { iface: string; address: string } | null {
  const m = /^\d+:\s+([^\s@]+)(?:@\S+)?\s+inet\s+(\d{1,3}(?:\.\d{1,3}){3})\/\d{1,2}\b/.exec(line);
  if (m === null) return null;
  return { iface: m[1] as string, address: m[2] as string };
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.');
}

/** Parses the `key=value` lines of commands.inspect(). */
export function parseInspect(output: string, node: string): NodeFacts {
  const single = new Map<SingleKey, string>();
  const ipLines: string[] = [];
  const tools = new Map<string, string>();
  const known = new Set<string>(SINGLE_KEYS);
  for (const line of lines(output)) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw unexpected('inspect', output, node);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'ip') ipLines.push(value);
    else if (key.startsWith('tool.')) tools.set(key.slice(5), value);
    else if (known.has(key)) {
      if (single.has(key as SingleKey)) throw unexpected(`inspect (${key} twice)`, output, node);
      single.set(key as SingleKey, value);
    } else throw unexpected(`inspect (unknown key ${key})`, output, node);
  }
  for (const key of SINGLE_KEYS) {
    if (!single.has(key)) throw unexpected(`inspect (no ${key}: output cut short?)`, output, node);
  }
  const get = (k: SingleKey): string => (single.get(k) as string).trim();
  if (get('end') !== '1') throw unexpected('inspect', output, node);

  const hostname = get('hostname_s');
  const fqdn = get('hostname_f');
  if (hostname === '' || /\s/.test(hostname)) throw unexpected('inspect (hostname -s)', output, node);
  const uid = get('uid');
  if (!/^\d+$/.test(uid)) throw unexpected('inspect (id -u)', output, node);

  const addresses: string[] = [];
  for (const l of ipLines) {
    const a = parseIpAddrLine(l);
    if (a === null) throw unexpected('inspect (ip -4 -o addr show)', l, node);
    if (a.iface === 'lo' || isLoopback(a.address)) continue;
    if (!addresses.includes(a.address)) addresses.push(a.address);
  }
  const hostnameAddresses = get('hostname_i').split(/\s+/).filter((s) => s !== '');

  for (const t of INSPECTED_TOOLS) {
    if (!tools.has(t)) throw unexpected(`inspect (no tool.${t})`, output, node);
  }
  const has = (t: string): boolean => (tools.get(t) ?? '').trim() !== '';
  const missingTools: string[] = [];
  // flock serialises regen's own lock on the node (cluster-state.ts).
  for (const t of ['service-discover', 'consul', 'gpg', 'tar', 'systemctl', 'flock']) if (!has(t)) missingTools.push(t);
  if (!has('sudo') && !has('runuser')) missingTools.push('sudo|runuser');
  if (!has('wget') && !has('curl')) missingTools.push('wget|curl');

  const flag = (k: SingleKey): boolean => {
    const v = get(k);
    if (v !== '0' && v !== '1') throw unexpected(`inspect (${k})`, output, node);
    return v === '1';
  };
  const hasCredentials = flag('credentials');
  const sha = get('credentials_sha256');
  if (sha !== '' && !SHA256.test(sha)) throw unexpected('inspect (credentials sha256)', output, node);
  if (hasCredentials !== (sha !== '')) throw unexpected('inspect (credentials file vs sha256)', output, node);
  const bind = get('bind_addr');
  const profileText = get('profile');
  if (profileText !== 'current' && profileText !== 'legacy' && profileText !== 'none') {
    throw unexpected('inspect (profile)', output, node);
  }
  const consulVersion = get('consul_version');
  return {
    node,
    hostname,
    fqdn: fqdn === '' ? hostname : fqdn,
    profile: profileText === 'none' ? null : profileText,
    privileged: uid === '0',
    addresses,
    hostnameAddresses,
    missingTools,
    serviceActive: parseServiceState(get('service')),
    hasMainJson: flag('main_json'),
    hasConfigJson: flag('config_json'),
    credentialsSha256: sha === '' ? null : sha,
    configuredBindAddress: bind === '' ? null : bind,
    consulVersion: consulVersion === '' ? null : consulVersion,
    serviceDiscoverPackage: get('sd_package') === '' ? null : get('sd_package'),
    ...directoryFact(get('directory')),
  };
}

/**
 * `systemctl is-active` says one word. Only `active` counts as running; an empty answer (systemctl printed
 * nothing, e.g. the unit is unknown to an old systemd) is not running.
 */
/** `ok URL` / `unreachable URL` / `none` → NodeFacts.directory (absent from an older inspect). */
function directoryFact(text: string): Pick<NodeFacts, 'directory'> {
  const [state = '', url = null] = text.split(' ');
  if (state === 'ok' || state === 'unreachable' || state === 'none') return { directory: { state, url } };
  return {};
}

export function parseServiceState(word: string, node?: string): boolean {
  const w = word.trim();
  // systemd 257 added `refreshing` (a running unit whose mount namespace is being refreshed): still running.
  if (w === 'active' || w === 'reloading' || w === 'refreshing') return true;
  if (['inactive', 'failed', 'activating', 'deactivating', 'unknown', 'maintenance', ''].includes(w)) return false;
  throw unexpected('systemctl is-active', word, node);
}

// ---- mesh servers and leader -----------------------------------------------------------------------------------

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** `carbonio prov -l gas service-discover` / `zmprov -l gas service-discover`: one FQDN per line. */
export function parseMeshServers(output: string, node?: string): string[] {
  const servers: string[] = [];
  for (const raw of lines(output)) {
    const line = raw.trim();
    if (line === '') continue;
    if (!HOSTNAME.test(line)) throw unexpected('gas service-discover', output, node);
    const fqdn = line.replace(/\.$/, '').toLowerCase();
    if (!servers.includes(fqdn)) servers.push(fqdn);
  }
  return servers;
}

/** `/v1/status/leader`: a JSON string "IP:8300" (IPv6 as "[addr]:8300"), "" when there is no leader. */
export function parseLeader(output: string, node?: string): string | null {
  let value: unknown;
  try {
    value = JSON.parse(output.trim());
  } catch {
    throw unexpected('status/leader', output, node);
  }
  if (typeof value !== 'string') throw unexpected('status/leader', output, node);
  if (value === '') return null;
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:\d{1,5}$/.exec(value);
  if (v6 !== null) return v6[1] as string;
  const v4 = /^([^:]+):\d{1,5}$/.exec(value);
  if (v4 !== null && isIPv4(v4[1] as string)) return v4[1] as string;
  throw unexpected('status/leader', output, node);
}

// ---- members ---------------------------------------------------------------------------------------------------

const MEMBER_STATUS = new Set(['alive', 'leaving', 'left', 'failed']);

/** `consul members` table (Node Address Status Type Build Protocol DC [Partition] Segment, header first). */
export function parseMembers(output: string, node?: string): Member[] {
  const rows = lines(output)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (rows.length === 0) return [];
  const header = (rows[0] as string).split(/\s+/);
  const col = (name: string): number => header.indexOf(name);
  const [iNode, iAddr, iStatus, iType] = [col('Node'), col('Address'), col('Status'), col('Type')];
  if (iNode !== 0 || iAddr !== 1 || iStatus !== 2 || iType !== 3) throw unexpected('consul members (header)', output, node);
  const members: Member[] = [];
  for (const row of rows.slice(1)) {
    const f = row.split(/\s+/);
    const [name, address, status, type] = [f[0], f[1], f[2], f[3]];
    if (name === undefined || address === undefined || status === undefined || type === undefined) {
      throw unexpected('consul members (row)', output, node);
    }
    if (!/^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}$/.test(address)) {
      throw unexpected('consul members (address)', output, node);
    }
    // command/members/members.go prints `unknown` (and empty Build…Segment) for a member without a role tag.
    if (type !== 'server' && type !== 'client' && type !== 'unknown') throw unexpected('consul members (type)', output, node);
    members.push({
      name,
      address,
      status: MEMBER_STATUS.has(status) ? (status as Member['status']) : 'unknown',
      type,
    });
  }
  return members;
}

/** What the token-from-credentials snippet reported before running consul, if anything. */
export type TokenProblem = 'no-credentials' | 'bad-secret' | 'no-token';

export function tokenProblem(stdout: string): TokenProblem | null {
  const first = lines(stdout)[0]?.trim();
  if (first === 'regen:no-credentials' || first === 'regen:bad-secret' || first === 'regen:no-token') {
    return first.slice('regen:'.length) as TokenProblem;
  }
  return null;
}

// ---- reset index -----------------------------------------------------------------------------------------------

const RESET_INDEX = /ACL bootstrap no longer allowed \(reset index: (\d+)\)/;

/**
 * Output of commands.readResetIndex(). The refusal texts of Consul 1.9–1.21 all contain
 * "ACL bootstrap no longer allowed (reset index: N)"; a successful bootstrap shows only the marker naming the
 * root-only file that holds it. Anything else needs a person (with any UUID masked, in case a token slipped in).
 */
export function parseResetIndex(output: string, exitCode: number, node?: string): ResetIndexReading {
  const masked = output.replace(UUID_ANYWHERE, '<uuid>');
  if (exitCode === 0) {
    const m = /^regen:bootstrapped (\/\S+)$/m.exec(output);
    if (m !== null) return { kind: 'bootstrapped', savedTo: m[1] as string };
    if (/^regen:bootstrapped-unsaved$/m.test(output)) {
      throw new NeedsOperatorError(
        `consul acl bootstrap${node === undefined ? '' : ` on ${node}`} succeeded (the cluster had never been bootstrapped) but its token could not be saved on the node`,
        { ...(node === undefined ? {} : { node }), hint: 'the new management token is lost: reset the ACL bootstrap by hand before running regen again' },
      );
    }
    throw unexpected('consul acl bootstrap', masked.includes('SecretID') ? '(output withheld: it may hold a token)' : masked, node);
  }
  const m = RESET_INDEX.exec(output);
  if (m !== null) {
    const index = Number(m[1]);
    if (Number.isSafeInteger(index)) return { kind: 'index', index };
  }
  let hint: string | undefined;
  if (/connection refused|dial tcp/i.test(output)) hint = 'the local consul agent is not answering: start service-discover (systemctl start service-discover) and retry';
  else if (/no cluster leader/i.test(output)) hint = 'the mesh has no leader: check that a quorum of mesh servers is up';
  else if (/ACL support disabled|ACLs? (are )?disabled/i.test(output)) hint = 'ACLs are disabled on this mesh: there is nothing to reset';
  else if (/legacy mode/i.test(output)) hint = 'the ACL system is in legacy mode: wait for the leader to finish starting, then retry';
  throw unexpected('consul acl bootstrap', masked, node, hint);
}

/** Output of commands.probeResetFile(): the index, or null when there is no reset file. */
export function parseResetFile(output: string, node?: string): number | null {
  const [first, ...rest] = lines(output);
  if (first === 'regen:absent') return null;
  if (first !== 'regen:present') throw unexpected('reset file', output, node);
  const body = rest.join('\n').trim();
  if (!/^\d+$/.test(body)) throw unexpected('reset file (not an index)', body, node);
  const n = Number(body);
  if (!Number.isSafeInteger(n)) throw unexpected('reset file (not an index)', body, node);
  return n;
}

// ---- wipe / setup probes ---------------------------------------------------------------------------------------

/** Output of commands.probeWipe(): the paths still present. */
export function parseProbeWipe(output: string, node?: string): string[] {
  const left: string[] = [];
  let ended = false;
  for (const line of lines(output)) {
    if (line === '') continue;
    if (line === 'end=1') ended = true;
    else if (line.startsWith('left=/') && !ended) left.push(line.slice(5));
    else throw unexpected('wipe probe', output, node);
  }
  if (!ended) throw unexpected('wipe probe (cut short)', output, node);
  return left;
}

/** Output of commands.probeSetup(). */
export function parseSetupProbe(output: string, node?: string): SetupProbe {
  const kv = new Map<string, string>();
  const keys = new Set(['main_json', 'config_json', 'bind_addr', 'credentials_sha256', 'service', 'password_file', 'end']);
  for (const line of lines(output)) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    const key = eq > 0 ? line.slice(0, eq) : '';
    if (!keys.has(key) || kv.has(key)) throw unexpected('setup probe', output, node);
    kv.set(key, line.slice(eq + 1).trim());
  }
  for (const k of keys) if (!kv.has(k)) throw unexpected(`setup probe (no ${k})`, output, node);
  const flag = (k: string): boolean => {
    const v = kv.get(k);
    if (v !== '0' && v !== '1') throw unexpected(`setup probe (${k})`, output, node);
    return v === '1';
  };
  const sha = kv.get('credentials_sha256') as string;
  if (sha !== '' && !SHA256.test(sha)) throw unexpected('setup probe (sha256)', output, node);
  const bind = kv.get('bind_addr') as string;
  return {
    hasMainJson: flag('main_json'),
    hasConfigJson: flag('config_json'),
    configuredBindAddress: bind === '' ? null : bind,
    credentialsSha256: sha === '' ? null : sha,
    serviceActive: parseServiceState(kv.get('service') as string, node),
    hasPasswordFile: flag('password_file'),
  };
}

/** `sha256=HEX` or `regen:absent`. */
export function parseCredentialsSha256(output: string, node?: string): string | null {
  const t = output.trim();
  if (t === 'regen:absent') return null;
  const m = /^sha256=([0-9a-f]{64})$/.exec(t);
  if (m === null) throw unexpected('credentials sha256', output, node);
  return m[1] as string;
}

/** Output of commands.readCredentials(): the sha the node computed and the base64 body. */
export function parseReadCredentials(output: string, node?: string): { base64: string; sha256: string } | null {
  const [first, ...rest] = lines(output);
  if (first?.trim() === 'regen:absent' && rest.join('').trim() === '') return null;
  const m = /^sha256=([0-9a-f]{64})$/.exec(first?.trim() ?? '');
  if (m === null) throw unexpected('read credentials', output.slice(0, 200), node);
  const body = rest.join('').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw unexpected('read credentials (base64)', body.slice(0, 200), node);
  return { base64: body, sha256: m[1] as string };
}

// ---- backup ----------------------------------------------------------------------------------------------------

export type BackupState = 'created' | 'existing' | 'verified' | 'absent' | 'corrupt';

/** Manifest lines: `path sha256 size mode owner group` after the header. */
/** A manifest names only the files the backup copies, with plain names (no white space, no `..`). */
function isBackedUpPath(path: string): boolean {
  if (!/^\/[A-Za-z0-9._/@+-]+$/.test(path) || path.includes('/../') || path.includes('//')) return false;
  if (path === PASSWORD_FILE || path.startsWith(`${SD_CONFIG_DIR}/`) || (SERF_KEYRINGS as readonly string[]).includes(path)) return true;
  return path.startsWith(`${SD_HOME}/`) && path.endsWith('.pem') && !path.slice(SD_HOME.length + 1).includes('/');
}

export function parseManifest(text: string, dir: string, node?: string): BackupManifest {
  const [header, ...rest] = lines(text);
  if (header !== MANIFEST_HEADER) throw unexpected('backup manifest (header)', text, node);
  const files: BackupFile[] = [];
  for (const line of rest) {
    if (line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    const [path, sha256, size, mode, owner, group] = f;
    if (
      f.length !== 6 ||
      path === undefined ||
      !isBackedUpPath(path) ||
      sha256 === undefined ||
      !(SHA256.test(sha256) || (sha256 === UNHASHED && path === PASSWORD_FILE)) ||
      size === undefined ||
      !/^\d+$/.test(size) ||
      mode === undefined ||
      !/^[0-7]{1,4}$/.test(mode) ||
      owner === undefined ||
      group === undefined
    ) {
      throw unexpected('backup manifest (line)', line, node);
    }
    files.push({ path, sha256, size: Number(size), mode: mode.padStart(4, '0'), owner, group });
  }
  return { dir, files };
}

/** Output of commands.backup() / probeBackup(): the state marker, then the manifest when there is one. */
export function parseBackup(output: string, dir: string, node?: string): { state: BackupState; manifest: BackupManifest | null } {
  const all = lines(output);
  const m = /^regen:backup (created|existing|verified|absent|corrupt)$/.exec(all[0] ?? '');
  if (m === null) throw unexpected('back up files', output, node);
  const state = m[1] as BackupState;
  const body = all.slice(1).join('\n');
  if (state === 'absent' || state === 'corrupt') {
    if (body.trim() !== '') throw unexpected('back up files', output, node);
    return { state, manifest: null };
  }
  return { state, manifest: parseManifest(body, dir, node) };
}

// ---- tokens ----------------------------------------------------------------------------------------------------

/** The jq-filtered `consul acl token list -format=json` (AccessorID, Description, Policies names, CreateIndex, CreateTime). */
export function parseTokens(output: string, node?: string): TokenInfo[] {
  let value: unknown;
  try {
    value = JSON.parse(output.trim());
  } catch {
    throw unexpected('acl token list', output, node);
  }
  if (!Array.isArray(value)) throw unexpected('acl token list', output, node);
  return value.map((t: unknown): TokenInfo => {
    if (typeof t !== 'object' || t === null) throw unexpected('acl token list (entry)', output, node);
    const o = t as Record<string, unknown>;
    if ('SecretID' in o) throw unexpected('acl token list (holds a SecretID)', '(withheld)', node);
    const { AccessorID, Description, Policies, CreateIndex, CreateTime } = o;
    if (
      typeof AccessorID !== 'string' ||
      typeof Description !== 'string' ||
      !Array.isArray(Policies) ||
      !Policies.every((p) => typeof p === 'string') ||
      typeof CreateIndex !== 'number' ||
      typeof CreateTime !== 'string'
    ) {
      throw unexpected('acl token list (entry)', JSON.stringify(t), node);
    }
    return { accessorId: AccessorID, description: Description, policies: Policies as string[], createIndex: CreateIndex, createTime: CreateTime };
  });
}


/** `regen:absent`, or `regen:present` then peers.json: the peers' addresses (IP:port). */
export function parseRaftRecovery(stdout: string, node: string): string[] | null {
  const lines = stdout.split('\n');
  const head = lines[0]?.trim();
  if (head === 'regen:absent') return null;
  if (head !== 'regen:present') throw new NeedsOperatorError(`unexpected answer reading peers.json on ${node}: ${stdout.slice(0, 200)}`, { node });
  try {
    const entries = JSON.parse(lines.slice(1).join('\n')) as unknown;
    if (!Array.isArray(entries)) throw new Error('not a list');
    return entries.map((e) => String((e as { address?: unknown }).address ?? ''));
  } catch {
    throw new NeedsOperatorError(`${node}: data/raft/peers.json is not the JSON list Consul expects`, { node, hint: 'look at the file, remove it if it is not yours, then regen resume' });
  }
}
