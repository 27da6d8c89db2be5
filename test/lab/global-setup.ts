/**
 * vitest global setup for the lab tests: install what the lab needs, check the host can run it, build dist/ when
 * stale (the nodes run compiled code). Not root → lab tests skip (each file says why); CI=true and not root, or a
 * missing capability → the run fails here, before any test.
 */
import { build, ensurePackages, isRoot, labSkipReason, missingCapabilities, staleDist } from './prereq.js';

export default function setup(): void {
  const skip = labSkipReason();
  if (skip) {
    console.warn(`lab: ${skip}; lab tests will be skipped`);
    return;
  }
  if (!isRoot()) return;
  ensurePackages((l) => console.warn(`lab: ${l}`));
  const missing = missingCapabilities();
  if (missing.length > 0) throw new Error(`lab: this host cannot run the lab: ${missing.join('; ')}`);
  const stale = staleDist();
  if (stale.length > 0) {
    console.warn(`lab: dist/ is stale (${stale.length} sources newer); building`);
    build();
  }
}
