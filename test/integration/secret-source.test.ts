/**
 * regen start takes the secret the operator named, says where it came from (never what it is), and refuses
 * conflicting, weak or reused secrets with exit 2 before any node changes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { start } from '../../cli/commands/start.js';
import { EXIT, exitCodeFor } from '../../cli/exit-codes.js';
import { useClusterDir } from '../support/cluster-dir.js';
import { fakeIo } from '../support/fake-io.js';

const INVENTORY_SECRET = 'from-the-inventory-file-0042';
const fx = useClusterDir({
  prefix: 'regen-secret-source-',
  cluster: { servers: 1, agents: 1 },
  start: { runId: 'run-secret' },
  files: (dir) => writeFileSync(join(dir, 'inventory.yaml_consulpassword'), `${INVENTORY_SECRET}\n`, { mode: 0o600 }),
});

const changes = () => ['backup', 'stopService', 'wipe'].map((m) => fx.cluster.effects.total(m as never));

describe('the secret the operator meant', () => {
  it('the _consulpassword beside the inventory is never taken on its own, even with --generate-password', async () => {
    const io = fakeIo();
    expect(await start(fx.startOptions({ generatePassword: true }), io)).toBe(EXIT.ok);
    expect(io.stderrText()).toMatch(/comes from generated \(--generate-password\)/);
    const leader = fx.cluster.nodes[0] as string;
    const { Secret } = await import('../../adapters/secrets/secret.js');
    expect(await fx.cluster.port.secretOpensCredentials(leader, new Secret(INVENTORY_SECRET, 'x'))).toBe(false);
  });

  it('with --password-from-inventory it is taken, and the summary names the source, not the value', async () => {
    const io = fakeIo();
    expect(await start(fx.startOptions({ passwordFromInventory: true }), io)).toBe(EXIT.ok);
    expect(io.stderrText()).toMatch(/The new mesh secret came from the inventory's _consulpassword file/);
    expect(io.stderrText()).not.toContain(INVENTORY_SECRET);
  });

  it('a leftover REGEN_MESH_PASSWORD with --generate-password: exit 2 naming both, nothing changed', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: 'left-over-secret-from-yesterday' });
    const err = await start(fx.startOptions({ generatePassword: true }), io).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/REGEN_MESH_PASSWORD and --generate-password/);
    expect(exitCodeFor(err)).toBe(EXIT.usage);
    expect(changes()).toEqual([0, 0, 0]);
  });

  it('a weak secret: refused unless --weak-secret', async () => {
    await expect(start(fx.startOptions(), fakeIo({ REGEN_MESH_PASSWORD: 'changeme' }))).rejects.toThrow(/weak: it is shorter than 12/);
    expect(changes()).toEqual([0, 0, 0]);
    expect(await start(fx.startOptions({ weakSecret: true }), fakeIo({ REGEN_MESH_PASSWORD: 'changeme' }))).toBe(EXIT.ok);
  });

  it('the current secret as the new one: exit 2, nothing changed; --reuse-secret goes on', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: fx.cluster.secret });
    expect(await start(fx.startOptions(), io)).toBe(EXIT.usage);
    expect(io.stderrText()).toMatch(/opens the current credentials/);
    expect(changes()).toEqual([0, 0, 0]);
    expect(await start(fx.startOptions({ reuseSecret: true, runId: 'run-2' }), fakeIo({ REGEN_MESH_PASSWORD: fx.cluster.secret }))).toBe(EXIT.ok);
  });

  it('the plan names the source', async () => {
    const io = fakeIo({ REGEN_MESH_PASSWORD: 'whatever-it-is-here' });
    expect(await start(fx.startOptions({ dryRun: true }), io)).toBe(EXIT.ok);
    expect(io.stdoutText()).toMatch(/mesh secret source: the environment \(REGEN_MESH_PASSWORD\)/);
    expect(io.stdoutText()).not.toContain('whatever-it-is-here');
  });
});
