/**
 * The ambiguities a human settles, divergence, the recovery cap, and the secret's absence from the database.
 */
import { readFileSync, existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { Secret } from '../../adapters/secrets/secret.js';
import { DivergenceError } from '../../machines/errors.js';
import { healthy } from '../sim/fake-cluster.js';
import { harness, Process, type Harness } from '../support/machine-harness.js';

let h: Harness | undefined;
afterEach(() => {
  h?.cleanup();
  h = undefined;
});

describe('needs-operator and refusals', () => {
  it('a cluster that was never bootstrapped: stops before any wipe, token kept on the node only', async () => {
    h = harness({ servers: 1, agents: 1, neverBootstrapped: true });
    const r = await h.start();
    expect(r.state).toBe('needsOperator');
    expect(r.error?.message).toMatch(/never been bootstrapped/);
    expect(r.error?.message).toMatch(/\/root\//);
    for (const n of h.cluster.nodes) {
      expect(h.cluster.effects.count(n, 'wipe')).toBe(0);
      expect(h.cluster.effects.count(n, 'stopService')).toBe(0);
    }
    // Backups were taken (the first change), nothing else.
    expect(h.cluster.effects.total('backup')).toBe(2);
  });

  it('the mesh leader is not in the inventory: needs the operator, nothing changed', async () => {
    h = harness({ servers: 1, agents: 2 });
    const leader = h.cluster.leader();
    h.inventory.nodes = h.inventory.nodes.filter((n) => n.name !== leader);
    const r = await h.start();
    expect(r.state).toBe('needsOperator');
    expect(r.error?.message).toMatch(/not in the inventory|not the address of any inventory node/);
    expect(h.cluster.effects.log).toEqual([]);
  });

  it('--leader naming an agent is refused before anything changes', async () => {
    h = harness({ servers: 1, agents: 2, runOptions: { leader: 'mail3.example.com' } });
    const r = await h.start();
    expect(r.state).toBe('needsOperator');
    expect(r.error?.message).toMatch(/not a mesh server/);
    expect(h.cluster.effects.log).toEqual([]);
  });

  it('the operator declines the confirmation: aborted, nothing changed', async () => {
    h = harness({ servers: 1, agents: 1 });
    const r = await h.start({ confirm: async () => false });
    expect(r.state).toBe('aborted');
    expect(h.cluster.effects.log).toEqual([]);
  });

  /** Run until the machine enters `state`, then kill the process there (nothing more is written or sent). */
  async function crashAt(hh: Harness, state: string): Promise<void> {
    const store = hh.open();
    const p = new Process(store, hh.cluster.port);
    await expect(
      hh.start({
        store: p.storeView(),
        port: p.portView(),
        afterTransition: (_seq, s) => {
          if (s === state) p.crash();
        },
      }),
    ).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 5));
    store.close();
  }

  it('a wrong secret on resume stops before any follower is touched; the right one finishes', async () => {
    h = harness({ servers: 1, agents: 2 });
    await crashAt(h, 'followers');
    const wrong = await h.resume('run-1', { secret: new Secret('not-the-secret', 'mesh secret') });
    expect(wrong.state).toBe('failed');
    expect(wrong.error?.message).toMatch(/does not decrypt/);
    for (const n of h.cluster.agents) expect(h.cluster.effects.count(n, 'stopService')).toBe(0);
    const right = await h.resume('run-1', { secret: h.secret });
    expect(right.state).toBe('done');
    expect(healthy(h.cluster, h.secret).ok).toBe(true);
  });

  it('resume without a secret after the leader setup reads it back from the leader', async () => {
    h = harness({ servers: 1, agents: 2 });
    await crashAt(h, 'followers');
    const r = await h.resume('run-1', { secret: null });
    expect(r.state).toBe('done');
    expect(healthy(h.cluster, h.secret).ok).toBe(true);
  });

  it('resume without a secret before the leader setup needs the operator to give it', async () => {
    h = harness({ servers: 1, agents: 1 });
    await crashAt(h, 'leader.setup');
    const r = await h.resume('run-1', { secret: null });
    expect(r.state).toBe('needsOperator');
    expect(r.error?.hint).toMatch(/--password-file/);
    const done = await h.resume('run-1', { secret: h.secret });
    expect(done.state).toBe('done');
  });

  it('a run recorded by another version of the procedure is not resumed (divergence)', async () => {
    h = harness({ servers: 1, agents: 0 });
    h.cluster.faults.failNext(h.cluster.nodes[0]!, 'stopService', 'boom');
    const r = await h.start({ runOptions: undefined } as never);
    expect(r.state).toBe('failed');
    const db = new Database(h.dbPath);
    db.prepare("UPDATE runs SET machine_version = 'recovery/0-old' WHERE id = 'run-1'").run();
    db.close();
    await expect(h.resume('run-1')).rejects.toBeInstanceOf(DivergenceError);
  });

  it('a journal naming a step this code does not have is a divergence', async () => {
    h = harness({ servers: 1, agents: 0 });
    h.cluster.faults.failNext(h.cluster.nodes[0]!, 'stopService', 'boom');
    await h.start();
    const s = h.open();
    const id = s.beginStep({ runId: 'run-1', step: 'leader.defragment', node: h.cluster.nodes[0]!, attempt: 1 });
    s.endStep(id, 'done');
    await expect(h.resume('run-1')).rejects.toThrow(/leader.defragment/);
  });

  it('recovery attempts are capped', async () => {
    h = harness({ servers: 1, agents: 0 });
    const n = h.cluster.nodes[0]!;
    h.cluster.faults.failNext(n, 'stopService', 'still broken', { times: 10 });
    expect((await h.start()).state).toBe('failed');
    expect((await h.resume('run-1', { maxRecoveries: 2 })).state).toBe('failed');
    expect((await h.resume('run-1', { maxRecoveries: 2 })).state).toBe('failed');
    await expect(h.resume('run-1', { maxRecoveries: 2 })).rejects.toThrow(/resumed 2 times \(cap 2\)/);
  });
});

describe('secret hygiene in the database', () => {
  it('the secret given to start never appears in the database file or its WAL, after a full and a resumed run', async () => {
    h = harness({ servers: 1, agents: 3, newSecret: 'Sup3r-Secret-Mesh-Value-42' });
    h.cluster.faults.failNext('mail3.example.com', 'setupFollower', 'transient', { times: 3 });
    const r = await h.start();
    expect(r.state).toBe('failed');
    const resumed = await h.resume('run-1');
    expect(resumed.state).toBe('done');
    const needles = ['Sup3r-Secret-Mesh-Value-42', Buffer.from('Sup3r-Secret-Mesh-Value-42').toString('base64')];
    // Tokens and the gossip key of the new credentials are secrets too.
    const leader = h.cluster.node(h.cluster.leader()!);
    const tokens = h.cluster.state.tokens.map((t) => t.secretId);
    expect(tokens.length).toBeGreaterThan(0);
    const gossipKey = (JSON.parse(leader.read('/etc/zextras/service-discover/main.json') ?? '{}') as { encrypt?: string }).encrypt;
    expect(gossipKey).toBeTruthy();
    needles.push(...tokens, gossipKey as string);
    expect(leader.read('/var/lib/service-discover/password')).toBe('Sup3r-Secret-Mesh-Value-42');
    const files = [h.dbPath, `${h.dbPath}-wal`].filter((f) => existsSync(f));
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    for (const n of needles) expect(bytes.includes(Buffer.from(n)), `${n.slice(0, 4)}… in ${files.join(', ')}`).toBe(false);
    // The search can see what it looks for: the run itself is in the files.
    expect(bytes.includes(Buffer.from('mail3.example.com'))).toBe(true);
  });
});
