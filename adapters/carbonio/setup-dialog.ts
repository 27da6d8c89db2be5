/**
 * How regen answers `service-discover setup-wizard` (server and agent packages): the prompts as the source writes
 * them (cmd/server/command/setup/common.go `gatherInputs` / `wizardBindAddressSelection`, cmd/agent/command/setup/
 * setup.go `gatherInputs`, identical from v0.1.6 to 0.7.2). The bind address is typed (echoed, harmless); the
 * password is read with `ReadPassword` (no echo), twice for a first instance. The password reaches the node only on
 * the channel's stdin: it is on no argv, servers included.
 */
import type { DialogStep } from '../ssh/pty-dialog.js';
import { requireIPv4, script } from './commands.js';

export const BIND_PROMPT = 'Specify the binding address for service discovery: ';
export const FIRST_PASSWORD_PROMPT = 'Create the cluster credentials password (will be used for setups): ';
export const SECOND_PASSWORD_PROMPT = 'Type the credential password again: ';
export const JOIN_PASSWORD_PROMPT = 'Insert the cluster credential password: ';

/** The command: `setup-wizard`, with `--first-instance` for the leader (so the wizard does not ask the directory). */
export function setupWizardCommand(firstInstance: boolean): string {
  return script(`exec service-discover setup-wizard${firstInstance ? ' --first-instance' : ''}`);
}

/** The prompts and their answers, in order. `secret` is called only when its prompt is on the terminal. */
export function setupWizardSteps(firstInstance: boolean, bindAddress: string, secret: () => string): DialogStep[] {
  const bind = requireIPv4(bindAddress);
  const steps: DialogStep[] = [{ name: 'bind address', prompt: BIND_PROMPT, answer: () => bind }];
  if (firstInstance) {
    steps.push({ name: 'password', prompt: FIRST_PASSWORD_PROMPT, answer: secret });
    steps.push({ name: 'password again', prompt: SECOND_PASSWORD_PROMPT, answer: secret });
  } else {
    steps.push({ name: 'password', prompt: JOIN_PASSWORD_PROMPT, answer: secret });
  }
  return steps;
}

/** What the plan shows for a node's setup path. */
export function setupWizardSummary(firstInstance: boolean, bindAddress: string): string {
  const pw = firstInstance ? 'password twice' : 'password';
  return `service-discover setup-wizard${firstInstance ? ' --first-instance' : ''}   (on a terminal: bind ${bindAddress}, then the ${pw}, typed; no secret on any command line)`;
}

/** The prompt of the fallback: regen's own, on the node, before `setup IP --password=` (versions without the wizard). */
export const FALLBACK_PROMPT = 'regen:secret? ';

/**
 * `setup IP [--first-instance] --password="$P"` on a terminal, for a version without `setup-wizard`: the secret is
 * read from the terminal (echo off) into a shell variable, so it crosses SSH on stdin but is on setup's own argv on
 * the node for the length of the setup.
 */
export function setupOnTerminalCommand(firstInstance: boolean, bindAddress: string): string {
  return script(
    `printf '%s' '${FALLBACK_PROMPT}'`,
    `IFS= read -r P || [ -n "$P" ] || { echo 'regen:no-secret-on-terminal'; exit 64; }`,
    `exec service-discover setup ${requireIPv4(bindAddress)}${firstInstance ? ' --first-instance' : ''} --password="$P"`,
  );
}

export function setupOnTerminalSteps(secret: () => string): DialogStep[] {
  return [{ name: 'password', prompt: FALLBACK_PROMPT, answer: secret }];
}
