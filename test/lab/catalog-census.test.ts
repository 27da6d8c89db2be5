/**
 * The catalog census on the lab: the snapshot before the wipe is read through the leader's agent without the old
 * secret (the agent's default token answers), and after the run the same services and passing checks are there.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sshExec } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { runRegen, startArgs, writeSecretFile } from '../../bench/lib/regen-process.js';

const skip = labSkip();

describe.skipIf(skip !== null)('catalog census', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current' });

  it('records the old catalog without the old secret and finds it whole after the run', async () => {
    const lab = h.lab;
    // Without a token the leader's agent answers with its default token, which reads the catalog.
    const anon = await sshExec(lab, lab.leader, 'curl -fsS http://127.0.0.1:8500/v1/catalog/services');
    expect(anon.code, anon.stderr).toBe(0);
    expect(Object.keys(JSON.parse(anon.stdout) as Record<string, unknown>)).toContain('consul');
    // A token the mesh does not know is refused, not answered with an empty catalog.
    const bogus = await sshExec(lab, lab.leader, "curl -fsS -H 'X-Consul-Token: 00000000-0000-0000-0000-000000000000' http://127.0.0.1:8500/v1/catalog/services");
    expect(bogus.code).not.toBe(0);

    const s = writeSecretFile(lab, 'census-secret');
    const db = join(lab.dir, 'census.db');
    const r = await runRegen(startArgs(lab, s.file, [], db));
    expect(r.code, r.stderr).toBe(0);
    const st = await runRegen(['status', '--db', db, '--json']);
    expect(st.code, st.stderr).toBe(0);
    const view = JSON.parse(st.stdout.trim().split('\n').pop() ?? '{}') as {
      catalog?: { before: { recorded: boolean; services: number; passing: number } | null; after: { compared: boolean; missingServices: string[]; failingChecks: unknown[] } | null };
    };
    expect(view.catalog?.before).toMatchObject({ recorded: true, passing: 3 });
    expect(view.catalog?.before?.services).toBeGreaterThanOrEqual(1);
    expect(view.catalog?.after).toMatchObject({ compared: true, missingServices: [], failingChecks: [] });
  });
});
