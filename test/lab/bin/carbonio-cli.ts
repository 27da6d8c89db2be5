/**
 * The simulated `carbonio` (current profile) and `zmprov` (both profiles) commands: only `gas` (every Carbonio
 * server) and `gas service-discover` (the mesh servers), one FQDN a line, as the directory answers. Like the real
 * tools they run as the zextras user only. Which way a query goes (SOAP to the node's mailbox, or `-l` straight to
 * the directory) and what it then needs is test/sim/prov.ts; this file finds out what the node has: the mailbox
 * fault (`npm run lab -- fault mailbox NODE down`) and whether the directory at `ldap_url` accepts a connection.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LOCALCONFIG } from '../../sim/model.js';
import { provAnswer, provLocalconfig, provRoute } from '../../sim/prov.js';
import { RealFs } from '../../sim/real-fs.js';
import {
  LDAP_ALL_SERVERS_MIRROR,
  LDAP_MIRROR,
  applyLatency,
  firstReachableLdap,
  loadSelf,
  localconfigUrls,
  readFaults,
  runMain,
  selfLabDir,
  type NodeJson,
} from './node-world.js';

function zextrasUid(): number | null {
  for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid] = line.split(':');
    if (name === 'zextras' && uid !== undefined) return Number(uid);
  }
  return null;
}

/** The node's localconfig.xml (in a namespace-less test, under the node directory); '' when absent. */
function localconfigText(self: NodeJson): string {
  const candidates = process.env.REGEN_LAB_NODE_JSON === undefined ? [LOCALCONFIG] : [new RealFs(path.join(self.nodesDir, self.short)).hostPath(LOCALCONFIG)];
  for (const f of candidates) {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch {
      // Try the next.
    }
  }
  return '';
}

function mirror(name: string): string[] {
  try {
    return fs.readFileSync(path.join(selfLabDir(), name), 'utf8').split('\n').filter((l) => l !== '');
  } catch {
    return [];
  }
}

/**
 * LdapProvisioning (ProvUtil with `-l`, and the mailbox behind SOAP) connects to `ldap_url` and binds as
 * `zimbra_ldap_userdn`. A localconfig without the URL (the namespace-less test lab) has no directory to lose.
 */
function localconfigValue(xml: string, key: string): string {
  return localconfigUrls(xml, key).join(' ');
}

async function directoryError(xml: string): Promise<string | null> {
  const urls = localconfigUrls(xml, 'ldap_url');
  if (urls.length === 0) return null;
  const r = await firstReachableLdap(urls);
  if (r.ok) return null;
  return r.bind ? `bind as ${localconfigValue(xml, 'zimbra_ldap_userdn')}: Invalid Credentials` : `${r.host}:${r.port}: ${r.error}`;
}

async function main(argv: string[]): Promise<number> {
  const self = loadSelf();
  // The wrapper passes only the arguments: `carbonio prov …` starts with "prov", `zmprov …` does not.
  const viaCarbonio = argv[0] === 'prov';
  const tool = viaCarbonio ? 'carbonio prov' : 'zmprov';
  await applyLatency([tool, ...(viaCarbonio ? argv.slice(1) : argv)]);
  if (viaCarbonio && self.profile === 'legacy') {
    process.stderr.write('carbonio: command not found\n');
    return 127;
  }
  if (process.getuid?.() !== zextrasUid()) {
    // carbonio.sh's own check (echo, so on stdout); zmprov's refusal is the lab's.
    if (viaCarbonio) process.stdout.write('Please run as zextras user\n');
    else process.stderr.write(`Error: ${tool} must be run as user zextras\n`);
    return 1;
  }
  const xml = localconfigText(self);
  const lc = provLocalconfig(xml);
  const route = provRoute(argv, lc);
  const answer =
    route.kind === 'answer'
      ? route.answer
      : provAnswer(route, lc, {
          mailboxUp: readFaults().mailboxDown !== true,
          directoryError: await directoryError(xml),
          allServers: mirror(LDAP_ALL_SERVERS_MIRROR),
          meshServers: mirror(LDAP_MIRROR),
        });
  process.stdout.write(answer.stdout);
  process.stderr.write(answer.stderr);
  return answer.code;
}

runMain('carbonio', main);
