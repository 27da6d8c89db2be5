/**
 * regen start takes the secret the operator named, says where it came from (never what it is), and refuses
 * conflicting, weak or reused secrets with exit 2 before any node changes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { start, type StartOptions } from '../../cli/commands/start.js';
import { EXIT, exitCodeFor } from '../../cli/exit-codes.js';
import { createFakeCluster, type FakeCluster } from '../sim/fake-cluster.js';
import { FAST } from '../support/machine-harness.js';
import { fakeIo } from '../support/fake-io.js';


let dir: string;
let cluster: FakeCluster;
const INVENTORY_SECRET = 'from-the-inventory-file-0042';

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'regen-secret-source-'));
  cluster = createFakeCluster({ servers: 1, agents: 1 });
  const yaml = ['cluster: testmesh', 'nodes:', ...cluster.nodes.map((n) => `  - name: ${n}`)].join('\n');
  writeFileSync(join(dir, 'inventory.yaml'), `${yaml}\n`);
  writeFileSync(join(dir, 'inventory.yaml_consulpassword'), `${INVENTORY_SECRET}\n`, { mode: 0o600 });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function options(extra: Partial<StartOptions> = {}): StartOptions {
  return {
    db: join(dir, 'regen.db'),
    json: false,
    inventory: join(dir, 'inventory.yaml'),
    inventoryFormat: 'auto',
    cluster: undefined,
    leader: undefined,
    yes: true,
    parallel: 2,
    dryRun: false,
    revokeOldTokens: false,
    maxUnitRounds: 3,
    passwordFile: undefined,
    generatePassword: false,
    sshConfig: undefined,
    knownHosts: undefined,
    acceptNewHostKeys: false,
    connectTimeoutS: 5,
    commandTimeoutS: 60,
    makePort: async () => cluster.port,
    runDeps: FAST,
    runId: 'run-secret',
    ...extra,
  };
}

const changes = () => ['backup', 'stopService', 'wipe'].map((m) => cluster.effects.total(m as never));

describe('the secret the operator meant', () => {
  it('the _consulpassword beside the inventory is never taken on its own, even with --generate-password', async () => {
    const io = fakeIo();
    expect(await start(options({ generatePassword: true }), io)).toBe(EXIT.ok);
    expect(io.stderrText()).toMatch(/comes from generated \(--generate-password\)/);
    const leader = cluster.nodes[0] as string;
    const { Secret } = await import('../../adapters/secrets/secret.js');
    expect(await cluster.port.secretOpensCredentials(leader, new Secret(INVENTORY_SECRET, 'x'))).toBe(false);
  });

  it('with --password-from-inventory it is taken, and the summary names the source, not the value', async () => {
    const io = fakeIo();
    expect(await start(options({ passwordFromInventory: true }), io)).toBe(EXIT.ok);
    expect(io.stderrText()).toMatch(/The new mesh secret came from the inventory's _consulpassword file/);
    expect(io.stderrText()).not.toContain(INVENTORY_SECRET);
  });

  it('a leftover REGEN_MESH_PASSWORD with --generate-password: exit 2 naming both, nothing changed', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: 'left-over-secret-from-yesterday' });
    const err = await start(options({ generatePassword: true }), io).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/REGEN_MESH_PASSWORD and --generate-password/);
    expect(exitCodeFor(err)).toBe(EXIT.usage);
    expect(changes()).toEqual([0, 0, 0]);
  });

  it('a weak secret: refused unless --weak-secret', async () => {
    await expect(start(options(), fakeIo({ REGEN_MESH_PASSWORD: 'changeme' }))).rejects.toThrow(/weak: it is shorter than 12/);
    expect(changes()).toEqual([0, 0, 0]);
    expect(await start(options({ weakSecret: true }), fakeIo({ REGEN_MESH_PASSWORD: 'changeme' }))).toBe(EXIT.ok);
  });

  it('the current secret as the new one: exit 2, nothing changed; --reuse-secret goes on', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: cluster.secret });
    expect(await start(options(), io)).toBe(EXIT.usage);
    expect(io.stderrText()).toMatch(/opens the current credentials/);
    expect(changes()).toEqual([0, 0, 0]);
    expect(await start(options({ reuseSecret: true, runId: 'run-2' }), fakeIo({ REGEN_MESH_PASSWORD: cluster.secret }))).toBe(EXIT.ok);
  });

  it('the plan names the source', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: 'whatever-it-is-here' });
    expect(await start(options({ dryRun: true }), io)).toBe(EXIT.ok);
    expect(io.stdoutText()).toMatch(/mesh secret source: the environment \(REGEN_MESH_PASSWORD\)/);
    expect(io.stdoutText()).not.toContain('whatever-it-is-here');
  });
});
