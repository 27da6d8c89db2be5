/**
 * regen's own costs, apart from any peer: `regen status` on a long run, one checkpoint, CLI start-up, and how soon
 * `regen resume` reaches its first remote command.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { STEPS } from '../../machines/catalogue.js';
import { openStore } from '../../store/store.js';
import type { Lab } from '../../test/lab/lab.js';
import { median, percentile } from './perf-figures.js';
import { checkHealth, leaderOf, timedRun } from './perf-lab.js';
import { regenArgs } from './perf-peers.js';

/** Filesystem type of the directory holding `file` (checkpoint cost depends on it: tmpfs fsync is free). */
export function fsTypeOf(dir: string): string {
  let best = '';
  let type = 'unknown';
  for (const line of fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mnt, t] = line.split(' ');
    if (mnt === undefined || t === undefined) continue;
    if ((dir === mnt || dir.startsWith(mnt.endsWith('/') ? mnt : `${mnt}/`)) && mnt.length > best.length) {
      best = mnt;
      type = t;
    }
  }
  return type;
}

/** What the disk asks for one fdatasync of a 4 KiB write: the floor under any durable commit there. */
export function fsyncFloor(dir: string, samples: number): { medianUs: number; p90Us: number } {
  const file = path.join(dir, 'fsync-probe');
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(4096, 0x5a);
  const times: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const t0 = process.hrtime.bigint();
      fs.writeSync(fd, block);
      fs.fdatasyncSync(fd);
      times.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  return { medianUs: median(times), p90Us: percentile(times, 90) };
}

/** One checkpoint = a transition with its snapshot + a journal intent, each its own synchronous=FULL commit. */
export function checkpointCost(dir: string, snapshot: string, samples: number): { medianUs: number; p99Us: number } {
  const db = path.join(dir, 'checkpoint.db');
  const store = openStore(db);
  try {
    const runId = 'bench-checkpoint';
    store.createRun({ id: runId, cluster: 'bench', machineVersion: 'bench', inventoryJson: '{}', optionsJson: '{}' });
    const times: number[] = [];
    for (let i = 0; i < samples + 50; i++) {
      const t0 = process.hrtime.bigint();
      store.appendTransition({ runId, fromState: 'followers', event: 'xstate.done.actor.0', toState: 'followers', snapshot, machineVersion: 'bench' });
      store.beginStep({ runId, step: STEPS.followerSetup.name, node: `node${i}`, attempt: 1 });
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      // The first commits grow the file and the WAL: not what a running step pays.
      if (i >= 50) times.push(us);
    }
    return { medianUs: median(times), p99Us: percentile(times, 99) };
  } finally {
    store.close();
  }
}

/**
 * A database whose one run has `count` transitions with a real snapshot, plus the nodes and journal of the real run
 * the snapshot came from, so `regen status` reads what it would read after a long, many-times-resumed run.
 */
export function buildStatusDb(file: string, sourceDb: string, snapshot: string, count: number): void {
  const src = new Database(sourceDb, { readonly: true, fileMustExist: true });
  const run = src.prepare('SELECT * FROM runs ORDER BY created_at DESC LIMIT 1').get() as Record<string, unknown> | undefined;
  if (run === undefined) throw new Error(`no run in ${sourceDb}`);
  const runId = String(run['id']);
  const nodes = src.prepare('SELECT * FROM nodes WHERE run_id = ?').all(runId) as Array<Record<string, unknown>>;
  const journal = src.prepare('SELECT * FROM journal WHERE run_id = ? ORDER BY id').all(runId) as Array<Record<string, unknown>>;
  const states = src.prepare('SELECT from_state, event, to_state FROM transitions WHERE run_id = ? ORDER BY seq').all(runId) as Array<{
    from_state: string | null;
    event: string;
    to_state: string;
  }>;
  src.close();
  const store = openStore(file);
  try {
    const machineVersion = String(run['machine_version']);
    store.createRun({ id: runId, cluster: String(run['cluster']), machineVersion, inventoryJson: String(run['inventory_json']), optionsJson: String(run['options_json']) });
    for (const n of nodes) {
      store.upsertNode({
        runId,
        name: String(n['name']),
        sshHost: String(n['ssh_host']),
        role: (n['role'] ?? null) as 'leader' | 'follower' | null,
        kind: (n['kind'] ?? null) as 'server' | 'agent' | null,
        profile: (n['profile'] ?? null) as 'current' | 'legacy' | null,
        address: (n['address'] ?? null) as string | null,
        bindAddress: (n['bind_address'] ?? null) as string | null,
        fqdn: (n['fqdn'] ?? null) as string | null,
      });
    }
    for (const j of journal) {
      const id = store.beginStep({ runId, step: String(j['step']), node: String(j['node']), attempt: Number(j['attempt']) });
      if (j['outcome'] !== null) store.endStep(id, j['outcome'] as 'done', j['detail'] === null ? undefined : JSON.parse(String(j['detail'])));
    }
    const cycle = states.length > 0 ? states : [{ from_state: null, event: 'bench', to_state: 'followers' }];
    for (let i = 0; i < count; i++) {
      const s = cycle[i % cycle.length] as (typeof cycle)[number];
      store.appendTransition({ runId, fromState: s.from_state, event: s.event, toState: s.to_state, snapshot, machineVersion });
    }
    store.updateRun(runId, {
      status: 'done',
      state: 'done',
      leader: (run['leader'] ?? null) as string | null,
      finishedAt: Date.now(),
      downtimeStartedAt: (run['downtime_started_at'] ?? null) as number | null,
      downtimeEndedAt: (run['downtime_ended_at'] ?? null) as number | null,
    });
  } finally {
    store.close();
  }
}

/** Median wall time (spawn → exit) of a CLI invocation; fails if any run fails. */
export async function cliLatency(argv: string[], runs: number, cwd: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const t = await timedRun(argv, { timeoutMs: 60_000, cwd });
    if (t.code !== 0) throw new Error(`${argv.slice(1).join(' ')} exited ${t.code}: ${t.stderr.trim().slice(0, 300)}`);
    // The first run warms the page cache.
    if (i > 0) times.push(t.wallMs);
  }
  return times;
}

/**
 * Start a run, kill it (SIGKILL) as soon as the leader's setup has started, then time `regen resume` from process
 * start to its first remote command (the earliest command start in the audit after the resume was spawned).
 */
export async function resumeLatency(
  repo: string,
  lab: Lab,
  work: string,
  secretFile: string,
  newSecret: string,
): Promise<{ ms: number | null; detail: string }> {
  fs.mkdirSync(work, { recursive: true, mode: 0o700 });
  const db = path.join(work, 'regen.db');
  const leader = leaderOf(lab).name;
  let killedAt: string | null = null;
  const first = await timedRun(regenArgs(repo, lab, db, secretFile), {
    timeoutMs: 300_000,
    cwd: repo,
    onLine: (line, kill) => {
      if (killedAt !== null) return;
      try {
        const e = JSON.parse(line) as { type?: string; step?: string; node?: string };
        if (e.type === 'step.started' && (e.step ?? '').endsWith('setup') && e.node === leader) {
          killedAt = 'leader setup';
          kill();
        }
      } catch {
        // not an event line
      }
    },
  });
  if (killedAt === null) return { ms: null, detail: `the run was never interrupted (exit ${first.code}): nothing to resume` };
  const argv = [
    process.execPath,
    path.join(repo, 'dist', 'cli', 'main.js'),
    'resume',
    '--db',
    db,
    '--ssh-config',
    lab.sshConfig,
    '--known-hosts',
    lab.knownHosts,
    '--password-file',
    secretFile,
    '--yes',
    '--json',
  ];
  const resumed = await timedRun(argv, { timeoutMs: 300_000, cwd: repo });
  if (resumed.code !== 0) return { ms: null, detail: `regen resume exited ${resumed.code}: ${resumed.stderr.trim().slice(0, 300)}` };
  const d = new Database(db, { readonly: true, fileMustExist: true });
  let firstCommand: number | null = null;
  let firstNode = '';
  try {
    const rows = d.prepare('SELECT at - duration_ms AS started, node FROM audit WHERE at >= ? ORDER BY started LIMIT 1').all(resumed.startedAt) as Array<{
      started: number;
      node: string;
    }>;
    firstCommand = rows[0]?.started ?? null;
    firstNode = rows[0]?.node ?? '';
  } finally {
    d.close();
  }
  const health = await checkHealth(lab, newSecret);
  const ms = firstCommand === null ? null : firstCommand - resumed.startedAt;
  return {
    ms,
    detail:
      `Resume: a run on ${lab.nodes.length} nodes killed (SIGKILL) at the ${killedAt}'s start, then \`regen resume\`; ` +
      `its first remote command started ${ms ?? '—'} ms after the process was spawned (on ${firstNode}); ` +
      `the resumed run took ${(resumed.wallMs / 1000).toFixed(2)} s and ended ${health === null ? 'healthy' : `unhealthy (${health})`}.`,
  };
}
