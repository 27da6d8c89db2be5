import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { RegenError, UsageError } from '../../machines/errors.js';
import { MASK, Secret } from '../../adapters/secrets/secret.js';
import { Redactor } from '../../adapters/secrets/redact.js';
import { hiddenPrompt } from '../../adapters/secrets/prompt.js';
import { obtainMeshSecret, parseAnsiblePasswordFile } from '../../adapters/secrets/mesh-secret.js';
import type { ObtainMeshSecretOptions } from '../../adapters/secrets/mesh-secret.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/inventories/', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'regen-secrets-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function secretFile(content: string, mode = 0o600): string {
  const p = join(tmp, `pw${++n}`);
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
}

/** An Ansible inventory with its _consulpassword beside it, as Carbonio's playbook leaves them. */
function ansibleInventory(password = 'Xk3p9Qa2\n', mode = 0o600): string {
  const dir = mkdtempSync(join(tmp, 'ansible-'));
  const inv = join(dir, 'carbonio-demo');
  copyFileSync(join(FIXTURES, 'carbonio-demo'), inv);
  writeFileSync(`${inv}_consulpassword`, password);
  chmodSync(`${inv}_consulpassword`, mode);
  return inv;
}

function opts(o: Partial<ObtainMeshSecretOptions>): ObtainMeshSecretOptions {
  return { env: {}, isTTY: false, redactor: new Redactor(), weakSecret: true, ...o };
}

async function usageError(p: Promise<unknown>): Promise<UsageError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('expected a UsageError');
}

describe('obtainMeshSecret: the one source the operator named', () => {
  it('a file alone', async () => {
    const got = await obtainMeshSecret(opts({ passwordFile: secretFile('from-file\n'), prompt: async () => 'from-prompt', isTTY: true }));
    expect([got?.source, got?.secret.reveal()]).toEqual(['file', 'from-file']);
  });

  it('the environment alone', async () => {
    const got = await obtainMeshSecret(opts({ env: { REGEN_MESH_PASSWORD: 'from-env' } }));
    expect([got?.source, got?.secret.reveal()]).toEqual(['env', 'from-env']);
  });

  it("Carbonio's Ansible _consulpassword only when named (--password-from-inventory)", async () => {
    const got = await obtainMeshSecret(opts({ ansibleInventory: ansibleInventory('fromAnsible\n') }));
    expect([got?.source, got?.secret.reveal()]).toEqual(['inventory', 'fromAnsible']);
  });

  it('two sources at once are refused, naming both', async () => {
    const pairs: Partial<ObtainMeshSecretOptions>[] = [
      { passwordFile: secretFile('from-file-0123456\n'), env: { REGEN_MESH_PASSWORD: 'from-env-0123456' } },
      { generate: true, env: { REGEN_MESH_PASSWORD: 'from-env-0123456' } },
      { generate: true, passwordFile: secretFile('from-file-0123456\n') },
      { generate: true, ansibleInventory: ansibleInventory('fromAnsible0123456\n') },
    ];
    const named = [];
    for (const p of pairs) {
      const err = await usageError(obtainMeshSecret(opts(p)));
      named.push(err.message.match(/--[a-z-]+|REGEN_MESH_PASSWORD/g));
    }
    expect(named).toEqual([
      ['--password-file', 'REGEN_MESH_PASSWORD'],
      ['REGEN_MESH_PASSWORD', '--generate-password'],
      ['--password-file', '--generate-password'],
      ['--password-from-inventory', '--generate-password'],
    ]);
  });

  it('a weak new secret is refused unless --weak-secret; an existing one is taken as it is', async () => {
    const env = (v: string) => ({ env: { REGEN_MESH_PASSWORD: v }, weakSecret: false });
    expect((await usageError(obtainMeshSecret(opts(env('short-11ch'))))).message).toMatch(/shorter than 12/);
    expect((await usageError(obtainMeshSecret(opts(env('Password123!'))))).message).toMatch(/obvious/);
    expect((await usageError(obtainMeshSecret(opts(env('aaaaaaaaaaaaaaaa'))))).message).toMatch(/repeats/);
    expect((await obtainMeshSecret(opts({ ...env('short'), weakSecret: true })))?.secret.reveal()).toBe('short');
    expect((await obtainMeshSecret(opts({ ...env('short'), purpose: 'existing' })))?.secret.reveal()).toBe('short');
    expect((await obtainMeshSecret(opts(env('k7Qp-ward-Zen4-lamp'))))?.source).toBe('env');
  });

  it('the prompt on a TTY', async () => {
    const got = await obtainMeshSecret(opts({ prompt: async () => 'typed', isTTY: true }));
    expect([got?.source, got?.secret.reveal()]).toEqual(['prompt', 'typed']);
  });

  it('never prompts without a TTY', async () => {
    let asked = 0;
    const got = await obtainMeshSecret(opts({ prompt: async () => `${++asked}`, isTTY: false }));
    expect(got).toBeNull();
    expect(asked).toBe(0);
  });

  it('generates only when asked, in preference to prompting', async () => {
    let asked = 0;
    const got = await obtainMeshSecret(opts({ prompt: async () => `${++asked}`, isTTY: true, generate: true }));
    expect(got?.source).toBe('generated');
    expect(got?.secret.reveal()).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(asked).toBe(0);
    const again = await obtainMeshSecret(opts({ generate: true }));
    expect(again?.secret.reveal()).not.toBe(got?.secret.reveal());
  });

  it('registers the secret with the redactor', async () => {
    const r = new Redactor();
    await obtainMeshSecret(opts({ env: { REGEN_MESH_PASSWORD: 'hunter2-mesh' }, redactor: r }));
    expect(r.redact('setup --wizard; pw hunter2-mesh')).toBe(`setup --wizard; pw ${MASK}`);
  });

  it('returns a Secret that masks itself', async () => {
    const got = await obtainMeshSecret(opts({ env: { REGEN_MESH_PASSWORD: 'hunter2-mesh' } }));
    expect(got?.secret).toBeInstanceOf(Secret);
    expect(JSON.stringify(got)).not.toContain('hunter2');
  });
});

describe('obtainMeshSecret: files', () => {
  it('strips exactly one trailing newline', async () => {
    const got = await obtainMeshSecret(opts({ passwordFile: secretFile('two  \n') }));
    expect(got?.secret.reveal()).toBe('two  ');
    // The second newline is part of the content, which is then more than one line.
    await usageError(obtainMeshSecret(opts({ passwordFile: secretFile('two\n\n') })));
    const crlf = await obtainMeshSecret(opts({ passwordFile: secretFile('crlf\r\n') }));
    expect(crlf?.secret.reveal()).toBe('crlf');
    const none = await obtainMeshSecret(opts({ passwordFile: secretFile(' spaced ') }));
    expect(none?.secret.reveal()).toBe(' spaced ');
  });

  it('refuses a file readable by group or others, naming chmod 600', async () => {
    for (const mode of [0o640, 0o604, 0o660, 0o644]) {
      const p = secretFile('s3cret\n', mode);
      const err = await usageError(obtainMeshSecret(opts({ passwordFile: p })));
      expect(err.message).toContain(`mode 0${mode.toString(8)}`);
      expect(err.hint).toBe(`chmod 600 ${p}`);
    }
    expect((await obtainMeshSecret(opts({ passwordFile: secretFile('ok', 0o400) })))?.secret.reveal()).toBe('ok');
  });

  it('refuses an empty file, a file of one newline, and several lines', async () => {
    expect((await usageError(obtainMeshSecret(opts({ passwordFile: secretFile('') })))).message).toMatch(/is empty/);
    expect((await usageError(obtainMeshSecret(opts({ passwordFile: secretFile('\n') })))).message).toMatch(/is empty/);
    expect((await usageError(obtainMeshSecret(opts({ passwordFile: secretFile('a\nb\n') })))).message).toMatch(/more than one line/);
  });

  it('refuses a missing file or a directory', async () => {
    expect((await usageError(obtainMeshSecret(opts({ passwordFile: join(tmp, 'missing') })))).message).toMatch(/does not exist/);
    expect((await usageError(obtainMeshSecret(opts({ passwordFile: tmp })))).message).toMatch(/is not a regular file/);
  });

  it('refuses an empty REGEN_MESH_PASSWORD rather than falling through', async () => {
    const err = await usageError(obtainMeshSecret(opts({ env: { REGEN_MESH_PASSWORD: '' } })));
    expect(err.message).toBe('REGEN_MESH_PASSWORD is set but empty');
  });

  it("reads Ansible's password lookup format and checks its mode", async () => {
    expect(parseAnsiblePasswordFile('Ab12cd34\n')).toBe('Ab12cd34');
    expect(parseAnsiblePasswordFile('Ab12cd34 salt=xyzXYZ\n')).toBe('Ab12cd34');
    expect(parseAnsiblePasswordFile('Ab12cd34 salt=xyz ident=2b\n')).toBe('Ab12cd34');
    const got = await obtainMeshSecret(opts({ ansibleInventory: ansibleInventory('Ab12cd34 salt=q\n') }));
    expect(got?.secret.reveal()).toBe('Ab12cd34');
    const err = await usageError(obtainMeshSecret(opts({ ansibleInventory: ansibleInventory('x\n', 0o644) })));
    expect(err.hint).toMatch(/^chmod 600 .*carbonio-demo_consulpassword$/);
  });
});

describe('obtainMeshSecret: prompting', () => {
  function scripted(answers: string[]): { prompt: (q: string) => Promise<string>; questions: string[] } {
    const questions: string[] = [];
    return {
      questions,
      prompt: async (q) => {
        questions.push(q);
        const a = answers.shift();
        if (a === undefined) throw new Error('asked too often');
        return a;
      },
    };
  }

  it('asks twice for a new secret', async () => {
    const s = scripted(['n3w-secret', 'n3w-secret']);
    const got = await obtainMeshSecret(opts({ ...s, isTTY: true }));
    expect(got?.secret.reveal()).toBe('n3w-secret');
    expect(s.questions).toEqual(['New mesh secret: ', 'Repeat the new mesh secret: ']);
  });

  it('asks again when the entries differ or are empty, up to three times', async () => {
    const s = scripted(['a1', 'a2', '', 'ok-secret', 'ok-secret']);
    const got = await obtainMeshSecret(opts({ ...s, isTTY: true }));
    expect(got?.secret.reveal()).toBe('ok-secret');
    expect(s.questions).toEqual([
      'New mesh secret: ',
      'Repeat the new mesh secret: ',
      'The two entries differ. New mesh secret: ',
      'The secret cannot be empty. New mesh secret: ',
      'Repeat the new mesh secret: ',
    ]);
    const never = scripted(['a', 'b', 'c', 'd', 'e', 'f']);
    const err = await usageError(obtainMeshSecret(opts({ ...never, isTTY: true })));
    expect(err.message).toBe('no mesh secret after 3 attempts (the two entries differ)');
    expect(err.hint).toMatch(/--password-file/);
  });

  it('asks once for the existing secret', async () => {
    const s = scripted(['old-secret']);
    const got = await obtainMeshSecret(opts({ ...s, isTTY: true, purpose: 'existing' }));
    expect(got?.secret.reveal()).toBe('old-secret');
    expect(s.questions).toEqual(['Current mesh secret: ']);
  });
});

/** A fake terminal: raw mode is recorded, keystrokes are pushed as the user would type them. */
function fakeTty(): { input: PassThrough & { isTTY: boolean; isRaw: boolean; setRawMode: (r: boolean) => void; modes: boolean[] }; output: PassThrough; written: () => string } {
  const input = Object.assign(new PassThrough(), { isTTY: true, isRaw: false, modes: [] as boolean[] }) as PassThrough & {
    isTTY: boolean;
    isRaw: boolean;
    setRawMode: (r: boolean) => void;
    modes: boolean[];
  };
  input.setRawMode = (r: boolean) => {
    input.isRaw = r;
    input.modes.push(r);
  };
  const output = new PassThrough();
  let out = '';
  output.on('data', (c: Buffer) => (out += c.toString()));
  return { input, output, written: () => out };
}

describe('hiddenPrompt', () => {
  it('reads a line in raw mode without echoing it, then restores the mode', async () => {
    const t = fakeTty();
    const answer = hiddenPrompt('Passphrase: ', t);
    t.input.write('s3');
    t.input.write('cr€t\r');
    expect(await answer).toBe('s3cr€t');
    expect(t.input.modes).toEqual([true, false]);
    await new Promise((r) => setImmediate(r));
    expect(t.written()).toBe('Passphrase: \n');
  });

  it('handles backspace, Ctrl-U and arrow keys', async () => {
    const t = fakeTty();
    const answer = hiddenPrompt('? ', t);
    t.input.write('abX\u007fc\u001b[D\bd');
    t.input.write('\u0015final\u001b[A!\n');
    expect(await answer).toBe('final!');
    const t2 = fakeTty();
    const a2 = hiddenPrompt('? ', t2);
    t2.input.write('abc\u007f\u007fd\r');
    expect(await a2).toBe('ad');
  });

  it('rejects with an aborted RegenError on Ctrl-C and restores the mode', async () => {
    const t = fakeTty();
    const answer = hiddenPrompt('? ', t);
    t.input.write('half\u0003rest\r');
    const err = await answer.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegenError);
    expect((err as RegenError).kind).toBe('aborted');
    expect(t.input.isRaw).toBe(false);
  });

  it('treats Ctrl-D on an empty line as abort', async () => {
    const t = fakeTty();
    const answer = hiddenPrompt('? ', t);
    t.input.write('\u0004');
    expect(((await answer.catch((e: unknown) => e)) as RegenError).kind).toBe('aborted');
  });

  it('reads one line from a pipe and leaves the rest for the next question', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    input.end('first\nsecond\n');
    expect(await hiddenPrompt('1: ', { input, output })).toBe('first');
    expect(await hiddenPrompt('2: ', { input, output })).toBe('second');
    await expect(hiddenPrompt('3: ', { input, output })).rejects.toMatchObject({ kind: 'aborted' });
  });

  it('takes a last line without newline from a pipe', async () => {
    const input = new PassThrough();
    input.end('no-newline');
    expect(await hiddenPrompt('? ', { input, output: new PassThrough() })).toBe('no-newline');
  });
});

describe('Redactor', () => {
  it('masks known secrets and strings, longest first', () => {
    const r = new Redactor();
    r.add(new Secret('abc123'), 'short');
    r.add('abc123def456', 'long');
    expect(r.redact('x abc123def456 y abc123 z')).toBe(`x ${MASK} y ${MASK} z`);
    expect(r.redact('')).toBe('');
  });

  it('masks base64 forms, also inside a longer base64 blob at any alignment', () => {
    const r = new Redactor();
    const secret = 'correct horse battery';
    r.add(secret);
    expect(r.redact(`b64 ${Buffer.from(secret).toString('base64')}`)).toBe(`b64 ${MASK}`);
    for (const prefix of ['', 'u', 'us', 'use', 'user:']) {
      for (const suffix of ['', '!', '!!', '!!!']) {
        const blob = Buffer.from(`${prefix}${secret}${suffix}`).toString('base64');
        const out = r.redact(`Authorization: Basic ${blob}`);
        expect(out, `${prefix}|${suffix}`).toContain(MASK);
        // What is left of the blob no longer decodes to the secret.
        expect(Buffer.from(out.replace(/^.*Basic /, '').replace(MASK, ''), 'base64').toString()).not.toContain('horse battery');
      }
    }
  });

  it('masks URL-encoded and JSON-escaped forms', () => {
    const r = new Redactor();
    const secret = 'p@ss w/rd&"q"\\';
    r.add(secret);
    expect(r.redact(`?password=${encodeURIComponent(secret)}&x=1`)).toBe(`?password=${MASK}&x=1`);
    expect(r.redact(`form: ${encodeURIComponent(secret).replace(/%20/g, '+')}`)).toBe(`form: ${MASK}`);
    const json = JSON.stringify({ stdout: `pw=${secret}` });
    const masked = r.redact(json);
    expect(masked).not.toContain('w/rd');
    expect(JSON.parse(masked)).toEqual({ stdout: `pw=${MASK}` });
  });

  it('masks SecretID UUIDs, but keeps AccessorIDs', () => {
    const r = new Redactor();
    const bootstrap = JSON.stringify(
      {
        AccessorID: '3f1e2a4b-0000-4c5d-8e9f-0123456789ab',
        SecretID: '6a1253d2-1785-24fd-91c2-f8e78c745511',
        Description: 'Bootstrap Token (Global Management)',
      },
      null,
      2,
    );
    const out = r.redact(bootstrap);
    expect(out).not.toContain('6a1253d2');
    expect(out).toContain('3f1e2a4b-0000-4c5d-8e9f-0123456789ab');
    expect(JSON.parse(out).SecretID).toBe(MASK);
    expect(r.redact('SecretID:         6a1253d2-1785-24fd-91c2-f8e78c745511')).toBe(`SecretID:         ${MASK}`);
    expect(r.redact(`{"x":${JSON.stringify(bootstrap)}}`)).not.toContain('6a1253d2');
    expect(r.redact('CONSUL_HTTP_TOKEN=6a1253d2-1785-24fd-91c2-f8e78c745511 consul members')).toBe(`CONSUL_HTTP_TOKEN=${MASK} consul members`);
  });

  it('masks --password arguments in every spelling, keeping JSON valid', () => {
    const r = new Redactor();
    expect(r.redact('service-discover setup 10.0.0.1 --first-instance --password=S3cr3t!')).toBe(`service-discover setup 10.0.0.1 --first-instance --password=${MASK}`);
    expect(r.redact('setup 10.0.0.2 --password Xk3p9Qa2 --x')).toBe(`setup 10.0.0.2 --password ${MASK} --x`);
    expect(r.redact(`--password='two words' next`)).toBe(`--password=${MASK} next`);
    expect(r.redact('--password="two words" next')).toBe(`--password=${MASK} next`);
    const line = JSON.stringify({ command: 'setup --password="a b" --password=c', n: 1 });
    expect(JSON.parse(r.redact(line))).toEqual({ command: `setup --password=${MASK} --password=${MASK}`, n: 1 });
  });

  it('masks gossip keys after gossip-key and encrypt', () => {
    const r = new Redactor();
    const key = 'pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=';
    expect(r.redact(`{"encrypt": "${key}", "encrypt_verify_incoming": true}`)).toBe(`{"encrypt": "${MASK}", "encrypt_verify_incoming": true}`);
    expect(r.redact(`gossip-key: ${key}`)).toBe(`gossip-key: ${MASK}`);
    expect(r.redact(`consul agent -encrypt=${key}`)).toBe(`consul agent -encrypt=${MASK}`);
    expect(r.redact('encrypt: true')).toBe('encrypt: true');
  });

  it('leaves ordinary text alone and ignores empty secrets', () => {
    const r = new Redactor();
    r.add('');
    const text = 'Node  Address  Status  Type\nserver-mail1  10.0.0.1:8301  alive  server';
    expect(r.redact(text)).toBe(text);
    expect(r.size).toBe(0);
  });

  it('does not mask short derived fragments, but always the secret itself', () => {
    const r = new Redactor();
    r.add('ab');
    expect(r.redact('cab YWI= x')).toBe(`c${MASK} ${MASK} x`);
  });
});
