/**
 * The lab's directory server as the network sees it: a TCP listener on the lab bridge (the host's .1), port 389.
 * service-discover's setup first connects to `ldap_master_url` (pkg/carbonio/ldap.go `connect`, via
 * `RetrieveZimbraHostname`); regen's preflight checks the same reachability. The directory's content stays in the
 * shared cluster state. argv: HOST PORT [--reject-binds].
 */
import * as net from 'node:net';
import { BIND_REJECTED } from './directory-wire.js';

const [host = '127.0.0.1', port = '389'] = process.argv.slice(2);
// `--reject-binds`: the directory refuses the credentials every node's localconfig holds (zimbra_ldap_userdn /
// zimbra_ldap_password), as after the password was changed in LDAP only. The simulated clients read this line where
// a real one would read the BindResponse.
const rejectBinds = process.argv.includes('--reject-binds');
const server = net.createServer((socket) => {
  socket.on('error', () => {});
  if (rejectBinds) socket.end(`${BIND_REJECTED}\n`);
  else socket.end();
});
server.listen(Number(port), host);
for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, () => server.close(() => process.exit(0)));
