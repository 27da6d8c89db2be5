/**
 * Consul reads data/raft/peers.json only where data/raft/peers.info exists, and otherwise deletes it unread
 * (hashicorp/consul agent/consul/server.go setupRaft). A mesh of several servers whose leader lacks peers.info
 * would lose regen's raft recovery without a word: regen refuses before anything changes, and again right before it
 * writes peers.json.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PEERS_INFO, PEERS_JSON, currentLeader } from '../sim/model.js';
import { harness, type Harness } from '../support/machine-harness.js';

const S1 = 'mail1.example.com';
let h: Harness | undefined;

function bound<T extends object>(port: T): T {
  return Object.fromEntries(Object.entries(port).map(([k, v]) => [k, typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(port) : v])) as T;
}
afterEach(() => h?.cleanup());

describe('a leader without peers.info', () => {
  it('several servers: the run stops at the leader check (exit 3), names the file and what to do; nothing was changed', async () => {
    h = harness({ servers: 3, agents: 1, seed: 'no-peers-info' });
    h.cluster.node(S1).fs.remove(PEERS_INFO);
    const r = await h.start();
    expect(r.error?.kind).toBe('preflight');
    expect(r.error?.node).toBe(S1);
    expect(r.error?.message).toContain('/var/lib/service-discover/data/raft/peers.info');
    expect(r.error?.message).toContain('nothing was changed');
    expect(r.error?.hint).toContain('restart service-discover');
    expect(h.cluster.effects.log).toEqual([]);
    expect(currentLeader(h.cluster.world)).toBe(S1);
  });

  it('why: with the check fooled, Consul deletes peers.json unread and the leader, alone in its old configuration, is never elected', async () => {
    h = harness({ servers: 3, agents: 1, seed: 'no-peers-info-fooled', runOptions: { maxUnitRounds: 1 } });
    h.cluster.node(S1).fs.remove(PEERS_INFO);
    const fooled = { ...bound(h.cluster.port), probePeersInfo: async () => true };
    const r = await h.start({ port: fooled });
    expect(r.state).not.toBe('done');
    expect(r.error?.message).toContain('No cluster leader');
    expect(h.cluster.effects.count(S1, 'writeRaftRecovery')).toBe(1);
    expect(h.cluster.node(S1).fs.exists(PEERS_JSON)).toBe(false);
    expect(h.cluster.node(S1).fs.exists(PEERS_INFO)).toBe(true);
    expect(currentLeader(h.cluster.world)).toBe(null);
  });

  it('one server: no raft recovery, nothing to refuse', async () => {
    h = harness({ servers: 1, agents: 1, seed: 'no-peers-info-single' });
    h.cluster.node(S1).fs.remove(PEERS_INFO);
    const r = await h.start();
    expect(r.error).toBeNull();
    expect(r.state).toBe('done');
  });

  it('removed after the leader check: peers.json is not written, the run waits for the operator; with the sentinel back, resume ends healthy', async () => {
    h = harness({ servers: 3, agents: 1, seed: 'no-peers-info-late' });
    const port = h.cluster.port;
    const fs = h.cluster.node(S1).fs;
    const late = new Proxy(port, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'moveRaftAside' || typeof v !== 'function') return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        // Gone from the leader while the other servers' raft data is set aside (the leader is stopped and wiped).
        return async (...args: unknown[]) => {
          const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          fs.remove(PEERS_INFO);
          return out;
        };
      },
    });
    const r = await h.start({ port: late });
    expect(r.state).toBe('needsOperator');
    expect(r.error?.message).toContain('peers.json was not written');
    expect(fs.exists(PEERS_JSON)).toBe(false);
    expect(h.cluster.effects.count(S1, 'writeRaftRecovery')).toBe(0);
    // What the hint says: restart service-discover on the leader. Here, with its wiped config, the operator puts
    // the sentinel back by hand (as Consul's own start would write it).
    fs.write(PEERS_INFO, 'As of Consul 0.7.0, the peers.json file is only used for recovery after an outage.\n', { owner: 'service-discover', group: 'service-discover', mode: 0o755 });
    const again = await h.resume('run-1');
    expect(again.error).toBeNull();
    expect(again.state).toBe('done');
  });
});
