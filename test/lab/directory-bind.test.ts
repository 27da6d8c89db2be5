/**
 * The directory up but refusing the nodes' bind (`zimbra_ldap_userdn` / `zimbra_ldap_password` from localconfig):
 * service-discover's setup binds right after connecting and fails; `zmprov -l` binds with the same two keys, so
 * regen's leader check stops the run before anything on a node is changed. preflight's own directory check is a TCP
 * connection only and does not see it.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { labSkip, withLab } from './harness.js';
import { labFault, sshExec, type Lab } from './lab.js';
import { labArgs, newSecretFile, regenSync } from './support/regen-cli.js';
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

describe.skipIf(skip !== null)('the directory refusing the bind', { timeout: 240_000 }, () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'current' });

  it('fails setup and zmprov -l as the sources say, and stops regen at the leader check with nothing changed', async () => {
    const lab = h.lab;
    const agent = lab.nodes[1];
    if (agent === undefined) throw new Error('no agent');
    await labFault(lab.dir, { kind: 'directory', node: '', on: true, rejectBinds: true });
    const before = await nodeFileSums(lab);

    const prov = await sshExec(lab, agent.short, "su - zextras -c 'carbonio prov -l gas service-discover'");
    expect(prov.code).toBe(2);
    expect(prov.stderr).toMatch(/^ERROR: ldap\.LDAP_ERROR .*Invalid Credentials/);

    await sshExec(lab, agent.short, 'systemctl stop service-discover && mv /etc/zextras/service-discover/main.json /root/main.json.keep');
    const setup = await sshTerminal(lab, agent.short, 'service-discover setup-wizard', [
      ['Specify the binding address for service discovery: ', agent.ip],
      ['Insert the cluster credential password: ', h.secret],
    ]);
    expect(setup.code).toBe(1);
    expect(setup.out).toMatch(/service-discover: error: unable to connect to ldap: LDAP Result Code 49 "Invalid Credentials": \r\n$/);
    await sshExec(lab, agent.short, 'mv /root/main.json.keep /etc/zextras/service-discover/main.json && systemctl start service-discover');

    const { file } = newSecretFile(lab);
    const r = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab)]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/no node could list the mesh servers/);
    expect(r.stderr).toMatch(/Invalid Credentials/);
    expect(await nodeFileSums(lab)).toBe(before);

    await labFault(lab.dir, { kind: 'directory', node: '', on: true });
    const plan = regenSync(['plan', '-i', lab.inventory, ...labArgs(lab)]);
    expect(plan.code, plan.stderr).toBe(0);
  });
});
