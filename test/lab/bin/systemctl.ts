/**
 * The simulated `systemctl` of a lab node: only the service-discover unit exists. start/stop run the model's
 * unit semantics and spawn/kill the agent process (detached, as user service-discover).
 */
import { SimError, UNIT_FAILED, serviceActive, startAgent, stopAgent } from '../../sim/model.js';
import { agentPid, applyLatency, loadSelf, runMain, waitForAgent, withWorld } from './node-world.js';

const UNIT = 'service-discover';

function unitName(arg: string | undefined): string | null {
  if (arg === undefined) return null;
  return arg.replace(/\.service$/, '');
}

async function start(): Promise<number> {
  try {
    withWorld((w, self) => startAgent(w, self.name));
  } catch (e) {
    if (e instanceof SimError) {
      process.stderr.write(`${UNIT_FAILED}\n`);
      return 1;
    }
    throw e;
  }
  if (!(await waitForAgent())) {
    process.stderr.write(`${UNIT_FAILED}\n`);
    return 1;
  }
  return 0;
}

function stop(): number {
  withWorld((w, self) => stopAgent(w, self.name));
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const args = argv.filter((a) => !a.startsWith('-'));
  const [verb = '', unitArg] = args;
  await applyLatency(['systemctl', verb]);
  if (verb === 'daemon-reload') return 0;
  const unit = unitName(unitArg);
  if (unit !== UNIT) {
    process.stderr.write(`Unit ${unit ?? ''}.service could not be found.\n`);
    return verb === 'status' ? 4 : 5;
  }
  switch (verb) {
    case 'start':
      return start();
    case 'stop':
      return stop();
    case 'restart':
      stop();
      return start();
    case 'enable':
    case 'disable':
      return 0;
    case 'is-active': {
      const active = withWorld((w, self) => serviceActive(w, self.name));
      if (!argv.includes('--quiet') && !argv.includes('-q')) process.stdout.write(active ? 'active\n' : 'inactive\n');
      return active ? 0 : 3;
    }
    case 'status': {
      const self = loadSelf();
      const active = withWorld((w) => serviceActive(w, self.name));
      const pid = agentPid(self, self.short);
      process.stdout.write(
        `${active ? '●' : '○'} service-discover.service - Carbonio Mesh (service-discover)\n` +
          '     Loaded: loaded (/lib/systemd/system/service-discover.service; enabled; preset: enabled)\n' +
          (active ? `     Active: active (running)\n   Main PID: ${pid} (consul)\n` : '     Active: inactive (dead)\n'),
      );
      return active ? 0 : 3;
    }
    default:
      process.stderr.write(`Unknown command verb ${verb}.\n`);
      return 1;
  }
}

runMain('systemctl', main);
