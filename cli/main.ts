#!/usr/bin/env node
/**
 * regen's command line. Each command is declared here and lazily imports its module, a plain async function
 * taking typed options (tests call those directly). Errors become exit codes in one place (cli/exit-codes.ts).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT, EXIT_DESCRIPTIONS, exitCodeFor } from './exit-codes.js';
import { hintOf } from './lock-advice.js';
import { processIo, type Io } from './io.js';
import { UsageError } from '../machines/errors.js';
import { redactor } from '../adapters/secrets/redact.js';
import { sanitize } from '../adapters/terminal/sanitize.js';

/** Followers set up at once unless --parallel says otherwise. */
export const DEFAULT_PARALLEL = 8;

function globalOptions<T>(y: Argv<T>) {
  return y
    .option('db', { type: 'string', describe: 'state database (default: $REGEN_DB, else $XDG_STATE_HOME/regen/regen.db)' })
    .option('json', { type: 'boolean', default: false, describe: 'newline-delimited JSON on stdout' });
}

function connectOptions<T>(y: Argv<T>) {
  return y
    .option('ssh-config', { type: 'string', describe: 'OpenSSH client config (default ~/.ssh/config)' })
    .option('known-hosts', { type: 'string', describe: 'known_hosts file to record accepted keys in (default ~/.ssh/known_hosts); known_hosts2, /etc/ssh/ssh_known_hosts and ssh_config\'s files are read too' })
    .option('accept-new-host-keys', { type: 'boolean', default: false, describe: 'trust and record host keys not yet known (never a changed key)' })
    .option('connect-timeout', { type: 'number', default: 10, describe: 'seconds to wait for an SSH connection' })
    .option('command-timeout', { type: 'number', default: 300, describe: 'seconds a single remote command may take' });
}

function secretOptions<T>(y: Argv<T>) {
  return y
    .option('password-file', { type: 'string', describe: 'file holding the mesh secret (mode 0600); else $REGEN_MESH_PASSWORD or a hidden prompt (two sources at once are refused)' })
    .option('generate-password', { type: 'boolean', default: false, describe: 'generate a new random mesh secret (printed nowhere: read it later from the leader\'s /var/lib/service-discover/password)' });
}

/** Options of a new secret (start and plan). */
function newSecretOptions<T>(y: Argv<T>) {
  return y
    .option('password-from-inventory', { type: 'boolean', default: false, describe: "take the new secret from the Ansible <inventory>_consulpassword file (Carbonio's installer leaves the current secret there)" })
    .option('weak-secret', { type: 'boolean', default: false, describe: 'accept a new secret shorter than 12 characters or in the list of obvious ones' })
    .option('reuse-secret', { type: 'boolean', default: false, describe: 'go on although the new secret opens the current credentials (it is the same secret)' });
}

/** yargs refused the command line and has said why. */
class CommandLineRefused extends Error {}

function exitCodeLines(): string {
  return (Object.keys(EXIT) as (keyof typeof EXIT)[]).map((k) => `  ${String(EXIT[k]).padStart(2)}  ${EXIT_DESCRIPTIONS[k]}`).join('\n');
}

type Run = (fn: () => Promise<number>) => Promise<void>;

/** The commands that drive a run: start, plan, resume. */
function runCommands<T>(y: Argv<T>, run: Run, io: Io) {
  return y
    .command(
      'start',
      'regenerate the mesh credentials (plan, confirm, then run)',
      (y) =>
        newSecretOptions(secretOptions(connectOptions(globalOptions(y))))
          .option('inventory', { alias: 'i', type: 'string', demandOption: true, describe: 'inventory file (regen YAML/JSON or Carbonio Ansible INI)' })
          .option('inventory-format', { choices: ['auto', 'yaml', 'json', 'ansible'] as const, default: 'auto' as const })
          .option('cluster', { type: 'string', describe: 'cluster name (Ansible inventories: default the file name)' })
          .option('leader', { type: 'string', describe: 'node to regenerate on, overriding leader detection' })
          .option('allow-untested-version', { type: 'boolean', default: false, describe: 'plan nodes whose service-discover release regen was not tested against' })
          .option('yes', { alias: 'y', type: 'boolean', default: false, describe: 'confirm the mesh downtime without asking' })
          .option('parallel', { type: 'number', default: DEFAULT_PARALLEL, describe: 'followers set up at once (commands to one node share at most 8 SSH channels)' })
          .option('dry-run', { type: 'boolean', default: false, describe: 'print the plan and change nothing (same as regen plan)' })
          .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'with --dry-run: show the exact script of every step' })
          .option('revoke-old-tokens', { type: 'boolean', default: false, describe: 'after verification, delete the management tokens older than the new one' })
          .option('max-unit-rounds', { type: 'number', default: 3, describe: 'attempts of wipe + setup per node before stopping' }),
      (a) => run(async () => (await import('./commands/start.js')).start(toStartOptions(a), io)),
    )
    .command(
      'plan',
      'show what start would do, reading every node; changes nothing',
      (y) =>
        newSecretOptions(secretOptions(connectOptions(globalOptions(y))))
          .option('inventory', { alias: 'i', type: 'string', demandOption: true })
          .option('inventory-format', { choices: ['auto', 'yaml', 'json', 'ansible'] as const, default: 'auto' as const })
          .option('cluster', { type: 'string' })
          .option('leader', { type: 'string' })
          .option('allow-untested-version', { type: 'boolean', default: false })
          .option('parallel', { type: 'number', default: DEFAULT_PARALLEL })
          .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'show the exact script of every step (what is sent over SSH; secrets go on stdin)' }),
      (a) => run(async () => (await import('./commands/start.js')).start({ ...toStartOptions({ ...a, yes: false, 'dry-run': true }), dryRun: true }, io)),
    )
    .command(
      'resume [run]',
      'continue a run from its last completed step (default: the latest unfinished run)',
      (y) =>
        secretOptions(connectOptions(globalOptions(y)))
          .positional('run', { type: 'string' })
          .option('max-recoveries', { type: 'number', default: 20, describe: 'cap on resumes of one run' })
          .option('from-cluster', { type: 'boolean', default: false, describe: "import the run from the mirrors on the nodes first (a lost or other machine's database); needs -i" })
          .option('inventory', { alias: 'i', type: 'string', describe: 'with --from-cluster: the inventory whose nodes hold the mirrors' })
          .option('yes', { alias: 'y', type: 'boolean', default: false, describe: 'confirm the downtime if the run stopped before its confirmation' }),
      (a) =>
        run(async () =>
          (await import('./commands/resume.js')).resume(
            {
              ...connectFrom(a),
              db: a.db,
              json: a.json,
              run: a.run,
              passwordFile: a['password-file'],
              maxRecoveries: a['max-recoveries'],
              yes: a.yes,
              ...fromClusterOption(a['from-cluster'], a.inventory),
            },
            io,
          ),
        ),
    );
}

/** The commands that read or administer the database, and discover. */
function viewCommands<T>(y: Argv<T>, run: Run, io: Io) {
  return y
    .command(
      'status [run]',
      'where a run stands: state, leader, downtime, a node × step view, what to do next',
      (y) => globalOptions(y).positional('run', { type: 'string' }).option('watch', { type: 'boolean', default: false }),
      (a) => run(async () => (await import('./commands/status.js')).status({ db: a.db, json: a.json, run: a.run, watch: a.watch }, io)),
    )
    .command(
      'runs',
      'list the runs in the database',
      (y) => globalOptions(y),
      (a) => run(async () => (await import('./commands/status.js')).runs({ db: a.db, json: a.json }, io)),
    )
    .command(
      'log [run]',
      'the audit of remote commands (redacted): node, exit code, duration, output tail',
      (y) => globalOptions(y).positional('run', { type: 'string' }).option('node', { type: 'string' }).option('limit', { type: 'number', default: 200 }),
      (a) => run(async () => (await import('./commands/status.js')).log({ db: a.db, json: a.json, run: a.run, node: a.node, limit: a.limit }, io)),
    )
    .command(
      'unlock',
      'remove a stale lock left by a regen process that died',
      (y) =>
        connectOptions(globalOptions(y))
          .option('cluster', { type: 'string', demandOption: true })
          .option('inventory', { alias: 'i', type: 'string', describe: 'also remove the stale cluster lock on the nodes of this inventory' }),
      (a) => run(async () => (await import('./commands/admin.js')).unlock({ db: a.db, cluster: a.cluster, ...(a.inventory === undefined ? {} : { inventory: a.inventory, connect: connectFrom(a) }) }, io)),
    )
    .command(
      'abort [run]',
      'mark an unfinished run aborted (changes no node; backups stay on the nodes)',
      (y) =>
        connectOptions(globalOptions(y))
          .positional('run', { type: 'string' })
          .option('inventory', { alias: 'i', type: 'string', describe: "also mark it aborted in the run's mirror on the nodes of this inventory" }),
      (a) => run(async () => (await import('./commands/admin.js')).abort({ db: a.db, run: a.run, ...(a.inventory === undefined ? {} : { inventory: a.inventory, connect: connectFrom(a) }) }, io)),
    )
    .command(
      'discover',
      'list the Carbonio servers and mesh servers from a directory node and write an inventory to review',
      (y) =>
        connectOptions(globalOptions(y))
          .option('directory', { type: 'string', demandOption: true, describe: 'SSH host of a Carbonio node (usually the directory server)' })
          .option('cluster', { type: 'string', demandOption: true })
          .option('output', { alias: 'o', type: 'string', describe: 'write the inventory here (default: stdout)' }),
      (a) =>
        run(async () =>
          (await import('./commands/discover.js')).discover({ ...connectFrom(a), db: a.db, directory: a.directory, cluster: a.cluster, output: a.output }, io),
        ),
    );
}

export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  let code: number = EXIT.ok;
  const run = async (fn: () => Promise<number>) => {
    code = await fn();
  };
  const parser = viewCommands(runCommands(yargs(argv), run, io), run, io)
    .scriptName('regen')
    .usage('$0 <command> [options]\n\nRegenerate the credentials of a Carbonio Mesh (service-discover / Consul) over SSH, resumably.')
    .demandCommand(1, 'name a command: regen start | plan | resume | status | runs | log | unlock | abort | discover')
    .strict()
    .help()
    .version()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .epilog(`exit codes:\n${exitCodeLines()}`)
    .fail((msg, err) => {
      if (err) throw err;
      io.err(`regen: ${msg}\nrun regen --help for the commands and options\n`);
      // Thrown, so that the command's handler never runs on arguments yargs refused (one error, not two).
      throw new CommandLineRefused();
    });
  try {
    await parser.parseAsync();
  } catch (err) {
    code = err instanceof CommandLineRefused ? EXIT.usage : reportError(err, io);
  }
  return code;
}

export interface ConnectOptions {
  sshConfig: string | undefined;
  knownHosts: string | undefined;
  acceptNewHostKeys: boolean;
  connectTimeoutS: number;
  commandTimeoutS: number;
}

function connectFrom(a: { 'ssh-config'?: string; 'known-hosts'?: string; 'accept-new-host-keys': boolean; 'connect-timeout': number; 'command-timeout': number }): ConnectOptions {
  return {
    sshConfig: a['ssh-config'],
    knownHosts: a['known-hosts'],
    acceptNewHostKeys: a['accept-new-host-keys'],
    connectTimeoutS: a['connect-timeout'],
    commandTimeoutS: a['command-timeout'],
  };
}

type StartArgs = Parameters<typeof connectFrom>[0] & {
  db?: string;
  json: boolean;
  inventory: string;
  'inventory-format': 'auto' | 'yaml' | 'json' | 'ansible';
  cluster?: string;
  leader?: string;
  'allow-untested-version'?: boolean;
  yes: boolean;
  parallel: number;
  'dry-run': boolean;
  verbose?: boolean;
  'revoke-old-tokens'?: boolean;
  'max-unit-rounds'?: number;
  'password-file'?: string;
  'generate-password': boolean;
  'password-from-inventory'?: boolean;
  'weak-secret'?: boolean;
  'reuse-secret'?: boolean;
};

function toStartOptions(a: StartArgs) {
  return {
    ...connectFrom(a),
    db: a.db,
    json: a.json,
    inventory: a.inventory,
    inventoryFormat: a['inventory-format'],
    cluster: a.cluster,
    leader: a.leader,
    allowUntestedVersion: a['allow-untested-version'] ?? false,
    yes: a.yes,
    parallel: a.parallel,
    dryRun: a['dry-run'],
    verbose: a.verbose ?? false,
    revokeOldTokens: a['revoke-old-tokens'] ?? false,
    maxUnitRounds: a['max-unit-rounds'] ?? 3,
    passwordFile: a['password-file'],
    generatePassword: a['generate-password'],
    passwordFromInventory: a['password-from-inventory'] ?? false,
    weakSecret: a['weak-secret'] ?? false,
    reuseSecret: a['reuse-secret'] ?? false,
  };
}

/** Every line goes through the redactor, the REGEN_DEBUG stack included: an error may quote a node's output. */
export function reportError(err: unknown, io: Io): number {
  const code = exitCodeFor(err);
  const e = err as { message?: string; node?: string };
  const msg = err instanceof Error ? err.message : String(err);
  const say = (text: string): void => io.err(sanitize(redactor.redact(text)));
  say(`regen: ${e.node && !msg.includes(e.node) ? `${e.node}: ` : ''}${msg}\n`);
  const hint = hintOf(err);
  if (hint) say(`next: ${hint}\n`);
  if (code === EXIT.internal && err instanceof Error && err.stack && process.env['REGEN_DEBUG']) say(`${err.stack}\n`);
  return code;
}

function invokedDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  main(hideBin(process.argv)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.exitCode = reportError(err, processIo());
    },
  );
}

function fromClusterOption(fromCluster: boolean, inventory: string | undefined): { fromCluster?: { inventory: string } } {
  if (!fromCluster) return {};
  if (inventory === undefined) throw new UsageError('--from-cluster needs the inventory whose nodes hold the run mirrors', 'regen resume --from-cluster -i INVENTORY [RUN]');
  return { fromCluster: { inventory } };
}
