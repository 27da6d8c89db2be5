/**
 * Every row of the exit-code table, end to end through the command functions (the fake cluster as the node port)
 * or through main() where the command line itself is the case; and the README's table says what the code says.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { resume } from '../../cli/commands/resume.js';
import { start } from '../../cli/commands/start.js';
import { EXIT, EXIT_DESCRIPTIONS } from '../../cli/exit-codes.js';
import type { Io } from '../../cli/io.js';
import { main, reportError } from '../../cli/main.js';
import type { NodePort } from '../../machines/port.js';
import { openStore } from '../../store/store.js';
import { useClusterDir } from '../support/cluster-dir.js';
import { fakeIo } from '../support/fake-io.js';

const SECRET = 'exit-codes-mesh-secret-2468';
const fx = useClusterDir({
  prefix: 'regen-exit-',
  cluster: { servers: 1, agents: 2, seed: 'exit-codes' },
  name: 'exitmesh',
  start: { runId: 'run-exit', maxUnitRounds: 1 },
});

/** As main() does: a thrown error becomes its code through the one table. */
async function exitOf(fn: () => Promise<number>, io: Io): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    return reportError(err, io);
  }
}

describe('every exit code, end to end', () => {
  it('0: a run that finishes', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await exitOf(() => start(fx.startOptions(), io), io)).toBe(EXIT.ok);
  });

  it('1: a bug (an error that is not one of regen\'s) is internal', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    const broken = async (): Promise<NodePort> => {
      throw new TypeError('cannot read properties of undefined');
    };
    expect(await exitOf(() => start(fx.startOptions({ makePort: broken }), io), io)).toBe(EXIT.internal);
  });

  it('2: start without -i says one thing (yargs\' refusal) and runs nothing', async () => {
    const io = fakeIo();
    expect(await main(['start', '--db', fx.path('x.db')], io)).toBe(EXIT.usage);
    expect(io.stderrText().match(/^regen: /gm)).toHaveLength(1);
    expect(io.stderrText()).toMatch(/Missing required argument: inventory/);
    expect(existsSync(fx.path('x.db'))).toBe(false);
  });

  it('2: status, log and resume with no database yet are usage errors that create nothing; runs says no runs', async () => {
    const db = fx.path('none.db');
    for (const argv of [['status'], ['log'], ['resume']]) {
      const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
      expect(await main([...argv, '--db', db], io), argv[0]).toBe(EXIT.usage);
      expect(io.stderrText()).toMatch(/no (run recorded|run to resume): there is no database at/);
    }
    const io = fakeIo();
    expect(await main(['runs', '--db', db], io)).toBe(EXIT.ok);
    expect(io.stdoutText()).toBe('No runs recorded.\n');
    expect(existsSync(db)).toBe(false);
  });

  it('3: a node missing a tool fails preflight; nothing changed', async () => {
    fx.useCluster({ nodes: [{ name: 'mail1.example.com', kind: 'server' }, { name: 'mail2.example.com', kind: 'agent', missingTools: ['gpg'] }] });
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await exitOf(() => start(fx.startOptions(), io), io)).toBe(EXIT.preflight);
    expect(fx.cluster.effects.log).toEqual([]);
  });

  it('4: a step that fails (the leader setup, with no retry left)', async () => {
    fx.cluster.faults.failNext('mail1.example.com', 'setupLeader', 'setup exploded', { times: 5 });
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await exitOf(() => start(fx.startOptions(), io), io)).toBe(EXIT.stepFailed);
  });

  it('5: a node whose bind address regen cannot choose is a question for the operator; nothing changed', async () => {
    const port: NodePort = {
      ...fx.cluster.port,
      inspect: async (node) => {
        const f = await fx.cluster.port.inspect(node);
        return node === 'mail2.example.com' ? { ...f, addresses: ['10.9.0.1', '10.9.0.2'], hostnameAddresses: [], configuredBindAddress: null } : f;
      },
    };
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await exitOf(() => start(fx.startOptions({ makePort: async () => port }), io), io)).toBe(EXIT.needsOperator);
    expect(io.stderrText()).toMatch(/cannot tell which address to bind/);
    expect(fx.cluster.effects.log).toEqual([]);
    // regen plan says the same.
    const p = fakeIo();
    expect(await exitOf(() => start(fx.startOptions({ makePort: async () => port, dryRun: true, yes: false }), p), p)).toBe(EXIT.needsOperator);
  });

  it('6: another run holds the lock', async () => {
    const store = openStore(fx.path('regen.db'));
    store.acquireLock({ cluster: 'exitmesh', runId: 'other-run', pid: process.pid, host: hostname() });
    store.close();
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await exitOf(() => start(fx.startOptions(), io), io)).toBe(EXIT.lockHeld);
    // The store reports the conflict as data; the advice is worded by cli/lock-advice.ts.
    expect(io.stderrText()).toContain(`next: wait for run other-run to finish, or stop pid ${process.pid} first; regen unlock --cluster exitmesh only once it is gone`);
  });

  it('7: a run recorded by another version of the procedure is not resumed', async () => {
    fx.cluster.faults.failNext('mail1.example.com', 'setupLeader', 'setup exploded', { times: 5 });
    const first = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await exitOf(() => start(fx.startOptions(), first), first)).toBe(EXIT.stepFailed);
    const db = new Database(fx.path('regen.db'));
    db.prepare("UPDATE runs SET machine_version = 'recovery/0-000000000000'").run();
    db.close();
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await exitOf(() => resume(fx.resumeOptions({ run: 'run-exit', maxRecoveries: 20 }), io), io)).toBe(EXIT.divergence);
  });

  it('8: a damaged database', async () => {
    writeFileSync(fx.path('regen.db'), 'this is not an SQLite database, it is a text file of some length'.repeat(100));
    const io = fakeIo();
    expect(await main(['status', '--db', fx.path('regen.db')], io)).toBe(EXIT.store);
  });

  it('9: the operator declines the confirmation; nothing changed', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET }, { stdinIsTTY: true, answer: 'not-the-cluster' });
    expect(await exitOf(() => start(fx.startOptions({ yes: false }), io), io)).toBe(EXIT.aborted);
    expect(fx.cluster.effects.log).toEqual([]);
    // The plan ended with the downtime warning; the question does not repeat it.
    expect(io.stderrText().split("The mesh is down from the leader's stop").length - 1).toBe(1);
  });

  it('10: a node unreachable at preflight, as regen plan says; nothing changed', async () => {
    fx.cluster.faults.unreachable('mail3.example.com');
    const io = fakeIo({ REGEN_MESH_PASSWORD: SECRET });
    expect(await exitOf(() => start(fx.startOptions(), io), io)).toBe(EXIT.unreachable);
    expect(fx.cluster.effects.log).toEqual([]);
    const p = fakeIo();
    expect(await exitOf(() => start(fx.startOptions({ dryRun: true, yes: false }), p), p)).toBe(EXIT.unreachable);
  });

  it('the README table is the code\'s table, row for row', () => {
    const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
    const rows = [...readme.matchAll(/^\| (\d+) \| (.+) \|$/gm)].map((m) => [Number(m[1]), m[2]]);
    expect(rows).toEqual((Object.keys(EXIT) as (keyof typeof EXIT)[]).map((k) => [EXIT[k], EXIT_DESCRIPTIONS[k]]));
  });

});
