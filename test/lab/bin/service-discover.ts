/**
 * The simulated `service-discover` command of a lab node (server or agent package, per node.json `kind`):
 * `setup [BIND] [--password=S] [--first-instance]` (agents: also `--wizard`, reading the bind address and the
 * password from stdin), `bootstrap-token`, `--version`. Errors print as kong prints them.
 */
import * as readline from 'node:readline';
import { SimError, bootstrapToken, setup } from '../../sim/model.js';
import {
  SD_VERSION,
  agentPid,
  applyLatency,
  consumeFailNextSetup,
  loadSelf,
  runMain,
  waitForAgent,
  withWorld,
  type NodeJson,
} from './node-world.js';

function fail(message: string): SimError {
  return new SimError(`service-discover: error: ${message}`, 1);
}

interface SetupArgs {
  bind?: string;
  password?: string;
  firstInstance: boolean;
  wizard: boolean;
}

function parseSetup(self: NodeJson, argv: string[]): SetupArgs {
  const out: SetupArgs = { firstInstance: false, wizard: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--first-instance' && self.kind === 'server') out.firstInstance = true;
    else if (a === '--wizard' && self.kind === 'agent') out.wizard = true;
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

/** Lines from stdin, one at a time (the wizard with stdin not a terminal). */
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

async function wizard(args: SetupArgs): Promise<SetupArgs> {
  const lines = lineReader();
  try {
    const self = loadSelf();
    process.stdout.write(`eth0 ${self.ip}/24\n`);
    process.stdout.write('Specify the binding address for service discovery: ');
    const bind = (await lines.next(300_000)) ?? '';
    process.stdout.write('Insert the cluster credential password: ');
    const password = (await lines.next(300_000)) ?? '';
    process.stdout.write('\n');
    // With --wizard every non-interactive flag is ignored.
    return { ...args, bind: bind.trim(), password };
  } finally {
    lines.close();
  }
}

async function runSetup(self: NodeJson, argv: string[]): Promise<number> {
  let args = parseSetup(self, argv);
  if (args.wizard) args = await wizard(args);
  const uid = process.getuid?.() ?? 0;
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
  // The unit was started: let the caller's next `consul …` find the agent listening, as systemd's start would.
  if (agentPid(self, self.short) > 0) await waitForAgent();
  return 0;
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
  await applyLatency(['service-discover', cmd]);
  switch (cmd) {
    case '--version':
    case 'version':
      process.stdout.write(`service-discover version ${SD_VERSION[self.profile]}\n`);
      return 0;
    case 'setup':
      return runSetup(self, rest);
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
