/**
 * The credentials tarball made for real, as service-discover makes it: an uncompressed tar with exactly the four
 * members, encrypted with OpenPGP symmetric AES-256, ASCII armored. Anything that reads it on a lab node
 * (`gpg -d … | tar xOf - consul-acl-secret.json`) sees what it would see on a Carbonio server.
 *
 * Synchronous on purpose: the model is synchronous and runs under the cluster-state lock.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CredentialsCrypto } from './model.js';

const GPG = '/usr/bin/gpg';
const TAR = '/usr/bin/tar';
const TIMEOUT_MS = 30_000;

function gpgBase(home: string): string[] {
  return ['--homedir', home, '--batch', '--quiet', '--no-tty', '--pinentry-mode', 'loopback', '--passphrase-fd', '0'];
}

/** A private GNUPGHOME for one operation; the gpg-agent gpg starts in it is stopped before the directory goes. */
function withGnupgHome<T>(fn: (home: string, tmp: string) => T): T {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-sim-gpg-'));
  const home = path.join(tmp, 'gnupg');
  fs.mkdirSync(home, { mode: 0o700 });
  try {
    return fn(home, tmp);
  } finally {
    spawnSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent'], { stdio: 'ignore', timeout: 10_000 });
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export class GpgCrypto implements CredentialsCrypto {
  pack(members: ReadonlyArray<{ name: string; data: Buffer }>, password: string): Buffer {
    return withGnupgHome((home, tmp) => {
      const root = path.join(tmp, 'members');
      for (const m of members) {
        const file = path.join(root, m.name);
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, m.data, { mode: 0o600 });
      }
      const tarFile = path.join(tmp, 'credentials.tar');
      // Members named one by one, so the archive holds these files and no directory entries.
      const tar = spawnSync(
        TAR,
        ['-cf', tarFile, '--owner=0', '--group=0', '--numeric-owner', '-C', root, ...members.map((m) => m.name)],
        { timeout: TIMEOUT_MS, encoding: 'utf8' },
      );
      if (tar.status !== 0) throw new Error(`tar: ${tar.stderr || tar.error?.message}`);
      const out = path.join(tmp, 'credentials.tar.gpg');
      const gpg = spawnSync(
        GPG,
        [...gpgBase(home), '--symmetric', '--cipher-algo', 'AES256', '--armor', '--output', out, tarFile],
        { input: `${password}\n`, timeout: TIMEOUT_MS, encoding: 'utf8' },
      );
      if (gpg.status !== 0) throw new Error(`gpg: ${gpg.stderr || gpg.error?.message}`);
      return fs.readFileSync(out);
    });
  }

  unpack(blob: Buffer, password: string): Map<string, Buffer> | null {
    return withGnupgHome((home, tmp) => {
      const inFile = path.join(tmp, 'credentials.tar.gpg');
      fs.writeFileSync(inFile, blob, { mode: 0o600 });
      const tarFile = path.join(tmp, 'credentials.tar');
      const gpg = spawnSync(GPG, [...gpgBase(home), '--output', tarFile, '--decrypt', inFile], {
        input: `${password}\n`,
        timeout: TIMEOUT_MS,
        encoding: 'utf8',
      });
      if (gpg.status !== 0) return null;
      const root = path.join(tmp, 'members');
      fs.mkdirSync(root);
      const list = spawnSync(TAR, ['-tf', tarFile], { timeout: TIMEOUT_MS, encoding: 'utf8' });
      const x = spawnSync(TAR, ['-xf', tarFile, '-C', root, '--no-same-owner'], { timeout: TIMEOUT_MS, encoding: 'utf8' });
      if (list.status !== 0 || x.status !== 0) return null;
      const out = new Map<string, Buffer>();
      for (const name of list.stdout.split('\n').filter((l) => l !== '' && !l.endsWith('/'))) {
        out.set(name, fs.readFileSync(path.join(root, name)));
      }
      return out;
    });
  }
}
