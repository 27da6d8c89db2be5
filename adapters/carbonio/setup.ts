/**
 * The port's `service-discover setup` of a leader or a follower, run at a terminal with the prompts answered in turn
 * (the dialog itself is setup-dialog.ts), the hint for its known failures, and the probe of what setup left.
 */
import { UsageError } from '../../machines/errors.js';
import type { MeshKind, NodePort, SetupProbe } from '../../machines/port.js';
import { MASK, type Secret } from '../secrets/secret.js';
import type { ExecResult, Remote } from '../ssh/remote.js';
import * as cmd from './commands.js';
import { parseSetupProbe } from './parse.js';
import { build, failed, secretLine, type PortKit } from './port-kit.js';
import { setupOnTerminalCommand, setupOnTerminalSteps, setupWizardCommand, setupWizardSteps } from './setup-dialog.js';

/** What a setup at a terminal needs besides `run`: the node's Remote (for its pty), the clock and the timeouts. */
export interface TerminalKit {
  remote: (node: string) => Remote;
  clock: () => number;
  /** How long one prompt may take to appear. */
  stepTimeoutMs: number;
  /** How long the whole setup may take. */
  finishTimeoutMs: number;
  signal?: AbortSignal;
  /** `wizard` (default) or, for a version without setup-wizard, `setup --password=` on a terminal. */
  setupPath?: (node: string) => 'wizard' | 'argv-on-terminal';
}

type SetupMethods = Pick<NodePort, 'setupLeader' | 'setupFollower' | 'probeSetup'>;

function setupHint(res: ExecResult): string | undefined {
  const out = `${res.stdout}\n${res.stderr}`;
  if (/already performed/i.test(out)) return 'main.json is still there: the wipe has to run again before setup';
  if (/invalid binding address/i.test(out)) return 'the bind address is not on a non-loopback interface of the node: set address: in the inventory';
  if (/loopback/i.test(out)) return 'zimbra_server_hostname resolves to loopback: fix /etc/hosts on the node';
  if (/decrypt|passphrase|session key/i.test(out)) return 'the mesh secret does not open the credentials copied from the leader';
  return undefined;
}

/** setup / setup-wizard need a terminal: run on a pty, prompts answered in turn, output merged (setup-dialog.ts). */
async function setupOnTerminal(t: TerminalKit, log: PortKit['log'], node: string, firstInstance: boolean, bindAddress: string, secret: Secret): Promise<void> {
  secretLine(secret);
  const wizard = (t.setupPath?.(node) ?? 'wizard') === 'wizard';
  const reveal = (): string => secret.reveal();
  const command = build(() => (wizard ? setupWizardCommand(firstInstance) : setupOnTerminalCommand(firstInstance, bindAddress)));
  const steps = build(() => (wizard ? setupWizardSteps(firstInstance, bindAddress, reveal) : setupOnTerminalSteps(reveal)));
  const r = t.remote(node);
  if (r.dialog === undefined) throw new UsageError(`the transport to ${node} cannot open a terminal, which service-discover setup needs`);
  const what = wizard ? `service-discover setup-wizard${firstInstance ? ' --first-instance' : ''}` : `service-discover setup${firstInstance ? ' --first-instance' : ''}`;
  const started = t.clock();
  const redact = (text: string): string => text.split(secret.reveal()).join(MASK);
  const res = await r.dialog(command, { steps, stepTimeoutMs: t.stepTimeoutMs, finishTimeoutMs: t.finishTimeoutMs, redact, ...(t.signal === undefined ? {} : { signal: t.signal }) });
  log(`${node}: ${what} on a terminal exited ${res.code} after ${t.clock() - started} ms (${res.answered}/${steps.length} prompts answered)`);
  if (res.code !== 0) {
    const merged = { code: res.code, stdout: '', stderr: res.transcript.replace(/\r/g, ''), durationMs: res.durationMs };
    throw failed(node, what, merged, setupHint(merged), secret);
  }
}

export function setupMethods({ run, log }: PortKit, terminal: TerminalKit): SetupMethods {
  return {
    async setupLeader(node: string, bindAddress: string, secret: Secret): Promise<void> {
      await setupOnTerminal(terminal, log, node, true, bindAddress, secret);
    },

    async setupFollower(node: string, bindAddress: string, secret: Secret, _kind: MeshKind): Promise<void> {
      // Server and agent packages ask the same questions for a join.
      await setupOnTerminal(terminal, log, node, false, bindAddress, secret);
    },

    async probeSetup(node: string): Promise<SetupProbe> {
      const res = await run(node, 'probe setup', cmd.probeSetup());
      if (res.code !== 0) throw failed(node, 'probe setup', res);
      return parseSetupProbe(res.stdout, node);
    },
  };
}
