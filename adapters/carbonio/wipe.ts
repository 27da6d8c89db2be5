/** The port's wipe of a stopped node's mesh state (the files of its profile), and the probe that they are gone. */
import { CommandFailedError } from '../../machines/errors.js';
import type { NodePort, Profile } from '../../machines/port.js';
import * as cmd from './commands.js';
import { parseProbeWipe } from './parse.js';
import { failed, type PortKit } from './port-kit.js';

type WipeMethods = Pick<NodePort, 'wipe' | 'probeWipe'>;

export function wipeMethods({ run }: PortKit): WipeMethods {
  return {
    async wipe(node: string, profile: Profile): Promise<void> {
      const res = await run(node, `wipe (${profile})`, cmd.wipe(profile));
      if (res.code === 4 && res.stderr.includes('regen:service-active')) {
        throw new CommandFailedError(node, `refusing to wipe ${node}: service-discover is still running`, res.code, 'stop service-discover first');
      }
      if (res.code !== 0) throw failed(node, 'wipe', res);
    },

    async probeWipe(node: string, profile: Profile): Promise<boolean> {
      const res = await run(node, 'probe wipe', cmd.probeWipe(profile));
      if (res.code !== 0) throw failed(node, 'probe wipe', res);
      return parseProbeWipe(res.stdout, node).length === 0;
    },
  };
}
