/**
 * Election takes time on the lab (1 server + 1 agent): the leader, restarted by its setup, stands for election
 * only some seconds after its start, and an RPC that finds no leader is held for the server's rpc_hold_timeout
 * (the lab's knob, 7 s like Consul's default, unless a file of its config dir set another value when its unit
 * started). With a 5 s election the setup's own bootstrap call waits for the leader. With a 10 s one, longer than
 * 250 ms + 7 s, the setup could only succeed because regen drops in a 25 s hold before it (leader.rpc-hold) and
 * removes it after the leader's verification (leader.rpc-hold-remove): one leader setup round, and the file is gone
 * from the node afterwards. On the node itself, without regen: a restart without the drop-in answers `No cluster
 * leader` after 7 s; with regen's own write command it waits for the election. Checked from regen's journal and
 * output, and independently on the nodes (nsenter, SSH).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { removeRpcHold, writeRpcHold } from '../../adapters/carbonio/rpc-hold.js';
import { RPC_HOLD_FILE, RPC_HOLD_TEXT } from '../../machines/port.js';
import { ELECTION_FILE } from '../sim/election.js';
import { labSkip, withLab } from './harness.js';
import { nodeExec } from './lab.js';
import { checkMesh, labArgs, newSecretFile, regenSync } from './support/regen-cli.js';

const skip = labSkip();

function journalOf(dir: string, leader: string) {
  const db = new Database(join(dir, 'regen.db'), { readonly: true });
  const setups = db.prepare(`SELECT attempt, outcome FROM journal WHERE step = 'leader.setup' AND node = ? ORDER BY id`).all(leader) as Array<{ attempt: number; outcome: string }>;
  const later = db.prepare(`SELECT COUNT(*) AS n FROM journal WHERE attempt > 1`).get() as { n: number };
  db.close();
  return { setups: setups.map((s) => [s.attempt, s.outcome]), laterRounds: later.n };
}

describe.skipIf(skip !== null)('slow elections (1 server + 1 agent)', () => {
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

  it('a 10 s election, past 250 ms + the 7 s hold: regen\'s drop-in carries the setup through in one round, and the node is left without it', async () => {
    const lab = h.lab;
    writeFileSync(join(lab.dir, 'cluster', ELECTION_FILE), `${JSON.stringify({ delayMs: 10_000, holdMs: 7000 })}\n`);
    const { file, secret } = newSecretFile(lab);
    const db = join(lab.dir, 'regen-long-election.db');
    const t0 = Date.now();
    const r = regenSync(['start', '-i', lab.inventory, '--password-file', file, '--yes', ...labArgs(lab, db)]);
    console.log(`regen start, 10 s election, 7 s hold: ${Date.now() - t0} ms`);
    expect(r.code, r.stderr).toBe(0);
    const view = new Database(db, { readonly: true });
    const rows = view.prepare(`SELECT step, attempt, outcome FROM journal WHERE node = ? ORDER BY id`).all(lab.leader) as Array<{ step: string; attempt: number; outcome: string }>;
    const later = view.prepare(`SELECT COUNT(*) AS n FROM journal WHERE attempt > 1`).get() as { n: number };
    view.close();
    expect(rows.filter((x) => x.step === 'leader.setup').map((x) => [x.attempt, x.outcome])).toEqual([[1, 'done']]);
    expect(later.n).toBe(0);
    const order = rows.map((x) => x.step);
    expect(order.indexOf('leader.rpc-hold')).toBeLessThan(order.indexOf('leader.setup'));
    expect(order.indexOf('leader.rpc-hold-remove')).toBeGreaterThan(order.indexOf('leader.verify'));
    // The node's own files, not regen's word.
    const left = await nodeExec(lab, lab.leader, ['sh', '-c', `ls -A /etc/zextras/service-discover; test -e ${RPC_HOLD_FILE} && echo present || echo absent`]);
    expect(left.stdout).not.toContain('zz-regen-rpc-hold');
    expect(left.stdout.trim().split('\n').pop()).toBe('absent');
    const check = await checkMesh(lab, lab.leader, secret);
    expect(check.problems).toEqual([]);
    expect(check.members).toHaveLength(2);
  }, 240_000);

  it('on the node, without regen: a restart answers No cluster leader after the 7 s hold; with regen\'s drop-in the same call waits for the 10 s election', async () => {
    const lab = h.lab;
    writeFileSync(join(lab.dir, 'cluster', ELECTION_FILE), `${JSON.stringify({ delayMs: 10_000, holdMs: 7000 })}\n`);
    const bootstrapAfterRestart = async () => {
      const restart = await nodeExec(lab, lab.leader, ['systemctl', 'restart', 'service-discover']);
      expect(restart.code, restart.stderr).toBe(0);
      const t = Date.now();
      const b = await nodeExec(lab, lab.leader, ['consul', 'acl', 'bootstrap', '-format', 'json'], { timeoutMs: 60_000 });
      return { ...b, ms: Date.now() - t };
    };
    const without = await bootstrapAfterRestart();
    console.log(`consul acl bootstrap after a restart, no drop-in: ${without.ms} ms`);
    expect(without.stderr).toContain('Unexpected response code: 500 (No cluster leader)');
    expect(without.ms).toBeGreaterThanOrEqual(6_500);
    expect(without.ms).toBeLessThan(10_000);

    // regen's own command text, run on the node.
    const wrote = await nodeExec(lab, lab.leader, ['sh', '-c', writeRpcHold()]);
    expect(wrote.code, wrote.stderr).toBe(0);
    const st = await nodeExec(lab, lab.leader, ['stat', '-c', '%U:%G %a', RPC_HOLD_FILE]);
    expect(st.stdout.trim()).toBe('service-discover:service-discover 600');
    expect((await nodeExec(lab, lab.leader, ['cat', RPC_HOLD_FILE])).stdout).toBe(RPC_HOLD_TEXT);
    try {
      const held = await bootstrapAfterRestart();
      console.log(`consul acl bootstrap after a restart with the drop-in: ${held.ms} ms`);
      // The cluster is bootstrapped: once a leader is elected the answer is consul's refusal, not No cluster leader.
      expect(held.stderr).toContain('ACL bootstrap no longer allowed');
      expect(held.ms).toBeGreaterThanOrEqual(7_500);
    } finally {
      const removed = await nodeExec(lab, lab.leader, ['sh', '-c', removeRpcHold()]);
      expect(removed.code, removed.stderr).toBe(0);
    }
    expect((await nodeExec(lab, lab.leader, ['sh', '-c', `test -e ${RPC_HOLD_FILE} && echo present || echo absent`])).stdout.trim()).toBe('absent');
  }, 240_000);
});
