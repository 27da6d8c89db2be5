/**
 * Every NodePort method of adapters/carbonio against a 1-server + 1-agent lab over the real SSH transport,
 * ending with the whole seed-000 procedure done through the port and both nodes alive members again.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandFailedError } from '../../machines/errors.js';
import type { BackupManifest, NodePort } from '../../machines/port.js';
import { chooseBindAddress } from '../../machines/bind-address.js';
import { createCarbonioPort } from '../../adapters/carbonio/port.js';
import { Secret } from '../../adapters/secrets/secret.js';
import type { AuditSink } from '../../adapters/ssh/remote.js';
import { SshPool } from '../../adapters/ssh/transport.js';
import { labSkip, withLab } from './harness.js';
import { labFault } from './lab.js';
import type { LabNode } from './lab.js';

const skip = labSkip();

type AuditEntry = Parameters<AuditSink>[0];

describe.skipIf(skip)('carbonio port on a lab (1 server, 1 agent, current profile, password lost)', () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'current', losePassword: true });
  const audit: AuditEntry[] = [];
  const newSecret = new Secret(`regen-${randomBytes(18).toString('base64url')}`, 'mesh secret');
  const runId = `lab-${randomBytes(4).toString('hex')}`;
  let pool: SshPool | null = null;
  let portInstance: NodePort | null = null;

  function port(): NodePort {
    if (portInstance === null) {
      const { lab } = h;
      pool = new SshPool({
        knownHostsPath: lab.knownHosts,
        sshConfigPath: null,
        agentSocket: null,
        commandTimeoutMs: 120_000,
        audit: (e) => audit.push(e),
        targets: lab.nodes.map((n) => ({ node: n.name, host: n.ip, port: 22, user: 'root', identityFile: lab.identityFile })),
      });
      const p = pool;
      portInstance = createCarbonioPort((node) => p.remote(node), { commandTimeoutMs: 60_000, setupTimeoutMs: 120_000 });
    }
    return portInstance;
  }
  const server = (): LabNode => h.lab.nodes.find((n) => n.kind === 'server') as LabNode;
  const agent = (): LabNode => h.lab.nodes.find((n) => n.kind === 'agent') as LabNode;
  const labSecret = (): Secret => new Secret(h.secret, 'mesh secret');

  it('inspect sees each node as preflight needs it', async () => {
    for (const n of h.lab.nodes) {
      const f = await port().inspect(n.name);
      expect(f).toMatchObject({
        node: n.name,
        hostname: n.short,
        fqdn: n.name,
        profile: 'current',
        privileged: true,
        missingTools: [],
        serviceActive: true,
        hasMainJson: true,
        hasConfigJson: true,
        configuredBindAddress: n.ip,
      });
      expect(f.addresses).toContain(n.ip);
      expect(f.addresses.every((a) => !a.startsWith('127.'))).toBe(true);
      expect(f.credentialsSha256).toMatch(/^[0-9a-f]{64}$/);
      expect(f.consulVersion).toMatch(/^Consul v\d+\.\d+/);
      expect(chooseBindAddress({ name: n.name, sshHost: n.ip }, f).address).toBe(n.ip);
    }
  });

  it('meshServers lists the server as zextras; the leader is the server', async () => {
    for (const n of h.lab.nodes) expect(await port().meshServers(n.name, 'current')).toEqual([server().name]);
    expect(await port().leaderAddress(server().name)).toBe(server().ip);
    expect(await port().leaderAddress(agent().name)).toBe(server().ip);
  });

  it('members with the lab secret; a wrong secret is told apart from an empty mesh', async () => {
    const members = await port().members(server().name, labSecret());
    expect(members.map((m) => [m.address.split(':')[0], m.status, m.type]).sort()).toEqual(
      [
        [server().ip, 'alive', 'server'],
        [agent().ip, 'alive', 'client'],
      ].sort(),
    );
    const err = await port().members(server().name, newSecret).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CommandFailedError);
    expect((err as Error).message).toMatch(/wrong secret/);
    expect(await port().secretOpensCredentials(agent().name, labSecret())).toBe(true);
    expect(await port().secretOpensCredentials(agent().name, newSecret)).toBe(false);
  });

  it('the lost password reads as absent; tokens list without SecretIDs', async () => {
    expect(await port().readMeshSecret(server().name)).toBeNull();
    expect(await port().readMeshSecret(agent().name)).toBeNull();
    const tokens = await port().listTokens(server().name, labSecret());
    expect(tokens.some((t) => t.policies.includes('global-management'))).toBe(true);
    expect(JSON.stringify(tokens)).not.toMatch(/SecretID/);
  });

  it('wipe refuses while the service runs', async () => {
    const err = await port().wipe(agent().name, 'current').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CommandFailedError);
    expect(await port().probeWipe(agent().name, 'current')).toBe(false);
  });

  const manifests = new Map<string, BackupManifest>();

  it('backup keeps owners and modes, is idempotent, and its probe verifies it', async () => {
    for (const n of h.lab.nodes) {
      expect(await port().probeBackup(n.name, runId)).toBeNull();
      const first = await port().backup(n.name, runId);
      const again = await port().backup(n.name, runId);
      expect(again).toEqual(first);
      expect(await port().probeBackup(n.name, runId)).toEqual(first);
      const paths = first.files.map((f) => f.path);
      expect(paths).toContain('/etc/zextras/service-discover/main.json');
      expect(paths).toContain('/etc/zextras/service-discover/cluster-credentials.tar.gpg');
      expect(paths.some((p) => /^\/var\/lib\/service-discover\/.*\.pem$/.test(p))).toBe(true);
      const main = first.files.find((f) => f.path.endsWith('/main.json'));
      expect(main).toMatchObject({ mode: '0600', owner: 'service-discover' });
      const creds = first.files.find((f) => f.path.endsWith('.tar.gpg'));
      expect(creds).toMatchObject({ mode: '0600', owner: 'root' });
      expect(creds?.sha256).toBe((await port().inspect(n.name)).credentialsSha256);
      manifests.set(n.name, first);
    }
  });

  it('the whole seed-000 procedure through the port ends with both nodes alive members', async () => {
    const p = port();
    const leader = server();
    const follower = agent();
    const oldSha = await p.credentialsSha256(leader.name);

    // Step 1 (leader): reset index, reset file as service-discover, stop, wipe.
    const reading = await p.readResetIndex(leader.name);
    if (reading.kind !== 'index') throw new Error(`expected a reset index, got ${JSON.stringify(reading)}`);
    expect(reading.index).toBeGreaterThan(0);
    await p.writeResetFile(leader.name, reading.index);
    expect(await p.probeResetFile(leader.name)).toBe(reading.index);
    await p.stopService(leader.name);
    expect(await p.serviceActive(leader.name)).toBe(false);
    await p.wipe(leader.name, 'current');
    expect(await p.probeWipe(leader.name, 'current')).toBe(true);

    // Step 2 (leader): first-instance setup with the new secret.
    await p.setupLeader(leader.name, leader.ip, newSecret);
    const lp = await p.probeSetup(leader.name);
    expect(lp).toMatchObject({ hasMainJson: true, hasConfigJson: true, configuredBindAddress: leader.ip, serviceActive: true, hasPasswordFile: true });
    expect(lp.credentialsSha256).not.toBe(oldSha);
    expect(await p.probeResetFile(leader.name)).toBeNull();
    const readBack = await p.readMeshSecret(leader.name);
    expect(readBack?.equals(newSecret)).toBe(true);
    expect(await p.secretOpensCredentials(leader.name, newSecret)).toBe(true);
    expect(await p.secretOpensCredentials(leader.name, labSecret())).toBe(false);
    const afterLeader = await p.members(leader.name, newSecret);
    expect(afterLeader.find((m) => m.address.startsWith(`${leader.ip}:`))).toMatchObject({ status: 'alive', type: 'server' });
    expect(await p.leaderAddress(leader.name)).toBe(leader.ip);

    // Followers: copy the credentials through regen, stop, wipe, join.
    const creds = await p.readCredentials(leader.name);
    if (creds === null) throw new Error('the leader has no credentials after setup');
    expect(creds.sha256).toBe(lp.credentialsSha256);
    await p.writeCredentials(follower.name, creds.bytes, creds.sha256);
    expect(await p.credentialsSha256(follower.name)).toBe(creds.sha256);
    await p.stopService(follower.name);
    await p.wipe(follower.name, 'current');
    expect(await p.probeWipe(follower.name, 'current')).toBe(true);
    // A setup that fails after its pre-checks is retried as one unit: wipe again, then setup.
    await labFault(h.lab.dir, { kind: 'fail-next-setup', node: follower.name, message: 'simulated failure' });
    const failed = await p.setupFollower(follower.name, follower.ip, newSecret, 'agent').then(
      () => null,
      (e: unknown) => e,
    );
    expect(failed).toBeInstanceOf(CommandFailedError);
    expect((failed as Error).message).not.toContain(newSecret.reveal());
    await p.stopService(follower.name);
    await p.wipe(follower.name, 'current');
    await p.setupFollower(follower.name, follower.ip, newSecret, 'agent');
    expect(await p.probeSetup(follower.name)).toMatchObject({
      hasMainJson: true,
      configuredBindAddress: follower.ip,
      serviceActive: true,
      hasPasswordFile: false,
      credentialsSha256: creds.sha256,
    });

    // Final verify: every node an alive member of the right type, every credentials file the leader's.
    for (const viewer of [leader, follower]) {
      const members = await p.members(viewer.name, newSecret);
      expect(members.find((m) => m.address.startsWith(`${leader.ip}:`))).toMatchObject({ status: 'alive', type: 'server' });
      expect(members.find((m) => m.address.startsWith(`${follower.ip}:`))).toMatchObject({ status: 'alive', type: 'client' });
    }
    for (const n of h.lab.nodes) expect(await p.credentialsSha256(n.name)).toBe(creds.sha256);

    // The backups taken before the wipe still verify.
    for (const n of h.lab.nodes) expect(await p.probeBackup(n.name, runId)).toEqual(manifests.get(n.name));
  });

  it('after the reset, a bootstrap is refused again with a new index', async () => {
    const reading = await port().readResetIndex(server().name);
    expect(reading.kind).toBe('index');
  });

  it('no secret reached an SSH command line or an audited output', async () => {
    expect(audit.length).toBeGreaterThan(20);
    const texts = [h.secret, newSecret.reveal()];
    for (const e of audit) {
      for (const s of texts) {
        expect(e.command).not.toContain(s);
        expect(e.stdoutTail).not.toContain(s);
        expect(e.stderrTail).not.toContain(s);
      }
    }
  });

  it('with hostname -i answering 127.0.1.1, inspect reports it and the bind address is still the interface one', async () => {
    const a = agent();
    await labFault(h.lab.dir, { kind: 'hostname-loopback', node: a.name, on: true });
    try {
      const f = await port().inspect(a.name);
      expect(f.hostnameAddresses).toContain('127.0.1.1');
      expect(f.addresses).toContain(a.ip);
      expect(chooseBindAddress({ name: a.name, sshHost: a.name }, f).address).toBe(a.ip);
      expect(() => chooseBindAddress({ name: a.name, sshHost: a.name, address: '127.0.1.1' }, f)).toThrow(/cannot be a bind address/);
    } finally {
      await labFault(h.lab.dir, { kind: 'hostname-loopback', node: a.name, on: false });
    }
  });

  it('the lock scripts run one at a time on a node: of two takeovers of one lock exactly one wins, and a heartbeat racing a release never leaves a lock behind', async () => {
    const p = port();
    const node = server().name;
    const holder = (tok: string): string => JSON.stringify({ format: 'regen-lock', runId: 'race', token: tok, heartbeatAt: Date.now() });
    for (let round = 0; round < 8; round++) {
      const first = `first-${round}`;
      expect((await p.lockTake(node, first, holder(first))).taken).toBe(true);
      // Two processes take over from the same holder at once: the second must find the token already changed.
      const won = await Promise.all(['a', 'b'].map((who) => p.lockUpdate(node, first, `${who}-${round}`, holder(`${who}-${round}`))));
      expect(won.filter(Boolean)).toHaveLength(1);
      const winner = won[0] ? `a-${round}` : `b-${round}`;
      // The winner's heartbeat and its release cross: whatever order they run in, no lock is left.
      await Promise.all([p.lockUpdate(node, winner, winner, holder(winner)), p.lockRemove(node, winner)]);
      expect((await p.regenTraces(node)).lock).toBeNull();
    }
  });

  // Cleanup, not a test: it asserts nothing, so it is not one.
  afterAll(async () => {
    await port().close();
    await pool?.closeAll();
  });
});

describe.skipIf(skip)('carbonio port on a legacy lab (seed 002: zmprov, the wipe removes only *.pem)', () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'legacy', losePassword: true });
  const newSecret = new Secret(`regen-${randomBytes(18).toString('base64url')}`, 'mesh secret');
  let pool: SshPool | null = null;
  let p: NodePort | null = null;
  const port = (): NodePort => {
    if (p === null) {
      const { lab } = h;
      const sshPool = new SshPool({
        knownHostsPath: lab.knownHosts,
        sshConfigPath: null,
        agentSocket: null,
        targets: lab.nodes.map((n) => ({ node: n.name, host: n.ip, port: 22, user: 'root', identityFile: lab.identityFile })),
      });
      pool = sshPool;
      p = createCarbonioPort((node) => sshPool.remote(node), { setupTimeoutMs: 120_000 });
    }
    return p;
  };
  const server = (): LabNode => h.lab.nodes.find((n) => n.kind === 'server') as LabNode;
  const agent = (): LabNode => h.lab.nodes.find((n) => n.kind === 'agent') as LabNode;

  it('detects the legacy profile and lists servers with zmprov', async () => {
    for (const n of h.lab.nodes) {
      expect((await port().inspect(n.name)).profile).toBe('legacy');
      expect(await port().meshServers(n.name, 'legacy')).toEqual([server().name]);
    }
    const members = await port().members(agent().name, new Secret(h.secret));
    expect(members.map((m) => m.type).sort()).toEqual(['client', 'server']);
  });

  it('the seed-002 procedure through the port keeps main.json and ends with both nodes alive members', async () => {
    const leader = server();
    const follower = agent();
    const reading = await port().readResetIndex(leader.name);
    if (reading.kind !== 'index') throw new Error(`expected a reset index, got ${JSON.stringify(reading)}`);
    await port().writeResetFile(leader.name, reading.index);
    await port().stopService(leader.name);
    await port().wipe(leader.name, 'legacy');
    expect(await port().probeWipe(leader.name, 'legacy')).toBe(true);
    expect((await port().probeSetup(leader.name)).hasMainJson).toBe(true);
    await port().setupLeader(leader.name, leader.ip, newSecret);
    expect((await port().readMeshSecret(leader.name))?.equals(newSecret)).toBe(true);

    const creds = await port().readCredentials(leader.name);
    if (creds === null) throw new Error('no credentials on the leader');
    await port().writeCredentials(follower.name, creds.bytes, creds.sha256);
    await port().stopService(follower.name);
    await port().wipe(follower.name, 'legacy');
    await port().setupFollower(follower.name, follower.ip, newSecret, 'agent');

    const members = await port().members(leader.name, newSecret);
    expect(members.find((m) => m.address.startsWith(`${leader.ip}:`))).toMatchObject({ status: 'alive', type: 'server' });
    expect(members.find((m) => m.address.startsWith(`${follower.ip}:`))).toMatchObject({ status: 'alive', type: 'client' });
    expect(await port().credentialsSha256(follower.name)).toBe(creds.sha256);
  });

  // Cleanup, not a test: it asserts nothing, so it is not one.
  afterAll(async () => {
    await port().close();
    await pool?.closeAll();
  });
});
