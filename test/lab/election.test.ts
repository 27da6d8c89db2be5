/**
 * Election takes time on the lab (1 server + 1 agent): the leader, restarted by its setup, stands for election
 * only 5 s after its start. With Consul's 7 s RPC hold the setup's own bootstrap call waits for the leader and the
 * run finishes in one leader setup round. With a 2 s hold the same setup meets `No cluster leader` (firstsetup.go
 * gives up on it) and no round can succeed: the model bites where the real software would. Checked from regen's
 * journal and output, and independently over SSH.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { ELECTION_FILE } from '../sim/election.js';
import { labSkip, withLab } from './harness.js';
import { checkMesh, labArgs, newSecretFile, regenSync } from './support/regen-cli.js';

const skip = labSkip();

function journalOf(dir: string, leader: string) {
  const db = new Database(join(dir, 'regen.db'), { readonly: true });
  const setups = db.prepare(`SELECT attempt, outcome FROM journal WHERE step = 'leader.setup' AND node = ? ORDER BY id`).all(leader) as Array<{ attempt: number; outcome: string }>;
  const later = db.prepare(`SELECT COUNT(*) AS n FROM journal WHERE attempt > 1`).get() as { n: number };
  db.close();
  return { setups: setups.map((s) => [s.attempt, s.outcome]), laterRounds: later.n };
}

describe.skipIf(skip !== null)('a 5 s election (1 server + 1 agent)', () => {
  const h = withLab({ nodes: 2, servers: 1, profile: 'current', losePassword: true, election: { delayMs: 5000, holdMs: 7000 } });

  it('with Consul\'s 7 s hold: regen finishes in one leader setup round, its setup having waited for the leader', async () => {
    const lab = h.lab;
    const { file, secret } = newSecretFile(lab);
    const t0 = Date.now();
    const r = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab)]);
    console.log(`regen start, 5 s election, 7 s hold: ${Date.now() - t0} ms`);
    expect(r.code, r.stderr).toBe(0);
    expect(journalOf(lab.dir, lab.leader)).toEqual({ setups: [[1, 'done']], laterRounds: 0 });
    const check = await checkMesh(lab, lab.leader, secret);
    expect(check.problems).toEqual([]);
    expect(check.members).toHaveLength(2);
  }, 240_000);

  it('with a 2 s hold the setup meets No cluster leader in every round and the run stops at leader.setup', () => {
    const lab = h.lab;
    writeFileSync(join(lab.dir, 'cluster', ELECTION_FILE), `${JSON.stringify({ delayMs: 5000, holdMs: 2000 })}\n`);
    const { file } = newSecretFile(lab);
    const db = join(lab.dir, 'regen-short-hold.db');
    const t0 = Date.now();
    const r = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab, db)]);
    console.log(`regen start, 5 s election, 2 s hold: ${Date.now() - t0} ms (fails)`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/stopped \(failed\) at leader\.setup/);
    expect(r.stderr).toContain('unable to create ACL bootstrap token: Failed ACL bootstrapping: Unexpected response code: 500 (No cluster leader)');
    const dbView = new Database(db, { readonly: true });
    const rounds = dbView.prepare(`SELECT DISTINCT attempt FROM journal WHERE step = 'leader.setup'`).all() as Array<{ attempt: number }>;
    dbView.close();
    expect(rounds.length).toBeGreaterThan(1);
  }, 240_000);
});
