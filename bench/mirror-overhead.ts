/**
 * What the cluster lock and the journal's mirror cost a run: one `regen start` on a fresh lab of N nodes (default
 * 10) with the realistic latency of bench/README.md, the mirror's own figures written by the run
 * (REGEN_MIRROR_STATS), and ratios within that one run: the time effects waited for a mirror write, plus the checks
 * and lock before the run and the last write and release after it, over the run's wall time.
 *
 *   npm run build && sudo node dist/bench/mirror-overhead.js [--nodes 10] [--out bench/results]
 *
 * The headline ratio counts the wall time during which at least one effect waited for the mirror (followers waiting
 * side by side count once), plus the checks and lock before the run and the last write after it: an upper bound
 * of the wall time the mirror and the lock add, since other followers may go on while one waits. The waits summed
 * over every effect are reported too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { labDown } from '../test/lab/lab.js';
import { REALISTIC_LATENCY } from './lib/perf-figures.js';
import { checkHealth, freshLab, injectLatency, timedRun, writeSecret } from './lib/perf-lab.js';
import { REGEN } from './lib/regen-process.js';

interface Stats {
  writes: number;
  writeMs: number;
  bytes: number;
  gateWaitMs: number;
  gateWallMs: number;
  gates: number;
  acquireMs: number;
  precheckMs: number;
  releaseMs: number;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

async function main(): Promise<void> {
  const nodes = Number(arg('nodes', '10'));
  const out = arg('out', path.join('bench', 'results'));
  const dir = `/tmp/regen-bench-mirror-${process.pid}`;
  fs.mkdirSync(dir, { recursive: true });
  const log = (l: string): void => void process.stderr.write(`${l}\n`);
  const lab = await freshLab(dir, nodes, log);
  try {
    await injectLatency(lab, REALISTIC_LATENCY);
    const secretFile = path.join(dir, 'new-secret');
    const secret = writeSecret(secretFile);
    const db = path.join(dir, 'regen.db');
    const statsFile = path.join(dir, 'mirror-stats.json');
    const args = ['start', '-i', lab.inventory, '--password-file', secretFile, '--yes', '--json', '--ssh-config', lab.sshConfig, '--known-hosts', lab.knownHosts, '--db', db];
    const run = await timedRun([process.execPath, REGEN, ...args], { env: { ...process.env, REGEN_MIRROR_STATS: statsFile }, timeoutMs: 600_000 });
    if (run.code !== 0) throw new Error(`regen start exited ${run.code}: ${run.stderr.slice(-500)}`);
    const unhealthy = await checkHealth(lab, secret);
    const stats = JSON.parse(fs.readFileSync(statsFile, 'utf8')) as Stats;
    const d = new Database(db, { readonly: true });
    const transitions = (d.prepare('SELECT count(*) AS n FROM transitions').get() as { n: number }).n;
    d.close();
    // Added wall time, bounded above: the time at least one effect waited for the mirror, plus what runs before and after.
    const added = stats.gateWallMs + stats.acquireMs + stats.releaseMs;
    const summed = stats.gateWaitMs + stats.acquireMs + stats.releaseMs;
    const report = {
      at: new Date().toISOString(),
      nodes,
      healthy: unhealthy === null,
      wallMs: Math.round(run.wallMs),
      transitions,
      mirrorWrites: stats.writes,
      meanWriteMs: +(stats.writeMs / Math.max(1, stats.writes)).toFixed(1),
      meanBytes: Math.round(stats.bytes / Math.max(1, stats.writes)),
      effects: stats.gates,
      effectWaitMs: stats.gateWaitMs,
      effectWaitWallMs: stats.gateWallMs,
      summedShareOfWall: +(summed / run.wallMs).toFixed(4),
      acquireMs: stats.acquireMs,
      precheckMs: stats.precheckMs,
      releaseMs: stats.releaseMs,
      addedPerTransitionMs: +(added / Math.max(1, transitions)).toFixed(1),
      addedShareOfWall: +(added / run.wallMs).toFixed(4),
    };
    const md = [
      `# Mirror and cluster lock overhead — ${report.at}`,
      '',
      `One \`regen start\` on a lab of ${nodes} nodes (1 mesh server), realistic latency (bench/README.md); healthy: ${report.healthy ? 'yes' : `no (${unhealthy})`}. Load average at the end: ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}.`,
      '',
      '| figure | value |',
      '| --- | ---: |',
      `| run wall time | ${(report.wallMs / 1000).toFixed(2)} s |`,
      `| transitions | ${transitions} |`,
      `| mirror writes (coalesced; 3 nodes each) | ${stats.writes} |`,
      `| mean mirror write | ${report.meanWriteMs} ms, ${report.meanBytes} bytes |`,
      `| effects that waited for the mirror | ${stats.gates} |`,
      `| their waits, summed over effects | ${stats.gateWaitMs} ms (${((summed / run.wallMs) * 100).toFixed(2)} % of the wall time with the two rows below) |`,
      `| wall time during which some effect waited | ${stats.gateWallMs} ms |`,
      `| half-done check + cluster lock before the run (side by side) | ${stats.acquireMs} ms |`,
      `| of which the half-done check, which opens the SSH connections | ${stats.precheckMs} ms |`,
      `| last write + lock release after the run | ${stats.releaseMs} ms |`,
      `| added per transition (waiting wall time + before + after, ÷ transitions) | ${report.addedPerTransitionMs} ms |`,
      `| **added ÷ run wall time (upper bound)** | **${(report.addedShareOfWall * 100).toFixed(2)} %** (target < 5 %) |`,
      '',
    ].join('\n');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'mirror-overhead.json'), `${JSON.stringify(report, null, 2)}\n`);
    fs.writeFileSync(path.join(out, 'mirror-overhead.md'), md);
    process.stdout.write(md);
  } finally {
    await labDown(dir).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
