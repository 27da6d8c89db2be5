/**
 * regen's benchmark on the lab: the seed-000 procedure done by a shell script over OpenSSH, by an Ansible playbook
 * and by regen (--parallel 1, its default, and one follower per slot), each on a fresh lab with realistic latency
 * injected on every node, plus regen's own costs (status on a long run, checkpoint, resume start-up).
 *
 *   npm run build && npm run bench -- [--sizes 3,10,25] [--quick] [--reps N] [--out bench/results]
 *
 * Needs root (the lab). Writes <out>/<timestamp>.md and .json and <out>/latest.md. See bench/README.md.
 */
import { DEFAULT_PARALLEL } from '../cli/main.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { labDown, repoRoot } from '../test/lab/lab.js';
import type { Lab } from '../test/lab/lab.js';
import {
  REALISTIC_LATENCY,
  checkTargets,
  criticalPath,
  median,
  percentile,
  renderMarkdown,
  sizeRatios,
  type BenchReport,
  type MicroResult,
  type PeerId,
  type PeerResult,
  type SizeResult,
} from './lib/perf-figures.js';
import { checkHealth, freshLab, injectLatency, measureBaseCosts, watchDowntime, writeSecret } from './lib/perf-lab.js';
import { machineInfo } from './lib/perf-machine.js';
import { buildStatusDb, checkpointCost, cliLatency, fsTypeOf, fsyncFloor, resumeLatency } from './lib/perf-micro.js';
import { runAnsible, runManual, runRegen, type PeerRun } from './lib/perf-peers.js';

interface Options {
  sizes: number[];
  quick: boolean;
  reps: number;
  out: string;
  peers: PeerId[];
  micro: boolean;
  statusTransitions: number;
  statusRuns: number;
  checkpointSamples: number;
}

const ALL_PEERS: PeerId[] = ['manual', 'ansible', 'regen-p1', 'regen-default', 'regen-wide'];
const REGEN_DEFAULT_PARALLEL = DEFAULT_PARALLEL;
const PEER_TIMEOUT_MS = 20 * 60_000;

function usage(message?: string): never {
  if (message) process.stderr.write(`bench: ${message}\n`);
  process.stderr.write(
    'usage: node dist/bench/run.js [--sizes 3,10,25] [--quick] [--reps N] [--out DIR] [--peers manual,ansible,regen-p1,regen-default,regen-wide] [--no-micro]\n',
  );
  process.exit(message ? 64 : 0);
}

function parseArgs(argv: string[]): Options {
  const repo = repoRoot();
  const o: Options = {
    sizes: [3, 10, 25],
    quick: false,
    reps: 1,
    out: path.join(repo, 'bench', 'results'),
    peers: ALL_PEERS,
    micro: true,
    statusTransitions: 10_000,
    statusRuns: 21,
    checkpointSamples: 1_000,
  };
  let sizesGiven = false;
  let peersGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === '--help' || a === '-h') usage();
    else if (a === '--quick') o.quick = true;
    else if (a === '--no-micro') o.micro = false;
    else if (a === '--sizes') {
      o.sizes = value().split(',').map((s) => Number(s.trim()));
      sizesGiven = true;
      if (o.sizes.some((n) => !Number.isInteger(n) || n < 2 || n > 30)) usage('--sizes: node counts 2..30');
    } else if (a === '--reps') {
      o.reps = Number(value());
      if (!Number.isInteger(o.reps) || o.reps < 1 || o.reps > 10) usage('--reps: 1..10');
    } else if (a === '--out') o.out = path.resolve(value());
    else if (a === '--peers') {
      const ps = value().split(',') as PeerId[];
      const bad = ps.filter((p) => !ALL_PEERS.includes(p));
      if (bad.length > 0) usage(`unknown peer ${bad.join(', ')}`);
      o.peers = ps;
      peersGiven = true;
    } else usage(`unknown option ${a}`);
  }
  if (o.quick) {
    if (!sizesGiven) o.sizes = [3, 10];
    // regen --parallel 1 is as slow as the manual script and says little the default does not.
    if (!peersGiven) o.peers = ALL_PEERS.filter((p) => p !== 'regen-p1');
    o.statusRuns = 11;
  }
  return o;
}

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
}

function ensureAnsible(): void {
  if (spawnSync('ansible-playbook', ['--version'], { stdio: 'ignore' }).status === 0) return;
  log("ansible-playbook missing: installing Debian's ansible package");
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'ansible'], { stdio: 'inherit', env });
  if (r.status !== 0) throw new Error('apt-get install ansible failed: the Ansible peer cannot run');
}

const LABELS: Record<PeerId, (nodes: number) => string> = {
  manual: () => 'manual (seed 000 over OpenSSH, sequential)',
  ansible: (n) => `Ansible playbook (forks ${Math.min(n, 25)})`,
  'regen-p1': () => 'regen --parallel 1',
  'regen-default': () => `regen (default, --parallel ${REGEN_DEFAULT_PARALLEL})`,
  'regen-wide': (n) => `regen --parallel ${n - 1}`,
};

class Bench {
  readonly root: string;
  #current: string | null = null;
  /** The regen run with the largest snapshot so far: the status benchmark's source. */
  largest: { db: string; snapshot: string } | null = null;

  constructor(readonly repo: string) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-bench-'));
  }

  async withLab<T>(name: string, nodes: number, fn: (lab: Lab) => Promise<T>): Promise<T> {
    const dir = path.join(this.root, name);
    this.#current = dir;
    try {
      const lab = await freshLab(dir, nodes, log);
      return await fn(lab);
    } finally {
      await labDown(dir).catch((e: unknown) => log(`  down ${dir}: ${String(e)}`));
      fs.rmSync(dir, { recursive: true, force: true });
      this.#current = null;
    }
  }

  async abort(): Promise<void> {
    if (this.#current !== null) await labDown(this.#current).catch(() => undefined);
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  cleanup(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  /** One peer, once, on a fresh lab. */
  async runPeer(peer: PeerId, nodes: number, rep: number): Promise<PeerResult> {
    const name = `s${nodes}-${peer}-r${rep}`;
    const work = path.join(this.root, `${name}-work`);
    fs.mkdirSync(work, { recursive: true, mode: 0o700 });
    const secretFile = path.join(work, 'new-secret');
    const secret = writeSecret(secretFile);
    const parallel = peer === 'regen-p1' ? 1 : peer === 'regen-wide' ? nodes - 1 : null;
    const result: PeerResult = {
      peer,
      label: LABELS[peer](nodes),
      healthy: false,
      failure: null,
      exitCode: null,
      wallMs: null,
      downtimeMs: null,
      ...(parallel !== null ? { parallel } : peer === 'regen-default' ? { parallel: REGEN_DEFAULT_PARALLEL } : {}),
    };
    await this.withLab(name, nodes, async (lab) => {
      await injectLatency(lab, REALISTIC_LATENCY);
      const watch = watchDowntime(lab, PEER_TIMEOUT_MS);
      let run: PeerRun;
      if (peer === 'manual') run = await runManual(this.repo, lab, secretFile, PEER_TIMEOUT_MS);
      else if (peer === 'ansible') run = await runAnsible(this.repo, lab, work, secretFile, Math.min(nodes, 25), PEER_TIMEOUT_MS);
      else run = await runRegen(this.repo, lab, work, secretFile, parallel, PEER_TIMEOUT_MS);
      const window = watch.finish();
      result.exitCode = run.timed.code;
      const health = run.timed.code === 0 ? await checkHealth(lab, secret) : `exit ${run.timed.code}: ${tail(run.timed.stderr || run.timed.stdout)}`;
      result.healthy = health === null && window.ms !== null;
      result.failure = health ?? window.why;
      if (result.healthy) {
        result.wallMs = run.timed.wallMs;
        result.downtimeMs = window.ms;
      }
      if (peer.startsWith('regen')) {
        result.cpuMs = run.cpuMs ?? null;
        result.peakRssKiB = run.peakRssKiB ?? null;
        result.downtimeSelfMs = run.downtimeSelfMs ?? null;
        result.remoteCommands = run.remoteCommands ?? null;
        if (run.db !== undefined && run.largestSnapshot && (this.largest === null || run.largestSnapshot.length >= this.largest.snapshot.length)) {
          const keep = path.join(this.root, 'status-source.db');
          fs.copyFileSync(run.db, keep);
          for (const ext of ['-wal', '-shm']) if (fs.existsSync(run.db + ext)) fs.copyFileSync(run.db + ext, keep + ext);
          this.largest = { db: keep, snapshot: run.largestSnapshot };
        }
      }
      log(
        `  ${result.label}: ${result.healthy ? 'healthy' : `FAILED (${result.failure ?? '?'})`}, wall ${(run.timed.wallMs / 1000).toFixed(2)} s, ` +
          `downtime ${window.ms === null ? '—' : (window.ms / 1000).toFixed(2)} s` +
          (result.cpuMs != null ? `, CPU ${(result.cpuMs / 1000).toFixed(2)} s, RSS ${((result.peakRssKiB ?? 0) / 1024).toFixed(0)} MiB` : ''),
      );
    });
    fs.rmSync(work, { recursive: true, force: true });
    return result;
  }
}

/** The error a peer printed: its first lines (regen's next-step hints follow them). */
function tail(s: string): string {
  const t = s.trim().split('\n').slice(0, 3).join(' | ');
  return t.length > 400 ? `${t.slice(0, 400)}…` : t;
}

/** Median of each figure over repetitions; a peer that failed once is reported failed. */
function combine(reps: PeerResult[]): PeerResult {
  const first = reps[0] as PeerResult;
  const failed = reps.find((r) => !r.healthy);
  if (failed !== undefined) return { ...failed, failure: `${reps.filter((r) => !r.healthy).length}/${reps.length} runs: ${failed.failure ?? ''}` };
  const med = (f: (r: PeerResult) => number | null | undefined): number | null => {
    const xs = reps.map(f).filter((x): x is number => typeof x === 'number');
    return xs.length === 0 ? null : median(xs);
  };
  return {
    ...first,
    wallMs: med((r) => r.wallMs),
    downtimeMs: med((r) => r.downtimeMs),
    ...(first.peer.startsWith('regen')
      ? {
          cpuMs: med((r) => r.cpuMs),
          peakRssKiB: med((r) => r.peakRssKiB),
          downtimeSelfMs: med((r) => r.downtimeSelfMs),
          remoteCommands: med((r) => r.remoteCommands),
        }
      : {}),
  };
}

async function micro(bench: Bench, o: Options): Promise<MicroResult> {
  const repo = bench.repo;
  const main = path.join(repo, 'dist', 'cli', 'main.js');
  // A snapshot from a real run; without one (no regen peer ran), the resume run below provides it.
  let resume: { ms: number | null; detail: string } = { ms: null, detail: '' };
  log('resume latency: 3-node lab, run killed during the leader setup, then regen resume');
  await bench.withLab('resume', 3, async (lab) => {
    await injectLatency(lab, REALISTIC_LATENCY);
    const work = path.join(bench.root, 'resume-work');
    const secretFile = path.join(work, 'new-secret');
    fs.mkdirSync(work, { recursive: true, mode: 0o700 });
    const secret = writeSecret(secretFile);
    resume = await resumeLatency(repo, lab, work, secretFile, secret);
    const db = path.join(work, 'regen.db');
    if (bench.largest === null && fs.existsSync(db)) {
      const { readRegenDb } = await import('./lib/perf-peers.js');
      const snap = readRegenDb(db).largestSnapshot;
      if (snap) {
        const keep = path.join(bench.root, 'status-source.db');
        fs.copyFileSync(db, keep);
        bench.largest = { db: keep, snapshot: snap };
      }
    }
  });
  log(`  ${resume.detail}`);

  log(`checkpoint cost: ${o.checkpointSamples} checkpoints on a file database in ${bench.root}`);
  const snapshot = bench.largest?.snapshot ?? '{}';
  const cp = checkpointCost(bench.root, snapshot, o.checkpointSamples);
  const floor = fsyncFloor(bench.root, 200);
  log(`  median ${(cp.medianUs / 1000).toFixed(3)} ms, p99 ${(cp.p99Us / 1000).toFixed(3)} ms; one fdatasync: median ${(floor.medianUs / 1000).toFixed(3)} ms`);

  let statusMs: number[] = [];
  let statusJsonMs: number[] = [];
  const statusDb = path.join(bench.root, 'status.db');
  if (bench.largest !== null) {
    log(`regen status: building a run of ${o.statusTransitions} transitions (${snapshot.length} B snapshots)`);
    buildStatusDb(statusDb, bench.largest.db, snapshot, o.statusTransitions);
    statusMs = await cliLatency([process.execPath, main, 'status', '--db', statusDb], o.statusRuns, repo);
    statusJsonMs = await cliLatency([process.execPath, main, 'status', '--db', statusDb, '--json'], o.statusRuns, repo);
    log(`  status median ${median(statusMs).toFixed(1)} ms, --json ${median(statusJsonMs).toFixed(1)} ms`);
  }
  const versionMs = await cliLatency([process.execPath, main, '--version'], o.statusRuns, repo);
  return {
    statusTransitions: o.statusTransitions,
    statusSnapshotBytes: snapshot.length,
    statusMedianMs: statusMs.length > 0 ? median(statusMs) : null,
    statusP90Ms: statusMs.length > 0 ? percentile(statusMs, 90) : null,
    statusJsonMedianMs: statusJsonMs.length > 0 ? median(statusJsonMs) : null,
    statusRuns: o.statusRuns,
    cliStartMedianMs: median(versionMs),
    checkpointMedianUs: cp.medianUs,
    checkpointP99Us: cp.p99Us,
    checkpointSamples: o.checkpointSamples,
    checkpointDir: `${fsTypeOf(bench.root)} at ${bench.root}`,
    fsyncMedianUs: floor.medianUs,
    fsyncP90Us: floor.p90Us,
    resumeFirstCommandMs: resume.ms,
    resumeDetail: resume.detail,
  };
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[:]/g, '').replace(/\..*$/, 'Z');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) usage('the lab needs root');
  const repo = repoRoot();
  if (!fs.existsSync(path.join(repo, 'dist', 'cli', 'main.js'))) usage('dist/ is missing: run `npm run build` first');
  if (o.peers.includes('ansible')) ensureAnsible();
  const started = new Date();
  const loadAtStart = os.loadavg()[0] ?? 0;
  const bench = new Bench(repo);
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: taking the current lab down`);
    void bench.abort().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const profile = REALISTIC_LATENCY;
  log(`latency on every node: ${Object.entries(profile.keys).map(([k, v]) => `${k} ${v} ms`).join(', ')}`);
  log(`load average ${loadAtStart.toFixed(1)} on ${os.availableParallelism()} CPU; sizes ${o.sizes.join(', ')}; peers ${o.peers.join(', ')}; ${o.reps} repetition(s); work in ${bench.root}`);

  try {
    const rounds = o.quick ? 1 : 3;
    log(`base cost of each seed step: 2-node lab, no latency, ${rounds} round(s), best kept`);
    const baseMs = await bench.withLab('calibration', 2, (lab) => measureBaseCosts(lab, rounds, path.join(bench.root, 'calibration-secret')));
    log(`  ${Object.entries(baseMs).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')} (ms)`);

    const sizes: SizeResult[] = [];
    for (const nodes of o.sizes) {
      log(`== ${nodes} nodes`);
      const peers: PeerResult[] = [];
      for (const peer of o.peers) {
        // With as many slots as followers or more, "wide" is the default again.
        if (peer === 'regen-wide' && nodes - 1 <= REGEN_DEFAULT_PARALLEL) continue;
        const reps: PeerResult[] = [];
        for (let rep = 0; rep < o.reps; rep++) reps.push(await bench.runPeer(peer, nodes, rep));
        peers.push(combine(reps));
      }
      const critical = criticalPath(profile, baseMs, nodes - 1);
      sizes.push({ nodes, followers: nodes - 1, critical, peers, ratios: sizeRatios(peers, critical) });
      log(`  critical path ${(critical.totalMs / 1000).toFixed(2)} s, downtime chain ${(critical.downtimeMs / 1000).toFixed(2)} s`);
    }

    const microResult = o.micro ? await micro(bench, o) : null;
    const finished = new Date();
    const report: BenchReport = {
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      command: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
      quick: o.quick,
      repetitions: o.reps,
      machine: machineInfo(loadAtStart),
      latency: profile,
      baseMs,
      sizes,
      micro: microResult,
      targets: checkTargets(sizes, microResult),
      notes: [
        'Every peer runs on a freshly brought-up lab (1 mesh server, the rest agents, password file lost) and is ' +
          'timed only if the mesh ends healthy: every node an alive member as the leader sees it with the new token, ' +
          "every node holding the leader's credentials file.",
        "Downtime is measured the same way for every peer, on the lab: from the moment the leader's agent process " +
          'is gone (polled every 10 ms) to the moment the last agent logs that it listens again.',
        'Critical path: the seed steps on the leader one after the other (preliminaries included) plus one ' +
          "follower's steps (followers all at once); each step costs its injected latency plus its base cost. The " +
          "downtime chain is the part from the leader's stop on. Verifications (consul members) are optional in the " +
          "runbook and not part of either; regen's are in its overhead.",
        `The machine has ${os.availableParallelism()} CPU: every simulated command is a node.js process, so many ` +
          'followers set up at once compete for CPU, which neither the critical path nor the injected latency models.',
      ],
    };
    fs.mkdirSync(o.out, { recursive: true });
    const base = path.join(o.out, stamp(started));
    const md = renderMarkdown(report);
    fs.writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
    fs.writeFileSync(`${base}.md`, md);
    fs.writeFileSync(path.join(o.out, 'latest.md'), md);
    process.stdout.write(md);
    log(`wrote ${base}.md, ${base}.json and ${path.join(o.out, 'latest.md')}`);
  } finally {
    if (!interrupted) bench.cleanup();
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((e: unknown) => {
    log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  });
}
