import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../machines/errors.js';
import { detectFormat, loadInventory, parseAnsibleIni, renderInventoryYaml } from '../../adapters/inventory/index.js';
import { expandHostPattern, shellWords } from '../../adapters/inventory/ansible.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/inventories/', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'regen-inventory-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
function write(text: string, ext = '.yaml'): string {
  const p = join(tmp, `inv${++counter}${ext}`);
  writeFileSync(p, text);
  return p;
}

/** The UsageError message loading this text gives. */
function errorOf(text: string, ext = '.yaml', opts: Parameters<typeof loadInventory>[1] = {}): UsageError {
  const p = write(text, ext);
  try {
    loadInventory(p, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error(`expected ${p} to be refused`);
}

const MAIL_PROD = {
  cluster: 'mail-prod',
  leader: 'mail1.example.com',
  nodes: [
    { name: 'mail1.example.com', sshHost: '10.0.0.1', sshPort: 22, sshUser: 'root', identityFile: '/root/.ssh/id_ed25519', address: '10.0.0.1', kind: 'server' },
    { name: 'mail2.example.com', sshHost: '10.0.0.2', sshPort: 2222, sshUser: 'root', identityFile: '/root/.ssh/id_ed25519', address: '10.0.0.2', kind: 'server' },
    { name: 'mail3.example.com', sshHost: 'mail3.example.com', sshPort: 22, sshUser: 'root', identityFile: '/root/.ssh/id_ed25519', address: '10.0.0.3', kind: 'server' },
    { name: 'mail4.example.com', sshHost: 'mail4-via-bastion', sshPort: 22, sshUser: 'admin', identityFile: '/home/admin/.ssh/id_rsa', kind: 'agent' },
  ],
};

describe('regen format', () => {
  it('reads the YAML fixture with defaults applied', () => {
    expect(loadInventory(join(FIXTURES, 'mail-prod.yaml'))).toEqual(MAIL_PROD);
  });

  it('reads the JSON fixture to the same inventory', () => {
    expect(loadInventory(join(FIXTURES, 'mail-prod.json'))).toEqual(MAIL_PROD);
  });

  it('defaults the SSH host to the node name', () => {
    expect(loadInventory(join(FIXTURES, 'single.yml'))).toEqual({
      cluster: 'single',
      nodes: [{ name: 'mail.example.com', sshHost: 'mail.example.com' }],
    });
  });

  it('expands ~ in identity files', () => {
    const inv = loadInventory(write('cluster: c\ndefaults: { ssh: { identityFile: ~/.ssh/id } }\nnodes: [{ name: a.example.com }]\n'));
    expect(inv.nodes[0]?.identityFile).toBe(join(homedir(), '.ssh/id'));
  });

  it('round-trips through renderInventoryYaml', () => {
    const inv = loadInventory(join(FIXTURES, 'mail-prod.yaml'));
    expect(loadInventory(write(renderInventoryYaml(inv)))).toEqual(inv);
    const ansible = loadInventory(join(FIXTURES, 'edge-cases.ini'), { cluster: 'edge' });
    const text = renderInventoryYaml(ansible);
    // Settings every node shares are written once.
    expect(text).toMatch(/^defaults:\n {2}ssh:\n {4}identityFile: .*carbonio key\nnodes:/m);
    expect(loadInventory(write(text))).toEqual(ansible);
  });

  it('takes --cluster only when it agrees', () => {
    expect(loadInventory(join(FIXTURES, 'single.yml'), { cluster: 'single' }).cluster).toBe('single');
    const err = (() => {
      try {
        loadInventory(join(FIXTURES, 'single.yml'), { cluster: 'other' });
      } catch (e) {
        return e as UsageError;
      }
      return null;
    })();
    expect(err?.message).toBe(`--cluster other does not match the inventory's cluster single (${join(FIXTURES, 'single.yml')})`);
  });
});

describe('regen format validation messages', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['missing cluster', 'nodes: [{ name: a.example.com }]\n', /:1:1: cluster: cluster is required; name the cluster, e\.g\. cluster: mail-prod$/],
    ['bad cluster name', 'cluster: mail prod\nnodes: [{ name: a.example.com }]\n', /:1:10: cluster: cluster "mail prod" has characters other than letters, digits, "\.", "_" and "-"; rename it/],
    ['cluster not a string', 'cluster: [a]\nnodes: [{ name: a.example.com }]\n', /:1:10: cluster: cluster must be a non-empty string, got a list/],
    ['missing nodes', 'cluster: c\n', /:1:1: nodes: nodes is required; list the nodes/],
    ['empty nodes', 'cluster: c\nnodes: []\n', /:2:8: nodes: nodes must be a non-empty list, got a list; list the nodes/],
    ['unknown top key with suggestion', 'cluster: c\nnode: []\nnodes: [{ name: a.example.com }]\n', /:2:1: node: unknown key "node" in the inventory; did you mean "nodes"\?/],
    ['unknown node key', 'cluster: c\nnodes:\n  - name: a.example.com\n    adress: 10.0.0.1\n', /:4:5: nodes\[0\]\.adress: unknown key "adress" in node nodes\[0\]; did you mean "address"\?/],
    ['SSH key at node level', 'cluster: c\nnodes:\n  - name: a.example.com\n    user: root\n', /:4:5: nodes\[0\]\.user: unknown key "user" in node nodes\[0\]; move it under ssh: \(ssh: \{ user: \.\.\. \}\)/],
    ['unknown ssh key without suggestion', 'cluster: c\nnodes:\n  - name: a.example.com\n    ssh: { password: x }\n', /:4:12: nodes\[0\]\.ssh\.password: unknown key "password" in nodes\[0\]\.ssh; remove it; allowed keys: host, port, user, identityFile/],
    ['host in defaults', 'cluster: c\ndefaults: { ssh: { host: x } }\nnodes: [{ name: a.example.com }]\n', /defaults\.ssh\.host: unknown key "host" in defaults\.ssh; remove it; allowed keys: user, port, identityFile/],
    ['bad port', 'cluster: c\nnodes:\n  - name: a.example.com\n    ssh: { port: "22" }\n', /:4:18: nodes\[0\]\.ssh\.port: port must be an integer from 1 to 65535, got "22"; write the SSH port as a number/],
    ['port out of range', 'cluster: c\ndefaults: { ssh: { port: 70000 } }\nnodes: [{ name: a.example.com }]\n', /defaults\.ssh\.port: port must be an integer from 1 to 65535, got 70000/],
    ['missing name', 'cluster: c\nnodes:\n  - address: 10.0.0.1\n', /:3:5: nodes\[0\]\.name: name is required; give the node's FQDN/],
    ['bad name', 'cluster: c\nnodes:\n  - name: mail_1.example.com\n', /:3:11: nodes\[0\]\.name: name "mail_1\.example\.com" is not a valid host name/],
    ['node not a mapping', 'cluster: c\nnodes:\n  - a.example.com\n', /:3:5: nodes\[0\]: node nodes\[0\] must be a mapping, got "a\.example\.com"/],
    ['bad address', 'cluster: c\nnodes:\n  - name: a.example.com\n    address: mail1\n', /:4:14: nodes\[0\]\.address: address "mail1" is not an IP address; give the IP the mesh binds to/],
    ['loopback address', 'cluster: c\nnodes:\n  - name: a.example.com\n    address: 127.0.1.1\n', /nodes\[0\]\.address: address 127\.0\.1\.1 is a loopback address; service-discover refuses loopback/],
    ['kind client', 'cluster: c\nnodes:\n  - name: a.example.com\n    kind: client\n', /:4:11: nodes\[0\]\.kind: kind must be server or agent, got "client"; regen calls Consul clients "agent": write kind: agent/],
    ['kind other', 'cluster: c\nnodes:\n  - name: a.example.com\n    kind: leader\n', /kind must be server or agent, got "leader"; use one of: server, agent, or omit it/],
    ['duplicate names', 'cluster: c\nnodes:\n  - name: a.example.com\n  - name: A.example.com\n', /:4:5: nodes\[1\]\.name: node name "A\.example\.com" is already used by nodes\[0\]; each node must appear once/],
    ['duplicate addresses', 'cluster: c\nnodes:\n  - { name: a.example.com, address: 10.0.0.1 }\n  - { name: b.example.com, address: 10.0.0.1 }\n', /nodes\[1\]\.address: address 10\.0\.0\.1 is already used by nodes\[0\]; each node has its own mesh address/],
    ['leader not a node', 'cluster: c\nleader: mail1.example.con\nnodes: [{ name: mail1.example.com }]\n', /:2:9: leader: leader "mail1\.example\.con" is not one of the nodes; did you mean "mail1\.example\.com"\?/],
    ['directoryServer not a node', 'cluster: c\ndirectoryServer: zz\nnodes: [{ name: mail1.example.com }]\n', /directoryServer: directoryServer "zz" is not one of the nodes; use one of: mail1\.example\.com/],
    ['duplicate key', 'cluster: c\ncluster: d\nnodes: [{ name: a.example.com }]\n', /:2:1: a key appears twice in the same mapping; keep one of them/],
    ['YAML syntax', 'cluster: c\nnodes: [\n', /:\d+:\d+: not valid YAML \(.+\); fix the syntax at that position/],
    ['alias', 'cluster: &c c\nnodes: [{ name: *c }]\n', /nodes\[0\]\.name: YAML aliases are not supported here/],
    ['empty file', '', /: the inventory is empty; write at least "cluster:" and "nodes:"/],
    ['not a mapping', '- a\n', /:1:1: the inventory must be a mapping, got a list/],
    ['Ansible YAML', 'all:\n  hosts:\n    a.example.com:\n', /all: this looks like an Ansible YAML inventory, which regen does not read/],
  ];
  for (const [what, text, re] of cases) {
    it(what, () => {
      const err = errorOf(text);
      expect(err.message).toMatch(re);
      expect(err.message).toContain(tmp);
      expect(err.hint).toBeTruthy();
    });
  }

  it('lists every problem at once', () => {
    const err = errorOf('cluster: c\nnodes:\n  - name: a.example.com\n    ssh: { prot: 22 }\n  - name: b.example.com\n    kind: x\n');
    expect(err.message).toMatch(/: 2 problems\n {2}.*:4:12: nodes\[0\]\.ssh\.prot: unknown key "prot".*did you mean "port"\?\n {2}.*:6:11: nodes\[1\]\.kind/);
  });

  it('gives JSON paths (and lines) for JSON files', () => {
    const err = errorOf('{"cluster":"c","nodes":[{"name":"a.example.com"},{"name":"b.example.com","ssh":{"port":"x"}}]}', '.json');
    expect(err.message).toMatch(/inv\d+\.json:1:\d+: nodes\[1\]\.ssh\.port: port must be an integer/);
  });

  it('reports JSON syntax errors', () => {
    expect(errorOf('{"cluster": "c",}', '.json').message).toMatch(/inv\d+\.json: not valid JSON \(.+\); fix the JSON syntax/);
  });

  it('refuses a missing file with the flag to fix it', () => {
    const err = (() => {
      try {
        loadInventory(join(tmp, 'nope.yaml'));
      } catch (e) {
        return e as UsageError;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect(err?.message).toBe(`inventory ${join(tmp, 'nope.yaml')} does not exist`);
    expect(err?.hint).toContain('--inventory');
  });
});

describe('Carbonio Ansible inventory', () => {
  it('reads the README example: every host a node, mesh servers from serviceDiscoverServers', () => {
    const inv = loadInventory(join(FIXTURES, 'carbonio-demo'));
    expect(inv).toEqual({
      cluster: 'carbonio-demo',
      directoryServer: 'srv1.example.com',
      nodes: [
        { name: 'srv1.example.com', sshHost: 'srv1.example.com', kind: 'server' },
        { name: 'srv2.example.com', sshHost: 'srv2.example.com', kind: 'server' },
        { name: 'srv3.example.com', sshHost: 'srv3.example.com', kind: 'server' },
        { name: 'srv4.example.com', sshHost: 'srv4.example.com', kind: 'agent' },
        { name: 'srv5.example.com', sshHost: 'srv5.example.com', kind: 'agent' },
      ],
    });
    expect(inv.leader).toBeUndefined();
  });

  it('honours --cluster', () => {
    expect(loadInventory(join(FIXTURES, 'carbonio-demo'), { cluster: 'prod' }).cluster).toBe('prod');
  });

  it('handles vars, children, quotes, comments, host:port and ranges', () => {
    const inv = loadInventory(join(FIXTURES, 'edge-cases.ini'));
    const key = join(homedir(), '.ssh/carbonio key');
    expect(inv.cluster).toBe('edge-cases');
    expect(inv.directoryServer).toBe('ds2.example.com');
    expect(inv.nodes).toEqual([
      { name: 'bastion.example.com', sshHost: '203.0.113.9', sshUser: 'root', identityFile: key, kind: 'agent' },
      { name: 'ds1.example.com', sshHost: '10.1.0.1', sshPort: 2201, sshUser: 'root', identityFile: key, kind: 'server' },
      { name: 'ds2.example.com', sshHost: '10.1.0.2', sshPort: 2202, sshUser: 'root', identityFile: key, kind: 'server' },
      { name: 'mta01.example.com', sshHost: '10.1.1.1', sshPort: 2222, sshUser: 'deploy', identityFile: key, kind: 'agent' },
      { name: 'mta02.example.com', sshHost: '10.1.1.1', sshPort: 2222, sshUser: 'deploy', identityFile: key, kind: 'agent' },
      { name: 'proxy-a.example.com', sshHost: 'proxy-a.example.com', sshPort: 22, sshUser: 'proxyadmin', identityFile: key, kind: 'agent' },
      { name: 'proxy-b.example.com', sshHost: 'proxy-b.example.com', sshPort: 22, sshUser: 'proxyadmin', identityFile: key, kind: 'agent' },
      { name: 'app1.example.com', sshHost: 'app1.example.com', sshUser: 'root', identityFile: key, kind: 'agent' },
    ]);
  });

  it('lets child group vars override parent group vars, and host vars override both', () => {
    const p = write('[all:vars]\nansible_user=a\n[parent:vars]\nansible_user=b\nansible_port=1\n[parent:children]\nserviceDiscoverServers\n[serviceDiscoverServers:vars]\nansible_user=c\n[serviceDiscoverServers]\nx.example.com\ny.example.com ansible_user=d\n', '');
    expect(loadInventory(p, { format: 'ansible', cluster: 'c' }).nodes).toEqual([
      { name: 'x.example.com', sshHost: 'x.example.com', sshPort: 1, sshUser: 'c', kind: 'server' },
      { name: 'y.example.com', sshHost: 'y.example.com', sshPort: 1, sshUser: 'd', kind: 'server' },
    ]);
  });

  it('survives a :children cycle', () => {
    const p = write('[a:children]\nb\n[b:children]\na\n[a]\nx.example.com\n[serviceDiscoverServers]\nx.example.com\n', '.ini');
    expect(loadInventory(p, { cluster: 'c' }).nodes.map((n) => n.name)).toEqual(['x.example.com']);
  });

  it('keeps the leader hint a hint', () => {
    const inv = loadInventory(join(FIXTURES, 'carbonio-demo'));
    expect(inv.directoryServer).toBe('srv1.example.com');
    expect('leader' in inv).toBe(false);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['malformed header', '[serviceDiscoverServers\nx.example.com\n', /:1: malformed section header "\[serviceDiscoverServers"; write it as \[group\]/],
    ['unknown section type', '[g:hostvars]\nx=1\n', /:1: section \[g:hostvars\] has an unknown type "hostvars"; use :vars or :children/],
    ['bad vars line', '[g:vars]\njust-a-word\n', /:2: g: expected key=value in \[g:vars\], got "just-a-word"/],
    ['bad host variable', '[serviceDiscoverServers]\nx.example.com ansible_user\n', /:2: x\.example\.com: expected key=value host variable, got "ansible_user"/],
    ['unclosed quote', '[serviceDiscoverServers]\nx.example.com ansible_user="root\n', /:2: serviceDiscoverServers: no closing quotation/],
    ['bad port', '[serviceDiscoverServers]\nx.example.com ansible_port=ssh\n', /:2: x\.example\.com: ansible_port "ssh" is not a port number/],
    ['bad range', '[serviceDiscoverServers]\nmail[3:1].example.com\n', /:2: mail\[3:1\]\.example\.com: range in mail\[3:1\]\.example\.com goes backwards/],
    ['bad host name', '[serviceDiscoverServers]\nmail_1.example.com\n', /:2: mail_1\.example\.com: "mail_1\.example\.com" is not a valid host name/],
    ['no hosts', '[serviceDiscoverServers]\n\n[mtaServers]\n', /: the inventory lists no hosts; add the Carbonio servers/],
    ['no mesh server', '[mtaServers]\nx.example.com\n', /serviceDiscoverServers: no host is in \[serviceDiscoverServers\], so the mesh would have no server/],
  ];
  for (const [what, text, re] of bad) {
    it(`refuses: ${what}`, () => {
      const err = errorOf(text, '.ini', { cluster: 'c' });
      expect(err.message).toMatch(re);
    });
  }

  it('refuses a file name that is not a cluster name, naming --cluster', () => {
    const p = join(tmp, 'my inventory.ini');
    writeFileSync(p, '[serviceDiscoverServers]\nx.example.com\n');
    expect(() => loadInventory(p)).toThrow(/"my inventory" taken from the inventory file name/);
    try {
      loadInventory(p);
    } catch (e) {
      expect((e as UsageError).hint).toBe('name the cluster with --cluster <name>');
    }
    expect(loadInventory(p, { cluster: 'ok' }).cluster).toBe('ok');
  });

  it('splits words like shlex', () => {
    expect(shellWords(`a b="c d" e='f g' h\\ i # comment`)).toEqual(['a', 'b=c d', 'e=f g', 'h i']);
    expect(shellWords('a#b c')).toEqual(['a#b', 'c']);
  });

  it('expands host ranges', () => {
    expect(expandHostPattern('m[8:10].x')).toEqual(['m8.x', 'm9.x', 'm10.x']);
    expect(expandHostPattern('m[08:10].x')).toEqual(['m08.x', 'm09.x', 'm10.x']);
    expect(expandHostPattern('m[1:5:2]-[a:b]')).toEqual(['m1-a', 'm1-b', 'm3-a', 'm3-b', 'm5-a', 'm5-b']);
  });

  it('records group membership', () => {
    const parsed = parseAnsibleIni('h.example.com\n[g]\nh.example.com\n[p:children]\ng\n', 'x');
    expect(parsed.groups.get('ungrouped')?.hosts).toEqual(['h.example.com']);
    expect(parsed.groups.get('p')?.children).toEqual(['g']);
  });
});

describe('format detection', () => {
  it.each([
    ['a.yaml', 'x', 'yaml'],
    ['a.yml', 'x', 'yaml'],
    ['a.json', 'x', 'json'],
    ['a.ini', 'x', 'ansible'],
    ['inventory', '# c\n\n[serviceDiscoverServers]\n', 'ansible'],
    ['inventory', '  {"cluster": "c"}', 'json'],
    ['inventory', '---\ncluster: c\n', 'yaml'],
    ['inventory', 'cluster: c\n', 'yaml'],
    ['inventory', 'mail.example.com ansible_host=1.2.3.4\n', 'ansible'],
  ] as const)('%s %j → %s', (path, text, format) => {
    expect(detectFormat(path, text)).toBe(format);
  });

  it('an explicit format wins over the extension', () => {
    const p = write('[serviceDiscoverServers]\nx.example.com\n', '.yaml');
    expect(loadInventory(p, { format: 'ansible', cluster: 'c' }).nodes).toHaveLength(1);
  });
});
