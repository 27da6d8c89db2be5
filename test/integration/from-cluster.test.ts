/**
 * `regen resume --from-cluster` through the command functions with the fake cluster: the run's process dies during
 * the followers and its database is replaced by a fresh one holding an older record of the run; one node holds an
 * older (valid) copy of the mirror. The newest mirror wins over the older local record, the disagreement is
 * reported, and the run ends with a healthy mesh.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { start } from '../../cli/commands/start.js';
import { resume } from '../../cli/commands/resume.js';
import { EXIT } from '../../cli/exit-codes.js';
import { decodeMirror, type ParsedMirror } from '../../machines/mirror.js';
import type { NodePort } from '../../machines/port.js';
import { importMirror } from '../../store/import.js';
import { openStore } from '../../store/store.js';
import { createFakeCluster, healthy, type FakeCluster } from '../sim/fake-cluster.js';
import { FAST, Process } from '../support/machine-harness.js';
import { fakeIo } from '../support/fake-io.js';


const SECRET = 'from-cluster-mesh-secret-4321';
const CONNECT = { sshConfig: undefined, knownHosts: undefined, acceptNewHostKeys: false, connectTimeoutS: 5, commandTimeoutS: 60 };
let dir: string;
let cluster: FakeCluster;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'regen-from-cluster-'));
  cluster = createFakeCluster({ servers: 2, agents: 2 });
  writeFileSync(join(dir, 'inventory.yaml'), `${['cluster: testmesh', 'nodes:', ...cluster.nodes.map((n) => `  - name: ${n}`)].join('\n')}\n`);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('regen resume --from-cluster', () => {
  it('the newest mirror wins over an older local record and an older copy; the disagreement is reported', async () => {
    const lost = openStore(join(dir, 'lost.db'));
    const proc = new Process(lost, cluster.port);
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
      {
        db: join(dir, 'lost.db'),
        json: false,
        inventory: join(dir, 'inventory.yaml'),
        inventoryFormat: 'auto',
        cluster: undefined,
        leader: undefined,
        yes: true,
        parallel: 1,
        dryRun: false,
        revokeOldTokens: false,
        maxUnitRounds: 3,
        passwordFile: undefined,
        generatePassword: false,
        ...CONNECT,
        makePort: async () => spy(proc.portView()),
        runDeps: { ...FAST, journalHooks: { afterWrite: (what, row) => void (what === 'intent' && row.step === 'follower.setup' && proc.crash()) } },
        runId: 'run-lost',
        store: proc.storeView(),
      },
      fakeIo({ REGEN_MESH_PASSWORD: SECRET }),
    );
    await expect(crashing).rejects.toThrow();
    lost.close();

    const newest = written[written.length - 1] as ParsedMirror;
    const older = written.find((m) => m.body.journal.some((j) => j.step === 'leader.setup' && j.outcome === 'done')) as ParsedMirror;
    expect(older.envelope.seq).toBeLessThan(newest.envelope.seq);
    // Another machine's database knows the run only up to the older mirror; one node holds that older copy too.
    const fresh = openStore(join(dir, 'fresh.db'));
    importMirror(fresh, older.body, older.envelope.seq);
    fresh.close();
    const leader = newest.body.run.leader as string;
    const other = cluster.nodes.find((n) => n !== leader && cluster.node(n).exists('/var/lib/regen/runs/run-lost.json')) as string;
    cluster.node(other).fs.write('/var/lib/regen/runs/run-lost.json', JSON.stringify({ ...older.envelope }), { owner: 'root', group: 'root', mode: 0o600 });

    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    const code = await resume(
      { db: join(dir, 'fresh.db'), json: false, run: undefined, passwordFile: undefined, maxRecoveries: 5, yes: true, ...CONNECT, makePort: async () => cluster.port, runDeps: FAST, fromCluster: { inventory: join(dir, 'inventory.yaml') } },
      io,
    );
    expect(code, io.stderrText()).toBe(EXIT.ok);
    expect(io.stderrText()).toContain(`${other} seq ${older.envelope.seq}`);
    expect(io.stderrText()).toMatch(new RegExp(`disagree .*using seq ${newest.envelope.seq}`));
    expect(io.stderrText()).toContain(`newer than the local record at seq ${older.envelope.seq}`);
    expect(healthy(cluster, SECRET).ok).toBe(true);
    // Exactly one setup of the leader: the one recorded before the loss was not repeated.
    expect(cluster.effects.count(leader, 'setupLeader')).toBe(1);
  });
});
