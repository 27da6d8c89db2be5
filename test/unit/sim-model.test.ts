/**
 * The mesh model encodes DESIGN.md §4; one test per fact, driven through the model directly
 * (the fake cluster only provides a world already set up like a real mesh).
 */
import { describe, expect, test } from 'vitest';
import { createFakeCluster, type FakeCluster } from '../sim/fake-cluster.js';
import {
  AgentDownError,
  ApiError,
  NODE_ID,
  CA_KEY,
  CA_PEM,
  CONFIG_JSON,
  CREDENTIALS_FILE,
  HOSTS_FILE,
  LOCALCONFIG,
  MAIN_JSON,
  PASSWORD_FILE,
  PEERS_INFO,
  PEERS_JSON,
  RESET_FILE,
  SD_HOME,
  SimError,
  aclBootstrap,
  agentMembers,
  bootstrapFailureText,
  bootstrapToken,
  currentLeader,
  leaderFor,
  setup,
  startAgent,
  statusLeader,
  stopAgent,
  tlsCertCreate,
  tokenDelete,
  tokenList,
  tokenSelf,
  type World,
} from '../sim/model.js';

const S1 = 'mail1.example.com';
const S2 = 'mail2.example.com';
const S3 = 'mail3.example.com';

function ip(c: FakeCluster, node: string): string {
  return c.node(node).identity.interfaces.find((i) => i.name !== 'lo')?.address ?? '';
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
}

function writeReset(w: World, node: string, index: number | string): void {
  w.fs(node).write(RESET_FILE, `${index}\n`, { owner: 'service-discover', group: 'service-discover', mode: 0o644 });
}

/** Seed step 1 on the leader: stop and remove what the current profile's wipe removes. */
function wipeCurrent(w: World, node: string): void {
  stopAgent(w, node);
  const fs = w.fs(node);
  fs.remove(CONFIG_JSON);
  fs.remove(MAIN_JSON);
  for (const f of fs.list(SD_HOME)) if (f.endsWith('.pem')) fs.remove(`${SD_HOME}/${f}`);
}

describe('setup pre-checks, in order, with the real texts', () => {
  test('not root is the first refusal, whatever else is wrong', () => {
    const c = createFakeCluster({ seed: 'pre' });
    const e = errorOf(() => setup(c.world, S1, { bind: '127.0.0.1', password: 'x', firstInstance: true, uid: 1000 }));
    expect(e).toBeInstanceOf(SimError);
    expect(e.message).toBe('this command must be executed as root');
  });

  test('consul version failing comes next', () => {
    const c = createFakeCluster({ nodes: [{ name: S1, kind: 'server', consulVersion: '1.19.2' }], seed: 'pre2' });
    (c.node(S1).identity as { consulVersion: string | null }).consulVersion = null;
    const e = errorOf(() => setup(c.world, S1, { bind: '127.0.0.1', password: 'x', firstInstance: true, uid: 0 }));
    expect(e.message).toBe('unable to execute consul binary: exit status 1');
  });

  test('current profile: main.json present refuses before the bind address is looked at', () => {
    const c = createFakeCluster({ seed: 'pre3' });
    const e = errorOf(() => setup(c.world, S1, { bind: '127.0.0.1', password: 'x', firstInstance: true, uid: 0 }));
    expect(e.message).toBe('setup of service-discover already performed, manually reset and try again');
  });

  test('legacy profile does not check main.json: the bind address check answers', () => {
    const c = createFakeCluster({ profile: 'legacy', seed: 'pre4' });
    expect(c.node(S1).exists(MAIN_JSON)).toBe(true);
    const e = errorOf(() => setup(c.world, S1, { bind: '127.0.0.1', password: 'x', firstInstance: true, uid: 0 }));
    expect(e.message).toBe('invalid binding address selected');
  });

  test('neither bind nor password: missing arguments', () => {
    const c = createFakeCluster({ seed: 'pre5' });
    wipeCurrent(c.world, S1);
    const e = errorOf(() => setup(c.world, S1, { firstInstance: true, uid: 0 }));
    expect(e.message).toBe('missing arguments');
  });

  test.each(['127.0.0.1', '127.0.1.1', '10.9.9.9'])('bind %s is not a non-lo interface address', (bind) => {
    const c = createFakeCluster({ seed: 'pre6' });
    wipeCurrent(c.world, S1);
    const e = errorOf(() => setup(c.world, S1, { bind, password: 'x', firstInstance: true, uid: 0 }));
    expect(e.message).toBe('invalid binding address selected');
  });

  test('localconfig.xml unreadable', () => {
    const c = createFakeCluster({ seed: 'pre7' });
    wipeCurrent(c.world, S1);
    c.world.fs(S1).remove(LOCALCONFIG);
    const e = errorOf(() => setup(c.world, S1, { bind: ip(c, S1), password: 'x', firstInstance: true, uid: 0 }));
    expect(e.message).toMatch(/^unable to load localconfig: open \/opt\/zextras\/conf\/localconfig\.xml/);
  });

  test('zimbra_server_hostname resolving to loopback is refused', () => {
    const c = createFakeCluster({ seed: 'pre8' });
    wipeCurrent(c.world, S1);
    c.world.fs(S1).write(HOSTS_FILE, `127.0.1.1 ${S1} mail1\n`, {});
    const e = errorOf(() => setup(c.world, S1, { bind: ip(c, S1), password: 'x', firstInstance: true, uid: 0 }));
    expect(e.message).toBe(`hostname '${S1}' is resolving with loopback address, should resolve with LAN address`);
  });

  test('the after-pre-checks hook runs only once every check passed, before anything is written', () => {
    const c = createFakeCluster({ seed: 'pre9' });
    let calls = 0;
    errorOf(() => setup(c.world, S1, { bind: ip(c, S1), password: 'x', firstInstance: true, uid: 0, afterPrechecks: () => calls++ }));
    expect(calls).toBe(0);
    wipeCurrent(c.world, S1);
    const e = errorOf(() =>
      setup(c.world, S1, {
        bind: ip(c, S1),
        password: 'x',
        firstInstance: true,
        uid: 0,
        afterPrechecks: () => {
          calls++;
          throw new SimError('injected');
        },
      }),
    );
    expect(e.message).toBe('injected');
    expect(calls).toBe(1);
    expect(c.node(S1).exists(MAIN_JSON)).toBe(false);
    expect(c.node(S1).exists(CA_PEM)).toBe(false);
  });

  test('an agent has no --first-instance', () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'pre10' });
    const e = errorOf(() => setup(c.world, 'mail2.example.com', { bind: ip(c, 'mail2.example.com'), password: 'x', firstInstance: true, uid: 0 }));
    expect(e.message).toMatch(/unknown flag --first-instance/);
  });
});

describe('ACL reset', () => {
  test('the 403 text carries the reset index', () => {
    const c = createFakeCluster({ resetIndex: 908, seed: 'acl1' });
    const e = errorOf(() => aclBootstrap(c.world, S1));
    expect(e).toBeInstanceOf(ApiError);
    expect(bootstrapFailureText(e)).toBe(
      'Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed (reset index: 908))',
    );
  });

  test('a valid reset file on the leader allows one bootstrap and is consumed; the index then moves on', () => {
    const c = createFakeCluster({ resetIndex: 908, seed: 'acl2' });
    writeReset(c.world, S1, 908);
    const token = aclBootstrap(c.world, S1);
    expect(token.Description).toBe('Bootstrap Token (Global Management)');
    expect(token.Policies).toEqual([{ ID: '00000000-0000-0000-0000-000000000001', Name: 'global-management' }]);
    expect(Object.keys(token)).toEqual([
      'AccessorID',
      'SecretID',
      'Description',
      'Policies',
      'Local',
      'CreateTime',
      'Hash',
      'CreateIndex',
      'ModifyIndex',
    ]);
    expect(c.node(S1).exists(RESET_FILE)).toBe(false);
    expect(token.CreateIndex).toBeGreaterThan(908);
    const again = errorOf(() => aclBootstrap(c.world, S1));
    expect(bootstrapFailureText(again)).toBe(
      `Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed (reset index: ${token.CreateIndex}))`,
    );
  });

  test('a wrong index is refused with both numbers and the file stays', () => {
    const c = createFakeCluster({ resetIndex: 908, seed: 'acl3' });
    writeReset(c.world, S1, 907);
    const e = errorOf(() => aclBootstrap(c.world, S1));
    expect(bootstrapFailureText(e)).toBe(
      'Failed ACL bootstrapping: Unexpected response code: 500 (Invalid bootstrap reset index (specified 907, reset index: 908))',
    );
    expect(c.node(S1).exists(RESET_FILE)).toBe(true);
  });

  test('the reset file counts only on the raft leader; a request through another node is forwarded there', () => {
    const c = createFakeCluster({ servers: 3, resetIndex: 500, seed: 'acl4' });
    expect(currentLeader(c.world)).toBe(S1);
    writeReset(c.world, S2, 500);
    expect(bootstrapFailureText(errorOf(() => aclBootstrap(c.world, S2)))).toMatch(/403 .*reset index: 500/);
    expect(c.node(S2).exists(RESET_FILE)).toBe(true);
    writeReset(c.world, S1, 500);
    const t = aclBootstrap(c.world, S2);
    expect(t.SecretID).toMatch(/^[0-9a-f-]{36}$/);
    expect(c.node(S1).exists(RESET_FILE)).toBe(false);
  });

  test('a reset file consul cannot read (root 0600) is ignored', () => {
    const c = createFakeCluster({ resetIndex: 908, seed: 'acl5' });
    c.world.fs(S1).write(RESET_FILE, '908\n', { owner: 'root', group: 'root', mode: 0o600 });
    expect(bootstrapFailureText(errorOf(() => aclBootstrap(c.world, S1)))).toMatch(/403/);
  });

  test('no leader: the bootstrap fails at once', () => {
    const c = createFakeCluster({ servers: 3, seed: 'acl6' });
    stopAgent(c.world, S2);
    stopAgent(c.world, S3);
    const e = errorOf(() => aclBootstrap(c.world, S1));
    expect(bootstrapFailureText(e)).toBe('Failed ACL bootstrapping: Unexpected response code: 500 (No cluster leader)');
  });

  test('a stopped agent refuses the connection', () => {
    const c = createFakeCluster({ seed: 'acl7' });
    stopAgent(c.world, S1);
    const e = errorOf(() => aclBootstrap(c.world, S1));
    expect(e).toBeInstanceOf(AgentDownError);
    expect(bootstrapFailureText(e)).toMatch(/connect: connection refused$/);
  });

  test('a never-bootstrapped cluster bootstraps without a reset file', () => {
    const c = createFakeCluster({ neverBootstrapped: true, seed: 'acl8' });
    expect(aclBootstrap(c.world, S1).Description).toBe('Bootstrap Token (Global Management)');
  });

  test('a reset does not revoke the old management token; it can be deleted with the new one', () => {
    const c = createFakeCluster({ seed: 'acl9' });
    const old = bootstrapToken(c.world, S1, c.secret);
    writeReset(c.world, S1, c.state.acl.resetIndex);
    const fresh = aclBootstrap(c.world, S1);
    expect(tokenSelf(c.world, S1, old).Description).toBe('Bootstrap Token (Global Management)');
    const oldAccessor = tokenSelf(c.world, S1, old).AccessorID;
    expect(tokenList(c.world, S1, fresh.SecretID).map((t) => t.AccessorID)).toContain(oldAccessor);
    expect(() => tokenDelete(c.world, S1, fresh.SecretID, fresh.AccessorID)).toThrow(/authorization token/);
    tokenDelete(c.world, S1, fresh.SecretID, oldAccessor);
    expect(() => tokenSelf(c.world, S1, old)).toThrow('ACL not found');
  });
});

describe('members', () => {
  test('default deny: no token lists nothing, an unknown token is refused, the bootstrap token sees everyone', () => {
    const c = createFakeCluster({ servers: 1, agents: 2, seed: 'mem1' });
    expect(agentMembers(c.world, S1)).toEqual([]);
    expect(() => agentMembers(c.world, S1, '11111111-2222-3333-4444-555555555555')).toThrow('ACL not found');
    const token = bootstrapToken(c.world, S1, c.secret);
    const list = agentMembers(c.world, S1, token);
    expect(list.map((m) => [m.Name, m.Status, m.Tags.role])).toEqual([
      ['agent-mail2-example-com', 1, 'node'],
      ['agent-mail3-example-com', 1, 'node'],
      ['server-mail1-example-com', 1, 'consul'],
    ]);
  });

  test('a stopped agent leaves; a stopped server fails; a killed process fails', () => {
    const c = createFakeCluster({ servers: 3, agents: 2, seed: 'mem2' });
    const token = bootstrapToken(c.world, S1, c.secret);
    stopAgent(c.world, 'mail4.example.com');
    stopAgent(c.world, S3);
    c.node('mail5.example.com').kill();
    const status = Object.fromEntries(agentMembers(c.world, S1, token).map((m) => [m.Name, m.Status]));
    expect(status).toEqual({
      'agent-mail4-example-com': 3,
      'agent-mail5-example-com': 4,
      'server-mail1-example-com': 1,
      'server-mail2-example-com': 1,
      'server-mail3-example-com': 4,
    });
  });

  test('a node that does not trust the leader CA is still alive (serf alone), but its RPC has no leader', () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'mem3' });
    const old = bootstrapToken(c.world, S1, c.secret);
    writeReset(c.world, S1, c.state.acl.resetIndex);
    wipeCurrent(c.world, S1);
    setup(c.world, S1, { bind: ip(c, S1), password: 'new', firstInstance: true, uid: 0 });
    const status = Object.fromEntries(agentMembers(c.world, S1, old).map((m) => [m.Name, m.Status]));
    expect(status).toEqual({ 'agent-mail2-example-com': 1, 'server-mail1-example-com': 1 });
    const e = errorOf(() => agentMembers(c.world, 'mail2.example.com', old));
    expect(e).toBeInstanceOf(ApiError);
    expect(e.message).toBe('No cluster leader');
  });
});

describe('first instance and join', () => {
  test('first instance writes the four-member credentials, the password file and strict configs', () => {
    const c = createFakeCluster({ seed: 'fi1' });
    writeReset(c.world, S1, c.state.acl.resetIndex);
    wipeCurrent(c.world, S1);
    setup(c.world, S1, { bind: ip(c, S1), password: 'n3w', firstInstance: true, uid: 0 });
    const fs = c.world.fs(S1);
    const members = c.world.crypto.unpack(fs.read(CREDENTIALS_FILE) ?? Buffer.alloc(0), 'n3w');
    expect([...(members?.keys() ?? [])]).toEqual([
      'gossip-key',
      'consul-acl-secret.json',
      'var/lib/service-discover/consul-agent-ca.pem',
      'var/lib/service-discover/consul-agent-ca-key.pem',
    ]);
    expect(c.world.crypto.unpack(fs.read(CREDENTIALS_FILE) ?? Buffer.alloc(0), 'wrong')).toBeNull();
    expect(fs.stat(CREDENTIALS_FILE)).toMatchObject({ owner: 'root', mode: 0o600 });
    expect(fs.read(PASSWORD_FILE)?.toString()).toBe('n3w');
    expect(fs.stat(PASSWORD_FILE)).toMatchObject({ owner: 'root', mode: 0o400 });
    expect(fs.read(CONFIG_JSON)?.toString()).toBe(`{\n  "bind_addr": "${ip(c, S1)}"\n}`);
    for (const p of [MAIN_JSON, CONFIG_JSON]) expect(fs.stat(p)).toMatchObject({ owner: 'service-discover', mode: 0o600 });
    const main = JSON.parse(fs.read(MAIN_JSON)?.toString() ?? '{}') as { node_name: string; server: boolean };
    expect(main).toMatchObject({ node_name: 'server-mail1-example-com', server: true });
  });

  test('tls ca create refuses an existing CA, so a first instance over a leftover CA fails', () => {
    const c = createFakeCluster({ seed: 'fi2' });
    stopAgent(c.world, S1);
    c.world.fs(S1).remove(MAIN_JSON);
    const e = errorOf(() => setup(c.world, S1, { bind: ip(c, S1), password: 'x', firstInstance: true, uid: 0 }));
    expect(e.message).toBe('unable to create a valid CA with Consul: ==> CA file consul-agent-ca.pem already exists');
  });

  test('tls cert create takes the next index while -0 exists, and the config keeps pointing at the old -0', () => {
    const c = createFakeCluster({ profile: 'legacy', seed: 'fi3' });
    expect(tlsCertCreate(c.world, S1, 'server')).toBe('dc1-server-consul-1.pem');
    // Legacy wipe forgotten except the CA: setup makes a new CA but the service still presents the old -0 cert.
    writeReset(c.world, S1, c.state.acl.resetIndex);
    stopAgent(c.world, S1);
    c.world.fs(S1).remove(CA_PEM);
    c.world.fs(S1).remove(CA_KEY);
    setup(c.world, S1, { bind: ip(c, S1), password: 'x', firstInstance: true, uid: 0 });
    expect(c.node(S1).exists(`${SD_HOME}/dc1-server-consul-2.pem`)).toBe(true);
    expect(c.state.nodes[S1]?.agent?.trust).toBeNull();
  });

  test('a join with the wrong password fails and writes nothing', () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'j1' });
    const A = 'mail2.example.com';
    wipeCurrent(c.world, A);
    const before = c.node(A).fs.paths();
    const e = errorOf(() => setup(c.world, A, { bind: ip(c, A), password: 'wrong', uid: 0 }));
    expect(e.message).toBe(`unable to open ${CREDENTIALS_FILE}: openpgp: incorrect key`);
    expect(c.node(A).fs.paths()).toEqual(before);
  });

  test('an agent join makes agent-<host> with a client cert and no password file; success is silent', () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'j2' });
    const A = 'mail2.example.com';
    wipeCurrent(c.world, A);
    expect(setup(c.world, A, { bind: ip(c, A), password: c.secret, uid: 0 })).toBeUndefined();
    const fs = c.world.fs(A);
    expect(JSON.parse(fs.read(MAIN_JSON)?.toString() ?? '{}')).toMatchObject({ node_name: 'agent-mail2-example-com', server: false });
    expect(fs.exists(`${SD_HOME}/dc1-client-consul-0.pem`)).toBe(true);
    expect(fs.exists(PASSWORD_FILE)).toBe(false);
  });

  test('current profile: the join takes the credentials from the directory, overwriting the local file', () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'j3' });
    const A = 'mail2.example.com';
    wipeCurrent(c.world, A);
    c.world.fs(A).write(CREDENTIALS_FILE, 'stale', {});
    setup(c.world, A, { bind: ip(c, A), password: c.secret, uid: 0 });
    expect(c.node(A).read(CREDENTIALS_FILE)).toBe(c.node(S1).read(CREDENTIALS_FILE));
  });

  test('legacy profile: no directory download, the join needs the file copied by hand', () => {
    const c = createFakeCluster({ servers: 1, agents: 1, profile: 'legacy', seed: 'j3l' });
    const A = 'mail2.example.com';
    stopAgent(c.world, A);
    c.world.fs(A).remove(CREDENTIALS_FILE);
    const e = errorOf(() => setup(c.world, A, { bind: ip(c, A), password: c.secret, uid: 0 }));
    expect(e.message).toMatch(/^cannot find Cluster credential in .*please copy the file from the existing server/);
  });

  test('nothing uploaded yet: the join cannot download the credentials', () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'j4' });
    const A = 'mail2.example.com';
    wipeCurrent(c.world, A);
    c.state.ldap.credentials = null;
    const e = errorOf(() => setup(c.world, A, { bind: ip(c, A), password: c.secret, uid: 0 }));
    expect(e.message).toMatch(/^unable to download credentials from LDAP/);
  });
});

describe('leadership', () => {
  test('one server: stopping it leaves no leader; starting it brings it back', () => {
    const c = createFakeCluster({ seed: 'l1' });
    stopAgent(c.world, S1);
    expect(currentLeader(c.world)).toBeNull();
    expect(() => statusLeader(c.world, S1)).toThrow(AgentDownError);
    startAgent(c.world, S1);
    expect(statusLeader(c.world, S1)).toBe(`${ip(c, S1)}:8300`);
  });

  test('three servers: the preferred leader leads when it can, a majority is needed', () => {
    const c = createFakeCluster({ servers: 3, leader: S2, seed: 'l2' });
    expect(currentLeader(c.world)).toBe(S2);
    stopAgent(c.world, S2);
    expect(currentLeader(c.world)).toBe(S1);
    stopAgent(c.world, S3);
    expect(currentLeader(c.world)).toBeNull();
    expect(statusLeader(c.world, S1)).toBe('');
    startAgent(c.world, S2);
    // S1 holds the higher term and the longer log: its election wins, not the preferred server's.
    expect(currentLeader(c.world)).toBe(S1);
  });

  test('three servers: a leader re-set-up with a new CA cannot reach the others, so it has no leader', () => {
    const c = createFakeCluster({ servers: 3, seed: 'l3' });
    writeReset(c.world, S1, c.state.acl.resetIndex);
    wipeCurrent(c.world, S1);
    expect(currentLeader(c.world)).toBe(S2);
    const e = errorOf(() => setup(c.world, S1, { bind: ip(c, S1), password: 'new', firstInstance: true, uid: 0 }));
    expect(e.message).toBe(
      'unable to create ACL bootstrap token: Failed ACL bootstrapping: Unexpected response code: 500 (No cluster leader)',
    );
    expect(leaderFor(c.world, S1)).toBeNull();
    expect(leaderFor(c.world, S3)).toBe(S2);
  });

  test('peers.json outage recovery: a server starts with exactly those peers and the file is deleted', () => {
    const c = createFakeCluster({ servers: 3, seed: 'l4' });
    for (const s of [S1, S2, S3]) stopAgent(c.world, s);
    const id = c.world.fs(S1).read(NODE_ID)?.toString('utf8').trim();
    c.world.fs(S1).write(PEERS_JSON, JSON.stringify([{ id, address: `${ip(c, S1)}:8300`, non_voter: false }]), {});
    startAgent(c.world, S1);
    expect(c.state.nodes[S1]?.raftPeers).toEqual([S1]);
    expect(c.node(S1).exists(PEERS_JSON)).toBe(false);
    expect(currentLeader(c.world)).toBe(S1);
  });

  test('peers.json beside a raft dir without peers.info is deleted unread: the sentinel is written, the old configuration stays', () => {
    const c = createFakeCluster({ servers: 3, seed: 'l4-info' });
    for (const s of [S1, S2, S3]) stopAgent(c.world, s);
    expect(c.node(S1).exists(PEERS_INFO)).toBe(true);
    c.node(S1).fs.remove(PEERS_INFO);
    const id = c.world.fs(S1).read(NODE_ID)?.toString('utf8').trim();
    c.world.fs(S1).write(PEERS_JSON, JSON.stringify([{ id, address: `${ip(c, S1)}:8300`, non_voter: false }]), {});
    startAgent(c.world, S1);
    expect(c.node(S1).exists(PEERS_JSON)).toBe(false);
    expect(c.node(S1).exists(PEERS_INFO)).toBe(true);
    expect(c.state.nodes[S1]?.raftPeers).toEqual([S1, S2, S3]);
    // Alone with a configuration of three, it cannot win an election.
    expect(currentLeader(c.world)).toBe(null);
    // The next start, with the sentinel there, reads a peers.json again.
    stopAgent(c.world, S1);
    c.world.fs(S1).write(PEERS_JSON, JSON.stringify([{ id, address: `${ip(c, S1)}:8300`, non_voter: false }]), {});
    startAgent(c.world, S1);
    expect(c.state.nodes[S1]?.raftPeers).toEqual([S1]);
    expect(currentLeader(c.world)).toBe(S1);
  });
});
