/**
 * `alive` proves gossip only. A node never set up again, tampered so that it gossips with the new key (alive to
 * the leader, credentials file the leader's), passes the members check; the proof (RPC through its own agent with
 * the new token, CA, certificate, keyring) catches it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { NodePort } from '../../machines/port.js';
import { Secret } from '../../adapters/secrets/secret.js';
import { MAIN_JSON } from '../sim/model.js';
import { leaderSecrets } from '../sim/proof.js';
import { readKeyring, writeKeyring } from '../sim/serf.js';
import { harness, type Harness } from '../support/machine-harness.js';

const S1 = 'mail1.example.com';
const A3 = 'mail3.example.com';
let h: Harness | undefined;
afterEach(() => h?.cleanup());

function bound(port: NodePort): NodePort {
  return Object.fromEntries(Object.entries(port).map(([k, v]) => [k, typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(port) : v])) as unknown as NodePort;
}

describe('a node that was never set up again', () => {
  it('is alive with the leader\'s credentials file, yet the verification names it', async () => {
    h = harness({ servers: 1, agents: 2, seed: 'never-set-up' });
    const c = h.cluster;
    const port = c.port;
    const tampered: NodePort = {
      ...bound(port),
      // The wipe and the setup never ran on A3; instead it was restarted with the new key added to its old keyring.
      wipe: async (node, profile) => (node === A3 ? undefined : port.wipe(node, profile)),
      probeWipe: async (node, profile) => (node === A3 ? true : port.probeWipe(node, profile)),
      setupFollower: async (node, bind, secret, kind) => {
        if (node !== A3) return port.setupFollower(node, bind, secret, kind);
        const fresh = leaderSecrets(c.world, S1);
        const old = JSON.parse(c.node(A3).fs.read(MAIN_JSON)?.toString('utf8') ?? '{}') as { encrypt?: string };
        if (fresh === null || old.encrypt === undefined) throw new Error('test setup: keys missing');
        writeKeyring(c.node(A3).fs, [fresh.gossipKey, old.encrypt], false);
        await port.startService(node);
      },
    };
    const r = await h.start({ port: tampered });
    expect(r.state).toBe('failed');
    expect(r.error?.message).toContain(A3);
    expect(r.error?.message).toContain('RPC through its own agent fails');
    // What the members column says about it: alive, and its credentials file is the leader's.
    const members = await port.members(S1, h.secret);
    expect(members.find((m) => m.name.endsWith('mail3-example-com'))?.status).toBe('alive');
    expect(await port.credentialsSha256(A3)).toBe(await port.credentialsSha256(S1));
    expect(readKeyring(c.node(A3).fs)?.length).toBe(2);
    const proof = await port.proveNode(A3, new Secret(h.secret.reveal()));
    expect(proof.rpcError).toMatch(/No cluster leader/);
    expect(proof.keyringExact).toBe(false);
    expect(proof.certVerifies).toBe(true);
  });
});
