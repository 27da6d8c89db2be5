/**
 * A lab per test file: `const lab = withLab({ nodes: 3, servers: 1 })` inside a describe brings a lab up in a
 * fresh temporary directory before the file's tests and takes it down after, so test files never share a lab.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { labDown, labUp } from './lab.js';
import type { Lab, LabUpOptions } from './lab.js';
import { OWNER_FILE, ensurePackages, labSkipReason, missingCapabilities, staleDist } from './prereq.js';

export { labSkipReason };

/** Reason to skip (printed once), or null. Throws under CI=true when not root. */
export function labSkip(): string | null {
  const reason = labSkipReason();
  if (reason) console.warn(`skipping lab tests: ${reason}`);
  return reason;
}

/** Fails (never skips) when the host cannot run a lab or (for a mesh) the compiled simulation is stale. */
export function assertLabReady(opts: { mesh?: boolean } = {}): void {
  ensurePackages((l) => console.warn(l));
  const missing = missingCapabilities();
  if (missing.length > 0) throw new Error(`the lab cannot run on this host: ${missing.join('; ')}`);
  const stale = opts.mesh === false ? [] : staleDist();
  if (stale.length > 0) {
    throw new Error(`dist/ is older than ${stale.slice(0, 5).join(', ')}${stale.length > 5 ? ', …' : ''}: run \`npm run build\` first`);
  }
}

export interface LabHandle {
  /** The lab (valid inside tests, after beforeAll). */
  readonly lab: Lab;
  readonly dir: string;
  /** The mesh secret of the lab. */
  readonly secret: string;
}

export function withLab(opts: Omit<LabUpOptions, 'dir'>): LabHandle {
  let lab: Lab | null = null;
  let dir = '';
  beforeAll(async () => {
    assertLabReady({ mesh: opts.mesh ?? true });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-lab-'));
    // Lets the global teardown tell a lab whose test process died from one a concurrent run is still using.
    fs.writeFileSync(path.join(dir, OWNER_FILE), `${process.pid}\n`);
    lab = await labUp({ ...opts, dir });
  });
  afterAll(async () => {
    if (dir && process.env.REGEN_LAB_KEEP === '1') {
      console.warn(`REGEN_LAB_KEEP=1: lab left up in ${dir} (npm run lab -- down --dir ${dir})`);
      return;
    }
    if (dir) await labDown(dir);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    get lab(): Lab {
      if (!lab) throw new Error('the lab is not up (beforeAll failed or has not run)');
      return lab;
    },
    get dir(): string {
      return dir;
    },
    get secret(): string {
      if (!lab) throw new Error('the lab is not up');
      return fs.readFileSync(lab.secretFile, 'utf8');
    },
  };
}
