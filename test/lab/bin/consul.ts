/**
 * The simulated `consul` CLI of a lab node. Like the real one it talks to the local agent over HTTP
 * (CONSUL_HTTP_ADDR, default 127.0.0.1:8500) with the token from -token or CONSUL_HTTP_TOKEN; `version` and the
 * `tls` helpers work on local files only.
 */
import * as http from 'node:http';
import * as path from 'node:path';
import {
  MEMBER_STATUS,
  SimError,
  consulVersionText,
  tlsCaCreate,
  tlsCertCreate,
  type BootstrapJson,
  type MemberJson,
  type RaftPeerJson,
  type TokenListEntry,
} from '../../sim/model.js';
import { agentAddress, applyLatency, loadSelf, runMain, withWorld, CONSUL_VERSION } from './node-world.js';

interface Reply {
  status: number;
  body: string;
}

class Unreachable extends Error {}

function request(method: string, pathAndQuery: string, token: string | undefined): Promise<Reply> {
  const { host, port } = agentAddress();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port, method, path: pathAndQuery, headers: token === undefined ? {} : { 'X-Consul-Token': token }, timeout: 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('context deadline exceeded')));
    req.on('error', (e: NodeJS.ErrnoException) => {
      const verb = method === 'PUT' ? 'Put' : method === 'DELETE' ? 'Delete' : 'Get';
      const url = `http://${host}:${port}${pathAndQuery}`;
      const why = e.code === 'ECONNREFUSED' ? `dial tcp ${host}:${port}: connect: connection refused` : e.message;
      reject(new Unreachable(`${verb} "${url}": ${why}`));
    });
    req.end();
  });
}

/** Consul's API client error text for a non-200 answer or a connection failure. */
async function call(method: string, p: string, token: string | undefined): Promise<unknown> {
  let r: Reply;
  try {
    r = await request(method, p, token);
  } catch (e) {
    throw new ApiFailure(e instanceof Error ? e.message : String(e));
  }
  if (r.status !== 200) throw new ApiFailure(`Unexpected response code: ${r.status} (${r.body})`);
  return r.body === '' ? null : (JSON.parse(r.body) as unknown);
}

class ApiFailure extends Error {}

interface Parsed {
  words: string[];
  flags: Map<string, string | true>;
}

/** consul's flag style: -name value, -name=value, --name=value; booleans as bare flags. */
function parse(argv: string[], booleans: ReadonlySet<string>): Parsed {
  const words: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (!a.startsWith('-') || a === '-') {
      words.push(a);
      continue;
    }
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    if (eq >= 0) flags.set(body.slice(0, eq), body.slice(eq + 1));
    else if (booleans.has(body)) flags.set(body, true);
    else {
      const v = argv[i + 1];
      if (v === undefined) throw new SimError(`flag needs an argument: -${body}`);
      flags.set(body, v);
      i++;
    }
  }
  return { words, flags };
}

const BOOLEANS = new Set(['server', 'client', 'self', 'detailed', 'name-constraint', 'stale', 'wan', 'list']);

function tokenFrom(p: Parsed): string | undefined {
  const t = p.flags.get('token');
  if (typeof t === 'string' && t !== '') return t;
  const env = process.env.CONSUL_HTTP_TOKEN;
  return env === undefined || env === '' ? undefined : env;
}

function formatOf(p: Parsed): 'json' | 'pretty' {
  return p.flags.get('format') === 'json' ? 'json' : 'pretty';
}

/** Go's tabwriter/columnize look: columns padded to the widest cell, two spaces apart. */
function columns(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n') + '\n';
}

function tokenText(t: BootstrapJson | TokenListEntry, withSecret: boolean): string {
  const lines = [
    `AccessorID:       ${t.AccessorID}`,
    ...(withSecret && 'SecretID' in t ? [`SecretID:         ${t.SecretID}`] : []),
    `Description:      ${t.Description}`,
    `Local:            ${t.Local}`,
    `Create Time:      ${t.CreateTime}`,
    'Policies:',
    ...t.Policies.map((p) => `   ${p.ID} - ${p.Name}`),
  ];
  return `${lines.join('\n')}\n`;
}

function json(v: unknown): string {
  return `${JSON.stringify(v, null, 4)}\n`;
}

async function main(argv: string[]): Promise<number> {
  const p = parse(argv, BOOLEANS);
  const [w1 = '', w2 = '', w3 = '', w4 = ''] = p.words;
  await applyLatency(['consul', ...p.words]);
  const out = (s: string): void => void process.stdout.write(s);
  const err = (s: string): void => void process.stderr.write(`${s}\n`);
  const token = tokenFrom(p);

  if (w1 === 'version' || argv[0] === '-v' || argv[0] === '--version') {
    out(withWorld((w, self) => consulVersionText(w, self.name)));
    return 0;
  }

  if (w1 === 'members') {
    let list: MemberJson[];
    try {
      list = (await call('GET', '/v1/agent/members?segment=_all', token)) as MemberJson[];
    } catch (e) {
      err(`Error retrieving members: ${(e as Error).message}`);
      return 1;
    }
    // Consul prints nothing and exits 2 when the (ACL-filtered) list is empty.
    if (list.length === 0) return 2;
    const self = loadSelf();
    const legacy = self.profile === 'legacy';
    const header = ['Node', 'Address', 'Status', 'Type', 'Build', 'Protocol', 'DC', ...(legacy ? [] : ['Partition']), 'Segment'];
    const rows = list.map((m) => [
      m.Name,
      `${m.Addr}:${m.Port}`,
      MEMBER_STATUS[m.Status],
      m.Tags.role === 'consul' ? 'server' : 'client',
      m.Tags.build.split(':')[0] ?? '',
      m.Tags.vsn,
      m.Tags.dc,
      ...(legacy ? [] : ['default']),
      m.Tags.role === 'consul' ? '<all>' : '<default>',
    ]);
    out(columns([header, ...rows]));
    return 0;
  }

  if (w1 === 'catalog' && w2 === 'nodes') {
    try {
      const nodes = (await call('GET', '/v1/catalog/nodes', token)) as Array<{ Node: string }>;
      out(nodes.map((n) => n.Node).join('\n'));
      return 0;
    } catch (e) {
      err(`Error listing nodes: ${(e as Error).message}`);
      return 1;
    }
  }

  if (w1 === 'keyring' && p.flags.get('list') === true) {
    try {
      const pools = (await call('GET', '/v1/operator/keyring', token)) as Array<{ WAN: boolean; Keys: Record<string, number>; NumNodes: number }>;
      const lines = ['==> Gathering installed encryption keys...', ''];
      for (const pool of pools) {
        lines.push(pool.WAN ? 'WAN:' : 'dc1 (LAN):');
        for (const [k, n] of Object.entries(pool.Keys)) lines.push(`  ${k} [${n}/${pool.NumNodes}]`);
        lines.push('');
      }
      out(lines.join('\n'));
      return 0;
    } catch (e) {
      err(`Error: ${(e as Error).message}`);
      return 1;
    }
  }

  if (w1 === 'acl' && w2 === 'bootstrap') {
    let t: BootstrapJson;
    try {
      t = (await call('PUT', '/v1/acl/bootstrap', undefined)) as BootstrapJson;
    } catch (e) {
      err(`Failed ACL bootstrapping: ${(e as Error).message}`);
      return 1;
    }
    out(formatOf(p) === 'json' ? json(t) : tokenText(t, true));
    return 0;
  }

  if (w1 === 'acl' && w2 === 'token' && w3 === 'list') {
    let list: TokenListEntry[];
    try {
      list = (await call('GET', '/v1/acl/tokens', token)) as TokenListEntry[];
    } catch (e) {
      err(`Failed to retrieve the token list: ${(e as Error).message}`);
      return 1;
    }
    out(formatOf(p) === 'json' ? json(list) : list.map((t) => tokenText(t, false)).join('\n'));
    return 0;
  }

  if (w1 === 'acl' && w2 === 'token' && w3 === 'read' && p.flags.get('self') === true) {
    let t: BootstrapJson;
    try {
      t = (await call('GET', '/v1/acl/token/self', token)) as BootstrapJson;
    } catch (e) {
      err(`Error reading token: ${(e as Error).message}`);
      return 1;
    }
    out(formatOf(p) === 'json' ? json(t) : tokenText(t, true));
    return 0;
  }

  if (w1 === 'acl' && w2 === 'token' && w3 === 'delete') {
    const id = p.flags.get('id');
    if (typeof id !== 'string' || id === '') {
      err('Must specify the -id parameter');
      return 1;
    }
    try {
      await call('DELETE', `/v1/acl/token/${encodeURIComponent(id)}`, token);
    } catch (e) {
      err(`Error deleting token "${id}": ${(e as Error).message}`);
      return 1;
    }
    out(`Token "${id}" deleted successfully\n`);
    return 0;
  }

  if (w1 === 'operator' && w2 === 'raft' && w3 === 'list-peers') {
    let cfg: { Servers: RaftPeerJson[] };
    try {
      cfg = (await call('GET', '/v1/operator/raft/configuration', token)) as { Servers: RaftPeerJson[] };
    } catch (e) {
      err(`Failed to retrieve raft configuration: ${(e as Error).message}`);
      return 1;
    }
    const rows = cfg.Servers.map((s) => [s.Node, s.ID, s.Address, s.Leader ? 'leader' : 'follower', String(s.Voter), '3']);
    out(columns([['Node', 'ID', 'Address', 'State', 'Voter', 'RaftProtocol'], ...rows]));
    return 0;
  }

  if (w1 === 'tls' && w2 === 'ca' && w3 === 'create') {
    const dir = process.cwd();
    withWorld((w, self) => tlsCaCreate(w, self.name, dir));
    out('==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n');
    return 0;
  }

  if (w1 === 'tls' && w2 === 'cert' && w3 === 'create') {
    const kind = p.flags.get('server') === true ? 'server' : p.flags.get('client') === true ? 'client' : null;
    if (kind === null) {
      err('==> Neither client, cli nor server - should not happen');
      return 1;
    }
    const dir = process.cwd();
    const caFlag = p.flags.get('ca');
    const name = withWorld((w, self) => {
      const caPem = typeof caFlag === 'string' ? w.fs(self.name).read(path.resolve(dir, caFlag)) : null;
      if (typeof caFlag === 'string' && caPem === null) throw new SimError(`==> CA file ${caFlag} not found`);
      return tlsCertCreate(w, self.name, kind, caPem, dir);
    });
    out(`==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n==> Saved ${name}\n==> Saved ${name.replace(/\.pem$/, '-key.pem')}\n`);
    return 0;
  }

  void w4;
  const self = loadSelf();
  err(`Usage: consul [--version] [--help] <command> [<args>]\n\nConsul v${CONSUL_VERSION[self.profile]}: unknown command "${p.words.join(' ')}"`);
  return 1;
}

runMain('consul', main);
