/**
 * Text from a node (hostnames, `hostname -i` words, what commands run as the zextras user print) reaches the
 * operator's terminal through the plan, the progress views, errors, `regen status` and `regen log`. A control
 * character in it could move the cursor, rewrite what is shown or write the clipboard (OSC 52): every C0 and C1
 * control except the newline is shown escaped instead, at render time, before regen adds its own colours.
 */

/** C0 (except \n), DEL and C1. */
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g;

const NAMED: Record<string, string> = { '\t': '\\t', '\r': '\\r', '\u001b': '\\e' };

/** The text with every control character but the newline written as a visible escape (`\e`, `\r`, `\x07`, `\x9b`). */
export function sanitize(text: string): string {
  return text.replace(CONTROLS, (c) => NAMED[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** sanitize() applied to every string inside a value (events, views, contexts) before a renderer formats it. */
export function sanitizeDeep<T>(value: T): T {
  if (typeof value === 'string') return sanitize(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => sanitizeDeep(v)) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = sanitizeDeep(v);
    return out as T;
  }
  return value;
}

/**
 * JSON output: JSON.stringify escapes C0 but leaves DEL and C1 raw, and a terminal that shows the JSON would act on
 * them. Escaped as \u00XX the JSON means the same.
 */
export function jsonSafe(json: string): string {
  return json.replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
