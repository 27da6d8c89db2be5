/**
 * service-discover releases regen knows, and what the procedure needs from each.
 *
 * A node's release is its package's version (`service-discover-server` / `service-discover-agent`): the CLI's own
 * `version` prints a constant at every tag. Read from zextras/service-discover at each tag:
 * - preRun refuses to set up while main.json exists since v0.1.5, so from then on the wipe removes main.json
 *   (and config.json, as seed 000 does); before, seed 002's `rm *.pem` is enough;
 * - `setup-wizard` (terminal dialog, password off argv) exists in every release from v0.1.1.
 */
import type { Profile } from './port.js';

/** Releases the procedure was run against (lab and unit tests); others are refused unless the operator allows them. */
export const TESTED_VERSIONS = ['0.1.4', '0.1.6', '0.1.9', '0.7.2'] as const;

/** "0.7.2-1", "1:0.7.2-1" (Debian), "0.7.2" (rpm %{VERSION}) → "0.7.2"; null when it is not a version. */
export function releaseOf(packageVersion: string | null): string | null {
  if (packageVersion === null) return null;
  const m = /^(?:\d+:)?(\d+\.\d+\.\d+)(?:[-~+].*)?$/.exec(packageVersion.trim());
  return m?.[1] ?? null;
}

function compare(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function isTested(release: string | null): boolean {
  return release !== null && (TESTED_VERSIONS as readonly string[]).includes(release);
}

/** Does setup refuse while main.json exists (so the wipe must remove it)? */
export function hasMainJsonCheck(release: string): boolean {
  return compare(release, '0.1.5') >= 0;
}

/** Has the release `setup-wizard`? */
export function hasSetupWizard(release: string): boolean {
  return compare(release, '0.1.1') >= 0;
}

/**
 * The wipe set, named by the runbook whose wipe it is: 'current' = seed 000's (config.json, main.json, *.pem),
 * 'legacy' = seed 002's (*.pem). The release decides; the admin CLI only where the release is unknown.
 */
export function wipeSetFor(release: string | null, profile: Profile): Profile {
  if (release === null) return profile;
  return hasMainJsonCheck(release) ? 'current' : 'legacy';
}
