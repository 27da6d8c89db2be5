/**
 * The mailbox down: `carbonio prov` / `zmprov` without `-l` ask the node's mailbox over SOAP and fail, with `-l`
 * they read the directory and still answer (and fail only when the directory is down). regen's leader check uses
 * the `-l` form, so plan and start work through a mailbox outage.
 */
import { describe, expect, it } from 'vitest';
import { labSkip, withLab } from './harness.js';
import { labFault, sshExec, type Lab } from './lab.js';
import { checkMesh, labArgs, newSecretFile, regenSync } from './support/regen-cli.js';

const skip = labSkip();

const asZextras = (lab: Lab, node: string, query: string) => sshExec(lab, node, `su - zextras -c '${query}'`);

async function mailboxes(lab: Lab, on: boolean): Promise<void> {
  for (const n of lab.nodes) await labFault(lab.dir, { kind: 'mailbox', node: n.short, on });
}

describe.skipIf(skip !== null)('the mailbox down (current profile: carbonio prov)', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current' });

  it('fails the SOAP form, answers the -l form while the directory is up, and regen plans and runs', async () => {
    const lab = h.lab;
    const [leader] = lab.nodes;
    if (leader === undefined) throw new Error('no node');
    expect(await asZextras(lab, leader.short, 'carbonio prov gas service-discover')).toMatchObject({ code: 0, stdout: `${leader.name}\n` });

    await mailboxes(lab, false);
    for (const n of lab.nodes) {
      for (const query of ['carbonio prov gas service-discover', 'zmprov gas service-discover']) {
        const old = await asZextras(lab, n.short, query);
        expect(old.code, `${n.short}: ${query}`).toBe(2);
        expect(old.stdout).toBe('');
        expect(old.stderr).toMatch(/^ERROR: zclient\.IO_ERROR \(invoke Connect to localhost:7071 .*, server: localhost\) \(cause: /);
      }
      expect(await asZextras(lab, n.short, 'carbonio prov -l gas service-discover')).toMatchObject({ code: 0, stdout: `${leader.name}\n` });
    }

    // -l needs the directory itself.
    await labFault(lab.dir, { kind: 'directory', node: '', on: false });
    const noDirectory = await asZextras(lab, leader.short, 'carbonio prov -l gas service-discover');
    expect(noDirectory.code).toBe(2);
    expect(noDirectory.stderr).toMatch(/^ERROR: ldap\.LDAP_ERROR .*:389: connect: connection refused/);
    await labFault(lab.dir, { kind: 'directory', node: '', on: true });

    const plan = regenSync(['plan', '-i', lab.inventory, ...labArgs(lab)]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`leader: ${leader.name} (${leader.ip})`);

    const { file, secret } = newSecretFile(lab);
    const run = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab)]);
    expect(run.code, run.stderr).toBe(0);
    expect((await checkMesh(lab, lab.leader, secret)).problems).toEqual([]);
  });
});

describe.skipIf(skip !== null)('the mailbox down (legacy profile: zmprov)', { timeout: 240_000 }, () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'legacy' });

  it('fails zmprov without -l, answers zmprov -l, and regen plans', async () => {
    const lab = h.lab;
    const [leader] = lab.nodes;
    if (leader === undefined) throw new Error('no node');
    await mailboxes(lab, false);
    expect((await asZextras(lab, leader.short, 'zmprov gas service-discover')).code).toBe(2);
    expect(await asZextras(lab, leader.short, 'zmprov -l gas service-discover')).toMatchObject({ code: 0, stdout: `${leader.name}\n` });
    const plan = regenSync(['plan', '-i', lab.inventory, ...labArgs(lab)]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`leader: ${leader.name} (${leader.ip})`);
  });
});
