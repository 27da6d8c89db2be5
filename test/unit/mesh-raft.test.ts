/**
 * Several mesh servers against the raft model: the seeds' strategy (peers.json on the leader alone, the other
 * servers left running with their raft data) ends with two leaders and a lost bootstrap token; regen's strategy
 * (every other server stopped after its backup, its data/raft moved aside) ends with one leader and every node back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Secret } from '../../adapters/secrets/secret.js';
import { createFakeCluster, healthy, type FakeCluster } from '../sim/fake-cluster.js';
import { catalogNodes, raftLeaders, raftConfiguration, ApiError } from '../sim/model.js';
import { leaderSecrets } from '../sim/proof.js';
import { readKeyring } from '../sim/serf.js';
import { harness, type Harness } from '../support/machine-harness.js';

const S1 = 'mail1.example.com';
const S2 = 'mail2.example.com';
const S3 = 'mail3.example.com';
const RUN = 'run-raft';

/** A clock the test moves: the old servers keep running (and writing coordinate batches) while time passes. */
function clock(): { now: () => Date; pass: (ms: number) => void } {
  let at = Date.parse('2026-03-01T10:00:00Z');
  return { now: () => new Date(at), pass: (ms) => (at += ms) };
}

function addressOf(c: FakeCluster, n: string): string {
  return c.world.nodes().find((x) => x.name === n)?.interfaces.find((i) => i.name !== 'lo')?.address ?? '';
}

/** Minutes of the leader's phase, in 30 s slices (each slice the running leaders write their batches). */
function passMinutes(c: FakeCluster, t: ReturnType<typeof clock>, minutes: number): void {
  for (let i = 0; i < minutes * 2; i++) {
    t.pass(30_000);
    raftLeaders(c.world);
  }
}

async function leaderPhase(c: FakeCluster, t: ReturnType<typeof clock>, secret: Secret, isolate = async (): Promise<void> => {}): Promise<void> {
  for (const n of c.nodes) await c.port.backup(n, RUN);
  const r = await c.port.readResetIndex(S1);
  if (r.kind !== 'index') throw new Error('index expected');
  await c.port.writeResetFile(S1, r.index);
  await c.port.stopService(S1);
  await c.port.wipe(S1, 'current');
  await isolate();
  await c.port.writeRaftRecovery(S1, addressOf(c, S1));
  passMinutes(c, t, 3);
  await c.port.setupLeader(S1, addressOf(c, S1), secret);
}

async function follower(c: FakeCluster, n: string, secret: Secret, kind: 'server' | 'agent'): Promise<void> {
  const creds = await c.port.readCredentials(S1);
  if (creds === null) throw new Error('no credentials on the leader');
  await c.port.writeCredentials(n, creds.bytes, creds.sha256);
  await c.port.stopService(n);
  await c.port.wipe(n, 'current');
  await c.port.setupFollower(n, addressOf(c, n), secret, kind);
}

describe('several mesh servers against the raft model', () => {
  it('the seeds: two leaders while the leader recovers alone, then the old log wins and the new token is lost', async () => {
    const t = clock();
    const c = createFakeCluster({ servers: 3, agents: 2, seed: 'split', clock: t.now });
    const secret = new Secret('new-secret-split');
    await leaderPhase(c, t, secret);
    // The two servers left running elected their own leader with the old CA: two clusters at once.
    expect(raftLeaders(c.world)).toEqual([S1, S2]);
    const fresh = leaderSecrets(c.world, S1);
    if (fresh === null) throw new Error('no new credentials');
    expect(catalogNodes(c.world, S1, fresh.token).length).toBeGreaterThan(0);

    await follower(c, S2, secret, 'server');
    passMinutes(c, t, 1);
    // S3 comes back with its old raft data: a higher term and the old cluster's longer log. It wins the election
    // and its log replaces the leader's, new bootstrap token included, so its own setup is refused.
    await expect(follower(c, S3, secret, 'server')).rejects.toThrow('ACL not found');
    expect(raftLeaders(c.world)).toEqual([S3]);
    let lost: unknown = null;
    try {
      catalogNodes(c.world, S1, fresh.token);
    } catch (e) {
      lost = e;
    }
    expect(lost).toBeInstanceOf(ApiError);
    expect((lost as ApiError).message).toBe('ACL not found');
    expect(healthy(c, secret).ok).toBe(false);
  });

  it("regen's order: the other servers stopped and their raft set aside first, then one leader and every node back", async () => {
    const t = clock();
    const c = createFakeCluster({ servers: 3, agents: 2, seed: 'split', clock: t.now });
    const secret = new Secret('new-secret-split');
    await leaderPhase(c, t, secret, async () => {
      for (const s of [S2, S3]) await c.port.stopService(s);
      for (const s of [S2, S3]) await c.port.moveRaftAside(s, RUN);
      for (const s of [S2, S3]) expect(await c.port.probeRaftAside(s, RUN)).toBe('aside');
    });
    expect(raftLeaders(c.world)).toEqual([S1]);
    for (const s of [S2, S3]) {
      await follower(c, s, secret, 'server');
      passMinutes(c, t, 1);
    }
    for (const a of c.agents) await follower(c, a, secret, 'agent');
    expect(healthy(c, secret)).toEqual({ ok: true, leader: S1, problems: [] });
    const fresh = leaderSecrets(c.world, S1);
    if (fresh === null) throw new Error('no new credentials');
    const peers = raftConfiguration(c.world, S3, fresh.token);
    expect(peers.map((p) => [p.Address, p.Voter, p.Leader])).toEqual([
      [`${addressOf(c, S1)}:8300`, true, true],
      [`${addressOf(c, S2)}:8300`, true, false],
      [`${addressOf(c, S3)}:8300`, true, false],
    ]);
    for (const n of c.nodes) expect(readKeyring(c.node(n).fs)).toEqual([fresh.gossipKey]);
  });

  it('a kept keyring wins over the new encrypt key: without the keyring wipe nobody gossips with the new key', async () => {
    const c = createFakeCluster({ servers: 1, agents: 1, seed: 'keyring' });
    const before = readKeyring(c.node(S1).fs);
    const secret = new Secret('new-secret-keyring');
    const port = c.port;
    const r = await port.readResetIndex(S1);
    if (r.kind !== 'index') throw new Error('index expected');
    await port.writeResetFile(S1, r.index);
    await port.stopService(S1);
    // The seeds' wipe: config.json, main.json and the certificates, no keyring.
    for (const f of ['/etc/zextras/service-discover/config.json', '/etc/zextras/service-discover/main.json']) c.node(S1).fs.remove(f);
    for (const f of c.node(S1).fs.list('/var/lib/service-discover')) if (f.endsWith('.pem')) c.node(S1).fs.remove(`/var/lib/service-discover/${f}`);
    await port.setupLeader(S1, addressOf(c, S1), secret);
    const fresh = leaderSecrets(c.world, S1);
    expect(fresh).not.toBeNull();
    expect(readKeyring(c.node(S1).fs)).toEqual(before);
    expect(before).not.toContain(fresh?.gossipKey);
    expect(healthy(c, secret).problems).toContain(`${S1}: its keyring is not exactly the new key (1 keys)`);
  });
});

let h: Harness | undefined;
afterEach(() => h?.cleanup());

describe('the recovery machine with several servers, time passing as it works', () => {
  it('stops the other servers and sets their raft aside before the leader restarts; ends with one leader', async () => {
    let at = Date.parse('2026-03-01T10:00:00Z');
    // Every read of the clock is a second of work: the old servers would write batches all along.
    h = harness({ servers: 3, agents: 2, parallel: 2, seed: 'machine-split', clock: () => new Date((at += 1000)) });
    const r = await h.start();
    expect(r.error).toBeNull();
    expect(r.state).toBe('done');
    expect(healthy(h.cluster, h.secret)).toMatchObject({ ok: true, leader: S1 });
    const calls = h.cluster.calls.map((x) => `${x.method} ${x.node}`);
    const leaderStart = calls.indexOf(`setupLeader ${S1}`);
    for (const s of [S2, S3]) {
      expect(calls.indexOf(`stopService ${s}`)).toBeLessThan(leaderStart);
      expect(calls.indexOf(`moveRaftAside ${s}`)).toBeLessThan(leaderStart);
      expect(calls.indexOf(`backup ${s}`)).toBeLessThan(calls.indexOf(`stopService ${s}`));
    }
  });
});
