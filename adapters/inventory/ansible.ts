/**
 * Carbonio's Ansible inventory (INI, as zextras/carbonio-install-ansible documents it) read as regen nodes.
 * Every host of any group is a node; mesh servers are the `serviceDiscoverServers` group; the
 * `masterDirectoryServers` host is kept as a hint for leader detection (the leader is often, not always, it).
 * Parsing follows Ansible's own INI plugin where it matters: `[g:vars]`, `[g:children]`, quoted values,
 * `#`/`;` comments, `host:port`, and host ranges such as `mail[1:3].example.com`.
 */
import { basename } from 'node:path';
import type { Inventory, InventoryNode } from '../../machines/port.js';
import { UsageError } from '../../machines/errors.js';
import { CLUSTER_RE, inventoryError, isHostname } from './issues.js';
import type { InventoryIssue } from './issues.js';
import { expandHome } from './regen-format.js';

export const MESH_SERVERS_GROUP = 'serviceDiscoverServers';
export const DIRECTORY_GROUP = 'masterDirectoryServers';

interface HostEntry {
  name: string;
  line: number;
  vars: Map<string, string>;
  port?: number;
}

interface Group {
  name: string;
  hosts: string[];
  children: string[];
  vars: Map<string, string>;
}

export interface ParsedAnsibleInventory {
  groups: Map<string, Group>;
  /** Hosts in order of first appearance. */
  hosts: Map<string, HostEntry>;
}

const HEADER_RE = /^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$/;

/** A small shlex (posix, comments on): whitespace splits, quotes group, `#` at a word start ends the line. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur: string | null = null;
  let i = 0;
  while (i < line.length) {
    const c = line[i] as string;
    if (c === ' ' || c === '\t') {
      if (cur !== null) words.push(cur);
      cur = null;
      i++;
    } else if (c === '#' && cur === null) {
      break;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error('no closing quotation');
      cur = (cur ?? '') + line.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      let v = '';
      for (; j < line.length && line[j] !== '"'; j++) {
        const d = line[j] as string;
        const next = line[j + 1];
        if (d === '\\' && next !== undefined && '"\\$`'.includes(next)) {
          v += next;
          j++;
        } else v += d;
      }
      if (j >= line.length) throw new Error('no closing quotation');
      cur = (cur ?? '') + v;
      i = j + 1;
    } else if (c === '\\' && i + 1 < line.length) {
      cur = (cur ?? '') + (line[i + 1] as string);
      i += 2;
    } else {
      cur = (cur ?? '') + c;
      i++;
    }
  }
  if (cur !== null) words.push(cur);
  return words;
}

/** A value in a `[g:vars]` line: quotes removed, a trailing ` # comment` dropped. */
function varValue(raw: string): string {
  const v = raw.trim();
  const q = v[0];
  if ((q === '"' || q === "'") && v.length >= 2 && v.endsWith(q)) return v.slice(1, -1);
  return v.replace(/\s+[#;].*$/, '');
}

/** Most host names one inventory may expand to: a Carbonio cluster has tens of nodes, never thousands. */
export const MAX_EXPANDED_HOSTS = 10_000;

/** How many names a pattern expands to, computed without expanding it (nested ranges multiply). */
export function countHostPattern(pattern: string): number {
  const m = RANGE.exec(pattern);
  if (m === null) return 1;
  const [, , from = '', to = '', strideText, tail = ''] = m;
  const stride = strideText === undefined ? 1 : Number(strideText);
  const numeric = /^[0-9]+$/.test(from) && /^[0-9]+$/.test(to);
  const [a, b] = numeric ? [Number(from), Number(to)] : [from.charCodeAt(0), to.charCodeAt(0)];
  if (!(stride > 0) || a > b) return 0;
  return (Math.floor((b - a) / stride) + 1) * countHostPattern(tail);
}

const RANGE = /^(.*?)\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\](.*)$/;

/** Expand `[1:3]`, `[01:10]`, `[a:c]` and `[1:9:2]` ranges as Ansible does, up to MAX_EXPANDED_HOSTS names. */
export function expandHostPattern(pattern: string): string[] {
  if (countHostPattern(pattern) > MAX_EXPANDED_HOSTS) {
    throw new Error(`${pattern} expands to more than ${MAX_EXPANDED_HOSTS} host names`);
  }
  return expandChecked(pattern);
}

function expandChecked(pattern: string): string[] {
  const m = RANGE.exec(pattern);
  if (m === null) return [pattern];
  const [, head = '', from = '', to = '', strideText, tail = ''] = m;
  const stride = strideText === undefined ? 1 : Number(strideText);
  if (!(stride > 0)) throw new Error(`range stride in ${pattern} must be positive`);
  const out: string[] = [];
  if (/^[0-9]+$/.test(from) && /^[0-9]+$/.test(to)) {
    const a = Number(from);
    const b = Number(to);
    if (a > b) throw new Error(`range in ${pattern} goes backwards`);
    if (b - a > 10_000) throw new Error(`range in ${pattern} is too large`);
    const width = from.length > 1 && from.startsWith('0') ? from.length : 0;
    for (let i = a; i <= b; i += stride) {
      for (const rest of expandChecked(tail)) out.push(`${head}${String(i).padStart(width, '0')}${rest}`);
    }
  } else if (/^[a-zA-Z]$/.test(from) && /^[a-zA-Z]$/.test(to)) {
    const a = from.charCodeAt(0);
    const b = to.charCodeAt(0);
    if (a > b) throw new Error(`range in ${pattern} goes backwards`);
    for (let i = a; i <= b; i += stride) {
      for (const rest of expandChecked(tail)) out.push(`${head}${String.fromCharCode(i)}${rest}`);
    }
  } else {
    throw new Error(`range [${from}:${to}] in ${pattern} must be numbers or single letters`);
  }
  return out;
}

/** Adds a host to a group once, in linear time over the file (a Set per group beside its ordered list). */
function addMember(members: Map<Group, Set<string>>, group: Group, host: string): void {
  let seen = members.get(group);
  if (seen === undefined) members.set(group, (seen = new Set(group.hosts)));
  if (seen.has(host)) return;
  seen.add(host);
  group.hosts.push(host);
}

function splitHostPort(pattern: string): { host: string; port?: number } {
  // [ipv6]:port and host:port, the only forms Ansible gives a port in the host pattern.
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(pattern);
  if (v6 !== null) return v6[2] === undefined ? { host: v6[1] as string } : { host: v6[1] as string, port: Number(v6[2]) };
  const hp = /^([^:]+):(\d+)$/.exec(pattern);
  if (hp !== null) return { host: hp[1] as string, port: Number(hp[2]) };
  return { host: pattern };
}

/** The `name=value` variables of one host line; null (an issue recorded) when one of them is malformed. */
function hostVars(host: string, words: string[], lineNo: number, issues: InventoryIssue[]): Map<string, string> | null {
  const vars = new Map<string, string>();
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) {
      issues.push({ path: host, line: lineNo, problem: `expected key=value host variable, got ${JSON.stringify(w)}`, fix: 'write host variables as name=value (quote values that contain spaces)' });
      return null;
    }
    vars.set(w.slice(0, eq), w.slice(eq + 1));
  }
  return vars;
}

type Section = { group: Group; type: 'hosts' | 'vars' | 'children' };

/** The section a `[…]` header opens; null (with an issue) when the header is malformed. */
function sectionOf(line: string, lineNo: number, issues: InventoryIssue[], group: (name: string) => Group): Section | null {
  const m = HEADER_RE.exec(line);
  if (m === null) {
    issues.push({ path: '', line: lineNo, problem: `malformed section header ${JSON.stringify(line)}`, fix: 'write it as [group], [group:vars] or [group:children]' });
    return null;
  }
  const type = m[2] ?? 'hosts';
  if (type !== 'hosts' && type !== 'vars' && type !== 'children') {
    issues.push({ path: '', line: lineNo, problem: `section [${m[1]}:${type}] has an unknown type "${type}"`, fix: 'use :vars or :children' });
    return { group: group(`${m[1]}:${type}`), type: 'vars' };
  }
  return { group: group(m[1] as string), type };
}

export function parseAnsibleIni(text: string, file: string): ParsedAnsibleInventory {
  const issues: InventoryIssue[] = [];
  const groups = new Map<string, Group>();
  const hosts = new Map<string, HostEntry>();
  // Group membership as sets: a check per host that is linear in the group would make parsing quadratic.
  const members = new Map<Group, Set<string>>();
  const group = (name: string): Group => {
    let g = groups.get(name);
    if (g === undefined) {
      g = { name, hosts: [], children: [], vars: new Map() };
      groups.set(name, g);
    }
    return g;
  };
  group('all');
  let section: Section = { group: group('ungrouped'), type: 'hosts' };

  text.split(/\r?\n/).forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    if (line.startsWith('[')) {
      section = sectionOf(line, lineNo, issues, group) ?? section;
      return;
    }
    if (section.type === 'vars') {
      const eq = line.indexOf('=');
      if (eq <= 0) {
        issues.push({ path: section.group.name, line: lineNo, problem: `expected key=value in [${section.group.name}:vars], got ${JSON.stringify(line)}`, fix: 'write one variable per line as name=value' });
        return;
      }
      section.group.vars.set(line.slice(0, eq).trim(), varValue(line.slice(eq + 1)));
      return;
    }
    let words: string[];
    try {
      words = shellWords(line);
    } catch (err) {
      issues.push({ path: section.group.name, line: lineNo, problem: `${(err as Error).message} in ${JSON.stringify(line)}`, fix: 'close the quote' });
      return;
    }
    const first = words[0];
    if (first === undefined) return;
    if (section.type === 'children') {
      section.group.children.push(first);
      group(first);
      return;
    }
    const vars = hostVars(first, words.slice(1), lineNo, issues);
    if (vars === null) return;
    let names: string[];
    try {
      if (hosts.size + countHostPattern(first) > MAX_EXPANDED_HOSTS) throw new Error(`the inventory expands to more than ${MAX_EXPANDED_HOSTS} host names`);
      names = expandHostPattern(first);
    } catch (err) {
      issues.push({ path: first, line: lineNo, problem: (err as Error).message, fix: 'write the range as [1:3], [01:10] or [a:c]' });
      return;
    }
    for (const pattern of names) {
      const { host, port } = splitHostPort(pattern);
      let entry = hosts.get(host);
      if (entry === undefined) {
        entry = { name: host, line: lineNo, vars: new Map() };
        hosts.set(host, entry);
      }
      if (port !== undefined) entry.port = port;
      for (const [k, v] of vars) entry.vars.set(k, v);
      addMember(members, section.group, host);
    }
  });
  if (issues.length > 0) throw inventoryError(file, issues);
  return { groups, hosts };
}

/** Groups a host belongs to, directly or through `:children`, each with its depth below `all`. */
function membership(parsed: ParsedAnsibleInventory): Map<string, Map<string, number>> {
  const depth = new Map<string, number>();
  const parents = new Map<string, string[]>();
  for (const g of parsed.groups.values()) {
    for (const c of g.children) parents.set(c, [...(parents.get(c) ?? []), g.name]);
  }
  const depthOf = (name: string, seen: Set<string>): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    if (name === 'all') return 0;
    if (seen.has(name)) return 1; // a :children cycle: stop climbing rather than recurse forever
    seen.add(name);
    const ps = parents.get(name) ?? [];
    const d = ps.length === 0 ? 1 : Math.max(...ps.map((p) => depthOf(p, seen))) + 1;
    depth.set(name, d);
    return d;
  };
  const out = new Map<string, Map<string, number>>();
  for (const host of parsed.hosts.keys()) out.set(host, new Map([['all', 0]]));
  for (const g of parsed.groups.values()) {
    // Every group that contains g (g itself and its ancestors), found breadth-first with a bound.
    const ancestors = new Set<string>([g.name]);
    const queue = [g.name];
    for (let i = 0; i < queue.length && i < 10_000; i++) {
      for (const p of parents.get(queue[i] as string) ?? []) {
        if (!ancestors.has(p)) {
          ancestors.add(p);
          queue.push(p);
        }
      }
    }
    for (const host of g.hosts) {
      const m = out.get(host);
      if (m === undefined) continue;
      for (const a of ancestors) m.set(a, depthOf(a, new Set()));
    }
  }
  return out;
}

function clusterFromPath(path: string): string {
  return basename(path).replace(/\.(ini|cfg|txt|inventory|hosts)$/i, '');
}

/** Connection variables and their older aliases; an alias set at a more specific level still wins. */
const CANONICAL: Record<string, 'host' | 'port' | 'user' | 'identityFile'> = {
  ansible_host: 'host',
  ansible_ssh_host: 'host',
  ansible_port: 'port',
  ansible_ssh_port: 'port',
  ansible_user: 'user',
  ansible_ssh_user: 'user',
  ansible_ssh_private_key_file: 'identityFile',
  ansible_private_key_file: 'identityFile',
};

export function ansibleToInventory(parsed: ParsedAnsibleInventory, file: string, cluster?: string): Inventory {
  const issues: InventoryIssue[] = [];
  const name = cluster ?? clusterFromPath(file);
  if (!CLUSTER_RE.test(name)) {
    throw new UsageError(
      `the cluster name "${name}" taken from the inventory file name ${file} has characters other than letters, digits, ".", "_" and "-"`,
      'name the cluster with --cluster <name>',
    );
  }
  const groupsOf = membership(parsed);
  const nodes: InventoryNode[] = [];
  let directoryServer: string | undefined;
  for (const host of parsed.hosts.values()) {
    if (!isHostname(host.name)) {
      issues.push({ path: host.name, line: host.line, problem: `"${host.name}" is not a valid host name`, fix: 'name hosts by their FQDN' });
      continue;
    }
    const memberOf = groupsOf.get(host.name) ?? new Map<string, number>();
    // Ansible's precedence: all < parent groups < child groups < the host line.
    const vars = new Map<string, string>();
    const apply = (from: Iterable<[string, string]>): void => {
      for (const [k, v] of from) {
        const c = CANONICAL[k];
        if (c !== undefined && v !== '') vars.set(c, v);
      }
    };
    const ordered = [...memberOf.entries()].sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]));
    for (const [g] of ordered) apply(parsed.groups.get(g)?.vars ?? []);
    apply(host.vars);
    const node: InventoryNode = { name: host.name, sshHost: vars.get('host') ?? host.name };
    const portText = vars.get('port');
    const port = portText === undefined ? host.port : Number(portText);
    if (port !== undefined) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        issues.push({ path: host.name, line: host.line, problem: `ansible_port ${JSON.stringify(portText)} is not a port number`, fix: 'give an integer from 1 to 65535' });
      } else node.sshPort = port;
    }
    const user = vars.get('user');
    if (user !== undefined) node.sshUser = user;
    const idf = vars.get('identityFile');
    if (idf !== undefined) node.identityFile = expandHome(idf);
    node.kind = memberOf.has(MESH_SERVERS_GROUP) ? 'server' : 'agent';
    if (directoryServer === undefined && memberOf.has(DIRECTORY_GROUP)) directoryServer = host.name;
    nodes.push(node);
  }
  if (issues.length === 0 && nodes.length === 0) {
    issues.push({ path: '', problem: 'the inventory lists no hosts', fix: 'add the Carbonio servers under their groups, e.g. [serviceDiscoverServers] then one FQDN per line' });
  }
  if (issues.length === 0 && !nodes.some((n) => n.kind === 'server')) {
    issues.push({ path: MESH_SERVERS_GROUP, problem: `no host is in [${MESH_SERVERS_GROUP}], so the mesh would have no server`, fix: `list the mesh servers under [${MESH_SERVERS_GROUP}]` });
  }
  if (issues.length > 0) throw inventoryError(file, issues);
  const inv: Inventory = { cluster: name, nodes };
  if (directoryServer !== undefined) inv.directoryServer = directoryServer;
  return inv;
}

export function parseAnsibleInventory(text: string, file: string, cluster?: string): Inventory {
  return ansibleToInventory(parseAnsibleIni(text, file), file, cluster);
}
