/** The port's read-only facts about a node and its mesh: inspect, the mesh servers in LDAP, the leader, the members. */
import type { Member, NodeFacts, NodePort, Profile } from '../../machines/port.js';
import type { Secret } from '../secrets/secret.js';
import * as cmd from './commands.js';
import { parseInspect, parseLeader, parseMembers, parseMeshServers } from './parse.js';
import { failed, secretLine, tokenFailure, type PortKit } from './port-kit.js';

type InspectionMethods = Pick<NodePort, 'inspect' | 'meshServers' | 'leaderAddress' | 'members'>;

export function inspectionMethods({ run, log }: PortKit): InspectionMethods {
  return {
    async inspect(node: string): Promise<NodeFacts> {
      const res = await run(node, 'inspect', cmd.inspect());
      if (res.code !== 0) throw failed(node, 'inspect', res);
      return parseInspect(res.stdout, node);
    },

    async meshServers(node: string, profile: Profile): Promise<string[]> {
      const what = cmd.meshServersCli(profile);
      const res = await run(node, what, cmd.meshServers(profile));
      if (res.code !== 0) throw failed(node, what, res, 'the directory (LDAP) must be reachable; the command runs as zextras');
      return parseMeshServers(res.stdout, node);
    },

    async leaderAddress(node: string): Promise<string | null> {
      const res = await run(node, 'status/leader', cmd.leaderAddress());
      if (res.code !== 0) {
        throw failed(node, 'GET 127.0.0.1:8500/v1/status/leader', res, 'the consul agent is not answering on 127.0.0.1:8500: is service-discover running?');
      }
      return parseLeader(res.stdout, node);
    },

    async members(node: string, secret: Secret): Promise<Member[]> {
      const res = await run(node, 'consul members', cmd.members(), { stdin: secretLine(secret) });
      const problem = tokenFailure(node, 'consul members', res);
      if (problem !== null) throw problem;
      if (res.code === 2 && res.stdout.trim() === '') {
        // consul members exits 2 printing nothing when the token sees no node at all.
        log(`${node}: consul members listed nothing (the token from the credentials sees no member)`);
        return [];
      }
      if (res.code !== 0) throw failed(node, 'consul members', res, undefined, secret);
      return parseMembers(res.stdout, node);
    },
  };
}
