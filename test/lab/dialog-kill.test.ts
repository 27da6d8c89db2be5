/**
 * regen killed while a node's setup-wizard waits inside its dialog: the terminal hangs up, the wizard ends without
 * writing anything, and resume probes the step and finishes it.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { labSkip, withLab } from './harness.js';
import { labFault, nodeExec, sshExec } from './lab.js';
import { REGEN, checkMesh, labArgs, newSecretFile, regenSync } from './support/regen-cli.js';

const skip = labSkip();

describe.skipIf(skip !== null)('regen killed inside a setup dialog', { timeout: 180_000 }, () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'current', losePassword: true });

  it('leaves the node untouched by setup, and resume completes', async () => {
    const lab = h.lab;
    const agent = lab.nodes[1];
    if (agent === undefined) throw new Error('no agent');
    await labFault(lab.dir, { kind: 'latency', node: agent.name, key: 'service-discover setup-wizard password', ms: 4000 });
    const { file, secret } = newSecretFile(lab);
    const args = ['start', '-i', lab.inventory, '--password-file', file, '--yes', '--json', ...labArgs(lab)];
    let inDialog = '';
    const killed = await new Promise<boolean>((resolve) => {
      const child = spawn(process.execPath, [REGEN, ...args], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'ignore'] });
      let pending = '';
      let armed = false;
      const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.stdout.on('data', (d: Buffer) => {
        pending += d.toString();
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const l of lines) {
          if (armed || !l.includes('"step.started"') || !l.includes('"follower.setup"')) continue;
          armed = true;
          setTimeout(() => {
            void nodeExec(lab, agent.name, ['ps', '-eo', 'args']).then((ps) => {
              inDialog = ps.stdout;
              child.kill('SIGKILL');
            });
          }, 1500);
        }
      });
      child.on('close', (_code, signal) => {
        clearTimeout(guard);
        resolve(signal === 'SIGKILL');
      });
    });
    expect(killed).toBe(true);
    // The kill found the wizard waiting between the address and the password.
    expect(inDialog).toMatch(/service-discover(\.js)? setup-wizard/);
    // The hang-up ended it without writing anything.
    for (let i = 0; i < 50; i++) {
      const ps = await nodeExec(lab, agent.name, ['ps', '-eo', 'args']);
      if (!/setup-wizard/.test(ps.stdout)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = await sshExec(lab, agent.short, 'ps -eo args | grep -c "[s]etup-wizard"; ls /etc/zextras/service-discover/');
    expect(after.stdout).toBe('0\ncluster-credentials.tar.gpg\n');

    await labFault(lab.dir, { kind: 'latency', node: agent.name, key: 'service-discover setup-wizard password', ms: 0 });
    expect(regenSync(['unlock', '--cluster', lab.cluster, ...labArgs(lab).slice(4)]).code).toBe(0);
    const resumed = regenSync(['resume', ...labArgs(lab)]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect((await checkMesh(lab, lab.leader, secret)).problems).toEqual([]);
  });
});
