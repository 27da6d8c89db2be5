/**
 * regen start / regen plan: load the inventory, get the secret, read every node (preflight, leader check), show the
 * plan, confirm the downtime, then run the machine to the end or to the first point that needs the operator.
 */
import type { Inventory, NodePort } from '../../machines/port.js';
import { RegenError, UsageError } from '../../machines/errors.js';
import type { RunOptions } from '../../machines/recovery.js';
import { startRun, type RunDeps } from '../../machines/runner.js';
import type { Secret } from '../../adapters/secrets/secret.js';
import type { Store } from '../../store/types.js';
import type { Io } from '../io.js';
import type { ConnectOptions } from '../main.js';
import { exitCodeForKind, EXIT } from '../exit-codes.js';
import { openRegenStore, obtainNamedSecret, makeNodePort, operate, type PortFactory, type SecretRequest } from '../wiring.js';
import { describeSource } from '../../adapters/secrets/secret-policy.js';
export { confirmByName, exitFor } from '../wiring.js';
import { makePlan, planJson, renderPlan } from '../plan-view.js';

export interface StartOptions extends ConnectOptions {
  db: string | undefined;
  json: boolean;
  inventory: string;
  inventoryFormat: 'auto' | 'yaml' | 'json' | 'ansible';
  cluster: string | undefined;
  leader: string | undefined;
  /** Plan nodes whose service-discover release is outside the tested table. */
  allowUntestedVersion?: boolean;
  yes: boolean;
  parallel: number;
  dryRun: boolean;
  /** Plan mode: show the exact script of every step. */
  verbose?: boolean;
  revokeOldTokens: boolean;
  maxUnitRounds: number;
  passwordFile: string | undefined;
  generatePassword: boolean;
  /** Take the secret from Carbonio's `<inventory>_consulpassword` (never implied: it holds the current secret). */
  passwordFromInventory?: boolean;
  /** Accept a short or common new secret. */
  weakSecret?: boolean;
  /** Go on although the new secret opens the current credentials (the same secret again). */
  reuseSecret?: boolean;
  /** Tests provide the node port (the fake cluster); default: SSH + Carbonio commands. */
  makePort?: PortFactory;
  /** Tests pin time and polling. */
  runDeps?: Partial<Pick<RunDeps, 'now' | 'sleep' | 'convergeTimeoutMs' | 'journalHooks' | 'afterTransition' | 'heartbeatMs'>>;
  runId?: string;
  /** Tests provide an open store (e.g. one that dies with a simulated crash); it is not closed here. */
  store?: Store;
}

export async function start(o: StartOptions, io: Io): Promise<number> {
  if (!Number.isInteger(o.parallel) || o.parallel < 1) throw new UsageError(`--parallel must be a whole number ≥ 1 (got ${o.parallel})`, '--parallel 8');
  if (!Number.isInteger(o.maxUnitRounds) || o.maxUnitRounds < 1) throw new UsageError(`--max-unit-rounds must be a whole number ≥ 1 (got ${o.maxUnitRounds})`, '--max-unit-rounds 3');
  const { loadInventory } = await import('../../adapters/inventory/index.js');
  const loaded: Inventory = loadInventory(o.inventory, { format: o.inventoryFormat, ...(o.cluster === undefined ? {} : { cluster: o.cluster }) });
  const inventory: Inventory = o.allowUntestedVersion === true ? { ...loaded, allowUntestedVersion: true } : loaded;
  if (o.leader !== undefined && !inventory.nodes.some((n) => n.name === o.leader)) {
    throw new UsageError(`--leader ${o.leader} is not a node of the inventory (nodes: ${inventory.nodes.map((n) => n.name).join(', ')})`, 'pass one of the inventory names to --leader');
  }
  if (!o.dryRun && !o.yes && !io.stdinIsTTY) {
    throw new UsageError('regen start needs a confirmation of the mesh downtime and there is no terminal to ask on', 'pass --yes (after reading regen plan), or run it in a terminal');
  }
  const request = secretRequest(o, io);
  const named = o.dryRun ? null : await obtainNamedSecret(request);
  const secret: Secret | null = named?.secret ?? null;
  const secretSource = named === null ? await plannedSource(request) : describeSource(named.source);

  const options = {
    parallel: o.parallel,
    maxUnitRounds: o.maxUnitRounds,
    revokeOldTokens: o.revokeOldTokens,
    ...(o.leader === undefined ? {} : { leader: o.leader }),
    ...(o.reuseSecret === true ? { reuseSecret: true } : {}),
  };
  if (o.dryRun) return plan(o, io, inventory, options, secretSource);
  io.err(`regen: the new mesh secret comes from ${secretSource}\n`);
  const store: Store = o.store ?? (await openRegenStore(o.db, io.env));
  const port: NodePort = await (o.makePort ?? makeNodePort)(inventory, o, store, io);
  const clusterState = await import('../cluster.js');
  // After the local lock, with the cluster lock, a cluster left mid-procedure is named with the way to resume it.
  const precheck = async (): Promise<void> => clusterState.refuseHalfDone(await clusterState.readClusterFindings(port, inventory), store);
  const cluster = await clusterState.makeClusterRun(port, store, io, o.runDeps?.heartbeatMs, precheck);
  return operate(
    io,
    { json: o.json, yes: o.yes, secretSource },
    (ui) => startRun({ store, port: cluster.port, secret, ...o.runDeps, ...ui, cluster: cluster.guard }, { inventory, options, ...(o.runId === undefined ? {} : { runId: o.runId }) }),
    async () => {
      await port.close();
      if (!o.store) store.close();
    },
  );
}

/**
 * Plan mode records nothing and changes nothing: the same machine runs against an in-memory store and stops at
 * its confirmation point; a node that cannot be planned is listed as a problem and the others are still shown.
 */
async function plan(o: StartOptions, io: Io, inventory: Inventory, options: RunOptions, secretSource: string): Promise<number> {
  const store: Store = o.store ?? (await openRegenStore(':memory:'));
  const port: NodePort = await (o.makePort ?? makeNodePort)(inventory, o, store, io);
  try {
    const clusterState = await import('../cluster.js');
    const findings = clusterState.findingsAsProblems(await clusterState.readClusterFindings(port, inventory), null);
    // A cluster left mid-procedure has no plan of its own (its leader is down): what the nodes say is the answer.
    const made = findings.some((p) => p.kind === 'needs-operator') ? { context: null, problems: [] } : await makePlan({ port, store, inventory, options });
    const context = made.context;
    const problems = [...findings, ...made.problems];
    if (o.json) io.out(`${JSON.stringify({ type: 'plan', plan: planJson(context, problems), secretSource })}\n`);
    else io.out(`${renderPlan(context, { color: io.isTTY, verbose: o.verbose ?? false, problems })}mesh secret source: ${secretSource}\n`);
    if (problems.length === 0) return EXIT.ok;
    io.err(`regen: the plan found ${problems.length} problem(s); regen start refuses until they are fixed (nothing was changed)\n`);
    // As regen start would exit: an unreachable node first, then anything broken, else the operator's question.
    const kind = (['unreachable', 'preflight'] as const).find((k) => problems.some((p) => p.kind === k)) ?? problems[0]?.kind ?? 'preflight';
    return exitCodeForKind(kind);
  } finally {
    await port.close();
    if (!o.store) store.close();
  }
}

/** Where the new secret comes from: only the sources the operator named; the Ansible file only when asked for. */
function secretRequest(o: StartOptions, io: Io): SecretRequest {
  return {
    passwordFile: o.passwordFile,
    generate: o.generatePassword,
    ...(o.passwordFromInventory === true ? { inventoryPath: o.inventory } : {}),
    weakSecret: o.weakSecret ?? false,
    io,
    required: true,
    newSecret: true,
  };
}

/** What the plan says about the secret's source, without reading it. */
async function plannedSource(r: SecretRequest): Promise<string> {
  const { namedSource } = await import('../../adapters/secrets/secret-policy.js');
  const source = namedSource({ ...(r.passwordFile === undefined ? {} : { passwordFile: r.passwordFile }), env: r.io.env, ...(r.inventoryPath === undefined ? {} : { ansibleInventory: r.inventoryPath }), generate: r.generate, isTTY: r.io.stdinIsTTY });
  if (source === 'prompt' && !r.io.stdinIsTTY) return 'none given yet (regen start needs --password-file, REGEN_MESH_PASSWORD, --password-from-inventory or --generate-password)';
  return describeSource(source);
}

export { planJson };
export { RegenError };
