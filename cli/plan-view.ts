/**
 * The plan as the operator reads it before confirming: leader, every node's profile, kind and bind address, the
 * backups, the steps in order with the command each one amounts to (secrets masked), the warnings, and, for
 * `regen plan`, every problem that would stop `regen start` (an unreachable node does not hide the others).
 *
 * The compact view names each step's command as the runbook would; `--verbose` (and `--json`) add the exact
 * script regen sends over SSH for it, built by adapters/carbonio/commands.ts (those never contain a secret: the
 * secret travels on the command's stdin).
 */
import { setupWizardCommand, setupWizardSummary } from '../adapters/carbonio/setup-dialog.js';
import * as cmd from '../adapters/carbonio/commands.js';
import * as rpcHold from '../adapters/carbonio/rpc-hold.js';
import { sanitizeDeep } from '../adapters/terminal/sanitize.js';
import { shq } from '../adapters/carbonio/shell.js';
import { pool } from '../machines/actors.js';
import { CATALOGUE, applies, stepsForRole, type CatalogueEntry, type RunShape, type StepKey } from '../machines/catalogue.js';
import { toErrorRecord, type ErrorKind, type ErrorRecord } from '../machines/errors.js';
import { planNodes, type PlannedNode, type Warning } from '../machines/plan.js';
import { BACKUP_ROOT, CONFIG_JSON, CREDENTIALS_FILE, MAIN_JSON, PASSWORD_FILE, RESET_FILE, RPC_HOLD_FILE, RPC_HOLD_TEXT, SD_HOME, type Inventory, type NodeFacts, type NodePort, type Profile } from '../machines/port.js';
import type { RegenContext, RunOptions } from '../machines/recovery.js';
import { startRun } from '../machines/runner.js';
import type { Store } from '../store/types.js';


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

/** What the plan shows of one step on one node: its runbook-equivalent command and the exact scripts. */
interface StepView {
  command: string;
  scripts: PlannedStep['scripts'];
}
interface ViewArgs {
  n: PlannedNode;
  leader: string;
  run: string;
  onNode: (script: string, stdin?: string) => PlannedStep['scripts'][number];
}

const SECRET_STDIN = 'the mesh secret (one line)';
const BACKUP_FILES = [CONFIG_JSON, MAIN_JSON, CREDENTIALS_FILE, `${SD_HOME}/*.pem`, PASSWORD_FILE, 'data/serf/*.keyring'].map((p) => p.split('/').pop()).join(' ');

/** Per step of the catalogue, how the plan words it; the commands themselves are adapters/carbonio's. */
const STEP_VIEWS: Record<Exclude<StepKey, 'finalVerify' | 'catalogAfter' | 'revoke' | 'nodeTokens'>, (a: ViewArgs) => StepView> = {
  backup: ({ run, onNode }) => ({
    command: `cp -a ${BACKUP_FILES} → ${BACKUP_ROOT}/${run}/   (owners and modes kept, sha256 recorded)`,
    scripts: [onNode(cmd.backup(PLAN_RUN_ID))],
  }),
  catalogBefore: ({ onNode }) => ({
    command: 'curl 127.0.0.1:8500/v1/catalog/services and /v1/health/state/any   (read-only; the agent\'s default token)',
    scripts: [onNode(cmd.readCatalog(false))],
  }),
  resetIndex: ({ onNode }) => ({ command: 'consul acl bootstrap   (reads "reset index: N" from the 403 answer)', scripts: [onNode(cmd.readResetIndex())] }),
  resetFile: ({ onNode }) => ({
    command: `runuser -u service-discover -- sh -c 'echo N > ${RESET_FILE}'`,
    scripts: [onNode(cmd.writeResetFile(INDEX_PLACEHOLDER))],
  }),
  leaderStop: ({ onNode }) => ({ command: 'systemctl stop service-discover', scripts: [onNode(cmd.stopService())] }),
  leaderWipe: ({ n, onNode }) => ({ command: wipeCommand(n.wipeSet ?? n.profile), scripts: [onNode(cmd.wipe(n.wipeSet ?? n.profile))] }),
  stopServer: ({ onNode }) => ({ command: 'systemctl stop service-discover   (before the leader restarts: no rival leader)', scripts: [onNode(cmd.stopService())] }),
  raftAside: ({ run, onNode }) => ({
    command: `mv ${SD_HOME}/data/raft → ${BACKUP_ROOT}/${run}/   (joins the new leader as a fresh voter)`,
    scripts: [onNode(cmd.moveRaftAside(PLAN_RUN_ID))],
  }),
  raftRecovery: ({ n, onNode }) => ({
    command: `write ${SD_HOME}/data/raft/peers.json naming this server alone (Consul outage recovery, as service-discover)`,
    scripts: [onNode(cmd.writeRaftRecovery(n.bindAddress))],
  }),
  rpcHold: ({ onNode }) => ({
    command: `write ${RPC_HOLD_FILE}: ${RPC_HOLD_TEXT.trim()}   (service-discover, 0600; for the setup's start only)`,
    scripts: [onNode(rpcHold.writeRpcHold())],
  }),
  leaderSetup: ({ n, onNode }) => ({
    command: setupWizardSummary(true, n.bindAddress),
    scripts: [onNode(setupWizardCommand(true), `on a terminal: ${n.bindAddress}, then ${SECRET_STDIN}, twice`)],
  }),
  leaderVerify: ({ onNode }) => ({ command: 'consul members   (token decrypted on the node from the new credentials)', scripts: [onNode(cmd.members(), SECRET_STDIN)] }),
  rpcHoldRemove: ({ onNode }) => ({
    command: `rm -f ${RPC_HOLD_FILE}   (consul is not restarted: the raised hold ends with the process the setup started)`,
    scripts: [onNode(rpcHold.removeRpcHold())],
  }),
  copyCredentials: ({ leader, onNode }) => ({
    command: `${leader}:${CREDENTIALS_FILE} → this node (sha256 checked)`,
    scripts: [{ node: leader, script: cmd.readCredentials() }, onNode(cmd.writeCredentials(SHA_PLACEHOLDER), 'the leader\'s new cluster-credentials.tar.gpg')],
  }),
  followerStop: ({ onNode }) => ({ command: 'systemctl stop service-discover', scripts: [onNode(cmd.stopService())] }),
  followerWipe: ({ n, onNode }) => ({ command: wipeCommand(n.wipeSet ?? n.profile), scripts: [onNode(cmd.wipe(n.wipeSet ?? n.profile))] }),
  followerSetup: ({ n, onNode }) => ({
    command: setupWizardSummary(false, n.bindAddress),
    scripts: [onNode(setupWizardCommand(false), `on a terminal: ${n.bindAddress}, then ${SECRET_STDIN}`)],
  }),
  followerVerify: ({ leader }) => ({ command: `consul members on ${leader}: this node alive`, scripts: [{ node: leader, script: cmd.members(), stdin: SECRET_STDIN }] }),
};

function shapeOf(ctx: RegenContext): RunShape {
  return { meshServers: ctx.nodes.filter((x) => x.kind === 'server').length, revoke: ctx.options.revokeOldTokens };
}

/** The catalogue's steps of one node (the run-wide checks at the end are not a node's). */
function nodeSteps(ctx: RegenContext, n: PlannedNode): CatalogueEntry[] {
  return stepsForRole(n.role === 'leader' ? 'leader' : 'follower', shapeOf(ctx), n.kind).filter((e) => e.chain !== 'final');
}

/** Every step of one node: the runbook-equivalent command and the exact scripts. */
export function plannedSteps(ctx: RegenContext, n: PlannedNode): PlannedStep[] {
  const args: ViewArgs = {
    n,
    leader: ctx.leader ?? n.name,
    run: runLabel(ctx),
    onNode: (script, stdin) => ({ node: n.name, script, ...(stdin === undefined ? {} : { stdin }) }),
  };
  return nodeSteps(ctx, n).map((e) => {
    const view = STEP_VIEWS[e.key as keyof typeof STEP_VIEWS](args);
    return { step: e.name, node: n.name, command: view.command, scripts: view.scripts.map((x) => ({ ...x, script: unplaceholder(x.script) })) };
  });
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

function headerLines(ctx: RegenContext): string[] {
  const leader = ctx.nodes.find((n) => n.name === ctx.leader);
  const servers = ctx.nodes.filter((n) => n.kind === 'server').length;
  const agents = ctx.nodes.length - servers;
  return [
    ctx.runId === PLAN_RUN_ID ? `Plan for cluster ${ctx.cluster}` : `Plan for cluster ${ctx.cluster} (run ${ctx.runId})`,
    `  leader: ${leader ? `${leader.name} (${leader.bindAddress})` : 'not settled'}`,
    `  nodes: ${ctx.nodes.length} (${servers} mesh server${servers === 1 ? '' : 's'}, ${agents} agent${agents === 1 ? '' : 's'}); followers ${ctx.options.parallel} at a time`,
    `  backups: ${BACKUP_ROOT}/${runLabel(ctx)}/ on every node, before anything is removed`,
    '',
  ];
}

/** Nodes in run order, consecutive ones doing the same steps (same role, kind and profile) in one group. */
function groups(ctx: RegenContext): PlannedNode[][] {
  const out: PlannedNode[][] = [];
  const keyOf = (n: PlannedNode) => `${n.role}|${n.kind}|${n.profile}|${n.serviceDiscoverVersion ?? ''}|${nodeSteps(ctx, n).map((e) => e.key).join(',')}`;
  for (const n of orderedNodes(ctx)) {
    const last = out[out.length - 1];
    if (last?.[0] && n.role !== 'leader' && keyOf(last[0]) === keyOf(n)) last.push(n);
    else out.push([n]);
  }
  return out;
}

/** How every setup gets the secret: each modelled release has the dialog, so none falls back to --password= on argv. */
const SETUP_PATH = 'setup-wizard';

function groupLabel(g: PlannedNode[]): string {
  const first = g[0] as PlannedNode;
  const kind = first.kind === 'server' ? 'mesh server' : (first.kind ?? '?');
  const release = `service-discover ${first.serviceDiscoverVersion ?? '?'} (${SETUP_PATH})`;
  if (g.length === 1) return `${first.name} (${first.role === 'leader' ? 'leader, ' : ''}${kind}, ${first.profile}, ${release}, bind ${first.bindAddress})`;
  const names = g.length === 2 ? `${first.name}, ${g[1]?.name}` : `${first.name}…${g[g.length - 1]?.name}`;
  return `${names} (${g.length} ${kind}s, ${first.profile}, ${release})`;
}

/** One line per group of nodes: its steps as a chain; then one line per step saying what it changes. */
function compactLines(ctx: RegenContext): string[] {
  const lines = groups(ctx).map((g) => `${groupLabel(g)}: ${nodeSteps(ctx, g[0] as PlannedNode).map((e) => e.short).join(' → ')}`);
  lines.push('', 'what each step changes:');
  const used = new Set(ctx.nodes.flatMap((n) => nodeSteps(ctx, n).map((e) => e.key)));
  for (const e of CATALOGUE) if (used.has(e.key)) lines.push(`  ${e.name.padEnd(26)} ${e.changes}`);
  lines.push('  (regen plan --verbose shows every node\'s commands)');
  return lines;
}

/** Per node, every step with its command; with the exact scripts under each. */
function verboseLines(ctx: RegenContext): string[] {
  const lines: string[] = [];
  for (const n of orderedNodes(ctx)) {
    lines.push(`${n.name}  ${n.role ?? '?'}  ${n.kind ?? '?'}  profile ${n.profile}  service-discover ${n.serviceDiscoverVersion ?? '?'} (${SETUP_PATH})  bind ${n.bindAddress}`);
    for (const st of plannedSteps(ctx, n)) {
      lines.push(`    ${st.step.padEnd(26)} ${st.command}`);
      for (const x of st.scripts) {
        lines.push(`        on ${x.node}${x.stdin === undefined ? '' : `, stdin: ${x.stdin}`}:`);
        lines.push(indent(x.script, '          '));
      }
    }
  }
  return lines;
}

/** The run-wide steps after every node's chain (the final check, the optional hardening), from the catalogue. */
function closingLines(ctx: RegenContext): string[] {
  const shape = shapeOf(ctx);
  return CATALOGUE.filter((e) => (e.chain === 'final' || e.chain === 'harden') && applies(e, shape)).map(
    (e) => `then ${e.name} on ${ctx.leader}: ${e.changes.replace(/^nothing: /, '')}`,
  );
}

function problemTextLines(problems: PlanProblem[]): string[] {
  if (!problems.length) return [];
  const lines = ['', 'problems (regen start refuses until they are fixed):'];
  for (const p of problems) {
    lines.push(`  ✗ ${p.node ? `${p.node}: ` : ''}${p.message.replace(/\n/g, '\n    ')}`);
    if (p.hint) lines.push(`    next: ${p.hint}`);
  }
  return lines;
}

/** The one sentence about the downtime (the confirmation prompt does not repeat it). */
export const DOWNTIME_WARNING = "The mesh is down from the leader's stop until the last node is set up again.";

export function renderPlan(raw: RegenContext | null, o: RenderPlanOptions): string {
  const ctx = sanitizeDeep(raw);
  const problems = sanitizeDeep(o.problems ?? []);
  if (ctx === null) return `${['No plan could be made: regen start would stop before changing anything.', ...problemTextLines(problems)].join('\n')}\n`;
  const lines = [...headerLines(ctx), ...(o.verbose ? verboseLines(ctx) : compactLines(ctx))];
  const closing = closingLines(ctx);
  if (closing.length) lines.push('', ...closing);
  if (ctx.warnings.length) {
    lines.push('', 'warnings:');
    for (const w of ctx.warnings) lines.push(`  ! ${w.node ? `${w.node}: ` : ''}${w.message}`);
  }
  lines.push(...problemTextLines(problems), '', DOWNTIME_WARNING);
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
        : orderedNodes(ctx).map((n) => ({ name: n.name, role: n.role, kind: n.kind, profile: n.profile, serviceDiscoverVersion: n.serviceDiscoverVersion ?? null, setupPath: SETUP_PATH, bindAddress: n.bindAddress, steps: plannedSteps(ctx, n) })),
    warnings: ctx?.warnings ?? [],
    problems,
  };
}

export interface PlanResult {
  /** The machine's context at its confirmation point, over the nodes that could be planned; null if none. */
  context: RegenContext | null;
  problems: PlanProblem[];
}

/** The problems an error is made of (its typed list), or the error itself as the one problem. */
function problemsOf(e: ErrorRecord): PlanProblem[] {
  const one: PlanProblem = { ...(e.node === undefined ? {} : { node: e.node }), kind: e.kind, message: e.message, ...(e.hint === undefined ? {} : { hint: e.hint }) };
  return (e.problems ?? [one]).map((p) => ({ ...p, ...(p.hint === undefined && e.hint !== undefined ? { hint: e.hint } : {}) }));
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
      hint: e.hint ?? (e.kind === 'unreachable' ? `make ${n.name} reachable over SSH (ssh -F your ssh_config ${shq(n.sshHost)} true), then regen plan again` : 'regen log shows the command'),
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
      for (const p of problemsOf(toErrorRecord(err))) problems.push({ ...p, node: p.node ?? n.name, message: `${p.message} (not planned)` });
    }
  }
  const planned = inventory.nodes.filter((n) => !excluded.has(n.name));
  if (planned.length === 0) return { context: null, problems };
  const lower = new Set([...excluded].map((x) => x.toLowerCase()));
  // Without withSignal: a port bound to a signal would be the underlying one, without the overrides below.
  const { withSignal: _bound, ...unbound } = port;
  const viewPort: NodePort = {
    ...unbound,
    inspect: async (node) => facts.get(node) ?? port.inspect(node),
    // A node left out of the plan is still listed by the directory; it is a problem above, not a second one here.
    meshServers: async (node, profile) => (await port.meshServers(node, profile)).filter((s) => !lower.has(s.toLowerCase()) && !lower.has(s.split('.')[0]?.toLowerCase() ?? '')),
  };
  const result = await startRun({ store: a.store, port: viewPort, secret: null }, { inventory: { ...inventory, nodes: planned }, options: a.options, runId: PLAN_RUN_ID });
  if (result.state === 'confirming') return { context: result.context, problems };
  if (result.error) {
    problems.push(...problemsOf(result.error));
  } else {
    problems.push({ kind: 'internal', message: `the plan stopped in state ${result.state}` });
  }
  return { context: null, problems };
}

export type { Warning };
