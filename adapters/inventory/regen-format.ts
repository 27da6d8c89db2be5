/**
 * regen's own inventory format (YAML, or the same structure as JSON), validated strictly: unknown keys are
 * rejected because a typo such as `adress:` would otherwise silently drop the node's bind address.
 */
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { Document, LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Node as YamlNode, Pair } from 'yaml';
import type { Inventory, InventoryNode, MeshKind } from '../../machines/port.js';
import { CLUSTER_RE, closest, inventoryError, isHostname } from './issues.js';
import type { InventoryIssue } from './issues.js';

const TOP_KEYS = ['cluster', 'leader', 'directoryServer', 'defaults', 'nodes'] as const;
const DEFAULTS_KEYS = ['ssh'] as const;
const DEFAULT_SSH_KEYS = ['user', 'port', 'identityFile'] as const;
const NODE_KEYS = ['name', 'ssh', 'address', 'kind'] as const;
const NODE_SSH_KEYS = ['host', 'port', 'user', 'identityFile'] as const;
const KINDS: readonly MeshKind[] = ['server', 'agent'];

interface Ctx {
  issues: InventoryIssue[];
  lines: LineCounter | null;
}

type Entries = Map<string, { node: YamlNode | null; pair: Pair }>;

function issue(ctx: Ctx, at: YamlNode | null | undefined, path: string, problem: string, fix: string): void {
  const i: InventoryIssue = { path, problem, fix };
  const offset = at?.range?.[0];
  if (ctx.lines !== null && offset !== undefined) {
    const pos = ctx.lines.linePos(offset);
    i.line = pos.line;
    i.col = pos.col;
  }
  ctx.issues.push(i);
}

function describe(node: YamlNode | null): string {
  if (node === null) return 'nothing';
  if (isScalar(node)) return node.value === null ? 'null' : JSON.stringify(node.value);
  if (isSeq(node)) return 'a list';
  if (isMap(node)) return 'a mapping';
  return 'an alias';
}

/** The mapping's keys and values, with unknown keys reported; null if the node is not a mapping. */
function mapping(ctx: Ctx, node: YamlNode | null, path: string, allowed: readonly string[], what: string): Entries | null {
  if (node === null || !isMap(node)) {
    issue(ctx, node, path, `${what} must be a mapping, got ${describe(node)}`, `write it as "key: value" lines`);
    return null;
  }
  const out: Entries = new Map();
  for (const pair of node.items) {
    const keyNode = pair.key as YamlNode | null;
    const key = keyNode !== null && isScalar(keyNode) ? String(keyNode.value) : null;
    const keyPath = path === '' ? String(key) : `${path}.${String(key)}`;
    if (key === null) {
      issue(ctx, keyNode, path, `${what} has a key that is not a plain name`, `use one of: ${allowed.join(', ')}`);
      continue;
    }
    if (!allowed.includes(key)) {
      if (allowed.includes('ssh') && (NODE_SSH_KEYS as readonly string[]).includes(key)) {
        issue(ctx, keyNode, keyPath, `unknown key "${key}" in ${what}`, `move it under ssh: (ssh: { ${key}: ... })`);
        continue;
      }
      const guess = closest(key, allowed);
      issue(
        ctx,
        keyNode,
        keyPath,
        `unknown key "${key}" in ${what}`,
        guess === undefined ? `remove it; allowed keys: ${allowed.join(', ')}` : `did you mean "${guess}"?`,
      );
      continue;
    }
    const value = (pair.value as YamlNode | null) ?? null;
    if (value !== null && isAlias(value)) {
      issue(ctx, value, keyPath, 'YAML aliases are not supported here', 'write the value out (put shared SSH settings under defaults.ssh)');
      continue;
    }
    out.set(key, { node: value, pair });
  }
  return out;
}

function keyNodeOf(e: { pair: Pair }): YamlNode | null {
  return (e.pair.key as YamlNode | null) ?? null;
}

function str(ctx: Ctx, entries: Entries, key: string, path: string, fix: string): string | undefined {
  const e = entries.get(key);
  if (e === undefined) return undefined;
  const p = path === '' ? key : `${path}.${key}`;
  if (e.node === null || !isScalar(e.node) || typeof e.node.value !== 'string' || e.node.value.trim() === '') {
    issue(ctx, e.node ?? keyNodeOf(e), p, `${key} must be a non-empty string, got ${describe(e.node)}`, fix);
    return undefined;
  }
  return e.node.value.trim();
}

function port(ctx: Ctx, entries: Entries, path: string): number | undefined {
  const e = entries.get('port');
  if (e === undefined) return undefined;
  const v = e.node !== null && isScalar(e.node) ? e.node.value : undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    issue(ctx, e.node ?? keyNodeOf(e), `${path}.port`, `port must be an integer from 1 to 65535, got ${describe(e.node)}`, 'write the SSH port as a number, e.g. port: 22');
    return undefined;
  }
  return v;
}

export function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return `${homedir()}${p.slice(1)}`;
  return p;
}

interface SshFields {
  host?: string;
  port?: number;
  user?: string;
  identityFile?: string;
}

function sshBlock(ctx: Ctx, node: YamlNode | null, path: string, allowed: readonly string[]): SshFields {
  const entries = mapping(ctx, node, path, allowed, path);
  if (entries === null) return {};
  const out: SshFields = {};
  const host = str(ctx, entries, 'host', path, 'give the address or ssh_config alias to connect to, or omit it to use the node name');
  if (host !== undefined) out.host = host;
  const p = port(ctx, entries, path);
  if (p !== undefined) out.port = p;
  const user = str(ctx, entries, 'user', path, 'give the login name, e.g. user: root');
  if (user !== undefined) out.user = user;
  const idf = str(ctx, entries, 'identityFile', path, 'give the path of the private key, e.g. identityFile: ~/.ssh/id_ed25519');
  if (idf !== undefined) out.identityFile = expandHome(idf);
  return out;
}

/** Parse and validate regen's format. `json` only changes how syntax errors are reported. */
export function parseRegenInventory(text: string, file: string, format: 'yaml' | 'json'): Inventory {
  if (format === 'json') {
    try {
      JSON.parse(text);
    } catch (err) {
      throw inventoryError(file, [
        { path: '', problem: `not valid JSON (${(err as Error).message})`, fix: 'fix the JSON syntax, or write the inventory as YAML' },
      ]);
    }
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const ctx: Ctx = { issues: [], lines };
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const pos = lines.linePos(e.pos[0]);
      const duplicate = e.code === 'DUPLICATE_KEY';
      ctx.issues.push({
        path: '',
        line: pos.line,
        col: pos.col,
        problem: duplicate ? 'a key appears twice in the same mapping' : `not valid ${format === 'json' ? 'JSON' : 'YAML'} (${e.message.split('\n')[0] ?? e.code})`,
        fix: duplicate ? 'keep one of them' : 'fix the syntax at that position',
      });
    }
    throw inventoryError(file, ctx.issues);
  }
  const root = doc.contents as YamlNode | null;
  if (root !== null && isMap(root) && root.has('all') && !root.has('cluster')) {
    throw inventoryError(file, [
      {
        path: 'all',
        problem: 'this looks like an Ansible YAML inventory, which regen does not read',
        fix: 'pass Carbonio\'s INI inventory (--inventory-format ansible) or write regen\'s format (cluster:, nodes:)',
      },
    ]);
  }
  const inv = validate(ctx, root);
  if (ctx.issues.length > 0 || inv === null) throw inventoryError(file, ctx.issues);
  return inv;
}

function validate(ctx: Ctx, root: YamlNode | null): Inventory | null {
  if (root === null) {
    ctx.issues.push({ path: '', problem: 'the inventory is empty', fix: 'write at least "cluster:" and "nodes:"' });
    return null;
  }
  const top = mapping(ctx, root, '', TOP_KEYS, 'the inventory');
  if (top === null) return null;

  let cluster = str(ctx, top, 'cluster', '', 'name the cluster, e.g. cluster: mail-prod');
  if (!top.has('cluster')) {
    issue(ctx, root, 'cluster', 'cluster is required', 'name the cluster, e.g. cluster: mail-prod');
  } else if (cluster !== undefined && !CLUSTER_RE.test(cluster)) {
    const e = top.get('cluster');
    issue(ctx, e?.node, 'cluster', `cluster "${cluster}" has characters other than letters, digits, ".", "_" and "-"`, 'rename it, e.g. cluster: mail-prod');
    cluster = undefined;
  }

  let defaults: SshFields = {};
  const d = top.get('defaults');
  if (d !== undefined) {
    const dm = mapping(ctx, d.node, 'defaults', DEFAULTS_KEYS, 'defaults');
    const ds = dm?.get('ssh');
    if (ds !== undefined) defaults = sshBlock(ctx, ds.node, 'defaults.ssh', DEFAULT_SSH_KEYS);
  }

  const nodes: InventoryNode[] = [];
  const n = top.get('nodes');
  if (n === undefined) {
    issue(ctx, root, 'nodes', 'nodes is required', 'list the nodes, each with at least "- name: <fqdn>"');
  } else if (n.node === null || !isSeq(n.node) || n.node.items.length === 0) {
    issue(ctx, n.node ?? keyNodeOf(n), 'nodes', `nodes must be a non-empty list, got ${describe(n.node)}`, 'list the nodes, each with at least "- name: <fqdn>"');
  } else {
    const seenNames = new Map<string, string>();
    const seenAddresses = new Map<string, string>();
    n.node.items.forEach((item, i) => {
      const path = `nodes[${i}]`;
      const node = nodeEntry(ctx, (item as YamlNode | null) ?? null, path, defaults);
      if (node === null) return;
      const nameKey = node.name.toLowerCase().replace(/\.$/, '');
      const other = seenNames.get(nameKey);
      if (other !== undefined) {
        issue(ctx, item as YamlNode, `${path}.name`, `node name "${node.name}" is already used by ${other}`, 'each node must appear once; remove or rename the duplicate');
      } else seenNames.set(nameKey, path);
      if (node.address !== undefined) {
        const otherA = seenAddresses.get(node.address);
        if (otherA !== undefined) {
          issue(ctx, item as YamlNode, `${path}.address`, `address ${node.address} is already used by ${otherA}`, 'each node has its own mesh address; correct one of them');
        } else seenAddresses.set(node.address, path);
      }
      nodes.push(node);
    });
  }

  const inv: Inventory = { cluster: cluster ?? '', nodes };
  for (const key of ['leader', 'directoryServer'] as const) {
    const value = str(ctx, top, key, '', `name one of the nodes, or remove ${key}`);
    if (value === undefined) continue;
    const match = nodes.find((x) => x.name.toLowerCase() === value.toLowerCase());
    if (match === undefined) {
      const guess = closest(value, nodes.map((x) => x.name));
      issue(
        ctx,
        top.get(key)?.node,
        key,
        `${key} "${value}" is not one of the nodes`,
        guess === undefined ? `use one of: ${nodes.map((x) => x.name).join(', ')}` : `did you mean "${guess}"?`,
      );
    } else inv[key] = match.name;
  }
  return cluster === undefined ? null : inv;
}

function nodeEntry(ctx: Ctx, item: YamlNode | null, path: string, defaults: SshFields): InventoryNode | null {
  const m = mapping(ctx, item, path, NODE_KEYS, `node ${path}`);
  if (m === null) return null;
  if (!m.has('name')) {
    issue(ctx, item, `${path}.name`, 'name is required', 'give the node\'s FQDN, e.g. name: mail2.example.com');
    return null;
  }
  const name = str(ctx, m, 'name', path, 'give the node\'s FQDN, e.g. name: mail2.example.com');
  if (name === undefined) return null;
  if (!isHostname(name)) {
    issue(ctx, m.get('name')?.node, `${path}.name`, `name "${name}" is not a valid host name`, 'use the node\'s FQDN (letters, digits, "-" and ".")');
    return null;
  }
  const out: InventoryNode = { name, sshHost: name };
  const sshEntry = m.get('ssh');
  const ssh = sshEntry === undefined ? {} : sshBlock(ctx, sshEntry.node, `${path}.ssh`, NODE_SSH_KEYS);
  if (ssh.host !== undefined) out.sshHost = ssh.host;
  const sshPort = ssh.port ?? defaults.port;
  if (sshPort !== undefined) out.sshPort = sshPort;
  const sshUser = ssh.user ?? defaults.user;
  if (sshUser !== undefined) out.sshUser = sshUser;
  const idf = ssh.identityFile ?? defaults.identityFile;
  if (idf !== undefined) out.identityFile = idf;

  const address = str(ctx, m, 'address', path, 'give the node\'s mesh IP address, e.g. address: 10.0.0.2');
  if (address !== undefined) {
    if (isIP(address) === 0) {
      issue(ctx, m.get('address')?.node, `${path}.address`, `address "${address}" is not an IP address`, 'give the IP the mesh binds to (not a host name), e.g. address: 10.0.0.2');
    } else if (address.startsWith('127.') || address === '::1') {
      issue(ctx, m.get('address')?.node, `${path}.address`, `address ${address} is a loopback address`, 'service-discover refuses loopback; give the address of a non-lo interface');
    } else out.address = address;
  }
  const kindEntry = m.get('kind');
  if (kindEntry !== undefined) {
    const v = kindEntry.node !== null && isScalar(kindEntry.node) ? kindEntry.node.value : undefined;
    if (v === 'server' || v === 'agent') out.kind = v;
    else {
      const fix = v === 'client' ? 'regen calls Consul clients "agent": write kind: agent' : `use one of: ${KINDS.join(', ')}, or omit it to detect it`;
      issue(ctx, kindEntry.node ?? keyNodeOf(kindEntry), `${path}.kind`, `kind must be server or agent, got ${describe(kindEntry.node)}`, fix);
    }
  }
  return out;
}

/**
 * Write an inventory in regen's format (what discovery saves and the lab generates). SSH settings every node
 * shares go to defaults.ssh so the file stays short.
 */
export function renderInventoryYaml(inv: Inventory): string {
  const shared = (pick: (n: InventoryNode) => string | number | undefined): string | number | undefined => {
    const first = inv.nodes[0] === undefined ? undefined : pick(inv.nodes[0]);
    return first !== undefined && inv.nodes.every((n) => pick(n) === first) ? first : undefined;
  };
  const defaults: Record<string, string | number> = {};
  const user = inv.nodes.length > 1 ? shared((n) => n.sshUser) : undefined;
  const port = inv.nodes.length > 1 ? shared((n) => n.sshPort) : undefined;
  const idf = inv.nodes.length > 1 ? shared((n) => n.identityFile) : undefined;
  if (user !== undefined) defaults.user = user;
  if (port !== undefined) defaults.port = port;
  if (idf !== undefined) defaults.identityFile = idf;

  const out: Record<string, unknown> = { cluster: inv.cluster };
  if (inv.leader !== undefined) out.leader = inv.leader;
  if (inv.directoryServer !== undefined) out.directoryServer = inv.directoryServer;
  if (Object.keys(defaults).length > 0) out.defaults = { ssh: defaults };
  out.nodes = inv.nodes.map((n) => {
    const ssh: Record<string, string | number> = {};
    if (n.sshHost !== n.name) ssh.host = n.sshHost;
    if (n.sshPort !== undefined && port === undefined) ssh.port = n.sshPort;
    if (n.sshUser !== undefined && user === undefined) ssh.user = n.sshUser;
    if (n.identityFile !== undefined && idf === undefined) ssh.identityFile = n.identityFile;
    const entry: Record<string, unknown> = { name: n.name };
    if (Object.keys(ssh).length > 0) entry.ssh = ssh;
    if (n.address !== undefined) entry.address = n.address;
    if (n.kind !== undefined) entry.kind = n.kind;
    return entry;
  });
  return `# regen inventory for cluster ${inv.cluster}\n${new Document(out).toString({ lineWidth: 0 })}`;
}
