/**
 * The crash sweep: full recoveries on a fresh lab, regen killed with SIGKILL at a chosen point, then
 * `regen resume` until it finishes, then the mesh checked from the outside (health.ts).
 *
 * Kill points are found deterministically from one uninterrupted run of the same topology:
 * - `event k`: killed when its k-th `--json` event line appears (every transition and every step start/finish);
 * - `inside`: the node's command for a remote step is slowed by the lab's latency fault, and regen is killed
 *   while that command runs there. The command still completes on the node after regen died, so its effect is
 *   present and its outcome was never journaled: the resume must observe it with the step's probe. `early` kills
 *   while the command still waits, `late` while it does its work.
 * Every kill point gets a lab of its own (bringing one up costs a few seconds; a lab cannot be rewound).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { stepEntry } from '../../machines/catalogue.js';
import { labDown, labFault, labUp, sshExec, type Lab } from '../../test/lab/lab.js';
import { checkHealth, snapshotFiles, type HealthReport } from './health.js';
import { countPoints, countsLine, loopsOnNeedsOperator, type SweepCounts } from './sweep-count.js';
import { resumeArgs, runRegen, startArgs, writeSecretFile, type RegenEvent, type RegenOutcome } from './regen-process.js';

export interface Topology {
  name: string;
  nodes: number;
  servers: number;
  parallel: number;
}

export const TOPOLOGIES: Record<string, Topology> = {
  '1': { name: '1', nodes: 1, servers: 1, parallel: 4 },
  '1+2': { name: '1+2', nodes: 3, servers: 1, parallel: 4 },
  '5': { name: '5', nodes: 5, servers: 1, parallel: 2 },
  '3+2': { name: '3+2', nodes: 5, servers: 3, parallel: 4 },
};

/** Which simulated command a remote step runs, as the lab's latency fault names it: the catalogue's program. */
function latencyKey(step: string): string | undefined {
  return stepEntry(step)?.program ?? undefined;
}
export const INSIDE_LATENCY_MS = 1500;

export type KillPoint =
  | { kind: 'event'; k: number; label: string }
  | { kind: 'inside'; step: string; node: string; key: string; when: 'early' | 'late'; delayMs: number; label: string };

export interface PointResult {
  label: string;
  kind: KillPoint['kind'];
  killed: boolean;
  /** Intents without outcome in the journal right after the kill. */
  openIntentsAtKill: number;
  /** For inside points: whether the killed command's effect was present on the node once it had time to finish. */
  effectAfterKill?: boolean;
  resumes: number;
  resumeExitCodes: number[];
  /** A resume that was itself killed (the sweep kills some resumes too). */
  resumeKills: number;
  /** Per resume, whether the sweep killed it. */
  resumeKilled: boolean[];
  /** Two resumes in a row exited 5: the sweep stopped resuming (see sweep-count.ts). */
  looping: boolean;
  healthy: boolean;
  problems: string[];
  journal: Record<string, number>;
  probed: number;
  ms: number;
}

export interface Baseline {
  events: RegenEvent[];
  ms: number;
  health: HealthReport;
}

export interface SweepLog {
  (line: string): void;
}

const MAX_RESUMES = 10;

/** A lab of the topology in a fresh directory under `root` (never under the prefix test teardowns reap). */
export async function freshLab(root: string, topo: Topology, tag: string): Promise<Lab> {
  fs.mkdirSync(root, { recursive: true });
  const dir = fs.mkdtempSync(path.join(root, `${tag}-`));
  return labUp({ dir, nodes: topo.nodes, servers: topo.servers, profile: 'current', losePassword: true });
}

export async function dropLab(lab: Lab): Promise<void> {
  await labDown(lab.dir);
  fs.rmSync(lab.dir, { recursive: true, force: true });
}

/** One uninterrupted run: its event lines are the kill points; it must itself be healthy. */
export async function baseline(root: string, topo: Topology): Promise<Baseline> {
  const lab = await freshLab(root, topo, `base-${topo.name}`);
  try {
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab);
    const r = await runRegen([...startArgs(lab, file, ['--parallel', String(topo.parallel)]), '--json']);
    const health = await checkHealth(lab, path.join(lab.dir, 'regen.db'), secret, before);
    if (r.code !== 0) health.problems.unshift(`uninterrupted run exited ${r.code}: ${lastLines(r.stderr)}`);
    health.healthy = health.problems.length === 0;
    return { events: r.events, ms: r.durationMs, health };
  } finally {
    await dropLab(lab);
  }
}

/** Every kill point of a baseline run: each event line, then two points inside each slowable remote command. */
export function killPoints(base: Baseline): KillPoint[] {
  const points: KillPoint[] = [];
  base.events.forEach((e, i) => {
    const what = e.type === 'run.state' ? `${e.type} ${e.state ?? ''}` : e.step ? `${e.type} ${e.step} ${short(e.node)}` : e.type;
    points.push({ kind: 'event', k: i + 1, label: `event ${i + 1} (${what.trim()})` });
  });
  const seen = new Set<string>();
  for (const e of base.events) {
    if (e.type !== 'step.started' || !e.step || !e.node) continue;
    const key = latencyKey(e.step);
    if (key === undefined || seen.has(`${e.step}|${e.node}`)) continue;
    seen.add(`${e.step}|${e.node}`);
    points.push({ kind: 'inside', step: e.step, node: e.node, key, when: 'early', delayMs: 400, label: `inside ${e.step} ${short(e.node)} (waiting)` });
    points.push({ kind: 'inside', step: e.step, node: e.node, key, when: 'late', delayMs: INSIDE_LATENCY_MS + 150, label: `inside ${e.step} ${short(e.node)} (working)` });
  }
  return points;
}

function short(node: string | undefined): string {
  return (node ?? '').split('.')[0] ?? '';
}

function lastLines(text: string, n = 3): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}

/** About `count` points spread evenly over the list (every n-th point), so a sample spans the whole run. */
export function sample(points: KillPoint[], count: number): KillPoint[] {
  if (count >= points.length) return points;
  const every = points.length / Math.max(1, count);
  const out: KillPoint[] = [];
  for (let i = 0; i < count; i++) {
    const p = points[Math.floor(i * every)];
    if (p !== undefined) out.push(p);
  }
  return out;
}

/** Status of the latest run in the database (a killed resume may have finished the run before it died). */
function runStatus(dbPath: string): string | null {
  if (!fs.existsSync(dbPath)) return null;
  const db = new Database(dbPath, { readonly: true });
  try {
    return (db.prepare('SELECT status FROM runs ORDER BY created_at DESC LIMIT 1').get() as { status: string } | undefined)?.status ?? null;
  } catch {
    return null;
  } finally {
    db.close();
  }
}

function openIntents(dbPath: string): number {
  if (!fs.existsSync(dbPath)) return 0;
  const db = new Database(dbPath, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM journal WHERE outcome IS NULL').get() as { n: number }).n;
  } catch {
    return 0;
  } finally {
    db.close();
  }
}

/** Whether a remote step's effect is on the node now (read over ssh, not through regen). */
async function effectPresent(lab: Lab, step: string, node: string): Promise<boolean | undefined> {
  if (step.endsWith('.setup')) return (await sshExec(lab, node, 'test -f /etc/zextras/service-discover/main.json')).code === 0;
  if (step.endsWith('.stop')) return (await sshExec(lab, node, 'systemctl is-active service-discover')).code !== 0;
  return undefined;
}

/**
 * One kill point on a fresh lab: start regen, kill it, resume until exit 0 (at most MAX_RESUMES; the first resume
 * of every third point is itself killed part way), then check the mesh.
 */
export async function runPoint(
  root: string,
  topo: Topology,
  point: KillPoint,
  index: number,
  log: SweepLog = () => undefined,
  /** lost-db: the database is deleted right after the kill and the run is resumed from the nodes' mirror (resumeLostDb). */
  mode: 'keep-db' | 'lost-db' = 'keep-db',
): Promise<PointResult> {
  const t0 = Date.now();
  const lab = await freshLab(root, topo, `pt-${topo.name}`);
  const result: PointResult = {
    label: point.label,
    kind: point.kind,
    killed: false,
    openIntentsAtKill: 0,
    resumes: 0,
    resumeExitCodes: [],
    resumeKills: 0,
    resumeKilled: [],
    looping: false,
    healthy: false,
    problems: [],
    journal: {},
    probed: 0,
    ms: 0,
  };
  try {
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab);
    const db = path.join(lab.dir, 'regen.db');
    if (point.kind === 'inside') await labFault(lab.dir, { kind: 'latency', node: point.node, key: point.key, ms: INSIDE_LATENCY_MS });
    const first: RegenOutcome = await runRegen([...startArgs(lab, file, ['--parallel', String(topo.parallel)]), '--json'], {
      killAt: (e, k) => {
        if (point.kind === 'event') return k === point.k ? 0 : false;
        return e.type === 'step.started' && e.step === point.step && e.node === point.node ? point.delayMs : false;
      },
    });
    result.killed = first.killed;
    result.openIntentsAtKill = openIntents(db);
    if (point.kind === 'inside') {
      // Give the orphaned command the time it needs to finish on the node, then look.
      await new Promise((r) => setTimeout(r, INSIDE_LATENCY_MS + 2500));
      await labFault(lab.dir, { kind: 'latency', node: point.node, key: point.key, ms: 0 });
      if (first.killed) result.effectAfterKill = await effectPresent(lab, point.step, point.node);
    }
    if (mode === 'lost-db') return await resumeLostDb(lab, first, file, secret, before, result);
    let code = first.code;
    for (let i = 0; code !== 0 && runStatus(db) !== 'done' && i < MAX_RESUMES; i++) {
      const killThisOne = i === 0 && index % 3 === 2;
      const r = await runRegen([...resumeArgs(lab, file), '--json'], {
        ...(killThisOne ? { killAt: (_e: RegenEvent, k: number) => (k === 4 + (index % 5) ? 0 : false) } : {}),
      });
      result.resumes++;
      if (r.killed) result.resumeKills++;
      result.resumeKilled.push(r.killed);
      result.resumeExitCodes.push(r.code ?? -1);
      code = r.code;
      if (r.code !== 0 && !r.killed) log(`    resume ${i + 1} exited ${r.code}: ${lastLines(r.stderr)}`);
      if (loopsOnNeedsOperator(result.resumeExitCodes, result.resumeKilled)) {
        result.looping = true;
        log(`    resumes ${i} and ${i + 1} both exited 5: the same question again; stopped resuming`);
        break;
      }
    }
    const health = await checkHealth(lab, db, secret, before);
    if (code !== 0 && runStatus(db) !== 'done') health.problems.unshift(`still not done after ${result.resumes} resumes (last exit ${code})`);
    if (result.looping) health.problems.unshift(`resumes loop on exit 5 (needs an operator): ${result.resumeExitCodes.join(', ')}`);
    result.healthy = health.problems.length === 0;
    result.problems = health.problems;
    result.journal = health.journal;
    result.probed = health.probed;
  } catch (e) {
    result.problems.push(`harness: ${e instanceof Error ? e.message : String(e)}`);
    result.healthy = false;
  } finally {
    await dropLab(lab).catch((e: unknown) => result.problems.push(`down: ${String(e)}`));
    result.ms = Date.now() - t0;
  }
  return result;
}

/**
 * The database is gone: `regen resume --from-cluster` into a fresh one. When the kill came before anything was
 * mirrored (the run had changed nothing yet), the operator's way on is what the refusal says: `regen unlock -i`
 * for the dead process's lock, then a new start.
 */
async function resumeLostDb(lab: Lab, first: RegenOutcome, file: string, secret: string, before: Awaited<ReturnType<typeof snapshotFiles>>, result: PointResult): Promise<PointResult> {
  const lost = path.join(lab.dir, 'regen.db');
  for (const f of [lost, `${lost}-wal`, `${lost}-shm`]) fs.rmSync(f, { force: true });
  const db = path.join(lab.dir, 'fresh.db');
  let code = first.code;
  for (let i = 0; code !== 0 && runStatus(db) !== 'done' && i < MAX_RESUMES; i++) {
    const r = await runRegen([...resumeArgs(lab, file, ['--from-cluster', '-i', lab.inventory], db), '--json']);
    result.resumes++;
    result.resumeExitCodes.push(r.code ?? -1);
    code = r.code;
    if (r.code !== 0 && /no valid run mirror/.test(r.stderr)) {
      const unlock = await runRegen(['unlock', '--cluster', lab.cluster, '-i', lab.inventory, '--ssh-config', lab.sshConfig, '--known-hosts', lab.knownHosts, '--db', db]);
      result.resumeExitCodes.push(unlock.code ?? -1);
      code = (await runRegen([...startArgs(lab, file, [], db), '--json'])).code;
    }
  }
  const health = await checkHealth(lab, db, secret, before);
  if (code !== 0 && runStatus(db) !== 'done') health.problems.unshift(`still not done after ${result.resumes} resumes from the cluster (last exit ${code})`);
  result.healthy = health.problems.length === 0;
  result.problems = health.problems;
  result.journal = health.journal;
  result.probed = health.probed;
  return result;
}

export interface SweepResult {
  topology: string;
  nodes: number;
  servers: number;
  baselineMs: number;
  baselineEvents: number;
  baselineHealthy: boolean;
  baselineProblems: string[];
  pointsAvailable: number;
  tried: number;
  /** Points where regen was really killed, of them inside a step, healthy at the end, looping on exit 5. */
  counts: SweepCounts;
  healthy: number;
  msPerPoint: number;
  points: PointResult[];
}

/** The sweep of one topology: all its kill points, or `sample` of them spread over the run. */
export async function sweep(root: string, topo: Topology, opts: { sample?: number; log?: SweepLog }): Promise<SweepResult> {
  const log = opts.log ?? (() => undefined);
  const base = await baseline(root, topo);
  log(`topology ${topo.name}: uninterrupted run ${base.ms} ms, ${base.events.length} events, ${base.health.healthy ? 'healthy' : `NOT healthy: ${base.health.problems.join('; ')}`}`);
  const all = killPoints(base);
  const chosen = opts.sample === undefined ? all : sample(all, opts.sample);
  const points: PointResult[] = [];
  if (base.health.healthy) {
    for (const [i, p] of chosen.entries()) {
      const r = await runPoint(root, topo, p, i, log);
      points.push(r);
      log(
        `  [${i + 1}/${chosen.length}] ${p.label}: ${r.killed ? `killed${r.openIntentsAtKill > 0 ? ' inside a step' : ''}` : 'NOT KILLED (the run ended first)'}, ${r.healthy ? 'healthy' : 'NOT HEALTHY'}; ${r.resumes} resume(s)${r.resumeKills ? ` (${r.resumeKills} killed)` : ''}, open intents at kill ${r.openIntentsAtKill}${r.effectAfterKill === undefined ? '' : `, effect after kill ${r.effectAfterKill ? 'present' : 'absent'}`}, ${r.ms} ms`,
      );
      for (const pr of r.problems.slice(0, 8)) log(`      ${pr}`);
    }
  }
  const tried = points.length;
  const counts = countPoints(points);
  log(`topology ${topo.name}: ${countsLine(counts)}`);
  return {
    topology: topo.name,
    nodes: topo.nodes,
    servers: topo.servers,
    baselineMs: base.ms,
    baselineEvents: base.events.length,
    baselineHealthy: base.health.healthy,
    baselineProblems: base.health.problems,
    pointsAvailable: all.length,
    tried,
    counts,
    healthy: counts.healthy,
    msPerPoint: tried ? Math.round(points.reduce((s, p) => s + p.ms, 0) / tried) : 0,
    points,
  };
}
