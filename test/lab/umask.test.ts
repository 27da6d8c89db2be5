/**
 * `lab up` run under `umask 077` still gives a working lab: every file another user must read (zextras'
 * /opt/zextras/.profile, localconfig.xml, node.json, /etc/hosts) gets an explicit mode, and regen recovers it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { labSkip } from './harness.js';
import { labDown, loadLab, repoRoot, shq, sshExec } from './lab.js';
import { checkMesh, labArgs, newSecretFile, regenSync } from './support/regen-cli.js';

const skip = labSkip();

describe.skipIf(skip !== null)('a lab brought up under umask 077', { timeout: 180_000 }, () => {
  it('lets zextras read its profile and the directory, and regen recovers it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regen-lab-umask-'));
    try {
      const cli = path.join(repoRoot(), 'dist', 'test', 'lab', 'cli.js');
      const up = spawnSync('sh', ['-c', `umask 077; exec ${shq(process.execPath)} ${shq(cli)} up --nodes 2 --servers 1 --dir ${shq(dir)}`], { encoding: 'utf8', timeout: 120_000 });
      expect(up.status, up.stderr).toBe(0);
      const lab = loadLab(dir);
      const modes = await sshExec(lab, 'mail1', "stat -c '%a %n' /opt/zextras/.profile /opt/zextras/conf/localconfig.xml /etc/regen-lab/node.json /etc/hosts");
      expect(modes.stdout).toBe('644 /opt/zextras/.profile\n640 /opt/zextras/conf/localconfig.xml\n644 /etc/regen-lab/node.json\n644 /etc/hosts\n');
      const prov = await sshExec(lab, 'mail1', "su - zextras -c 'carbonio prov gas service-discover'");
      expect(prov).toMatchObject({ code: 0, stdout: 'mail1.lab.example\n' });
      const { file, secret } = newSecretFile(lab);
      const r = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab)]);
      expect(r.code, r.stderr).toBe(0);
      expect((await checkMesh(lab, lab.leader, secret)).problems).toEqual([]);
    } finally {
      await labDown(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
