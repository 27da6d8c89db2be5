/**
 * Progress events (their types are machines/events.ts): what the runner tells the operator's terminal (plain or
 * live) and `--json` consumers. The JSON Schema in events.schema.json is the published contract; validateEvent() checks an event against it.
 * Times are milliseconds since the epoch, like the store's.
 */
import schema from './events.schema.json' with { type: 'json' };

export type { RunStartedEvent, StepStartedEvent, StepCommandEvent, StepFinishedEvent, RunStateEvent, RunFinishedEvent, WarningEvent, ProgressEvent } from '../../machines/events.js';
import type { ProgressEvent } from '../../machines/events.js';

export const EVENT_TYPES = ['run.started', 'step.started', 'step.command', 'step.finished', 'run.state', 'run.finished', 'warning'] as const;

export { schema as eventsSchema };

// ---- a small validator for the subset of JSON Schema the events schema uses -----------------------------------

type JsonType = 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean' | 'null';

interface SchemaNode {
  $ref?: string;
  type?: JsonType | JsonType[];
  const?: unknown;
  enum?: unknown[];
  properties?: Record<string, SchemaNode>;
  required?: string[];
  additionalProperties?: boolean;
  items?: SchemaNode;
  minimum?: number;
  minLength?: number;
  minItems?: number;
  oneOf?: SchemaNode[];
}

export type ValidationResult = { ok: true; event: ProgressEvent } | { ok: false; errors: string[] };

const ROOT = schema as unknown as SchemaNode & { $defs: Record<string, SchemaNode> };

function resolve(node: SchemaNode): SchemaNode {
  if (node.$ref === undefined) return node;
  const name = node.$ref.replace(/^#\/\$defs\//, '');
  const target = ROOT.$defs[name];
  if (target === undefined) throw new Error(`events schema: unresolved ${node.$ref}`);
  return target;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function check(node0: SchemaNode, value: unknown, path: string, errors: string[]): void {
  const node = resolve(node0);
  if (node.oneOf !== undefined) {
    const branchErrors = node.oneOf.map((b) => {
      const e: string[] = [];
      check(b, value, path, e);
      return e;
    });
    const passing = branchErrors.filter((e) => e.length === 0).length;
    if (passing === 1) return;
    if (passing > 1) {
      errors.push(`${path}: matches more than one event kind`);
      return;
    }
    // Report the errors of the branch the value claims to be (its `type`), not of every branch.
    const claimed = typeof value === 'object' && value !== null ? (value as Record<string, unknown>).type : undefined;
    const idx = node.oneOf.findIndex((b) => resolve(b).properties?.type?.const === claimed);
    if (idx >= 0) errors.push(...(branchErrors[idx] ?? []));
    else {
      const kinds = node.oneOf.map((b) => String(resolve(b).properties?.type?.const));
      errors.push(`${path}.type: must be one of ${kinds.join(', ')}, got ${JSON.stringify(claimed)}`);
    }
    return;
  }
  if (node.const !== undefined && value !== node.const) {
    errors.push(`${path}: must be ${JSON.stringify(node.const)}, got ${JSON.stringify(value)}`);
    return;
  }
  if (node.enum !== undefined && !node.enum.includes(value)) {
    errors.push(`${path}: must be one of ${node.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(value)}`);
    return;
  }
  if (node.type !== undefined) {
    const t = typeOf(value);
    const allowed = Array.isArray(node.type) ? node.type : [node.type];
    if (!allowed.some((a) => a === t || (a === 'number' && t === 'integer'))) {
      errors.push(`${path}: must be ${allowed.join(' or ')}, got ${t}`);
      return;
    }
  }
  if (typeof value === 'number' && node.minimum !== undefined && value < node.minimum) {
    errors.push(`${path}: must be at least ${node.minimum}, got ${value}`);
  }
  if (typeof value === 'string' && node.minLength !== undefined && value.length < node.minLength) {
    errors.push(`${path}: must not be empty`);
  }
  if (Array.isArray(value)) {
    if (node.minItems !== undefined && value.length < node.minItems) errors.push(`${path}: must have at least ${node.minItems} item(s)`);
    if (node.items !== undefined) value.forEach((v, i) => check(node.items as SchemaNode, v, `${path}[${i}]`, errors));
  }
  if (typeOf(value) === 'object') {
    const obj = value as Record<string, unknown>;
    for (const r of node.required ?? []) if (!(r in obj)) errors.push(`${path}.${r}: is required`);
    for (const [k, v] of Object.entries(obj)) {
      const p = node.properties?.[k];
      if (p !== undefined) check(p, v, `${path}.${k}`, errors);
      else if (node.additionalProperties === false) errors.push(`${path}.${k}: is not allowed`);
    }
  }
}

/** Check a value (e.g. a parsed NDJSON line) against events.schema.json. */
export function validateEvent(value: unknown): ValidationResult {
  const errors: string[] = [];
  check(ROOT, value, '$', errors);
  return errors.length === 0 ? { ok: true, event: value as ProgressEvent } : { ok: false, errors };
}
