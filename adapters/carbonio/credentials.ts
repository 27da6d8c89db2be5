/**
 * The port's methods on the mesh secret and cluster-credentials.tar.gpg: read the password file, test the secret
 * against the credentials, read and write the credentials (checked by sha256 on both ends).
 */
import { createHash } from 'node:crypto';
import { CommandFailedError, NeedsOperatorError } from '../../machines/errors.js';
import type { NodePort } from '../../machines/port.js';
import { Secret } from '../secrets/secret.js';
import * as cmd from './commands.js';
import { parseCredentialsSha256, parseReadCredentials, tail } from './parse.js';
import { build, failed, secretLine, type PortKit } from './port-kit.js';

type CredentialsMethods = Pick<NodePort, 'readMeshSecret' | 'secretOpensCredentials' | 'readCredentials' | 'writeCredentials' | 'credentialsSha256'>;

export function sha256Hex(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function credentialsMethods({ run, log }: PortKit): CredentialsMethods {
  return {
    async readMeshSecret(node: string): Promise<Secret | null> {
      const res = await run(node, 'read password file', cmd.readMeshSecret(), { secretOutput: true });
      // The output is the secret: no message below may quote it.
      if (res.code !== 0) throw new CommandFailedError(node, `reading the password file failed on ${node} (exit ${res.code})`, res.code);
      const nl = res.stdout.indexOf('\n');
      const marker = nl < 0 ? res.stdout : res.stdout.slice(0, nl);
      if (marker === 'regen:absent') return null;
      if (marker !== 'regen:present') throw new NeedsOperatorError(`reading the password file on ${node}: unexpected output (withheld)`, { node });
      const value = res.stdout.slice(nl + 1).replace(/\n$/, '');
      if (value === '') throw new CommandFailedError(node, `the password file on ${node} is empty`, res.code);
      return new Secret(value, 'mesh secret');
    },

    async secretOpensCredentials(node: string, secret: Secret): Promise<boolean> {
      const res = await run(node, 'gpg --decrypt credentials', cmd.secretOpensCredentials(), { stdin: secretLine(secret) });
      if (res.code !== 0) throw failed(node, 'gpg --decrypt', res, undefined, secret);
      const marker = res.stdout.trim();
      if (marker === 'regen:opens') return true;
      if (marker === 'regen:no-credentials') {
        log(`${node}: no credentials file, so the secret opens nothing`);
        return false;
      }
      if (marker === 'regen:does-not-open') {
        if (/bad session key|bad passphrase/i.test(res.stderr)) return false;
        throw new CommandFailedError(node, `gpg could not decrypt the credentials on ${node} for another reason than the secret: ${tail(res.stderr)}`, res.code);
      }
      throw new NeedsOperatorError(`gpg --decrypt on ${node}: unexpected output: ${tail(res.stdout)}`, { node });
    },

    async readCredentials(node: string): Promise<{ bytes: Buffer; sha256: string } | null> {
      const res = await run(node, 'read credentials', cmd.readCredentials(), { secretOutput: 'digest' });
      // Its stdout is ciphertext a guesser could use: only stderr goes into the message.
      if (res.code !== 0) throw failed(node, 'reading cluster-credentials.tar.gpg', { ...res, stdout: '' });
      const read = parseReadCredentials(res.stdout, node);
      if (read === null) return null;
      const bytes = Buffer.from(read.base64, 'base64');
      const sha256 = sha256Hex(bytes);
      if (sha256 !== read.sha256) {
        throw new CommandFailedError(node, `cluster-credentials.tar.gpg read from ${node} does not match the node's sha256 (changed while read, or damaged in transit)`, res.code, 'retry the step');
      }
      return { bytes, sha256 };
    },

    async writeCredentials(node: string, bytes: Buffer, sha256: string): Promise<void> {
      if (sha256Hex(bytes) !== sha256) {
        throw new CommandFailedError(node, `the credentials to write to ${node} do not match their sha256 ${sha256}`, null, 'read them from the leader again');
      }
      const command = build(() => cmd.writeCredentials(sha256));
      const res = await run(node, 'write credentials', command, { stdin: bytes });
      if (res.code === 5) {
        throw new CommandFailedError(node, `the credentials written on ${node} arrived with another sha256; the old file is untouched`, res.code, 'retry the step');
      }
      if (res.code !== 0) throw failed(node, 'writing cluster-credentials.tar.gpg', res);
      if (!res.stdout.includes('regen:written')) throw new NeedsOperatorError(`writing credentials on ${node}: unexpected output: ${tail(res.stdout)}`, { node });
    },

    async credentialsSha256(node: string): Promise<string | null> {
      const res = await run(node, 'sha256 credentials', cmd.credentialsSha256());
      if (res.code !== 0) throw failed(node, 'sha256sum cluster-credentials.tar.gpg', res);
      return parseCredentialsSha256(res.stdout, node);
    },
  };
}
