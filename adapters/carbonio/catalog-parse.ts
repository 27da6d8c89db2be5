/**
 * The output of commands.readCatalog: `services=` GET /v1/catalog/services (an object, service name → tags) and
 * `checks=` GET /v1/health/state/any (an array of checks with Node, CheckID, Status), each a JSON document.
 */
import { NeedsOperatorError } from '../../machines/errors.js';
import type { CatalogView } from '../../machines/port.js';

function bad(what: string, node: string | undefined): NeedsOperatorError {
  return new NeedsOperatorError(`unexpected output of ${what}${node === undefined ? '' : ` on ${node}`}`, {
    ...(node === undefined ? {} : { node }),
    hint: 'check the agent answers on 127.0.0.1:8500 (curl -s http://127.0.0.1:8500/v1/catalog/services)',
  });
}

function jsonLine(output: string, key: string): unknown {
  const line = output.split('\n').find((l) => l.startsWith(`${key}=`));
  if (line === undefined) return undefined;
  try {
    return JSON.parse(line.slice(key.length + 1)) as unknown;
  } catch {
    return undefined;
  }
}

export function parseCatalog(output: string, node?: string): CatalogView {
  const services = jsonLine(output, 'services');
  const checks = jsonLine(output, 'checks');
  if (typeof services !== 'object' || services === null || Array.isArray(services)) throw bad('GET /v1/catalog/services', node);
  if (!Array.isArray(checks)) throw bad('GET /v1/health/state/any', node);
  return {
    services: Object.keys(services).sort(),
    checks: checks.map((c: unknown) => {
      const o = (typeof c === 'object' && c !== null ? c : {}) as Record<string, unknown>;
      if (typeof o['Node'] !== 'string' || typeof o['CheckID'] !== 'string' || typeof o['Status'] !== 'string') throw bad('GET /v1/health/state/any (a check)', node);
      return { node: o['Node'], checkId: o['CheckID'], status: o['Status'] };
    }),
  };
}
