/**
 * A sample of the crash sweep re-run with the database lost: each point on a fresh 1 server + 2 agents lab,
 * regen killed with SIGKILL, its database deleted, then `regen resume --from-cluster` into a fresh database
 * (bench/lib/sweep.ts, mode lost-db), and the mesh checked from outside. The counts are reported as they are.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertLabReady, labSkip } from './harness.js';
import { baseline, killPoints, runPoint, sample, TOPOLOGIES } from '../../bench/lib/sweep.js';

const skip = labSkip();

describe.skipIf(skip !== null)('crash sweep sample with the database lost (1 server + 2 agents)', () => {
  let root = '';
  afterAll(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('every sampled kill point ends healthy after resume --from-cluster with a fresh database', async () => {
    assertLabReady();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-sweep-lostdb-'));
    const topo = TOPOLOGIES['1+2'];
    if (!topo) throw new Error('no 1+2 topology');
    const base = await baseline(root, topo);
    expect(base.health.problems).toEqual([]);
    const all = killPoints(base);
    const chosen = [...sample(all.filter((p) => p.kind === 'event'), 3), ...sample(all.filter((p) => p.kind === 'inside' && p.step.endsWith('.setup')), 1)];
    expect(chosen).toHaveLength(4);
    const results = [];
    for (const [i, p] of chosen.entries()) results.push(await runPoint(root, topo, p, i, () => undefined, 'lost-db'));
    const count = { points: results.length, killed: results.filter((r) => r.killed).length, inside: results.filter((r) => r.kind === 'inside').length, healthy: results.filter((r) => r.healthy).length };
    console.warn(`lost-db sample: ${JSON.stringify(count)}\n${results.map((r) => `  ${r.label}: ${r.healthy ? 'healthy' : r.problems.join('; ')} (exits ${r.resumeExitCodes.join(',')})`).join('\n')}`);
    expect(count.killed).toBe(count.points);
    expect(results.filter((r) => !r.healthy).map((r) => `${r.label}: ${r.problems.join('; ')}`)).toEqual([]);
  }, 1_200_000);
});
