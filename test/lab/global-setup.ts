/**
 * vitest global setup for the lab tests: install what the lab needs, check the host can run it, build dist/ when
 * stale (the nodes run compiled code), create the lab's system users. Not root → lab tests skip (each file says why); CI=true and not root, or a
 * missing capability → the run fails here, before any test. The teardown downs any test lab a killed test worker
 * left behind.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { labDown } from './lab.js';
import { OWNER_FILE, build, ensureLabUsers, ensurePackages, isRoot, labSkipReason, missingCapabilities, staleDist } from './prereq.js';

function ownerAlive(dir: string): boolean {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, OWNER_FILE), 'utf8').trim());
    if (!(pid > 0)) return false;
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Labs made by withLab (mkdtemp under the temp dir with this prefix) that are still claimed and whose test process
 * is gone. A lab whose owner still runs belongs to another vitest run on the same host: never touch it.
 */
function testLabsLeftBehind(): string[] {
  const claims = '/run/regen-lab/subnets';
  if (!fs.existsSync(claims)) return [];
  const prefix = path.join(os.tmpdir(), 'regen-lab-');
  return fs
    .readdirSync(claims)
    .map((c) => {
      try {
        return fs.readFileSync(path.join(claims, c), 'utf8');
      } catch {
        return '';
      }
    })
    .filter((dir) => dir.startsWith(prefix) && !ownerAlive(dir));
}

export default function setup(): (() => Promise<void>) | undefined {
  const skip = labSkipReason();
  if (skip) {
    console.warn(`lab: ${skip}; lab tests will be skipped`);
    return undefined;
  }
  if (!isRoot()) return undefined;
  ensurePackages((l) => console.warn(`lab: ${l}`));
  ensureLabUsers();
  const missing = missingCapabilities();
  if (missing.length > 0) throw new Error(`lab: this host cannot run the lab: ${missing.join('; ')}`);
  const stale = staleDist();
  if (stale.length > 0) {
    console.warn(`lab: dist/ is stale (${stale.length} sources newer); building`);
    build();
  }
  return async () => {
    if (process.env.REGEN_LAB_KEEP === '1') return;
    for (const dir of testLabsLeftBehind()) {
      console.warn(`lab: taking down ${dir}, left up by a test that did not finish`);
      await labDown(dir).catch((e: unknown) => console.warn(`lab: down ${dir}: ${String(e)}`));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}
