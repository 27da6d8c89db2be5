/**
 * Pure planning: from the inventory and what preflight read off the nodes, decide each node's profile, bind
 * address and mesh kind, and collect the warnings an operator should see before anything changes.
 * read → plan → apply: nothing here touches a node.
 */
import { chooseBindAddress } from './bind-address.js';
import { RegenError } from './errors.js';
import type { Inventory, MeshKind, NodeFacts, Profile } from './port.js';
import { TESTED_VERSIONS, isTested, releaseOf, wipeSetFor } from './versions.js';

export interface PlannedNode {
  name: string;
  fqdn: string;
  sshHost: string;
  profile: Profile;
  bindAddress: string;
  /** Server or agent; settled by the leader check from the mesh server list (inventory value until then). */
  kind: MeshKind | null;
  role: 'leader' | 'follower' | null;
  /** sha256 of the credentials file before the run (null if absent): a setup probe compares against it. */
  credentialsSha256Before: string | null;
  /** The service-discover release (e.g. "0.7.2"), null if unknown (machines/versions.ts). */
  serviceDiscoverVersion?: string | null;
  /** Whose wipe the release needs: 'current' = config.json, main.json, *.pem; 'legacy' = *.pem (versions.ts). */
  wipeSet?: Profile;
}

export interface Warning {
  node?: string;
  message: string;
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

/** Plan every node from preflight facts; throws one RegenError listing every problem found. */
export function planNodes(inventory: Inventory, facts: NodeFacts[]): { nodes: PlannedNode[]; warnings: Warning[] } {
  const byName = new Map(facts.map((f) => [f.node, f]));
  const problems: string[] = [];
  const warnings: Warning[] = [];
  const nodes: PlannedNode[] = [];
  for (const inv of inventory.nodes) {
    const f = byName.get(inv.name);
    if (!f) {
      problems.push(`${inv.name}: no preflight facts`);
      continue;
    }
    if (!f.privileged) problems.push(`${inv.name}: commands do not run as root (log in as root, or give the user passwordless sudo)`);
    if (f.missingTools.length) problems.push(`${inv.name}: missing ${f.missingTools.join(', ')} (is service-discover installed on this node?)`);
    if (f.profile === null) problems.push(`${inv.name}: neither /opt/zextras/bin/carbonio nor /opt/zextras/bin/zmprov found; is this a Carbonio node?`);
    if (f.directory?.state === 'unreachable') {
      problems.push(`${inv.name}: the directory ${f.directory.url ?? ''} (ldap_master_url) does not answer from this node; service-discover setup connects to it first and would fail there`);
    } else if (f.directory?.state === 'none') {
      problems.push(`${inv.name}: /opt/zextras/conf/localconfig.xml names no ldap_master_url; service-discover setup needs the directory`);
    }
    const release = releaseOf(f.serviceDiscoverPackage);
    const versionProblem = untestedVersion(inv.name, f.serviceDiscoverPackage, release, inventory.allowUntestedVersion === true);
    if (versionProblem !== null) problems.push(versionProblem);
    else if (!isTested(release)) warnings.push({ node: inv.name, message: `service-discover ${f.serviceDiscoverPackage ?? '(version unknown)'} is not a tested release; planned because --allow-untested-version was given` });
    let bind: { address: string } | { error: string };
    try {
      bind = chooseBindAddress(inv, f);
    } catch (err) {
      bind = { error: err instanceof Error ? err.message.replace(`${inv.name}: `, '') : String(err) };
      problems.push(`${inv.name}: ${bind.error}`);
    }
    if (f.hostnameAddresses.some(isLoopback)) {
      const used = 'address' in bind ? bind.address : 'an explicit address';
      warnings.push({ node: inv.name, message: `\`hostname -i\` answers ${f.hostnameAddresses.join(' ')} (loopback): the runbook's $(hostname -i) would fail here; regen binds to ${used}` });
    }
    if (!f.serviceActive) warnings.push({ node: inv.name, message: 'service-discover is not running on this node' });
    if (f.credentialsSha256 === null) warnings.push({ node: inv.name, message: 'no cluster-credentials.tar.gpg on this node' });
    if (f.profile !== null && 'address' in bind) {
      nodes.push({
        name: inv.name,
        fqdn: f.fqdn || inv.name,
        sshHost: inv.sshHost,
        profile: f.profile,
        bindAddress: bind.address,
        kind: inv.kind ?? null,
        role: null,
        credentialsSha256Before: f.credentialsSha256,
        serviceDiscoverVersion: release,
        wipeSet: wipeSetFor(release, f.profile),
      });
    }
  }
  const dupes = findDuplicates(nodes.map((n) => n.bindAddress));
  for (const d of dupes) problems.push(`two nodes would bind to ${d}; give each node its own "address:" in the inventory`);
  if (problems.length) {
    throw new RegenError('preflight', `preflight found ${problems.length} problem(s); nothing was changed:\n  - ${problems.join('\n  - ')}`, {
      hint: 'fix the inventory or the nodes, then run regen start again',
    });
  }
  return { nodes, warnings };
}

/** A release outside the tested table is a problem unless the operator allowed it. */
function untestedVersion(node: string, pkg: string | null, release: string | null, allowed: boolean): string | null {
  if (allowed || isTested(release)) return null;
  const what = pkg === null ? 'its service-discover version could not be read (dpkg-query / rpm)' : `service-discover ${pkg} is not a release regen was tested against`;
  return `${node}: ${what} (tested: ${TESTED_VERSIONS.join(', ')}); pass --allow-untested-version to plan it anyway`;
}

function findDuplicates(xs: string[]): string[] {
  const seen = new Set<string>();
  const d = new Set<string>();
  for (const x of xs) (seen.has(x) ? d : seen).add(x);
  return [...d];
}

export interface LeaderChoice {
  leader: string;
  leaderAddress: string;
  kinds: Record<string, MeshKind>;
  warnings: Warning[];
}

/**
 * Settle the leader and the kinds: mesh servers are the nodes the directory lists; the leader is the node whose
 * bind address the leader endpoint answers (or the operator's --leader). Anything that does not add up is an error,
 * not a guess.
 */
export function chooseLeader(args: {
  nodes: PlannedNode[];
  meshServers: string[];
  leaderAddress: string | null;
  override?: string;
  directoryServer?: string;
}): LeaderChoice {
  const { nodes, meshServers } = args;
  const warnings: Warning[] = [];
  const lower = (s: string) => s.toLowerCase();
  const serverSet = new Set(meshServers.map(lower));
  const kinds: Record<string, MeshKind> = {};
  const problems: string[] = [];
  for (const n of nodes) {
    const listed = serverSet.has(lower(n.fqdn)) || serverSet.has(lower(n.name));
    const detected: MeshKind = listed ? 'server' : 'agent';
    if (n.kind !== null && n.kind !== detected) {
      problems.push(`${n.name}: the inventory says ${n.kind} but the directory ${listed ? 'lists it as a mesh server' : 'does not list it among the mesh servers'}`);
    }
    kinds[n.name] = detected;
  }
  for (const s of meshServers) {
    if (!nodes.some((n) => lower(n.fqdn) === lower(s) || lower(n.name) === lower(s))) {
      problems.push(`mesh server ${s} is not in the inventory; every mesh server must be, or it keeps the old credentials`);
    }
  }
  if (meshServers.length === 0) problems.push('the directory lists no mesh server (gas service-discover answered nothing)');
  let leader: PlannedNode | undefined;
  if (args.override !== undefined) {
    leader = nodes.find((n) => n.name === args.override || lower(n.fqdn) === lower(args.override ?? ''));
    if (!leader) problems.push(`--leader ${args.override} is not a node of the inventory`);
    else if (kinds[leader.name] !== 'server') problems.push(`--leader ${args.override} is not a mesh server`);
    else if (args.leaderAddress !== null && args.leaderAddress !== leader.bindAddress) {
      warnings.push({ node: leader.name, message: `the mesh reports ${args.leaderAddress} as leader; --leader chose ${leader.name} (${leader.bindAddress})` });
    }
  } else if (args.leaderAddress === null) {
    problems.push('the mesh has no leader right now (status/leader answered ""); name the node to regenerate on with --leader NODE');
  } else {
    leader = nodes.find((n) => n.bindAddress === args.leaderAddress);
    if (!leader) problems.push(`the mesh leader ${args.leaderAddress} is not the address of any inventory node; add it, or name the leader with --leader NODE`);
    else if (kinds[leader.name] !== 'server') problems.push(`the mesh reports ${args.leaderAddress} (${leader.name}) as leader, but the directory does not list it as a mesh server; name the leader with --leader NODE`);
  }
  if (problems.length || !leader) {
    throw new RegenError('needs-operator', `cannot settle the leader:\n  - ${problems.join('\n  - ')}`, {
      hint: 'fix the inventory, or pass --leader NODE, then run regen start again',
    });
  }
  if (args.directoryServer !== undefined && lower(args.directoryServer) !== lower(leader.fqdn) && args.directoryServer !== leader.name) {
    warnings.push({ node: leader.name, message: `the leader is not the directory server (${args.directoryServer})` });
  }
  if (meshServers.length > 1) {
    warnings.push({ message: `the mesh has ${meshServers.length} servers: it has no quorum from the leader's stop until the other servers are set up again` });
  }
  return { leader: leader.name, leaderAddress: leader.bindAddress, kinds, warnings };
}
