/**
 * The root scripts regen runs on a node, run here with /bin/sh against a scratch copy of the node's directories
 * (the paths in the script text are moved under a temporary root): they do not follow links in the directory the
 * service user owns, refuse file names that would forge manifest lines, and never hash the password file.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as cmd from '../../adapters/carbonio/commands.js';
import { parseBackup, parseManifest } from '../../adapters/carbonio/parse.js';
import { MANIFEST_HEADER } from '../../adapters/carbonio/commands.js';
import * as rpcHold from '../../adapters/carbonio/rpc-hold.js';
import { parseRpcHold } from '../../adapters/carbonio/rpc-hold.js';
import { RPC_HOLD_TEXT } from '../../machines/port.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'regen-node-'));
  for (const d of ['/etc/zextras/service-discover', '/var/lib/service-discover', '/var/backups/regen']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'etc/zextras/service-discover/main.json'), '{"a":1}\n', { mode: 0o600 });
  writeFileSync(join(root, 'var/lib/service-discover/agent.pem'), 'PEM\n', { mode: 0o600 });
  writeFileSync(join(root, 'var/lib/service-discover/password'), 'the-mesh-password-42', { mode: 0o600 });
  writeFileSync(join(root, 'secret-of-root'), 'root only\n', { mode: 0o600 });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** Run a builder's command with its absolute paths moved under the scratch root. */
function run(command: string): { code: number | null; stdout: string; stderr: string } {
  const moved = command.replace(/(\/etc\/zextras|\/var\/lib\/service-discover|\/var\/backups\/regen)/g, `${root}$1`);
  const r = spawnSync('sh', ['-c', moved], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('root scripts and the service user directory', () => {
  it('the password file is read, but not through a link', () => {
    const ok = run(cmd.readMeshSecret());
    expect([ok.code, ok.stdout]).toEqual([0, 'regen:present\nthe-mesh-password-42']);
    rmSync(join(root, 'var/lib/service-discover/password'));
    symlinkSync(join(root, 'secret-of-root'), join(root, 'var/lib/service-discover/password'));
    const linked = run(cmd.readMeshSecret());
    expect(linked.code).toBe(5);
    expect(linked.stdout).not.toContain('root only');
  });

  it('the backup records the password file by size only and everything else by sha256', () => {
    const r = run(cmd.backup('run-1'));
    expect(r.code, r.stderr).toBe(0);
    const { manifest } = parseBackup(r.stdout.replaceAll(root, ''), '/var/backups/regen/run-1');
    const byPath = new Map(manifest?.files.map((f) => [f.path, f.sha256]));
    expect(byPath.get('/var/lib/service-discover/password')).toBe('-');
    expect(byPath.get('/etc/zextras/service-discover/main.json')).toBe(execFileSync('sh', ['-c', `sha256sum < ${join(root, 'etc/zextras/service-discover/main.json')} | cut -d' ' -f1`], { encoding: 'utf8' }).trim());
    expect(r.stdout).not.toContain(execFileSync('sh', ['-c', `printf %s the-mesh-password-42 | sha256sum | cut -d' ' -f1`], { encoding: 'utf8' }).trim());
    // The probe verifies the password copy by its size.
    expect(run(cmd.probeBackup('run-1')).stdout.split('\n')[0]).toBe('regen:backup verified');
  });

  it('a link in the service directory stops the backup; nothing is hashed through it', () => {
    symlinkSync(join(root, 'secret-of-root'), join(root, 'var/lib/service-discover/evil.pem'));
    const r = run(cmd.backup('run-2'));
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/evil\.pem \(a symbolic link/);
    expect(run(cmd.probeBackup('run-2')).stdout.trim()).toBe('regen:backup absent');
  });

  it('a file name with a line break cannot forge a manifest line', () => {
    writeFileSync(join(root, 'var/lib/service-discover', 'x.pem\nforged 0 1 600 root root\ny.pem'), 'x');
    const r = run(cmd.backup('run-3'));
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/white space/);
  });

  it('a manifest naming a file the backup never copies is refused', () => {
    const line = (p: string) => `${MANIFEST_HEADER}\n${p} ${'a'.repeat(64)} 1 600 root root\n`;
    expect(() => parseManifest(line('/etc/shadow'), '/b')).toThrow();
    expect(() => parseManifest(line('/var/lib/service-discover/../../etc/x.pem'), '/b')).toThrow();
    expect(parseManifest(line('/var/lib/service-discover/agent.pem'), '/b').files).toHaveLength(1);
  });

  it('the raft recovery refuses a node-id that is not a UUID before writing JSON with it', () => {
    const script = cmd.writeRaftRecovery('10.0.0.1');
    expect(script).toMatch(/grep -Eqx .{0,40}\[0-9a-fA-F\]\{8\}-\[0-9a-fA-F\]\{4\}/);
    expect(script.indexOf('regen:bad-node-id')).toBeLessThan(script.indexOf('raft/peers.json'));
  });
});

describe('hints that show a shell command quote what they embed', () => {
  it('chmod of a secret file whose name has a space and a quote', async () => {
    const { obtainMeshSecret } = await import('../../adapters/secrets/mesh-secret.js');
    const { Redactor } = await import('../../adapters/secrets/redact.js');
    const p = join(root, "my secret's file");
    writeFileSync(p, 'a-long-enough-secret-123\n', { mode: 0o644 });
    const err = await obtainMeshSecret({ passwordFile: p, env: {}, isTTY: false, redactor: new Redactor() }).catch((e: unknown) => e as Error & { hint?: string });
    const hint = (err as { hint?: string }).hint ?? '';
    expect(hint).toBe(`chmod 600 '${root}/my secret'\\''s file'`);
    // The hint, run by a shell, names exactly that file.
    execFileSync('sh', ['-c', hint]);
    expect((await obtainMeshSecret({ passwordFile: p, env: {}, isTTY: false, redactor: new Redactor() }))?.source).toBe('file');
  });
});

describe("the leader's RPC-hold drop-in (adapters/carbonio/rpc-hold.ts)", () => {
  const file = () => join(root, 'etc/zextras/service-discover/zz-regen-rpc-hold.json');

  it('is written whole, readable by consul\'s user only, probed exactly, and removed; twice is the same as once', () => {
    const canChown = process.getuid?.() === 0 && spawnSync('id', ['service-discover']).status === 0;
    expect(parseRpcHold(run(rpcHold.probeRpcHold()).stdout)).toBeNull();
    for (let i = 0; i < 2; i++) {
      const w = run(rpcHold.writeRpcHold());
      if (!canChown) {
        // Without root (or the user) the chown fails and nothing is left behind, not even the temporary file.
        expect(w.code).toBe(4);
        expect(readdirSync(join(root, 'etc/zextras/service-discover'))).toEqual(['main.json']);
        return;
      }
      expect([w.code, w.stdout.trim()], w.stderr).toEqual([0, 'regen:written']);
    }
    expect(readdirSync(join(root, 'etc/zextras/service-discover')).sort()).toEqual(['main.json', 'zz-regen-rpc-hold.json']);
    const st = statSync(file());
    expect((st.mode & 0o777).toString(8)).toBe('600');
    expect(execFileSync('stat', ['-c', '%U:%G', file()], { encoding: 'utf8' }).trim()).toBe('service-discover:service-discover');
    expect(parseRpcHold(run(rpcHold.probeRpcHold()).stdout)).toBe(RPC_HOLD_TEXT);
    // Consul's file: the JSON it parses, with a Go duration string.
    expect(JSON.parse(RPC_HOLD_TEXT)).toEqual({ performance: { rpc_hold_timeout: '25s' } });
    for (let i = 0; i < 2; i++) expect(run(rpcHold.removeRpcHold()).stdout.trim()).toBe('regen:removed');
    expect(parseRpcHold(run(rpcHold.probeRpcHold()).stdout)).toBeNull();
  });

  it('a probe answer it does not know is the operator\'s, not "absent"', () => {
    expect(() => parseRpcHold('something else\n', 'mail1')).toThrow(/unexpected answer/);
  });
});
