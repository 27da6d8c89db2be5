/**
 * The service-discover release decides the wipe and whether regen plans a node at all (machines/versions.ts).
 */
import { describe, expect, it } from 'vitest';
import { RegenError } from '../../machines/errors.js';
import { planNodes } from '../../machines/plan.js';
import type { Inventory, NodeFacts } from '../../machines/port.js';
import { releaseOf, wipeSetFor } from '../../machines/versions.js';
import { wipedPaths } from '../../adapters/carbonio/commands.js';

const facts = (over: Partial<NodeFacts> = {}): NodeFacts => ({
  node: 'mail1',
  hostname: 'mail1',
  fqdn: 'mail1.lab.example',
  profile: 'legacy',
  privileged: true,
  addresses: ['10.77.0.11'],
  hostnameAddresses: ['10.77.0.11'],
  missingTools: [],
  serviceActive: true,
  hasMainJson: true,
  hasConfigJson: true,
  credentialsSha256: null,
  configuredBindAddress: '10.77.0.11',
  consulVersion: 'Consul v1.9.3',
  serviceDiscoverPackage: '0.1.9-1',
  ...over,
});
const inventory = (over: Partial<Inventory> = {}): Inventory => ({ cluster: 'c', nodes: [{ name: 'mail1', sshHost: 'mail1' }], ...over });

describe('service-discover releases', () => {
  it('reads Debian and rpm package versions, nothing else', () => {
    expect(releaseOf('0.7.2-1')).toBe('0.7.2');
    expect(releaseOf('1:0.1.9-1')).toBe('0.1.9');
    expect(releaseOf('0.1.6')).toBe('0.1.6');
    expect(releaseOf('service-discover version: 0.1.0')).toBeNull();
    expect(releaseOf(null)).toBeNull();
  });

  it('the release decides the wipe, whatever the admin CLI: main.json goes from v0.1.5 on', () => {
    expect(wipeSetFor('0.1.9', 'legacy')).toBe('current');
    expect(wipeSetFor('0.1.6', 'legacy')).toBe('current');
    expect(wipeSetFor('0.1.4', 'legacy')).toBe('legacy');
    expect(wipeSetFor('0.1.4', 'current')).toBe('legacy');
    const [node] = planNodes(inventory(), [facts()]).nodes;
    expect(node).toMatchObject({ profile: 'legacy', serviceDiscoverVersion: '0.1.9', wipeSet: 'current' });
    expect(wipedPaths(node?.wipeSet ?? 'legacy')).toContain('/etc/zextras/service-discover/main.json');
  });

  it('an untested release, or none readable, is refused before anything changes unless allowed', () => {
    expect(() => planNodes(inventory(), [facts({ serviceDiscoverPackage: '0.5.0-1' })])).toThrow(RegenError);
    expect(() => planNodes(inventory(), [facts({ serviceDiscoverPackage: '0.5.0-1' })])).toThrow(/service-discover 0\.5\.0-1 is not a release regen was tested against.*--allow-untested-version/);
    expect(() => planNodes(inventory(), [facts({ serviceDiscoverPackage: null })])).toThrow(/could not be read/);
    const allowed = planNodes(inventory({ allowUntestedVersion: true }), [facts({ serviceDiscoverPackage: '0.5.0-1' })]);
    expect(allowed.nodes[0]?.wipeSet).toBe('current');
    expect(allowed.warnings.map((w) => w.message)).toContain('service-discover 0.5.0-1 is not a tested release; planned because --allow-untested-version was given');
  });

  it('a node that cannot reach the directory, or names none, is a preflight problem', () => {
    expect(() => planNodes(inventory(), [facts({ directory: { state: 'unreachable', url: 'ldap://10.0.0.9:389' } })])).toThrow(
      /mail1: the directory ldap:\/\/10\.0\.0\.9:389 \(ldap_master_url\) does not answer from this node/,
    );
    expect(() => planNodes(inventory(), [facts({ directory: { state: 'none', url: null } })])).toThrow(/names no ldap_master_url/);
    expect(planNodes(inventory(), [facts({ directory: { state: 'ok', url: 'ldap://10.0.0.9:389' } })]).nodes).toHaveLength(1);
  });
});
