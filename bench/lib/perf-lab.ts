/**
 * The benchmark's dealings with a lab: a fresh incident scenario per peer, latency on every node, the downtime
 * window as the lab itself saw it, the health check after a peer, and the base cost of each seed step.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { shq } from '../../adapters/shell/quote.js';
import { labDown, labFault, labUp, nodeExec, pidAlive } from '../../test/lab/lab.js';
import type { Lab, LabNode } from '../../test/lab/lab.js';
import { STEPS } from '../../machines/catalogue.js';
import type { LatencyProfile } from './perf-figures.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A lab in its incident state: mesh up, the servers' password file gone (`--lose-password`). */
export async function freshLab(dir: string, nodes: number, log: (l: string) => void): Promise<Lab> {
  // A lab left by an earlier, killed bench run in the same directory would make `up` refuse.
  await labDown(dir, { keepDir: true }).catch(() => undefined);
  const t0 = Date.now();
  const lab = await labUp({ dir, nodes, servers: 1, profile: 'current', losePassword: true });
  log(`  lab of ${nodes} nodes up in ${((Date.now() - t0) / 1000).toFixed(1)} s (${dir})`);
  return lab;
}

export async function injectLatency(lab: Lab, profile: LatencyProfile): Promise<void> {
  for (const n of lab.nodes) {
    for (const [key, ms] of Object.entries(profile.keys)) await labFault(lab.dir, { kind: 'latency', node: n.name, key, ms });
  }
}

export function leaderOf(lab: Lab): LabNode {
  const n = lab.nodes.find((x) => x.name === lab.leader);
  if (n === undefined) throw new Error(`the lab's leader ${lab.leader} is not among its nodes`);
  return n;
}

function agentPidOf(n: LabNode): number {
  try {
    return Number(fs.readFileSync(path.join(n.root, 'lab', 'agent.pid'), 'utf8').trim());
  } catch {
    return 0;
  }
}

/** Times at which the node's agent started listening (its own log), ms since epoch. */
function agentStarts(n: LabNode): number[] {
  let text = '';
  try {
    text = fs.readFileSync(path.join(n.root, 'lab', 'agent.log'), 'utf8');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+) agent \S+ listening on /.exec(line);
    if (m?.[1] !== undefined) {
      const t = Date.parse(m[1]);
      if (Number.isFinite(t)) out.push(t);
    }
  }
  return out;
}

export interface DowntimeWatch {
  /** Stop watching; the window the lab saw, or why there is none. */
  finish(): { startedAt: number | null; endedAt: number | null; ms: number | null; why: string | null };
}

/**
 * The same yardstick for every peer, independent of what the peer reports: the window opens when the leader's
 * agent process goes away (polled every 10 ms on the host, no ssh involved) and closes when the last node's agent
 * is listening again (each agent logs that moment itself).
 */
export function watchDowntime(lab: Lab, maxMs: number): DowntimeWatch {
  const leader = leaderOf(lab);
  const pid = agentPidOf(leader);
  let stoppedAt: number | null = pidAlive(pid) ? null : Date.now();
  const deadline = Date.now() + maxMs;
  const timer = setInterval(() => {
    if (stoppedAt === null && !pidAlive(pid)) stoppedAt = Date.now();
    if (stoppedAt !== null || Date.now() > deadline) clearInterval(timer);
  }, 10);
  return {
    finish() {
      clearInterval(timer);
      if (stoppedAt === null) return { startedAt: null, endedAt: null, ms: null, why: "the leader's agent never stopped" };
      const start = stoppedAt;
      let end = 0;
      for (const n of lab.nodes) {
        const first = agentStarts(n).find((t) => t >= start);
        if (first === undefined) return { startedAt: start, endedAt: null, ms: null, why: `${n.short}'s agent did not start again` };
        end = Math.max(end, first);
      }
      return { startedAt: start, endedAt: end, ms: end - start, why: null };
    },
  };
}

/**
 * After a peer: every node an alive member (as the leader's agent sees it, with the new bootstrap token, which the
 * new secret decrypts) and every node holding the leader's credentials file.
 */
export async function checkHealth(lab: Lab, newSecret: string): Promise<string | null> {
  const leader = leaderOf(lab);
  const creds = '/etc/zextras/service-discover/cluster-credentials.tar.gpg';
  const members = await nodeExec(
    lab,
    leader.name,
    [
      'sh',
      '-c',
      `T=$(gpg --batch --quiet --pinentry-mode loopback --passphrase-fd 0 -d ${creds} | tar xOf - consul-acl-secret.json | jq -r .SecretID) && ` +
        'CONSUL_HTTP_TOKEN="$T" consul members',
    ],
    { stdin: newSecret, timeoutMs: 60_000 },
  );
  if (members.code !== 0) return `consul members on the leader failed (exit ${members.code}): ${members.stderr.trim().slice(0, 200)}`;
  const alive = new Set<string>();
  for (const line of members.stdout.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[2] === 'alive' && cols[0] !== undefined) alive.add(cols[0]);
  }
  const missing = lab.nodes.filter((n) => ![...alive].some((m) => m.endsWith(`-${n.name.replace(/\./g, '-')}`)));
  if (missing.length > 0) return `not alive: ${missing.map((n) => n.short).join(', ')}`;
  const sums = new Map<string, string>();
  for (const n of lab.nodes) {
    const r = await nodeExec(lab, n.name, ['sha256sum', creds]);
    sums.set(n.short, r.code === 0 ? (r.stdout.split(/\s/)[0] ?? '') : `error ${r.code}`);
  }
  const want = sums.get(leader.short);
  const differ = [...sums].filter(([, s]) => s !== want).map(([n]) => n);
  if (differ.length > 0) return `credentials differ from the leader's on ${differ.join(', ')}`;
  return null;
}

export interface Timed {
  code: number | null;
  wallMs: number;
  stdout: string;
  stderr: string;
  startedAt: number;
}

/** Spawn to exit, wall clock; output kept (tails only, for a failure report). */
export function timedRun(
  argv: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number; stdoutFile?: string; onLine?: (line: string, kill: () => void) => void },
): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) return reject(new Error('empty argv'));
    const startedAt = Date.now();
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd ?? process.cwd() });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const file = opts.stdoutFile === undefined ? null : fs.createWriteStream(opts.stdoutFile);
    let partial = '';
    const kill = (): void => void child.kill('SIGKILL');
    const timer = setTimeout(kill, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      out.push(d);
      file?.write(d);
      if (opts.onLine !== undefined) {
        partial += d.toString();
        let i: number;
        while ((i = partial.indexOf('\n')) >= 0) {
          opts.onLine(partial.slice(0, i), kill);
          partial = partial.slice(i + 1);
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
      clearTimeout(timer);
      file?.end();
      resolve({ code, wallMs, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), startedAt });
    });
  });
}

/** A new mesh secret in a 0600 file. */
export function writeSecret(file: string): string {
  const secret = Array.from({ length: 24 }, () => 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789'[Math.floor(Math.random() * 57)]).join('');
  fs.writeFileSync(file, secret, { mode: 0o600 });
  return secret;
}

// ---------------------------------------------------------------------------------------------------------------
// Base cost of each seed step

async function timeIn(lab: Lab, node: string, command: string, stdin?: string): Promise<{ ms: number; code: number; out: string }> {
  // Timed inside the node, so neither nsenter nor ssh is counted: the command's own cost.
  const r = await nodeExec(
    lab,
    node,
    ['bash', '-c', `t0=$(date +%s%N); out=$( { ${command} ; } 2>&1 ); rc=$?; t1=$(date +%s%N); printf '@@ %s %s\\n%s' "$rc" "$(( (t1 - t0) / 1000 ))" "$out"`],
    { stdin, timeoutMs: 120_000 },
  );
  const m = /^@@ (\d+) (\d+)\n/.exec(r.stdout);
  if (!m) throw new Error(`timing ${command} on ${node} failed: ${r.stderr.trim()}`);
  return { code: Number(m[1]), ms: Number(m[2]) / 1000, out: r.stdout.slice(m[0].length) };
}

/**
 * Each seed step run by hand inside a 2-node lab without injected latency, `rounds` times; the fastest round
 * counts (the physical limit is the best case). The lab must be fresh; it ends healthy with the last secret.
 */
export async function measureBaseCosts(lab: Lab, rounds: number, secretFile: string): Promise<Record<string, number>> {
  const leader = leaderOf(lab);
  const follower = lab.nodes.find((n) => n.name !== leader.name);
  if (follower === undefined) throw new Error('base costs need a lab with a follower');
  const best: Record<string, number> = {};
  const note = (id: string, ms: number): void => {
    best[id] = Math.min(best[id] ?? Infinity, ms);
  };
  /** Runs one seed step on a node, requires exit 0, keeps its fastest time; returns its output. */
  const step = async (id: string, node: string, command: string, stdin?: string): Promise<string> => {
    const r = await timeIn(lab, node, command, stdin);
    if (r.code !== 0) throw new Error(`base cost of ${id}: exit ${r.code}: ${r.out.trim().slice(0, 300)}`);
    note(id, r.ms);
    return r.out;
  };
  const SD = '/etc/zextras/service-discover';
  const wipe = `rm ${SD}/config.json ${SD}/main.json /var/lib/service-discover/*.pem`;
  for (let round = 0; round < rounds; round++) {
    const secret = writeSecret(secretFile);
    await step('leader.servers', leader.name, `su - zextras -c 'carbonio prov gas service-discover'`);
    await step('leader.status-leader', leader.name, 'wget -qO - http://127.0.0.1:8500/v1/status/leader');
    // `consul acl bootstrap` exits non-zero by design here (403 naming the reset index).
    const r = await timeIn(lab, leader.name, 'consul acl bootstrap');
    const index = /reset index: (\d+)/.exec(r.out)?.[1];
    if (index === undefined) throw new Error(`base cost: no reset index in ${r.out.trim().slice(0, 300)}`);
    note(STEPS.resetIndex.name, r.ms);
    await step(STEPS.resetFile.name, leader.name, `sudo -u service-discover bash -c "echo ${index} > /var/lib/service-discover/data/acl-bootstrap-reset"`);
    await step(STEPS.leaderStop.name, leader.name, 'systemctl stop service-discover');
    await step(STEPS.leaderWipe.name, leader.name, wipe);
    await step(STEPS.leaderSetup.name, leader.name, `service-discover setup ${leader.ip} --first-instance --password=${shq(secret)}`);
    const creds = await nodeExec(lab, leader.name, ['cat', `${SD}/cluster-credentials.tar.gpg`]);
    await step(STEPS.copyCredentials.name, follower.name, `cat > ${SD}/cluster-credentials.tar.gpg`, creds.stdout);
    await step(STEPS.followerStop.name, follower.name, 'systemctl stop service-discover');
    await step(STEPS.followerWipe.name, follower.name, wipe);
    await step(STEPS.followerSetup.name, follower.name, `service-discover setup ${follower.ip} --password=${shq(secret)}`);
    await sleep(100);
  }
  return best;
}
