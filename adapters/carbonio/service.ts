/** The port's control of the service-discover unit: stop, start, and whether it is active. */
import type { NodePort } from '../../machines/port.js';
import * as cmd from './commands.js';
import { parseServiceState } from './parse.js';
import { failed, type PortKit } from './port-kit.js';

type ServiceMethods = Pick<NodePort, 'stopService' | 'startService' | 'serviceActive'>;

export function serviceMethods({ run }: PortKit): ServiceMethods {
  return {
    async stopService(node: string): Promise<void> {
      const res = await run(node, 'systemctl stop', cmd.stopService());
      if (res.code !== 0) throw failed(node, 'systemctl stop service-discover', res);
    },

    async startService(node: string): Promise<void> {
      const res = await run(node, 'systemctl start', cmd.startService());
      if (res.code !== 0) throw failed(node, 'systemctl start service-discover', res);
    },

    async serviceActive(node: string): Promise<boolean> {
      // is-active exits non-zero for every state but active; the word it prints is the answer.
      const res = await run(node, 'systemctl is-active', cmd.serviceActive());
      return parseServiceState(res.stdout, node);
    },
  };
}
