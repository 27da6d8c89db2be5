#!/usr/bin/env node
/**
 * Crash sweep on the lab (root, after `npm run build`):
 *
 *   node dist/bench/crash-sweep.js --all                      every kill point of every topology
 *   node dist/bench/crash-sweep.js --topology 1+2 --sample 6  six points spread over one topology's run
 *
 * For each kill point: a fresh lab, `regen start` killed with SIGKILL at that point, `regen resume` until it exits
 * 0 (at most 10 times; some resumes are killed too), then the mesh checked over ssh and in the database without
 * regen's code (bench/lib/health.ts). Prints "kill points tried: N, healthy: M" per topology and in total, writes
 * each topology's result into bench/results/crash-sweep.json as it finishes (other topologies' entries are kept),
 * and exits 1 when a point ended unhealthy.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from '../test/lab/lab.js';
import { sweep, TOPOLOGIES, type SweepResult } from './lib/sweep.js';
import { countPoints, countsLine } from './lib/sweep-count.js';

interface Args {
  topologies: string[];
  sample: number | undefined;
  out: string;
}

function usage(msg: string): never {
  process.stderr.write(`crash-sweep: ${msg}\nusage: crash-sweep (--all | --topology ${Object.keys(TOPOLOGIES).join('|')} …) [--sample K] [--out FILE]\n`);
  process.exit(2);
}

function parse(argv: string[]): Args {
  const topologies: string[] = [];
  let sample: number | undefined;
  let all = false;
  let out = path.join(repoRoot(), 'bench', 'results', 'crash-sweep.json');
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === '--all') all = true;
    else if (a === '--topology') topologies.push(...next().split(','));
    else if (a === '--sample') {
      const n = Number(next());
      if (!Number.isInteger(n) || n < 1) usage('--sample takes a whole number ≥ 1');
      sample = n;
    } else if (a === '--out') out = path.resolve(next());
    else usage(`unknown argument ${a}`);
  }
  if (all && topologies.length === 0) topologies.push(...Object.keys(TOPOLOGIES));
  if (topologies.length === 0) usage('name a topology or pass --all');
  for (const t of topologies) if (!TOPOLOGIES[t]) usage(`unknown topology ${t}`);
  return { topologies, sample, out };
}

interface ResultFile {
  at: string;
  host: { cpus: number };
  tried: number;
  healthy: number;
  topologies: Record<string, SweepResult & { sample: number | 'all'; at: string; sweepMs: number }>;
}

/** Each topology's result replaces its own entry in the file, so topologies can be swept by separate commands. */
function save(args: Args, r: SweepResult, sweepMs: number): void {
  let file: ResultFile = { at: '', host: { cpus: os.cpus().length }, tried: 0, healthy: 0, topologies: {} };
  try {
    file = JSON.parse(fs.readFileSync(args.out, 'utf8')) as ResultFile;
  } catch {
    // first result
  }
  const at = new Date().toISOString();
  file.topologies[r.topology] = { ...r, sample: args.sample ?? 'all', at, sweepMs };
  file.at = at;
  file.host = { cpus: os.cpus().length };
  file.tried = Object.values(file.topologies).reduce((s, t) => s + t.tried, 0);
  file.healthy = Object.values(file.topologies).reduce((s, t) => s + t.healthy, 0);
  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  fs.writeFileSync(args.out, `${JSON.stringify(file, null, 2)}\n`);
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  if (process.getuid?.() !== 0) usage('the lab needs root');
  // Labs live outside the temporary-directory prefix that test runs reap, so a test run ending cannot take them.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-sweep-'));
  const results: SweepResult[] = [];
  const t0 = Date.now();
  try {
    for (const t of args.topologies) {
      const topo = TOPOLOGIES[t];
      if (!topo) continue;
      const r = await sweep(root, topo, { ...(args.sample === undefined ? {} : { sample: args.sample }), log: (l) => process.stdout.write(`${l}\n`) });
      results.push(r);
      process.stdout.write(`topology ${r.topology}: ${r.tried} of ${r.pointsAvailable} points: ${countsLine(r.counts)}; ${r.msPerPoint} ms per point\n`);
      save(args, r, Date.now() - t0);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  const all = countPoints(results.flatMap((r) => r.points));
  const baselinesOk = results.every((r) => r.baselineHealthy);
  process.stdout.write(`all topologies: ${countsLine(all)}\n`);
  process.stdout.write(`result: ${args.out}\n`);
  return all.tried === all.healthy && all.looping === 0 && baselinesOk ? 0 : 1;
}

main().then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    process.stderr.write(`crash-sweep: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
