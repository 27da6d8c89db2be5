/**
 * The cluster lock and the run mirror against the fake cluster: every remote effect finds its intent already in
 * the mirror (never an effect ahead), a run whose database is lost is imported from the mirror into a fresh file
 * and resumed to a healthy mesh, a second run is refused on the lock naming the first, and the mirror's checksum
 * and sequence catch damage and order copies.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClusterLock, parseHolder } from '../../machines/cluster-lock.js';
import { abortOnCluster, clusterRun } from '../../machines/cluster-run.js';
import { abortRun } from '../../machines/runner.js';
import { decodeMirror, EFFECTS, KICK_DELAY_MS, MirrorWriter, mirrorTargets, type ParsedMirror } from '../../machines/mirror.js';
import type { NodePort } from '../../machines/port.js';
import { importMirror } from '../../store/import.js';
import { openStore } from '../../store/store.js';
import { healthy } from '../sim/fake-cluster.js';
import { harness, type Harness } from '../support/machine-harness.js';

let h: Harness | undefined;
afterEach(() => h?.cleanup());

/** The port with a record of each mirror written and, at each effect, whether the last mirror held an open intent on that node. */
function watched(port: NodePort): { port: NodePort; mirrors: ParsedMirror[]; effectsAhead: string[]; effects: number } {
  const seen = { mirrors: [] as ParsedMirror[], effectsAhead: [] as string[], effects: 0 };
  const out = { ...port } as Record<string, unknown>;
  out['mirrorWrite'] = async (node: string, runId: string, text: string, token: string) => {
    const d = decodeMirror(text);
    if (!('invalid' in d)) seen.mirrors.push(d);
    return port.mirrorWrite(node, runId, text, token);
  };
  for (const m of EFFECTS) {
    out[m] = async (node: string, ...rest: unknown[]) => {
      seen.effects++;
      const last = seen.mirrors[seen.mirrors.length - 1];
      if (!last?.body.journal.some((r) => r.node === node && r.outcome === null)) seen.effectsAhead.push(`${m} on ${node}`);
      return (port[m] as (...a: unknown[]) => Promise<unknown>)(node, ...rest);
    };
  }
  return Object.assign(seen, { port: out as unknown as NodePort });
}

describe('cluster lock and run mirror (fake cluster)', () => {
  it("a port bound to an actor's abort signal stays gated: its effects, too, wait for the mirror", async () => {
    h = harness({ servers: 1, agents: 2 });
    const w = watched(h.cluster.port);
    // As the SSH port does, withSignal hands out another port for the actor's commands.
    const signalled: NodePort = { ...w.port, withSignal: () => w.port };
    const store = h.open();
    const cr = clusterRun({ port: signalled, store });
    const r = await h.start({ store, port: cr.port, cluster: cr.guard });
    expect(r.state).toBe('done');
    expect(w.effects).toBeGreaterThan(10);
    expect(w.effectsAhead).toEqual([]);
  });

  it('every effect waits until the mirror holds its intent; the mirror is on the leader and two more nodes', async () => {
    h = harness({ servers: 2, agents: 2 });
    const w = watched(h.cluster.port);
    const store = h.open();
    const cr = clusterRun({ port: w.port, store });
    const r = await h.start({ store, port: cr.port, cluster: cr.guard });
    expect(r.state).toBe('done');
    expect(healthy(h.cluster, h.secret).ok).toBe(true);
    expect(w.effects).toBeGreaterThan(10);
    expect(w.effectsAhead).toEqual([]);
    const leader = r.context.leader as string;
    const holders = h.cluster.nodes.filter((n) => h?.cluster.node(n).exists('/var/lib/regen/runs/run-1.json'));
    expect(holders).toContain(leader);
    expect(holders.length).toBe(3);
    // The final mirror is the database's last state: the run done, every journal row closed.
    const last = decodeMirror(h.cluster.node(leader).read('/var/lib/regen/runs/run-1.json') as string) as ParsedMirror;
    expect(last.body.run.status).toBe('done');
    expect(last.body.journal.every((j) => j.outcome !== null)).toBe(true);
    // The lock is released on every node at the end.
    for (const n of h.cluster.nodes) expect(h.cluster.node(n).exists('/var/lib/regen/lock/token')).toBe(false);
  });

  it('a database lost after the leader wipe: the mirror imported into a fresh file resumes to a healthy mesh', async () => {
    h = harness({ servers: 1, agents: 3 });
    const store = h.open();
    const cr = clusterRun({ port: h.cluster.port, store });
    let stopNow = false;
    const r1 = await h.start({
      store,
      port: cr.port,
      cluster: cr.guard,
      journalHooks: { afterWrite: (what, row) => void (what === 'outcome' && row.step === 'leader.wipe' && (stopNow = true)) },
      shouldStop: () => stopNow,
    });
    expect(r1.state).not.toBe('done');
    const leader = r1.context.leader as string;
    const mirror = decodeMirror(h.cluster.node(leader).read('/var/lib/regen/runs/run-1.json') as string) as ParsedMirror;
    expect(mirror.body.journal.some((j) => j.step === 'leader.wipe' && j.outcome === 'done')).toBe(true);

    // The backups manifest is not on the wire: it is rebuilt from the journal's backup rows, equal to the database's.
    expect(JSON.parse(mirror.envelope.body)).not.toHaveProperty('backups');
    expect(store.listBackups('run-1').length).toBeGreaterThan(0);
    expect(mirror.body.backups).toEqual(store.listBackups('run-1'));

    const fresh = openStore(`${h.dir}/fresh.db`);
    try {
      expect(importMirror(fresh, mirror.body, mirror.envelope.seq)).toMatchObject({ imported: true, replaced: false });
      expect(fresh.listBackups('run-1')).toEqual(store.listBackups('run-1'));
      // Importing the same mirror again changes nothing: the local record is as new.
      expect(importMirror(fresh, mirror.body, mirror.envelope.seq)).toMatchObject({ imported: false });
      const cr2 = clusterRun({ port: h.cluster.port, store: fresh });
      const r2 = await h.resume('run-1', { store: fresh, port: cr2.port, cluster: cr2.guard });
      expect(r2.state).toBe('done');
      expect(healthy(h.cluster, h.secret).ok).toBe(true);
      // The wipe done before the loss was not applied a second time.
      expect(h.cluster.effects.count(leader, 'wipe')).toBe(1);
    } finally {
      fresh.close();
    }
  });

  it('regen abort -i: the mirror says aborted with a higher seq, an import of it is not resumed, the lock is released', async () => {
    h = harness({ servers: 1, agents: 2 });
    const store = h.open();
    const cr = clusterRun({ port: h.cluster.port, store });
    let stopNow = false;
    const r1 = await h.start({
      store,
      port: cr.port,
      cluster: cr.guard,
      journalHooks: { afterWrite: (what, row) => void (what === 'outcome' && row.step === 'leader.stop' && (stopNow = true)) },
      shouldStop: () => stopNow,
    });
    const leader = r1.context.leader as string;
    const file = '/var/lib/regen/runs/run-1.json';
    const before = decodeMirror(h.cluster.node(leader).read(file) as string) as ParsedMirror;
    expect(before.body.run.status).not.toBe('aborted');
    abortRun(store, 'run-1');
    await abortOnCluster({ port: h.cluster.port, store, runId: 'run-1', inventory: h.inventory });
    const after = decodeMirror(h.cluster.node(leader).read(file) as string) as ParsedMirror;
    expect(after.body.run.status).toBe('aborted');
    expect(after.envelope.seq).toBeGreaterThan(before.envelope.seq);
    // Every node holds the aborted record, so no older copy anywhere still says unfinished.
    for (const n of h.cluster.nodes) expect((decodeMirror(h.cluster.node(n).read(file) as string) as ParsedMirror).body.run.status, n).toBe('aborted');
    for (const n of h.cluster.nodes) expect(h.cluster.node(n).exists('/var/lib/regen/lock/token')).toBe(false);
    // Another machine imports the newest mirror and is told there is nothing to resume.
    const elsewhere = openStore(`${h.dir}/elsewhere.db`);
    try {
      expect(importMirror(elsewhere, after.body, after.envelope.seq)).toMatchObject({ imported: true });
      await expect(h.resume('run-1', { store: elsewhere })).rejects.toThrow(/run-1 is aborted; there is nothing to resume/);
    } finally {
      elsewhere.close();
    }
    // Another run's lock is never taken over by an abort.
    const other = new ClusterLock(h.cluster.port, [...h.cluster.nodes]);
    await other.acquire('run-2', 'lab', { takeOver: false, heartbeatMs: 60_000 });
    await expect(abortOnCluster({ port: h.cluster.port, store, runId: 'run-1', inventory: h.inventory })).rejects.toThrow(/locked by run run-2/);
    await other.release();
  });

  it('a second run is refused on the first node of the order, naming the holder; the same run takes it over', async () => {
    h = harness({ servers: 1, agents: 2 });
    const nodes = [...h.cluster.nodes];
    const a = new ClusterLock(h.cluster.port, nodes);
    await a.acquire('run-a', 'lab', { takeOver: false, heartbeatMs: 60_000 });
    const b = new ClusterLock(h.cluster.port, nodes);
    await expect(b.acquire('run-b', 'lab', { takeOver: true, heartbeatMs: 60_000 })).rejects.toThrow(/locked by run run-a .*last heartbeat/);
    // Nothing of b is left anywhere.
    for (const n of nodes) expect(parseHolder(h.cluster.node(n).read('/var/lib/regen/lock/holder'))?.runId).toBe('run-a');
    const again = new ClusterLock(h.cluster.port, nodes);
    await again.acquire('run-a', 'lab', { takeOver: true, heartbeatMs: 60_000 });
    for (const n of nodes) expect(parseHolder(h.cluster.node(n).read('/var/lib/regen/lock/holder'))?.token).toBe(again.token);
    // The old process has lost it: its mirror write is refused.
    expect(await h.cluster.port.mirrorWrite(nodes[0] as string, 'run-a', '{}', a.token)).toBe('lock-lost');
    await again.release();
    await a.release();
    for (const n of nodes) expect(h.cluster.node(n).exists('/var/lib/regen/lock/token')).toBe(false);
  });

  it('a release waits for the heartbeat in flight: the two never cross on a node, and the lock is gone after', async () => {
    const hh = harness({ servers: 1, agents: 1 });
    h = hh;
    const nodes = [...hh.cluster.nodes];
    const calls: string[] = [];
    const held: Array<() => void> = [];
    const gate = { started: (): void => undefined };
    const beatStarted = new Promise<void>((resolve) => (gate.started = resolve));
    const port: NodePort = {
      ...hh.cluster.port,
      lockUpdate: async (node, expect, t, holder) => {
        calls.push(`update ${node} start`);
        gate.started();
        await new Promise<void>((go) => held.push(go));
        const r = await hh.cluster.port.lockUpdate(node, expect, t, holder);
        calls.push(`update ${node} end`);
        return r;
      },
      lockRemove: async (node, expect) => {
        calls.push(`remove ${node}`);
        return hh.cluster.port.lockRemove(node, expect);
      },
    };
    const lock = new ClusterLock(port, nodes);
    await lock.acquire('run-a', 'lab', { takeOver: false, heartbeatMs: 5 });
    await beatStarted;
    const released = lock.release();
    await new Promise((r) => setTimeout(r, 30));
    // While the heartbeat is held open, nothing was removed.
    expect(calls.filter((c) => c.startsWith('remove'))).toEqual([]);
    for (const go of held) go();
    await released;
    const firstRemove = calls.findIndex((c) => c.startsWith('remove'));
    expect(firstRemove).toBeGreaterThan(calls.map((c) => c.endsWith(' end')).lastIndexOf(true));
    for (const n of nodes) expect(hh.cluster.node(n).exists('/var/lib/regen/lock/token')).toBe(false);
  });

  it("a transition's write waits for an effect to carry it, and a second transition writes at once", async () => {
    const store = openStore(':memory:');
    vi.useFakeTimers();
    try {
      store.createRun({ id: 'r', cluster: 'c', machineVersion: '1', inventoryJson: '{}', optionsJson: '{}' });
      store.upsertNode({ runId: 'r', name: 'n1', sshHost: 'n1', role: null, kind: null, profile: null, address: null, bindAddress: null, fqdn: null });
      const writes: number[] = [];
      const mirrorWrite = async (_n: string, _r: string, text: string): Promise<'written'> => {
        writes.push((decodeMirror(text) as ParsedMirror).envelope.seq);
        return 'written';
      };
      const port = { mirrorWrite } as unknown as NodePort;
      const w = new MirrorWriter({ port, store, runId: 'r', lock: new ClusterLock(port, ['n1']) });
      const transition = (n: number): void => void store.appendTransition({ runId: 'r', at: n, fromState: null, event: `e${n}`, toState: `s${n}`, snapshot: '{}', machineVersion: '1' });
      // One transition, then an effect before the delay: one write, the effect's.
      transition(1);
      w.kick();
      await vi.advanceTimersByTimeAsync(KICK_DELAY_MS / 2);
      expect(writes).toEqual([]);
      await w.beforeEffect();
      expect(writes).toEqual([1]);
      await vi.advanceTimersByTimeAsync(KICK_DELAY_MS * 2);
      expect(writes).toEqual([1]);
      // A transition with no effect after it is written once the delay is over.
      transition(2);
      w.kick();
      await vi.advanceTimersByTimeAsync(KICK_DELAY_MS + 1);
      expect(writes).toEqual([1, 2]);
      // Two transitions in a row: the second does not wait, so the mirror never lags two behind.
      transition(3);
      w.kick();
      transition(4);
      w.kick();
      await vi.advanceTimersByTimeAsync(0);
      expect(writes).toEqual([1, 2, 4]);
    } finally {
      vi.useRealTimers();
      store.close();
    }
  });

  it('a damaged mirror is refused by its checksum; targets are the leader, the other servers, then followers', () => {
    const text = JSON.stringify({ format: 'regen-mirror', version: 1, runId: 'r', cluster: 'c', seq: 1, writtenAt: 0, writer: 'x', sha256: '0'.repeat(64), body: '{}' });
    expect(decodeMirror(text)).toEqual({ invalid: 'checksum mismatch' });
    expect(decodeMirror(text.slice(0, 40))).toEqual({ invalid: 'not JSON (truncated or damaged)' });
    const nodes = [
      { name: 'a1', kind: 'agent' },
      { name: 's1', kind: 'server' },
      { name: 'a2', kind: 'agent' },
      { name: 's2', kind: 'server' },
    ];
    expect(mirrorTargets(nodes, 's2')).toEqual(['s2', 's1', 'a1']);
    expect(mirrorTargets(nodes.slice(0, 2), 's1')).toEqual(['s1', 'a1']);
    expect(mirrorTargets(nodes, null)).toEqual(['a1', 's1', 'a2']);
  });
});
