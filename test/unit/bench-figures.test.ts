import { describe, expect, it } from 'vitest';
import {
  REALISTIC_LATENCY,
  SEED_STEPS,
  bestRegen,
  checkTargets,
  criticalPath,
  median,
  percentile,
  ratio,
  renderMarkdown,
  sizeRatios,
  type BenchReport,
  type LatencyProfile,
  type PeerResult,
} from '../../bench/lib/perf-figures.js';

const profile: LatencyProfile = { keys: { 'service-discover setup': 3000, 'systemctl stop': 500, consul: 100 }, why: {} };
const base: Record<string, number> = Object.fromEntries(SEED_STEPS.map((s) => [s.id, 10]));

function peer(p: Partial<PeerResult> & Pick<PeerResult, 'peer'>): PeerResult {
  return { label: p.peer, healthy: true, failure: null, exitCode: 0, wallMs: null, downtimeMs: null, ...p };
}

describe('critical path', () => {
  it('is the leader chain plus one follower chain, whatever the number of followers', () => {
    const cp3 = criticalPath(profile, base, 2);
    const cp25 = criticalPath(profile, base, 24);
    // leader: reset-index 100, stop 500, setup 3000; follower: stop 500, setup 3000; 11 steps at 10 ms each.
    expect(cp3.injectedMs).toBe(100 + 500 + 3000 + 500 + 3000);
    expect(cp3.totalMs).toBe(cp3.injectedMs + 11 * 10);
    expect(cp25.totalMs).toBe(cp3.totalMs);
  });

  it('counts the downtime chain from the leader stop on', () => {
    const cp = criticalPath(profile, base, 2);
    // leader stop, wipe, setup; follower copy, stop, wipe, setup.
    expect(cp.downtimeMs).toBe(500 + 3000 + 500 + 3000 + 7 * 10);
  });

  it('leaves the follower steps out on a single server', () => {
    const cp = criticalPath(profile, base, 0);
    expect(cp.steps.every((s) => s.id.startsWith('leader.'))).toBe(true);
    expect(cp.downtimeMs).toBe(500 + 3000 + 3 * 10);
  });

  it('adds a "*" latency to every step', () => {
    const star: LatencyProfile = { keys: { '*': 5 }, why: {} };
    expect(criticalPath(star, {}, 1).injectedMs).toBe(5 * SEED_STEPS.length);
  });

  it('knows a latency for every keyed seed step of the realistic profile', () => {
    for (const s of SEED_STEPS) if (s.latencyKey !== null) expect(REALISTIC_LATENCY.keys[s.latencyKey]).toBeGreaterThan(0);
  });
});

describe('statistics and ratios', () => {
  it('median and percentile', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(Number.isNaN(median([]))).toBe(true);
    expect(percentile([5, 1, 4, 2, 3], 90)).toBe(5);
    expect(percentile([5, 1, 4, 2, 3], 20)).toBe(1);
  });

  it('has no ratio where a side is missing or zero', () => {
    expect(ratio(10, 4)).toBe(2.5);
    expect(ratio(null, 4)).toBeNull();
    expect(ratio(10, null)).toBeNull();
    expect(ratio(10, 0)).toBeNull();
  });

  it('compares only healthy peers, and picks the fastest healthy regen', () => {
    const peers = [
      peer({ peer: 'ansible', wallMs: 30_000, downtimeMs: 20_000 }),
      peer({ peer: 'manual', healthy: false, failure: 'not alive: mail2' }),
      peer({ peer: 'regen-p1', wallMs: 20_000, downtimeMs: 15_000 }),
      peer({ peer: 'regen-default', wallMs: 10_000, downtimeMs: 8_000 }),
      peer({ peer: 'regen-wide', healthy: false, wallMs: 5_000 }),
    ];
    const cp = criticalPath(profile, base, 2);
    const r = sizeRatios(peers, cp);
    expect(r['regen-default ÷ ansible']).toBeCloseTo(1 / 3);
    expect(r['regen-default ÷ manual']).toBeNull();
    expect(r['regen-wide ÷ ansible']).toBeNull();
    expect(r['regen-default ÷ critical path']).toBeCloseTo(10_000 / cp.totalMs);
    expect(bestRegen(peers)?.peer).toBe('regen-default');
  });
});

describe('targets and report', () => {
  const cp = criticalPath(profile, base, 24);
  const sizes = [
    {
      nodes: 25,
      followers: 24,
      critical: cp,
      peers: [peer({ peer: 'ansible', wallMs: cp.totalMs * 4 }), peer({ peer: 'regen-wide', label: 'regen --parallel 24', wallMs: cp.totalMs * 1.2, downtimeMs: cp.downtimeMs })],
      ratios: {},
    },
  ];

  it('checks the issue targets on the largest size', () => {
    const t = checkTargets(sizes, null);
    expect(t.map((x) => x.met)).toEqual([false, true, true]);
    expect(t[0]?.measured).toBe('1.20×');
  });

  it('renders a markdown report with the machine and every peer', () => {
    const report: BenchReport = {
      startedAt: '2026-01-01T00:00:00.000Z',
      finishedAt: '2026-01-01T00:10:00.000Z',
      command: 'node dist/bench/run.js --quick',
      quick: true,
      repetitions: 1,
      machine: {
        hostname: 'h',
        cpuModel: 'cpu',
        nproc: 2,
        memoryMiB: 1024,
        kernel: 'k',
        os: 'Debian',
        node: 'v20',
        ansible: null,
        openssh: null,
        loadAverage: { start: 0.5, end: 1 },
      },
      latency: profile,
      baseMs: base,
      sizes,
      micro: null,
      targets: checkTargets(sizes, null),
      notes: ['a note'],
    };
    const md = renderMarkdown(report);
    expect(md).toContain('## 25 nodes');
    expect(md).toContain('regen --parallel 24');
    expect(md).toContain('2 CPU');
    expect(md).toContain('- a note');
  });
});
