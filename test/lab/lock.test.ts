/**
 * The cluster lock with real processes on the lab: a second start or resume while a run works is refused at once
 * with its own exit code and changes nothing; a lock left by a dead process is reported and removed only by an
 * explicit `regen unlock`.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { labFault } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { connectArgs, resumeArgs, runRegen, startArgs, writeSecretFile } from '../../bench/lib/regen-process.js';
import { checkHealth, snapshotFiles } from '../../bench/lib/health.js';

const skip = labSkip();
const LOCK_HELD = 6;

describe.skipIf(skip !== null)('the cluster lock', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current', losePassword: true });

  it('refuses a second start and a resume while a run works, at once, with exit 6', async () => {
    const lab = h.lab;
    // The leader's setup is slowed so the first run is still working when the others come.
    await labFault(lab.dir, { kind: 'latency', node: lab.leader, key: 'service-discover setup', ms: 4000 });
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab);
    let second: Awaited<ReturnType<typeof runRegen>> | null = null;
    let resumed: Awaited<ReturnType<typeof runRegen>> | null = null;
    let secondDuringSetup = false;
    const first = await new Promise<Awaited<ReturnType<typeof runRegen>>>((resolve, reject) => {
      let launched = false;
      runRegen([...startArgs(lab, file), '--json'], {
        killAt: (e) => {
          if (!launched && e.type === 'step.started' && e.step === 'leader.setup') {
            launched = true;
            void (async () => {
              second = await runRegen(startArgs(lab, file));
              resumed = await runRegen(resumeArgs(lab, file));
              // Both answers came back while the first run was still inside the slowed setup.
              const db = new Database(join(lab.dir, 'regen.db'), { readonly: true });
              const open = db.prepare("SELECT count(*) AS n FROM journal WHERE step = 'leader.setup' AND outcome IS NULL").get() as { n: number };
              db.close();
              secondDuringSetup = open.n === 1;
            })();
          }
          return false;
        },
      }).then(resolve, reject);
    });
    await labFault(lab.dir, { kind: 'latency', node: lab.leader, key: 'service-discover setup', ms: 0 });
    expect(first.code, first.stderr).toBe(0);
    expect(secondDuringSetup).toBe(true);
    const s = second as unknown as Awaited<ReturnType<typeof runRegen>>;
    const r = resumed as unknown as Awaited<ReturnType<typeof runRegen>>;
    expect(s.code, s.stderr).toBe(LOCK_HELD);
    expect(s.stderr).toMatch(/locked by run .* \(pid \d+/);
    expect(s.stderr).toMatch(/still running/);
    expect(r.code, r.stderr).toBe(LOCK_HELD);
    // The refused start recorded no run of its own; the first run is the only one and it is done.
    const db = new Database(join(lab.dir, 'regen.db'), { readonly: true });
    const runs = db.prepare('SELECT status FROM runs').all() as { status: string }[];
    db.close();
    expect(runs).toEqual([{ status: 'done' }]);
    const health = await checkHealth(lab, join(lab.dir, 'regen.db'), secret, before);
    expect(health.problems).toEqual([]);
  });

  it('a lock left by a killed process is reported, refused to a new run, and removed only by regen unlock', async () => {
    const lab = h.lab;
    const db = join(lab.dir, 'regen-dead.db');
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab, 'secret-dead');
    const killed = await runRegen([...startArgs(lab, file, [], db), '--json'], {
      killAt: (e) => (e.type === 'step.started' && e.step === 'leader.stop' ? 0 : false),
    });
    expect(killed.killed).toBe(true);

    const st = await runRegen(['status', '--json', ...connectArgs(lab, db).slice(4)]);
    expect(st.code, st.stderr).toBe(0);
    const view = JSON.parse(st.stdout) as { status: string; next: { command: string; why: string }[] };
    expect(view.status).toBe('running');
    // Resuming exactly this run takes the dead process's lock over; a new run needs regen unlock (below).
    expect(view.next.some((n) => /^regen resume \S+$/.test(n.command))).toBe(true);
    expect(view.next.map((n) => n.why).join(' ')).toContain(`pid ${killed.pid}`);

    // A new run is refused while the dead process's lock is there: it is not taken over silently.
    const other = await runRegen(startArgs(lab, file, [], db));
    expect(other.code, other.stderr).toBe(LOCK_HELD);
    expect(other.stderr).toMatch(/process that held it is gone/);
    expect(other.stderr).toContain(`regen unlock --cluster ${lab.cluster}`);
    const again = await runRegen(startArgs(lab, file, [], db));
    expect(again.code).toBe(LOCK_HELD);

    const unlock = await runRegen(['unlock', '--cluster', lab.cluster, '--db', db]);
    expect(unlock.code, unlock.stderr).toBe(0);
    expect(unlock.stderr).toContain(`pid ${killed.pid}`);
    const st2 = await runRegen(['status', '--json', '--db', db]);
    expect((JSON.parse(st2.stdout) as { next: { command: string }[] }).next.map((n) => n.command)).not.toContain(`regen unlock --cluster ${lab.cluster}`);

    const done = await runRegen(resumeArgs(lab, file, [], db));
    expect(done.code, done.stderr).toBe(0);
    const health = await checkHealth(lab, db, secret, before);
    expect(health.problems).toEqual([]);
  });

  it('a lock taken on another host is judged by its heartbeat age and still needs regen unlock', async () => {
    const lab = h.lab;
    const db = join(lab.dir, 'regen-remote.db');
    const { file } = writeSecretFile(lab, 'secret-remote');
    // A run that stopped at a failure leaves no lock; plant one as another host's process would have left it.
    const killed = await runRegen([...startArgs(lab, file, [], db), '--json'], { killAt: (e) => (e.type === 'run.state' && e.state === 'preflight' ? 0 : false) });
    expect(killed.killed).toBe(true);
    const w = new Database(db);
    const changed = w.prepare("UPDATE locks SET host = 'ops-laptop.example', heartbeat_at = heartbeat_at - 3600000").run().changes;
    w.close();
    expect(changed).toBe(1);
    const st = await runRegen(['status', '--json', '--db', db]);
    const view = JSON.parse(st.stdout) as { next: { command: string }[] };
    expect(view.next.map((n) => n.command)).toContain(`regen unlock --cluster ${lab.cluster}`);
    const refused = await runRegen(resumeArgs(lab, file, [], db));
    expect(refused.code, refused.stderr).toBe(LOCK_HELD);
    expect(refused.stderr).toMatch(/another host/);
    expect(refused.stderr).toMatch(/last heartbeat 1h/);
    const unlock = await runRegen(['unlock', '--cluster', lab.cluster, '--db', db]);
    expect(unlock.code, unlock.stderr).toBe(0);
    const abort = await runRegen(['abort', '--db', db]);
    expect(abort.code, abort.stderr).toBe(0);
  });
});
