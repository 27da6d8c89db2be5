/**
 * What proves, in the model, that a node is back in the new mesh (the oracle of the tests, independent of regen):
 * its agent runs, an RPC through its own agent works with the new bootstrap token, its certificate chains to the
 * leader's CA, its CA is the leader's, and its keyring holds exactly the key of the leader's credentials.
 * `alive` in the members list proves none of this (serf alone decides it).
 */
import {
  ApiError,
  AgentDownError,
  CA_PEM,
  CREDENTIALS_FILE,
  MAIN_JSON,
  PASSWORD_FILE,
  caFingerprint,
  catalogNodes,
  raftLeaders,
  type World,
} from './model.js';
import { readKeyring } from './serf.js';

/** The new bootstrap token and gossip key, read from the leader's credentials with its password file. */
export function leaderSecrets(w: World, leader: string): { token: string; gossipKey: string } | null {
  const fs = w.fs(leader);
  const pw = fs.read(PASSWORD_FILE);
  const blob = fs.read(CREDENTIALS_FILE);
  if (pw === null || blob === null) return null;
  const members = w.crypto.unpack(blob, pw.toString('utf8'));
  const acl = members?.get('consul-acl-secret.json');
  const key = members?.get('gossip-key');
  if (acl === undefined || key === undefined) return null;
  const token = (JSON.parse(acl.toString('utf8')) as { SecretID?: unknown }).SecretID;
  return typeof token === 'string' ? { token, gossipKey: key.toString('utf8') } : null;
}

/** Why `node` is not proven back (null when it is). */
export function notBackBecause(w: World, node: string, leader: string, token: string, gossipKey: string): string | null {
  const fs = w.fs(node);
  try {
    catalogNodes(w, node, token);
  } catch (e) {
    const why = e instanceof ApiError ? `${e.status} (${e.message})` : e instanceof AgentDownError ? 'agent down' : (e as Error).message;
    return `RPC through its own agent fails: ${why}`;
  }
  const ca = fs.read(CA_PEM);
  const leaderCa = w.fs(leader).read(CA_PEM);
  if (ca === null || leaderCa === null || caFingerprint(ca) !== caFingerprint(leaderCa)) return "its CA is not the leader's";
  const rt = w.state.nodes[node]?.agent;
  if (rt?.trust !== caFingerprint(leaderCa)) return "its certificate does not verify against the leader's CA";
  const keys = readKeyring(fs);
  if (keys === null || keys.length !== 1 || keys[0] !== gossipKey) return `its keyring is not exactly the new key (${keys?.length ?? 0} keys)`;
  if (fs.read(MAIN_JSON) === null) return 'no main.json';
  return null;
}

/** Exactly one leader, and every listed node proven back; the problems otherwise. */
export function meshProblems(w: World, nodes: readonly string[]): { leader: string | null; problems: string[] } {
  const leaders = raftLeaders(w);
  if (leaders.length !== 1) return { leader: leaders[0] ?? null, problems: [leaders.length === 0 ? 'no leader' : `${leaders.length} leaders: ${leaders.join(', ')}`] };
  const leader = leaders[0] ?? '';
  const s = leaderSecrets(w, leader);
  if (s === null) return { leader, problems: [`${leader}: its credentials cannot be read with its password file`] };
  const problems: string[] = [];
  for (const n of nodes) {
    const why = notBackBecause(w, n, leader, s.token, s.gossipKey);
    if (why !== null) problems.push(`${n}: ${why}`);
  }
  return { leader, problems };
}
