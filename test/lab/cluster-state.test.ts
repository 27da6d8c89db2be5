/**
 * The run outlives the operator's machine, on the lab with real processes: regen is killed with SIGKILL at four
 * points and its database deleted, and `regen resume --from-cluster` with a fresh database finishes healthy (checked
 * on the nodes, not from regen's word); two operators with two databases: the second is refused at once with
 * exit 6 naming the first's run and host; a mirror missing on one node and damaged on another: the valid copy is
 * used; with no mirror at all, start and plan name the half-done run instead of failing on "no leader".
 */
import * as fs from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { labFault, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { connectArgs, resumeArgs, runRegen, startArgs, writeSecretFile, type RegenEvent, type RegenOutcome } from '../../bench/lib/regen-process.js';
import { checkHealth, snapshotFiles } from '../../bench/lib/health.js';
import { decodeMirror, type ParsedMirror } from '../../machines/mirror.js';

const skip = labSkip();
const LOCK_HELD = 6;
const NEEDS_OPERATOR = 5;
const USAGE = 2;

function dropDb(db: string): void {
  for (const f of [db, `${db}-wal`, `${db}-shm`]) fs.rmSync(f, { force: true });
  expect(fs.existsSync(db)).toBe(false);
}

function runIdOf(r: RegenOutcome): string {
  const id = r.events.find((e) => e.type === 'run.started')?.runId;
  if (id === undefined) throw new Error(`no run.started event: ${r.stderr.slice(0, 300)}`);
  return id;
}

/** Mirror files of a run, read from the host side of each node. */
function mirrorFiles(lab: Lab, runId: string): Array<{ node: string; file: string }> {
  return lab.nodes.map((n) => ({ node: n.name, file: join(n.root, 'regen-state', 'runs', `${runId}.json`) })).filter((m) => fs.existsSync(m.file));
}

function fromCluster(lab: Lab, secretFile: string, db: string, run?: string): Promise<RegenOutcome> {
  return runRegen([...resumeArgs(lab, secretFile, ['--from-cluster', '-i', lab.inventory], db), ...(run === undefined ? [] : [run])]);
}

interface KillPoint {
  name: string;
  extra: string[];
  setupLatencyMs: number;
  kill: (e: RegenEvent) => number | false;
}

const finishedStep = (step: string) => (e: RegenEvent) => (e.type === 'step.finished' && e.step === step ? 0 : false);

const KILL_POINTS: KillPoint[] = [
  { name: "just after the leader's stop", extra: [], setupLatencyMs: 0, kill: finishedStep('leader.stop') },
  { name: "just after the leader's wipe", extra: [], setupLatencyMs: 0, kill: finishedStep('leader.wipe') },
  { name: "inside the leader's setup", extra: [], setupLatencyMs: 3000, kill: (e) => (e.type === 'step.started' && e.step === 'leader.setup' ? 1000 : false) },
  // Followers one at a time, so "the first follower verified" is between two followers.
  { name: 'between two followers', extra: ['--parallel', '1'], kill: finishedStep('follower.verify'), setupLatencyMs: 0 },
];

describe.skipIf(skip !== null)('the run outlives the operator machine', { timeout: 900_000 }, () => {
  const h = withLab({ nodes: 4, servers: 2, profile: 'current', losePassword: true });

  it.each(KILL_POINTS.map((p, i) => [p.name, i] as const))('database lost %s: resume --from-cluster with a fresh database ends healthy', async (_name, i) => {
    const lab = h.lab;
    const point = KILL_POINTS[i] as KillPoint;
    await labFault(lab.dir, { kind: 'latency', node: lab.leader, key: 'service-discover setup', ms: point.setupLatencyMs });
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab, `secret-lost-${i}`);
    const lost = join(lab.dir, `lost-${i}.db`);
    const killed = await runRegen([...startArgs(lab, file, point.extra, lost), '--json'], { killAt: point.kill });
    await labFault(lab.dir, { kind: 'latency', node: lab.leader, key: 'service-discover setup', ms: 0 });
    expect(killed.killed, killed.stderr).toBe(true);
    const runId = runIdOf(killed);
    dropDb(lost);

    const fresh = join(lab.dir, `fresh-${i}.db`);
    const resumed = await fromCluster(lab, file, fresh);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`run ${runId} imported from`);
    const health = await checkHealth(lab, fresh, secret, before);
    expect(health.runId).toBe(runId);
    expect(health.problems).toEqual([]);
  });

  it('two operators, two databases: the second start exits 6 at once, naming the first run and its host, and changes nothing', async () => {
    const lab = h.lab;
    await labFault(lab.dir, { kind: 'latency', node: lab.leader, key: 'service-discover setup', ms: 4000 });
    const before = await snapshotFiles(lab);
    const a = writeSecretFile(lab, 'secret-operator-a');
    const b = writeSecretFile(lab, 'secret-operator-b');
    const dbA = join(lab.dir, 'operator-a.db');
    const dbB = join(lab.dir, 'operator-b.db');
    let firstDone = false;
    let second: Promise<{ r: RegenOutcome; firstStillRunning: boolean }> | null = null;
    let plan: Promise<{ r: RegenOutcome; firstStillRunning: boolean }> | null = null;
    const first = await runRegen([...startArgs(lab, a.file, [], dbA), '--json'], {
      killAt: (e) => {
        if (second === null && e.type === 'step.started' && e.step === 'leader.setup') {
          second = runRegen(startArgs(lab, b.file, [], dbB)).then((r) => ({ r, firstStillRunning: !firstDone }));
          plan = runRegen(['plan', '-i', lab.inventory, ...connectArgs(lab, join(lab.dir, 'operator-c.db'))]).then((r) => ({ r, firstStillRunning: !firstDone }));
        }
        return false;
      },
    });
    firstDone = true;
    await labFault(lab.dir, { kind: 'latency', node: lab.leader, key: 'service-discover setup', ms: 0 });
    expect(second).not.toBeNull();
    const { r, firstStillRunning } = await (second as unknown as Promise<{ r: RegenOutcome; firstStillRunning: boolean }>);
    expect(first.code, first.stderr).toBe(0);
    expect(firstStillRunning).toBe(true);
    expect(r.code, r.stderr).toBe(LOCK_HELD);
    expect(r.stderr).toContain(`run ${runIdOf(first)}`);
    expect(r.stderr).toContain(`@${hostname()}`);
    expect(r.stderr).toMatch(/last heartbeat \d+/);
    // The refused start recorded nothing, and the mesh is the first operator's (its secret opens it).
    const db = new Database(dbB, { readonly: true });
    const runs = db.prepare('SELECT count(*) AS n FROM runs').get() as { n: number };
    db.close();
    expect(runs.n).toBe(0);
    const health = await checkHealth(lab, dbA, a.secret, before);
    expect(health.problems).toEqual([]);
    // A third operator's plan during the first run reports the lock on the nodes.
    const p = await (plan as unknown as Promise<{ r: RegenOutcome; firstStillRunning: boolean }>);
    expect(p.firstStillRunning).toBe(true);
    expect(p.r.code, p.r.stderr).toBe(LOCK_HELD);
    expect(`${p.r.stdout}${p.r.stderr}`).toContain(`locked by run ${runIdOf(first)}`);
  });

  it('a mirror missing on one node and damaged on another: resume uses the valid copy', async () => {
    const lab = h.lab;
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab, 'secret-damaged');
    const lost = join(lab.dir, 'damaged-lost.db');
    const killed = await runRegen([...startArgs(lab, file, [], lost), '--json'], { killAt: finishedStep('leader.wipe') });
    expect(killed.killed).toBe(true);
    const runId = runIdOf(killed);
    dropDb(lost);
    const copies = mirrorFiles(lab, runId);
    expect(copies.length).toBeGreaterThanOrEqual(3);
    const [missing, damaged, valid] = copies as [(typeof copies)[0], (typeof copies)[0], (typeof copies)[0]];
    fs.rmSync(missing.file);
    const text = fs.readFileSync(damaged.file, 'utf8');
    fs.writeFileSync(damaged.file, text.slice(0, Math.floor(text.length / 2)));

    const fresh = join(lab.dir, 'damaged-fresh.db');
    const resumed = await fromCluster(lab, file, fresh, runId);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`${damaged.node}: the mirror of run ${runId} is not valid`);
    expect(resumed.stderr).toContain(`run ${runId} imported from ${valid.node}`);
    expect((await checkHealth(lab, fresh, secret, before)).problems).toEqual([]);
  });

  it('regen abort -i marks the mirror aborted: resume --from-cluster from another machine refuses to go on with it', async () => {
    const lab = h.lab;
    const before = await snapshotFiles(lab);
    const { file } = writeSecretFile(lab, 'secret-aborted');
    const db = join(lab.dir, 'aborted.db');
    // Killed after the first backup: only backups and regen's own state are on the nodes.
    const killed = await runRegen([...startArgs(lab, file, [], db), '--json'], { killAt: finishedStep('backup') });
    expect(killed.killed, killed.stderr).toBe(true);
    const runId = runIdOf(killed);
    const abort = await runRegen(['abort', runId, '-i', lab.inventory, ...connectArgs(lab, db)]);
    expect(abort.code, abort.stderr).toBe(0);
    expect(abort.stderr).toContain(`run ${runId} is marked aborted in its mirror on the nodes too`);
    const copies = mirrorFiles(lab, runId);
    expect(copies.length).toBe(lab.nodes.length);
    for (const m of copies) expect((decodeMirror(fs.readFileSync(m.file, 'utf8')) as ParsedMirror).body.run.status, m.node).toBe('aborted');
    const elsewhere = await fromCluster(lab, file, join(lab.dir, 'aborted-elsewhere.db'), runId);
    expect(elsewhere.code, elsewhere.stderr).toBe(USAGE);
    expect(elsewhere.stderr).toContain(`run ${runId} is aborted; there is nothing to resume`);
    // The mesh was not touched, and the abort gave the cluster lock back.
    for (const n of lab.nodes) expect(fs.existsSync(join(n.root, 'regen-state', 'lock'))).toBe(false);
    expect(await snapshotFiles(lab)).toEqual(before);
  });

  it('no mirror at all (an older regen): start and plan name the half-done run and propose resume --from-cluster', async () => {
    const lab = h.lab;
    const { file } = writeSecretFile(lab, 'secret-nomirror');
    const lost = join(lab.dir, 'nomirror-lost.db');
    const killed = await runRegen([...startArgs(lab, file, [], lost), '--json'], { killAt: finishedStep('leader.wipe') });
    expect(killed.killed).toBe(true);
    const runId = runIdOf(killed);
    dropDb(lost);
    for (const n of lab.nodes) fs.rmSync(join(n.root, 'regen-state'), { recursive: true, force: true });
    for (const n of lab.nodes) fs.mkdirSync(join(n.root, 'regen-state'), { mode: 0o700 });

    const other = join(lab.dir, 'nomirror-other.db');
    const start = await runRegen(startArgs(lab, file, [], other));
    expect(start.code, start.stderr).toBe(NEEDS_OPERATOR);
    expect(start.stderr).toContain(`left mid-procedure by run ${runId}`);
    expect(start.stderr).toContain('regen resume --from-cluster');
    expect(start.stderr).not.toMatch(/no leader/);
    const plan = await runRegen(['plan', '-i', lab.inventory, ...connectArgs(lab, other)]);
    expect(plan.code, plan.stderr).toBe(NEEDS_OPERATOR);
    expect(`${plan.stdout}${plan.stderr}`).toContain(`left mid-procedure by run ${runId}`);
    expect(`${plan.stdout}${plan.stderr}`).not.toMatch(/no leader/);
    // Nothing was recorded by either.
    const db = new Database(other, { readonly: true });
    expect((db.prepare('SELECT count(*) AS n FROM runs').get() as { n: number }).n).toBe(0);
    db.close();
  });
});
