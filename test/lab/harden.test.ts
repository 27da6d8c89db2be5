/**
 * --revoke-old-tokens on the lab: a reset leaves the old management tokens valid (shown by a run without the flag);
 * with the flag, every management token older than the new bootstrap token is deleted after the final check.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sshExec, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { checkHealth, credentialSecrets, snapshotFiles } from '../../bench/lib/health.js';
import { runRegen, startArgs, writeSecretFile } from '../../bench/lib/regen-process.js';

const skip = labSkip();

/** `consul members` on the leader with a given token: exit code and member count. */
async function membersWith(lab: Lab, token: string): Promise<{ code: number; members: number }> {
  const r = await sshExec(lab, lab.leader, 'CONSUL_HTTP_TOKEN="$(cat)" consul members', { stdin: token });
  return { code: r.code, members: r.stdout.split('\n').slice(1).filter((l) => l.trim()).length };
}

/** Accessor ids of the global-management tokens, listed with `token`. */
async function managementTokens(lab: Lab, token: string): Promise<string[]> {
  const r = await sshExec(lab, lab.leader, `CONSUL_HTTP_TOKEN="$(cat)" consul acl token list -format=json | jq -r '.[] | select(any(.Policies[]?; .Name == "global-management")) | .AccessorID'`, {
    stdin: token,
  });
  if (r.code !== 0) throw new Error(`token list failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.trim());
}

/** The `server-*` / `agent-*` tokens as `POLICY INDEX`, listed with `token`. */
async function nodeTokens(lab: Lab, token: string): Promise<Array<{ policy: string; index: number }>> {
  const r = await sshExec(lab, lab.leader, `CONSUL_HTTP_TOKEN="$(cat)" consul acl token list -format=json | jq -r '.[] | select(any(.Policies[]?; .Name | test("^(server|agent)-"))) | "\\(.Policies[0].Name) \\(.CreateIndex)"'`, {
    stdin: token,
  });
  if (r.code !== 0) throw new Error(`token list failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => ({ policy: l.split(' ')[0] ?? '', index: Number(l.split(' ')[1]) }))
    .sort((a, b) => a.policy.localeCompare(b.policy) || a.index - b.index);
}

describe.skipIf(skip !== null)('--revoke-old-tokens', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current', losePassword: true });

  it('without it the old management token stays valid; with it every older one is deleted', async () => {
    const lab = h.lab;
    const old = (await credentialSecrets(lab, lab.leader, h.secret)).token;
    expect((await membersWith(lab, old)).members).toBe(3);

    // A plain run: the reset leaves the old token working.
    const s1 = writeSecretFile(lab, 'secret-1');
    const r1 = await runRegen(startArgs(lab, s1.file, [], join(lab.dir, 'plain.db')));
    expect(r1.code, r1.stderr).toBe(0);
    const t1 = (await credentialSecrets(lab, lab.leader, s1.secret)).token;
    expect((await membersWith(lab, old)).members).toBe(3);
    expect((await managementTokens(lab, t1)).length).toBeGreaterThanOrEqual(2);
    // service-discover's setup makes a new node token and keeps the old one: two per node now.
    const nodes1 = await nodeTokens(lab, t1);
    expect(nodes1).toHaveLength(6);
    expect(new Set(nodes1.map((t) => t.policy)).size).toBe(3);

    // With --revoke-old-tokens: only the newest management token is left.
    const before = await snapshotFiles(lab);
    const s2 = writeSecretFile(lab, 'secret-2');
    const db = join(lab.dir, 'harden.db');
    const r2 = await runRegen([...startArgs(lab, s2.file, ['--revoke-old-tokens'], db), '--json']);
    expect(r2.code, r2.stderr).toBe(0);
    const t2 = (await credentialSecrets(lab, lab.leader, s2.secret)).token;
    const left = await managementTokens(lab, t2);
    expect(left).toHaveLength(1);
    for (const t of [old, t1]) {
      const m = await membersWith(lab, t);
      expect(m.members, 'a revoked token still lists members').toBe(0);
    }
    expect((await membersWith(lab, t2)).members).toBe(3);
    // The node tokens the two runs' setups replaced are gone: one per node, made by this run's setups.
    const nodes2 = await nodeTokens(lab, t2);
    expect(nodes2.map((t) => t.policy)).toEqual([...new Set(nodes1.map((t) => t.policy))]);
    expect(nodes2.every((t) => !nodes1.some((o) => o.index === t.index))).toBe(true);
    const nodeRevoked = r2.events.filter((e) => e.type === 'step.finished' && e.step === 'harden.node-tokens' && e['outcome'] === 'done');
    expect(nodeRevoked.length).toBe(6 + 1);
    const revoked = r2.events.filter((e) => e.type === 'step.finished' && e.step === 'harden.revoke' && e['outcome'] === 'done');
    expect(revoked.length).toBeGreaterThanOrEqual(2);
    expect((await checkHealth(lab, db, s2.secret, before)).problems).toEqual([]);
    expect(r2.stdout + r2.stderr).not.toContain(old);
  });
});
