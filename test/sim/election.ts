/**
 * Election time and the RPC hold, as a mesh server lives them (rows in test/sim/FIDELITY.md, "Election takes time").
 *
 * - A server's election timer runs from its start: until `delayMs` have passed since its unit started, a server
 *   without a leader does not stand (hashicorp/raft runFollower: the heartbeat timeout must fire first; Consul's
 *   default raft_multiplier 5 makes that seconds). Nobody standing is not a failed election: no term moves.
 * - An RPC that needs a leader (ACL bootstrap, catalog, token writes) is held by the server while there is none and
 *   retried until `holdMs` (Consul `performance.rpc_hold_timeout`, 7 s by default) has passed; then it answers
 *   `500 (No cluster leader)` (agent/consul/rpc.go `ErrNoLeader` / `canRetry`). `holdMs` is the default; a server
 *   whose config dir set `performance.rpc_hold_timeout` when its unit started holds for that instead
 *   (model.ts `startAgent`, `rpcHoldFor`).
 * - The first instance's setup (service-discover `cmd/server/command/setup/firstsetup.go` createACLBootstrapToken)
 *   runs `consul acl bootstrap` every 250 ms and retries only the legacy-mode 500; any other error ends the setup,
 *   and the whole loop gives up after 30 s.
 *
 * The model is instantaneous: the setup's loop is evaluated at the times it would run (`at`), and the face is told
 * how long the command took (`World.elapse`) so the lab's process takes that wall time.
 */
import type { UpServer } from './raft.js';

export interface ElectionSettings {
  /** How long a server waits, after its unit started, before it stands for election. */
  delayMs: number;
  /** How long a server holds an RPC that needs a leader before answering `No cluster leader`. */
  holdMs: number;
}

/** Consul's `performance.rpc_hold_timeout` default (agent/config/default.go). */
export const CONSUL_RPC_HOLD_MS = 7000;
/** The unit fake's default: elections are instant unless a test sets a delay. */
export const INSTANT_ELECTION: ElectionSettings = { delayMs: 0, holdMs: CONSUL_RPC_HOLD_MS };

/**
 * Go's time.ParseDuration, in whole milliseconds (what builder.go's durationVal calls for
 * `performance.rpc_hold_timeout`): an optional sign, then one or more decimal numbers each with a unit (ns, us, µs,
 * ms, s, m, h); "0" alone is zero. Null where Go returns an error (no unit, unknown unit, empty).
 */
export function parseGoDuration(text: string): number | null {
  const m = /^([-+]?)(.*)$/.exec(text);
  let rest = m?.[2] ?? '';
  if (rest === '0') return 0;
  if (rest === '') return null;
  const unitMs: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  while (rest !== '') {
    const part = /^(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/.exec(rest);
    if (part === null) return null;
    total += Number(part[1]) * (unitMs[part[2] ?? ''] ?? 0);
    rest = rest.slice(part[0].length);
  }
  return Math.round(m?.[1] === '-' ? -total : total);
}

/** The lab's default, and the file under DIR/cluster that `lab up --election-delay-ms` writes. */
export const LAB_ELECTION: ElectionSettings = { delayMs: 0, holdMs: CONSUL_RPC_HOLD_MS };
export const ELECTION_FILE = 'election.json';

/** firstsetup.go createACLBootstrapToken: ticker period, overall timeout, and the one error it retries. */
export const SETUP_BOOTSTRAP_TICK_MS = 250;
export const SETUP_BOOTSTRAP_TIMEOUT_MS = 30_000;
export const LEGACY_MODE_ERROR = 'Failed ACL bootstrapping: Unexpected response code: 500 (The ACL system is currently in legacy mode.)';
export const SETUP_TIMEOUT_ERROR = 'timeout reached while waiting for consul to be ready';

/** Has `u`'s election timer fired by `nowMs`? (A server with no start time on record is past it.) */
export function timerFired(u: UpServer, nowMs: number, s: ElectionSettings): boolean {
  return (u.since ?? 0) + s.delayMs <= nowMs;
}

/** The earliest time one of `group`'s servers may stand, when none may yet; null when one already may. */
export function nextStandAt(group: UpServer[], nowMs: number, s: ElectionSettings): number | null {
  if (group.some((u) => timerFired(u, nowMs, s))) return null;
  return Math.min(...group.map((u) => (u.since ?? 0) + s.delayMs));
}

export type Attempt<T> = { ok: true; value: T } | { ok: false; error: string; retryAfterMs?: number };

export interface HeldCall<T> {
  outcome: Attempt<T>;
  /** When the caller hears the answer (ms since the epoch). */
  answeredAt: number;
}

/**
 * One RPC that needs a leader, asked at `askedAt`: answered at once when it gets through, else retried at each
 * `retryAfterMs` the server names (the moment a server may stand) while within the hold, else `No cluster leader`
 * once the hold is over. `call(t)` runs the request as of time t.
 */
export function heldRpc<T>(askedAt: number, holdMs: number, call: (atMs: number) => Attempt<T>): HeldCall<T> {
  let t = askedAt;
  for (let i = 0; i < 100; i++) {
    const r = call(t);
    if (r.ok || r.retryAfterMs === undefined) return { outcome: r, answeredAt: t };
    if (r.retryAfterMs > askedAt + holdMs) return { outcome: r, answeredAt: askedAt + holdMs };
    t = Math.max(t + 1, r.retryAfterMs);
  }
  return { outcome: call(askedAt + holdMs), answeredAt: askedAt + holdMs };
}

/**
 * firstsetup.go createACLBootstrapToken from the unit's start at `startedAt`: a `consul acl bootstrap` at every tick
 * (at once when the previous call outlasted the period), success ends it, the legacy-mode 500 is retried, anything else
 * fails the setup; past 30 s the setup gives up. `bootstrap(t)` is one CLI call at t (its hold included).
 */
export function setupBootstrapLoop<T>(startedAt: number, bootstrap: (atMs: number) => HeldCall<T>): { outcome: Attempt<T>; endedAt: number } {
  const deadline = startedAt + SETUP_BOOTSTRAP_TIMEOUT_MS;
  let tick = startedAt + SETUP_BOOTSTRAP_TICK_MS;
  while (tick < deadline) {
    const { outcome, answeredAt } = bootstrap(tick);
    if (answeredAt >= deadline) break;
    if (outcome.ok || outcome.error !== LEGACY_MODE_ERROR) return { outcome, endedAt: answeredAt };
    // A Go ticker keeps one tick while the call runs: a call that outlasted the period is followed at once.
    tick = Math.max(tick + SETUP_BOOTSTRAP_TICK_MS, answeredAt);
  }
  return { outcome: { ok: false, error: SETUP_TIMEOUT_ERROR }, endedAt: deadline };
}
