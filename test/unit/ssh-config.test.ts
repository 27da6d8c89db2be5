import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSshConfig, parseProxyJump, parseSshConfig, resolveHost, splitConfigLine } from '../../adapters/ssh/ssh-config.js';

let home: string;

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'regen-sshcfg-'));
  mkdirSync(join(home, '.ssh', 'config.d'), { recursive: true });
});

afterAll(() => {
  rmSync(home, { recursive: true, force: true });
});

const opts = () => ({ home, localUser: 'operator' });

describe('splitConfigLine', () => {
  it('handles spaces, keyword=value, quotes and comments', () => {
    expect(splitConfigLine('  HostName  mx1.example.com ')).toEqual(['HostName', 'mx1.example.com']);
    expect(splitConfigLine('Port=2222')).toEqual(['Port', '2222']);
    expect(splitConfigLine('Port = 2222')).toEqual(['Port', '2222']);
    expect(splitConfigLine('IdentityFile "~/my keys/id_ed25519"')).toEqual(['IdentityFile', '~/my keys/id_ed25519']);
    expect(splitConfigLine('# just a comment')).toBeNull();
    expect(splitConfigLine('User root # trailing')).toEqual(['User', 'root']);
    expect(() => splitConfigLine('IdentityFile "open')).toThrow(/unterminated/);
  });
});

describe('resolveHost', () => {
  const text = `
# A real-shaped user config
Host bastion
    HostName bastion.example.com
    User jump
    Port 2201

Host mx? !mx9 *.mail.example.com
    HostName %h.internal.example.com
    User admin
    IdentityFile ~/.ssh/id_mail
    IdentityFile %d/.ssh/id_%r_%h
    ProxyJump bastion

Host mx1
    # later block: its HostName loses, its Port wins (first obtained value wins)
    HostName ignored.example.com
    Port 2222

Host *
    User nobody-wins-this-for-mx
    IdentityFile ~/.ssh/id_default
    ServerAliveInterval 30
    ConnectTimeout 7
`;
  const config = parseSshConfig(text, { home });

  it('applies the first value per keyword across matching blocks', () => {
    const r = resolveHost(config, 'mx1', opts());
    expect(r.hostName).toBe('mx1.internal.example.com');
    expect(r.user).toBe('admin');
    expect(r.port).toBe(2222);
    expect(r.serverAliveIntervalSec).toBe(30);
    expect(r.connectTimeoutSec).toBe(7);
    expect(r.proxyJump).toEqual([{ host: 'bastion' }]);
  });

  it('accumulates IdentityFile in order with ~ and % tokens expanded', () => {
    const r = resolveHost(config, 'mx1', opts());
    expect(r.identityFiles).toEqual([
      join(home, '.ssh/id_mail'),
      join(home, '.ssh/id_admin_mx1.internal.example.com'),
      join(home, '.ssh/id_default'),
    ]);
  });

  it('honours negation and several patterns on one Host line', () => {
    const r9 = resolveHost(config, 'mx9', opts());
    expect(r9.hostName).toBe('mx9');
    expect(r9.user).toBe('nobody-wins-this-for-mx');
    expect(r9.proxyJump).toEqual([]);
    const rm = resolveHost(config, 'store.mail.example.com', opts());
    expect(rm.hostName).toBe('store.mail.example.com.internal.example.com');
    expect(rm.port).toBe(22);
  });

  it('matches host patterns case-insensitively, as ssh lowercases the name', () => {
    expect(resolveHost(config, 'BASTION', opts()).port).toBe(2201);
  });

  it('falls back to the local user and port 22 when nothing matches', () => {
    const r = resolveHost(parseSshConfig(''), 'db.example.com', opts());
    expect(r).toMatchObject({ hostName: 'db.example.com', port: 22, user: 'operator', identityFiles: [], proxyJump: [] });
    expect(r.identityAgent).toBeUndefined();
  });

  it('reads IdentityAgent, IdentitiesOnly, HostKeyAlias, UserKnownHostsFile and ProxyCommand', () => {
    const c = parseSshConfig(
      [
        'Host a',
        '  IdentityAgent ~/.ssh/agent.sock',
        '  IdentitiesOnly yes',
        '  HostKeyAlias mesh-a',
        '  UserKnownHostsFile ~/.ssh/kh1 ~/.ssh/kh2',
        'Host b',
        '  IdentityAgent none',
        '  ProxyCommand nc %h %p',
      ].join('\n'),
    );
    const a = resolveHost(c, 'a', opts());
    expect(a.identityAgent).toBe(join(home, '.ssh/agent.sock'));
    expect(a.identitiesOnly).toBe(true);
    expect(a.hostKeyAlias).toBe('mesh-a');
    expect(a.userKnownHostsFiles).toEqual([join(home, '.ssh/kh1'), join(home, '.ssh/kh2')]);
    const b = resolveHost(c, 'b', opts());
    expect(b.identityAgent).toBeNull();
    expect(b.proxyCommand).toBe('nc %h %p');
  });

  it('evaluates Match all / host / originalhost and flags what it cannot', () => {
    const c = parseSshConfig(
      [
        'Host alias1',
        '  HostName real1.example.com',
        'Match host real1.example.com',
        '  Port 2022',
        'Match originalhost alias1 !host other',
        '  User matched',
        'Match exec "true"',
        '  User never',
        'Match all',
        '  IdentityFile ~/.ssh/all',
      ].join('\n'),
    );
    const r = resolveHost(c, 'alias1', opts());
    expect(r.port).toBe(2022);
    expect(r.user).toBe('matched');
    expect(r.identityFiles).toEqual([join(home, '.ssh/all')]);
    expect(r.warnings.some((w) => w.includes('exec'))).toBe(true);
  });

  it('rejects a port that is not a number', () => {
    expect(() => resolveHost(parseSshConfig('Host x\n Port abc'), 'x', opts())).toThrow(/Port abc/);
  });
});

describe('Include', () => {
  it('reads included files relative to ~/.ssh, glob expanded in order', () => {
    writeFileSync(join(home, '.ssh', 'config.d', '10-mesh.conf'), 'Host mesh-*\n  User meshadmin\n');
    writeFileSync(join(home, '.ssh', 'config.d', '20-more.conf'), 'Host mesh-*\n  User loses\n  Port 2200\n');
    writeFileSync(join(home, '.ssh', 'config.d', 'README'), 'Host mesh-*\n  Port 1\n');
    const path = join(home, '.ssh', 'config');
    writeFileSync(path, 'Include config.d/*.conf\nHost *\n  User default\n');
    const c = loadSshConfig(path, { home });
    const r = resolveHost(c, 'mesh-1', opts());
    expect(r.user).toBe('meshadmin');
    expect(r.port).toBe(2200);
    expect(resolveHost(c, 'other', opts()).user).toBe('default');
  });

  it('treats a missing config file as empty', () => {
    const c = loadSshConfig(join(home, 'nope'), { home });
    expect(resolveHost(c, 'x', opts()).hostName).toBe('x');
  });
});

describe('parseProxyJump', () => {
  it('reads one or more hops in several spellings', () => {
    expect(parseProxyJump('jump1,admin@jump2:2222,ssh://u@[fe80::1]:22,[10.0.0.1]')).toEqual([
      { host: 'jump1' },
      { host: 'jump2', user: 'admin', port: 2222 },
      { host: 'fe80::1', user: 'u', port: 22 },
      { host: '10.0.0.1' },
    ]);
    expect(() => parseProxyJump('a,,b')).toThrow(/ProxyJump/);
    expect(() => parseProxyJump('a:99999')).toThrow(/port/);
  });
});
