/**
 * The step catalogue is the one place a step is declared: every step name is a string literal in exactly one
 * production file, and what lists steps (statechart, status columns, follower chain, plan) follows its order.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { CATALOGUE, chainOf, leaderStateAfter, statusColumns, STEP_NAMES } from '../../machines/catalogue.js';
import { recoveryMachine, RESUMABLE_STATES } from '../../machines/recovery.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PRODUCTION = ['machines', 'cli', 'adapters', 'store', 'bench'];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every string literal of a file (quotes or a template without substitutions); comments are not literals. */
function literals(file: string): Set<string> {
  const src = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false);
  const out = new Set<string>();
  const walk = (n: ts.Node): void => {
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) out.add(n.text);
    ts.forEachChild(n, walk);
  };
  walk(src);
  return out;
}

describe('the step catalogue', () => {
  const files = PRODUCTION.flatMap((d) => sourceFiles(path.join(ROOT, d))).map((f) => ({ file: path.relative(ROOT, f), literals: literals(f) }));

  it('scans the production code (a scan of nothing would prove nothing)', () => {
    expect(files.length).toBeGreaterThan(40);
    expect(files.map((f) => f.file)).toContain(path.join('machines', 'catalogue.ts'));
  });

  for (const name of ['backup', 'mesh.catalog-before', 'leader.reset-index', 'leader.reset-file', 'leader.stop', 'leader.wipe', 'mesh.stop-server', 'mesh.raft-aside', 'leader.raft-recovery', 'leader.rpc-hold', 'leader.setup', 'leader.verify', 'leader.rpc-hold-remove', 'follower.copy-credentials', 'follower.stop', 'follower.wipe', 'follower.setup', 'follower.verify', 'final.verify', 'final.catalog', 'harden.revoke', 'harden.node-tokens']) {
    it(`${name} is a string literal in machines/catalogue.ts and nowhere else in production code`, () => {
      expect(files.filter((f) => f.literals.has(name)).map((f) => f.file)).toEqual([path.join('machines', 'catalogue.ts')]);
    });
  }

  it('names each step once; the journal names of earlier runs are all still there', () => {
    expect(new Set(STEP_NAMES).size).toBe(STEP_NAMES.length);
    expect(STEP_NAMES.length).toBe(22);
  });

  it('every step state is a state of the statechart, and RETRY can re-enter it', () => {
    type StateNode = { states: Record<string, StateNode> };
    const paths = (n: StateNode, prefix: string): string[] => Object.entries(n.states).flatMap(([k, c]) => [`${prefix}${k}`, ...paths(c, `${prefix}${k}.`)]);
    const ids = new Set(paths(recoveryMachine.root as unknown as StateNode, ''));
    expect(ids).toContain('leader.regenerated');
    for (const e of CATALOGUE) {
      expect(ids, e.state).toContain(e.state);
      expect(RESUMABLE_STATES).toContain(e.state);
    }
  });

  it('the statechart walks the leader chain in catalogue order; a conditional step is guarded', () => {
    const leader = chainOf('leader');
    const walked: string[] = [];
    let at: string = leader[0]?.state ?? '';
    for (let i = 0; i < leader.length; i++) {
      walked.push(at);
      const next = leaderStateAfter(at as never, 'regenerated');
      at = `leader.${next[0]?.target ?? ''}`;
    }
    expect(walked).toEqual([
      'leader.resetIndex',
      'leader.resetFile',
      'leader.stop',
      'leader.wipe',
      'leader.raftRecovery',
      'leader.rpcHold',
      'leader.setup',
      'leader.verify',
      'leader.rpcHoldRemove',
    ]);
    expect(leaderStateAfter('leader.wipe', 'regenerated')).toEqual([{ guard: 'several-servers', target: 'raftRecovery' }, { target: 'rpcHold' }]);
    expect(leaderStateAfter('leader.verify', 'regenerated')).toEqual([{ target: 'rpcHoldRemove' }]);
    expect(leaderStateAfter('leader.rpcHoldRemove', 'regenerated')).toEqual([{ target: 'regenerated' }]);
  });

  it('status columns: each chain in its order, merged', () => {
    expect(statusColumns()).toEqual(['backup', 'reset-index', 'reset-file', 'copy-credentials', 'stop', 'wipe', 'isolate', 'raft-aside', 'raft-recovery', 'rpc-hold', 'setup', 'verify', 'rpc-hold-off', 'final']);
  });
});
