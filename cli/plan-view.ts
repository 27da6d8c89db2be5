/**
 * The plan as the operator reads it before confirming: leader, every node's profile, kind and bind address, the
 * backups, the steps in order with the command each one amounts to (secrets masked), the warnings, and, for
 * `regen plan`, every problem that would stop `regen start` (an unreachable node does not hide the others).
 *
 * The compact view names each step's command as the runbook would; `--verbose` (and `--json`) add the exact
 * script regen sends over SSH for it, built by adapters/carbonio/commands.ts (those never contain a secret: the
 * secret travels on the command's stdin).
 */
import * as cmd from '../adapters/carbonio/commands.js';
import { pool } from '../machines/actors.js';
import { toErrorRecord, type ErrorKind } from '../machines/errors.js';
import { planNodes, type PlannedNode, type Warning } from '../machines/plan.js';
import { BACKUP_ROOT, CONFIG_JSON, CREDENTIALS_FILE, MAIN_JSON, PASSWORD_FILE, RESET_FILE, SD_HOME, type Inventory, type NodeFacts, type NodePort, type Profile } from '../machines/port.js';
import type { RegenContext, RunOptions } from '../machines/recovery.js';
import { startRun } from '../machines/runner.js';
import type { Store } from '../store/types.js';

const MASK = '********';

/** The run id a plan is made under: no run exists yet, so paths show a placeholder instead. */
export const PLAN_RUN_ID = 'planned-run';
const RUN_PLACEHOLDER = '<run id>';
const INDEX_PLACEHOLDER = 999_999_999;
const SHA_PLACEHOLDER = '0'.repeat(64);

export interface PlannedStep {
  step: string;
  /** Where it runs (copy-credentials reads the leader, then writes the node). */
  node: string;
  /** The runbook-equivalent command, secrets masked. */
  command: string;
  /** The exact text sent over SSH, one entry per remote command (a non-root login adds `sudo -n`). */
  scripts: { node: string; script: string; stdin?: string }[];
}

/** A reason `regen start` would refuse, found while planning; the plan still covers every other node. */
export interface PlanProblem {
  node?: string;
  kind: ErrorKind;
  message: string;
  hint?: string;
}

function runLabel(ctx: Pick<RegenContext, 'runId'>): string {
  return ctx.runId === PLAN_RUN_ID ? RUN_PLACEHOLDER : ctx.runId;
}

function unplaceholder(text: string): string {
  return text
    .replaceAll(`${BACKUP_ROOT}/${PLAN_RUN_ID}`, `${BACKUP_ROOT}/${RUN_PLACEHOLDER}`)
    .replaceAll(String(INDEX_PLACEHOLDER), '<reset index>')
    .replaceAll(SHA_PLACEHOLDER, '<sha256 of the leader\'s new file>');
}

function wipeCommand(profile: Profile): string {
  return `rm -f ${cmd.wipedPaths(profile).join(' ')}`;
}

/** Every step of one node: the runbook-equivalent command and the exact scripts. */
export function plannedSteps(ctx: RegenContext, n: PlannedNode): PlannedStep[] {
  const leader = ctx.leader ?? n.name;
  const run = runLabel(ctx);
  const s = (step: string, command: string, scripts: PlannedStep['scripts'], node = n.name): PlannedStep => ({
    step,
    node,
    command,
    scripts: scripts.map((x) => ({ ...x, script: unplaceholder(x.script) })),
  });
  const onNode = (script: string, stdin?: string) => ({ node: n.name, script, ...(stdin === undefined ? {} : { stdin }) });
  const backupFiles = [CONFIG_JSON, MAIN_JSON, CREDENTIALS_FILE, `${SD_HOME}/*.pem`, PASSWORD_FILE, 'data/serf/*.keyring'].map((p) => p.split('/').pop()).join(' ');
  const backup = s('backup', `cp -a ${backupFiles} → ${BACKUP_ROOT}/${run}/   (owners and modes kept, sha256 recorded)`, [onNode(cmd.backup(PLAN_RUN_ID))]);
  const secret = 'the mesh secret (one line)';
  if (n.role === 'leader') {
    return [
      backup,
      s('leader.reset-index', 'consul acl bootstrap   (reads "reset index: N" from the 403 answer)', [onNode(cmd.readResetIndex())]),
      s('leader.reset-file', `runuser -u service-discover -- sh -c 'echo N > ${RESET_FILE}'`, [onNode(cmd.writeResetFile(INDEX_PLACEHOLDER))]),
      s('leader.stop', 'systemctl stop service-discover', [onNode(cmd.stopService())]),
      s('leader.wipe', wipeCommand(n.profile), [onNode(cmd.wipe(n.profile))]),
      // As the machine does (guard severalServers): with one server the raft needs no recovery.
      ...(ctx.nodes.filter((x) => x.kind === 'server').length > 1
        ? [s('leader.raft-recovery', `write ${SD_HOME}/data/raft/peers.json naming this server alone (Consul outage recovery, as service-discover)`, [onNode(cmd.writeRaftRecovery(n.bindAddress))])]
        : []),
      s('leader.setup', `service-discover setup ${n.bindAddress} --first-instance --password=${MASK}   (secret via stdin)`, [onNode(cmd.setupLeader(n.bindAddress), secret)]),
      s('leader.verify', 'consul members   (token decrypted on the node from the new credentials)', [onNode(cmd.members(), secret)]),
    ];
  }
  const setup =
    n.kind === 'agent'
      ? s('follower.setup', `service-discover setup --wizard   (bind ${n.bindAddress} and the secret on stdin)`, [onNode(cmd.setupAgentJoin(), `${n.bindAddress}, then ${secret}`)])
      : s('follower.setup', `service-discover setup ${n.bindAddress} --password=${MASK}   (secret via stdin)`, [onNode(cmd.setupServerJoin(n.bindAddress), secret)]);
  // With several mesh servers the others stop (after their backup) and set data/raft aside before the leader restarts.
  const isolate =
    n.kind === 'server' && ctx.nodes.filter((x) => x.kind === 'server').length > 1
      ? [
          s('mesh.stop-server', 'systemctl stop service-discover   (before the leader restarts: no rival leader)', [onNode(cmd.stopService())]),
          s('mesh.raft-aside', `mv ${SD_HOME}/data/raft → ${BACKUP_ROOT}/${run}/   (joins the new leader as a fresh voter)`, [onNode(cmd.moveRaftAside(PLAN_RUN_ID))]),
        ]
      : [];
  return [
    backup,
    ...isolate,
    s('follower.copy-credentials', `${leader}:${CREDENTIALS_FILE} → this node (sha256 checked)`, [
      { node: leader, script: cmd.readCredentials() },
      onNode(cmd.writeCredentials(SHA_PLACEHOLDER), 'the leader\'s new cluster-credentials.tar.gpg'),
    ]),
    s('follower.stop', 'systemctl stop service-discover', [onNode(cmd.stopService())]),
    s('follower.wipe', wipeCommand(n.profile), [onNode(cmd.wipe(n.profile))]),
    setup,
    s('follower.verify', `consul members on ${leader}: this node alive`, [{ node: leader, script: cmd.members(), stdin: secret }]),
  ];
}

function orderedNodes(ctx: RegenContext): PlannedNode[] {
  // Leader first, then mesh servers, then agents: the order the run takes them.
  const rank = (n: PlannedNode) => (n.role === 'leader' ? 0 : n.kind === 'server' ? 1 : 2);
  return [...ctx.nodes].sort((a, b) => rank(a) - rank(b));
}

function indent(text: string, by: string): string {
  return text
    .split('\n')
    .map((l) => `${by}${l}`)
    .join('\n');
}

export interface RenderPlanOptions {
  color: boolean;
  /** Show the exact script of every step under its line. */
  verbose?: boolean;
  /** Problems found while planning (regen plan). */
  problems?: PlanProblem[];
}

export function renderPlan(ctx: RegenContext | null, o: RenderPlanOptions): string {
  const problems = o.problems ?? [];
  const lines: string[] = [];
  if (ctx !== null) {
    const leader = ctx.nodes.find((n) => n.name === ctx.leader);
    const run = runLabel(ctx);
    lines.push(ctx.runId === PLAN_RUN_ID ? `Plan for cluster ${ctx.cluster}` : `Plan for cluster ${ctx.cluster} (run ${ctx.runId})`);
    lines.push(`  leader: ${leader ? `${leader.name} (${leader.bindAddress})` : 'not settled'}`);
    const servers = ctx.nodes.filter((n) => n.kind === 'server').length;
    const agents = ctx.nodes.length - servers;
    lines.push(`  nodes: ${ctx.nodes.length} (${servers} mesh server${servers === 1 ? '' : 's'}, ${agents} agent${agents === 1 ? '' : 's'}); followers ${ctx.options.parallel} at a time`);
    lines.push(`  backups: ${BACKUP_ROOT}/${run}/ on every node, before anything is removed`);
    lines.push('');
    for (const n of orderedNodes(ctx)) {
      lines.push(`${n.name}  ${n.role ?? '?'}  ${n.kind ?? '?'}  profile ${n.profile}  bind ${n.bindAddress}`);
      for (const st of plannedSteps(ctx, n)) {
        lines.push(`    ${st.step.padEnd(26)} ${st.command}`);
        if (o.verbose) {
          for (const x of st.scripts) {
            lines.push(`        on ${x.node}${x.stdin === undefined ? '' : `, stdin: ${x.stdin}`}:`);
            lines.push(indent(x.script, '          '));
          }
        }
      }
    }
    if (ctx.nodes.length > 1) lines.push(`\nthen final.verify on ${ctx.leader}: every node alive, every credentials file equal to the leader's`);
    if (ctx.options.revokeOldTokens) lines.push(`then harden.revoke: delete management tokens older than the new bootstrap token`);
    if (ctx.warnings.length) {
      lines.push('\nwarnings:');
      for (const w of ctx.warnings) lines.push(`  ! ${w.node ? `${w.node}: ` : ''}${w.message}`);
    }
  } else {
    lines.push('No plan could be made: regen start would stop before changing anything.');
  }
  if (problems.length) {
    lines.push(`\nproblems (regen start refuses until they are fixed):`);
    for (const p of problems) {
      lines.push(`  ✗ ${p.node ? `${p.node}: ` : ''}${p.message.replace(/\n/g, '\n    ')}`);
      if (p.hint) lines.push(`    next: ${p.hint}`);
    }
  }
  if (ctx !== null) lines.push(`\nThe mesh is down from the leader's stop until the last node is set up again.`);
  return `${lines.join('\n')}\n`;
}

/** The plan as `--json` prints it: everything the text shows, with every step's exact scripts. */
export function planJson(ctx: RegenContext | null, problems: PlanProblem[] = []) {
  return {
    cluster: ctx?.cluster ?? null,
    leader: ctx?.leader ?? null,
    leaderAddress: ctx?.leaderAddress ?? null,
    parallel: ctx?.options.parallel ?? null,
    backupDir: ctx === null ? null : `${BACKUP_ROOT}/${runLabel(ctx)}`,
    nodes:
      ctx === null
        ? []
        : orderedNodes(ctx).map((n) => ({ name: n.name, role: n.role, kind: n.kind, profile: n.profile, bindAddress: n.bindAddress, steps: plannedSteps(ctx, n) })),
    warnings: ctx?.warnings ?? [],
    problems,
  };
}

export interface PlanResult {
  /** The machine's context at its confirmation point, over the nodes that could be planned; null if none. */
  context: RegenContext | null;
  problems: PlanProblem[];
}

function problemLines(message: string): string[] {
  const items = message.split('\n').filter((l) => l.startsWith('  - ')).map((l) => l.slice(4));
  return items.length ? items : [message];
}

/**
 * Read every node and make the plan without changing anything: the same machine as `regen start`, run on an
 * in-memory store to its confirmation point, over the nodes that can be planned. A node that cannot be reached
 * or fails a preflight check becomes a problem of its own instead of stopping the plan.
 */
export async function makePlan(a: { port: NodePort; store: Store; inventory: Inventory; options: RunOptions }): Promise<PlanResult> {
  const { port, inventory } = a;
  const problems: PlanProblem[] = [];
  const settled = await pool(inventory.nodes, 16, (n) => port.inspect(n.name));
  const facts = new Map<string, NodeFacts>();
  const excluded = new Set<string>();
  settled.forEach((r, i) => {
    const n = inventory.nodes[i];
    if (!n) return;
    if (r.status === 'fulfilled') {
      facts.set(n.name, r.value);
      return;
    }
    excluded.add(n.name);
    const e = toErrorRecord(r.reason);
    problems.push({
      node: n.name,
      kind: e.kind,
      message: `${e.message.startsWith(n.name) ? e.message.slice(n.name.length).replace(/^:\s*/, '') : e.message} (not planned)`,
      hint: e.hint ?? (e.kind === 'unreachable' ? `make ${n.name} reachable over SSH (ssh -F your ssh_config ${n.sshHost} true), then regen plan again` : 'regen log shows the command'),
    });
  });
  // Each reachable node checked on its own, so one node's problem does not hide another's plan.
  for (const n of inventory.nodes) {
    const f = facts.get(n.name);
    if (!f) continue;
    try {
      planNodes({ ...inventory, nodes: [n] }, [f]);
    } catch (err) {
      excluded.add(n.name);
      const e = toErrorRecord(err);
      for (const line of problemLines(e.message)) {
        problems.push({ node: n.name, kind: e.kind, message: `${line.startsWith(`${n.name}: `) ? line.slice(n.name.length + 2) : line} (not planned)`, ...(e.hint ? { hint: e.hint } : {}) });
      }
    }
  }
  const planned = inventory.nodes.filter((n) => !excluded.has(n.name));
  if (planned.length === 0) return { context: null, problems };
  const lower = new Set([...excluded].map((x) => x.toLowerCase()));
  const viewPort: NodePort = {
    ...port,
    inspect: async (node) => facts.get(node) ?? port.inspect(node),
    // A node left out of the plan is still listed by the directory; it is a problem above, not a second one here.
    meshServers: async (node, profile) => (await port.meshServers(node, profile)).filter((s) => !lower.has(s.toLowerCase()) && !lower.has(s.split('.')[0]?.toLowerCase() ?? '')),
  };
  const result = await startRun({ store: a.store, port: viewPort, secret: null }, { inventory: { ...inventory, nodes: planned }, options: a.options, runId: PLAN_RUN_ID });
  if (result.state === 'confirming') return { context: result.context, problems };
  if (result.error) {
    const e = result.error;
    for (const line of problemLines(e.message)) problems.push({ ...(e.node ? { node: e.node } : {}), kind: e.kind, message: line, ...(e.hint ? { hint: e.hint } : {}) });
  } else {
    problems.push({ kind: 'internal', message: `the plan stopped in state ${result.state}` });
  }
  return { context: null, problems };
}

export type { Warning };
