/**
 * The model of zmprov / `carbonio prov` (test/sim/prov.ts): without `-l` a query goes through the node's mailbox
 * (SOAP), with `-l` straight to the directory; what each needs, and how each fails (test/sim/FIDELITY.md).
 */
import { describe, expect, test } from 'vitest';
import { DEFAULT_PROV_LOCALCONFIG, provAnswer, provLocalconfig, provRoute, type ProvLocalconfig, type ProvWorld } from '../sim/prov.js';
import { meshServers, meshServersCli } from '../../adapters/carbonio/commands.js';

const WORLD: ProvWorld = { mailboxUp: true, directoryError: null, allServers: ['m1.example', 'm2.example'], meshServers: ['m1.example'] };

function run(argv: string[], world: Partial<ProvWorld> = {}, lc: ProvLocalconfig = DEFAULT_PROV_LOCALCONFIG) {
  const route = provRoute(argv, lc);
  return route.kind === 'answer' ? route.answer : provAnswer(route, lc, { ...WORLD, ...world });
}

describe('zmprov / carbonio prov: SOAP unless -l', () => {
  test('both forms list the mesh servers while the mailbox and the directory are up', () => {
    for (const argv of [['gas', 'service-discover'], ['-l', 'gas', 'service-discover'], ['prov', 'gas', 'service-discover'], ['prov', '-l', 'gas', 'service-discover']]) {
      expect(run(argv)).toEqual({ code: 0, stdout: 'm1.example\n', stderr: '' });
    }
    expect(run(['prov', '--ldap', 'getAllServers']).stdout).toBe('m1.example\nm2.example\n');
  });

  test('with the mailbox down, the form without -l fails (exit 2, zclient.IO_ERROR) and -l still answers', () => {
    const soap = run(['prov', 'gas', 'service-discover'], { mailboxUp: false });
    expect(soap.code).toBe(2);
    expect(soap.stderr).toMatch(/^ERROR: zclient\.IO_ERROR \(invoke .*localhost:7071.*, server: localhost\) \(cause: /);
    expect(run(['prov', '-l', 'gas', 'service-discover'], { mailboxUp: false })).toEqual({ code: 0, stdout: 'm1.example\n', stderr: '' });
  });

  test('with the directory down both forms fail', () => {
    for (const argv of [['-l', 'gas', 'service-discover'], ['gas', 'service-discover']]) {
      const r = run(argv, { directoryError: '10.0.0.1:389: connect: connection refused' });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^ERROR: ldap\.LDAP_ERROR .*connection refused/);
    }
  });

  test('a node whose localconfig defaults to LDAP (not a mailbox node) needs no mailbox even without -l', () => {
    const lc = provLocalconfig('<localconfig><key name="zimbra_zmprov_default_to_ldap">\n<value>true</value></key></localconfig>');
    expect(lc).toEqual({ ...DEFAULT_PROV_LOCALCONFIG, defaultToLdap: true });
    expect(run(['gas', 'service-discover'], { mailboxUp: false }, lc).code).toBe(0);
    // -s forces SOAP whatever localconfig says.
    expect(run(['-s', 'm2.example', 'gas', 'service-discover'], { mailboxUp: false }, lc).code).toBe(2);
  });

  test('the option checks ProvUtil makes before any connection', () => {
    expect(run(['-l', '-s', 'm2.example', 'gas'])).toMatchObject({ code: 2, stderr: 'error: cannot specify both -l and -s at the same time\n' });
    expect(run(['-m', 'gas'])).toMatchObject({ code: 2, stderr: 'error: cannot specify -m when -l is not specified\n' });
    expect(run(['-m', '-l', 'gas', 'service-discover']).code).toBe(0);
    // An unknown command is the usage, before the mailbox is asked: exit 1 even with it down.
    expect(run(['bogus'], { mailboxUp: false })).toMatchObject({ code: 1, stderr: '' });
  });

  test('localconfig: the SOAP server and admin port it names are where the query goes', () => {
    const lc = provLocalconfig(
      '<key name="zimbra_zmprov_default_soap_server">\n  <value>mbox.example</value>\n</key><key name="zimbra_admin_service_port"><value>7072</value></key>',
    );
    expect(lc).toEqual({ defaultToLdap: false, soapServer: 'mbox.example', adminPort: 7072 });
    expect(run(['gas'], { mailboxUp: false }, lc).stderr).toContain('mbox.example:7072');
  });
});

describe("regen's query is the form that works with the mailbox down", () => {
  test('both profiles ask the directory with -l, as zextras', () => {
    expect(meshServersCli('current')).toBe('carbonio prov -l gas service-discover');
    expect(meshServersCli('legacy')).toBe('zmprov -l gas service-discover');
    expect(meshServers('current')).toBe("su - zextras -c 'carbonio prov -l gas service-discover'");
    for (const profile of ['current', 'legacy'] as const) {
      // What the wrapper hands ProvUtil: everything after the program name (`prov` included for carbonio).
      const argv = meshServersCli(profile).split(' ').slice(1);
      expect(run(argv, { mailboxUp: false })).toEqual({ code: 0, stdout: 'm1.example\n', stderr: '' });
    }
  });
});
