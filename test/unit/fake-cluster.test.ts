/**
 * The fake cluster behind the NodePort: the runbooks done by hand through the port end healthy, the port
 * methods keep the model's semantics, and the injected faults behave as the machine's tests expect.
 */
import { describe, expect, test } from 'vitest';
import { BOOTSTRAP_SAVE_PATH, createFakeCluster, healthy, meshConsistent, type FakeCluster } from '../sim/fake-cluster.js';
import { CREDENTIALS_FILE, MAIN_JSON, RESET_FILE, SD_HOME } from '../sim/model.js';
import { Secret } from '../../adapters/secrets/secret.js';
import { CommandFailedError, NodeUnreachableError, OutcomeUnknownError } from '../../machines/errors.js';
import type { MeshKind } from '../../machines/port.js';

const S1 = 'mail1.example.com';

function addressOf(c: FakeCluster, node: string): string {
  return c.node(node).identity.interfaces.find((i) => i.name !== 'lo')?.address ?? '';
}

function kindOf(c: FakeCluster, node: string): MeshKind {
  return c.servers.includes(node) ? 'server' : 'agent';
}

async function seed000(c: FakeCluster, secret: Secret): Promise<void> {
  const leader = c.preferredLeader;
  const reading = await c.port.readResetIndex(leader);
  if (reading.kind !== 'index') throw new Error('expected an index');
  await c.port.writeResetFile(leader, reading.index);
  await c.port.stopService(leader);
  await c.port.wipe(leader, 'current');
  await c.port.setupLeader(leader, addressOf(c, leader), secret);
  const creds = await c.port.readCredentials(leader);
  if (creds === null) throw new Error('leader has no credentials');
  expect((await c.port.members(leader, secret)).find((m) => m.name === 'server-mail1-example-com')).toMatchObject({
    status: 'alive',
    type: 'server',
  });
  for (const n of c.nodes.filter((x) => x !== leader)) {
    await c.port.writeCredentials(n, creds.bytes, creds.sha256);
    await c.port.stopService(n);
    await c.port.wipe(n, 'current');
    await c.port.setupFollower(n, addressOf(c, n), secret, kindOf(c, n));
  }
}

describe('the incident scenario', () => {
  test('starts healthy, bootstrapped long ago, the reset index readable', async () => {
    const c = createFakeCluster({ servers: 1, agents: 2, seed: 'inc1' });
    expect(meshConsistent(c)).toEqual({ ok: true, leader: S1, problems: [] });
    expect(await c.port.readResetIndex(S1)).toEqual({ kind: 'index', index: 908 });
    expect(await c.port.meshServers(S1, 'current')).toEqual([S1]);
    expect(await c.port.leaderAddress('mail3.example.com')).toBe(addressOf(c, S1));
  });

  test('password lost and hostname -i on 127.0.1.1', async () => {
    const c = createFakeCluster({ passwordLost: true, hostnameLoopback: true, seed: 'inc2' });
    expect(await c.port.readMeshSecret(S1)).toBeNull();
    const facts = await c.port.inspect(S1);
    expect(facts.hostnameAddresses).toEqual(['127.0.1.1']);
    expect(facts.addresses).toEqual([addressOf(c, S1)]);
    expect(facts).toMatchObject({ profile: 'current', serviceActive: true, hasMainJson: true, consulVersion: 'Consul v1.19.2' });
    await c.port.stopService(S1);
    await c.port.wipe(S1, 'current');
    await expect(c.port.setupLeader(S1, '127.0.1.1', new Secret('s'))).rejects.toThrow('invalid binding address selected');
  });

  test('members are filtered by the token from the node’s own credentials', async () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'inc3' });
    const members = await c.port.members(S1, new Secret(c.secret));
    expect(members.map((m) => `${m.name} ${m.status} ${m.type}`)).toEqual([
      'agent-mail2-example-com alive client',
      'server-mail1-example-com alive server',
    ]);
    await expect(c.port.members(S1, new Secret('not-the-secret'))).rejects.toBeInstanceOf(CommandFailedError);
  });

  test('a legacy node has no carbonio command', async () => {
    const c = createFakeCluster({ profile: 'legacy', seed: 'inc4' });
    await expect(c.port.meshServers(S1, 'current')).rejects.toThrow(/carbonio: command not found/);
    expect(await c.port.meshServers(S1, 'legacy')).toEqual([S1]);
  });

  test('never bootstrapped: reading the index bootstraps and keeps the token on the node only', async () => {
    const c = createFakeCluster({ neverBootstrapped: true, seed: 'inc5' });
    expect(await c.port.readResetIndex(S1)).toEqual({ kind: 'bootstrapped', savedTo: BOOTSTRAP_SAVE_PATH });
    expect(c.node(S1).fs.stat(BOOTSTRAP_SAVE_PATH)).toMatchObject({ owner: 'root', mode: 0o600 });
    expect(JSON.parse(c.node(S1).read(BOOTSTRAP_SAVE_PATH) ?? '{}')).toMatchObject({ Description: 'Bootstrap Token (Global Management)' });
    expect(await c.port.readResetIndex(S1)).toMatchObject({ kind: 'index' });
  });
});

describe('the runbooks by hand through the port', () => {

  test('seed 000 (current) on one server and two agents ends healthy with a new secret', async () => {
    const c = createFakeCluster({ servers: 1, agents: 2, passwordLost: true, seed: 'r000' });
    const secret = new Secret('brand-new-secret');
    await seed000(c, secret);
    expect(healthy(c, secret)).toMatchObject({ ok: true, problems: [] });
    expect((await c.port.readMeshSecret(S1))?.reveal()).toBe('brand-new-secret');
    expect(await c.port.secretOpensCredentials('mail2.example.com', secret)).toBe(true);
    expect(await c.port.secretOpensCredentials('mail2.example.com', new Secret(c.secret))).toBe(false);
    expect(await c.port.probeResetFile(S1)).toBeNull();
    // The reset left the old management token valid: two management tokens now.
    const mgmt = (await c.port.listTokens(S1, secret)).filter((t) => t.policies.includes('global-management'));
    expect(mgmt).toHaveLength(2);
    for (const m of ['backup', 'writeResetFile', 'stopService', 'wipe', 'setupLeader'] as const) {
      expect(c.effects.count(S1, m)).toBe(m === 'backup' ? 0 : 1);
    }
    expect(c.effects.total('setupFollower')).toBe(2);
  });

  test('seed 000 on a follower that skips removing main.json is refused', async () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'r000b' });
    const secret = new Secret('s2');
    const A = 'mail2.example.com';
    const r = await c.port.readResetIndex(S1);
    if (r.kind !== 'index') throw new Error('index expected');
    await c.port.writeResetFile(S1, r.index);
    await c.port.stopService(S1);
    await c.port.wipe(S1, 'current');
    await c.port.setupLeader(S1, addressOf(c, S1), secret);
    await c.port.stopService(A);
    await c.port.wipe(A, 'legacy');
    await expect(c.port.setupFollower(A, addressOf(c, A), secret, 'agent')).rejects.toThrow(
      'setup of service-discover already performed, manually reset and try again',
    );
    expect(healthy(c, secret).ok).toBe(false);
    await c.port.wipe(A, 'current');
    await c.port.setupFollower(A, addressOf(c, A), secret, 'agent');
    expect(healthy(c, secret).ok).toBe(true);
  });

  test('seed 002 (legacy) on a server and two agents ends healthy: *.pem only, credentials copied by hand', async () => {
    const c = createFakeCluster({ servers: 1, agents: 2, profile: 'legacy', seed: 'r002' });
    const secret = new Secret('legacy-new');
    const r = await c.port.readResetIndex(S1);
    if (r.kind !== 'index') throw new Error('index expected');
    await c.port.writeResetFile(S1, r.index);
    await c.port.stopService(S1);
    await c.port.wipe(S1, 'legacy');
    expect(c.node(S1).exists(MAIN_JSON)).toBe(true);
    expect(c.node(S1).fs.list(SD_HOME).filter((f) => f.endsWith('.pem'))).toEqual([]);
    await c.port.setupLeader(S1, addressOf(c, S1), secret);
    const creds = await c.port.readCredentials(S1);
    if (creds === null) throw new Error('no credentials');
    for (const n of ['mail2.example.com', 'mail3.example.com']) {
      await c.port.writeCredentials(n, creds.bytes, creds.sha256);
      await c.port.wipe(n, 'legacy');
      // The legacy runbook does not stop the follower; setup restarts it with the new config.
      await c.port.stopService(n);
      await c.port.setupFollower(n, addressOf(c, n), secret, 'agent');
    }
    expect(healthy(c, secret)).toMatchObject({ ok: true });
  });

  test('seed 002 without copying the credentials fails on the legacy follower (it still has the old file)', async () => {
    const c = createFakeCluster({ servers: 1, agents: 1, profile: 'legacy', seed: 'r002b' });
    const secret = new Secret('legacy-new');
    const r = await c.port.readResetIndex(S1);
    if (r.kind !== 'index') throw new Error('index expected');
    await c.port.writeResetFile(S1, r.index);
    await c.port.stopService(S1);
    await c.port.wipe(S1, 'legacy');
    await c.port.setupLeader(S1, addressOf(c, S1), secret);
    await c.port.wipe('mail2.example.com', 'legacy');
    await expect(c.port.setupFollower('mail2.example.com', addressOf(c, 'mail2.example.com'), secret, 'agent')).rejects.toThrow(
      'openpgp: incorrect key',
    );
    // Still alive in serf (same old keyring), but its RPC finds no leader that trusts its old CA.
    expect(healthy(c, secret).problems).toContain('mail2.example.com: RPC through its own agent fails: 500 (No cluster leader)');
  });

  test('seed 000 on three servers stalls at the leader: its new CA has no quorum', async () => {
    const c = createFakeCluster({ servers: 3, seed: 'r000c' });
    const secret = new Secret('s3');
    const r = await c.port.readResetIndex(S1);
    if (r.kind !== 'index') throw new Error('index expected');
    await c.port.writeResetFile(S1, r.index);
    await c.port.stopService(S1);
    await c.port.wipe(S1, 'current');
    await expect(c.port.setupLeader(S1, addressOf(c, S1), secret)).rejects.toThrow(/No cluster leader/);
    expect(await c.port.leaderAddress('mail2.example.com')).toBe(addressOf(c, 'mail2.example.com'));
  });
});

describe('port methods', () => {
  test('a follower server given --wizard refuses the unknown flag', async () => {
    const c = createFakeCluster({ servers: 2, seed: 'pm1' });
    await c.port.stopService('mail2.example.com');
    await c.port.wipe('mail2.example.com', 'current');
    await expect(c.port.setupFollower('mail2.example.com', addressOf(c, 'mail2.example.com'), new Secret(c.secret), 'agent')).rejects.toThrow(
      'unknown flag --wizard',
    );
  });

  test('the reset file is written as service-discover and probed', async () => {
    const c = createFakeCluster({ seed: 'pm2' });
    expect(await c.port.probeResetFile(S1)).toBeNull();
    await c.port.writeResetFile(S1, 908);
    expect(await c.port.probeResetFile(S1)).toBe(908);
    expect(c.node(S1).fs.stat(RESET_FILE)).toMatchObject({ owner: 'service-discover', mode: 0o644 });
    expect(c.node(S1).read(RESET_FILE)).toBe('908\n');
  });

  test('backup keeps owners and modes, is idempotent after the wipe, and its probe checks every checksum', async () => {
    const c = createFakeCluster({ seed: 'pm3' });
    expect(await c.port.probeBackup(S1, 'run1')).toBeNull();
    const m = await c.port.backup(S1, 'run1');
    expect(m.dir).toBe('/var/backups/regen/run1');
    expect(m.files.map((f) => f.path)).toEqual([
      '/etc/zextras/service-discover/config.json',
      '/etc/zextras/service-discover/main.json',
      '/var/lib/service-discover/consul-agent-ca-key.pem',
      '/var/lib/service-discover/consul-agent-ca.pem',
      '/var/lib/service-discover/dc1-server-consul-0-key.pem',
      '/var/lib/service-discover/dc1-server-consul-0.pem',
      '/etc/zextras/service-discover/cluster-credentials.tar.gpg',
      '/var/lib/service-discover/password',
      '/var/lib/service-discover/data/serf/local.keyring',
      '/var/lib/service-discover/data/serf/remote.keyring',
    ]);
    expect(m.files.find((f) => f.path.endsWith('/password'))).toMatchObject({ mode: '0400', owner: 'root' });
    expect(m.files.find((f) => f.path.endsWith('/main.json'))).toMatchObject({ mode: '0600', owner: 'service-discover' });
    expect(await c.port.probeBackup(S1, 'run1')).toEqual(m);
    await c.port.stopService(S1);
    await c.port.wipe(S1, 'current');
    expect(await c.port.backup(S1, 'run1')).toEqual(m);
    c.node(S1).fs.write(`${m.dir}${MAIN_JSON}`, 'tampered', {});
    expect(await c.port.probeBackup(S1, 'run1')).toBeNull();
  });

  test('wipe and its probe follow the profile', async () => {
    const c = createFakeCluster({ seed: 'pm4' });
    expect(await c.port.probeWipe(S1, 'legacy')).toBe(false);
    await c.port.wipe(S1, 'legacy');
    expect(await c.port.probeWipe(S1, 'legacy')).toBe(true);
    expect(await c.port.probeWipe(S1, 'current')).toBe(false);
    await c.port.wipe(S1, 'current');
    expect(await c.port.probeWipe(S1, 'current')).toBe(true);
  });

  test('writeCredentials checks the checksum on the node', async () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'pm5' });
    const creds = await c.port.readCredentials(S1);
    if (creds === null) throw new Error('no credentials');
    await expect(c.port.writeCredentials('mail2.example.com', Buffer.from('other'), creds.sha256)).rejects.toBeInstanceOf(
      CommandFailedError,
    );
    await c.port.writeCredentials('mail2.example.com', creds.bytes, creds.sha256);
    expect(await c.port.credentialsSha256('mail2.example.com')).toBe(creds.sha256);
    expect(c.node('mail2.example.com').fs.stat(CREDENTIALS_FILE)).toMatchObject({ owner: 'root', mode: 0o600 });
  });

  test('starting with nothing to start fails like systemd', async () => {
    const c = createFakeCluster({ seed: 'pm6' });
    await c.port.stopService(S1);
    await c.port.wipe(S1, 'current');
    await expect(c.port.startService(S1)).rejects.toThrow(/^Job for service-discover.service failed/);
    expect(await c.port.serviceActive(S1)).toBe(false);
  });

  test('healthy() is false for a cluster regen never touched, and for a secret that does not open the new credentials', async () => {
    const c = createFakeCluster({ servers: 1, agents: 2, seed: 'pm6' });
    expect(meshConsistent(c).ok).toBe(true);
    expect(healthy(c, c.secret).problems).toEqual([`${S1}: credentials unchanged since the cluster was created`]);
    const secret = new Secret('pm6-new-secret');
    await seed000(c, secret);
    expect(healthy(c, secret)).toMatchObject({ ok: true, problems: [] });
    expect(healthy(c, 'not-the-secret').problems).toEqual([`${S1}: the new secret does not open the credentials`]);
  });

  test('meshConsistent() notices a dead agent and a differing credentials file', async () => {
    const c = createFakeCluster({ servers: 1, agents: 2, seed: 'pm7' });
    c.node('mail2.example.com').kill();
    c.node('mail3.example.com').fs.write(CREDENTIALS_FILE, 'x', {});
    expect(meshConsistent(c)).toEqual({
      ok: false,
      leader: S1,
      problems: ['mail2.example.com: RPC through its own agent fails: agent down', "mail3.example.com: credentials differ from the leader's"],
    });
  });

  test('an unknown node is unreachable', async () => {
    const c = createFakeCluster({ seed: 'pm8' });
    await expect(c.port.inspect('nope.example.com')).rejects.toBeInstanceOf(NodeUnreachableError);
  });
});

describe('faults', () => {
  test('fail next: CommandFailedError with the message, nothing applied, then back to normal', async () => {
    const c = createFakeCluster({ seed: 'f1' });
    c.faults.failNext(S1, 'stopService', 'boom', { exitCode: 5 });
    const err = await c.port.stopService(S1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandFailedError);
    expect(err).toMatchObject({ message: 'boom', exitCode: 5, node: S1 });
    expect(c.node(S1).active()).toBe(true);
    expect(c.effects.count(S1, 'stopService')).toBe(0);
    await c.port.stopService(S1);
    expect(c.node(S1).active()).toBe(false);
    expect(c.effects.count(S1, 'stopService')).toBe(1);
  });

  test('crash after effect: applied, counted, and the caller gets OutcomeUnknownError', async () => {
    const c = createFakeCluster({ seed: 'f2' });
    c.faults.crashAfterEffect(S1, 'writeResetFile');
    await expect(c.port.writeResetFile(S1, 908)).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(await c.port.probeResetFile(S1)).toBe(908);
    expect(c.effects.count(S1, 'writeResetFile')).toBe(1);
  });

  test('unreachable: every call until cleared, nothing applied', async () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'f3' });
    c.faults.unreachable('mail2.example.com');
    await expect(c.port.stopService('mail2.example.com')).rejects.toBeInstanceOf(NodeUnreachableError);
    await expect(c.port.inspect('mail2.example.com')).rejects.toBeInstanceOf(NodeUnreachableError);
    expect(c.node('mail2.example.com').active()).toBe(true);
    expect(await c.port.serviceActive(S1)).toBe(true);
    c.faults.clear('mail2.example.com');
    expect(await c.port.serviceActive('mail2.example.com')).toBe(true);
  });

  test('unreachable for one method, a given number of times', async () => {
    const c = createFakeCluster({ seed: 'f4' });
    c.faults.unreachable(S1, 'inspect', { times: 2 });
    await expect(c.port.inspect(S1)).rejects.toBeInstanceOf(NodeUnreachableError);
    expect(await c.port.serviceActive(S1)).toBe(true);
    await expect(c.port.inspect(S1)).rejects.toBeInstanceOf(NodeUnreachableError);
    expect((await c.port.inspect(S1)).fqdn).toBe(S1);
  });

  test('hang: pending until released; complete applies, unknown does not', async () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'f5' });
    c.faults.hang(S1, 'stopService');
    let settled = false;
    const p = c.port.stopService(S1).then(() => {
      settled = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    expect(c.faults.pending).toBe(1);
    expect(c.node(S1).active()).toBe(true);
    expect(c.faults.release()).toBe(1);
    await p;
    expect(c.node(S1).active()).toBe(false);

    c.faults.hang('mail2.example.com', 'stopService');
    const q = c.port.stopService('mail2.example.com');
    expect(c.faults.release('unknown')).toBe(1);
    await expect(q).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(c.node('mail2.example.com').active()).toBe(true);
    expect(c.effects.count('mail2.example.com', 'stopService')).toBe(0);
  });

  test('a retried setup after a crash is refused while main.json is there (why wipe+setup retry as one unit)', async () => {
    const c = createFakeCluster({ seed: 'f6' });
    const secret = new Secret('n');
    const r = await c.port.readResetIndex(S1);
    if (r.kind !== 'index') throw new Error('index expected');
    await c.port.writeResetFile(S1, r.index);
    await c.port.stopService(S1);
    await c.port.wipe(S1, 'current');
    c.faults.crashAfterEffect(S1, 'setupLeader');
    await expect(c.port.setupLeader(S1, addressOf(c, S1), secret)).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(await c.port.probeSetup(S1)).toMatchObject({ hasMainJson: true, serviceActive: true, hasPasswordFile: true });
    await expect(c.port.setupLeader(S1, addressOf(c, S1), secret)).rejects.toThrow(/already performed/);
    expect(c.effects.count(S1, 'setupLeader')).toBe(1);
    expect(c.calls.filter((x) => x.method === 'setupLeader')).toHaveLength(2);
  });
});
