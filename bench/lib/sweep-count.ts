/**
 * How the crash sweep counts its points, as pure functions over the recorded outcome of each point:
 * - killed: regen was really killed there (a point the run finished before is not a kill point);
 * - inside: killed while a step was unfinished (an intent without outcome in the journal at the kill);
 * - healthy: the mesh checked from the outside after the resumes;
 * - looping: a resume exited 5 (needs an operator) and the next one exited 5 again: an operator would be asked the
 *   same question forever, so the sweep stops resuming and flags it (healthy or not).
 */

/** What a point's outcome must say for it to be counted. */
export interface CountedPoint {
  killed: boolean;
  openIntentsAtKill: number;
  healthy: boolean;
  resumeExitCodes: number[];
  /** Resumes that were themselves killed by the sweep (their exit code is not theirs). */
  resumeKilled?: boolean[];
}

export interface SweepCounts {
  tried: number;
  killed: number;
  inside: number;
  healthy: number;
  /** Killed points that ended healthy: the figure the sweep is for. */
  killedHealthy: number;
  looping: number;
}

/** Exit code of a resume that needs an operator's decision. */
const NEEDS_OPERATOR = 5;

/** True when two resumes in a row (neither killed by the sweep) exited 5: resuming again would ask the same. */
export function loopsOnNeedsOperator(codes: number[], killed: boolean[] = []): boolean {
  for (let i = 1; i < codes.length; i++) {
    if (codes[i] === NEEDS_OPERATOR && codes[i - 1] === NEEDS_OPERATOR && killed[i] !== true && killed[i - 1] !== true) return true;
  }
  return false;
}

export function countPoints(points: CountedPoint[]): SweepCounts {
  const killed = points.filter((p) => p.killed);
  return {
    tried: points.length,
    killed: killed.length,
    inside: killed.filter((p) => p.openIntentsAtKill > 0).length,
    healthy: points.filter((p) => p.healthy).length,
    killedHealthy: killed.filter((p) => p.healthy).length,
    looping: points.filter((p) => loopsOnNeedsOperator(p.resumeExitCodes, p.resumeKilled)).length,
  };
}

export function countsLine(c: SweepCounts): string {
  return `tried ${c.tried}; killed ${c.killed} (inside a step ${c.inside}); healthy ${c.healthy} (of the killed: ${c.killedHealthy}); resumes looping on exit 5: ${c.looping}`;
}
