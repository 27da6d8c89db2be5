/**
 * The NodePort over Remotes, composed from one module per concern. Each method runs the builder from commands.ts,
 * hands the answer to a parser from parse.ts and turns exit codes into the errors of machines/errors.ts. Works the
 * same on a real Carbonio node and on the lab, which implements the same command surface.
 *
 * Where a method lives: inspection.ts (inspect, mesh servers, leader, members), credentials.ts (password file,
 * cluster-credentials.tar.gpg), tokens.ts (ACL tokens), verification.ts (proof, catalog), backup.ts, reset.ts
 * (reset index and file), raft.ts (peers.json, data/raft aside), raft-sentinel.ts (peers.info), rpc-hold.ts (the
 * leader's rpc_hold_timeout drop-in), service.ts (systemctl), wipe.ts, setup.ts, cluster-state.ts (regen's lock and
 * run mirrors). What they share is port-kit.ts.
 */
import type { NodePort } from '../../machines/port.js';
import type { ExecOptions, ExecResult, Remote } from '../ssh/remote.js';
import { backupMethods } from './backup.js';
import { clusterStateMethods } from './cluster-state.js';
import { credentialsMethods } from './credentials.js';
import { inspectionMethods } from './inspection.js';
import type { PortKit } from './port-kit.js';
import { raftMethods } from './raft.js';
import { raftSentinelMethods } from './raft-sentinel.js';
import { resetMethods } from './reset.js';
import { rpcHoldMethods } from './rpc-hold.js';
import { serviceMethods } from './service.js';
import { setupMethods } from './setup.js';
import { tokenMethods } from './tokens.js';
import { verificationMethods } from './verification.js';
import { wipeMethods } from './wipe.js';

export { sha256Hex } from './credentials.js';

export interface CarbonioPortOptions {
  /** ms since epoch; only for the durations in log lines. */
  clock?: () => number;
  /** Per-command timeout (default 60 s). */
  commandTimeoutMs?: number;
  /** Timeout of `service-discover setup`, which waits up to 30 s for the ACL bootstrap itself (default 180 s). */
  setupTimeoutMs?: number;
  /** One line per notable event; never given a secret. */
  log?: (line: string) => void;
  /** How a node's setup gets the secret: `setup-wizard` (default) or, for a version without it, `setup --password=` on a terminal. */
  setupPath?: (node: string) => 'wizard' | 'argv-on-terminal';
  /** Aborting it closes the channel of the command in flight (a stopped machine stops its remote command). */
  signal?: AbortSignal;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_SETUP_TIMEOUT_MS = 180_000;

export function createCarbonioPort(remotes: (node: string) => Remote, opts: CarbonioPortOptions = {}): NodePort {
  const clock = opts.clock ?? Date.now;
  const timeoutMs = opts.commandTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const log = opts.log ?? ((): void => {});
  const open = new Map<string, Remote>();

  function remote(node: string): Remote {
    let r = open.get(node);
    if (r === undefined) {
      r = remotes(node);
      open.set(node, r);
    }
    return r;
  }

  async function run(node: string, what: string, command: string, execOpts: ExecOptions = {}): Promise<ExecResult> {
    const started = clock();
    const res = await remote(node).exec(command, { timeoutMs, ...(opts.signal === undefined ? {} : { signal: opts.signal }), ...execOpts });
    log(`${node}: ${what} exited ${res.code} after ${clock() - started} ms`);
    return res;
  }

  const kit: PortKit = { run, log };
  const terminal = {
    remote,
    clock,
    stepTimeoutMs: timeoutMs,
    finishTimeoutMs: opts.setupTimeoutMs ?? DEFAULT_SETUP_TIMEOUT_MS,
    ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    ...(opts.setupPath === undefined ? {} : { setupPath: opts.setupPath }),
  };
  return {
    ...inspectionMethods(kit),
    ...credentialsMethods(kit),
    ...tokenMethods(kit),
    ...verificationMethods(kit),
    ...resetMethods(kit),
    ...backupMethods(kit),
    ...raftMethods(kit),
    ...serviceMethods(kit),
    ...wipeMethods(kit),
    ...setupMethods(kit, terminal),
    ...clusterStateMethods(run),
    ...raftSentinelMethods(run),
    ...rpcHoldMethods(run),

    async close(): Promise<void> {
      const all = [...open.values()];
      open.clear();
      await Promise.allSettled(all.map((r) => r.close()));
    },

    withSignal: (signal) => createCarbonioPort(remote, { ...opts, signal }),
  };
}
