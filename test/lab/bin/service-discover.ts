/**
 * The simulated `service-discover` command of a lab node (server or agent package, per node.json `kind`):
 * `setup [BIND] [--password=S] [--first-instance]` (agents: `--wizard`, which only silences the output),
 * `setup-wizard [--first-instance]` (the terminal dialog), `bootstrap-token`, `version`. Both setups need a terminal
 * on stdin, first of all, as `term.New` does. Errors print as kong prints them.
 */
import * as os from 'node:os';
import { CREDENTIALS_FILE, LOCALCONFIG, SimError, bootstrapToken, meshServers, setup, setupPreRun } from '../../sim/model.js';
import { TermEof, XTerm, agentWizard, serverWizard, type DialogInterface } from '../../sim/setup-dialog.js';
import {
  agentPid,
  applyLatency,
  consumeFailNextSetup,
  firstReachableLdap,
  loadSelf,
  localconfigUrls,
  runMain,
  waitForAgent,
  withWorld,
  type NodeJson,
} from './node-world.js';
import { openRawTerminal, requireTerminal } from './raw-term.js';
import * as readline from 'node:readline';

function fail(message: string): SimError {
  return new SimError(`service-discover: error: ${message}`, 1);
}

interface SetupArgs {
  bind?: string;
  password?: string;
  firstInstance: boolean;
  wizard: boolean;
}

/** kong's parse, which runs before any command: flags per package (`--first-instance` server, `--wizard` agent). */
function parseSetup(self: NodeJson, argv: string[], wizardCommand: boolean): SetupArgs {
  const out: SetupArgs = { firstInstance: false, wizard: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--first-instance' && self.kind === 'server') out.firstInstance = true;
    else if (a === '--wizard' && self.kind === 'agent' && !wizardCommand) out.wizard = true;
    else if (a.startsWith('--password=')) out.password = a.slice('--password='.length);
    else if (a === '--password') {
      const v = argv[++i];
      if (v === undefined) throw fail('--password: expected string value but got EOF');
      out.password = v;
    } else if (a.startsWith('-')) throw fail(`unknown flag ${a.replace(/=.*/, '')}`);
    else if (out.bind === undefined) out.bind = a;
    else throw fail(`unexpected argument ${a}`);
  }
  return out;
}

/** The node's cards as Go's net.Interfaces/Addrs list them (every family, with the prefix). */
function dialogInterfaces(self: NodeJson): DialogInterface[] {
  if (process.env.REGEN_LAB_NODE_JSON !== undefined) {
    return [
      { name: 'lo', addresses: ['127.0.0.1/8', '::1/128'] },
      { name: 'eth0', addresses: [`${self.ip}/24`] },
    ];
  }
  return Object.entries(os.networkInterfaces()).map(([name, addrs]) => ({
    name,
    addresses: (addrs ?? []).map((a) => a.cidr ?? a.address),
  }));
}

/** The localconfig's `ldap_master_url` values (space separated), none when the key is absent. */
function ldapMasterUrls(self: NodeJson): string[] {
  return localconfigUrls(withWorld((w) => w.fs(self.name).read(LOCALCONFIG)?.toString('utf8') ?? ''), 'ldap_master_url');
}

/**
 * `RetrieveZimbraHostname` → `CheckServerAvailability(true)`: a connection to a master URL, the last error kept
 * (pkg/carbonio/ldap.go `connect`, pkg/command/common.go). The go-ldap error text is *inferred*. A localconfig
 * without the key (the namespace-less test lab) skips the check.
 */
async function checkDirectory(self: NodeJson): Promise<void> {
  const urls = ldapMasterUrls(self);
  if (urls.length === 0) return;
  const r = await firstReachableLdap(urls);
  if (r.ok) return;
  // A refused bind is returned by connect as it is, without "failed to connect to ldap" (pkg/carbonio/ldap.go).
  if (r.bind) throw fail('unable to connect to ldap: LDAP Result Code 49 "Invalid Credentials": ');
  throw fail(`unable to connect to ldap: failed to connect to ldap: LDAP Result Code 200 "Network Error": dial tcp ${r.host}:${r.port}: ${r.error}`);
}

function runModelSetup(self: NodeJson, args: SetupArgs, uid: number): void {
  try {
    withWorld((w) =>
      setup(w, self.name, {
        bind: args.bind,
        password: args.password,
        firstInstance: args.firstInstance,
        uid,
        afterPrechecks: () => {
          const message = consumeFailNextSetup();
          if (message !== null) throw new SimError(message);
        },
      }),
    );
  } catch (e) {
    if (e instanceof SimError) throw fail(e.message);
    throw e;
  }
}

function preRun(self: NodeJson, uid: number): void {
  try {
    withWorld((w) => setupPreRun(w, self.name, uid));
  } catch (e) {
    if (e instanceof SimError) throw fail(e.message);
    throw e;
  }
}

/** `Setup.Run`: terminal, preRun, then the non-interactive setup (success prints nothing). */
async function runSetup(self: NodeJson, argv: string[]): Promise<number> {
  const args = parseSetup(self, argv, false);
  requireTerminal();
  const term = openRawTerminal();
  try {
    preRun(self, process.getuid?.() ?? 0);
    if ((args.password ?? '') !== '' || (args.bind ?? '') !== '') await checkDirectory(self);
    runModelSetup(self, args, process.getuid?.() ?? 0);
  } finally {
    term.close();
  }
  // The unit was started: let the caller's next `consul …` find the agent listening, as systemd's start would.
  if (agentPid(self, self.short) > 0) await waitForAgent();
  return 0;
}

/** `isFirstInstance`: no readable credentials file and no mesh server in the directory. */
function isFirstInstance(self: NodeJson): boolean {
  return withWorld((w) => !w.fs(self.name).exists(CREDENTIALS_FILE) && meshServers(w).length === 0);
}

/** `Wizard.Run`: terminal, preRun, the dialog, then the same setup as `setup`. */
async function runWizard(self: NodeJson, argv: string[]): Promise<number> {
  const args = parseSetup(self, argv, true);
  requireTerminal();
  const uid = process.getuid?.() ?? 0;
  const term = openRawTerminal();
  try {
    preRun(self, uid);
    const t = new XTerm(term.io);
    const first = self.kind === 'server' && (args.firstInstance || isFirstInstance(self));
    let answers;
    try {
      // The lab's knob `service-discover setup-wizard password`: a pause inside the dialog, before the password prompt.
      const pause = (): Promise<void> => applyLatency(['service-discover', 'setup-wizard', 'password']);
      answers = self.kind === 'server' ? await serverWizard(t, dialogInterfaces(self), first, pause) : await agentWizard(t, dialogInterfaces(self), pause);
    } catch (e) {
      if (e instanceof SimError) throw fail(e.message);
      // term.MustRead panics on EOF (Ctrl-C, Ctrl-D, input closed): Go's panic text, exit 2.
      if (e instanceof TermEof) throw new SimError('panic: EOF\n\ngoroutine 1 [running]:\nmain.main()', 2);
      throw e;
    }
    await applyLatency(['service-discover', 'setup']);
    await checkDirectory(self);
    runModelSetup(self, { ...args, bind: answers.bind, password: answers.password, firstInstance: first }, uid);
  } finally {
    term.close();
  }
  if (agentPid(self, self.short) > 0) await waitForAgent();
  return 0;
}

/** Lines from stdin, one at a time (bootstrap-token without --password). */
function lineReader(): { next: (timeoutMs: number) => Promise<string | null>; close: () => void } {
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  const lines: string[] = [];
  const waiters: Array<(l: string | null) => void> = [];
  let ended = false;
  rl.on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else lines.push(l);
  });
  rl.on('close', () => {
    ended = true;
    for (const w of waiters.splice(0)) w(null);
  });
  return {
    next: (timeoutMs) => {
      const l = lines.shift();
      if (l !== undefined) return Promise.resolve(l);
      if (ended) return Promise.resolve(null);
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve(null), timeoutMs);
        waiters.push((v) => {
          clearTimeout(t);
          resolve(v);
        });
      });
    },
    close: () => rl.close(),
  };
}

async function readPassword(argv: string[]): Promise<string> {
  const flag = argv.find((a) => a.startsWith('--password='));
  if (flag !== undefined) return flag.slice('--password='.length);
  const lines = lineReader();
  try {
    process.stderr.write('Insert the cluster credential password: ');
    return (await lines.next(300_000)) ?? '';
  } finally {
    lines.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const self = loadSelf();
  const [cmd = '', ...rest] = argv;
  // The wizard's latency knob (`service-discover setup`) acts after the dialog, where the real work is.
  if (cmd !== 'setup-wizard') await applyLatency(['service-discover', cmd]);
  switch (cmd) {
    case 'version':
      // pkg/command/version.go: the constant ApplicationVersion (0.1.0 at every tag) and no agent version.
      process.stdout.write('service-discover version: 0.1.0\nagent version: N/A\n');
      return 0;
    case 'setup':
      return runSetup(self, rest);
    case 'setup-wizard':
      return runWizard(self, rest);
    case 'bootstrap-token': {
      if ((process.getuid?.() ?? 0) !== 0) throw fail('this command must be executed as root');
      const password = await readPassword(rest);
      const token = withWorld((w) => {
        try {
          return bootstrapToken(w, self.name, password);
        } catch (e) {
          if (e instanceof SimError) throw fail(e.message);
          throw e;
        }
      });
      process.stdout.write(`${token}\n`);
      return 0;
    }
    case '':
    case '--help':
    case '-h':
      process.stdout.write('Usage: service-discover <command>\n\nCommands:\n  setup\n  bootstrap-token\n');
      return cmd === '' ? 80 : 0;
    default:
      throw fail(`unexpected argument ${cmd}`);
  }
}

runMain('service-discover', main);
