/**
 * Independent check of a recovered lab mesh over SSH, without regen's code: one raft leader and every server a
 * voter (`consul operator raft list-peers`), and on every node: a catalog query through its own agent with the new
 * token, its certificate verified by `openssl verify` against the LEADER's CA, its keyring exactly the new key.
 */
import type { Lab } from '../lab.js';
import { sshExec } from '../lab.js';

const DECRYPT = 'gpg --batch -q --pinentry-mode loopback --passphrase-fd 0 -d /etc/zextras/service-discover/cluster-credentials.tar.gpg';

export interface ProofCheck {
  leaders: number;
  voters: number;
  problems: string[];
}

export async function checkProof(lab: Lab, leader: string, secret: string): Promise<ProofCheck> {
  const problems: string[] = [];
  const peers = await sshExec(lab, leader, `export CONSUL_HTTP_TOKEN=$(${DECRYPT} | tar xOf - consul-acl-secret.json | jq -r .SecretID); consul operator raft list-peers`, { stdin: secret });
  const rows = peers.stdout.split('\n').slice(1).filter((l) => l.trim()).map((l) => l.trim().split(/\s+/));
  const leaders = rows.filter((r) => r[3] === 'leader').length;
  const voters = rows.filter((r) => r[4] === 'true').length;
  if (peers.code !== 0) problems.push(`raft list-peers on ${leader} exited ${peers.code}: ${peers.stderr.slice(0, 200)}`);
  const ca = (await sshExec(lab, leader, 'cat /var/lib/service-discover/consul-agent-ca.pem')).stdout;
  for (const n of lab.nodes) {
    const script = [
      'IFS= read -r P',
      `T=$(printf '%s\\n' "$P" | ${DECRYPT} | tar xOf - consul-acl-secret.json | jq -r .SecretID)`,
      `K=$(printf '%s\\n' "$P" | ${DECRYPT} | tar xOf - gossip-key)`,
      'CONSUL_HTTP_TOKEN="$T" consul catalog nodes >/dev/null 2>&1 && echo catalog=ok',
      "F=$(mktemp); printf '%s' \"$CA\" | base64 -d > \"$F\"",
      'C=$(ls /var/lib/service-discover/dc1-*-consul-0.pem | head -n 1)',
      'openssl verify -CAfile "$F" "$C" >/dev/null 2>&1 && echo cert=ok; rm -f "$F"',
      `L=$(CONSUL_HTTP_TOKEN="$T" consul keyring -list | sed -n 's/^ *\\([^ ]*\\) \\[.*\\]$/\\1/p' | sort -u)`,
      '[ "$L" = "$K" ] && echo keyring=ok',
    ].join('\n');
    const r = await sshExec(lab, n.name, `CA=${Buffer.from(ca).toString('base64')}\n${script}`, { stdin: `${secret}\n` });
    for (const what of ['catalog', 'cert', 'keyring']) if (!r.stdout.includes(`${what}=ok`)) problems.push(`${n.name}: ${what} check failed`);
  }
  return { leaders, voters, problems };
}
