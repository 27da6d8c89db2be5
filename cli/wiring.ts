/**
 * What the commands share: opening the store with the redactor, obtaining the secret, building the SSH + Carbonio
 * node port with the command audit, choosing the reporter, and Ctrl-C handling.
 */
import { UsageError } from '../machines/errors.js';
import type { Inventory, NodePort } from '../machines/port.js';
import type { RegenContext } from '../machines/recovery.js';
import type { RunDeps, RunEvent, RunResult } from '../machines/runner.js';
import { EXIT, exitCodeForKind } from './exit-codes.js';
import { renderPlan } from './plan-view.js';
import type { Secret } from '../adapters/secrets/secret.js';
import type { AuditSink } from '../adapters/ssh/remote.js';
import type { Store } from '../store/types.js';
import type { Io } from './io.js';
import type { ConnectOptions } from './main.js';

export type PortFactory = (inventory: Inventory, connect: ConnectOptions, store: Store, io: Io) => Promise<NodePort>;

/** The process-wide redactor: every secret obtained is added before it can be used. */
export async function sharedRedactor() {
  const { redactor } = await import('../adapters/secrets/redact.js');
  return redactor;
}

export async function openRegenStore(db: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Store> {
  const { openStore, defaultDbPath } = await import('../store/store.js');
  const store = openStore(db ?? defaultDbPath(env));
  const redactor = await sharedRedactor();
  store.setRedactor((t) => redactor.redact(t));
  return store;
}

export async function obtainSecret(a: {
  passwordFile: string | undefined;
  generate: boolean;
  inventoryPath?: string;
  io: Io;
  required: boolean;
  newSecret: boolean;
}): Promise<Secret | null> {
  const { obtainMeshSecret, hiddenPrompt } = await import('../adapters/secrets/index.js');
  const ansibleInventory = a.inventoryPath === undefined ? undefined : a.inventoryPath;
  const got = await obtainMeshSecret({
    ...(a.passwordFile === undefined ? {} : { passwordFile: a.passwordFile }),
    env: a.io.env,
    ...(ansibleInventory === undefined ? {} : { ansibleInventory }),
    prompt: a.io.stdinIsTTY ? (q: string) => hiddenPrompt(q, { input: a.io.stdin, output: a.io.stderr }) : undefined,
    generate: a.generate,
    isTTY: a.io.stdinIsTTY,
    purpose: a.newSecret ? 'new' : 'existing',
  });
  if (!got) {
    if (!a.required) return null;
    throw new UsageError('no mesh secret given', 'pass --password-file FILE (mode 0600), set REGEN_MESH_PASSWORD, run in a terminal to be asked, or --generate-password');
  }
  (await sharedRedactor()).add(got.secret, 'mesh secret');
  return got.secret;
}

/** The real node port: one SSH connection per node (ssh_config, known_hosts, agent) and Carbonio's commands. */
export const makeNodePort: PortFactory = async (inventory, connect, store, io) => {
  const { SshPool } = await import('../adapters/ssh/index.js');
  const { createCarbonioPort } = await import('../adapters/carbonio/port.js');
  const redactor = await sharedRedactor();
  let currentRun: string | null = null;
  const pool = new SshPool({
    targets: inventory.nodes.map((n) => ({
      node: n.name,
      host: n.sshHost,
      ...(n.sshPort === undefined ? {} : { port: n.sshPort }),
      ...(n.sshUser === undefined ? {} : { user: n.sshUser }),
      ...(n.identityFile === undefined ? {} : { identityFile: n.identityFile }),
    })),
    ...(connect.sshConfig === undefined ? {} : { sshConfigPath: connect.sshConfig }),
    ...(connect.knownHosts === undefined ? {} : { knownHostsPath: connect.knownHosts }),
    acceptNewHostKeys: connect.acceptNewHostKeys,
    connectTimeoutMs: connect.connectTimeoutS * 1000,
    commandTimeoutMs: connect.commandTimeoutS * 1000,
    passphrasePrompt: io.stdinIsTTY
      ? async (file: string) => {
          const { hiddenPrompt } = await import('../adapters/secrets/index.js');
          return hiddenPrompt(`passphrase for ${file}: `, { input: io.stdin, output: io.stderr });
        }
      : undefined,
    audit: (entry: Parameters<AuditSink>[0]) => {
      const runId = currentRun ?? store.latestUnfinishedRun(inventory.cluster)?.id ?? null;
      currentRun = runId;
      if (runId === null) return;
      store.audit({
        runId,
        node: entry.node,
        command: redactor.redact(entry.command),
        exitCode: entry.exitCode,
        durationMs: entry.durationMs,
        outcome: entry.outcome,
        stdoutTail: redactor.redact(entry.stdoutTail),
        stderrTail: redactor.redact(entry.stderrTail),
      });
    },
  });
  const port = createCarbonioPort((node: string) => pool.remote(node), { commandTimeoutMs: connect.commandTimeoutS * 1000 });
  return {
    ...bindAll(port),
    // A secret read back from the leader is masked everywhere from the moment it exists.
    readMeshSecret: async (node: string) => {
      const s = await port.readMeshSecret(node);
      if (s) redactor.add(s, 'mesh secret');
      return s;
    },
    close: async () => {
      await port.close();
      await pool.closeAll();
    },
  };
};

function bindAll(port: NodePort): NodePort {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(port) as (keyof NodePort)[]) {
    const v = port[k];
    out[k] = typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(port) : v;
  }
  return out as unknown as NodePort;
}

export interface Reporter {
  event(e: RunEvent): void;
  close(): void;
  /** Around other output on the same terminal (the plan, the confirmation prompt): the live view steps aside. */
  suspend(): void;
  resume(): void;
}

/** --json: NDJSON on stdout; a terminal: the live view (stderr); otherwise one plain line per event (stderr). */
export async function makeReporter(json: boolean, io: Io): Promise<Reporter> {
  const t = await import('../adapters/terminal/index.js');
  const redactor = await sharedRedactor();
  const color = t.useColor(io.stderr as never, io.env);
  const inner = json
    ? t.jsonReporter((line: string) => io.out(line), { redactor })
    : io.isTTY && io.env['TERM'] !== 'dumb'
      ? t.liveReporter(io.stderr as never, { redactor, color })
      : t.plainReporter((line: string) => io.err(line), { redactor, color });
  let closed = false;
  return {
    event: (e) => {
      if (!closed) inner.event(e.type === 'step.started' && e.command === undefined ? { ...e, command: describeStep(e.step) } : e);
    },
    close: () => {
      if (closed) return;
      closed = true;
      inner.close();
    },
    suspend: () => inner.suspend?.(),
    resume: () => inner.resume?.(),
  };
}

/** What a step amounts to, for the live view's "now running" column (the exact scripts are in regen log). */
function describeStep(step: string): string {
  const map: Record<string, string> = {
    backup: 'cp -a … /var/backups/regen/<run>/',
    'leader.reset-index': 'consul acl bootstrap',
    'leader.reset-file': 'echo N > …/data/acl-bootstrap-reset',
    'leader.stop': 'systemctl stop service-discover',
    'follower.stop': 'systemctl stop service-discover',
    'leader.wipe': 'rm config.json main.json *.pem',
    'follower.wipe': 'rm config.json main.json *.pem',
    'leader.raft-recovery': 'write data/raft/peers.json (this server alone)',
    'mesh.stop-server': 'systemctl stop service-discover',
    'mesh.raft-aside': 'mv data/raft → backup',
    'leader.setup': 'service-discover setup --first-instance',
    'follower.setup': 'service-discover setup',
    'follower.copy-credentials': 'copy cluster-credentials.tar.gpg',
    'leader.verify': 'consul members',
    'follower.verify': 'consul members',
    'final.verify': 'consul members; sha256sum',
    'harden.revoke': 'consul acl token delete',
  };
  return map[step] ?? step;
}

/** First Ctrl-C: finish the command in flight, journal it, stop resumable. Second: stop at once. */
export function interruptHandling(io: Io, reporter: Reporter): { shouldStop: () => boolean; dispose: () => void } {
  let count = 0;
  const dispose = io.onInterrupt(() => {
    count++;
    if (count === 1) {
      // The live view steps aside so its next frame is drawn below the message, not over it.
      reporter.suspend();
      io.err('regen: stopping after the command in flight (Ctrl-C again to stop at once; the step is then checked on resume)\n');
      reporter.resume();
    } else {
      reporter.close();
      io.err('\nregen: stopped at once; regen resume will check the interrupted step on the node before going on\n');
      process.exit(130);
    }
  });
  return { shouldStop: () => count > 0, dispose };
}

export function summarize(result: RunResult, o: { dryRun: boolean }): string {
  const lines: string[] = [];
  if (result.status === 'done') {
    lines.push(`\nregen: run ${result.runId} done: every node is an alive member with the leader's credentials.`);
    lines.push(`Keep the new secret safe: it is on the leader in /var/lib/service-discover/password (root only).`);
  } else if (result.status === 'aborted') {
    lines.push(`\nregen: run ${result.runId} aborted; no node was changed after the point shown by regen status ${result.runId}.`);
  } else if (o.dryRun) {
    lines.push(`\nregen: the plan could not be made (${result.state}).`);
  } else if (result.error?.kind === 'aborted') {
    lines.push(`\nregen: run ${result.runId} stopped by the operator at ${result.context.failedAt ?? result.state}; the commands in flight finished and are journaled. It is resumable.`);
  } else {
    lines.push(`\nregen: run ${result.runId} stopped (${result.status}) at ${result.context.failedAt ?? result.state}.`);
  }
  if (result.error) {
    lines.push(`${result.error.node ? `${result.error.node}: ` : ''}${result.error.message}`);
    if (result.error.hint) lines.push(`next: ${result.error.hint}`);
  }
  if (!o.dryRun && result.status !== 'done' && result.status !== 'aborted') lines.push(`state: regen status ${result.runId}   continue: regen resume ${result.runId}`);
  return `${lines.join('\n')}\n`;
}


/**
 * What start and resume share once the store and port are open: the reporter, Ctrl-C handling, the confirmation
 * (the plan, then the cluster name typed, or --yes), the summary and the exit code.
 */
export async function operate(
  io: Io,
  o: { json: boolean; yes: boolean },
  go: (deps: Pick<RunDeps, 'onEvent' | 'shouldStop' | 'confirm'>) => Promise<RunResult>,
  release: () => Promise<void>,
): Promise<number> {
  const reporter = await makeReporter(o.json, io);
  const interrupts = interruptHandling(io, reporter);
  try {
    const result = await go({
      onEvent: (e) => reporter.event(e),
      shouldStop: interrupts.shouldStop,
      confirm: async (ctx: RegenContext) => {
        if (!o.yes && !io.stdinIsTTY) {
          throw new UsageError(`run ${ctx.runId} is waiting for the confirmation of the downtime and there is no terminal to ask on`, `regen resume ${ctx.runId} --yes`);
        }
        if (o.json) return o.yes || confirmByName(ctx, io);
        reporter.suspend();
        try {
          io.err(renderPlan(ctx, { color: io.isTTY }));
          return o.yes || (await confirmByName(ctx, io));
        } finally {
          reporter.resume();
        }
      },
    });
    reporter.close();
    io.err(summarize(result, { dryRun: false }));
    return exitFor(result);
  } finally {
    interrupts.dispose();
    reporter.close();
    await release();
  }
}

export function exitFor(result: RunResult): number {
  if (result.status === 'done') return EXIT.ok;
  if (result.status === 'aborted') return EXIT.aborted;
  if (result.error) return exitCodeForKind(result.error.kind);
  return result.status === 'needs-operator' ? EXIT.needsOperator : EXIT.stepFailed;
}

/** The operator types the cluster name to go on (a yes/no is too easy to give by reflex during an incident). */
export async function confirmByName(ctx: RegenContext, io: Io): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: io.stdin, output: io.stderr, terminal: io.stdinIsTTY });
  try {
    const answer = await rl.question(`\nThe mesh will be DOWN from the leader's stop until every node is set up again.\nType the cluster name (${ctx.cluster}) to go on, anything else to abort: `);
    return answer.trim() === ctx.cluster;
  } finally {
    rl.close();
  }
}
