/**
 * The lab node's `dpkg-query`: how a real node tells its service-discover release (the package version; the CLI's
 * own `version` prints a constant, see test/sim/versions.ts). The node's package is service-discover-server or
 * service-discover-agent, per node.json; any other query goes to the host's dpkg-query.
 */
import { spawnSync } from 'node:child_process';
import { DEFAULT_VERSION, packageVersion } from '../../sim/versions.js';
import { loadSelf, runMain } from './node-world.js';

function formatOf(argv: string[]): string {
  const i = argv.findIndex((a) => a === '-f' || a === '--showformat' || a.startsWith('--showformat=') || a.startsWith('-f'));
  if (i < 0) return '${Package}\t${Version}\n';
  const a = argv[i] ?? '';
  if (a === '-f' || a === '--showformat') return argv[i + 1] ?? '';
  return a.startsWith('--showformat=') ? a.slice('--showformat='.length) : a.slice(2);
}

async function main(argv: string[]): Promise<number> {
  const self = loadSelf();
  const mine = `service-discover-${self.kind === 'server' ? 'server' : 'agent'}`;
  const show = argv.includes('-W') || argv.includes('--show');
  const names = argv.filter((a, i) => !a.startsWith('-') && !['-f', '--showformat'].includes(argv[i - 1] ?? ''));
  if (!show || !names.every((n) => n.startsWith('service-discover'))) {
    const r = spawnSync('/usr/bin/dpkg-query', argv, { stdio: 'inherit' });
    return r.status ?? 1;
  }
  const version = packageVersion(self.sdVersion ?? DEFAULT_VERSION[self.profile]);
  const fmt = formatOf(argv).replace(/\\n/g, '\n').replace(/\\t/g, '\t');
  let code = 0;
  for (const n of names) {
    if (n === mine) process.stdout.write(fmt.replace(/\$\{(binary:)?Package\}/g, n).replace(/\$\{Version\}/g, version));
    else {
      process.stderr.write(`dpkg-query: no packages found matching ${n}\n`);
      code = 1;
    }
  }
  return code;
}

runMain('dpkg-query', main);
