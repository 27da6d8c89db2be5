/**
 * The lab's directory server as the network sees it: a TCP listener on the lab bridge (the host's .1), port 389.
 * service-discover's setup first connects to `ldap_master_url` (pkg/carbonio/ldap.go `connect`, via
 * `RetrieveZimbraHostname`); regen's preflight checks the same reachability. The directory's content stays in the
 * shared cluster state. argv: HOST PORT.
 */
import * as net from 'node:net';

const [host = '127.0.0.1', port = '389'] = process.argv.slice(2);
const server = net.createServer((socket) => {
  socket.on('error', () => {});
  socket.end();
});
server.listen(Number(port), host);
for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, () => server.close(() => process.exit(0)));
