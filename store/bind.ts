/**
 * What every table family shares: the connection, the clock, and the binder that passes free text through the
 * redactor before it reaches SQLite.
 */
import type Database from 'better-sqlite3';

export type Params = Record<string, string | number | null>;

/** Names, ids, states and lookup keys: stored as they are (free text around them is redacted). */
const STRUCTURAL = new Set([
  'id', 'runId', 'cluster', 'node', 'name', 'nodes', 'sshHost', 'host', 'leader', 'fqdn', 'address', 'bindAddress',
  'leaderAddress', 'configuredBindAddress', 'kind', 'role', 'profile', 'step', 'state', 'status', 'outcome', 'event',
  'fromState', 'toState', 'machineVersion', 'path', 'dir', 'sha256', 'mode', 'owner', 'group', 'inventoryJson',
  'optionsJson', 'failedAt', 'type', 'value', 'sshUser', 'identityFile', 'directoryServer',
]);

/**
 * Free text goes through the redactor; names, ids and lookup keys do not (a short secret must not mask a node
 * name that resume then connects to, nor a run id a lookup must find). JSON is redacted value by value before
 * encoding, so escaping cannot hide a secret and the result stays valid JSON.
 */
export class Binder {
  redact: (text: string) => string = (t) => t;

  bind(params: Record<string, string | number | boolean | null | undefined>): Params {
    const out: Params = {};
    for (const [k, v] of Object.entries(params)) {
      if (typeof v === 'string') out[k] = k === 'snapshot' ? this.#redactJsonText(v) : STRUCTURAL.has(k) ? v : this.redact(v);
      else out[k] = typeof v === 'boolean' ? (v ? 1 : 0) : (v ?? null);
    }
    return out;
  }

  json(value: unknown): string | null {
    const text = JSON.stringify(value, (key, v: unknown) => (typeof v === 'string' && !STRUCTURAL.has(key) ? this.redact(v) : v)) as string | undefined;
    return text === undefined ? null : text;
  }

  /** A JSON text (a snapshot) redacted field by field; text that is not JSON is redacted whole. */
  #redactJsonText(text: string): string {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return this.redact(text);
    }
    return this.json(value) ?? text;
  }
}

/** One open database as the table families see it. */
export interface Tables {
  readonly db: Database.Database;
  readonly path: string;
  readonly now: () => number;
  readonly b: Binder;
}

/** A prepared statement taking named parameters. */
export function prepare<R>(db: Database.Database, sql: string): Database.Statement<[Params], R> {
  return db.prepare<[Params], R>(sql);
}
