/**
 * The catalog comparison in `regen status`: the services registered before the wipe and missing afterwards, and
 * the health checks that passed before and do not pass afterwards.
 */
import type { CatalogStatus } from '../../machines/catalog-census.js';
import type { palette } from './format.js';

export function renderCatalog(cat: CatalogStatus | undefined, c: ReturnType<typeof palette>): string[] {
  if (cat === undefined || (cat.before === null && cat.after === null)) return [];
  const out = ['', c.bold('Catalog:')];
  const b = cat.before;
  if (b === null) out.push('  before the wipe: not read yet');
  else if (!b.recorded) out.push(`  before the wipe: ${c.yellow('not recorded')} (${b.reason ?? 'unknown'})`);
  else out.push(`  before the wipe: ${b.services} service(s), ${b.passing} passing check(s)`);
  const a = cat.after;
  if (a === null) {
    out.push('  after the run: not compared yet');
    return out;
  }
  if (!a.compared) {
    out.push(`  after the run: ${c.yellow('not compared')} (${a.reason ?? 'unknown'})`);
    return out;
  }
  if (a.missingServices.length === 0 && a.failingChecks.length === 0) out.push(`  after the run: ${c.green('every service still registered, every check that passed still passes')}`);
  if (a.missingServices.length > 0) out.push(`  ${c.red('missing services')}: ${a.missingServices.join(', ')}`);
  for (const f of a.failingChecks) out.push(`  ${c.red('check failing')}: ${f.check} (passing before, ${f.status} now)`);
  return out;
}
