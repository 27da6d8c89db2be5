/** The port's ACL reset: read the reset index (`consul acl bootstrap`), write acl-bootstrap-reset, and its probe. */
import type { NodePort, ResetIndexReading } from '../../machines/port.js';
import * as cmd from './commands.js';
import { parseResetFile, parseResetIndex } from './parse.js';
import { build, failed, type PortKit } from './port-kit.js';

type ResetMethods = Pick<NodePort, 'readResetIndex' | 'writeResetFile' | 'probeResetFile'>;

export function resetMethods({ run, log }: PortKit): ResetMethods {
  return {
    async readResetIndex(node: string): Promise<ResetIndexReading> {
      const res = await run(node, 'consul acl bootstrap', cmd.readResetIndex());
      const reading = parseResetIndex(`${res.stdout}\n${res.stderr}`, res.code, node);
      if (reading.kind === 'bootstrapped') {
        log(`${node}: consul acl bootstrap succeeded (the mesh had never been bootstrapped); its token is in ${reading.savedTo} on the node`);
      }
      return reading;
    },

    async writeResetFile(node: string, index: number): Promise<void> {
      const command = build(() => cmd.writeResetFile(index));
      const res = await run(node, 'write acl-bootstrap-reset', command);
      if (res.code !== 0) throw failed(node, 'writing the reset index as service-discover', res, 'the data directory /var/lib/service-discover/data must exist and belong to service-discover');
    },

    async probeResetFile(node: string): Promise<number | null> {
      const res = await run(node, 'probe acl-bootstrap-reset', cmd.probeResetFile());
      if (res.code !== 0) throw failed(node, 'reading the reset file', res);
      return parseResetFile(res.stdout, node);
    },
  };
}
