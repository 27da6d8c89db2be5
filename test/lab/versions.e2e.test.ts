/**
 * regen end to end on three service-discover releases with their admin CLI, each checked independently of regen over
 * SSH: the plan names every node's release and setup path, the release decides the wipe, and an untested release
 * is refused before anything changes.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { labSkip, withLab } from './harness.js';
import { sshExec, type Lab } from './lab.js';
import { checkMesh, labArgs, newSecretFile, regenSync } from './support/regen-cli.js';

const skip = labSkip();

function startArgs(lab: Lab, secretFile: string, extra: string[] = []): string[] {
  return ['start', '-i', lab.inventory, '--password-file', secretFile, '--yes', ...extra, ...labArgs(lab)];
}

/** sha256 of every file setup and the wipe touch, per node (read over ssh). */
async function fileSums(lab: Lab): Promise<string> {
  const out: string[] = [];
  for (const n of lab.nodes) {
    const r = await sshExec(lab, n.short, 'sha256sum /etc/zextras/service-discover/* /var/lib/service-discover/*.pem 2>/dev/null; ls -l --time-style=+ /var/backups 2>/dev/null');
    out.push(`${n.short}\n${r.stdout}`);
  }
  return createHash('sha256').update(out.join('\n')).digest('hex');
}

describe.skipIf(skip !== null)('regen on each modelled release', { timeout: 240_000 }, () => {
  for (const v of [
    { sdVersion: '0.1.6', profile: 'legacy' as const, cli: 'zmprov' },
    { sdVersion: '0.1.9', profile: 'legacy' as const, cli: 'zmprov' },
    { sdVersion: '0.7.2', profile: 'current' as const, cli: 'carbonio' },
  ]) {
    describe(`service-discover ${v.sdVersion} with ${v.cli}`, () => {
      const h = withLab({ nodes: 3, servers: 1, profile: v.profile, sdVersion: v.sdVersion, losePassword: true });
      it('plans each node with its release and the wizard, wipes main.json (the release has the check), recovers', async () => {
        const lab = h.lab;
        const plan = regenSync(['plan', '--verbose', '-i', lab.inventory, ...labArgs(lab)]);
        expect(plan.code, plan.stderr).toBe(0);
        for (const n of lab.nodes) expect(plan.stdout).toMatch(new RegExp(`${n.name.replaceAll('.', '\\.')} .*profile ${v.profile}  service-discover ${v.sdVersion.replaceAll('.', '\\.')} \\(setup-wizard\\)`));
        expect(plan.stdout).toMatch(/leader\.wipe +rm -f \/etc\/zextras\/service-discover\/config\.json \/etc\/zextras\/service-discover\/main\.json/);

        const { file, secret } = newSecretFile(lab);
        const r = regenSync(startArgs(lab, file));
        expect(r.code, r.stderr).toBe(0);
        const check = await checkMesh(lab, lab.leader, secret);
        expect(check.problems).toEqual([]);
        expect(check.members).toHaveLength(3);
      });
    });
  }

  describe('an untested release', () => {
    const h = withLab({ nodes: 2, servers: 1, profile: 'current', sdVersion: '0.7.2' });
    it('is refused before anything changes, and planned with --allow-untested-version', async () => {
      const lab = h.lab;
      const before = await fileSums(lab);
      const { file } = newSecretFile(lab);
      // The package manager reports a release outside the table.
      const wrapper = `printf '#!/bin/sh\\necho 0.8.0-1\\n' > /usr/local/sbin/dpkg-query && chmod 755 /usr/local/sbin/dpkg-query`;
      for (const n of lab.nodes) expect((await sshExec(lab, n.short, wrapper)).code).toBe(0);
      const refused = regenSync(startArgs(lab, file));
      expect(refused.code).toBe(3);
      expect(refused.stderr).toMatch(/service-discover 0\.8\.0-1 is not a release regen was tested against .*--allow-untested-version/);
      expect(await fileSums(lab)).toBe(before);
      const allowed = regenSync(['plan', '-i', lab.inventory, '--allow-untested-version', ...labArgs(lab)]);
      expect(allowed.code, allowed.stderr).toBe(0);
      expect(allowed.stdout).toMatch(/not a tested release; planned because --allow-untested-version was given/);
    });
  });
});
