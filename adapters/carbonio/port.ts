/**
 * The NodePort over Remotes: each method runs the builder from commands.ts, hands the answer to a parser from
 * parse.ts and turns exit codes into the errors of machines/errors.ts. Works the same on a real Carbonio node and
 * on the lab, which implements the same command surface.
 */
import { UsageError } from '../../machines/errors.js';
import type { MeshKind, NodePort, SetupProbe } from '../../machines/port.js';
import { MASK, Secret } from '../secrets/secret.js';
import type { ExecOptions, ExecResult, Remote } from '../ssh/remote.js';
import * as cmd from './commands.js';
import { build, failed, secretLine, type PortKit } from './port-kit.js';
import { clusterStateMethods } from './cluster-state.js';
import { inspectionMethods } from './inspection.js';
import { credentialsMethods } from './credentials.js';
import { tokenMethods } from './tokens.js';
import { verificationMethods } from './verification.js';
import { backupMethods } from './backup.js';
import { resetMethods } from './reset.js';
import { raftMethods } from './raft.js';
import { serviceMethods } from './service.js';
import { wipeMethods } from './wipe.js';
import { setupOnTerminalCommand, setupOnTerminalSteps, setupWizardCommand, setupWizardSteps } from './setup-dialog.js';
import { parseSetupProbe } from './parse.js';

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

export { sha256Hex } from './credentials.js';

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_SETUP_TIMEOUT_MS = 180_000;

export function createCarbonioPort(remotes: (node: string) => Remote, opts: CarbonioPortOptions = {}): NodePort {
  const clock = opts.clock ?? Date.now;
  const timeoutMs = opts.commandTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const setupTimeoutMs = opts.setupTimeoutMs ?? DEFAULT_SETUP_TIMEOUT_MS;
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

  function setupHint(res: ExecResult): string | undefined {
    const out = `${res.stdout}\n${res.stderr}`;
    if (/already performed/i.test(out)) return 'main.json is still there: the wipe has to run again before setup';
    if (/invalid binding address/i.test(out)) return 'the bind address is not on a non-loopback interface of the node: set address: in the inventory';
    if (/loopback/i.test(out)) return 'zimbra_server_hostname resolves to loopback: fix /etc/hosts on the node';
    if (/decrypt|passphrase|session key/i.test(out)) return 'the mesh secret does not open the credentials copied from the leader';
    return undefined;
  }

  /** setup / setup-wizard need a terminal: run on a pty, prompts answered in turn, output merged (setup-dialog.ts). */
  async function setupOnTerminal(node: string, firstInstance: boolean, bindAddress: string, secret: Secret): Promise<void> {
    secretLine(secret);
    const wizard = (opts.setupPath?.(node) ?? 'wizard') === 'wizard';
    const reveal = (): string => secret.reveal();
    const command = build(() => (wizard ? setupWizardCommand(firstInstance) : setupOnTerminalCommand(firstInstance, bindAddress)));
    const steps = build(() => (wizard ? setupWizardSteps(firstInstance, bindAddress, reveal) : setupOnTerminalSteps(reveal)));
    const r = remote(node);
    if (r.dialog === undefined) throw new UsageError(`the transport to ${node} cannot open a terminal, which service-discover setup needs`);
    const what = wizard ? `service-discover setup-wizard${firstInstance ? ' --first-instance' : ''}` : `service-discover setup${firstInstance ? ' --first-instance' : ''}`;
    const started = clock();
    const redact = (text: string): string => text.split(secret.reveal()).join(MASK);
    const res = await r.dialog(command, { steps, stepTimeoutMs: timeoutMs, finishTimeoutMs: setupTimeoutMs, redact, ...(opts.signal === undefined ? {} : { signal: opts.signal }) });
    log(`${node}: ${what} on a terminal exited ${res.code} after ${clock() - started} ms (${res.answered}/${steps.length} prompts answered)`);
    if (res.code !== 0) {
      const merged = { code: res.code, stdout: '', stderr: res.transcript.replace(/\r/g, ''), durationMs: res.durationMs };
      throw failed(node, what, merged, setupHint(merged), secret);
    }
  }

  const kit: PortKit = { run, log };
  const port: NodePort = {
    ...inspectionMethods(kit),
    ...credentialsMethods(kit),
    ...tokenMethods(kit),
    ...verificationMethods(kit),
    ...backupMethods(kit),
    ...resetMethods(kit),
    ...raftMethods(kit),
    ...serviceMethods(kit),
    ...wipeMethods(kit),

    async setupLeader(node: string, bindAddress: string, secret: Secret): Promise<void> {
      await setupOnTerminal(node, true, bindAddress, secret);
    },

    async setupFollower(node: string, bindAddress: string, secret: Secret, _kind: MeshKind): Promise<void> {
      // Server and agent packages ask the same questions for a join.
      await setupOnTerminal(node, false, bindAddress, secret);
    },

    async probeSetup(node: string): Promise<SetupProbe> {
      const res = await run(node, 'probe setup', cmd.probeSetup());
      if (res.code !== 0) throw failed(node, 'probe setup', res);
      return parseSetupProbe(res.stdout, node);
    },

    // regen's lock and run mirrors on the node (cluster-state.ts)
    ...clusterStateMethods(run),

    async close(): Promise<void> {
      const all = [...open.values()];
      open.clear();
      await Promise.allSettled(all.map((r) => r.close()));
    },

    withSignal: (signal) => createCarbonioPort(remote, { ...opts, signal }),
  };
  return port;
}
