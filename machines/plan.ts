/**
 * Pure planning: from the inventory and what preflight read off the nodes, decide each node's profile, bind
 * address and mesh kind, and collect the warnings an operator should see before anything changes.
 * read → plan → apply: nothing here touches a node.
 */
import { chooseBindAddress } from './bind-address.js';
import { problemsMessage, RegenError, toErrorRecord, type Problem } from './errors.js';
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

/**
 * Plan every node from preflight facts; throws one RegenError listing every problem found (as `problems`, too).
 * Its kind is needs-operator when every problem is a question for the operator (which address to bind), else preflight.
 */
export function planNodes(inventory: Inventory, facts: NodeFacts[]): { nodes: PlannedNode[]; warnings: Warning[] } {
  const byName = new Map(facts.map((f) => [f.node, f]));
  const problems: Problem[] = [];
  const problem = (node: string, message: string) => problems.push({ node, kind: 'preflight', message });
  const warnings: Warning[] = [];
  const nodes: PlannedNode[] = [];
  for (const inv of inventory.nodes) {
    const f = byName.get(inv.name);
    if (!f) {
      problem(inv.name, 'no preflight facts');
      continue;
    }
    if (!f.privileged) problem(inv.name, 'commands do not run as root (log in as root, or give the user passwordless sudo)');
    if (f.missingTools.length) problem(inv.name, `missing ${f.missingTools.join(', ')} (is service-discover installed on this node?)`);
    if (f.profile === null) problem(inv.name, 'neither /opt/zextras/bin/carbonio nor /opt/zextras/bin/zmprov found; is this a Carbonio node?');
    if (f.directory?.state === 'unreachable') {
      problem(inv.name, `the directory ${f.directory.url ?? ''} (ldap_master_url) does not answer from this node; service-discover setup connects to it first and would fail there`);
    } else if (f.directory?.state === 'none') {
      problem(inv.name, '/opt/zextras/conf/localconfig.xml names no ldap_master_url; service-discover setup needs the directory');
    }
    const release = releaseOf(f.serviceDiscoverPackage);
    const versionProblem = untestedVersion(f.serviceDiscoverPackage, release, inventory.allowUntestedVersion === true);
    if (versionProblem !== null) problem(inv.name, versionProblem);
    else if (!isTested(release)) warnings.push({ node: inv.name, message: `service-discover ${f.serviceDiscoverPackage ?? '(version unknown)'} is not a tested release; planned because --allow-untested-version was given` });
    let bind: { address: string } | { error: string };
    try {
      bind = chooseBindAddress(inv, f);
    } catch (err) {
      const e = toErrorRecord(err);
      bind = { error: e.message.replace(`${inv.name}: `, '') };
      problems.push({ node: inv.name, kind: e.kind, message: bind.error, ...(e.hint === undefined ? {} : { hint: e.hint }) });
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
  for (const d of dupes) problems.push({ kind: 'preflight', message: `two nodes would bind to ${d}; give each node its own "address:" in the inventory` });
  if (problems.length) {
    const questions = problems.every((p) => p.kind === 'needs-operator');
    throw new RegenError(questions ? 'needs-operator' : 'preflight', problemsMessage(`preflight found ${problems.length} problem(s); nothing was changed`, problems), {
      hint: questions && problems.length === 1 && problems[0]?.hint !== undefined ? problems[0].hint : 'fix the inventory or the nodes, then run regen start again',
      problems,
    });
  }
  return { nodes, warnings };
}

/** A release outside the tested table is a problem unless the operator allowed it. */
function untestedVersion(pkg: string | null, release: string | null, allowed: boolean): string | null {
  if (allowed || isTested(release)) return null;
  const what = pkg === null ? 'its service-discover version could not be read (dpkg-query / rpm)' : `service-discover ${pkg} is not a release regen was tested against`;
  return `${what} (tested: ${TESTED_VERSIONS.join(', ')}); pass --allow-untested-version to plan it anyway`;
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
  const problems: Problem[] = [];
  const problem = (message: string, node?: string) => problems.push({ kind: 'needs-operator', message, ...(node === undefined ? {} : { node }) });
  for (const n of nodes) {
    const listed = serverSet.has(lower(n.fqdn)) || serverSet.has(lower(n.name));
    const detected: MeshKind = listed ? 'server' : 'agent';
    if (n.kind !== null && n.kind !== detected) {
      problem(`the inventory says ${n.kind} but the directory ${listed ? 'lists it as a mesh server' : 'does not list it among the mesh servers'}`, n.name);
    }
    kinds[n.name] = detected;
  }
  for (const s of meshServers) {
    if (!nodes.some((n) => lower(n.fqdn) === lower(s) || lower(n.name) === lower(s))) {
      problem(`mesh server ${s} is not in the inventory; every mesh server must be, or it keeps the old credentials`);
    }
  }
  if (meshServers.length === 0) problem('the directory lists no mesh server (gas service-discover answered nothing)');
  let leader: PlannedNode | undefined;
  if (args.override !== undefined) {
    leader = nodes.find((n) => n.name === args.override || lower(n.fqdn) === lower(args.override ?? ''));
    if (!leader) problem(`--leader ${args.override} is not a node of the inventory`);
    else if (kinds[leader.name] !== 'server') problem(`--leader ${args.override} is not a mesh server`);
    else if (args.leaderAddress !== null && args.leaderAddress !== leader.bindAddress) {
      warnings.push({ node: leader.name, message: `the mesh reports ${args.leaderAddress} as leader; --leader chose ${leader.name} (${leader.bindAddress})` });
    }
  } else if (args.leaderAddress === null) {
    problem('the mesh has no leader right now (status/leader answered ""); name the node to regenerate on with --leader NODE');
  } else {
    leader = nodes.find((n) => n.bindAddress === args.leaderAddress);
    if (!leader) problem(`the mesh leader ${args.leaderAddress} is not the address of any inventory node; add it, or name the leader with --leader NODE`);
    else if (kinds[leader.name] !== 'server') problem(`the mesh reports ${args.leaderAddress} (${leader.name}) as leader, but the directory does not list it as a mesh server; name the leader with --leader NODE`, leader.name);
  }
  if (problems.length || !leader) {
    throw new RegenError('needs-operator', problemsMessage('cannot settle the leader', problems), {
      hint: 'fix the inventory, or pass --leader NODE, then run regen start again',
      problems,
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
