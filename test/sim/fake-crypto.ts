/**
 * Stand-in for gpg in the fake cluster: an armored blob whose members open only with the password it was made
 * with. Not encryption (the fake never leaves memory), but it keeps the one property the procedure depends on:
 * a wrong password fails, and every pack yields different bytes (gpg salts each message).
 */
import { createHash } from 'node:crypto';
import type { CredentialsCrypto } from './model.js';

const BEGIN = '-----BEGIN PGP MESSAGE-----';
const END = '-----END PGP MESSAGE-----';

function check(salt: string, password: string): string {
  return createHash('sha256').update(`${salt}\0${password}`).digest('hex');
}

export class FakeCrypto implements CredentialsCrypto {
  readonly #random: (n: number) => Buffer;

  constructor(random: (n: number) => Buffer) {
    this.#random = random;
  }

  pack(members: ReadonlyArray<{ name: string; data: Buffer }>, password: string): Buffer {
    const salt = this.#random(16).toString('hex');
    const body = JSON.stringify({
      salt,
      check: check(salt, password),
      members: members.map((m) => ({ name: m.name, data: m.data.toString('base64') })),
    });
    const lines = Buffer.from(body).toString('base64').match(/.{1,64}/g) ?? [];
    return Buffer.from(`${BEGIN}\n\n${lines.join('\n')}\n${END}\n`);
  }

  unpack(blob: Buffer, password: string): Map<string, Buffer> | null {
    const text = blob.toString('utf8');
    const start = text.indexOf(BEGIN);
    const end = text.indexOf(END);
    if (start < 0 || end < 0) return null;
    try {
      const raw = Buffer.from(text.slice(start + BEGIN.length, end).replace(/\s+/g, ''), 'base64').toString('utf8');
      const body = JSON.parse(raw) as { salt: string; check: string; members: Array<{ name: string; data: string }> };
      if (check(body.salt, password) !== body.check) return null;
      return new Map(body.members.map((m) => [m.name, Buffer.from(m.data, 'base64')]));
    } catch {
      return null;
    }
  }
}
