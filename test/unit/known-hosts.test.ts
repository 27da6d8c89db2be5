import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  formatKnownHostsLine,
  hostKeyFromBlob,
  knownHostsName,
  knownKeyTypes,
  matchPatternList,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
  readKnownHosts,
  wildcardMatch,
  type HostKey,
} from '../../adapters/ssh/known-hosts.js';

let dir: string;
const keys: Record<string, { key: HostKey; pubLine: string; path: string }> = {};

function makeKey(name: string, type: string): void {
  const path = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', `${name}@test`, '-f', path]);
  const pubLine = readFileSync(`${path}.pub`, 'utf8').trim();
  const [t, b64] = pubLine.split(' ');
  keys[name] = { key: { type: t ?? '', base64: b64 ?? '' }, pubLine, path };
}

function k(name: string): HostKey {
  const entry = keys[name];
  if (!entry) throw new Error(`no key ${name}`);
  return entry.key;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'regen-kh-'));
  makeKey('ed', 'ed25519');
  makeKey('ed2', 'ed25519');
  makeKey('ecdsa', 'ecdsa');
  makeKey('rsa', 'rsa');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('fingerprintSha256', () => {
  it.each(['ed', 'ecdsa', 'rsa'])('equals ssh-keygen -lf for a %s key', (name) => {
    const out = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${keys[name]?.path}.pub`], { encoding: 'utf8' });
    const expected = out.split(' ')[1];
    expect(expected).toMatch(/^SHA256:/);
    expect(fingerprintSha256(k(name))).toBe(expected);
    expect(fingerprintSha256(Buffer.from(k(name).base64, 'base64'))).toBe(expected);
  });

  it('reads the key type from the wire blob a server sends', () => {
    const blob = Buffer.from(k('ecdsa').base64, 'base64');
    expect(hostKeyFromBlob(blob)).toEqual(k('ecdsa'));
  });
});

describe('patterns', () => {
  it('matches wildcards like OpenSSH', () => {
    expect(wildcardMatch('*.example.com', 'mx1.example.com')).toBe(true);
    expect(wildcardMatch('mx?.example.com', 'mx1.example.com')).toBe(true);
    expect(wildcardMatch('mx?.example.com', 'mx12.example.com')).toBe(false);
    expect(wildcardMatch('*', '')).toBe(true);
    expect(wildcardMatch('a*b*c', 'axxbyyc')).toBe(true);
    expect(wildcardMatch('a*b*c', 'axxbyy')).toBe(false);
    expect(wildcardMatch('MX1.example.COM', 'mx1.EXAMPLE.com')).toBe(true);
    expect(wildcardMatch('File', 'file', { caseSensitive: true })).toBe(false);
  });

  it('a negated pattern vetoes the whole list', () => {
    expect(matchPatternList(['*.example.com', '!db.example.com'], 'mx.example.com')).toBe(true);
    expect(matchPatternList(['*.example.com', '!db.example.com'], 'db.example.com')).toBe(false);
    expect(matchPatternList(['!db.example.com'], 'mx.example.com')).toBe(false);
  });

  it('names non-standard ports in brackets', () => {
    expect(knownHostsName('Mail.Example.com', 22)).toBe('mail.example.com');
    expect(knownHostsName('10.0.0.1', 2222)).toBe('[10.0.0.1]:2222');
  });
});

describe('parse and check', () => {
  it('finds plain, comma-listed and [host]:port entries', () => {
    const text = [
      '# comment',
      '',
      `mx1.example.com,10.0.0.1 ${k('ed').type} ${k('ed').base64} root@mx1`,
      `[10.0.0.2]:2222 ${k('ecdsa').type} ${k('ecdsa').base64}`,
      `*.lab.test,!evil.lab.test ${k('rsa').type} ${k('rsa').base64}`,
    ].join('\n');
    const { entries, invalidLines } = parseKnownHosts(text);
    expect(invalidLines).toEqual([]);
    expect(entries).toHaveLength(3);
    expect(entries[0]?.comment).toBe('root@mx1');
    expect(entries[0]?.line).toBe(3);

    expect(checkHostKey(entries, 'mx1.example.com', 22, k('ed')).status).toBe('match');
    expect(checkHostKey(entries, '10.0.0.1', 22, k('ed')).status).toBe('match');
    expect(checkHostKey(entries, '10.0.0.1', 2222, k('ed')).status).toBe('unknown');
    expect(checkHostKey(entries, '10.0.0.2', 2222, k('ecdsa')).status).toBe('match');
    expect(checkHostKey(entries, '10.0.0.2', 22, k('ecdsa')).status).toBe('unknown');
    expect(checkHostKey(entries, 'a.lab.test', 22, k('rsa')).status).toBe('match');
    expect(checkHostKey(entries, 'evil.lab.test', 22, k('rsa')).status).toBe('unknown');
  });

  it('reports a changed key as mismatch, with the lines that disagree', () => {
    const { entries } = parseKnownHosts(`mx1 ${k('ed').type} ${k('ed').base64}\n`);
    const res = checkHostKey(entries, 'mx1', 22, k('ed2'));
    expect(res.status).toBe('mismatch');
    if (res.status === 'mismatch') expect(res.known.map((e) => e.line)).toEqual([1]);
    // Known only under another type: treated as changed, never as new.
    expect(checkHostKey(entries, 'mx1', 22, k('ecdsa')).status).toBe('mismatch');
  });

  it('refuses a @revoked key even when another line lists it', () => {
    const text = [
      `@revoked * ${k('ed').type} ${k('ed').base64}`,
      `mx1 ${k('ed').type} ${k('ed').base64}`,
      `@cert-authority *.example.com ${k('rsa').type} ${k('rsa').base64}`,
    ].join('\n');
    const { entries } = parseKnownHosts(text);
    expect(entries.map((e) => e.marker)).toEqual(['revoked', null, 'cert-authority']);
    expect(checkHostKey(entries, 'mx1', 22, k('ed')).status).toBe('revoked');
    // cert-authority lines are not host keys: a host matching only one is unknown.
    expect(checkHostKey(entries, 'a.example.com', 22, k('rsa')).status).toBe('unknown');
  });

  it('skips malformed lines and reports them', () => {
    const text = [
      `mx1 ${k('ed').type}`,
      `mx2 ssh-rsa ${k('ed').base64}`,
      '@bogus mx3 ssh-ed25519 AAAA',
      `|1|short|short ${k('ed').type} ${k('ed').base64}`,
      `mx4 ${k('ed').type} ${k('ed').base64}`,
    ].join('\n');
    const { entries, invalidLines } = parseKnownHosts(text);
    expect(invalidLines).toEqual([1, 2, 3, 4]);
    expect(entries).toHaveLength(1);
  });

  it('reads entries hashed by ssh-keygen -H (plain and [host]:port)', () => {
    const path = join(dir, 'known_hosts_hashed');
    writeFileSync(
      path,
      [`mx1.example.com ${k('ed').type} ${k('ed').base64}`, `[127.0.0.1]:2200 ${k('ecdsa').type} ${k('ecdsa').base64}`, ''].join('\n'),
    );
    execFileSync('ssh-keygen', ['-q', '-H', '-f', path], { stdio: 'ignore' });
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain('mx1.example.com');
    expect(text.startsWith('|1|')).toBe(true);
    const { entries, invalidLines } = parseKnownHosts(text);
    expect(invalidLines).toEqual([]);
    expect(entries.every((e) => e.host.kind === 'hashed')).toBe(true);
    expect(checkHostKey(entries, 'mx1.example.com', 22, k('ed')).status).toBe('match');
    expect(checkHostKey(entries, 'MX1.example.com', 22, k('ed')).status).toBe('match');
    expect(checkHostKey(entries, 'mx2.example.com', 22, k('ed')).status).toBe('unknown');
    expect(checkHostKey(entries, '127.0.0.1', 2200, k('ecdsa')).status).toBe('match');
    expect(checkHostKey(entries, '127.0.0.1', 2200, k('ed2')).status).toBe('mismatch');
    expect(knownKeyTypes(entries, '127.0.0.1', 2200)).toEqual(['ecdsa-sha2-nistp256']);
  });

  it('writes hashed lines that ssh-keygen -F finds', () => {
    const path = join(dir, 'known_hosts_written');
    writeFileSync(path, '');
    const line = formatKnownHostsLine('10.1.2.3', 2222, k('ed'), { hash: true });
    writeFileSync(path, `${line}\n`);
    const out = execFileSync('ssh-keygen', ['-F', '[10.1.2.3]:2222', '-f', path], { encoding: 'utf8' });
    expect(out).toContain(k('ed').base64);
  });
});

describe('appendKnownHost', () => {
  it('creates the file 0600 and appends lines that parse back', async () => {
    const path = join(dir, 'sub', 'known_hosts');
    await appendKnownHost(path, 'mx1', 22, k('ed'));
    await appendKnownHost(path, '127.0.0.1', 2022, k('rsa'), { comment: 'added by regen' });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const parsed = await readKnownHosts(path);
    expect(parsed.entries.map((e) => e.line)).toEqual([1, 2]);
    expect(checkHostKey(parsed.entries, 'mx1', 22, k('ed')).status).toBe('match');
    expect(checkHostKey(parsed.entries, '127.0.0.1', 2022, k('rsa')).status).toBe('match');
    expect(parsed.entries[1]?.comment).toBe('added by regen');
  });

  it('keeps a file that lacked a final newline intact', async () => {
    const path = join(dir, 'no_newline');
    writeFileSync(path, `mx1 ${k('ed').type} ${k('ed').base64}`);
    await appendKnownHost(path, 'mx2', 22, k('ecdsa'));
    const parsed = await readKnownHosts(path);
    expect(parsed.invalidLines).toEqual([]);
    expect(parsed.entries).toHaveLength(2);
  });

  it('treats a missing file as empty', async () => {
    expect((await readKnownHosts(join(dir, 'absent'))).entries).toEqual([]);
  });
});

describe('preferredHostKeyAlgorithms', () => {
  it('asks for the known key types first', () => {
    expect(preferredHostKeyAlgorithms(['ecdsa-sha2-nistp256']).slice(0, 2)).toEqual(['ecdsa-sha2-nistp256', 'ssh-ed25519']);
    expect(preferredHostKeyAlgorithms(['ssh-rsa']).slice(0, 3)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(preferredHostKeyAlgorithms([])[0]).toBe('ssh-ed25519');
    expect(new Set(preferredHostKeyAlgorithms(['ssh-rsa'])).size).toBe(7);
  });
});
