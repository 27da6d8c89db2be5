/**
 * regen discover --directory HOST: ask one Carbonio node for all servers (`gas`) and the mesh servers
 * (`gas service-discover`), resolve their addresses there, and write an inventory for the operator to review.
 * Read-only on the node.
 */
import { writeFileSync } from 'node:fs';
import { NeedsOperatorError, RegenError } from '../../machines/errors.js';
import type { Inventory, InventoryNode } from '../../machines/port.js';
import type { Io } from '../io.js';
import type { ConnectOptions } from '../main.js';
import { EXIT } from '../exit-codes.js';

export interface DiscoverOptions extends ConnectOptions {
  db: string | undefined;
  directory: string;
  cluster: string;
  output: string | undefined;
}

/**
 * One script: which CLI the node has, then the two server lists and the addresses, as marked sections. `-l`:
 * straight to the directory, not through the node's mailbox (which may be down or absent).
 */
export const DISCOVER_SCRIPT = [
  'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"',
  'if [ -x /opt/zextras/bin/carbonio ]; then PROV="carbonio prov -l"; elif [ -x /opt/zextras/bin/zmprov ]; then PROV="zmprov -l"; else echo "regen:no-carbonio"; exit 3; fi',
  'echo "regen:all"; su - zextras -c "$PROV gas" || exit 4',
  'echo "regen:mesh"; su - zextras -c "$PROV gas service-discover" || exit 4',
  'echo "regen:addresses"',
  'for h in $(su - zextras -c "$PROV gas"); do a=$(getent ahostsv4 "$h" | awk \'{print $1; exit}\'); echo "$h ${a:-?}"; done',
  'echo "regen:end"',
].join('\n');

export function parseDiscovery(stdout: string, directory = 'the directory node'): { all: string[]; mesh: string[]; addresses: Map<string, string> } {
  const sections = new Map<string, string[]>();
  let current: string | null = null;
  for (const raw of stdout.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('regen:')) {
      current = line.slice('regen:'.length);
      sections.set(current, []);
      continue;
    }
    if (line && current) sections.get(current)?.push(line);
  }
  if (!sections.has('end')) {
    throw new NeedsOperatorError(`${directory} answered the server listing with something regen does not understand: ${stdout.slice(0, 300)}`, {
      node: directory,
      hint: `look at what the directory says: ssh ${directory} su - zextras -c "carbonio prov -l gas" (zmprov -l gas on older versions); or write the inventory by hand (README.md, Inventories)`,
    });
  }
  const fqdn = /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/;
  const all = (sections.get('all') ?? []).filter((h) => fqdn.test(h));
  const mesh = (sections.get('mesh') ?? []).filter((h) => fqdn.test(h));
  const addresses = new Map<string, string>();
  for (const l of sections.get('addresses') ?? []) {
    const [h, a] = l.split(/\s+/);
    if (h && a && a !== '?' && !a.startsWith('127.')) addresses.set(h, a);
  }
  return { all, mesh, addresses };
}

export function discoveredInventory(cluster: string, found: ReturnType<typeof parseDiscovery>, directory: string): Inventory {
  const mesh = new Set(found.mesh.map((m) => m.toLowerCase()));
  const names = [...new Set([...found.all, ...found.mesh])];
  const nodes: InventoryNode[] = names.map((h) => {
    const address = found.addresses.get(h);
    return { name: h, sshHost: h, ...(address === undefined ? {} : { address }), kind: mesh.has(h.toLowerCase()) ? 'server' : 'agent' };
  });
  return { cluster, nodes, directoryServer: directory };
}

export async function discover(o: DiscoverOptions, io: Io): Promise<number> {
  const { SshPool } = await import('../../adapters/ssh/index.js');
  const { renderInventoryYaml } = await import('../../adapters/inventory/index.js');
  const pool = new SshPool({
    targets: [{ node: o.directory, host: o.directory }],
    ...(o.sshConfig === undefined ? {} : { sshConfigPath: o.sshConfig }),
    ...(o.knownHosts === undefined ? {} : { knownHostsPath: o.knownHosts }),
    acceptNewHostKeys: o.acceptNewHostKeys,
    connectTimeoutMs: o.connectTimeoutS * 1000,
    commandTimeoutMs: o.commandTimeoutS * 1000,
  });
  try {
    const r = await pool.remote(o.directory).exec(DISCOVER_SCRIPT);
    if (r.stdout.includes('regen:no-carbonio')) throw new RegenError('preflight', `${o.directory} has neither carbonio nor zmprov in /opt/zextras/bin`, { node: o.directory, hint: 'point --directory at a Carbonio node (usually the directory server)' });
    if (r.code !== 0) {
      throw new RegenError('preflight', `listing the servers on ${o.directory} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-300)}`, {
        node: o.directory,
        hint: `check that the directory (LDAP) is up: ssh ${o.directory} su - zextras -c "carbonio prov -l gas" (zmprov -l gas on older versions)`,
      });
    }
    const found = parseDiscovery(r.stdout, o.directory);
    if (found.all.length === 0) {
      throw new RegenError('preflight', `${o.directory} lists no Carbonio server (carbonio prov -l gas answered nothing)`, {
        node: o.directory,
        hint: 'point --directory at a node of the cluster whose directory is up, or write the inventory by hand (README.md, Inventories)',
      });
    }
    const inv = discoveredInventory(o.cluster, found, o.directory);
    const unresolved = inv.nodes.filter((n) => n.address === undefined).map((n) => n.name);
    const notes = [
      `# Discovered on ${o.directory}: ${found.all.length} Carbonio server(s), ${found.mesh.length} mesh server(s).`,
      '# Review before use: check every address, and the ssh settings (user, port, identityFile).',
      ...(found.mesh.length === 0 ? ['# WARNING: the directory lists no mesh server (gas service-discover answered nothing).'] : []),
      ...(unresolved.length ? [`# WARNING: no address resolved on ${o.directory} for ${unresolved.join(', ')}: regen will pick one on the node; set address: to be sure.`] : []),
    ];
    const yaml = `${notes.join('\n')}\n${renderInventoryYaml(inv)}`;
    if (o.output) {
      writeFileSync(o.output, yaml, { mode: 0o644 });
      io.err(`regen: wrote ${o.output} (${inv.nodes.length} nodes); review it, then: regen plan -i ${o.output}\n`);
    } else io.out(yaml);
    return EXIT.ok;
  } finally {
    await pool.closeAll();
  }
}
