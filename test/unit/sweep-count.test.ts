/**
 * The crash sweep's counts: a point the run finished before is not a kill point; "inside" needs an unfinished
 * step at the kill; a resume that exits 5 twice in a row is flagged, a killed resume's code does not count.
 */
import { describe, expect, it } from 'vitest';
import { countPoints, loopsOnNeedsOperator } from '../../bench/lib/sweep-count.js';

const point = (o: Partial<Parameters<typeof countPoints>[0][number]> = {}) => ({ killed: true, openIntentsAtKill: 0, healthy: true, resumeExitCodes: [0], ...o });

describe('crash sweep counts', () => {
  it('separates killed, inside and healthy', () => {
    const c = countPoints([
      point({ openIntentsAtKill: 1 }),
      point(),
      point({ killed: false, resumeExitCodes: [] }),
      point({ healthy: false, openIntentsAtKill: 2, resumeExitCodes: [4, 4] }),
    ]);
    expect(c).toEqual({ tried: 4, killed: 3, inside: 2, healthy: 3, killedHealthy: 2, looping: 0 });
  });

  it('flags two resumes in a row that exit 5, unless the sweep killed one of them', () => {
    expect(loopsOnNeedsOperator([5, 5])).toBe(true);
    expect(loopsOnNeedsOperator([5, 0])).toBe(false);
    expect(loopsOnNeedsOperator([5, 4, 5])).toBe(false);
    expect(loopsOnNeedsOperator([5, 5], [true, false])).toBe(false);
    expect(countPoints([point({ resumeExitCodes: [4, 5, 5] })]).looping).toBe(1);
  });
});
