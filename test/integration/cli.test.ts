/**
 * The command functions, driven without a process: start with the fake cluster provided as the node port, then
 * status, runs and log on a real SQLite file; for a finished run and for one whose process died mid-way.
 */
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { main } from '../../cli/main.js';
import { start } from '../../cli/commands/start.js';
import { status, runs } from '../../cli/commands/status.js';
import { resume } from '../../cli/commands/resume.js';
import { EXIT } from '../../cli/exit-codes.js';
import { validateEvent } from '../../adapters/terminal/index.js';
import { healthy } from '../sim/fake-cluster.js';
import { Process, FAST } from '../support/machine-harness.js';
import type { NodePort } from '../../machines/port.js';
import { fakeIo } from '../support/fake-io.js';
import { useClusterDir } from '../support/cluster-dir.js';

const SECRET = 'cli-test-mesh-secret-9876';
const fx = useClusterDir({ prefix: 'regen-cli-', cluster: { servers: 1, agents: 2 }, start: { runId: 'run-cli' } });

describe('regen start / status / runs through the command functions', () => {
  it('a finished run: status shows done, the leader and the node × step view', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await start(fx.startOptions(), io)).toBe(EXIT.ok);
    expect(healthy(fx.cluster, SECRET).ok).toBe(true);
    expect(io.stderrText()).toMatch(/run run-cli done/);
    expect(io.stderrText()).not.toContain(SECRET);

    const s = fakeIo();
    expect(await status({ db: fx.path('regen.db'), json: false, run: 'run-cli', watch: false }, s)).toBe(EXIT.ok);
    const text = s.stdoutText();
    expect(text).toContain('run-cli');
    expect(text).toMatch(/done/);
    for (const n of fx.cluster.nodes) expect(text).toContain(n);
    expect(text).toContain(fx.cluster.leader() as string);
    const rows = text.split('\n').filter((l) => fx.cluster.nodes.some((n) => l.startsWith(n)));
    expect(rows).toHaveLength(fx.cluster.nodes.length);
    for (const row of rows) expect(row).not.toMatch(/[✗?…·]/);

    const j = fakeIo();
    await status({ db: fx.path('regen.db'), json: true, run: 'run-cli', watch: false }, j);
    const view = JSON.parse(j.stdoutText()) as { status: string; nodes: Array<{ name: string; cells: Record<string, string> }> };
    expect(view.status).toBe('done');
    const leaderRow = view.nodes.find((n) => n.name === fx.cluster.leader());
    expect(leaderRow?.cells).toMatchObject({ backup: 'done', 'reset-index': 'done', stop: 'done', wipe: 'done', setup: 'done', verify: 'done', final: 'done' });
    const agentRow = view.nodes.find((n) => n.name === fx.cluster.agents[0]);
    expect(agentRow?.cells).toMatchObject({ 'copy-credentials': 'done', setup: 'done' });

    const r = fakeIo();
    await runs({ db: fx.path('regen.db'), json: false }, r);
    expect(r.stdoutText()).toContain('run-cli');
  });

  it('an interrupted run (its process died during the followers): status says what happened and what to do', async () => {
    const { openStore } = await import('../../store/store.js');
    const store = openStore(fx.path('regen.db'));
    const proc = new Process(store, fx.cluster.port);
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    const crashing = start(
      fx.startOptions({
        makePort: async () => proc.portView() as NodePort,
        store: proc.storeView(),
        runDeps: {
          ...FAST,
          journalHooks: {
            afterWrite: (what, row) => {
              if (what === 'intent' && row.step === 'follower.setup') proc.crash();
            },
          },
        },
      }),
      io,
    );
    await expect(crashing).rejects.toThrow();
    store.close();
    // The dead process's lock names a pid that no longer exists.
    const db = new Database(fx.path('regen.db'));
    db.prepare('UPDATE locks SET pid = 999999999').run();
    db.close();

    const s = fakeIo();
    await status({ db: fx.path('regen.db'), json: false, run: undefined, watch: false }, s);
    const text = s.stdoutText();
    expect(text).toContain('run-cli');
    expect(text).toMatch(/running/);
    // The dead holder was this run on this host: resume takes its lock over, so status does not send the operator to unlock.
    expect(text).not.toContain('regen unlock');
    expect(text).toContain('regen resume run-cli');
    const j = fakeIo();
    await status({ db: fx.path('regen.db'), json: true, run: 'run-cli', watch: false }, j);
    const view = JSON.parse(j.stdoutText()) as { nodes: Array<{ name: string; cells: Record<string, string> }> };
    const cells = view.nodes.flatMap((n) => Object.values(n.cells));
    expect(cells).toContain('unknown');
    expect(cells).toContain('done');

    // The operator follows the advice.
    const r = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    const code = await resume(fx.resumeOptions({ json: true, yes: false }), r);
    expect(code).toBe(EXIT.ok);
    expect(healthy(fx.cluster, SECRET).ok).toBe(true);
    // --json: every line is a valid event and none carries the secret.
    const lines = r.stdoutText().trim().split('\n');
    expect(lines.length).toBeGreaterThan(5);
    for (const l of lines) {
      expect(l).not.toContain(SECRET);
      const res = validateEvent(JSON.parse(l));
      expect(res.ok, `${l} ${JSON.stringify(res)}`).toBe(true);
    }
  });

  it('a second start against the same cluster while one holds the lock is refused with its exit code', async () => {
    const { openStore } = await import('../../store/store.js');
    const store = openStore(fx.path('regen.db'));
    store.acquireLock({ cluster: 'testmesh', runId: 'other-run', pid: process.pid, host: (await import('node:os')).hostname() });
    store.close();
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    await expect(start(fx.startOptions(), io)).rejects.toMatchObject({ kind: 'lock-held' });
    expect(fx.cluster.effects.log).toEqual([]);
    expect(await main(['start', '-i', fx.path('inventory.yaml'), '--db', fx.path('regen.db'), '--yes'], fakeIo({ REGEN_MESH_PASSWORD: SECRET }))).toBe(EXIT.lockHeld);
  });

  it('plan (dry run) records nothing and changes nothing', async () => {
    const io = fakeIo();
    expect(await start(fx.startOptions({ dryRun: true, yes: false, verbose: true }), io)).toBe(EXIT.ok);
    expect(io.stdoutText()).toContain('Plan for cluster testmesh');
    expect(io.stdoutText()).toContain('service-discover setup-wizard --first-instance');
    expect(io.stdoutText()).not.toContain('--password=');
    expect(fx.cluster.effects.log).toEqual([]);
  });

  it('without a terminal and without --yes, start refuses before touching anything', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    await expect(start(fx.startOptions({ yes: false }), io)).rejects.toMatchObject({ kind: 'usage' });
    expect(fx.cluster.calls).toEqual([]);
  });
});

describe('argv', () => {
  it('--help exits 0 and lists the commands; an unknown command is a usage error', async () => {
    const io = fakeIo();
    expect(await main(['nonsense'], io)).toBe(EXIT.usage);
    expect(io.stderrText()).toMatch(/regen/);
    const bad = fakeIo();
    expect(await main(['start', '--db', fx.path('x.db'), '-i', fx.path('missing.yaml'), '--yes'], bad)).toBe(EXIT.usage);
    expect(bad.stderrText()).toMatch(/missing.yaml does not exist/);
  });
});
