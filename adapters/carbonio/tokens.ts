/** The port's methods on ACL tokens, each with the token taken from the node's credentials: self, list, delete. */
import type { NodePort, TokenInfo } from '../../machines/port.js';
import type { Secret } from '../secrets/secret.js';
import * as cmd from './commands.js';
import { parseTokens } from './parse.js';
import { build, failed, secretLine, tokenFailure, type PortKit } from './port-kit.js';

type TokenMethods = Pick<NodePort, 'selfAccessor' | 'listTokens' | 'deleteToken'>;

export function tokenMethods({ run }: PortKit): TokenMethods {
  return {
    async selfAccessor(node: string, secret: Secret): Promise<string> {
      const res = await run(node, 'consul acl token read -self', cmd.selfAccessor(), { stdin: secretLine(secret) });
      const problem = tokenFailure(node, 'consul acl token read -self', res);
      if (problem !== null) throw problem;
      const m = /^self=([0-9a-f-]{36})$/m.exec(res.stdout);
      if (res.code !== 0 || m?.[1] === undefined) throw failed(node, 'consul acl token read -self', res, undefined, secret);
      return m[1];
    },

    async listTokens(node: string, secret: Secret): Promise<TokenInfo[]> {
      const res = await run(node, 'consul acl token list', cmd.listTokens(), { stdin: secretLine(secret) });
      const problem = tokenFailure(node, 'consul acl token list', res);
      if (problem !== null) throw problem;
      if (res.code !== 0) {
        const hint = /regen:no-jq/.test(res.stderr) ? 'install jq on the node (apt install jq / dnf install jq)' : undefined;
        throw failed(node, 'consul acl token list', res, hint, secret);
      }
      return parseTokens(res.stdout, node);
    },

    async deleteToken(node: string, secret: Secret, accessorId: string): Promise<void> {
      const command = build(() => cmd.deleteToken(accessorId));
      const res = await run(node, 'consul acl token delete', command, { stdin: secretLine(secret) });
      const problem = tokenFailure(node, 'consul acl token delete', res);
      if (problem !== null) throw problem;
      if (res.code !== 0) throw failed(node, `consul acl token delete -id ${accessorId}`, res, undefined, secret);
    },
  };
}
