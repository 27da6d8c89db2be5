/**
 * The port's raft data of a mesh server: the recovery file (data/raft/peers.json) naming the node alone, and
 * data/raft moved into the run's backup directory; each with its probe.
 */
import { NeedsOperatorError } from '../../machines/errors.js';
import type { NodePort } from '../../machines/port.js';
import * as cmd from './commands.js';
import { parseRaftRecovery } from './parse.js';
import { build, failed, type PortKit } from './port-kit.js';

type RaftMethods = Pick<NodePort, 'writeRaftRecovery' | 'probeRaftRecovery' | 'moveRaftAside' | 'probeRaftAside'>;

export function raftMethods({ run }: PortKit): RaftMethods {
  return {
    async writeRaftRecovery(node: string, bindAddress: string): Promise<void> {
      const command = build(() => cmd.writeRaftRecovery(bindAddress));
      const res = await run(node, 'write raft peers.json', command);
      if (res.stdout.includes('regen:no-node-id')) {
        throw new NeedsOperatorError(`${node} has no /var/lib/service-discover/data/node-id, so the raft recovery file cannot name it`, {
          node,
          hint: 'start service-discover once on that node (it writes its node id), or recover the raft by hand, then regen resume',
        });
      }
      if (res.code !== 0) throw failed(node, 'writing data/raft/peers.json as service-discover', res);
    },

    async probeRaftRecovery(node: string): Promise<string[] | null> {
      const res = await run(node, 'probe raft peers.json', cmd.probeRaftRecovery());
      if (res.code !== 0) throw failed(node, 'reading data/raft/peers.json', res);
      return parseRaftRecovery(res.stdout, node);
    },

    async moveRaftAside(node: string, runId: string): Promise<void> {
      const res = await run(node, 'move data/raft aside', build(() => cmd.moveRaftAside(runId)));
      if (res.stdout.includes('regen:running')) {
        throw new NeedsOperatorError(`service-discover runs again on ${node}: its raft data cannot be moved aside`, {
          node,
          hint: 'stop it (systemctl stop service-discover), then regen resume',
        });
      }
      if (res.code !== 0 || !res.stdout.includes('regen:aside')) throw failed(node, 'moving data/raft into the backup directory', res);
    },

    async probeRaftAside(node: string, runId: string): Promise<'present' | 'aside' | 'none'> {
      const res = await run(node, 'probe data/raft', build(() => cmd.probeRaftAside(runId)));
      if (res.code !== 0) throw failed(node, 'looking for data/raft', res);
      if (res.stdout.includes('regen:present')) return 'present';
      return res.stdout.includes('regen:aside') ? 'aside' : 'none';
    },
  };
}
