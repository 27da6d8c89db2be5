/** The port's read-only proofs that a node is back: RPC, CA, certificate and keyring, and the catalog it serves. */
import type { CatalogView, NodePort, NodeProof } from '../../machines/port.js';
import type { Secret } from '../secrets/secret.js';
import { parseCatalog } from './catalog-parse.js';
import * as cmd from './commands.js';
import { failed, secretLine, tokenFailure, type PortKit } from './port-kit.js';

type VerificationMethods = Pick<NodePort, 'proveNode' | 'readCatalog'>;

export function verificationMethods({ run }: PortKit): VerificationMethods {
  return {
    async proveNode(node: string, secret: Secret): Promise<NodeProof> {
      const res = await run(node, 'prove the node is back', cmd.proveNode(), { stdin: secretLine(secret) });
      if (res.stdout.includes('regen:no-credentials') || res.stdout.includes('regen:bad-secret') || res.code !== 0) {
        throw failed(node, 'proving the node is back (its credentials do not open with the secret, or are missing)', res, undefined, secret);
      }
      const field = (k: string): string | null => new RegExp(`^${k}=(.*)$`, 'm').exec(res.stdout)?.[1] ?? null;
      const rpc = field('rpc');
      const ca = field('ca');
      return {
        rpcError: rpc === 'ok' ? null : (rpc ?? 'no answer'),
        caSha256: ca !== null && /^[0-9a-f]{64}$/.test(ca) ? ca : null,
        certVerifies: field('cert') === 'ok',
        keyringExact: field('keyring') === 'exact',
      };
    },

    async readCatalog(node: string, secret: Secret | null): Promise<CatalogView> {
      const what = 'read the catalog (services, health checks)';
      const res = await run(node, what, cmd.readCatalog(secret !== null), secret === null ? {} : { stdin: secretLine(secret) });
      if (secret !== null) {
        const problem = tokenFailure(node, what, res);
        if (problem !== null) throw problem;
      }
      if (res.code !== 0) throw failed(node, what, res, /regen:no-curl/.test(res.stderr) ? 'install curl on the node' : undefined, secret ?? undefined);
      return parseCatalog(res.stdout, node);
    },
  };
}
