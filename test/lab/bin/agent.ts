/**
 * The simulated consul agent of a lab node: Consul's HTTP API on 127.0.0.1:8500 (the node's own loopback),
 * answered by the shared model. Started and stopped only by the simulated systemctl, as user service-discover.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import {
  AgentDownError,
  ApiError,
  NoLeaderError,
  aclBootstrap,
  agentMembers,
  catalogNodes,
  keyringList,
  policyCreate,
  raftConfiguration,
  rpcHoldFor,
  setAgentToken,
  statusLeader,
  statusPeers,
  tokenCreate,
  tokenDelete,
  tokenList,
  tokenSelf,
  type World,
} from '../../sim/model.js';
import { agentAddress, agentPidFile, labElection, loadSelf, withWorld } from './node-world.js';
import { catalogServices, healthStateAny } from '../../sim/catalog.js';

const self = loadSelf();

function tokenOf(req: http.IncomingMessage, url: URL): string | undefined {
  const header = req.headers['x-consul-token'];
  if (typeof header === 'string' && header !== '') return header;
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7);
  return url.searchParams.get('token') ?? undefined;
}

async function bodyOf(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 1_000_000) break;
    chunks.push(c as Buffer);
  }
  if (chunks.length === 0) return {};
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

type Handler = (w: World, token: string | undefined, body: Record<string, unknown>, arg: string) => unknown;

const routes: Array<{ method: string; pattern: RegExp; handle: Handler }> = [
  { method: 'GET', pattern: /^\/v1\/status\/leader$/, handle: (w) => statusLeader(w, self.name) },
  { method: 'GET', pattern: /^\/v1\/status\/peers$/, handle: (w) => statusPeers(w, self.name) },
  { method: 'PUT', pattern: /^\/v1\/acl\/bootstrap$/, handle: (w) => aclBootstrap(w, self.name) },
  { method: 'GET', pattern: /^\/v1\/agent\/members$/, handle: (w, t) => agentMembers(w, self.name, t) },
  { method: 'GET', pattern: /^\/v1\/acl\/token\/self$/, handle: (w, t) => tokenSelf(w, self.name, t) },
  { method: 'GET', pattern: /^\/v1\/acl\/tokens$/, handle: (w, t) => tokenList(w, self.name, t) },
  { method: 'GET', pattern: /^\/v1\/catalog\/nodes$/, handle: (w, t) => catalogNodes(w, self.name, t).map((Node) => ({ Node })) },
  { method: 'GET', pattern: /^\/v1\/catalog\/services$/, handle: (w, t) => catalogServices(w, self.name, t) },
  { method: 'GET', pattern: /^\/v1\/health\/state\/any$/, handle: (w, t) => healthStateAny(w, self.name, t) },
  { method: 'GET', pattern: /^\/v1\/operator\/keyring$/, handle: (w, t) => keyringList(w, self.name, t) },
  {
    method: 'DELETE',
    pattern: /^\/v1\/acl\/token\/([0-9a-f-]+)$/,
    handle: (w, t, _b, id) => {
      tokenDelete(w, self.name, t, id);
      return true;
    },
  },
  {
    method: 'PUT',
    pattern: /^\/v1\/acl\/policy$/,
    handle: (w, t, b) => {
      const p = policyCreate(w, self.name, t, String(b.Name ?? ''));
      return { ID: p.id, Name: p.name, CreateIndex: p.createIndex, ModifyIndex: p.createIndex };
    },
  },
  {
    method: 'PUT',
    pattern: /^\/v1\/acl\/token$/,
    handle: (w, t, b) => {
      const policies = Array.isArray(b.Policies) ? b.Policies.map((p) => String((p as { Name?: unknown }).Name ?? '')) : [];
      return tokenCreate(w, self.name, t, policies, typeof b.Description === 'string' ? b.Description : '');
    },
  },
  {
    method: 'PUT',
    pattern: /^\/v1\/agent\/token\/(default|agent)$/,
    handle: (w, t, b) => {
      setAgentToken(w, self.name, t, String(b.Token ?? ''));
      return null;
    },
  },
  {
    method: 'GET',
    pattern: /^\/v1\/operator\/raft\/configuration$/,
    handle: (w, t) => {
      const servers = raftConfiguration(w, self.name, t);
      return { Servers: servers, Index: w.state.raftIndex };
    },
  },
];

/**
 * Consul holds an RPC that finds no leader and retries it until the hold timeout (rpc_hold_timeout) is over, then
 * answers `500 (No cluster leader)`; here it is retried when a server may stand, or every 250 ms (election.ts). The
 * hold is this agent's: what its config dir set when its unit started (model.ts rpcHoldFor), else the lab's knob.
 */
async function held<T>(call: (w: World) => T): Promise<T> {
  const started = Date.now();
  let holdMs = labElection(self).holdMs;
  const deadline = () => started + holdMs;
  for (let i = 0; ; i++) {
    try {
      return withWorld((w) => {
        holdMs = rpcHoldFor(w, self.name);
        return call(w);
      });
    } catch (e) {
      if (!(e instanceof NoLeaderError) || Date.now() >= deadline() || i > 1000) throw e;
      const next = Math.min(deadline(), Math.max(Date.now() + 50, e.retryAfterMs ?? Date.now() + 250));
      await new Promise((r) => setTimeout(r, next - Date.now()));
    }
  }
}

function stillOurs(): boolean {
  try {
    return Number(fs.readFileSync(agentPidFile(self, self.short), 'utf8').trim()) === process.pid;
  } catch {
    return false;
  }
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const route = routes.find((r) => r.method === req.method && r.pattern.test(url.pathname));
  void (async () => {
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`Invalid URL path: not a recognized HTTP API endpoint\n`);
      return;
    }
    const body = await bodyOf(req);
    const arg = route.pattern.exec(url.pathname)?.[1] ?? '';
    try {
      const out = await held((w) => route.handle(w, tokenOf(req, url), body, arg));
      res.writeHead(200, { 'content-type': 'application/json', 'x-consul-default-acl-policy': 'deny' }).end(JSON.stringify(out));
    } catch (e) {
      if (e instanceof ApiError) res.writeHead(e.status, { 'content-type': 'text/plain' }).end(e.message);
      // The unit was stopped under this request: behave as a process about to die.
      else if (e instanceof AgentDownError) res.destroy();
      else res.writeHead(500, { 'content-type': 'text/plain' }).end(e instanceof Error ? e.message : String(e));
    }
    if (!stillOurs()) shutdown();
  })();
});

function shutdown(): void {
  server.close();
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 100).unref();
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

const { host, port } = agentAddress();
let attempts = 0;
server.on('error', (e: NodeJS.ErrnoException) => {
  // The previous agent may still be letting go of the port after a quick restart.
  if (e.code === 'EADDRINUSE' && attempts++ < 100) {
    setTimeout(() => server.listen(port, host), 50);
    return;
  }
  console.error(`agent: ${e.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  console.log(`${new Date().toISOString()} agent ${self.name} listening on ${host}:${port} (pid ${process.pid})`);
});
