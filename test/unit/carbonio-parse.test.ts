import { describe, expect, it } from 'vitest';
import { NeedsOperatorError, RegenError } from '../../machines/errors.js';
import type { InventoryNode, NodeFacts } from '../../machines/port.js';
import { chooseBindAddress } from '../../machines/bind-address.js';
import { BACKED_UP, MANIFEST_HEADER } from '../../adapters/carbonio/commands.js';
import {
  parseBackup,
  parseCredentialsSha256,
  parseInspect,
  parseIpAddrLine,
  parseLeader,
  parseManifest,
  parseMembers,
  parseMeshServers,
  parseProbeWipe,
  parseReadCredentials,
  parseResetFile,
  parseResetIndex,
  parseServiceState,
  parseSetupProbe,
  parseTokens,
  tail,
  tokenProblem,
} from '../../adapters/carbonio/parse.js';

const SHA_A = 'a'.repeat(64);
const SHA_B = '0123456789abcdef'.repeat(4);

function needsOperator(fn: () => unknown): NeedsOperatorError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NeedsOperatorError);
    return err as NeedsOperatorError;
  }
  throw new Error('expected a NeedsOperatorError');
}

describe('parseResetIndex', () => {
  it('reads the index from the Consul 1.10+ refusal (seed 000)', () => {
    const out =
      'Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed (reset index: 908))\n';
    expect(parseResetIndex(out, 1)).toEqual({ kind: 'index', index: 908 });
  });

  it('reads the index from the older refusal text', () => {
    expect(parseResetIndex('Failed ACL bootstrapping: Unexpected response code: 403 (ACL bootstrap no longer allowed (reset index: 12))', 1)).toEqual({
      kind: 'index',
      index: 12,
    });
    expect(parseResetIndex('ACL bootstrap no longer allowed (reset index: 4711)\n', 1)).toEqual({ kind: 'index', index: 4711 });
  });

  it('reads the index through an rpc error prefix', () => {
    const out = 'Failed ACL bootstrapping: Unexpected response code: 403 (rpc error making call: Permission denied: ACL bootstrap no longer allowed (reset index: 77))';
    expect(parseResetIndex(out, 1)).toEqual({ kind: 'index', index: 77 });
  });

  it('reports a successful bootstrap by the file it was saved to, nothing else', () => {
    const r = parseResetIndex('regen:bootstrapped /root/regen-unexpected-bootstrap-1700000000-42.json\n', 0);
    expect(r).toEqual({ kind: 'bootstrapped', savedTo: '/root/regen-unexpected-bootstrap-1700000000-42.json' });
  });

  it('never quotes a token when exit 0 comes without the marker', () => {
    const token = '3f1d0a6e-5b7c-4a55-9d1e-6c2b8f0e9a11';
    const out = `AccessorID:       0d6c2f0b-8a51-4f2a-9f0e-2b9c5a7d3e21\nSecretID:         ${token}\nDescription:      Bootstrap Token (Global Management)\n`;
    const err = needsOperator(() => parseResetIndex(out, 0, 'mail1'));
    expect(err.message).not.toContain(token);
    expect(err.message).not.toContain('0d6c2f0b');
    expect(err.node).toBe('mail1');
  });

  it('says the token is lost when the node could not save it', () => {
    const err = needsOperator(() => parseResetIndex('regen:bootstrapped-unsaved\n', 0, 'mail1'));
    expect(err.message).toMatch(/could not be saved/);
  });

  it('masks UUIDs in a failure it does not know, with a hint where one fits', () => {
    const err = needsOperator(() =>
      parseResetIndex('Failed ACL bootstrapping: Put "http://127.0.0.1:8500/v1/acl/bootstrap": dial tcp 127.0.0.1:8500: connect: connection refused', 1),
    );
    expect(err.hint).toMatch(/start service-discover/);
    const odd = needsOperator(() => parseResetIndex('weird 3f1d0a6e-5b7c-4a55-9d1e-6c2b8f0e9a11', 1));
    expect(odd.message).toContain('<uuid>');
    expect(odd.message).not.toContain('3f1d0a6e');
  });

  it('refuses an invalid-index message and garbage', () => {
    needsOperator(() => parseResetIndex('Invalid bootstrap reset index (specified 5, reset index: 908)', 1));
    needsOperator(() => parseResetIndex('', 1));
    needsOperator(() => parseResetIndex('Error: Unexpected response code: 500 (The ACL system is currently in legacy mode.)', 1));
  });
});

describe('parseLeader', () => {
  it('strips the RPC port', () => {
    expect(parseLeader('"192.168.56.101:8300"')).toBe('192.168.56.101');
    expect(parseLeader('"10.0.0.1:8300"\n')).toBe('10.0.0.1');
  });

  it('returns null when there is no leader', () => {
    expect(parseLeader('""')).toBeNull();
    expect(parseLeader('""\n')).toBeNull();
  });

  it('reads a bracketed IPv6 leader', () => {
    expect(parseLeader('"[fd00::1]:8300"')).toBe('fd00::1');
  });

  it('refuses anything that is not a JSON string of an address', () => {
    needsOperator(() => parseLeader('192.168.56.101:8300'));
    needsOperator(() => parseLeader('null'));
    needsOperator(() => parseLeader('"mail.example.com:8300"'));
    needsOperator(() => parseLeader('<html>502 Bad Gateway</html>'));
    needsOperator(() => parseLeader(''));
  });
});

describe('parseMembers', () => {
  it('reads Consul 1.9 columns (no Partition)', () => {
    const out = [
      'Node                           Address              Status  Type    Build  Protocol  DC   Segment',
      'server-mail-example-com        192.168.56.101:8301  alive   server  1.9.3  2         dc1  <all>',
      'agent-mta-example-com          192.168.56.102:8301  failed  client  1.9.3  2         dc1  <default>',
    ].join('\n');
    expect(parseMembers(out)).toEqual([
      { name: 'server-mail-example-com', address: '192.168.56.101:8301', status: 'alive', type: 'server' },
      { name: 'agent-mta-example-com', address: '192.168.56.102:8301', status: 'failed', type: 'client' },
    ]);
  });

  it('reads newer columns with Partition', () => {
    const out = [
      'Node                     Address         Status  Type    Build   Protocol  DC   Partition  Segment',
      'server-mail1-lab-example 10.77.0.11:8301 alive   server  1.21.1  2         dc1  default    <all>',
      'agent-mail2-lab-example  10.77.0.12:8301 left    client  1.21.1  2         dc1  default    <default>',
      'agent-mail3-lab-example  10.77.0.13:8301 odd     client  1.21.1  2         dc1  default    <default>',
    ].join('\n');
    const m = parseMembers(out);
    expect(m.map((x) => [x.name, x.status, x.type])).toEqual([
      ['server-mail1-lab-example', 'alive', 'server'],
      ['agent-mail2-lab-example', 'left', 'client'],
      ['agent-mail3-lab-example', 'unknown', 'client'],
    ]);
  });

  it('reads a member without a role tag, which consul prints as type unknown with empty columns', () => {
    const out = [
      'Node                      Address          Status  Type     Build   Protocol  DC   Partition  Segment',
      'server-mail1-lab-example  10.77.0.11:8301  alive   server   1.21.1  2         dc1  default    <all>',
      'mystery                   10.77.0.19:8301  alive   unknown',
    ].join('\n');
    expect(parseMembers(out).map((x) => [x.name, x.status, x.type])).toEqual([
      ['server-mail1-lab-example', 'alive', 'server'],
      ['mystery', 'alive', 'unknown'],
    ]);
  });

  it('reads an empty listing as no members', () => {
    expect(parseMembers('')).toEqual([]);
    expect(parseMembers('\n')).toEqual([]);
  });

  it('refuses a table it does not know', () => {
    needsOperator(() => parseMembers('Error retrieving members: Unexpected response code: 403 (Permission denied)'));
    needsOperator(() => parseMembers('Node Status Address Type\nx alive 1.2.3.4:8301 server'));
    needsOperator(() => parseMembers('Node Address Status Type\nx 1.2.3.4:8301 alive peer'));
    needsOperator(() => parseMembers('Node Address Status Type\nx mail:8301 alive server'));
    needsOperator(() => parseMembers('Node Address Status Type\nx 1.2.3.4:8301'));
  });
});

describe('parseMeshServers', () => {
  it('reads one FQDN per line, lowercased, without duplicates', () => {
    expect(parseMeshServers('mail1.example.com\nMAIL2.example.com\nmail1.example.com\n\n')).toEqual(['mail1.example.com', 'mail2.example.com']);
    expect(parseMeshServers('single.example.com.\n')).toEqual(['single.example.com']);
    expect(parseMeshServers('')).toEqual([]);
  });

  it('refuses error text', () => {
    needsOperator(() => parseMeshServers('ERROR: service.FAILURE (system failure: getDirectContext)'));
    needsOperator(() => parseMeshServers('mail1.example.com\n-bash: carbonio: command not found'));
  });
});

function inspectText(over: Record<string, string | null> = {}, extra: string[] = []): string {
  const base: Record<string, string> = {
    hostname_s: 'mail1',
    hostname_f: 'mail1.lab.example',
    uid: '0',
    hostname_i: '127.0.1.1',
    'tool.service-discover': '/usr/bin/service-discover',
    'tool.consul': '/usr/bin/consul',
    'tool.gpg': '/usr/bin/gpg',
    'tool.tar': '/usr/bin/tar',
    'tool.systemctl': '/usr/bin/systemctl',
    'tool.sudo': '/usr/bin/sudo',
    'tool.runuser': '/usr/sbin/runuser',
    'tool.jq': '/usr/bin/jq',
    'tool.wget': '/usr/bin/wget',
    'tool.curl': '',
    'tool.flock': '/usr/bin/flock',
    service: 'active',
    main_json: '1',
    config_json: '1',
    credentials: '1',
    credentials_sha256: SHA_A,
    bind_addr: '10.77.0.11',
    consul_version: 'Consul v1.9.3',
    sd_package: '0.7.2-1',
    directory: 'ok ldap://ldap.example.com:389',
    profile: 'current',
  };
  const lines: string[] = [];
  const ip = [
    '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
    '2: eth0@if7    inet 10.77.0.11/24 brd 10.77.0.255 scope global eth0\\       valid_lft forever preferred_lft forever',
    '3: eth1    inet 192.168.56.101/24 brd 192.168.56.255 scope global eth1\\       valid_lft forever preferred_lft forever',
  ];
  for (const [k, v] of Object.entries({ ...base, ...over })) {
    if (v === null) continue;
    lines.push(`${k}=${v}`);
    if (k === 'uid') for (const l of ip) lines.push(`ip=${l}`);
  }
  return [...lines, ...extra, 'end=1', ''].join('\n');
}

describe('parseInspect', () => {
  it('reads a healthy current-profile node with hostname -i answering 127.0.1.1', () => {
    const f = parseInspect(inspectText(), 'mail1.lab.example');
    expect(f).toEqual({
      node: 'mail1.lab.example',
      hostname: 'mail1',
      fqdn: 'mail1.lab.example',
      profile: 'current',
      privileged: true,
      addresses: ['10.77.0.11', '192.168.56.101'],
      hostnameAddresses: ['127.0.1.1'],
      missingTools: [],
      serviceActive: true,
      hasMainJson: true,
      hasConfigJson: true,
      credentialsSha256: SHA_A,
      configuredBindAddress: '10.77.0.11',
      consulVersion: 'Consul v1.9.3',
      serviceDiscoverPackage: '0.7.2-1',
      directory: { state: 'ok', url: 'ldap://ldap.example.com:389' },
    } satisfies NodeFacts);
    expect(parseInspect(inspectText({ directory: 'unreachable ldap://10.0.0.9:389' }), 'n').directory).toEqual({ state: 'unreachable', url: 'ldap://10.0.0.9:389' });
    expect(parseInspect(inspectText({ directory: 'none' }), 'n').directory).toEqual({ state: 'none', url: null });
  });

  it('keeps IPv6 noise from hostname -i as a hint only, and never lists loopback addresses', () => {
    const f = parseInspect(inspectText({ hostname_i: 'fe80::5054:ff:fe12:3456%eth0 ::1 127.0.1.1 10.77.0.11 ' }), 'n');
    expect(f.hostnameAddresses).toEqual(['fe80::5054:ff:fe12:3456%eth0', '::1', '127.0.1.1', '10.77.0.11']);
    expect(f.addresses).not.toContain('127.0.0.1');
  });

  it('reads a legacy node without service, files or consul', () => {
    const f = parseInspect(
      inspectText({
        profile: 'legacy',
        service: 'inactive',
        main_json: '0',
        config_json: '0',
        credentials: '0',
        credentials_sha256: '',
        bind_addr: '',
        consul_version: '',
        uid: '1000',
        'tool.consul': '',
        'tool.sudo': '',
        'tool.runuser': '',
        'tool.wget': '',
        'tool.flock': '',
      }),
      'old',
    );
    expect(f.profile).toBe('legacy');
    expect(f.privileged).toBe(false);
    expect(f.serviceActive).toBe(false);
    expect(f.credentialsSha256).toBeNull();
    expect(f.configuredBindAddress).toBeNull();
    expect(f.consulVersion).toBeNull();
    expect(f.missingTools).toEqual(['consul', 'flock', 'sudo|runuser', 'wget|curl']);
  });

  it('reads profile none as null and falls back to the short name for the FQDN', () => {
    const f = parseInspect(inspectText({ profile: 'none', hostname_f: '' }), 'n');
    expect(f.profile).toBeNull();
    expect(f.fqdn).toBe('mail1');
  });

  it('refuses output cut short, unknown keys, duplicates and stray lines', () => {
    const full = inspectText();
    needsOperator(() => parseInspect(full.replace('end=1\n', ''), 'n'));
    needsOperator(() => parseInspect(inspectText({}, ['colour=blue']), 'n'));
    needsOperator(() => parseInspect(inspectText({}, ['uid=0']), 'n'));
    needsOperator(() => parseInspect(`Welcome to Ubuntu 22.04\n${full}`, 'n'));
    needsOperator(() => parseInspect(inspectText({ main_json: 'yes' }), 'n'));
    needsOperator(() => parseInspect(inspectText({ profile: 'zimbra' }), 'n'));
    needsOperator(() => parseInspect(inspectText({ credentials_sha256: 'abc' }), 'n'));
    needsOperator(() => parseInspect(inspectText({ credentials: '0' }), 'n'));
    needsOperator(() => parseInspect(inspectText({ 'tool.gpg': null }), 'n'));
    needsOperator(() => parseInspect(inspectText({}, ['ip=garbage']), 'n'));
    needsOperator(() => parseInspect('', 'n'));
  });

  it('parses ip -o lines with and without a peer suffix', () => {
    expect(parseIpAddrLine('2: eth0@if12    inet 10.1.2.3/16 brd 10.1.255.255 scope global eth0')).toEqual({ iface: 'eth0', address: '10.1.2.3' });
    expect(parseIpAddrLine('5: ens18    inet 172.16.0.9/32 scope global ens18')).toEqual({ iface: 'ens18', address: '172.16.0.9' });
    expect(parseIpAddrLine('nothing here')).toBeNull();
  });
});

describe('small probes', () => {
  it('systemctl is-active words', () => {
    expect(parseServiceState('active\n')).toBe(true);
    expect(parseServiceState('refreshing\n')).toBe(true);
    expect(parseServiceState('inactive\n')).toBe(false);
    expect(parseServiceState('failed')).toBe(false);
    expect(parseServiceState('activating')).toBe(false);
    expect(parseServiceState('')).toBe(false);
    needsOperator(() => parseServiceState('Failed to connect to bus: No such file or directory'));
  });

  it('reset file', () => {
    expect(parseResetFile('regen:absent\n')).toBeNull();
    expect(parseResetFile('regen:present\n908\n')).toBe(908);
    needsOperator(() => parseResetFile('regen:present\nnine\n'));
    needsOperator(() => parseResetFile('regen:present\n'));
    needsOperator(() => parseResetFile('cat: permission denied'));
  });

  it('wipe probe', () => {
    expect(parseProbeWipe('end=1\n')).toEqual([]);
    expect(parseProbeWipe('left=/etc/zextras/service-discover/main.json\nleft=/var/lib/service-discover/consul-agent-ca.pem\nend=1\n')).toEqual([
      '/etc/zextras/service-discover/main.json',
      '/var/lib/service-discover/consul-agent-ca.pem',
    ]);
    needsOperator(() => parseProbeWipe('left=/etc/zextras/service-discover/main.json\n'));
    needsOperator(() => parseProbeWipe('rm: oops\nend=1\n'));
  });

  it('setup probe', () => {
    const text = `main_json=1\nconfig_json=1\nbind_addr=10.77.0.11\ncredentials_sha256=${SHA_A}\nservice=active\npassword_file=1\nend=1\n`;
    expect(parseSetupProbe(text)).toEqual({
      hasMainJson: true,
      hasConfigJson: true,
      configuredBindAddress: '10.77.0.11',
      credentialsSha256: SHA_A,
      serviceActive: true,
      hasPasswordFile: true,
    });
    const empty = 'main_json=0\nconfig_json=0\nbind_addr=\ncredentials_sha256=\nservice=inactive\npassword_file=0\nend=1\n';
    expect(parseSetupProbe(empty)).toMatchObject({ configuredBindAddress: null, credentialsSha256: null, serviceActive: false });
    needsOperator(() => parseSetupProbe(text.replace('end=1\n', '')));
    needsOperator(() => parseSetupProbe(`${text}extra=1\n`));
  });

  it('credentials sha256', () => {
    expect(parseCredentialsSha256(`sha256=${SHA_B}\n`)).toBe(SHA_B);
    expect(parseCredentialsSha256('regen:absent\n')).toBeNull();
    needsOperator(() => parseCredentialsSha256('sha256=xyz'));
  });

  it('read credentials', () => {
    expect(parseReadCredentials('regen:absent\n')).toBeNull();
    const b64 = Buffer.from('-----BEGIN PGP MESSAGE-----\n...\n').toString('base64');
    const wrapped = `${b64.slice(0, 20)}\n${b64.slice(20)}\n`;
    expect(parseReadCredentials(`sha256=${SHA_A}\n${wrapped}`)).toEqual({ base64: b64, sha256: SHA_A });
    needsOperator(() => parseReadCredentials(`sha256=${SHA_A}\nnot base64 !!\n`));
    needsOperator(() => parseReadCredentials('base64: cannot read'));
  });

  it('token problems come from the first line only', () => {
    expect(tokenProblem('regen:bad-secret\n')).toBe('bad-secret');
    expect(tokenProblem('regen:no-credentials\n')).toBe('no-credentials');
    expect(tokenProblem('regen:no-token\n')).toBe('no-token');
    expect(tokenProblem('Node Address\nregen:bad-secret\n')).toBeNull();
  });

  it('tail keeps the end on one line', () => {
    expect(tail('a\nb\n  c  \n')).toBe('a | b | c');
    expect(tail('x'.repeat(500), 10)).toBe(`…${'x'.repeat(10)}`);
  });
});

describe('backup manifest', () => {
  const manifest = [
    MANIFEST_HEADER,
    `/etc/zextras/service-discover/config.json ${SHA_A} 25 600 service-discover service-discover`,
    `/var/lib/service-discover/password ${SHA_B} 24 400 root root`,
    '',
  ].join('\n');

  it('reads files with modes as four octal digits', () => {
    expect(parseManifest(manifest, '/var/backups/regen/r1')).toEqual({
      dir: '/var/backups/regen/r1',
      files: [
        { path: '/etc/zextras/service-discover/config.json', sha256: SHA_A, size: 25, mode: '0600', owner: 'service-discover', group: 'service-discover' },
        { path: '/var/lib/service-discover/password', sha256: SHA_B, size: 24, mode: '0400', owner: 'root', group: 'root' },
      ],
    });
  });

  it('reads the states of backup and its probe', () => {
    expect(parseBackup(`regen:backup created\n${manifest}`, '/d').state).toBe('created');
    expect(parseBackup(`regen:backup existing\n${manifest}`, '/d').manifest?.files).toHaveLength(2);
    expect(parseBackup(`regen:backup verified\n${MANIFEST_HEADER}\n`, '/d')).toEqual({ state: 'verified', manifest: { dir: '/d', files: [] } });
    expect(parseBackup('regen:backup absent\n', '/d')).toEqual({ state: 'absent', manifest: null });
    expect(parseBackup('regen:backup corrupt\n', '/d')).toEqual({ state: 'corrupt', manifest: null });
  });

  it('reads a line for every file the backup script copies, the gossip keyrings included', () => {
    const paths = BACKED_UP.map((p) => p.replace('*.pem', 'consul-agent-ca.pem'));
    expect(paths).toContain('/var/lib/service-discover/data/serf/local.keyring');
    const text = [MANIFEST_HEADER, ...paths.map((p) => `${p} ${SHA_A} 49 600 service-discover service-discover`), ''].join('\n');
    expect(parseManifest(text, '/d').files.map((f) => f.path)).toEqual(paths);
  });

  it('refuses a manifest without header or with a broken line', () => {
    needsOperator(() => parseManifest(manifest.split('\n').slice(1).join('\n'), '/d'));
    needsOperator(() => parseManifest(`${MANIFEST_HEADER}\nrelative/path ${SHA_A} 1 600 root root\n`, '/d'));
    needsOperator(() => parseManifest(`${MANIFEST_HEADER}\n/p ${SHA_A} 1 600 root\n`, '/d'));
    needsOperator(() => parseBackup('cp: error writing: No space left on device', '/d'));
  });
});

describe('parseTokens', () => {
  it('reads the filtered token list', () => {
    const out = JSON.stringify([
      {
        AccessorID: '0d6c2f0b-8a51-4f2a-9f0e-2b9c5a7d3e21',
        Description: 'Bootstrap Token (Global Management)',
        Policies: ['global-management'],
        CreateIndex: 12,
        CreateTime: '2024-03-01T10:00:00.123456789Z',
      },
      { AccessorID: '00000000-0000-0000-0000-000000000002', Description: 'Anonymous Token', Policies: [], CreateIndex: 5, CreateTime: '2024-03-01T09:00:00Z' },
    ]);
    expect(parseTokens(out)).toEqual([
      { accessorId: '0d6c2f0b-8a51-4f2a-9f0e-2b9c5a7d3e21', description: 'Bootstrap Token (Global Management)', policies: ['global-management'], createIndex: 12, createTime: '2024-03-01T10:00:00.123456789Z' },
      { accessorId: '00000000-0000-0000-0000-000000000002', description: 'Anonymous Token', policies: [], createIndex: 5, createTime: '2024-03-01T09:00:00Z' },
    ]);
  });

  it('refuses an entry carrying a SecretID without quoting it', () => {
    const secret = '3f1d0a6e-5b7c-4a55-9d1e-6c2b8f0e9a11';
    const err = needsOperator(() =>
      parseTokens(JSON.stringify([{ AccessorID: 'a', SecretID: secret, Description: '', Policies: [], CreateIndex: 1, CreateTime: 't' }])),
    );
    expect(err.message).not.toContain(secret);
  });

  it('refuses other shapes', () => {
    needsOperator(() => parseTokens('{}'));
    needsOperator(() => parseTokens('Failed to retrieve the token list'));
    needsOperator(() => parseTokens('[{"AccessorID":"a"}]'));
  });
});

describe('chooseBindAddress', () => {
  const facts = (over: Partial<NodeFacts> = {}): NodeFacts => ({
    node: 'mail1',
    hostname: 'mail1',
    fqdn: 'mail1.lab.example',
    profile: 'current',
    privileged: true,
    addresses: ['10.77.0.11', '192.168.56.101'],
    hostnameAddresses: ['127.0.1.1'],
    missingTools: [],
    serviceActive: true,
    hasMainJson: true,
    hasConfigJson: true,
    credentialsSha256: null,
    configuredBindAddress: null,
    consulVersion: null,
    serviceDiscoverPackage: '0.7.2-1',
    ...over,
  });
  const inv = (over: Partial<InventoryNode> = {}): InventoryNode => ({ name: 'mail1', sshHost: 'mail1.lab.example', ...over });

  it('takes the inventory address when the node has it, and refuses it otherwise', () => {
    expect(chooseBindAddress(inv({ address: '192.168.56.101' }), facts()).address).toBe('192.168.56.101');
    expect(() => chooseBindAddress(inv({ address: '10.9.9.9' }), facts())).toThrow(RegenError);
    expect(() => chooseBindAddress(inv({ address: '127.0.1.1' }), facts())).toThrow(/cannot be a bind address/);
  });

  it('prefers the configured bind address, then the SSH host address', () => {
    expect(chooseBindAddress(inv(), facts({ configuredBindAddress: '192.168.56.101' })).address).toBe('192.168.56.101');
    expect(chooseBindAddress(inv({ sshHost: '10.77.0.11' }), facts()).reason).toBe('SSH host address');
  });

  it('uses hostname -i only when it names an interface address', () => {
    expect(chooseBindAddress(inv(), facts({ hostnameAddresses: ['127.0.1.1', '10.77.0.11'] })).address).toBe('10.77.0.11');
  });

  it('takes the only usable address, and asks the operator when there are several', () => {
    expect(chooseBindAddress(inv(), facts({ addresses: ['10.77.0.11'] })).address).toBe('10.77.0.11');
    const err = needsOperator(() => chooseBindAddress(inv(), facts()));
    expect(err.message).toMatch(/127\.0\.1\.1/);
    expect(err.hint).toMatch(/address:/);
  });
});

describe('raft recovery (peers.json)', async () => {
  const { parseRaftRecovery } = await import('../../adapters/carbonio/parse.js');
  const cmd = await import('../../adapters/carbonio/commands.js');
  it('reads the addresses of a present file, null when absent, and refuses anything else', () => {
    expect(parseRaftRecovery('regen:absent\n', 'n1')).toBeNull();
    expect(parseRaftRecovery('regen:present\n[{"id":"0b6f…","address":"10.0.0.1:8300","non_voter":false}]\n', 'n1')).toEqual(['10.0.0.1:8300']);
    expect(() => parseRaftRecovery('regen:present\nnot json\n', 'n1')).toThrow(/not the JSON list/);
    expect(() => parseRaftRecovery('Permission denied\n', 'n1')).toThrow(/unexpected answer/);
  });
  it('writes the file as service-discover with the node id read on the node; a bad address never reaches a command', () => {
    const text = cmd.writeRaftRecovery('10.0.0.1');
    expect(text).toContain('/var/lib/service-discover/data/node-id');
    expect(text).toContain('10.0.0.1');
    expect(text).toMatch(/runuser -u service-discover/);
    expect(() => cmd.writeRaftRecovery('10.0.0.1; rm -rf /')).toThrow();
  });
});
