import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CommandFailedError, NeedsOperatorError, UsageError } from '../../machines/errors.js';
import { MANIFEST_HEADER } from '../../adapters/carbonio/commands.js';
import * as cmd from '../../adapters/carbonio/commands.js';
import { createCarbonioPort } from '../../adapters/carbonio/port.js';
import { Secret } from '../../adapters/secrets/secret.js';
import type { ExecOptions, ExecResult, Remote } from '../../adapters/ssh/remote.js';

interface Call {
  node: string;
  command: string;
  stdin: string;
  opts: ExecOptions;
}

type Reply = Partial<Omit<ExecResult, 'durationMs'>>;
type Script = (command: string, stdin: string) => Reply;

/** An in-memory node: answers each command with the reply the script gives, records every exec. */
function scripted(script: Script) {
  const calls: Call[] = [];
  const closed: string[] = [];
  const logs: string[] = [];
  const made: string[] = [];
  const remotes = (node: string): Remote => {
    made.push(node);
    return {
      node,
      async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
        const stdin = opts.stdin === undefined ? '' : Buffer.isBuffer(opts.stdin) ? opts.stdin.toString('latin1') : opts.stdin;
        calls.push({ node, command, stdin, opts });
        const r = script(command, stdin);
        return { code: r.code ?? 0, stdout: r.stdout ?? '', stderr: r.stderr ?? '', durationMs: 1 };
      },
      async close(): Promise<void> {
        closed.push(node);
      },
    };
  };
  const port = createCarbonioPort(remotes, { commandTimeoutMs: 5_000, setupTimeoutMs: 90_000, log: (l) => logs.push(l), clock: () => 0 });
  return { port, calls, closed, logs, made };
}

const SECRET_TEXT = 'Mesh-S3cret-with $pecial \'quotes\' and "more"';
const secret = (): Secret => new Secret(SECRET_TEXT, 'mesh secret');

/** The secret must be on stdin and nowhere in any command line. */
function expectSecretOnlyOnStdin(calls: Call[]): void {
  expect(calls.length).toBeGreaterThan(0);
  for (const c of calls) {
    expect(c.command).not.toContain(SECRET_TEXT);
    expect(c.command).not.toContain('S3cret');
  }
  expect(calls.some((c) => c.stdin.includes(SECRET_TEXT))).toBe(true);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

const SHA = 'c'.repeat(64);

/** The script inside `sh -c '…'` as shq() quoted it. */
function unquote(command: string): string {
  expect(command.startsWith("sh -c '")).toBe(true);
  return command.slice("sh -c '".length, -1).replace(/'\\''/g, "'");
}

describe('secrets never reach a command line', () => {
  const membersTable = 'Node Address Status Type Build Protocol DC Segment\nserver-mail1 10.77.0.11:8301 alive server 1.9.3 2 dc1 <all>\n';

  it('members', async () => {
    const t = scripted(() => ({ stdout: membersTable }));
    expect(await t.port.members('mail1', secret())).toEqual([{ name: 'server-mail1', address: '10.77.0.11:8301', status: 'alive', type: 'server' }]);
    expectSecretOnlyOnStdin(t.calls);
    expect(t.calls[0]?.command).toBe(cmd.members());
    expect(t.calls[0]?.stdin).toBe(`${SECRET_TEXT}\n`);
  });

  it('secretOpensCredentials', async () => {
    const t = scripted(() => ({ stdout: 'regen:opens\n' }));
    expect(await t.port.secretOpensCredentials('mail1', secret())).toBe(true);
    expectSecretOnlyOnStdin(t.calls);
  });

  it('listTokens', async () => {
    const t = scripted(() => ({ stdout: '[]\n' }));
    expect(await t.port.listTokens('mail1', secret())).toEqual([]);
    expectSecretOnlyOnStdin(t.calls);
    expect(t.calls[0]?.command).toContain('jq');
  });

  it('deleteToken', async () => {
    const t = scripted(() => ({ stdout: 'Token "x" deleted successfully\n' }));
    await t.port.deleteToken('mail1', secret(), '0d6c2f0b-8a51-4f2a-9f0e-2b9c5a7d3e21');
    expectSecretOnlyOnStdin(t.calls);
    expect(t.calls[0]?.command).toContain('consul acl token delete -id 0d6c2f0b-8a51-4f2a-9f0e-2b9c5a7d3e21');
  });

  // The setups run on a terminal through Remote.dialog: test/unit/setup-dialog.test.ts.

  it('refuses a secret with a line break before anything runs', async () => {
    const t = scripted(() => ({}));
    const err = await rejection(t.port.setupLeader('mail1', '10.77.0.11', new Secret('two\nlines')));
    expect(err).toBeInstanceOf(UsageError);
    expect(t.calls).toHaveLength(0);
  });

  it('refuses a bind address that is not IPv4 before anything runs', async () => {
    const t = scripted(() => ({}));
    expect(await rejection(t.port.setupLeader('mail1', '$(reboot)', secret()))).toBeInstanceOf(UsageError);
    expect(await rejection(t.port.setupFollower('mail1', 'mail1.lab', secret(), 'agent'))).toBeInstanceOf(UsageError);
    expect(t.calls).toHaveLength(0);
  });
});

describe('readMeshSecret', () => {
  it('marks the output secret and returns a Secret', async () => {
    const t = scripted(() => ({ stdout: 'regen:present\nthe-password' }));
    const s = await t.port.readMeshSecret('mail1');
    expect(s?.reveal()).toBe('the-password');
    expect(String(s)).not.toContain('the-password');
    expect(t.calls[0]?.opts.secretOutput).toBe(true);
    expect(t.logs.join('\n')).not.toContain('the-password');
  });

  it('returns null when the file is absent, and never quotes output in errors', async () => {
    expect(await scripted(() => ({ stdout: 'regen:absent\n' })).port.readMeshSecret('n')).toBeNull();
    const odd = await rejection(scripted(() => ({ stdout: 'garbage-that-might-be-the-password' })).port.readMeshSecret('n'));
    expect(odd).toBeInstanceOf(NeedsOperatorError);
    expect(odd.message).not.toContain('garbage-that-might-be-the-password');
    const failed = await rejection(scripted(() => ({ code: 1, stdout: 'regen:present\npw-123', stderr: '' })).port.readMeshSecret('n'));
    expect(failed.message).not.toContain('pw-123');
  });
});

describe('readResetIndex', () => {
  it('returns the index from the refusal', async () => {
    const t = scripted(() => ({
      code: 1,
      stdout: 'Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed (reset index: 908))\n',
    }));
    expect(await t.port.readResetIndex('mail1')).toEqual({ kind: 'index', index: 908 });
    expect(t.calls[0]?.command).toBe(cmd.readResetIndex());
  });

  it('a successful bootstrap is saved on the node and only its path comes back', async () => {
    const t = scripted(() => ({ stdout: 'regen:bootstrapped /root/regen-unexpected-bootstrap-1700000000-9.json\n' }));
    const r = await t.port.readResetIndex('mail1');
    expect(r).toEqual({ kind: 'bootstrapped', savedTo: '/root/regen-unexpected-bootstrap-1700000000-9.json' });
    expect(t.logs.some((l) => l.includes('never been bootstrapped'))).toBe(true);
    // The node-side script keeps the token: umask 077, a file under /root, and in the success branch the
    // output only ever goes into that file.
    const script = unquote(t.calls[0]?.command ?? '');
    expect(script).toContain('umask 077');
    const start = script.indexOf('if [ "$rc" -eq 0 ]; then');
    const success = script.slice(start, script.indexOf('\nfi\n', start));
    expect(success).toContain('/root/regen-unexpected-bootstrap-');
    const uses = success.split('\n').filter((l) => l.includes('"$out"'));
    expect(uses.length).toBeGreaterThan(0);
    for (const l of uses) expect(l.split('"$out"').length).toBe(l.split('"$out" > "$f"').length);
    expect(success).toContain('echo "regen:bootstrapped $f"');
  });

  it('a token printed by an unexpected exit 0 never comes back', async () => {
    const token = '3f1d0a6e-5b7c-4a55-9d1e-6c2b8f0e9a11';
    const t = scripted(() => ({ stdout: `SecretID: ${token}\n` }));
    const err = await rejection(t.port.readResetIndex('mail1'));
    expect(err).toBeInstanceOf(NeedsOperatorError);
    expect(JSON.stringify({ message: err.message, hint: (err as NeedsOperatorError).hint })).not.toContain(token);
  });

  it('anything else needs the operator', async () => {
    const t = scripted(() => ({ code: 1, stderr: 'Error: Unexpected response code: 500 (The ACL system is currently in legacy mode.)' }));
    const err = await rejection(t.port.readResetIndex('mail1'));
    expect(err).toBeInstanceOf(NeedsOperatorError);
    expect((err as NeedsOperatorError).node).toBe('mail1');
  });
});

describe('members', () => {
  it('an empty listing with exit 2 is no members, and says so', async () => {
    const t = scripted(() => ({ code: 2 }));
    expect(await t.port.members('mail1', secret())).toEqual([]);
    expect(t.logs.some((l) => l.includes('listed nothing'))).toBe(true);
  });

  it('a secret that does not open the credentials is a wrong-secret error, not an empty list', async () => {
    const t = scripted(() => ({ code: 3, stdout: 'regen:bad-secret\n', stderr: 'gpg: decryption failed: Bad session key' }));
    const err = await rejection(t.port.members('mail1', secret()));
    expect(err).toBeInstanceOf(CommandFailedError);
    expect(err.message).toMatch(/token could not be read from credentials \(wrong secret\?\)/);
  });

  it('no credentials file, or none with a token, say so', async () => {
    expect((await rejection(scripted(() => ({ code: 3, stdout: 'regen:no-credentials\n' })).port.members('n', secret()))).message).toMatch(/no cluster-credentials/);
    expect((await rejection(scripted(() => ({ code: 3, stdout: 'regen:no-token\n' })).port.members('n', secret()))).message).toMatch(/hold no/);
  });

  it('other consul failures are command failures', async () => {
    const t = scripted(() => ({ code: 1, stderr: 'Error retrieving members: Get "http://127.0.0.1:8500/v1/agent/members": connection refused' }));
    expect(await rejection(t.port.members('n', secret()))).toBeInstanceOf(CommandFailedError);
  });
});

describe('secretOpensCredentials', () => {
  it('false for a wrong secret or no file; an error for other gpg failures', async () => {
    expect(await scripted(() => ({ stdout: 'regen:does-not-open\n', stderr: 'gpg: decryption failed: Bad session key\n' })).port.secretOpensCredentials('n', secret())).toBe(false);
    expect(await scripted(() => ({ stdout: 'regen:no-credentials\n' })).port.secretOpensCredentials('n', secret())).toBe(false);
    const err = await rejection(scripted(() => ({ stdout: 'regen:does-not-open\n', stderr: 'gpg: no valid OpenPGP data found.\n' })).port.secretOpensCredentials('n', secret()));
    expect(err).toBeInstanceOf(CommandFailedError);
  });
});

describe('leader, mesh servers, service', () => {
  it('leaderAddress', async () => {
    expect(await scripted(() => ({ stdout: '"10.77.0.11:8300"' })).port.leaderAddress('n')).toBe('10.77.0.11');
    expect(await scripted(() => ({ stdout: '""' })).port.leaderAddress('n')).toBeNull();
    const t = scripted(() => ({ code: 4 }));
    const err = await rejection(t.port.leaderAddress('n'));
    expect(err).toBeInstanceOf(CommandFailedError);
    expect((err as CommandFailedError).hint).toMatch(/8500/);
    expect(t.calls[0]?.command).toContain('wget -qO- http://127.0.0.1:8500/v1/status/leader');
    expect(t.calls[0]?.command).toContain('curl -fsS');
  });

  it('meshServers runs as zextras with the profile’s command', async () => {
    const t = scripted(() => ({ stdout: 'mail1.lab.example\nmail2.lab.example\n' }));
    expect(await t.port.meshServers('n', 'current')).toEqual(['mail1.lab.example', 'mail2.lab.example']);
    await t.port.meshServers('n', 'legacy');
    expect(t.calls.map((c) => c.command)).toEqual([
      "su - zextras -c 'carbonio prov -l gas service-discover'",
      "su - zextras -c 'zmprov -l gas service-discover'",
    ]);
  });

  it('serviceActive reads the word whatever the exit code', async () => {
    expect(await scripted(() => ({ stdout: 'active\n' })).port.serviceActive('n')).toBe(true);
    expect(await scripted(() => ({ code: 3, stdout: 'inactive\n' })).port.serviceActive('n')).toBe(false);
  });

  it('stop and start', async () => {
    const t = scripted(() => ({}));
    await t.port.stopService('n');
    await t.port.startService('n');
    expect(t.calls.map((c) => c.command)).toEqual(['systemctl stop service-discover', 'systemctl start service-discover']);
    expect(await rejection(scripted(() => ({ code: 1, stderr: 'Job failed' })).port.startService('n'))).toBeInstanceOf(CommandFailedError);
  });
});

describe('reset file and wipe', () => {
  it('writes the reset index as service-discover and probes it', async () => {
    const t = scripted((c) => (c === cmd.probeResetFile() ? { stdout: 'regen:present\n908\n' } : {}));
    await t.port.writeResetFile('n', 908);
    expect(t.calls[0]?.command).toContain('runuser -u service-discover -- sh -c');
    expect(t.calls[0]?.command).toContain('sudo -n -u service-discover');
    expect(t.calls[0]?.command).toContain('echo 908 > /var/lib/service-discover/data/acl-bootstrap-reset');
    expect(await t.port.probeResetFile('n')).toBe(908);
    expect(await rejection(t.port.writeResetFile('n', -1))).toBeInstanceOf(UsageError);
    expect(await rejection(t.port.writeResetFile('n', 1.5))).toBeInstanceOf(UsageError);
  });

  it('wipes per profile', async () => {
    const t = scripted(() => ({}));
    await t.port.wipe('n', 'current');
    await t.port.wipe('n', 'legacy');
    const [current, legacy] = t.calls.map((c) => c.command);
    expect(current).toContain('rm -f /etc/zextras/service-discover/config.json /etc/zextras/service-discover/main.json /var/lib/service-discover/*.pem');
    expect(legacy).toContain('rm -f /var/lib/service-discover/*.pem');
    expect(legacy).not.toContain('main.json');
  });

  it('refuses to wipe a running service', async () => {
    const err = await rejection(scripted(() => ({ code: 4, stderr: 'regen:service-active\n' })).port.wipe('n', 'current'));
    expect(err).toBeInstanceOf(CommandFailedError);
    expect((err as CommandFailedError).hint).toMatch(/stop/);
  });

  it('probeWipe is true only when nothing is left', async () => {
    expect(await scripted(() => ({ stdout: 'end=1\n' })).port.probeWipe('n', 'current')).toBe(true);
    expect(await scripted(() => ({ stdout: 'left=/etc/zextras/service-discover/main.json\nend=1\n' })).port.probeWipe('n', 'current')).toBe(false);
  });
});

describe('backup', () => {
  const manifest = `${MANIFEST_HEADER}\n/etc/zextras/service-discover/main.json ${SHA} 120 600 service-discover service-discover\n`;

  /** A node whose backup directory is created by the first run and found by the later ones. */
  function node() {
    let state: 'none' | 'done' = 'none';
    return scripted((c) => {
      if (c === cmd.backup('run-1')) {
        const was = state;
        state = 'done';
        return { stdout: `regen:backup ${was === 'none' ? 'created' : 'existing'}\n${manifest}` };
      }
      if (c === cmd.probeBackup('run-1')) return { stdout: state === 'none' ? 'regen:backup absent\n' : `regen:backup verified\n${manifest}` };
      return { code: 99 };
    });
  }

  it('is idempotent: the same script, the same manifest, whether it copied or found the backup', async () => {
    const t = node();
    expect(await t.port.probeBackup('n', 'run-1')).toBeNull();
    const first = await t.port.backup('n', 'run-1');
    const second = await t.port.backup('n', 'run-1');
    expect(second).toEqual(first);
    expect(first).toEqual({
      dir: '/var/backups/regen/run-1',
      files: [{ path: '/etc/zextras/service-discover/main.json', sha256: SHA, size: 120, mode: '0600', owner: 'service-discover', group: 'service-discover' }],
    });
    expect(await t.port.probeBackup('n', 'run-1')).toEqual(first);
    expect(new Set(t.calls.filter((c) => c.command.includes('cp -a')).map((c) => c.command)).size).toBe(1);
  });

  it('the script copies with cp -a and writes the manifest last', () => {
    const s = cmd.backup('run-1');
    expect(s).toContain('cp -a');
    expect(s.indexOf('mv -f "$T" "$M"')).toBeGreaterThan(s.lastIndexOf('cp -a'));
  });

  it('a failed copy says which node and that nothing was removed', async () => {
    const t = scripted(() => ({ code: 6, stderr: 'cp: error writing: No space left on device\nregen:backup-failed /var/lib/service-discover/password\n' }));
    const err = await rejection(t.port.backup('mail2', 'run-1'));
    expect(err).toBeInstanceOf(CommandFailedError);
    expect(err.message).toContain('mail2');
    expect(err.message).toContain('/var/lib/service-discover/password');
    expect(err.message).toMatch(/nothing was removed/);
  });

  it('a backup that no longer matches its manifest needs the operator', async () => {
    const err = await rejection(scripted(() => ({ code: 5, stdout: 'regen:backup corrupt\n' })).port.backup('n', 'run-1'));
    expect(err).toBeInstanceOf(NeedsOperatorError);
    expect(await scripted(() => ({ stdout: 'regen:backup corrupt\n' })).port.probeBackup('n', 'run-1')).toBeNull();
  });

  it('refuses a run id that is not a plain directory name', async () => {
    const t = scripted(() => ({}));
    expect(await rejection(t.port.backup('n', '../../etc'))).toBeInstanceOf(UsageError);
    expect(await rejection(t.port.probeBackup('n', 'a b'))).toBeInstanceOf(UsageError);
    expect(t.calls).toHaveLength(0);
  });
});

describe('credentials file', () => {
  const bytes = Buffer.from('-----BEGIN PGP MESSAGE-----\n\njA0ECQMC...\n-----END PGP MESSAGE-----\n');
  const sha = createHash('sha256').update(bytes).digest('hex');

  it('readCredentials decodes base64 and checks the node’s sha256', async () => {
    const t = scripted(() => ({ stdout: `sha256=${sha}\n${bytes.toString('base64').replace(/(.{76})/g, '$1\n')}\n` }));
    const r = await t.port.readCredentials('leader');
    expect(r?.sha256).toBe(sha);
    expect(r?.bytes.equals(bytes)).toBe(true);
    const bad = scripted(() => ({ stdout: `sha256=${SHA}\n${bytes.toString('base64')}\n` }));
    expect(await rejection(bad.port.readCredentials('leader'))).toBeInstanceOf(CommandFailedError);
    expect(await scripted(() => ({ stdout: 'regen:absent\n' })).port.readCredentials('leader')).toBeNull();
  });

  it('writeCredentials sends the bytes on stdin and the sha in the command', async () => {
    const t = scripted(() => ({ stdout: 'regen:written\n' }));
    await t.port.writeCredentials('mail2', bytes, sha);
    const c = t.calls[0] as Call;
    expect(c.command).toBe(cmd.writeCredentials(sha));
    expect(Buffer.isBuffer(c.opts.stdin) && c.opts.stdin.equals(bytes)).toBe(true);
    expect(c.command).toContain('chmod 600');
    expect(c.command).toContain('mv -f "$T" /etc/zextras/service-discover/cluster-credentials.tar.gpg');
  });

  it('writeCredentials refuses bytes that do not match the sha before sending them', async () => {
    const t = scripted(() => ({ stdout: 'regen:written\n' }));
    expect(await rejection(t.port.writeCredentials('mail2', bytes, SHA))).toBeInstanceOf(CommandFailedError);
    expect(t.calls).toHaveLength(0);
  });

  it('writeCredentials reports a mismatch found on the node', async () => {
    const err = await rejection(scripted(() => ({ code: 5, stderr: `regen:sha256-mismatch ${SHA}\n` })).port.writeCredentials('mail2', bytes, sha));
    expect(err).toBeInstanceOf(CommandFailedError);
    expect(err.message).toMatch(/old file is untouched/);
  });

  it('credentialsSha256', async () => {
    expect(await scripted(() => ({ stdout: `sha256=${SHA}\n` })).port.credentialsSha256('n')).toBe(SHA);
    expect(await scripted(() => ({ stdout: 'regen:absent\n' })).port.credentialsSha256('n')).toBeNull();
  });
});

describe('inspect and setup probe', () => {
  it('inspect is one round trip and its output is parsed strictly', async () => {
    const t = scripted(() => ({ stdout: 'hostname_s=mail1\n' }));
    expect(await rejection(t.port.inspect('mail1'))).toBeInstanceOf(NeedsOperatorError);
    expect(t.calls).toHaveLength(1);
    expect(t.calls[0]?.opts.timeoutMs).toBe(5_000);
  });

  it('probeSetup', async () => {
    const out = `main_json=1\nconfig_json=1\nbind_addr=10.77.0.12\ncredentials_sha256=${SHA}\nservice=active\npassword_file=0\nend=1\n`;
    expect(await scripted(() => ({ stdout: out })).port.probeSetup('n')).toEqual({
      hasMainJson: true,
      hasConfigJson: true,
      configuredBindAddress: '10.77.0.12',
      credentialsSha256: SHA,
      serviceActive: true,
      hasPasswordFile: false,
    });
  });
});

describe('connections', () => {
  it('opens one Remote per node and closes each once', async () => {
    const t = scripted(() => ({ stdout: 'active\n' }));
    await t.port.serviceActive('a');
    await t.port.serviceActive('a');
    await t.port.serviceActive('b');
    expect(t.made).toEqual(['a', 'b']);
    await t.port.close();
    expect(t.closed.sort()).toEqual(['a', 'b']);
  });

  it('transport errors pass through unchanged', async () => {
    const { NodeUnreachableError } = await import('../../machines/errors.js');
    const port = createCarbonioPort((node) => ({
      node,
      exec: async () => {
        throw new NodeUnreachableError(node, 'connect ECONNREFUSED');
      },
      close: async () => {},
    }));
    expect(await rejection(port.inspect('x'))).toBeInstanceOf(NodeUnreachableError);
  });
});
