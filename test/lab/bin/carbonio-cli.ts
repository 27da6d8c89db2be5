/**
 * The simulated `carbonio` (current profile) and `zmprov` (both profiles) commands: only `gas` (every Carbonio
 * server) and `gas service-discover` (the mesh servers), one FQDN a line, as the directory answers. Like the real
 * tools they run as the zextras user only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LDAP_ALL_SERVERS_MIRROR, LDAP_MIRROR, applyLatency, loadSelf, runMain, selfLabDir } from './node-world.js';

function zextrasUid(): number | null {
  for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid] = line.split(':');
    if (name === 'zextras' && uid !== undefined) return Number(uid);
  }
  return null;
}

async function main(argv: string[]): Promise<number> {
  const self = loadSelf();
  // The wrapper passes only the arguments: `carbonio prov …` starts with "prov", `zmprov …` does not.
  const viaCarbonio = argv[0] === 'prov';
  const args = viaCarbonio ? argv.slice(1) : argv;
  const tool = viaCarbonio ? 'carbonio prov' : 'zmprov';
  await applyLatency([tool, ...args]);
  if (viaCarbonio && self.profile === 'legacy') {
    process.stderr.write('carbonio: command not found\n');
    return 127;
  }
  if (process.getuid?.() !== zextrasUid()) {
    process.stderr.write(`Error: ${tool} must be run as user zextras\n`);
    return 1;
  }
  const [cmd = '', service = ''] = args;
  if (cmd === 'gas' || cmd === 'getAllServers') {
    if (service !== '' && service !== 'service-discover') return 0;
    let text = '';
    try {
      text = fs.readFileSync(path.join(selfLabDir(), service === '' ? LDAP_ALL_SERVERS_MIRROR : LDAP_MIRROR), 'utf8');
    } catch {
      text = '';
    }
    process.stdout.write(text);
    return 0;
  }
  process.stderr.write(`ERROR: service.INVALID_REQUEST (unknown command: ${cmd})\n`);
  return 1;
}

runMain('carbonio', main);
