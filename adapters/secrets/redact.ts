/**
 * The one redactor: every text regen stores or prints passes through it. It masks the secrets it was told about
 * (in the forms they are likely to appear: raw, JSON-escaped, URL-encoded, base64) and, as a second line of
 * defence, values that look like secrets because of what precedes them (a SecretID, a --password argument,
 * a gossip key).
 */
import { MASK, Secret } from './secret.js';

const UUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';
const B64 = '[A-Za-z0-9+/]{16,}={0,2}';
/**
 * A value after `=` or a space: quoted (also with JSON-escaped quotes), or up to whitespace, a quote or a
 * backslash, so masking inside a JSON line keeps it valid JSON.
 */
const ARG = `(?:'[^']*'|"[^"\\\\]*"|\\\\"[^"\\\\]*\\\\"|[^\\s"'\\\\]+)`;

interface Rule {
  re: RegExp;
  /** Group 1 is kept (the key), the rest of the match is masked. */
}

const RULES: Rule[] = [
  // Consul tokens: `"SecretID": "uuid"`, `SecretID:   uuid` (consul acl token read), escaped JSON inside JSON.
  { re: new RegExp(`(SecretID\\\\?["']?\\s*[:=]\\s*\\\\?["']?)${UUID}`, 'gi') },
  { re: new RegExp(`((?:CONSUL_HTTP_TOKEN|X-Consul-Token|[-]{1,2}token)\\s*[:=]\\s*["']?)${UUID}`, 'gi') },
  // --password=S and --password S (how Carbonio's Ansible passes it).
  { re: new RegExp(`(--password(?:=|\\s+))${ARG}`, 'g') },
  // Gossip keys: `"encrypt": "b64"`, `-encrypt=b64`, `gossip-key: b64`, `gossip_key=b64`, `Gossip key: b64`.
  { re: new RegExp(`((?:gossip[-_ ]key|encrypt)\\\\?["']?\\s*[:=]\\s*\\\\?["']?)${B64}`, 'gi') },
  // `token=VALUE` (URLs, env assignments, CLI flags), whatever the value looks like.
  { re: new RegExp(`((?:^|[^A-Za-z0-9_])token=)${ARG}`, 'gi') },
];

/** Shortest form worth masking: a shorter fragment would mask ordinary text everywhere. */
const MIN_FORM = 4;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The base64 text that is always present when `bytes` sit at any offset inside a larger base64-encoded blob: for
 * each of the three alignments, the characters that depend only on the secret's bits.
 */
function base64Forms(bytes: Buffer): string[] {
  const forms = [bytes.toString('base64'), bytes.toString('base64url')];
  for (let k = 0; k < 3; k++) {
    const enc = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64');
    const first = Math.ceil((k * 4) / 3);
    const last = Math.floor(((k + bytes.length) * 8) / 6); // exclusive: the last char may mix in following bytes
    const core = enc.slice(first, last);
    forms.push(core, core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return forms;
}

/** Go's JSON escaping: <, > and & as \u003c…, and (some encoders) every non-ASCII character as \uXXXX. */
function goJsonForms(value: string): string[] {
  const plain = JSON.stringify(value).slice(1, -1);
  const html = plain.replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
  const ascii = html.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return [plain, html, ascii];
}

/** URL encodings: upper and lower case hex, with the quote and the other characters encodeURIComponent keeps. */
function urlForms(value: string): string[] {
  const upper = encodeURIComponent(value);
  const strict = upper.replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const out = [upper, strict, upper.replace(/%20/g, '+'), strict.replace(/%20/g, '+')];
  return [...out, ...out.map((f) => f.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()))];
}

/** The forms a secret takes in text: JSON (Go's too), a shell single-quoted word, URL encodings, hex. */
function encodedForms(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  return [
    ...goJsonForms(value),
    value.replace(/'/g, `'\\''`),
    ...urlForms(value),
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
  ];
}

export class Redactor {
  readonly #values = new Map<string, string>();
  #pattern: RegExp | null = null;

  /** Mask this secret (and its encoded forms) from now on. Empty values are ignored. */
  add(secret: Secret | string, label?: string): void {
    const value = secret instanceof Secret ? secret.reveal() : secret;
    if (value.length === 0) return;
    const name = label ?? (secret instanceof Secret ? secret.label : 'secret');
    const forms = new Set<string>([value]);
    for (const f of encodedForms(value)) forms.add(f);
    for (const f of base64Forms(Buffer.from(value, 'utf8'))) forms.add(f);
    let added = false;
    for (const f of forms) {
      // The raw value is always masked, however short; derived fragments only when long enough to be specific.
      if (f !== value && f.length < MIN_FORM) continue;
      if (f.length === 0 || this.#values.has(f)) continue;
      this.#values.set(f, name);
      added = true;
    }
    if (added) this.#pattern = null;
  }

  /** How many distinct secrets (by label) are known; for diagnostics, never the values. */
  get size(): number {
    return new Set(this.#values.values()).size;
  }

  redact(text: string): string {
    if (text.length === 0) return text;
    let out = text;
    if (this.#values.size > 0) {
      if (this.#pattern === null) {
        // Longest first, so a secret that contains another is masked whole.
        const alternatives = [...this.#values.keys()].sort((a, b) => b.length - a.length).map(escapeRe);
        this.#pattern = new RegExp(alternatives.join('|'), 'g');
      }
      out = out.replace(this.#pattern, MASK);
    }
    for (const rule of RULES) {
      out = out.replace(rule.re, (_m, key: string) => `${key}${MASK}`);
    }
    return out;
  }

  /** A function form, for APIs that take `(text) => text` (the store's setRedactor). */
  get fn(): (text: string) => string {
    return (text) => this.redact(text);
  }
}

/** The process-wide instance the CLI shares with the store, the audit and the output. */
export const redactor = new Redactor();
