/**
 * Inventory problems are collected, not thrown one at a time: an operator fixing a file wants every mistake in
 * one pass. Each problem names where (file, line, path), what is wrong and how to fix it.
 */
import { UsageError } from '../../machines/errors.js';

export interface InventoryIssue {
  /** Path inside the document, e.g. `nodes[2].ssh.port`; empty for the document itself. */
  path: string;
  /** 1-based line and column when the format gives positions. */
  line?: number;
  col?: number;
  problem: string;
  fix: string;
}

export function formatIssue(file: string, issue: InventoryIssue): string {
  const where = issue.line === undefined ? file : `${file}:${issue.line}${issue.col === undefined ? '' : `:${issue.col}`}`;
  const path = issue.path === '' ? '' : ` ${issue.path}:`;
  return `${where}:${path} ${issue.problem}; ${issue.fix}`;
}

/** One UsageError listing every problem; the hint is the fix of the first. */
export function inventoryError(file: string, issues: InventoryIssue[]): UsageError {
  const first = issues[0];
  if (issues.length === 1 && first !== undefined) {
    return new UsageError(`invalid inventory ${formatIssue(file, first)}`, first.fix);
  }
  const lines = issues.map((i) => `  ${formatIssue(file, i)}`);
  return new UsageError(
    `invalid inventory ${file}: ${issues.length} problems\n${lines.join('\n')}`,
    first === undefined ? undefined : first.fix,
  );
}

/** Edit distance, to suggest the key a typo meant. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  // Beyond a third of the word it is no longer a typo but a different word.
  return bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** Optimal string alignment distance: a swapped pair of letters ("prot") counts as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      (d[i] as number[])[j] = v;
    }
  }
  return at(a.length, b.length);
}

const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOSTNAME_RE = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);
export const CLUSTER_RE = /^[A-Za-z0-9._-]+$/;

export function isHostname(s: string): boolean {
  return s.length <= 253 && HOSTNAME_RE.test(s);
}
