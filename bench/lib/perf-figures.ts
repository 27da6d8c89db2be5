/**
 * The figures of the benchmark, as pure functions: the injected latencies, the critical path they imply, the
 * ratios between peers of one run, and the markdown report. Nothing here touches a lab.
 */
import { STEPS, type ChainKey } from '../../machines/catalogue.js';

/** Latency injected into the lab's simulated commands (lab fault `latency NODE KEY MS`), on every node. */
export interface LatencyProfile {
  /** Lab fault key → extra milliseconds. */
  readonly keys: Readonly<Record<string, number>>;
  /** Why each figure, for the report. */
  readonly why: Readonly<Record<string, string>>;
}

/**
 * What the commands cost on a real Carbonio node, roughly: setup starts consul, waits for its ACL bootstrap and
 * encrypts the credentials; a stop waits for consul's graceful leave; the consul CLI is a Go binary talking HTTP;
 * `carbonio prov` starts a JVM.
 */
export const REALISTIC_LATENCY: LatencyProfile = {
  keys: {
    'service-discover setup': 3000,
    'systemctl stop': 500,
    'systemctl start': 500,
    consul: 100,
    'carbonio prov': 1000,
  },
  why: {
    'service-discover setup': 'consul start, ACL bootstrap loop, certificates, gpg',
    'systemctl stop': "consul's graceful leave",
    'systemctl start': 'consul start (regen only restarts on recovery paths)',
    consul: 'any consul CLI call (Go binary start + HTTP)',
    'carbonio prov': 'JVM start of the provisioning CLI',
  },
};

/** One step of seed 000, the lab fault key whose latency applies to it (if any), and where it runs. */
export interface SeedStep {
  readonly id: string;
  readonly on: 'leader' | 'follower';
  /** Part of the downtime window (leader stop → last member alive)? */
  readonly downtime: boolean;
  readonly latencyKey: string | null;
}

/** A seed step that is also a step of regen's catalogue: its name, chain and downtime are the catalogue's. */
function seedStep(key: ChainKey<'leader' | 'follower'>, latencyKey: string | null): SeedStep {
  const e = STEPS[key];
  return { id: e.name, on: e.chain, downtime: e.downtime, latencyKey };
}

/** The runbook's remote commands: what any peer must at least do. Verifications are optional in the runbook. */
export const SEED_STEPS: readonly SeedStep[] = [
  { id: 'leader.servers', on: 'leader', downtime: false, latencyKey: 'carbonio prov' },
  { id: 'leader.status-leader', on: 'leader', downtime: false, latencyKey: null },
  seedStep('resetIndex', 'consul'),
  seedStep('resetFile', null),
  seedStep('leaderStop', 'systemctl stop'),
  seedStep('leaderWipe', null),
  seedStep('leaderSetup', 'service-discover setup'),
  seedStep('copyCredentials', null),
  seedStep('followerStop', 'systemctl stop'),
  seedStep('followerWipe', null),
  seedStep('followerSetup', 'service-discover setup'),
];

export function injectedMs(step: SeedStep, profile: LatencyProfile): number {
  const star = profile.keys['*'] ?? 0;
  return star + (step.latencyKey === null ? 0 : (profile.keys[step.latencyKey] ?? 0));
}

export interface CriticalPath {
  /** Whole procedure: leader chain (preliminaries included) + one follower (all followers in parallel). */
  totalMs: number;
  /** Leader stop → last member alive, at best: leader stop, wipe, setup + one follower's chain. */
  downtimeMs: number;
  /** Injected share of totalMs. */
  injectedMs: number;
  steps: Array<{ id: string; injectedMs: number; baseMs: number }>;
}

/**
 * The physical limit of one run on this lab: each seed step costs its injected latency plus its measured base
 * cost (the simulated command's own time, uncontended); the leader's steps run one after the other, followers
 * all at once, so only one follower's chain counts.
 */
export function criticalPath(profile: LatencyProfile, baseMs: Readonly<Record<string, number>>, followers: number): CriticalPath {
  let totalMs = 0;
  let downtimeMs = 0;
  let injected = 0;
  const steps: CriticalPath['steps'] = [];
  for (const s of SEED_STEPS) {
    if (s.on === 'follower' && followers === 0) continue;
    const inj = injectedMs(s, profile);
    const base = baseMs[s.id] ?? 0;
    steps.push({ id: s.id, injectedMs: inj, baseMs: base });
    totalMs += inj + base;
    injected += inj;
    if (s.downtime) downtimeMs += inj + base;
  }
  return { totalMs, downtimeMs, injectedMs: injected, steps };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i] as number;
}

/** a ÷ b, or null when either side is missing (a peer that failed is not timed). */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !(b > 0) || !Number.isFinite(a)) return null;
  return a / b;
}

export type PeerId = 'manual' | 'ansible' | 'regen-p1' | 'regen-default' | 'regen-wide';

export interface PeerResult {
  peer: PeerId;
  label: string;
  /** Health after the run: every member alive, every node with the leader's credentials. */
  healthy: boolean;
  /** Why it is not healthy or did not finish. */
  failure: string | null;
  exitCode: number | null;
  wallMs: number | null;
  /** Leader agent stopped → last agent up again with the new credentials, observed on the lab. */
  downtimeMs: number | null;
  /** regen only: CPU (user+system) and peak RSS of the regen process. */
  cpuMs?: number | null;
  peakRssKiB?: number | null;
  /** regen only: the window as regen itself recorded it (runs.downtime_started_at → ended_at). */
  downtimeSelfMs?: number | null;
  /** regen only: remote commands it ran, and how many SSH connections it opened (from the nodes' sshd logs). */
  remoteCommands?: number | null;
  parallel?: number;
}

export interface SizeResult {
  nodes: number;
  followers: number;
  critical: CriticalPath;
  peers: PeerResult[];
  /** Ratios within this run, null where a side failed. */
  ratios: Record<string, number | null>;
}

export const REGEN_PEERS: readonly PeerId[] = ['regen-p1', 'regen-default', 'regen-wide'];

/** The best (fastest healthy) regen result of a size. */
export function bestRegen(peers: readonly PeerResult[]): PeerResult | null {
  let best: PeerResult | null = null;
  for (const p of peers) {
    if (!REGEN_PEERS.includes(p.peer) || !p.healthy || p.wallMs === null) continue;
    if (best === null || (best.wallMs ?? Infinity) > p.wallMs) best = p;
  }
  return best;
}

export function sizeRatios(peers: readonly PeerResult[], critical: CriticalPath): Record<string, number | null> {
  const get = (id: PeerId): PeerResult | undefined => peers.find((p) => p.peer === id && p.healthy);
  const out: Record<string, number | null> = {};
  for (const id of REGEN_PEERS) {
    // A peer this run did not include has no ratio to show (one that failed shows —).
    if (!peers.some((p) => p.peer === id)) continue;
    const r = get(id);
    out[`${id} ÷ ansible`] = ratio(r?.wallMs, get('ansible')?.wallMs);
    out[`${id} ÷ manual`] = ratio(r?.wallMs, get('manual')?.wallMs);
    out[`${id} ÷ critical path`] = ratio(r?.wallMs, critical.totalMs);
    out[`${id} downtime ÷ downtime chain`] = ratio(r?.downtimeMs, critical.downtimeMs);
  }
  out['ansible downtime ÷ downtime chain'] = ratio(get('ansible')?.downtimeMs, critical.downtimeMs);
  out['manual downtime ÷ downtime chain'] = ratio(get('manual')?.downtimeMs, critical.downtimeMs);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Report

export interface MachineInfo {
  hostname: string;
  cpuModel: string;
  nproc: number;
  memoryMiB: number;
  kernel: string;
  os: string;
  node: string;
  ansible: string | null;
  openssh: string | null;
  /** 1-minute load average when the benchmark started and ended: other work on the machine skews every figure. */
  loadAverage: { start: number; end: number };
}

export interface MicroResult {
  /** `regen status` on a database holding this many transitions in one run. */
  statusTransitions: number;
  statusSnapshotBytes: number;
  statusMedianMs: number | null;
  statusP90Ms: number | null;
  statusJsonMedianMs: number | null;
  statusRuns: number;
  /** `regen --version`: node start-up plus the CLI's own imports, the floor under every command. */
  cliStartMedianMs: number | null;
  /** One checkpoint: appendTransition + a journal intent, synchronous=FULL, WAL, on a file database. */
  checkpointMedianUs: number | null;
  checkpointP99Us: number | null;
  checkpointSamples: number;
  checkpointDir: string;
  /** One 4 KiB write + fdatasync in the same directory: the disk's floor under a durable commit. */
  fsyncMedianUs: number | null;
  fsyncP90Us: number | null;
  /** Process start → first remote command of `regen resume` on an interrupted run. */
  resumeFirstCommandMs: number | null;
  resumeDetail: string;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  command: string;
  quick: boolean;
  repetitions: number;
  machine: MachineInfo;
  latency: LatencyProfile;
  baseMs: Record<string, number>;
  sizes: SizeResult[];
  micro: MicroResult | null;
  targets: Array<{ what: string; target: string; measured: string; met: boolean | null }>;
  notes: string[];
}

const fmtS = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '—' : (ms / 1000).toFixed(2));
const fmtX = (r: number | null | undefined): string => (r === null || r === undefined ? '—' : `${r.toFixed(2)}×`);
const fmtMs = (ms: number | null | undefined, digits = 1): string => (ms === null || ms === undefined ? '—' : ms.toFixed(digits));

/** Targets of the issue, checked against this run (a benchmark target, never a test threshold). */
export function checkTargets(sizes: readonly SizeResult[], micro: MicroResult | null): BenchReport['targets'] {
  const out: BenchReport['targets'] = [];
  const largest = [...sizes].sort((a, b) => b.nodes - a.nodes)[0];
  if (largest !== undefined) {
    const best = bestRegen(largest.peers);
    const ansible = largest.peers.find((p) => p.peer === 'ansible' && p.healthy);
    const n = largest.nodes;
    const r1 = ratio(best?.wallMs, largest.critical.totalMs);
    out.push({ what: `${n} nodes: regen (${best?.label ?? '—'}) ÷ critical path`, target: '≤ 1.05', measured: fmtX(r1), met: r1 === null ? null : r1 <= 1.05 });
    const r2 = ratio(ansible?.wallMs, best?.wallMs);
    out.push({ what: `${n} nodes: Ansible ÷ regen (${best?.label ?? '—'})`, target: '≥ 3', measured: fmtX(r2), met: r2 === null ? null : r2 >= 3 });
    const r3 = ratio(best?.downtimeMs, largest.critical.downtimeMs);
    out.push({ what: `${n} nodes: regen downtime ÷ (leader chain + slowest follower)`, target: '≤ 1.1', measured: fmtX(r3), met: r3 === null ? null : r3 <= 1.1 });
  }
  if (micro !== null) {
    out.push({
      what: `regen status, ${micro.statusTransitions} transitions (median)`,
      target: '≤ 150 ms',
      measured: `${fmtMs(micro.statusMedianMs)} ms`,
      met: micro.statusMedianMs === null ? null : micro.statusMedianMs <= 150,
    });
    out.push({
      what: 'one checkpoint (median)',
      target: '≤ 1 ms',
      measured: `${fmtMs(micro.checkpointMedianUs === null ? null : micro.checkpointMedianUs / 1000, 3)} ms`,
      met: micro.checkpointMedianUs === null ? null : micro.checkpointMedianUs <= 1000,
    });
  }
  return out;
}

export function renderMarkdown(r: BenchReport): string {
  const L: string[] = [];
  const m = r.machine;
  L.push(`# regen benchmark — ${r.startedAt}`, '');
  L.push(`\`${r.command}\`${r.quick ? ' (quick variant)' : ''}, ${r.repetitions} repetition(s) per peer and size (medians), ${r.startedAt} → ${r.finishedAt}.`, '');
  L.push(
    `Machine: ${m.cpuModel}, ${m.nproc} CPU, ${m.memoryMiB} MiB, ${m.os}, kernel ${m.kernel}, node ${m.node}, ` +
      `${m.ansible ?? 'ansible not installed'}, ${m.openssh ?? 'openssh ?'}; load average ${m.loadAverage.start.toFixed(1)} at the start, ` +
      `${m.loadAverage.end.toFixed(1)} at the end.`,
    '',
  );
  L.push('## Injected latency (every node)', '', '| command | ms | why |', '| --- | ---: | --- |');
  for (const [k, v] of Object.entries(r.latency.keys)) L.push(`| \`${k}\` | ${v} | ${r.latency.why[k] ?? ''} |`);
  L.push('');
  L.push('## Targets', '', '| what | target | measured | met |', '| --- | --- | --- | --- |');
  for (const t of r.targets) L.push(`| ${t.what} | ${t.target} | ${t.measured} | ${t.met === null ? '—' : t.met ? 'yes' : '**no**'} |`);
  L.push('');
  for (const s of r.sizes) {
    L.push(`## ${s.nodes} nodes (1 mesh server, ${s.followers} followers)`, '');
    L.push(
      `Critical path ${fmtS(s.critical.totalMs)} s (of which injected ${fmtS(s.critical.injectedMs)} s); ` +
        `downtime chain (leader stop → last member alive, at best) ${fmtS(s.critical.downtimeMs)} s.`,
      '',
    );
    L.push(
      '| peer | healthy | wall s | ÷ critical path | downtime s | ÷ downtime chain | regen CPU s | regen peak RSS MiB | regen\'s own downtime s | remote commands |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const p of s.peers) {
      L.push(
        `| ${p.label} | ${p.healthy ? 'yes' : `**no**: ${p.failure ?? ''}`} | ${fmtS(p.wallMs)} | ${fmtX(ratio(p.wallMs, s.critical.totalMs))} | ` +
          `${fmtS(p.downtimeMs)} | ${fmtX(ratio(p.downtimeMs, s.critical.downtimeMs))} | ${fmtS(p.cpuMs)} | ` +
          `${p.peakRssKiB === null || p.peakRssKiB === undefined ? '—' : (p.peakRssKiB / 1024).toFixed(0)} | ${fmtS(p.downtimeSelfMs)} | ${p.remoteCommands ?? '—'} |`,
      );
    }
    L.push('', '| ratio (same run) | value |', '| --- | ---: |');
    for (const [k, v] of Object.entries(s.ratios)) L.push(`| ${k} | ${fmtX(v)} |`);
    L.push('');
  }
  if (r.micro !== null) {
    const u = r.micro;
    L.push('## regen itself', '', '| figure | value |', '| --- | ---: |');
    L.push(`| \`regen status\`, one run of ${u.statusTransitions} transitions (${u.statusSnapshotBytes} B snapshots), median of ${u.statusRuns} | ${fmtMs(u.statusMedianMs)} ms (p90 ${fmtMs(u.statusP90Ms)}) |`);
    L.push(`| \`regen status --json\`, same database, median | ${fmtMs(u.statusJsonMedianMs)} ms |`);
    L.push(`| \`regen --version\` (start-up floor), median | ${fmtMs(u.cliStartMedianMs)} ms |`);
    L.push(`| one checkpoint (transition + journal intent, synchronous=FULL, ${u.checkpointDir}), median of ${u.checkpointSamples} | ${fmtMs(u.checkpointMedianUs === null ? null : u.checkpointMedianUs / 1000, 3)} ms (p99 ${fmtMs(u.checkpointP99Us === null ? null : u.checkpointP99Us / 1000, 3)}) |`);
    L.push(`| the disk's floor: one 4 KiB write + fdatasync, same directory, median | ${fmtMs(u.fsyncMedianUs === null ? null : u.fsyncMedianUs / 1000, 3)} ms (p90 ${fmtMs(u.fsyncP90Us === null ? null : u.fsyncP90Us / 1000, 3)}) |`);
    L.push(`| \`regen resume\`: process start → first remote command | ${fmtMs(u.resumeFirstCommandMs, 0)} ms |`);
    L.push('', u.resumeDetail, '');
  }
  L.push('## Base cost per seed step (measured on the lab, no latency injected, uncontended)', '', '| step | ms |', '| --- | ---: |');
  for (const [k, v] of Object.entries(r.baseMs)) L.push(`| ${k} | ${v.toFixed(0)} |`);
  L.push('');
  if (r.notes.length > 0) {
    L.push('## Notes', '');
    for (const n of r.notes) L.push(`- ${n}`);
    L.push('');
  }
  return `${L.join('\n')}\n`;
}
