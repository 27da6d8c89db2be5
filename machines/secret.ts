/**
 * A secret value (mesh secret, ACL token, gossip key). It refuses to turn into text by accident:
 * String(), template literals, JSON.stringify and util.inspect all give a mask. Only reveal() gives the value,
 * and the places that call it are the places to audit. The machine owns the type; adapters produce and consume it.
 */
import { inspect } from 'node:util';

const MASK = '********';

export class Secret {
  readonly #value: string;
  readonly label: string;

  constructor(value: string, label = 'secret') {
    if (value.length === 0) throw new Error(`empty ${label}`);
    this.#value = value;
    this.label = label;
  }

  reveal(): string {
    return this.#value;
  }

  equals(other: Secret): boolean {
    return this.#value === other.#value;
  }

  toString(): string {
    return MASK;
  }

  toJSON(): string {
    return MASK;
  }

  [inspect.custom](): string {
    return `Secret(${this.label}: ${MASK})`;
  }
}

export { MASK };
