/**
 * regen's own state on a node, over the same Remotes as the Carbonio commands: the cluster lock (a directory made
 * atomically with `mkdir` under the root-only /var/lib/regen) and the run mirrors (/var/lib/regen/runs/RUN.json,
 * written to a temporary file and renamed). The holder and the mirror text arrive on stdin; the command line holds
 * only the lock token and the run id, both validated. Neither holds a secret.
 */
import { BACKUP_ROOT, CONFIG_JSON, LOCK_DIR, MAIN_JSON, MIRROR_DIR, REGEN_STATE_DIR, RESET_FILE, type NodePort, type RegenTraces } from '../../machines/port.js';
import { CommandFailedError, NeedsOperatorError } from '../../machines/errors.js';
import type { ExecOptions, ExecResult } from '../ssh/remote.js';
import { sh, shq } from './shell.js';
import { UNIT } from './commands.js';

const PREAMBLE = 'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"; export PATH; LC_ALL=C; export LC_ALL; umask 077';
const TOKEN = /^[a-z0-9-]{0,64}$/;
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function script(...lines: string[]): string {
  return sh([PREAMBLE, ...lines].join('\n'));
}

function token(t: string): string {
  if (!TOKEN.test(t)) throw new Error(`not a lock token: ${JSON.stringify(t)}`);
  return shq(t);
}

function runId(r: string): string {
  if (!RUN_ID.test(r)) throw new Error(`run id not usable as a file name: ${JSON.stringify(r)}`);
  return r;
}

const ENSURE_DIR = `mkdir -p ${REGEN_STATE_DIR} && chmod 700 ${REGEN_STATE_DIR} || exit 70`;
// Take, update and release of the lock run one at a time on a node (flock on a file beside the lock): a heartbeat
// that passed its token check can never write into a lock being released or taken over by another process.
const MUTEX = [
  `command -v flock >/dev/null 2>&1 || { echo 'regen: flock (util-linux) is missing on this node' >&2; exit 73; }`,
  `exec 9>>${REGEN_STATE_DIR}/lock.mutex && flock -w 20 9 || { echo 'regen: the lock mutex stayed busy for 20 s' >&2; exit 72; }`,
].join('\n');
// `read` is the shell's own: no process is started for it (a mirror write runs before every remote effect).
const CURRENT_TOKEN = `cur=; { read -r cur < ${LOCK_DIR}/token; } 2>/dev/null`;

export function lockTake(t: string): string {
  return script(
    ENSURE_DIR,
    'H=$(cat)',
    MUTEX,
    `if mkdir ${LOCK_DIR} 2>/dev/null; then`,
    `  printf '%s\\n' ${token(t)} > ${LOCK_DIR}/token && printf '%s\\n' "$H" > ${LOCK_DIR}/holder.tmp && mv -f ${LOCK_DIR}/holder.tmp ${LOCK_DIR}/holder || exit 71`,
    `  echo regen:taken; exit 0`,
    'fi',
    'echo regen:held',
    `cat ${LOCK_DIR}/holder 2>/dev/null || true`,
  );
}

export function lockUpdate(expect: string, t: string): string {
  return script(
    'H=$(cat)',
    `[ -d ${LOCK_DIR} ] || { echo regen:mismatch; exit 0; }`,
    MUTEX,
    CURRENT_TOKEN,
    `[ -d ${LOCK_DIR} ] && [ "$cur" = ${token(expect)} ] || { echo regen:mismatch; exit 0; }`,
    `printf '%s\\n' "$H" > ${LOCK_DIR}/holder.tmp && mv -f ${LOCK_DIR}/holder.tmp ${LOCK_DIR}/holder || exit 71`,
    `printf '%s\\n' ${token(t)} > ${LOCK_DIR}/token.tmp && mv -f ${LOCK_DIR}/token.tmp ${LOCK_DIR}/token || exit 71`,
    'echo regen:updated',
  );
}

export function lockRemove(expect: string): string {
  return script(
    `[ -d ${LOCK_DIR} ] || { echo regen:absent; exit 0; }`,
    MUTEX,
    CURRENT_TOKEN,
    `[ -d ${LOCK_DIR} ] || { echo regen:absent; exit 0; }`,
    `[ "$cur" = ${token(expect)} ] || { echo regen:mismatch; exit 0; }`,
    // Renamed first, so the lock is gone in one step even if the removal of its files is cut short.
    `mv ${LOCK_DIR} ${LOCK_DIR}.released.$$ && rm -rf ${LOCK_DIR}.released.$$ || exit 71`,
    'echo regen:removed',
  );
}

export function mirrorWrite(run: string, t: string): string {
  const file = `${MIRROR_DIR}/${runId(run)}.json`;
  return script(
    CURRENT_TOKEN,
    `[ "$cur" = ${token(t)} ] || { cat >/dev/null; echo regen:lock-lost; exit 0; }`,
    `[ -d ${MIRROR_DIR} ] || { mkdir -p ${MIRROR_DIR} && chmod 700 ${MIRROR_DIR}; } || exit 70`,
    `cat > ${MIRROR_DIR}/.${run}.json.tmp && mv -f ${MIRROR_DIR}/.${run}.json.tmp ${file} || exit 71`,
    'echo regen:written',
  );
}

/** One `key value` line per fact; texts are base64 (one line) so any content parses. */
export function regenTraces(): string {
  return script(
    `if [ -d ${LOCK_DIR} ]; then echo "lock $(base64 -w0 < ${LOCK_DIR}/holder 2>/dev/null)"; fi`,
    `for f in ${MIRROR_DIR}/*.json; do [ -f "$f" ] || continue; echo "mirror $(basename "$f" .json) $(base64 -w0 < "$f")"; done`,
    `for d in ${BACKUP_ROOT}/*/; do [ -d "$d" ] || continue; echo "backup-run $(basename "$d")"; done`,
    `[ -f ${RESET_FILE} ] && echo 'reset 1'`,
    `[ -f ${MAIN_JSON} ] && echo 'main 1'`,
    `[ -f ${CONFIG_JSON} ] && echo 'config 1'`,
    `echo "unit $(systemctl is-active ${UNIT} 2>/dev/null)"`,
    'echo end',
  );
}

export function parseTraces(stdout: string, node: string): RegenTraces {
  const t: RegenTraces = { lock: null, mirrors: [], backupRuns: [], resetFile: false, hasMainJson: false, hasConfigJson: false, serviceActive: false };
  let ended = false;
  const text = (b64: string | undefined): string => Buffer.from(b64 ?? '', 'base64').toString('utf8');
  for (const line of stdout.split('\n')) {
    const [key, a, b] = line.split(' ');
    if (key === 'lock') t.lock = text(a).trim();
    else if (key === 'mirror' && a) t.mirrors.push({ runId: a, text: text(b) });
    else if (key === 'backup-run' && a) t.backupRuns.push(a);
    else if (key === 'reset') t.resetFile = true;
    else if (key === 'main') t.hasMainJson = true;
    else if (key === 'config') t.hasConfigJson = true;
    else if (key === 'unit') t.serviceActive = a === 'active';
    else if (key === 'end') ended = true;
  }
  if (!ended) throw new NeedsOperatorError(`reading regen's state on ${node}: the answer was cut short`, { node });
  return t;
}

type Run = (node: string, what: string, command: string, opts?: ExecOptions) => Promise<ExecResult>;
type StateMethods = Pick<NodePort, 'lockTake' | 'lockUpdate' | 'lockRemove' | 'mirrorWrite' | 'regenTraces'>;

function marker(res: ExecResult): string {
  return res.stdout.split('\n')[0]?.trim() ?? '';
}

/** The NodePort methods for regen's own state, over the port's `run`. */
export function clusterStateMethods(run: Run): StateMethods {
  const must = async (node: string, what: string, command: string, stdin?: string): Promise<ExecResult> => {
    const res = await run(node, what, command, stdin === undefined ? {} : { stdin });
    if (res.code !== 0) {
      throw new CommandFailedError(node, `${what} failed on ${node} (exit ${res.code}): ${res.stderr.trim().slice(-300)}`, res.code, `${REGEN_STATE_DIR} must be writable by root on ${node}`);
    }
    return res;
  };
  return {
    async lockTake(node, t, holder) {
      const res = await must(node, 'take the cluster lock', lockTake(t), `${holder}\n`);
      if (marker(res) === 'regen:taken') return { taken: true, current: null };
      return { taken: false, current: res.stdout.split('\n').slice(1).join('\n').trim() };
    },
    async lockUpdate(node, expect, t, holder) {
      return marker(await must(node, 'update the cluster lock', lockUpdate(expect, t), `${holder}\n`)) === 'regen:updated';
    },
    async lockRemove(node, expect) {
      return marker(await must(node, 'release the cluster lock', lockRemove(expect))) === 'regen:removed';
    },
    async mirrorWrite(node, run, text, t) {
      const m = marker(await must(node, 'write the run mirror', mirrorWrite(run, t), text));
      return m === 'regen:written' ? 'written' : 'lock-lost';
    },
    async regenTraces(node) {
      const res = await must(node, "read regen's state", regenTraces());
      return parseTraces(res.stdout, node);
    },
  };
}
