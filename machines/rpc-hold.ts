/**
 * The leader's setup and a slow election. service-discover's first setup starts the unit and sends `consul acl
 * bootstrap` every 250 ms for 30 s, retrying only the legacy-mode 500 (firstsetup.go createACLBootstrapToken); a
 * server without a leader holds that RPC for `performance.rpc_hold_timeout` (7 s by default) and then answers
 * `500 (No cluster leader)`, which ends the setup. An election longer than about 7.25 s therefore fails the
 * leader's setup, and regen cannot wait from outside (a new round restarts the unit and the election with it).
 *
 * consul reads every *.json and *.hcl file of its -config-dir in lexical order when it starts, a later file winning
 * a scalar (agent/config/builder.go). So before the leader's setup regen drops in a file that raises the hold for
 * the start the setup makes, and removes it once the leader is verified. regen neither restarts nor reloads consul
 * in between: the raised hold lives on only in the process that setup started; its next start takes the default.
 *
 *   step                     effect (NodePort)   probe
 *   leader.rpc-hold          writeRpcHold        probeRpcHold: the file with exactly RPC_HOLD_TEXT
 *   leader.rpc-hold-remove   removeRpcHold       probeRpcHold: no file
 */
import { STEPS } from './catalogue.js';
import { durableStep } from './durable.js';
import type { PlannedNode } from './plan.js';
import { RPC_HOLD_TEXT } from './port.js';
import type { StepDeps } from './steps.js';

export async function writeRpcHold(d: StepDeps, leader: PlannedNode, round: number): Promise<void> {
  await durableStep<null>(d.journal, {
    step: STEPS.rpcHold.name,
    node: leader.name,
    round,
    probe: async () => ((await d.port.probeRpcHold(leader.name)) === RPC_HOLD_TEXT ? { state: 'done', result: null } : { state: 'not-done' }),
    apply: async () => {
      await d.port.writeRpcHold(leader.name);
      return null;
    },
  });
}

export async function removeRpcHold(d: StepDeps, leader: PlannedNode, round: number): Promise<void> {
  await durableStep<null>(d.journal, {
    step: STEPS.rpcHoldRemove.name,
    node: leader.name,
    round,
    probe: async () => ((await d.port.probeRpcHold(leader.name)) === null ? { state: 'done', result: null } : { state: 'not-done' }),
    apply: async () => {
      await d.port.removeRpcHold(leader.name);
      return null;
    },
  });
}
