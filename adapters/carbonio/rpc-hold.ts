/**
 * The leader's RPC-hold drop-in (machines/rpc-hold.ts) on a Carbonio node: the commands, their parsing, and the
 * three NodePort methods over the port's `run`. consul runs as service-discover and reads every *.json file of its
 * config dir at start (a file it cannot read stops it from starting), so the drop-in is written like main.json:
 * service-discover's, 0600, through a temporary name that is no *.json (consul skips it) and one rename.
 */
import { NeedsOperatorError, CommandFailedError } from '../../machines/errors.js';
import { RPC_HOLD_FILE, RPC_HOLD_TEXT, SD_CONFIG_DIR, type NodePort } from '../../machines/port.js';
import type { ExecOptions, ExecResult } from '../ssh/remote.js';
import { script, SD_USER } from './commands.js';
import { shq } from './shell.js';

export function writeRpcHold(): string {
  return script(
    'umask 077',
    `[ -d ${SD_CONFIG_DIR} ] || { echo 'regen:no-config-dir' >&2; exit 4; }`,
    `T=$(mktemp ${SD_CONFIG_DIR}/.zz-regen-rpc-hold.XXXXXX) || exit 4`,
    `trap 'rm -f "$T"' EXIT`,
    `trap 'exit 143' HUP INT TERM`,
    `printf '%s\\n' ${shq(RPC_HOLD_TEXT.trim())} > "$T" || exit 4`,
    `chown ${SD_USER}:${SD_USER} "$T" && chmod 600 "$T" || exit 4`,
    `mv -f "$T" ${RPC_HOLD_FILE} || exit 4`,
    `echo 'regen:written'`,
  );
}

/** Prints the drop-in behind a marker, or `regen:absent`. */
export function probeRpcHold(): string {
  return script(`if [ -f ${RPC_HOLD_FILE} ]; then echo 'regen:present'; cat ${RPC_HOLD_FILE}; else echo 'regen:absent'; fi`);
}

export function removeRpcHold(): string {
  return script(`rm -f ${RPC_HOLD_FILE} || exit 4`, `echo 'regen:removed'`);
}

/** Output of probeRpcHold(): the file's text exactly as it is, null when absent. */
export function parseRpcHold(output: string, node?: string): string | null {
  const nl = output.indexOf('\n');
  const first = (nl < 0 ? output : output.slice(0, nl)).trim();
  if (first === 'regen:absent') return null;
  if (first !== 'regen:present') {
    throw new NeedsOperatorError(`unexpected answer reading ${RPC_HOLD_FILE}${node === undefined ? '' : ` on ${node}`}: ${output.slice(0, 200)}`, node === undefined ? {} : { node });
  }
  return nl < 0 ? '' : output.slice(nl + 1);
}

type Run = (node: string, what: string, command: string, opts?: ExecOptions) => Promise<ExecResult>;
type RpcHoldMethods = Pick<NodePort, 'writeRpcHold' | 'probeRpcHold' | 'removeRpcHold'>;

function failed(node: string, what: string, res: ExecResult): CommandFailedError {
  const said = `${res.stderr.trim()} ${res.stdout.trim()}`.trim().slice(-300);
  return new CommandFailedError(node, `${what} failed on ${node} (exit ${res.code})${said === '' ? '' : `: ${said}`}`, res.code, `${SD_CONFIG_DIR} must exist and be writable by root`);
}

/** The NodePort methods of the drop-in, over the port's `run`. */
export function rpcHoldMethods(run: Run): RpcHoldMethods {
  return {
    async writeRpcHold(node) {
      const res = await run(node, 'write the rpc hold drop-in', writeRpcHold());
      if (res.code !== 0 || !res.stdout.includes('regen:written')) throw failed(node, `writing ${RPC_HOLD_FILE}`, res);
    },
    async probeRpcHold(node) {
      const res = await run(node, 'probe the rpc hold drop-in', probeRpcHold());
      if (res.code !== 0) throw failed(node, `reading ${RPC_HOLD_FILE}`, res);
      return parseRpcHold(res.stdout, node);
    },
    async removeRpcHold(node) {
      const res = await run(node, 'remove the rpc hold drop-in', removeRpcHold());
      if (res.code !== 0 || !res.stdout.includes('regen:removed')) throw failed(node, `removing ${RPC_HOLD_FILE}`, res);
    },
  };
}
