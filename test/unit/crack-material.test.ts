/**
 * Nothing regen stores or prints helps to crack the secret: the encrypted credentials and the password file leave
 * only sizes (and the ciphertext's sha256) behind, every form of a secret is masked, and redaction touches free text
 * only, never a name a lookup or a connection depends on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createCarbonioPort } from '../../adapters/carbonio/port.js';
import { parseManifest } from '../../adapters/carbonio/parse.js';
import { MANIFEST_HEADER } from '../../adapters/carbonio/commands.js';
import { MASK } from '../../adapters/secrets/secret.js';
import { Redactor, redactor as processRedactor } from '../../adapters/secrets/redact.js';
import type { ExecOptions, ExecResult } from '../../adapters/ssh/remote.js';
import { withheld } from '../../adapters/ssh/transport.js';
import { reportError } from '../../cli/main.js';
import type { Io } from '../../cli/io.js';
import { RegenError } from '../../machines/errors.js';
import { openStore } from '../../store/store.js';

const tmp = mkdtempSync(join(tmpdir(), 'regen-crack-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the encrypted credentials and the password file', () => {
  it('readCredentials asks the transport to withhold its output, which keeps only size and sha256', async () => {
    const seen: ExecOptions[] = [];
    const b64 = Buffer.from('-----ciphertext-----').toString('base64');
    const sha = 'a'.repeat(64);
    const port = createCarbonioPort((node) => ({
      node,
      exec: async (_c: string, opts: ExecOptions = {}): Promise<ExecResult> => {
        seen.push(opts);
        return { code: 0, stdout: `sha256=${sha}\n${b64}\n`, stderr: '', durationMs: 1 };
      },
      close: async () => undefined,
    }));
    await port.readCredentials('mail1').catch(() => null);
    expect(seen[0]?.secretOutput).toBe('digest');
    const kept = withheld(`sha256=${sha}\n${b64}\n`, 'digest');
    expect(kept).toMatch(/^\(output withheld: \d+ bytes, sha256 [0-9a-f]{64}\)$/);
    expect(kept).not.toContain(b64.slice(0, 16));
    expect(withheld('the-password\n', true)).toBe('(output withheld: 13 bytes)');
  });

  it('a manifest records the password file by size only, and no other file without its sha256', () => {
    const line = (path: string, sha: string) => `${MANIFEST_HEADER}\n${path} ${sha} 33 600 root root\n`;
    expect(parseManifest(line('/var/lib/service-discover/password', '-'), '/b').files[0]?.sha256).toBe('-');
    expect(() => parseManifest(line('/etc/zextras/service-discover/main.json', '-'), '/b')).toThrow();
  });
});

describe('every form of a secret is masked', () => {
  const secret = "pa&ss<wörd>'x y!";
  const r = new Redactor();
  r.add(secret, 'mesh secret');
  const forms: [string, string][] = [
    ['Go JSON escaping', JSON.stringify(secret).slice(1, -1).replace('&', '\\u0026').replace('<', '\\u003c').replace('>', '\\u003e')],
    ['Go JSON, non-ASCII escaped', 'pa\\u0026ss\\u003cw\\u00f6rd\\u003e\'x y!'],
    ['shell single quotes', "pa&ss<wörd>'\\''x y!"],
    ['lowercase %xx', encodeURIComponent(secret).toLowerCase().replace(/%[0-9a-f]{2}/g, (m) => m.toLowerCase())],
    ["%27 for the quote", encodeURIComponent(secret).replace("'", '%27').replace('!', '%21')],
    ['hex', Buffer.from(secret).toString('hex')],
  ];
  for (const [what, form] of forms) {
    it(what, () => {
      expect(r.redact(`before ${form} after`)).toBe(`before ${MASK} after`);
    });
  }
  it('the labels `Gossip key:` and `token=`', () => {
    const fresh = new Redactor();
    expect(fresh.redact('Gossip key: c2VjcmV0LWdvc3NpcC1rZXktMzI=')).toBe(`Gossip key: ${MASK}`);
    expect(fresh.redact('GET /v1/kv?token=abc-123 HTTP/1.1')).toBe(`GET /v1/kv?token=${MASK} HTTP/1.1`);
  });
});

describe('what regen prints on stderr is redacted', () => {
  function io(): Io & { text: () => string } {
    let err = '';
    return {
      out: () => undefined,
      err: (t) => void (err += t),
      isTTY: false,
      stdinIsTTY: false,
      stdin: new PassThrough(),
      stdout: new PassThrough(),
      stderr: new PassThrough(),
      env: {},
      onInterrupt: () => () => undefined,
      text: () => err,
    };
  }
  it('reportError masks a SecretID, a gossip key and a known secret in the message, the hint and the debug stack', () => {
    processRedactor.add('known-mesh-secret-4711', 'mesh secret');
    const uuid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
    const e = new RegenError('step-failed', `consul said SecretID: ${uuid}; Gossip key: c2VjcmV0LWdvc3NpcC1rZXktMzI=`, { hint: 'known-mesh-secret-4711' });
    const out = io();
    reportError(e, out);
    const internal = new Error(`boom with known-mesh-secret-4711`);
    const before = process.env['REGEN_DEBUG'];
    process.env['REGEN_DEBUG'] = '1';
    try {
      reportError(internal, out);
    } finally {
      if (before === undefined) delete process.env['REGEN_DEBUG'];
      else process.env['REGEN_DEBUG'] = before;
    }
    expect(out.text()).not.toMatch(new RegExp(`${uuid}|c2VjcmV0LWdvc3NpcC1rZXktMzI|known-mesh-secret-4711`));
    expect(out.text().split(MASK).length).toBeGreaterThan(4);
  });
});

describe('redaction touches free text, never names and keys', () => {
  it('a one-character secret leaves node names, run ids and the lock findable; free text is masked', () => {
    const store = openStore(join(tmp, 'short.db'));
    const r = new Redactor();
    r.add('1', 'mesh secret');
    store.setRedactor(r.fn);
    try {
      store.createRun({ id: 'run-1', cluster: 'lab1', machineVersion: 'v', inventoryJson: '{"cluster":"lab1"}', optionsJson: '{}' });
      store.upsertNode({ runId: 'run-1', name: 'mail1.example.com', sshHost: 'mail1.example.com', role: null, kind: null, profile: null, address: null, bindAddress: null, fqdn: null } as never);
      store.audit({ runId: 'run-1', node: 'mail1.example.com', command: 'echo 1', exitCode: 0, durationMs: 1, outcome: 'completed', stdoutTail: 'pw=1', stderrTail: '' });
      const snapshot = JSON.stringify({ context: { leader: 'mail1.example.com', error: { message: 'secret 1 refused' } } });
      store.appendTransition({ runId: 'run-1', fromState: 'a', event: 'e', toState: 'b', snapshot, machineVersion: 'v' } as never);
      expect(store.getRun('run-1')?.cluster).toBe('lab1');
      expect(store.listNodes('run-1').map((n) => n.sshHost)).toEqual(['mail1.example.com']);
      expect(store.listAudit('run-1')[0]?.stdoutTail).toBe(`pw=${MASK}`);
      const stored = JSON.parse(store.lastTransition('run-1')?.snapshot ?? 'null') as { context: { leader: string; error: { message: string } } };
      expect(stored.context).toEqual({ leader: 'mail1.example.com', error: { message: `secret ${MASK} refused` } });
    } finally {
      store.close();
    }
  });
});

describe('the final summary is redacted', () => {
  it('a SecretID and a gossip key in a step failure do not reach stderr', async () => {
    const { start } = await import('../../cli/commands/start.js');
    const { createFakeCluster } = await import('../sim/fake-cluster.js');
    const { FAST } = await import('../support/machine-harness.js');
    const { writeFileSync } = await import('node:fs');
    const cluster = createFakeCluster({ servers: 1, agents: 1 });
    const uuid = '11111111-2222-3333-4444-555555555555';
    cluster.faults.failNext(cluster.nodes[0] as string, 'setupLeader', `setup said SecretID: ${uuid} and Gossip key: c2VjcmV0LWdvc3NpcC1rZXktMzI=`, { times: 5 } as never);
    const inv = join(tmp, 'summary.yaml');
    writeFileSync(inv, `cluster: sum\nnodes:\n${cluster.nodes.map((n) => `  - name: ${n}`).join('\n')}\n`);
    let err = '';
    const io = { out: () => undefined, err: (t: string) => void (err += t), isTTY: false, stdinIsTTY: false, stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough(), env: { REGEN_MESH_PASSWORD: 'a-brand-new-mesh-secret-77' }, onInterrupt: () => () => undefined } as Io;
    await start(
      { db: join(tmp, 'summary.db'), json: true, inventory: inv, inventoryFormat: 'auto', cluster: undefined, leader: undefined, yes: true, parallel: 1, dryRun: false, revokeOldTokens: false, maxUnitRounds: 1, passwordFile: undefined, generatePassword: false, sshConfig: undefined, knownHosts: undefined, acceptNewHostKeys: false, connectTimeoutS: 1, commandTimeoutS: 5, makePort: async () => cluster.port, runDeps: FAST, runId: 'sum-1' },
      io,
    );
    expect(err).toMatch(/setup said SecretID: \*+/);
    expect(err).not.toContain(uuid);
    expect(err).not.toContain('c2VjcmV0LWdvc3NpcC1rZXktMzI');
  });
});
