/**
 * The directory is part of setup: with it down, service-discover's setup fails at its first LDAP connection, and
 * regen stops in preflight (exit 3) before the confirmation, with every node's files unchanged.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { labSkip, withLab } from './harness.js';
import { labFault, sshExec, type Lab } from './lab.js';
import { checkMesh, labArgs, newSecretFile, regenSync } from './support/regen-cli.js';
import { sshTerminal } from './support/terminal.js';

const skip = labSkip();

async function nodeFileSums(lab: Lab): Promise<string> {
  const out: string[] = [];
  for (const n of lab.nodes) {
    const r = await sshExec(lab, n.short, 'sha256sum /etc/zextras/service-discover/* /var/lib/service-discover/*.pem /var/lib/service-discover/data/acl-bootstrap-reset 2>/dev/null; ls /var/backups; systemctl is-active service-discover');
    out.push(`${n.short}\n${r.stdout}`);
  }
  return createHash('sha256').update(out.join('\n')).digest('hex');
}

describe.skipIf(skip !== null)('the directory down', { timeout: 180_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current', losePassword: true });

  it('fails setup as service-discover does, stops regen in preflight with exit 3 and nothing changed; up again, regen recovers', async () => {
    const lab = h.lab;
    const agent = lab.nodes[2];
    if (agent === undefined) throw new Error('no agent');
    await labFault(lab.dir, { kind: 'directory', node: '', on: false });
    const before = await nodeFileSums(lab);

    const { file, secret } = newSecretFile(lab);
    // Preflight comes before the confirmation (given here by --yes): nothing on any node is touched.
    const r = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab)]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/mail1\.lab\.example: the directory ldap:\/\/\S+:389 \(ldap_master_url\) does not answer from this node/);
    expect(r.stderr).toMatch(/nothing was changed/);
    expect(await nodeFileSums(lab)).toBe(before);

    // What regen spared the nodes: setup itself fails at the directory, after the dialog, before writing anything.
    await sshExec(lab, agent.short, 'systemctl stop service-discover && mv /etc/zextras/service-discover/main.json /root/main.json.keep');
    const setup = await sshTerminal(lab, agent.short, 'service-discover setup-wizard', [
      ['Specify the binding address for service discovery: ', agent.ip],
      ['Insert the cluster credential password: ', h.secret],
    ]);
    expect(setup.code).toBe(1);
    expect(setup.out).toMatch(/service-discover: error: unable to connect to ldap: failed to connect to ldap: LDAP Result Code 200 "Network Error": dial tcp \S+:389: connect: connection refused\r\n$/);
    await sshExec(lab, agent.short, 'mv /root/main.json.keep /etc/zextras/service-discover/main.json && systemctl start service-discover');

    await labFault(lab.dir, { kind: 'directory', node: '', on: true });
    const ok = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab)]);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await checkMesh(lab, lab.leader, secret)).problems).toEqual([]);
  });
});
