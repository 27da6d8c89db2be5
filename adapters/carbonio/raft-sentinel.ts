/**
 * Consul's peers.info sentinel on a mesh server. Consul (agent/consul/server.go setupRaft) reads
 * data/raft/peers.json only where data/raft/peers.info exists; where it is missing, Consul writes it and deletes
 * peers.json unread, so a raft recovery written there would be skipped without a word to the operator.
 */
import { CommandFailedError } from '../../machines/errors.js';
import type { NodePort } from '../../machines/port.js';
import type { ExecOptions, ExecResult } from '../ssh/remote.js';
import { probePeersInfo } from './commands.js';

type Run = (node: string, what: string, command: string, opts?: ExecOptions) => Promise<ExecResult>;

export function raftSentinelMethods(run: Run): Pick<NodePort, 'probePeersInfo'> {
  return {
    async probePeersInfo(node) {
      const res = await run(node, 'probe raft peers.info', probePeersInfo());
      const marker = res.stdout.split('\n')[0]?.trim() ?? '';
      if (res.code !== 0 || (marker !== 'regen:present' && marker !== 'regen:absent')) {
        throw new CommandFailedError(node, `looking for data/raft/peers.info failed on ${node} (exit ${res.code}): ${res.stderr.trim().slice(-300)}`, res.code);
      }
      return marker === 'regen:present';
    },
  };
}
