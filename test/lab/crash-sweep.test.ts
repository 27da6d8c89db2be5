/**
 * The crash sweep's CI sample: six kill points spread over a 1 server + 2 agents recovery (transitions, step
 * starts, and inside slowed remote commands), each on a fresh lab, killed with SIGKILL, resumed until done and
 * checked from outside. The full sweep is `node dist/bench/crash-sweep.js --all` (bench/lib/sweep.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertLabReady, labSkip } from './harness.js';
import { baseline, killPoints, runPoint, sample, TOPOLOGIES } from '../../bench/lib/sweep.js';

const skip = labSkip();

describe.skipIf(skip !== null)('crash sweep sample (1 server + 2 agents)', () => {
  let root = '';
  afterAll(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('every sampled kill point ends with a healthy mesh after resume', async () => {
    assertLabReady();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-sweep-ci-'));
    const topo = TOPOLOGIES['1+2'];
    if (!topo) throw new Error('no 1+2 topology');
    const base = await baseline(root, topo);
    expect(base.health.problems).toEqual([]);
    const all = killPoints(base);
    // Both kinds of kill point, spread over the run: four at events, two inside remote commands.
    const chosen = [...sample(all.filter((p) => p.kind === 'event'), 4), ...sample(all.filter((p) => p.kind === 'inside' && p.step.endsWith('.setup')), 2)];
    expect(chosen).toHaveLength(6);
    const results = [];
    for (const [i, p] of chosen.entries()) results.push(await runPoint(root, topo, p, i));
    const report = results.map((r) => `${r.label}: ${r.healthy ? 'healthy' : r.problems.join('; ')}`);
    expect(results.every((r) => r.killed), report.join('\n')).toBe(true);
    expect(results.filter((r) => !r.healthy).map((r) => `${r.label}: ${r.problems.join('; ')}`)).toEqual([]);
    // The inside points really left an intent without outcome for resume to settle with its probe.
    for (const r of results.filter((x) => x.kind === 'inside')) {
      expect(r.openIntentsAtKill, r.label).toBeGreaterThan(0);
      expect(r.probed, r.label).toBeGreaterThan(0);
    }
  }, 900_000);
});
