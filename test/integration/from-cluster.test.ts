/**
 * `regen resume --from-cluster` through the command functions with the fake cluster: the run's process dies during
 * the followers and its database is replaced by a fresh one holding an older record of the run; one node holds an
 * older (valid) copy of the mirror. The newest mirror wins over the older local record, the disagreement is
 * reported, and the run ends with a healthy mesh.
 */
import { describe, expect, it } from 'vitest';
import { start } from '../../cli/commands/start.js';
import { resume } from '../../cli/commands/resume.js';
import { EXIT } from '../../cli/exit-codes.js';
import { decodeMirror, type ParsedMirror } from '../../machines/mirror.js';
import type { NodePort } from '../../machines/port.js';
import { importMirror } from '../../store/import.js';
import { openStore } from '../../store/store.js';
import { healthy } from '../sim/fake-cluster.js';
import { FAST, Process } from '../support/machine-harness.js';
import { useClusterDir } from '../support/cluster-dir.js';
import { fakeIo } from '../support/fake-io.js';

const SECRET = 'from-cluster-mesh-secret-4321';
const fx = useClusterDir({ prefix: 'regen-from-cluster-', cluster: { servers: 2, agents: 2 } });

describe('regen resume --from-cluster', () => {
  it('the newest mirror wins over an older local record and an older copy; the disagreement is reported', async () => {
    const lost = openStore(fx.path('lost.db'));
    const proc = new Process(lost, fx.cluster.port);
    const written: ParsedMirror[] = [];
    const spy = (p: NodePort): NodePort => ({
      ...p,
      mirrorWrite: async (node, runId, text, token) => {
        const d = decodeMirror(text);
        if (!('invalid' in d)) written.push(d);
        return p.mirrorWrite(node, runId, text, token);
      },
    });
    const crashing = start(
      fx.startOptions({
        db: fx.path('lost.db'),
        parallel: 1,
        makePort: async () => spy(proc.portView()),
        runDeps: { ...FAST, journalHooks: { afterWrite: (what, row) => void (what === 'intent' && row.step === 'follower.setup' && proc.crash()) } },
        runId: 'run-lost',
        store: proc.storeView(),
      }),
      fakeIo({ REGEN_MESH_PASSWORD: SECRET }),
    );
    await expect(crashing).rejects.toThrow();
    lost.close();

    const newest = written[written.length - 1] as ParsedMirror;
    const older = written.find((m) => m.body.journal.some((j) => j.step === 'leader.setup' && j.outcome === 'done')) as ParsedMirror;
    expect(older.envelope.seq).toBeLessThan(newest.envelope.seq);
    // Another machine's database knows the run only up to the older mirror; one node holds that older copy too.
    const fresh = openStore(fx.path('fresh.db'));
    importMirror(fresh, older.body, older.envelope.seq);
    fresh.close();
    const leader = newest.body.run.leader as string;
    const other = fx.cluster.nodes.find((n) => n !== leader && fx.cluster.node(n).exists('/var/lib/regen/runs/run-lost.json')) as string;
    fx.cluster.node(other).fs.write('/var/lib/regen/runs/run-lost.json', JSON.stringify({ ...older.envelope }), { owner: 'root', group: 'root', mode: 0o600 });

    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    const code = await resume(fx.resumeOptions({ db: fx.path('fresh.db'), fromCluster: { inventory: fx.path('inventory.yaml') } }), io);
    expect(code, io.stderrText()).toBe(EXIT.ok);
    expect(io.stderrText()).toContain(`${other} seq ${older.envelope.seq}`);
    expect(io.stderrText()).toMatch(new RegExp(`disagree .*using seq ${newest.envelope.seq}`));
    expect(io.stderrText()).toContain(`newer than the local record at seq ${older.envelope.seq}`);
    expect(healthy(fx.cluster, SECRET).ok).toBe(true);
    // Exactly one setup of the leader: the one recorded before the loss was not repeated.
    expect(fx.cluster.effects.count(leader, 'setupLeader')).toBe(1);
  });
});
